//! virtio-net on a tap device and on passt, driven by Debian's own virtio-net driver
//! on the software CPU. Each test runs in a network namespace of its own: every
//! address it touches is one it made.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::guest::{asset, initrd_with_xfer, value, Guest};
use common::netns::{
    enter_new_netns, http_server, passt_uplink, random_file, sh, sha256, sink_server,
};
use common::{join_within, scratch};

#[test]
fn test_virtio_net_tap_pings_and_moves_64_mib_each_way() {
    enter_new_netns();
    sh(
        "ip tuntap add gtap0 mode tap && ip addr add 10.0.0.1/24 dev gtap0 \
        && ip link set gtap0 up",
    );
    let dir = scratch("net-tap");
    let payload = dir.join("payload");
    let sum = random_file(&payload, 64 << 20);
    let download = http_server("10.0.0.1:8080", payload, 1);
    let upload = sink_server("10.0.0.1:8081", dir.join("uploaded"));
    let mut guest = Guest::start(
        &initrd_with_xfer(),
        &[
            "--memory",
            "512M",
            "--net",
            "tap=gtap0,mac=52:54:00:12:34:56",
        ],
    );
    guest.wait_for("gasang-init: ready", 1);
    guest.type_line(concat!(
        " ip link set eth0 up; ip addr add 10.0.0.2/24 dev eth0;",
        " echo MAC=$(cat /sys/class/net/eth0/address);",
        " ping -c 2 -W 10 10.0.0.1 >/dev/null; echo PING=$?;",
        " wget -q -O /tmp/f http://10.0.0.1:8080/payload; echo WGET=$?;",
        " echo GOT=$(sha256sum /tmp/f | cut -d' ' -f1);",
        " xfer send tcp:10.0.0.1:8081 /tmp/f; echo SENT=$?;",
        " echo PINGME-$((1+1)); read x; echo DONE-$((6*7))"
    ));
    guest.wait_for("PINGME-2", 1);
    let host_ping = sh("/bin/busybox ping -c 2 -W 10 10.0.0.2 >/dev/null && echo ok");
    guest.type_line("go");
    let console = guest.wait_for("DONE-42", 1);
    guest.type_line("poweroff -f");
    let (status, stderr) = guest.exit();
    assert_eq!(status, Some(0), "{stderr}\n{console}");
    assert_eq!(value(&console, "MAC"), "52:54:00:12:34:56");
    assert_eq!(value(&console, "PING"), "0", "the guest pings the tap");
    assert_eq!(host_ping.trim(), "ok", "the tap pings the guest");
    assert_eq!(value(&console, "WGET"), "0", "{console}");
    assert_eq!(value(&console, "GOT"), sum, "64 MiB host to guest");
    assert_eq!(value(&console, "SENT"), "0", "{console}");
    join_within(download, "the HTTP server");
    join_within(upload, "the upload sink");
    assert_eq!(sha256(&dir.join("uploaded")), sum, "64 MiB guest to host");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_virtio_net_user_gets_dhcp_and_fetches_from_the_host_through_passt() {
    enter_new_netns();
    passt_uplink();
    let dir = scratch("net-user");
    let payload = dir.join("payload");
    let sum = random_file(&payload, 8 << 20);
    // passt maps the gateway's address to the host's loopback.
    let server = http_server("127.0.0.1:8080", payload, 1);
    let mut guest = Guest::boot_with(&asset("initrd-virtio.img"), &["-v", "--net", "user"]);
    guest.wait_for("gasang-init: ready", 1);
    guest.type_line(concat!(
        " ip link set eth0 up; udhcpc -i eth0 -n -q -t 10; echo DHCP=$?;",
        " wget -q -O - http://10.0.2.2:8080/payload | sha256sum > /tmp/sum;",
        " echo GOT=$(cut -d' ' -f1 /tmp/sum); echo DONE-$((6*7))"
    ));
    let console = guest.wait_for("DONE-42", 1);
    guest.type_line("poweroff -f");
    let (status, stderr) = guest.exit();
    join_within(server, "the HTTP server");
    assert_eq!(status, Some(0), "{stderr}\n{console}");
    assert_eq!(value(&console, "DHCP"), "0", "{console}");
    assert!(
        console.contains("udhcpc: eth0 10.0.2.15/24 router 10.0.2.2"),
        "{console}"
    );
    assert_eq!(value(&console, "GOT"), sum, "8 MiB through passt");
    // gasang stopped its passt.
    let pid = stderr
        .split("network: passt, pid ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no passt pid in:\n{stderr}"));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "passt {pid} outlived gasang"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
