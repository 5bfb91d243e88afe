//! Debian's own userland on the software CPU: the mmdebstrap-built Debian 12 system
//! of scripts/fetch-assets.sh, booted as an initramfs (no disk yet) with systemd as
//! its init. Every program in it is dynamically linked against Debian's glibc, which
//! checks the CPU's vendor, family and features before it runs anything.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::guest::{asset, Guest};

/// Commands run in the guest's login shell and natively (the same image's binaries,
/// chrooted), with the same output expected: bash, coreutils, perl, python3 and a su
/// to another user through PAM.
const COMMANDS: &[&str] = &[
    "bash -c 'echo $((6 * 7)) ${BASH_VERSINFO[0]}; for i in 3 1 2; do echo $i; done | sort'",
    "printf 'gasang\\n' | sha256sum; seq 1 2000 | md5sum; echo hello | tr a-z A-Z | rev",
    "seq 1 500 | sort -rn | head -3 | paste -sd,; printf '%s\\n' b a c | sort | uniq -c | wc -l",
    "perl -e 'my %h = map { $_ => $_ ** 2 } 1..9; print join(\",\", map { $h{$_} } sort keys %h), \"\\n\"'",
    "python3 -c 'import hashlib, base64, math, random; random.seed(7); print(hashlib.sha256(b\"abc\").hexdigest(), base64.b64encode(bytes(range(9))).decode(), round(math.pi, 6), math.factorial(25), random.randint(0, 10**9))'",
    "python3 -c 'import zlib, struct; d = bytes(range(256)) * 64; print(zlib.crc32(zlib.compress(d, 9)), len(zlib.compress(d)), struct.pack(\">d\", 1.5).hex())'",
    "su user -c 'id -un; echo $HOME'",
];

/// Systemd boots Debian to its console login prompt; root logs in with a password
/// (login, PAM, the shadow file); the commands print exactly what the same binaries
/// print natively on the host CPU; glibc's loader sees an Intel CPU with the x86-64
/// baseline; the boot finishes (the login prompt comes before the last start-up
/// jobs, and a busy host takes a while) with no unit failed; the console shows no
/// oops, BUG, segfault, trap or unchecked MSR access; `poweroff` shuts down through
/// systemd and ACPI, and gasang exits 0.
#[test]
fn test_debian_systemd_userland_logs_in_and_runs_on_the_software_cpu() {
    let image = asset("debian.cpio");
    let cmdline = "console=ttyS0 rdinit=/sbin/init panic=-1";
    let args = ["--memory", "1G", "--vcpus", "2", "--cmdline", cmdline];
    let mut guest = Guest::start(&image, &args);
    guest.wait_for_boot("gasang login:");
    guest.type_line("root");
    guest.wait_for("Password:", 1);
    guest.type_line("gasang");
    guest.wait_for("root@gasang:~#", 1);
    for (i, command) in COMMANDS.iter().enumerate() {
        // `echo X-$((1))` prints "X-1": the echoed command line does not match.
        guest.type_line(&format!(
            "echo BEGIN-$(({i})); {command}; echo END-$(({i}))"
        ));
        guest.wait_for(&format!("\nEND-{i}"), 1);
    }
    guest.type_line(
        "/lib64/ld-linux-x86-64.so.2 --list-diagnostics | grep -E 'basic.(kind|family)=|isa_1='; \
         timeout 300 systemctl is-system-running --wait || systemctl list-jobs --no-pager; \
         systemctl --failed --no-legend | wc -l; \
         grep -m1 '^bugs' /proc/cpuinfo; echo CHECKS-$((2 * 50))",
    );
    let console = guest.wait_for_boot("\nCHECKS-100");
    guest.type_line("poweroff");
    let full_console = guest.console();
    let (status, stderr) = guest.exit();
    // The reader thread has seen the end of the pipe once gasang is gone.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let full = full_console.lock().unwrap().clone();
    for (i, (command, native)) in COMMANDS.iter().zip(native_outputs(&image)).enumerate() {
        assert_eq!(between(&console, i), native, "{command}");
    }
    let checks = console.rsplit("CHECKS-$((2 * 50))").next().unwrap();
    for line in [
        "x86.cpu_features.basic.kind=0x1", // arch_kind_intel
        "x86.cpu_features.basic.family=0x6",
        "running",
        "\n0\r",
        // Only the flaws Linux assumes of every x86 CPU it has no whitelist entry for,
        // or of every guest (BHI): IA32_ARCH_CAPABILITIES denies the rest, and the
        // model has no erratum Linux works around.
        "bugs\t\t: spectre_v1 spectre_v2 swapgs bhi\r",
    ] {
        assert!(checks.contains(line), "no '{line}' in:\n{checks}");
    }
    for bad in [
        "Oops",
        "BUG:",
        "segfault",
        "traps:",
        "Call Trace",
        "WARNING:",
        // An Intel path of the kernel reading an MSR the model lacks.
        "unchecked MSR access",
    ] {
        assert!(!full.contains(bad), "'{bad}' on the console:\n{full}");
    }
    let shutdown = &full[console.len()..];
    assert!(shutdown.contains("reboot: Power down"), "{shutdown}");
    assert_eq!(status, Some(0), "poweroff: {stderr}");
}

/// What command `i` printed between its `BEGIN-i` and `END-i` lines (CRs removed).
fn between(console: &str, i: usize) -> String {
    // Bash's bracketed-paste switch may stand before the first line.
    let begin = format!("BEGIN-{i}\r\n");
    let end = format!("END-{i}\r\n");
    let (_, rest) = console
        .split_once(&begin)
        .unwrap_or_else(|| panic!("no BEGIN-{i} in:\n{console}"));
    let (output, _) = rest
        .split_once(&end)
        .unwrap_or_else(|| panic!("no END-{i} after:\n{rest}"));
    output.replace('\r', "")
}

/// What each command prints natively: the image unpacked and chrooted into, with the
/// environment of a root login.
fn native_outputs(image: &std::path::Path) -> Vec<String> {
    let root = std::env::temp_dir().join(format!("gasang-debian-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let unpacked = Command::new("cpio")
        .args(["-idm", "--quiet"])
        .current_dir(&root)
        .stdin(std::fs::File::open(image).unwrap())
        .status()
        .unwrap();
    assert!(unpacked.success(), "cpio");
    let outputs = COMMANDS
        .iter()
        .map(|command| {
            let out = Command::new("chroot")
                .arg(&root)
                .args(["bash", "-c", command])
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .env("HOME", "/root")
                .output()
                .unwrap();
            assert!(out.status.success(), "natively: {command}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    std::fs::remove_dir_all(&root).unwrap();
    outputs
}
