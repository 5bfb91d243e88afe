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

/// Waits until `marker` is on the console; the time it was first seen, or `None`
/// after 3 minutes (the guest hung: the console's end goes to stderr).
fn wait_for(console: &Mutex<String>, marker: &str) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if console.lock().unwrap().contains(marker) {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            let seen = console.lock().unwrap();
            let tail = &seen[seen.len().saturating_sub(600)..];
            eprintln!("no '{marker}' after 180 s; the console ended with:\n{tail}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn measure(mut cmd: Command) -> Option<Sample> {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let console = common::console_reader(child.stdout.take().unwrap());
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
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    Some(Sample {
        init,
        cpu,
        exit: typed.elapsed(),
        peak_rss_kib: usage.ru_maxrss,
    })
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let assets = common::root().join("assets/cache");
    let (kernel, initrd) = (assets.join("vmlinuz"), assets.join("initrd.img"));
    assert!(initrd.exists(), "run scripts/fetch-assets.sh first");
    let gasang_bin = common::root().join("target/release/gasang");
    assert!(
        gasang_bin.exists(),
        "build it first: cargo build --release -p gasang-cli"
    );
    let gasang = || {
        let mut c = Command::new(&gasang_bin);
        c.args(["run", "--accel", "soft", "--memory", "256M", "--kernel"])
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd);
        c
    };
    let qemu = || {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-M", "microvm", "-accel", "tcg", "-m", "256M", "-smp", "1"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot", "-kernel"])
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1"]);
        c
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut hangs = [0; 2];
    for run in 0..runs {
        // A guest that hangs (QEMU TCG does, now and then, on this nested host) is
        // counted, killed and left out of the medians.
        match measure(gasang()) {
            Some(s) => ours.push(s),
            None => hangs[0] += 1,
        }
        match measure(qemu()) {
            Some(s) => theirs.push(s),
            None => hangs[1] += 1,
        }
        eprintln!("run {} of {runs} done", run + 1);
    }
    assert!(
        !ours.is_empty() && !theirs.is_empty(),
        "every run of one side hung"
    );
    println!(
        "{runs} runs each (hung: gasang {}, QEMU {}), medians of the rest; \
         ratio = gasang / QEMU TCG (lower is better)",
        hangs[0], hangs[1]
    );
    println!("| | gasang --accel soft | QEMU -accel tcg | ratio |");
    println!("|---|---|---|---|");
    type Metric = fn(&Sample) -> Duration;
    let rows: [(&str, Metric); 3] = [
        ("init's first line", |s| s.init),
        ("md5sum of 16 MiB in the guest", |s| s.cpu),
        ("exit after poweroff -f", |s| s.exit),
    ];
    for (name, metric) in rows {
        let a = median(ours.iter().map(metric).collect());
        let b = median(theirs.iter().map(metric).collect());
        let ratio = a.as_secs_f64() / b.as_secs_f64();
        println!("| {name} | {a:.2?} | {b:.2?} | {ratio:.2} |");
    }
    let a = median(ours.iter().map(|s| s.peak_rss_kib).collect());
    let b = median(theirs.iter().map(|s| s.peak_rss_kib).collect());
    println!(
        "| peak RSS | {:.1} MiB | {:.1} MiB | {:.2} |",
        a as f64 / 1024.0,
        b as f64 / 1024.0,
        a as f64 / b as f64
    );
}
