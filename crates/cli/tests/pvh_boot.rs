//! The PVH test guest boots through `gasang run` exactly as a kernel would and reports
//! what it found; every value must be what gasang was asked for.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{elf32_guest, epoch_of, field, fields, run_kernel, run_pvh};

/// RAM the guest may use for `mib` MiB: all of it but the EBDA-to-1-MiB hole.
fn usable(mib: u64) -> u64 {
    (mib << 20) - (0x100000 - 0x9fc00)
}

#[test]
fn test_pvh_guest_sees_cmdline_memory_cpus_date_and_acpi() {
    guest_sees_cmdline_memory_cpus_date_and_acpi("kvm");
}

/// The same machine on the software CPU: its 32-bit PVH entry, paging set up by the
/// guest, and the same devices and ACPI tables.
#[test]
fn test_pvh_guest_on_the_software_cpu_sees_the_same_machine() {
    guest_sees_cmdline_memory_cpus_date_and_acpi("soft");
}

fn guest_sees_cmdline_memory_cpus_date_and_acpi(accel: &str) {
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let out = run_pvh(&[
        "--accel",
        accel,
        "--memory",
        "256M",
        "--vcpus",
        "3",
        "--cmdline",
        "gasang e2e 42",
    ]);
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field(&stdout, "entry"), Some("pvh"));
    assert_eq!(field(&stdout, "magic"), Some("336ec578"));
    assert_eq!(field(&stdout, "cmdline"), Some("gasang e2e 42"));
    assert_eq!(
        field(&stdout, "ram"),
        Some(usable(256).to_string().as_str())
    );
    assert_eq!(
        fields(&stdout, "memmap"),
        ["0x0 0x9fc00 1", "0x9fc00 0x60400 2", "0x100000 0xff00000 1"]
    );
    assert_eq!(field(&stdout, "modules"), Some("0"));
    assert_eq!(field(&stdout, "acpi"), Some("GASANG"));
    assert_eq!(field(&stdout, "cpus"), Some("3"));
    let guest_time = epoch_of(field(&stdout, "date").unwrap());
    assert!(
        (before - 1..=after + 1).contains(&guest_time),
        "{guest_time} not in {before}..{after}"
    );
    assert_eq!(field(&stdout, "exit"), Some("poweroff"), "the default");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn test_pvh_guest_above_3g_gets_ram_above_4g() {
    guest_above_3g_gets_ram_above_4g("kvm");
}

/// The software CPU maps the same RAM above 4 GiB (the guest reads its memory map and
/// sums the RAM it finds there).
#[test]
fn test_pvh_guest_above_3g_gets_ram_above_4g_on_software_cpu() {
    guest_above_3g_gets_ram_above_4g("soft");
}

fn guest_above_3g_gets_ram_above_4g(accel: &str) {
    let out = run_pvh(&["--accel", accel, "--memory", "4G", "--cmdline", "big"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    let memmap = fields(&stdout, "memmap");
    assert_eq!(
        memmap[2], "0x100000 0xbff00000 1",
        "RAM stops at the MMIO hole"
    );
    assert_eq!(
        memmap[3], "0x100000000 0x40000000 1",
        "and resumes at 4 GiB"
    );
    assert_eq!(
        field(&stdout, "ram"),
        Some(usable(4096).to_string().as_str())
    );
}

/// The same guest in an ELF32 container boots on both backends: the loader reads its
/// 32-bit program headers and PVH note, and the guest reports the command line and
/// the memory map it was given.
#[test]
fn test_elf32_pvh_guest_boots_on_both_backends() {
    let kernel = elf32_guest("pvh-test-elf32", &[]);
    for accel in ["kvm", "soft"] {
        let args = [
            "--accel",
            accel,
            "--memory",
            "64M",
            "--cmdline",
            "elf32 pvh",
        ];
        let out = run_kernel(&kernel, &args);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{accel}: {stdout}{stderr}");
        assert_eq!(field(&stdout, "entry"), Some("pvh"), "{accel}");
        assert_eq!(field(&stdout, "cmdline"), Some("elf32 pvh"), "{accel}");
        assert_eq!(
            fields(&stdout, "memmap"),
            ["0x0 0x9fc00 1", "0x9fc00 0x60400 2", "0x100000 0x3f00000 1"],
            "{accel}"
        );
        assert_eq!(field(&stdout, "ram"), Some(usable(64).to_string().as_str()));
    }
}

#[test]
fn test_pvh_guest_gets_initrd_as_module() {
    let initrd = std::env::temp_dir().join(format!("gasang-e2e-initrd-{}", std::process::id()));
    std::fs::write(&initrd, vec![0x5au8; 100_000]).unwrap();
    let out = run_pvh(&["--memory", "64M", "--initrd", initrd.to_str().unwrap()]);
    std::fs::remove_file(&initrd).unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(field(&stdout, "modules"), Some("1"));
}

#[test]
fn test_pvh_guest_single_vcpu_madt_has_one_cpu() {
    let out = run_pvh(&["--memory", "32M"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(field(&stdout, "cpus"), Some("1"));
    assert_eq!(
        field(&stdout, "cmdline"),
        Some("console=ttyS0 panic=-1"),
        "the default"
    );
}

/// The same guest as a plain ELF vmlinux: gasang enters it in long mode through the Linux
/// 64-bit boot protocol (its own GDT, page tables and zero page), as for a bzImage.
#[test]
fn test_vmlinux_guest_gets_zero_page_in_long_mode() {
    vmlinux_guest_gets_zero_page_in_long_mode("kvm");
}

/// The same on the software CPU: entered in 64-bit mode with gasang's page tables.
#[test]
fn test_vmlinux_guest_on_the_software_cpu_gets_zero_page_in_long_mode() {
    vmlinux_guest_gets_zero_page_in_long_mode("soft");
}

fn vmlinux_guest_gets_zero_page_in_long_mode(accel: &str) {
    let initrd =
        std::env::temp_dir().join(format!("gasang-e2e-vmlinux-{accel}-{}", std::process::id()));
    std::fs::write(&initrd, vec![0xa5u8; 4096]).unwrap();
    let args = [
        "--accel",
        accel,
        "--memory",
        "128M",
        "--vcpus",
        "2",
        "--cmdline",
        "vmlinux e2e",
        "--initrd",
    ];
    let mut args: Vec<&str> = args.to_vec();
    args.push(initrd.to_str().unwrap());
    let out = common::run_kernel(common::linux64_guest(), &args);
    std::fs::remove_file(&initrd).unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(field(&stdout, "entry"), Some("linux64"));
    assert_eq!(
        field(&stdout, "magic"),
        Some("53726448"),
        "the zero page's HdrS"
    );
    assert_eq!(field(&stdout, "cmdline"), Some("vmlinux e2e"));
    assert_eq!(
        field(&stdout, "ram"),
        Some(usable(128).to_string().as_str())
    );
    assert_eq!(field(&stdout, "modules"), Some("1"), "the initrd");
    assert_eq!(field(&stdout, "cpus"), Some("2"));
    assert_eq!(field(&stdout, "exit"), Some("poweroff"));
}

/// Nested hypervisors that emulate guest kernel mode (this project's CI host among
/// them) cannot emulate SSE; the test guest is built to contain none.
#[test]
fn test_pvh_guest_contains_no_sse_instructions() {
    let out = std::process::Command::new("objdump")
        .arg("-d")
        .arg(common::pvh_guest())
        .output()
        .expect("objdump (binutils) is needed");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("<rust_main>"), "objdump saw the guest's code");
    let sse: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("%xmm") || l.contains("%mm"))
        .collect();
    assert!(
        sse.is_empty(),
        "SSE/MMX in the test guest:\n{}",
        sse.join("\n")
    );
}

/// `--accel auto` (the default) measures KVM on a kernel-mode loop and says what it
/// chose and why; the choice must follow the measurement (more than 50 ns per
/// instruction: KVM emulates kernel code, and the software CPU runs the guest). On
/// this project's hosts KVM emulates it (about 0.5 µs per instruction).
#[test]
fn test_auto_chooses_by_measured_kernel_mode_speed() {
    let out = common::gasang()
        .args(["-v", "run", "--memory", "64M", "--kernel"])
        .arg(common::pvh_guest())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("CPU backend: "))
        .unwrap_or_else(|| panic!("no choice logged: {stderr}"));
    let emulated = line.contains("the software CPU: this host's KVM emulates guest kernel code");
    let native = line.contains("KVM: it runs guest kernel code natively");
    assert!(emulated != native, "{line}");
    let nanos = line.contains("ns per instruction") && !line.contains("µs per");
    if native {
        assert!(nanos, "native means nanoseconds per instruction: {line}");
    }
}

/// `--stats` counts the guest's traps to each device on both backends: the test guest
/// writes its report to the serial port byte by byte, and reads the CMOS clock.
#[test]
fn test_stats_counts_traps_per_device_on_both_backends() {
    for accel in ["kvm", "soft"] {
        let out = run_pvh(&["--accel", accel, "--stats"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{accel}: {stderr}");
        assert!(
            stderr.contains("gasang: traps to devices (reads, writes):"),
            "{stderr}"
        );
        let count = |name: &str| -> Vec<u64> {
            let line = stderr
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("{accel}: no {name} row in:\n{stderr}"));
            line.split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        };
        let serial = count("serial");
        // At least one write per byte of the guest's output.
        assert!(serial[1] >= stdout.len() as u64, "{accel}: {serial:?}");
        assert!(count("cmos")[0] > 0, "{accel}");
        assert!(count("total")[0] >= serial[0] + serial[1], "{accel}");
    }
}
