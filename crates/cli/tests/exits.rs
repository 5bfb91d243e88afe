//! Every way a machine ends, with the exit status and the one line gasang prints.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::Read;
use std::process::Stdio;

use common::{gasang, pvh_guest, read_until, run_pvh};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn test_exit_acpi_poweroff_is_status_0_and_silent() {
    let out = run_pvh(&["--memory", "32M", "--cmdline", "exit=poweroff"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "");
}

#[test]
fn test_exit_debug_port_sets_status() {
    let out = run_pvh(&["--memory", "32M", "--cmdline", "exit=debug:5"]);
    assert_eq!(out.status.code(), Some(11), "QEMU's (5 << 1) | 1");
}

#[test]
fn test_exit_keyboard_controller_reset_reports_reboot() {
    let out = run_pvh(&["--memory", "32M", "--cmdline", "exit=reset-kbd"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "gasang: the guest rebooted\n");
}

#[test]
fn test_exit_acpi_reset_register_reports_reboot() {
    let out = run_pvh(&["--memory", "32M", "--cmdline", "exit=reset-acpi"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "gasang: the guest rebooted\n");
}

#[test]
fn test_exit_pvpanic_is_failure_with_reason() {
    let out = run_pvh(&["--memory", "32M", "--cmdline", "exit=panic"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "gasang: the guest kernel panicked (reported through pvpanic)\n"
    );
}

#[test]
fn test_exit_triple_fault_is_failure_with_reason() {
    let out = run_pvh(&["--memory", "32M", "--cmdline", "exit=triple"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "gasang: the guest triple-faulted on vCPU 0\n");
}

/// Starts a guest, waits until it printed `marker` `times` times, sends `signal`.
fn signal_after(args: &[&str], marker: &str, times: usize, signal: i32) -> (i32, String, String) {
    let mut child = gasang()
        .arg("run")
        .arg("--kernel")
        .arg(pvh_guest())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = read_until(&mut stdout, marker, times);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), seen, err)
}

#[test]
fn test_exit_sigterm_stops_a_running_guest_cleanly() {
    let (status, stdout, stderr) = signal_after(
        &["--memory", "32M", "--cmdline", "exit=halt"],
        "exit: halt",
        1,
        libc::SIGTERM,
    );
    assert!(stdout.contains("exit: halt"));
    assert_eq!(status, 0);
    assert_eq!(stderr, "gasang: stopped by signal 15\n");
}

#[test]
fn test_exit_sigint_stops_a_running_guest_cleanly() {
    let (status, _, stderr) = signal_after(
        &["--memory", "32M", "--cmdline", "exit=halt"],
        "exit: halt",
        1,
        libc::SIGINT,
    );
    assert_eq!(status, 0);
    assert_eq!(stderr, "gasang: stopped by signal 2\n");
}

#[test]
fn test_exit_on_reboot_restart_boots_again_in_same_process() {
    let args = [
        "--memory",
        "32M",
        "--cmdline",
        "exit=reset-kbd",
        "--on-reboot",
        "restart",
    ];
    let (status, stdout, stderr) = signal_after(&args, "booted", 3, libc::SIGTERM);
    assert!(
        stdout.matches("gasang-pvh-test: booted").count() >= 3,
        "{stdout}"
    );
    assert_eq!(status, 0);
    assert_eq!(stderr, "gasang: stopped by signal 15\n");
}
