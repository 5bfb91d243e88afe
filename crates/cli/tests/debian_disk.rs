//! A real Debian 12 system booted from its virtio disk on the software CPU: its own
//! kernel and initramfs-tools initrd, systemd, udev and networkd, with user
//! networking through passt and the virtio entropy source, and Debian's fio verifying
//! what it wrote to a second disk; what it writes and syncs is in the image
//! afterwards, and the file system is clean.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::process::Command;

use common::guest::{asset, value, Guest};
use common::netns::{enter_new_netns, http_server, passt_uplink, sh};
use common::{join_within, scratch};

#[test]
fn test_debian_boots_from_virtio_blk_logs_in_uses_the_network_and_keeps_its_writes() {
    enter_new_netns();
    passt_uplink();
    let dir = scratch("debian-disk");
    let (disk, data) = (dir.join("disk.img"), dir.join("data.img"));
    sh(&format!(
        "cp --sparse=always --reflink=auto '{}' '{}' && truncate -s 16M '{}'",
        asset("debian-disk.img").display(),
        disk.display(),
        data.display()
    ));
    let page = dir.join("page");
    std::fs::write(&page, "gasang-payload-ok\n").unwrap();
    let server = http_server("127.0.0.1:8080", page, 1);
    let system = format!("{},serial=sys0", disk.display());
    let second = format!("{},serial=data1", data.display());
    let cmdline = "console=ttyS0 root=/dev/vda rw panic=-1";
    let args = [
        "--memory",
        "1G",
        "--vcpus",
        "2",
        "--cmdline",
        cmdline,
        "--disk",
        &system,
        "--disk",
        &second,
        "--net",
        "user",
        "--rng",
    ];
    let kernel = asset("debian-disk.vmlinuz");
    let mut guest = Guest::start_kernel(&kernel, &asset("debian-disk.initrd"), &args);
    guest.wait_for_boot("gasang login:");
    guest.type_line("root");
    guest.wait_for("Password:", 1);
    guest.type_line("gasang");
    guest.wait_for("root@gasang:~#", 1);
    // The first echo ends the line bash's bracketed-paste escape starts.
    guest.type_line(concat!(
        "for i in $(seq 60); do ip -4 -o addr show | grep -q 10.0.2.15 && break; sleep 1; done;",
        " echo; echo ROOT=$(findmnt -no SOURCE /); echo IDS=$(ls /dev/disk/by-id | sort | paste -sd,);",
        " echo RNG=$(cat /sys/class/misc/hw_random/rng_current);",
        " echo ADDR=$(ip -4 -o addr show scope global | awk '{print $4}');",
        " exec 3<>/dev/tcp/10.0.2.2/8080; printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3;",
        " echo FETCHED=$(tail -n1 <&3); exec 3<&-;",
        // Debian's fio (libaio, O_DIRECT): 4 MiB written to the data disk and read
        // back against its checksums; terse field 5 is the job's error (0: none).
        " echo FIO=$(fio --name=v --filename=/dev/vdb --direct=1 --rw=write --bs=64k",
        " --size=4M --ioengine=libaio --iodepth=4 --verify=crc32c --output-format=terse",
        " | cut -d';' -f5);",
        " echo persisted-$((6*7)) > /root/proof; sync; echo DONE-$((6*7))"
    ));
    let console = guest.wait_for("DONE-42", 1);
    guest.type_line("poweroff");
    let (status, stderr) = guest.exit();
    join_within(server, "the HTTP server");
    assert_eq!(status, Some(0), "{stderr}\n{console}");
    assert_eq!(value(&console, "ROOT"), "/dev/vda");
    assert_eq!(
        value(&console, "IDS"),
        "virtio-data1,virtio-sys0",
        "udev names the disks by their serials"
    );
    assert_eq!(value(&console, "RNG"), "virtio_rng.0");
    assert_eq!(
        value(&console, "ADDR"),
        "10.0.2.15/24",
        "networkd's DHCP lease from passt"
    );
    assert_eq!(value(&console, "FETCHED"), "gasang-payload-ok");
    assert_eq!(
        value(&console, "FIO"),
        "0",
        "fio's verified write:\n{console}"
    );
    let proof = Command::new("debugfs")
        .args(["-R", "cat /root/proof"])
        .arg(&disk)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&proof.stdout), "persisted-42\n");
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
