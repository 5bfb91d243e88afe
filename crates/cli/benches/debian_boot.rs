//! A Debian 12 system with systemd, without hardware virtualization: gasang's software
//! CPU (`--accel soft`) beside QEMU's (`-M pc -accel tcg`; its microvm machine hangs
//! here with two vCPUs, at "tsc: Unable to calibrate against PIT"), alternating runs,
//! in one invocation, on the same guest: Debian's cloud kernel and the
//! mmdebstrap-built userland of scripts/fetch-assets.sh as the initramfs, 1 GiB,
//! 2 vCPUs.
//!
//! - **login prompt**: process start to systemd's getty asking `login:`;
//! - **shell**: root's name and password typed, to bash's prompt (login, PAM, bash);
//! - **python3**: `python3 -c ...` typed, to its output (a dynamically linked
//!   interpreter starting up);
//! - **peak RSS**: `ru_maxrss` of the VMM process, after `poweroff -f`.
//!
//! `cargo bench -p gasang-cli --bench debian_boot [-- RUNS]` (default 3 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Sample {
    login: Duration,
    shell: Duration,
    python: Duration,
    peak_rss_kib: i64,
}

/// Waits until `marker` has appeared `times` times; when, or `None` after 5 minutes.
fn wait_for(console: &Mutex<String>, marker: &str, times: usize) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if console.lock().unwrap().matches(marker).count() >= times {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            let seen = console.lock().unwrap();
            let tail = &seen[seen.len().saturating_sub(600)..];
            eprintln!("no '{marker}' after 300 s; the console ended with:\n{tail}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Types `line` and waits for `marker` to appear `times` times: how long that took.
fn round_trip(
    stdin: &mut impl Write,
    console: &Mutex<String>,
    (line, marker, times): (&str, &str, usize),
) -> Option<Duration> {
    let typed = Instant::now();
    writeln!(stdin, "{line}").unwrap();
    Some(wait_for(console, marker, times)? - typed)
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
    let sample = (|| {
        let login = wait_for(&console, "gasang login:", 1)? - start;
        round_trip(&mut stdin, &console, ("root", "Password:", 1))?;
        let shell = round_trip(&mut stdin, &console, ("gasang", "root@gasang:~#", 1))?;
        let python = "python3 -c 'print(\"PY\", 6 * 7)'";
        let python = round_trip(&mut stdin, &console, (python, "PY 42", 1))?;
        Some((login, shell, python))
    })();
    let Some((login, shell, python)) = sample else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    writeln!(stdin, "poweroff -f").unwrap();
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    Some(Sample {
        login,
        shell,
        python,
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
    let (kernel, initrd) = (assets.join("vmlinuz"), assets.join("debian.cpio"));
    assert!(initrd.exists(), "run scripts/fetch-assets.sh first");
    let gasang_bin = common::root().join("target/release/gasang");
    assert!(
        gasang_bin.exists(),
        "build it first: cargo build --release -p gasang-cli"
    );
    let cmdline = "console=ttyS0 rdinit=/sbin/init panic=-1";
    let gasang = || {
        let mut c = Command::new(&gasang_bin);
        c.args(["run", "--accel", "soft", "--memory", "1G", "--vcpus", "2"])
            .args(["--cmdline", cmdline, "--kernel"])
            .arg(&kernel)
            .arg("--initrd")
            .arg(&initrd);
        c
    };
    let qemu = || {
        let mut c = Command::new("qemu-system-x86_64");
        c.args(["-M", "pc", "-accel", "tcg", "-m", "1G", "-smp", "2"])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot", "-kernel"])
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", cmdline]);
        c
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut hangs = [0; 2];
    for run in 0..runs {
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
    report(runs, hangs, &ours, &theirs);
}

fn report(runs: usize, hangs: [usize; 2], ours: &[Sample], theirs: &[Sample]) {
    println!(
        "{runs} runs each (hung: gasang {}, QEMU {}), medians of the rest; \
         ratio = gasang / QEMU TCG (lower is better)",
        hangs[0], hangs[1]
    );
    println!("| | gasang --accel soft | QEMU -accel tcg | ratio |");
    println!("|---|---|---|---|");
    type Metric = fn(&Sample) -> Duration;
    let rows: [(&str, Metric); 3] = [
        ("login prompt", |s| s.login),
        ("root's login to a shell", |s| s.shell),
        ("python3 -c, typed to its output", |s| s.python),
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
