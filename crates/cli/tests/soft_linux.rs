//! Debian's stock cloud kernel (scripts/fetch-assets.sh) on the software CPU, no
//! initramfs: it must boot through the whole of its initialization (memory, ACPI,
//! devices, the serial driver) to the point where it looks for a root file system, then
//! panic and, with `panic=-1`, reboot through the machine's reset. Every instruction
//! of that boot runs on gasang's own CPU.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

#[test]
fn test_debian_kernel_boots_on_the_software_cpu_to_the_root_mount() {
    let kernel = common::root().join("assets/cache/vmlinuz");
    assert!(kernel.exists(), "run scripts/fetch-assets.sh first");
    let out = common::run_kernel(
        &kernel,
        &[
            "--accel",
            "soft",
            "--memory",
            "256M",
            "--cmdline",
            "console=ttyS0 panic=-1",
        ],
    );
    let console = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "Linux version 6.1",
        "CPU: vendor_id 'GasangSoftCP' unknown",
        "ACPI: RSDP 0x00000000000E0000",
        "serial8250: ttyS0 at I/O 0x3f8",
        "Kernel panic - not syncing: VFS: Unable to mount root fs",
    ] {
        assert!(console.contains(line), "no '{line}' in:\n{console}{stderr}");
    }
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.trim(), "gasang: the guest rebooted");
}
