//! Debian's stock cloud kernel and the busybox initramfs (scripts/fetch-assets.sh) on
//! the software CPU: every instruction of these boots runs on gasang's own CPU, with
//! its own interrupt controllers and timers. Each boot costs tens of seconds here, so
//! each test checks several things per boot.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use common::guest::{asset, value, Guest};

/// The asset initramfs with `programs` appended under /bin (Linux unpacks
/// concatenated archives in order), written to a file of its own.
fn initrd_with(programs: &[PathBuf], name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gasang-soft-{name}-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("root/bin")).unwrap();
    for program in programs {
        std::fs::copy(
            program,
            dir.join("root/bin").join(program.file_name().unwrap()),
        )
        .unwrap();
    }
    let archive = std::process::Command::new("sh")
        .arg("-c")
        .arg("cd root && find . | LC_ALL=C sort | busybox cpio -o -H newc 2>/dev/null | gzip")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(archive.status.success());
    let mut image = std::fs::read(asset("initrd.img")).unwrap();
    image.extend(archive.stdout);
    let path = dir.join("initrd.img");
    std::fs::write(&path, image).unwrap();
    path
}

/// What each program printed between the guest's `BEGIN-1` and `END-1` lines (the
/// tty's CRs removed).
fn program_outputs(console: &str) -> Vec<String> {
    let outputs = console.split("\nBEGIN-1\r\n").skip(1).map(|part| {
        let (output, _) = part
            .split_once("END-1\r\n")
            .unwrap_or_else(|| panic!("no END-1 after:\n{part}"));
        output.replace('\r', "")
    });
    outputs.collect()
}

/// Debian's kernel to a shell: commands typed into the console run, `nproc`,
/// `/proc/meminfo`, `date` and the clocksource are right, two CPU-bound static glibc
/// programs (a compression round trip; printf of floats, on the x87 and SSE state the
/// guest kernel switches) print exactly what they print natively, the kernel reports
/// no failed self-test or warning, and `poweroff -f` exits 0.
#[test]
fn test_debian_kernel_boots_to_a_shell_on_the_software_cpu() {
    let programs = ["libc_compress", "libc_float"].map(common::libc_program);
    let initrd = initrd_with(&programs, "shell");
    let mut guest = Guest::boot_with(&initrd, &[]);
    guest.wait_for("gasang-init: ready", 1);
    for program in ["libc_compress", "libc_float"] {
        // `echo X-$((1))` prints "X-1": the echoed command line does not match.
        guest.type_line(&format!(
            "echo BEGIN-$((1)); {program}; echo END-$((1)); echo RAN-{program}-$((7))"
        ));
        guest.wait_for(&format!("RAN-{program}-7"), 1);
    }
    guest.type_line(
        "echo CPUS=$(nproc); echo MEM=$(awk '/MemTotal/ {print $2}' /proc/meminfo); \
         echo NOW=$(date +%s); \
         echo CLOCK=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource); \
         echo SUM=$((6*7))",
    );
    let console = guest.wait_for("SUM=42", 1);
    guest.type_line("poweroff -f");
    let (status, stderr) = guest.exit();
    std::fs::remove_dir_all(initrd.parent().unwrap()).unwrap();
    let outputs = program_outputs(&console);
    for (program, output) in programs.iter().zip(&outputs) {
        let native = std::process::Command::new(program).output().unwrap();
        assert_eq!(
            output,
            &String::from_utf8_lossy(&native.stdout),
            "{program:?}"
        );
    }
    assert_eq!(outputs.len(), 2, "{console}");
    assert_eq!(value(&console, "CPUS"), "1");
    let mem: u64 = value(&console, "MEM").parse().unwrap();
    assert!(
        (200_000..262_144).contains(&mem),
        "MemTotal {mem} kB of 256 MiB"
    );
    let host = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let guest_now: u64 = value(&console, "NOW").parse().unwrap();
    assert!(
        host.abs_diff(guest_now) < 60,
        "guest {guest_now}, host {host}"
    );
    assert_eq!(
        value(&console, "CLOCK"),
        "kvm-clock",
        "the paravirtual clock"
    );
    assert!(console.contains("Hypervisor detected: KVM"));
    // The kernel checks itself on the way: its crypto self-tests (most of the boot's
    // arithmetic, run as translated code) and its own consistency checks.
    for bad in ["failed (rc=", "WARNING:", "BUG:", "Oops"] {
        assert!(!console.contains(bad), "'{bad}' on the console:\n{console}");
    }
    assert_eq!(status, Some(0), "poweroff -f: {stderr}");
}

/// Two vCPUs (the second started by INIT and start-up IPIs, through real mode), NMIs
/// between them (SysRq-L makes the kernel ask the other CPU for its backtrace with an
/// NMI IPI), and a reboot with `--on-reboot restart` that boots both again.
#[test]
fn test_two_vcpus_and_reboot_with_restart_on_the_software_cpu() {
    let mut guest = Guest::boot(&["--vcpus", "2", "--on-reboot", "restart"]);
    guest.wait_for("gasang-init: ready", 1);
    // Work on both CPUs: the second runs a busy loop while the first answers.
    guest.type_line(
        "taskset 2 sh -c 'i=0; while [ $i -lt 300 ]; do i=$((i+1)); done; echo BUSY=$i' & \
         echo CPUS=$(nproc); wait; echo ONLINE=$(cat /sys/devices/system/cpu/online); \
         echo DONE-$((1+1))",
    );
    // The output's marker, not the echoed command's.
    let first = guest.wait_for("DONE-2", 1);
    guest.type_line("echo l > /proc/sysrq-trigger; echo SYSRQ-$((3+3))");
    let sysrq = guest.wait_for("SYSRQ-6", 1);
    guest.type_line("reboot -f");
    guest.wait_for("gasang-init: ready", 2);
    guest.type_line("echo AGAIN=$(nproc); echo DONE-$((2+1))");
    let console = guest.wait_for("DONE-3", 1);
    guest.type_line("poweroff -f");
    let (status, stderr) = guest.exit();
    assert_eq!(value(&first, "CPUS"), "2", "{first}");
    assert_eq!(value(&first, "BUSY"), "300");
    assert_eq!(value(&first, "ONLINE"), "0-1");
    assert!(first.contains("smp: Brought up 1 node, 2 CPUs"));
    assert!(
        sysrq.contains("NMI backtrace for cpu 1"),
        "CPU 1 took the NMI: {sysrq}"
    );
    let restart = &console[console.rfind("Linux version").unwrap_or(0)..];
    assert_eq!(
        value(&console, "AGAIN"),
        "2",
        "both CPUs after the restart:\n{restart}"
    );
    assert_eq!(status, Some(0), "{stderr}");
}

/// No initramfs: the kernel boots to the point where it looks for a root file system,
/// panics, and with `panic=-1` reboots through the machine's reset, as on KVM. With
/// 4 GiB, so that RAM continues above 4 GiB past the MMIO hole; the kernel allocates
/// its early memory from the top down, so it runs on that RAM from the start.
#[test]
fn test_kernel_panic_reboots_the_machine_on_the_software_cpu() {
    let out = common::run_kernel(
        &asset("vmlinuz"),
        &[
            "--accel",
            "soft",
            "--memory",
            "4G",
            "--cmdline",
            "console=ttyS0 panic=-1",
        ],
    );
    let console = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "Linux version 6.1",
        "smpboot: CPU0: Intel gasang software CPU (x86-64) (family: 0x6, model: 0x3a, stepping: 0x9)",
        "TSC deadline timer available",
        "BIOS-e820: [mem 0x0000000100000000-0x000000013fffffff] usable",
        "K/4193912K available",
        "Kernel panic - not syncing: VFS: Unable to mount root fs",
    ] {
        assert!(console.contains(line), "no '{line}' in:\n{console}{stderr}");
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.trim(), "gasang: the guest rebooted");
}
