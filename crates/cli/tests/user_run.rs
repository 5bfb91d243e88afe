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
    same_output(&program(name), args)
}

/// Runs `exe` natively and under user-run with `args`: stdout and exit status must be
/// the same, and user-run must print nothing of its own.
fn same_output(exe: &std::path::Path, args: &[&str]) -> String {
    let name = exe.display();
    let native = Command::new(exe).args(args).output().unwrap();
    let emulated = gasang()
        .arg("user-run")
        .arg(exe)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&emulated.stdout).into_owned();
    if native.stdout != emulated.stdout {
        let at = native
            .stdout
            .iter()
            .zip(&emulated.stdout)
            .position(|(a, b)| a != b)
            .unwrap_or(native.stdout.len().min(emulated.stdout.len()));
        panic!(
            "{name} {args:?}: stdout differs from byte {at} (native {} bytes, user-run {}):\n\
             native:   {:?}\nuser-run: {:?}",
            native.stdout.len(),
            emulated.stdout.len(),
            String::from_utf8_lossy(&native.stdout[at..(at + 200).min(native.stdout.len())]),
            String::from_utf8_lossy(&emulated.stdout[at..(at + 200).min(emulated.stdout.len())]),
        );
    }
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
fn test_user_run_glibc_float_formatting_libm_and_long_double_match_native() {
    let out = same_output(&common::libc_program("libc_float"), &[]);
    assert!(out.contains("round trip 3.1415926535897931: 1\n"), "{out}");
    assert!(out.contains("long double "), "{out}");
}

#[test]
fn test_user_run_glibc_sorting_strings_and_hashing_match_native() {
    let out = same_output(&common::libc_program("libc_strings"), &[]);
    assert!(out.contains("ints sorted 1 "), "{out}");
    assert!(out.contains("crc32 "), "{out}");
}

#[test]
fn test_user_run_glibc_setjmp_longjmp_matches_native() {
    let out = same_output(&common::libc_program("libc_setjmp"), &[]);
    assert!(out.contains("setjmp returned 1994 after 2 rounds"), "{out}");
    assert!(out.contains("longjmp 0 gives 1\n"), "{out}");
}

#[test]
fn test_user_run_compression_round_trip_matches_native() {
    let out = same_output(&common::libc_program("libc_compress"), &[]);
    assert!(out.contains("round trip ok\n"), "{out}");
}

/// Busybox (Debian's static build) applets on a generated file: text tools, hashes,
/// arithmetic, and gzip/bzip2 compression with a round trip through user-run itself.
#[test]
fn test_user_run_busybox_applets_match_native() {
    let dir = tempfile_dir("busybox");
    let input = dir.join("numbers.txt");
    let text: String = (0..3000u64)
        .map(|i| format!("{} line {i}\n", (i * 7919) % 3001))
        .collect();
    std::fs::write(&input, text).unwrap();
    let file = input.to_str().unwrap();
    let busybox = std::path::Path::new("/bin/busybox");
    let applets: &[&[&str]] = &[
        &["echo", "hello", "world"],
        &["printf", "%s %d %.3f %x\n", "abc", "42", "3.14159", "255"],
        &["expr", "6", "*", "7"],
        &["seq", "-s", ",", "1", "3", "30"],
        &["sort", "-n", file],
        &["sort", "-r", "-k", "3", file],
        &["md5sum", file],
        &["sha256sum", file],
        &["sha1sum", file],
        &["wc", file],
        &["awk", "{ s += $1 } END { print s, s / NR }", file],
        &["sed", "-n", "s/line/LINE/p;100q", file],
        &["factor", "1234567890", "600851475143"],
        &["dc", "-e", "2 64 ^ p 7 k 1 3 / p"],
        &["od", "-A", "x", "-t", "x1", "-N", "64", file],
        &["base64", file],
        &["tr", "a-z", "A-Z"],
        &["gzip", "-c", "-9", file],
        &["bzip2", "-c", file],
    ];
    for args in applets {
        same_output(busybox, args);
    }
    // Decompress what user-run compressed, under user-run.
    let gz = dir.join("numbers.gz");
    let packed = gasang()
        .args(["user-run", "/bin/busybox", "gzip", "-c", file])
        .output()
        .unwrap();
    std::fs::write(&gz, packed.stdout).unwrap();
    let unpacked = gasang()
        .args(["user-run", "/bin/busybox", "gunzip", "-c"])
        .arg(&gz)
        .output()
        .unwrap();
    assert_eq!(unpacked.stdout, std::fs::read(&input).unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fresh directory under target/ for one test.
fn tempfile_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("user-run-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
