//! `gasang user-run`: static programs (guests/user-tests, built here with the host's
//! gcc) print exactly what they print natively and exit with the same status.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{assert_one_line_error, gasang};

/// Builds guests/user-tests/NAME.c into target/user-tests/NAME.
fn program(name: &str) -> PathBuf {
    common::user_program(name, name, &[])
}

/// Runs `name` natively and under user-run with `args`; both must agree.
fn same_as_native(name: &str, args: &[&str]) -> String {
    let exe = program(name);
    let native = Command::new(&exe).args(args).output().unwrap();
    let emulated = gasang()
        .arg("user-run")
        .arg(&exe)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8(emulated.stdout).unwrap();
    assert_eq!(
        String::from_utf8(native.stdout).unwrap(),
        stdout,
        "{name}: stdout differs"
    );
    assert_eq!(
        native.status.code(),
        emulated.status.code(),
        "{name}: exit status differs"
    );
    assert!(
        emulated.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&emulated.stderr)
    );
    stdout
}

#[test]
fn test_user_run_args_and_exit_status_match_native() {
    let out = same_as_native("args", &["one", "two words", "--flag"]);
    assert!(out.contains("argv: two words\n"));
}

#[test]
fn test_user_run_compute_matches_native() {
    let out = same_as_native("compute", &[]);
    assert!(out.contains("sorted: 1\n"));
}

#[test]
fn test_user_run_memory_calls_match_native() {
    let out = same_as_native("memory", &[]);
    assert!(out.contains("munmap: 0\n"));
}

#[test]
fn test_user_run_unadvertised_instruction_is_sigill() {
    let exe = program("avx");
    let out = gasang().arg("user-run").arg(&exe).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    assert_one_line_error(
        &out,
        128 + 4,
        "killed by SIGILL (#UD invalid opcode at RIP 0x",
    );
}

#[test]
fn test_user_run_missing_program() {
    let out = gasang()
        .args(["user-run", "/nonexistent/prog"])
        .output()
        .unwrap();
    assert_one_line_error(
        &out,
        2,
        "cannot read program '/nonexistent/prog': No such file",
    );
}

#[test]
fn test_user_run_not_an_elf() {
    let out = gasang()
        .args(["user-run", "/etc/hostname"])
        .output()
        .unwrap();
    assert_one_line_error(&out, 2, "cannot run '/etc/hostname': not an ELF file");
}

#[test]
fn test_user_run_dynamic_program_is_refused() {
    let out = gasang().args(["user-run", "/bin/true"]).output().unwrap();
    assert_one_line_error(
        &out,
        2,
        "a dynamically linked program (needs /lib64/ld-linux-x86-64.so.2)",
    );
}
