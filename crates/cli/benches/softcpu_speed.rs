//! Software CPU speed: CPU-bound static programs (hashing, sorting, compression) run
//! natively, under qemu-user (Debian's `qemu-x86_64`, a JIT) and under `gasang user-run`
//! (an interpreter, for now), in one invocation, alternating runs. Prints median times,
//! instructions per second (the count is gasang's own, from GASANG_USER_STATS) and the
//! ratio to qemu-user.
//!
//! `cargo bench -p gasang-cli --bench softcpu_speed [-- RUNS]` (default 5 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One CPU-bound program and its arguments.
struct Workload {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

/// guests/user-tests/compute.c with an `n`-element insertion sort.
fn compute(n: usize) -> PathBuf {
    let define = format!("-DSORT_N={n}");
    common::user_program("compute", &format!("compute-{n}"), &[&define])
}

/// A file of `len` pseudo-random bytes (`text`: as base64-like text) in `dir`.
fn data_file(dir: &Path, name: &str, len: usize, text: bool) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if text {
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/\n"
                    [(x % 65) as usize]
            } else {
                x as u8
            }
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}

fn workloads(dir: &Path) -> Vec<Workload> {
    let busybox = PathBuf::from("/bin/busybox");
    let random = data_file(dir, "random.bin", 2 << 20, false);
    let text = data_file(dir, "text.txt", 2 << 20, true);
    let applet = |name, args: &[&str]| Workload {
        name,
        program: busybox.clone(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    vec![
        Workload {
            name: "compute.c, 4096-element sort",
            program: compute(4096),
            args: vec![],
        },
        Workload {
            name: "compute.c, 16384-element sort",
            program: compute(16384),
            args: vec![],
        },
        applet("busybox md5sum, 2 MiB", &["md5sum", &random]),
        applet("busybox sha256sum, 2 MiB", &["sha256sum", &random]),
        applet("busybox gzip -c, 2 MiB of text", &["gzip", "-c", &text]),
    ]
}

fn seconds(mut cmd: Command) -> f64 {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{cmd:?} failed");
    start.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn native(w: &Workload) -> Command {
    let mut cmd = Command::new(&w.program);
    cmd.args(&w.args);
    cmd
}

fn qemu(w: &Workload) -> Command {
    let mut cmd = Command::new("qemu-x86_64");
    cmd.arg(&w.program).args(&w.args);
    cmd
}

fn gasang(w: &Workload) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gasang"));
    cmd.arg("user-run").arg(&w.program).args(&w.args);
    cmd
}

/// Guest instructions, as gasang counts them.
fn instructions(w: &Workload) -> f64 {
    let out = gasang(w).env("GASANG_USER_STATS", "1").output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let count = stderr
        .split_whitespace()
        .find_map(|word| word.parse::<u64>().ok())
        .unwrap();
    count as f64
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("gasang-softcpu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    println!("{runs} runs each, alternating, medians; times include process start and exit");
    println!("| workload | guest instructions | native (ms) | qemu-user (ms) | gasang (ms) | gasang instructions/s | gasang / qemu-user |");
    println!("|---|---|---|---|---|---|---|");
    for w in workloads(&dir) {
        let (mut n, mut q, mut g) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            n.push(seconds(native(&w)));
            q.push(seconds(qemu(&w)));
            g.push(seconds(gasang(&w)));
        }
        let (n, q, g) = (median(n), median(q), median(g));
        let count = instructions(&w);
        println!(
            "| {} | {:.0} M | {:.1} | {:.1} | {:.1} | {:.0} M | 1/{:.1} |",
            w.name,
            count / 1e6,
            n * 1e3,
            q * 1e3,
            g * 1e3,
            count / g / 1e6,
            g / q
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
