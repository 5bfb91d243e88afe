//! Booting Linux without hardware virtualization: gasang's software CPU
//! (`--accel soft`) beside QEMU's (`-M microvm -accel tcg`), alternating runs, in one
//! invocation, on the same guest: Debian's cloud kernel and the busybox initramfs from
//! scripts/fetch-assets.sh, 256 MiB, 1 vCPU.
//!
//! - **init**: process start to init's first line on the console (`gasang-init: ready`);
//! - **cpu**: a CPU-bound command in the guest (md5sum of 16 MiB from /dev/zero),
//!   typed into the console, to its marker coming back;
//! - **exit**: `poweroff -f` typed to the VMM process being reaped;
//! - **peak RSS**: `ru_maxrss` of the VMM process.
//!
//! `cargo bench -p gasang-cli --bench soft_boot [-- RUNS]` (default 3 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;
mod peer;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const CPU_COMMAND: &str = "dd if=/dev/zero bs=64k count=256 2>/dev/null | md5sum; echo CPU-DONE";

struct Sample {
    init: Duration,
    cpu: Duration,
    exit: Duration,
    peak_rss_kib: i64,
}

/// How long a guest may take to show a marker: past that it hung.
const LIMIT: Duration = Duration::from_secs(180);

fn wait_for(console: &Mutex<String>, marker: &str) -> Option<Instant> {
    peer::wait_for(console, marker, 1, LIMIT)
}

fn measure(mut cmd: Command) -> Option<Sample> {
    let start = Instant::now();
    let (child, mut stdin, console) = peer::spawn_console(&mut cmd, Stdio::null());
    let hung = |mut child: std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
        None
    };
    let Some(ready) = wait_for(&console, "gasang-init: ready") else {
        return hung(child);
    };
    // Typed only once the shell prompts: input that comes earlier may be flushed when
    // the shell sets up the terminal.
    if wait_for(&console, "/ # ").is_none() {
        return hung(child);
    }
    std::thread::sleep(Duration::from_millis(200));
    let typed = Instant::now();
    writeln!(stdin, "{CPU_COMMAND}").unwrap();
    // The echoed command holds "CPU-DONE" too: wait for the line the guest printed.
    let Some(done) = wait_for(&console, "\nCPU-DONE") else {
        return hung(child);
    };
    let (init, cpu) = (ready - start, done - typed);
    let typed = Instant::now();
    writeln!(stdin, "poweroff -f").unwrap();
    let peak_rss_kib = peer::reap(&child);
    Some(Sample {
        init,
        cpu,
        exit: typed.elapsed(),
        peak_rss_kib,
    })
}

fn main() {
    let runs = peer::runs();
    let assets = common::root().join("assets/cache");
    let (kernel, initrd) = (assets.join("vmlinuz"), assets.join("initrd.img"));
    assert!(initrd.exists(), "run scripts/fetch-assets.sh first");
    let gasang_bin = peer::release_gasang();
    let guest = peer::LinuxGuest {
        kernel: &kernel,
        initrd: &initrd,
        cmdline: "console=ttyS0 panic=-1",
        memory: "256M",
        vcpus: 1,
    };
    let gasang = || guest.gasang(&gasang_bin);
    let qemu = || guest.qemu("microvm");
    let results = peer::alternate(runs, || measure(gasang()), || measure(qemu()));
    let rows: [peer::Row<Sample>; 3] = [
        ("init's first line", |s| s.init),
        ("md5sum of 16 MiB in the guest", |s| s.cpu),
        ("exit after poweroff -f", |s| s.exit),
    ];
    peer::print_table(runs, &results, &rows, |s| s.peak_rss_kib);
}
