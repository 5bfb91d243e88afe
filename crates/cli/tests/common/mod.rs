//! Helpers for end-to-end tests: build the PVH test guest from source, run the real
//! `gasang` binary, read what the guest printed.

#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

pub mod gasangd;
pub mod guest;
pub mod netns;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fresh scratch directory `gasang-<name>-<pid>` in the temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gasang-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `gasang` binary under test.
pub fn gasang() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gasang"));
    cmd.stdin(Stdio::null());
    cmd
}

/// Builds guests/pvh-test with the host toolchain, once per test binary.
pub fn pvh_guest() -> &'static Path {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| build_test_guest("guests", &[]))
}

/// The same guest built as a plain ELF vmlinux (Linux 64-bit boot protocol, no PVH note).
pub fn linux64_guest() -> &'static Path {
    static GUEST: OnceLock<PathBuf> = OnceLock::new();
    GUEST.get_or_init(|| build_test_guest("guests-linux64", &["--features", "linux64"]))
}

/// The PVH guest in an ELF32 container (`objcopy -O elf32-i386`; its code is the
/// same), as QEMU also boots PVH kernels; with `objcopy_args` added.
pub fn elf32_guest(name: &str, objcopy_args: &[&str]) -> PathBuf {
    let out = root().join("target/guests").join(name);
    let status = Command::new("objcopy")
        .args(["-O", "elf32-i386"])
        .args(objcopy_args)
        .arg(pvh_guest())
        .arg(&out)
        .status()
        .expect("objcopy runs (binutils)");
    assert!(status.success(), "objcopy -O elf32-i386");
    out
}

fn build_test_guest(target_dir: &str, extra: &[&str]) -> PathBuf {
    {
        let dir = root().join("guests/pvh-test");
        let target = root().join("target").join(target_dir);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // The guest's own .cargo/config.toml sets its flags: outer ones must not leak in.
        let status = Command::new(cargo)
            .args(["build", "--release", "--quiet"])
            .args(extra)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the test guest failed");
        target.join("release/pvh-test")
    }
}

/// Runs `gasang run --kernel <pvh guest>` with `args`, to completion.
pub fn run_pvh(args: &[&str]) -> Output {
    run_kernel(pvh_guest(), args)
}

/// Runs `gasang run --kernel <kernel>` with `args`, to completion.
pub fn run_kernel(kernel: &Path, args: &[&str]) -> Output {
    gasang()
        .arg("run")
        .arg("--kernel")
        .arg(kernel)
        .args(args)
        .output()
        .unwrap()
}

/// The value of the first `key: value` line the guest printed.
pub fn field<'a>(stdout: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("{key}: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::trim_end)
}

/// Every value of `key`.
pub fn fields<'a>(stdout: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}: ");
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .map(str::trim_end)
        .collect()
}

/// Seconds since the epoch for a UTC "YYYY-MM-DD HH:MM:SS", via coreutils' date.
pub fn epoch_of(datetime: &str) -> i64 {
    let out = Command::new("date")
        .args(["-u", "-d", datetime, "+%s"])
        .output()
        .unwrap();
    assert!(out.status.success(), "date cannot parse '{datetime}'");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Asserts that a failed run printed exactly one `gasang: ...` line and no panic.
pub fn assert_one_line_error(out: &Output, expected_status: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(expected_status), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("gasang: "), "{stderr}");
    assert!(lines[0].contains(needle), "'{needle}' not in: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

/// Everything a guest's console prints, collected as it comes by a thread that reads
/// `from` until it ends.
pub fn console_reader(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let console = Arc::new(Mutex::new(String::new()));
    let sink = console.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    console
}

/// Joins a test's helper thread (a server, a receiver), waiting at most 4 minutes: a
/// guest that never connects fails the test instead of hanging the suite.
pub fn join_within<T>(handle: std::thread::JoinHandle<T>, what: &str) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    while !handle.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not finish within 4 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    match handle.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Reads `from` until `marker` has appeared `times` times, it ends, or 30 s pass.
pub fn read_until(from: &mut impl Read, marker: &str, times: usize) -> String {
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.matches(marker).count() < times && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        let n = from.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    seen
}

/// Builds the freestanding program guests/user-tests/`source`.c with the host's gcc into
/// target/user-tests/`out` (no libc, no SSE: see guests/user-tests/README.md), with
/// extra `flags` such as `-DSORT_N=4096`.
/// Builds guests/user-tests/NAME.c against glibc (static, with libm) into
/// target/user-tests/NAME.
pub fn libc_program(name: &str) -> PathBuf {
    let src = root().join("guests/user-tests").join(format!("{name}.c"));
    let dir = root().join("target/user-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(["-O2", "-static", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-lm")
        .status()
        .expect("gcc is needed to build the user-run test programs");
    assert!(status.success(), "cannot build {}", src.display());
    out
}

pub fn user_program(source: &str, out: &str, flags: &[&str]) -> PathBuf {
    let src = root().join("guests/user-tests").join(format!("{source}.c"));
    let dir = root().join("target/user-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(out);
    let status = Command::new("cc")
        .args([
            "-O2",
            "-static",
            "-nostdlib",
            "-ffreestanding",
            "-mgeneral-regs-only",
        ])
        .args([
            "-fno-stack-protector",
            "-fno-pie",
            "-no-pie",
            "-fno-asynchronous-unwind-tables",
        ])
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .arg("-lgcc")
        .status()
        .expect("gcc is needed to build the user-run test programs");
    assert!(status.success(), "cannot build {}", src.display());
    out
}
