//! virtio-blk and virtio-rng on PCI, driven by Debian's own virtio drivers (the
//! modules of the kernel package, loaded by the busybox initramfs) on the software
//! CPU, against real image files.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::guest::{asset, value, Guest};
use common::scratch;

const SECTOR: usize = 512;

/// An image of `sectors` sectors, each saying which one it is.
fn pattern_image(path: &Path, sectors: usize) {
    let mut bytes = Vec::with_capacity(sectors * SECTOR);
    for i in 0..sectors {
        let mut sector = format!("gasang-sector-{i:06}-").into_bytes();
        sector.resize(SECTOR, b'.');
        bytes.extend(sector);
    }
    std::fs::write(path, bytes).unwrap();
}

fn sector_of(path: &Path, n: usize) -> Vec<u8> {
    std::fs::read(path).unwrap()[n * SECTOR..(n + 1) * SECTOR].to_vec()
}

#[test]
fn test_virtio_blk_reads_writes_flushes_discards_and_honours_readonly() {
    let stderr = reads_writes_flushes_discards("blk-rw", "");
    assert!(
        stderr.contains("I/O through io_uring, host cache writeback"),
        "io_uring by default on this host: {stderr}"
    );
}

#[test]
fn test_virtio_blk_on_the_thread_pool_with_the_host_cache_bypassed() {
    let stderr = reads_writes_flushes_discards("blk-pool", ",aio=threads,cache=none");
    assert!(
        stderr.contains("I/O through a thread pool, host cache none (O_DIRECT)"),
        "{stderr}"
    );
}

/// Boots with three disks, each with `options`, and checks what the guest does to
/// them; returns gasang's stderr (at -v).
fn reads_writes_flushes_discards(name: &str, options: &str) -> String {
    let dir = scratch(name);
    let (vda, vdb, vdc) = (dir.join("a.img"), dir.join("b.img"), dir.join("c.img"));
    pattern_image(&vda, 8192);
    pattern_image(&vdb, 64);
    std::fs::write(&vdc, vec![0u8; 1 << 20]).unwrap();
    let vdb_before = std::fs::read(&vdb).unwrap();
    let blocks_before = std::fs::metadata(&vda).unwrap().blocks();
    let disks = [
        format!("{}{options}", vda.display()),
        format!("{},readonly=on,serial=data1{options}", vdb.display()),
        format!("{},serial=data2{options}", vdc.display()),
    ];
    let mut args = vec!["-v", "--vcpus", "2", "--rng"];
    for disk in &disks {
        args.extend(["--disk", disk.as_str()]);
    }
    let mut guest = Guest::boot_with(&asset("initrd-virtio.img"), &args);
    guest.wait_for("gasang-init: ready", 1);
    guest.type_line(concat!(
        " echo READ=$(dd if=/dev/vda bs=512 skip=4097 count=1 2>/dev/null | head -c 20);",
        " echo SIZE=$(cat /sys/block/vda/size);",
        " echo QUEUES=$(ls /sys/block/vda/mq | wc -l);",
        " printf GASANG-WRITTEN | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null; echo WROTE=$?;",
        " blkdiscard -o 1048576 -l 1048576 /dev/vda; echo DISCARD=$?; sync;",
        " echo RO=$(cat /sys/block/vdb/ro) SERIALS=$(cat /sys/block/vdb/serial),$(cat /sys/block/vdc/serial);",
        " echo x | dd of=/dev/vdb bs=512 count=1 conv=fsync 2>/dev/null; echo ROWRITE=$?;",
        " echo RNG=$(cat /sys/class/misc/hw_random/rng_current) $(head -c 64 /dev/hwrng | wc -c);",
        " echo MSIX=$(grep -c PCI-MSI /proc/interrupts); echo DONE-$((6*7))"
    ));
    let console = guest.wait_for("DONE-42", 1);
    guest.type_line("poweroff -f");
    let (status, stderr) = guest.exit();
    assert_eq!(status, Some(0), "{stderr}\n{console}");
    assert_eq!(value(&console, "READ"), "gasang-sector-004097");
    assert_eq!(value(&console, "SIZE"), "8192");
    assert_eq!(value(&console, "QUEUES"), "2", "one queue per vCPU");
    assert_eq!(value(&console, "WROTE"), "0");
    assert_eq!(value(&console, "DISCARD"), "0");
    assert_eq!(value(&console, "RO"), "1 SERIALS=data1,data2");
    assert_ne!(
        value(&console, "ROWRITE"),
        "0",
        "a read-only disk refuses writes"
    );
    assert_eq!(value(&console, "RNG"), "virtio_rng.0 64");
    let msix: u32 = value(&console, "MSIX").parse().unwrap();
    assert!(msix >= 6, "config + queue vectors of four devices: {msix}");
    // The write and its flush are in the image; the discarded MiB is a hole.
    assert_eq!(&sector_of(&vda, 100)[..14], b"GASANG-WRITTEN");
    assert!(sector_of(&vda, 2048).iter().all(|&b| b == 0));
    assert_eq!(&sector_of(&vda, 4096)[..20], b"gasang-sector-004096");
    let blocks_after = std::fs::metadata(&vda).unwrap().blocks();
    assert!(
        blocks_after + 2048 <= blocks_before,
        "{blocks_before} -> {blocks_after}"
    );
    assert_eq!(
        std::fs::read(&vdb).unwrap(),
        vdb_before,
        "the read-only image is unchanged"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    stderr
}

#[test]
fn test_virtio_blk_synced_data_survives_kill_9() {
    let dir = scratch("blk-kill");
    let image = dir.join("a.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let disk = image.display().to_string();
    let mut guest = Guest::boot_with(&asset("initrd-virtio.img"), &["--disk", &disk]);
    guest.wait_for("gasang-init: ready", 1);
    guest.type_line(" printf SYNCED-BEFORE-KILL | dd of=/dev/vda bs=512 seek=7 2>/dev/null; sync; echo SYNCED-$((40+2))");
    guest.wait_for("SYNCED-42", 1);
    let (status, _) = guest.kill();
    assert_eq!(status, None, "killed by SIGKILL");
    assert_eq!(&sector_of(&image, 7)[..18], b"SYNCED-BEFORE-KILL");
    std::fs::remove_dir_all(&dir).unwrap();
}
