//! The serial console: stdin reaches the guest; on a TTY (a real pty, from util-linux's
//! `script`) Ctrl-C goes to the guest, Ctrl-A X quits, and the terminal is restored.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::{field, gasang, pvh_guest, read_until};

#[test]
fn test_console_piped_stdin_reaches_the_guest() {
    let mut child = gasang()
        .args([
            "run",
            "--memory",
            "32M",
            "--cmdline",
            "exit=echo",
            "--kernel",
        ])
        .arg(pvh_guest())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello gasang\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(field(&stdout, "echo"), Some("hello gasang"));
}

/// Runs `shell` under a pty; once the output contains `marker`, types `keys`.
fn in_pty(shell: &str, marker: &str, keys: &[u8]) -> (i32, String) {
    let mut child = Command::new("script")
        .args(["-qec", shell, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = read_until(&mut stdout, marker, 1);
    child.stdin.as_mut().unwrap().write_all(keys).unwrap();
    stdout.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), seen.replace('\r', ""))
}

fn gasang_cmd(cmdline: &str) -> String {
    format!(
        "{} run --memory 32M --cmdline {cmdline} --kernel {}",
        env!("CARGO_BIN_EXE_gasang"),
        pvh_guest().display()
    )
}

#[test]
fn test_console_tty_is_raw_so_ctrl_c_reaches_the_guest() {
    let (status, out) = in_pty(&gasang_cmd("exit=echo"), "ready: echo", b"ab\x03cd\r");
    assert_eq!(status, 0, "{out}");
    assert_eq!(field(&out, "echo"), Some("ab\x03cd"));
}

#[test]
fn test_console_tty_ctrl_a_x_quits_and_restores_the_terminal() {
    let shell = format!("stty -g; {}; stty -g", gasang_cmd("exit=halt"));
    let (status, out) = in_pty(&shell, "exit: halt", b"\x01x");
    assert_eq!(status, 0, "{out}");
    assert!(out.contains("gasang: quit from the console"), "{out}");
    let settings: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(':') && !l.contains(' '))
        .collect();
    assert_eq!(settings.len(), 2, "two `stty -g` lines in: {out}");
    assert_eq!(settings[0], settings[1], "terminal settings restored");
}
