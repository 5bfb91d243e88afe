//! Software CPU speed: the same static program natively, under qemu-user (Debian's
//! `qemu-x86_64`, a JIT) and under `gasang user-run` (an interpreter, for now), in one
//! invocation, alternating runs. Prints median times, ratios, and instructions per
//! second (the instruction count is gasang's own, from GASANG_USER_STATS).
//!
//! `cargo bench -p gasang-cli --bench softcpu_speed [-- RUNS]` (default 5 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// guests/user-tests/compute.c with a 4096-element sort.
fn program() -> PathBuf {
    common::user_program("compute", "compute-bench", &["-DSORT_N=4096"])
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

fn gasang(program: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gasang"));
    cmd.arg("user-run").arg(program);
    cmd
}

fn instructions(program: &Path) -> f64 {
    let out = gasang(program)
        .env("GASANG_USER_STATS", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let count = stderr
        .split_whitespace()
        .find_map(|w| w.parse::<u64>().ok())
        .unwrap();
    count as f64
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let program = program();
    let (mut native, mut qemu, mut ours) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        native.push(seconds(Command::new(&program)));
        let mut q = Command::new("qemu-x86_64");
        q.arg(&program);
        qemu.push(seconds(q));
        ours.push(seconds(gasang(&program)));
    }
    let (n, q, g) = (median(native), median(qemu), median(ours));
    let count = instructions(&program);
    println!(
        "compute.c (4096-element sort), {count:.0} guest instructions, {runs} runs each (medians)"
    );
    println!("| runner | time (ms) | guest instructions/s | vs gasang |");
    println!("|---|---|---|---|");
    for (name, t) in [
        ("native", n),
        ("qemu-x86_64 (qemu-user)", q),
        ("gasang user-run", g),
    ] {
        println!(
            "| {name} | {:.1} | {:.0} M | {:.1}x |",
            t * 1e3,
            count / t / 1e6,
            g / t
        );
    }
    println!("gasang speed as a fraction of qemu-user: 1/{:.0}", g / q);
}
