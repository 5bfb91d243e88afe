//! `--console virtio`: the terminal on a virtio-console port, hvc0 under Debian's own
//! driver on the software CPU.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::guest::{asset, value, Guest};

#[test]
fn test_virtio_console_gives_a_shell_on_hvc0() {
    // No --cmdline: with --console virtio the default is console=hvc0.
    let mut guest = Guest::boot_with(&asset("initrd-virtio.img"), &["--console", "virtio"]);
    guest.wait_for("gasang-init: ready", 1);
    guest.type_line(concat!(
        " dmesg -n 1; echo TTY=$(tty); echo CONSOLES=$(cut -d' ' -f1 /proc/consoles);",
        " echo CMDLINE=$(cat /proc/cmdline);",
        " echo LINES=$(seq 1 20000 | tee /dev/console | wc -l); echo DONE-$((6*7))"
    ));
    let console = guest.wait_for("DONE-42", 1);
    guest.type_line("poweroff -f");
    let (status, stderr) = guest.exit();
    assert_eq!(status, Some(0), "{stderr}\n{console}");
    assert_eq!(value(&console, "TTY"), "/dev/hvc0");
    assert_eq!(value(&console, "CONSOLES"), "hvc0");
    assert_eq!(value(&console, "CMDLINE"), "console=hvc0 panic=-1");
    assert_eq!(value(&console, "LINES"), "20000");
    // Every line the guest wrote reached the terminal, in order (kernel messages,
    // which could land mid-line, are off).
    let numbers: Vec<&str> = console
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    let expected: Vec<String> = (1..=20000).map(|n| n.to_string()).collect();
    let first_wrong = numbers.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        first_wrong.is_none() && numbers.len() == expected.len(),
        "{} lines; the first wrong one at {first_wrong:?}: {:?}",
        numbers.len(),
        first_wrong.map(|k| console.lines().find(|l| l.contains(&expected[k])))
    );
}
