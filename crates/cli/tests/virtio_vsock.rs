//! virtio-vsock with the hybrid host side, under Debian's own vsock driver on the
//! software CPU: one stream started by a host program through `CONNECT`, one started
//! by the guest towards `<socket>_P`, 16 MiB each, and a refused port.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use common::guest::{initrd_with_xfer, value, Guest};
use common::netns::{random_file, sha256};
use common::{join_within, scratch};

/// Connects to guest port `port` through the hybrid socket; the `OK` line, if any.
fn connect(socket: &PathBuf, port: u32) -> (BufReader<UnixStream>, String) {
    let mut stream = UnixStream::connect(socket).unwrap();
    // A stalled stream fails the test rather than hanging the suite.
    let limit = Some(std::time::Duration::from_secs(120));
    stream.set_read_timeout(limit).unwrap();
    stream.set_write_timeout(limit).unwrap();
    stream
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    (reader, line)
}

#[test]
fn test_virtio_vsock_moves_16_mib_each_way_and_refuses_closed_ports() {
    let dir = scratch("vsock");
    let socket = dir.join("vm.vsock");
    let payload = dir.join("payload");
    let sum = random_file(&payload, 16 << 20);
    // Where the guest's connection to host port 6000 arrives.
    let inbound = UnixListener::bind(format!("{}_6000", socket.display())).unwrap();
    let back = dir.join("back");
    let to = back.clone();
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = inbound.accept().unwrap();
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).unwrap();
        std::fs::write(to, bytes).unwrap();
    });
    let vsock = format!("cid=7,socket={}", socket.display());
    let mut guest = Guest::start(
        &initrd_with_xfer(),
        &["--memory", "512M", "--vsock", &vsock],
    );
    guest.wait_for("gasang-init: ready", 1);
    // Nobody listens on guest port 9999: the guest refuses, the host socket closes.
    let (_, refused) = connect(&socket, 9999);
    assert_eq!(refused, "", "no OK for a closed port");
    guest.type_line(" xfer recv vsock:5000 > /tmp/f");
    guest.wait_for("xfer: listening on vsock:5000", 1);
    let (mut reader, ok) = connect(&socket, 5000);
    assert!(ok.starts_with("OK ") && ok.ends_with('\n'), "{ok:?}");
    let stream = reader.get_mut();
    stream.write_all(&std::fs::read(&payload).unwrap()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    guest.type_line(concat!(
        " echo GOT=$(sha256sum /tmp/f | cut -d' ' -f1);",
        " xfer send vsock:2:6000 /tmp/f; echo SENT=$?; echo DONE-$((6*7))"
    ));
    let console = guest.wait_for("DONE-42", 1);
    guest.type_line("poweroff -f");
    let (status, stderr) = guest.exit();
    join_within(receiver, "the port 6000 receiver");
    assert_eq!(status, Some(0), "{stderr}\n{console}");
    assert_eq!(value(&console, "GOT"), sum, "16 MiB host to guest");
    assert_eq!(value(&console, "SENT"), "0");
    assert_eq!(sha256(&back), sum, "16 MiB guest to host");
    assert!(!socket.exists(), "gasang removes its socket");
    std::fs::remove_dir_all(&dir).unwrap();
}
