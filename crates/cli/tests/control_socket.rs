//! `gasang run --runtime-dir`: the control socket, the console socket and the exit
//! record, on KVM with the PVH test guest.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{gasang, pvh_guest, scratch};

/// Starts the PVH guest supervised in `dir`, and waits for its sockets.
fn start(dir: &Path, cmdline: &str) -> Vmm {
    let child = gasang()
        .args(["run", "--accel", "kvm", "--memory", "32M", "--name", "t1"])
        .arg("--kernel")
        .arg(pvh_guest())
        .args(["--cmdline", cmdline])
        .arg("--runtime-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(dir.join("control.sock").exists() && dir.join("console.sock").exists()) {
        assert!(Instant::now() < deadline, "no sockets in {}", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
    Vmm(child)
}

struct Control(BufReader<UnixStream>);

impl Control {
    fn connect(dir: &Path) -> Self {
        Self(BufReader::new(
            UnixStream::connect(dir.join("control.sock")).unwrap(),
        ))
    }

    fn call(&mut self, request: &str) -> String {
        let stream = self.0.get_mut();
        stream.write_all(request.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        line
    }
}

/// A VMM process; a test that fails part-way leaves none behind.
struct Vmm(Child);

impl std::ops::Deref for Vmm {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Vmm {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Reads the console socket into `seen` (everything so far) until `marker` appears.
fn console_until(console: &mut UnixStream, seen: &mut Vec<u8>, marker: &str) {
    console
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(marker) {
        let n = console.read(&mut buf).unwrap();
        let so_far = String::from_utf8_lossy(seen);
        assert!(n > 0, "console closed before '{marker}': {so_far:?}");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn test_control_socket_info_pause_resume_stats_and_quit() {
    let dir = scratch("control");
    let mut child = start(&dir, "exit=halt");
    let mut control = Control::connect(&dir);
    let info = control.call(r#"{"op":"info"}"#);
    assert!(info.contains(r#""name":"t1""#), "{info}");
    assert!(info.contains(r#""state":"running""#), "{info}");
    assert!(info.contains(&format!(r#""pid":{}"#, child.id())), "{info}");
    assert_eq!(control.call(r#"{"op":"pause"}"#), "\"done\"\n");
    assert!(control
        .call(r#"{"op":"info"}"#)
        .contains(r#""state":"paused""#));
    assert_eq!(control.call(r#"{"op":"resume"}"#), "\"done\"\n");
    assert!(control
        .call(r#"{"op":"info"}"#)
        .contains(r#""state":"running""#));
    let stats = control.call(r#"{"op":"stats"}"#);
    assert!(stats.contains(r#""name":"serial""#), "{stats}");
    let bad = control.call(r#"{"op":"fly"}"#);
    assert!(bad.starts_with(r#"{"error":"malformed message"#), "{bad}");
    // The scrollback: the guest printed before this client connected.
    let mut console = UnixStream::connect(dir.join("console.sock")).unwrap();
    console_until(&mut console, &mut Vec::new(), "exit: halt");
    assert_eq!(control.call(r#"{"op":"quit"}"#), "\"done\"\n");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let record = std::fs::read_to_string(dir.join("exit.json")).unwrap();
    assert_eq!(
        record,
        "{\"kind\":\"quit\",\"detail\":\"quit on request\",\"status\":0}\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_console_socket_types_into_the_guest_and_poweroff_is_recorded() {
    let dir = scratch("console-socket");
    let mut child = start(&dir, "exit=echo");
    let mut console = UnixStream::connect(dir.join("console.sock")).unwrap();
    let mut seen = Vec::new();
    console_until(&mut console, &mut seen, "exit: echo");
    console.write_all(b"hello over a socket\r").unwrap();
    console_until(&mut console, &mut seen, "echo: hello over a socket");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // The guest's last words reach the client before its socket closes.
    console.read_to_end(&mut seen).unwrap();
    let all = String::from_utf8_lossy(&seen);
    assert!(all.ends_with("exit: poweroff\n"), "{all:?}");
    let record = std::fs::read_to_string(dir.join("exit.json")).unwrap();
    assert!(record.contains(r#""kind":"poweroff""#), "{record}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_runtime_dir_in_use_or_missing_is_one_line_status_2() {
    let dir = scratch("control-in-use");
    let mut first = start(&dir, "exit=halt");
    let out = gasang()
        .args(["run", "--accel", "kvm", "--memory", "32M", "--kernel"])
        .arg(pvh_guest())
        .arg("--runtime-dir")
        .arg(&dir)
        .output()
        .unwrap();
    common::assert_one_line_error(&out, 2, "is in use by a running VMM");
    let out = gasang()
        .args(["run", "--accel", "kvm", "--memory", "32M", "--kernel"])
        .arg(pvh_guest())
        .args(["--runtime-dir", "/nonexistent/gasang"])
        .output()
        .unwrap();
    common::assert_one_line_error(
        &out,
        2,
        "--runtime-dir /nonexistent/gasang: not a directory",
    );
    Control::connect(&dir).call(r#"{"op":"quit"}"#);
    first.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn test_a_definitions_run_args_start_the_vmm_it_describes() {
    let dir = scratch("definition");
    let text = format!(
        "name = \"def1\"\nkernel = {:?}\ncmdline = \"exit=halt\"\nmemory = \"32M\"\n\
         vcpus = 2\naccel = \"kvm\"\non_reboot = \"destroy\"\n",
        pvh_guest().display().to_string()
    );
    let definition = gasang_api::VmDefinition::from_toml(&text).unwrap();
    let mut child = Vmm(gasang()
        .args(definition.run_args(&dir))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("control.sock").exists() {
        assert!(Instant::now() < deadline, "no control socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut control = Control::connect(&dir);
    let info = control.call(r#"{"op":"info"}"#);
    for field in [
        r#""name":"def1""#,
        r#""vcpus":2"#,
        r#""memory_bytes":33554432"#,
    ] {
        assert!(info.contains(field), "{field} in {info}");
    }
    control.call(r#"{"op":"quit"}"#);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}
