//! Network namespaces of a test's own, and small servers inside them: a test's
//! traffic never leaves addresses it created.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

/// Moves the calling thread (and every process and thread it starts from now on) into
/// a new network namespace with only `lo`, up. The namespace, and any tap or veth
/// made in it, goes away with the last of them.
pub fn enter_new_netns() {
    // SAFETY: unshare(CLONE_NEWNET) takes no pointers; it moves only this thread.
    let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        r,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    sh("ip link set lo up");
}

/// Gives the namespace the outward interface passt copies its address and route
/// from: a veth pair with nothing behind it, 10.0.2.15/24, default route via
/// 10.0.2.2 (which passt maps to the namespace's loopback).
pub fn passt_uplink() {
    sh(
        "ip link add gveth0 type veth peer name gveth1 && ip link set gveth1 up \
        && ip addr add 10.0.2.15/24 dev gveth0 && ip link set gveth0 up \
        && ip route add default via 10.0.2.2",
    );
}

/// Runs `script` with sh in the current namespace; it must succeed.
pub fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into()
}

/// A file of `len` pseudo-random bytes; returns its SHA-256.
pub fn random_file(path: &Path, len: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    std::fs::write(path, &bytes).unwrap();
    sha256(path)
}

/// The SHA-256 of a file, as sha256sum prints it.
pub fn sha256(path: &Path) -> String {
    let out = sh(&format!("sha256sum '{}'", path.display()));
    out.split_whitespace().next().unwrap().to_string()
}

/// Serves `file` over HTTP/1.0 at `addr` to `requests` clients, then stops.
pub fn http_server(addr: &str, file: PathBuf, requests: usize) -> JoinHandle<()> {
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        for _ in 0..requests {
            let (mut client, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = client.read(&mut buf).unwrap();
                assert_ne!(n, 0, "the client closed before its request ended");
                request.extend_from_slice(&buf[..n]);
            }
            let body = std::fs::read(&file).unwrap();
            let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            client.write_all(head.as_bytes()).unwrap();
            client.write_all(&body).unwrap();
        }
    })
}

/// Accepts one connection at `addr` and writes what it sends, up to its end, to `to`.
pub fn sink_server(addr: &str, to: PathBuf) -> JoinHandle<()> {
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut out = std::fs::File::create(&to).unwrap();
        std::io::copy(&mut client, &mut out).unwrap();
    })
}
