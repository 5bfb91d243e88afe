//! VMM overhead, gasang beside QEMU (`-M microvm -accel kvm`, direct PVH boot), on the
//! same PVH test guest, alternating runs, in one invocation:
//!
//! - **first byte**: process start to the guest's first serial byte on stdout;
//! - **exit**: the guest's last serial byte (printed just before it writes the exit
//!   port) to the process being reaped;
//! - **peak RSS**: `ru_maxrss` of the VMM process (guest memory it touched included).
//!
//! Both VMMs end through the same port (QEMU's isa-debug-exit at 0x501, which gasang
//! also implements): QEMU microvm's ACPI is hardware-reduced, so the guest's PM1a
//! poweroff would not reach it.
//!
//! `cargo bench -p gasang-cli --bench vmm_overhead [-- RUNS]` (default 20 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GUEST_MEMORY: &str = "128M";

struct Sample {
    first_byte: Duration,
    exit: Duration,
    peak_rss_kib: i64,
}

#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also gives its rusage"
)]
fn measure(mut cmd: Command) -> Sample {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut first, mut last) = (None, None);
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            let now = Instant::now();
            first.get_or_insert(now);
            last = Some(now);
        }
        (first.unwrap(), last.unwrap())
    });
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `status` and `usage` are valid out-pointers.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let reaped = Instant::now();
    assert_eq!(pid, child.id() as i32);
    let (first, last) = reader.join().unwrap();
    Sample {
        first_byte: first - start,
        exit: reaped.saturating_duration_since(last),
        peak_rss_kib: usage.ru_maxrss,
    }
}

fn gasang(guest: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gasang"));
    cmd.arg("run").arg("--kernel").arg(guest);
    cmd.args(["--memory", GUEST_MEMORY, "--cmdline", "exit=debug:0"]);
    cmd
}

fn qemu(guest: &std::path::Path) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-M",
        "microvm",
        "-accel",
        "kvm",
        "-m",
        GUEST_MEMORY,
        "-nodefaults",
    ]);
    cmd.args(["-no-user-config", "-display", "none", "-serial", "stdio"]);
    cmd.args(["-device", "isa-debug-exit,iobase=0x501,iosize=4"]);
    cmd.arg("-kernel")
        .arg(guest)
        .args(["-append", "exit=debug:0"]);
    cmd
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

struct Medians {
    first_byte_ms: f64,
    exit_ms: f64,
    rss_mib: f64,
}

fn medians(samples: &[Sample]) -> Medians {
    let ms = |f: fn(&Sample) -> Duration| {
        median(samples.iter().map(|s| f(s).as_secs_f64() * 1e3).collect())
    };
    Medians {
        first_byte_ms: ms(|s| s.first_byte),
        exit_ms: ms(|s| s.exit),
        rss_mib: median(
            samples
                .iter()
                .map(|s| s.peak_rss_kib as f64 / 1024.0)
                .collect(),
        ),
    }
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let guest = common::pvh_guest();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // One warm-up each (page cache), then alternate so drift hits both alike.
    measure(gasang(guest));
    measure(qemu(guest));
    for _ in 0..runs {
        ours.push(measure(gasang(guest)));
        theirs.push(measure(qemu(guest)));
    }
    let (g, q) = (medians(&ours), medians(&theirs));
    println!(
        "VMM overhead, PVH test guest, {GUEST_MEMORY} guest memory, {runs} runs each (medians)"
    );
    println!("| VMM | first byte (ms) | exit (ms) | peak RSS (MiB) |");
    println!("|---|---|---|---|");
    println!(
        "| gasang | {:.2} | {:.2} | {:.1} |",
        g.first_byte_ms, g.exit_ms, g.rss_mib
    );
    println!(
        "| QEMU microvm | {:.2} | {:.2} | {:.1} |",
        q.first_byte_ms, q.exit_ms, q.rss_mib
    );
    println!(
        "| QEMU / gasang | {:.1}x | {:.1}x | {:.1}x |",
        q.first_byte_ms / g.first_byte_ms,
        q.exit_ms / g.exit_ms,
        q.rss_mib / g.rss_mib
    );
}
