//! What the benchmarks that run gasang beside QEMU share: the console markers, the
//! VMM's peak RSS, alternating runs with hung guests left out, and the table of
//! medians and ratios.

#![allow(dead_code)] // each benchmark uses a different subset

use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Waits until `marker` has appeared `times` times on the console; when, or `None`
/// after `limit` (the guest hung: the console's end goes to stderr).
pub fn wait_for(
    console: &Mutex<String>,
    marker: &str,
    times: usize,
    limit: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if console.lock().unwrap().matches(marker).count() >= times {
            return Some(Instant::now());
        }
        if Instant::now() > deadline {
            let seen = console.lock().unwrap();
            let tail = &seen[seen.len().saturating_sub(600)..];
            eprintln!("no '{marker}' after {limit:?}; the console ended with:\n{tail}");
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A Linux guest as both sides boot it: the same kernel, initramfs, command line,
/// memory (`256M`, `1G`: both spell it so) and vCPUs, the console on stdio.
pub struct LinuxGuest<'a> {
    pub kernel: &'a std::path::Path,
    pub initrd: &'a std::path::Path,
    pub cmdline: &'a str,
    pub memory: &'a str,
    pub vcpus: u32,
}

impl LinuxGuest<'_> {
    /// `gasang run --accel soft` (the binary `gasang`) for this guest.
    pub fn gasang(&self, gasang: &std::path::Path) -> std::process::Command {
        let mut c = std::process::Command::new(gasang);
        c.args(["run", "--accel", "soft", "--memory", self.memory])
            .args(["--vcpus", &self.vcpus.to_string()])
            .args(["--cmdline", self.cmdline, "--kernel"])
            .arg(self.kernel)
            .arg("--initrd")
            .arg(self.initrd);
        c
    }

    /// QEMU TCG on `machine` (`pc`, `microvm`) for this guest, no default devices.
    pub fn qemu(&self, machine: &str) -> std::process::Command {
        let mut c = std::process::Command::new("qemu-system-x86_64");
        c.args(["-M", machine, "-accel", "tcg", "-m", self.memory])
            .args(["-smp", &self.vcpus.to_string()])
            .args(["-nodefaults", "-no-user-config", "-display", "none"])
            .args(["-serial", "stdio", "-no-reboot", "-kernel"])
            .arg(self.kernel)
            .arg("-initrd")
            .arg(self.initrd)
            .args(["-append", self.cmdline]);
        c
    }
}

/// Starts `cmd` with its console on pipes and stderr to `stderr`: the child, its
/// stdin, and the console as a thread reads it.
pub fn spawn_console(
    cmd: &mut std::process::Command,
    stderr: std::process::Stdio,
) -> (
    Child,
    std::process::ChildStdin,
    std::sync::Arc<Mutex<String>>,
) {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let console = super::common::console_reader(child.stdout.take().unwrap());
    (child, stdin, console)
}

/// Waits for `child` to exit (it was told to); its peak RSS in KiB.
pub fn reap(child: &Child) -> i64 {
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid for the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    usage.ru_maxrss
}

/// The release build of gasang, which the benchmarks measure.
pub fn release_gasang() -> std::path::PathBuf {
    let path = super::common::root().join("target/release/gasang");
    assert!(
        path.exists(),
        "build it first: cargo build --release -p gasang-cli"
    );
    path
}

/// The runs each side gets: the benchmark's first numeric argument, or 3.
pub fn runs() -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3)
}

/// Both sides' samples, and how many runs of each hung.
pub struct Results<S> {
    pub ours: Vec<S>,
    pub theirs: Vec<S>,
    pub hangs: [usize; 2],
}

/// `runs` runs of gasang and of QEMU, alternating. A guest that hangs (QEMU TCG does,
/// now and then, on this nested host) is counted, killed and left out of the medians.
pub fn alternate<S>(
    runs: usize,
    mut ours: impl FnMut() -> Option<S>,
    mut theirs: impl FnMut() -> Option<S>,
) -> Results<S> {
    let mut results = Results {
        ours: Vec::new(),
        theirs: Vec::new(),
        hangs: [0; 2],
    };
    for run in 0..runs {
        match ours() {
            Some(s) => results.ours.push(s),
            None => results.hangs[0] += 1,
        }
        match theirs() {
            Some(s) => results.theirs.push(s),
            None => results.hangs[1] += 1,
        }
        eprintln!("run {} of {runs} done", run + 1);
    }
    assert!(
        !results.ours.is_empty() && !results.theirs.is_empty(),
        "every run of one side hung"
    );
    results
}

fn median<T: Copy + Ord>(mut v: Vec<T>) -> T {
    v.sort();
    v[v.len() / 2]
}

/// A timed row of the table: its name and how to read it from a sample.
pub type Row<S> = (&'static str, fn(&S) -> Duration);

/// Prints the medians of `rows` and of the peak RSS (`rss`, in KiB), with ratios.
pub fn print_table<S>(runs: usize, results: &Results<S>, rows: &[Row<S>], rss: fn(&S) -> i64) {
    let Results {
        ours,
        theirs,
        hangs,
    } = results;
    println!(
        "{runs} runs each (hung: gasang {}, QEMU {}), medians of the rest; \
         ratio = gasang / QEMU TCG (lower is better)",
        hangs[0], hangs[1]
    );
    println!("| | gasang --accel soft | QEMU -accel tcg | ratio |");
    println!("|---|---|---|---|");
    for (name, metric) in rows {
        let a = median(ours.iter().map(metric).collect());
        let b = median(theirs.iter().map(metric).collect());
        let ratio = a.as_secs_f64() / b.as_secs_f64();
        println!("| {name} | {a:.2?} | {b:.2?} | {ratio:.2} |");
    }
    let a = median(ours.iter().map(rss).collect());
    let b = median(theirs.iter().map(rss).collect());
    println!(
        "| peak RSS | {:.1} MiB | {:.1} MiB | {:.2} |",
        a as f64 / 1024.0,
        b as f64 / 1024.0,
        a as f64 / b as f64
    );
}
