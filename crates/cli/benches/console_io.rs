//! Full virtualization against paravirtualization, measured: the same 16 MiB written
//! by the guest to ttyS0 (the emulated 8250: every byte traps) and to hvc0
//! (virtio-console: bytes travel in rings), on gasang's software CPU and on QEMU TCG,
//! alternating runs in one invocation, on the same guest: Debian's cloud kernel with
//! the busybox initramfs that loads the virtio modules, 256 MiB, 1 vCPU.
//!
//! - **ttyS0** / **hvc0**: from the guest's marker before `cat` of a 16 MiB file in
//!   its RAM to the marker after it, as the host reads the console. The terminal's
//!   output processing is off (`stty -opost`): with it, the tty layer hands each line
//!   to the driver in two pieces, and hvc0 then pays a ring round trip per 31 bytes
//!   (measured: 100 s, slower than the 8250's 93 s), which measures n_tty, not the
//!   device;
//! - **traps per KiB** (gasang, from `--stats`): the serial port's traps in the ttyS0
//!   boot, the PCI BARs' in the hvc0 boot, whole boots included.
//!
//! `cargo bench -p gasang-cli --bench console_io [-- RUNS]` (default 3 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;
mod peer;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 16 << 20;
const LIMIT: Duration = Duration::from_secs(600);

struct Sample {
    serial: Duration,
    virtio: Duration,
    /// Traps to the serial port in the ttyS0 boot, and to the BARs in the hvc0 boot.
    traps: Option<(u64, u64)>,
    peak_rss_kib: i64,
}

/// Waits for `marker`, searching only what arrived since the last look (the console
/// grows by megabytes); when it appeared.
fn wait_tail(console: &Mutex<String>, marker: &str, from: &mut usize) -> Option<Instant> {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        {
            let seen = console.lock().unwrap();
            let start = (*from).min(seen.len());
            let start = (start..=seen.len()).find(|&i| seen.is_char_boundary(i))?;
            if let Some(at) = seen[start..].find(marker) {
                *from = start + at + marker.len();
                return Some(Instant::now());
            }
            *from = seen.len().saturating_sub(marker.len());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!("no '{marker}' after {LIMIT:?}");
    None
}

/// Boots `cmd`, writes the payload to its console, powers off: the write's time,
/// the reads and writes of `stats_row` from `--stats`, and the peak RSS.
fn one_boot(mut cmd: Command, stats_row: &str) -> Option<(Duration, Option<u64>, i64)> {
    let what = format!("{} ({stats_row} boot)", cmd.get_program().to_string_lossy());
    let (mut child, mut stdin, console) = peer::spawn_console(&mut cmd, Stdio::piped());
    let mut from = 0;
    let timed = (|| {
        // The console is small until the payload: the shared wait does.
        peer::wait_for(&console, "gasang-init: ready", 1, LIMIT)?;
        from = console.lock().unwrap().len();
        writeln!(
            stdin,
            "stty -opost; yes gasang-console-benchmark-0123456789abcdefghijklmnopqrstuvwxyz | \
             head -c {PAYLOAD} > /tmp/p; echo READY-$((1+1))"
        )
        .unwrap();
        wait_tail(&console, "READY-2", &mut from)?;
        writeln!(stdin, "echo START-$((2+2)); cat /tmp/p; echo STOP-$((3+3))").unwrap();
        let start = wait_tail(&console, "START-4", &mut from)?;
        Some(wait_tail(&console, "STOP-6", &mut from)? - start)
    })();
    let Some(time) = timed else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    writeln!(stdin, "poweroff -f").unwrap();
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = pipe.read_to_string(&mut stderr);
        stderr
    });
    let rss = peer::reap(&child);
    let stderr = reader.join().unwrap();
    let traps = stderr
        .lines()
        .find(|l| l.trim_start().starts_with(stats_row))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.parse::<u64>().ok())
                .sum()
        });
    // Each boot as it ends: a run that hangs later still shows what it measured.
    eprintln!("{what}: {time:.2?}, traps {traps:?}, peak RSS {rss} KiB");
    Some((time, traps, rss))
}

fn measure(serial: Command, virtio: Command, gasang: bool) -> Option<Sample> {
    let (serial, serial_traps, rss_a) = one_boot(serial, "serial")?;
    let (virtio, virtio_traps, rss_b) = one_boot(virtio, "pci-bar")?;
    Some(Sample {
        serial,
        virtio,
        traps: gasang.then(|| (serial_traps.unwrap_or(0), virtio_traps.unwrap_or(0))),
        peak_rss_kib: rss_a.max(rss_b),
    })
}

fn gasang_cmd(bin: &Path, kernel: &Path, initrd: &Path, virtio: bool) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "run", "--accel", "soft", "--memory", "256M", "--stats", "--kernel",
    ])
    .arg(kernel)
    .arg("--initrd")
    .arg(initrd);
    if virtio {
        c.args(["--console", "virtio", "--cmdline", "console=hvc0 panic=-1"]);
    } else {
        c.args(["--cmdline", "console=ttyS0 panic=-1"]);
    }
    c
}

fn qemu_cmd(kernel: &Path, initrd: &Path, virtio: bool) -> Command {
    let mut c = Command::new("qemu-system-x86_64");
    c.args(["-M", "pc", "-accel", "tcg", "-m", "256M"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd);
    if virtio {
        c.args([
            "-chardev",
            "stdio,id=con,signal=off",
            "-device",
            "virtio-serial-pci",
        ])
        .args(["-device", "virtconsole,chardev=con"])
        .args(["-append", "console=hvc0 panic=-1"]);
    } else {
        c.args(["-serial", "stdio", "-append", "console=ttyS0 panic=-1"]);
    }
    c
}

fn main() {
    let runs = peer::runs();
    let assets = common::root().join("assets/cache");
    let (kernel, initrd) = (assets.join("vmlinuz"), assets.join("initrd-virtio.img"));
    assert!(initrd.exists(), "run scripts/fetch-assets.sh first");
    let bin = peer::release_gasang();
    let results = peer::alternate(
        runs,
        || {
            let serial = gasang_cmd(&bin, &kernel, &initrd, false);
            measure(serial, gasang_cmd(&bin, &kernel, &initrd, true), true)
        },
        || {
            measure(
                qemu_cmd(&kernel, &initrd, false),
                qemu_cmd(&kernel, &initrd, true),
                false,
            )
        },
    );
    let rows: [peer::Row<Sample>; 2] = [
        ("16 MiB to ttyS0 (8250)", |s| s.serial),
        ("16 MiB to hvc0 (virtio-console)", |s| s.virtio),
    ];
    peer::print_table(runs, &results, &rows, |s| s.peak_rss_kib);
    let speedup = |samples: &[Sample]| {
        let mut v: Vec<f64> = samples
            .iter()
            .map(|s| s.serial.as_secs_f64() / s.virtio.as_secs_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "hvc0 over ttyS0, bytes per second (median): gasang {:.1}x, QEMU {:.1}x",
        speedup(&results.ours),
        speedup(&results.theirs)
    );
    let kib = (PAYLOAD / 1024) as f64;
    let mut traps: Vec<(u64, u64)> = results.ours.iter().filter_map(|s| s.traps).collect();
    traps.sort_unstable();
    if let Some(&(serial, virtio)) = traps.get(traps.len() / 2) {
        println!(
            "gasang traps per KiB (whole boot included): ttyS0 {:.0}, hvc0 {:.1}",
            serial as f64 / kib,
            virtio as f64 / kib
        );
    }
}
