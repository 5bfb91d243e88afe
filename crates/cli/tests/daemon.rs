//! gasangd and the management commands, end to end: a real daemon on a real Unix
//! socket, driven through the `gasang` CLI, running the PVH test guest on KVM.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::gasangd::{pvh_definition, Gasangd};

/// Runs `gasang console NAME`, types `keys` once `wait_for` has been printed, then
/// detaches with Ctrl-]; returns everything printed.
fn console(daemon: &Gasangd, name: &str, wait_for: &str, keys: &[u8], then: &str) -> String {
    let mut child = daemon
        .cli()
        .args(["console", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = String::new();
    let mut read_until = |marker: &str, seen: &mut String| {
        // A bound for failures only: Linux on the software CPU takes a while to boot.
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut buf = [0u8; 4096];
        while !seen.contains(marker) {
            assert!(Instant::now() < deadline, "no {marker:?} in {seen:?}");
            let n = stdout.read(&mut buf).unwrap();
            assert!(n > 0, "console closed before {marker:?}: {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    read_until(wait_for, &mut seen);
    stdin.write_all(keys).unwrap();
    read_until(then, &mut seen);
    stdin.write_all(b"\x1d").unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert!(status.success(), "console: {rest}");
    seen + &rest
}

/// `gasang list --all` shows VM t1 stopped with 2 vCPUs, in the documented columns.
fn assert_t1_listed_stopped(d: &Gasangd) {
    let table = d.ok(&["list", "--all"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STATE", "BACKEND", "VCPUS", "MEMORY", "UPTIME", "PID"]
    );
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("t1    stopped  kvm      2      32M"),
        "{table}"
    );
}

#[test]
fn test_the_whole_lifecycle_through_the_cli() {
    let d = Gasangd::start("life", &[]);
    d.define("t1", &pvh_definition("t1", "exit=halt", "vcpus = 2"));
    assert_t1_listed_stopped(&d);
    assert_eq!(
        d.ok(&["list"]).lines().count(),
        1,
        "list shows only active VMs"
    );

    let vm = &d.json(&["start", "t1"]);
    assert_eq!(
        (vm["state"].as_str(), vm["backend"].as_str()),
        (Some("running"), Some("kvm"))
    );
    let pid = vm["pid"].as_u64().unwrap();
    assert!(d.vmm_pids().contains(&u32::try_from(pid).unwrap()));
    let listed = d.json(&["list"]);
    assert_eq!(listed[0]["name"], "t1");
    assert_eq!(d.json(&["pause", "t1"])["state"], "paused");
    assert_eq!(d.json(&["resume", "t1"])["state"], "running");

    // The console: the scrollback (printed before anyone attached), then detach.
    let seen = console(&d, "t1", "exit: halt", b"", "exit: halt");
    assert!(
        seen.contains("cpus: 2") && seen.contains("[detached from t1]"),
        "{seen}"
    );
    assert_eq!(
        d.vm("t1")["state"],
        "running",
        "detaching leaves the VM running"
    );

    let info = d.ok(&["info", "t1"]);
    assert!(info.contains(&format!("pid:       {pid}")), "{info}");
    assert_eq!(d.json(&["destroy", "t1"])["state"], "stopped");
    assert!(d.vmm_pids().is_empty(), "a destroyed VM leaves no process");
    d.ok(&["undefine", "t1"]);
    assert_eq!(d.json(&["list", "--all"]), serde_json::json!([]));

    let events = d.ok(&["events"]);
    let kinds: Vec<&str> = events
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "defined",
            "started",
            "paused",
            "resumed",
            "stopped",
            "undefined"
        ],
        "{events}"
    );
    assert!(events.contains("destroy request"), "{events}");
}

#[test]
fn test_a_kill_9_of_the_daemon_loses_no_vm_and_no_console() {
    let mut d = Gasangd::start("kill9", &[]);
    d.define("echo", &pvh_definition("echo", "exit=echo", ""));
    d.define("idle", &pvh_definition("idle", "exit=halt", ""));
    let pid = d.json(&["start", "echo"])["pid"].clone();
    d.kill9();
    assert!(!d.run(&["list"]).status.success(), "the daemon is gone");
    d.restart();
    let vm = d.vm("echo");
    assert_eq!(
        (vm["state"].as_str(), &vm["pid"]),
        (Some("running"), &pid),
        "re-attached, not restarted"
    );
    assert_eq!(d.vm("idle")["state"], "stopped", "definitions are intact");
    assert_eq!(d.vmm_pids().len(), 1, "nothing started twice");
    let events = d.ok(&["events"]);
    assert!(
        events.contains("reattached") && events.contains("gasangd restarted"),
        "{events}"
    );

    // The console works after the re-attach, scrollback included: the guest echoes
    // a line, then powers off, and on_poweroff = destroy stops the VM.
    let seen = console(
        &d,
        "echo",
        "exit: echo",
        b"still here\r",
        "echo: still here",
    );
    assert!(
        seen.contains("magic:"),
        "scrollback from before the daemon died: {seen}"
    );
    let vm = d.wait_state("echo", "stopped");
    assert_eq!(vm["last_exit"], "powered off");
    assert!(d.vmm_pids().is_empty());
}

#[test]
fn test_a_kill_9_of_a_vmm_is_a_crash_and_on_crash_applies() {
    let d = Gasangd::start("crash", &[]);
    d.define(
        "again",
        &pvh_definition("again", "exit=halt", "on_crash = \"restart\""),
    );
    d.define(
        "kept",
        &pvh_definition("kept", "exit=halt", "on_crash = \"preserve\""),
    );
    let first = d.json(&["start", "again"])["pid"].as_u64().unwrap();
    let kept = d.json(&["start", "kept"])["pid"].as_u64().unwrap();
    for pid in [first, kept] {
        // SAFETY: kill(2) with two integers.
        unsafe { libc::kill(i32::try_from(pid).unwrap(), libc::SIGKILL) };
    }
    let vm = d.wait_state("kept", "crashed");
    assert_eq!(vm["last_exit"], "the VMM process was killed by signal 9");
    let deadline = Instant::now() + Duration::from_secs(30);
    let restarted = loop {
        let vm = d.vm("again");
        if vm["state"] == "running" && vm["pid"].as_u64() != Some(first) {
            break vm;
        }
        assert!(Instant::now() < deadline, "not restarted: {vm}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        restarted["last_exit"],
        "the VMM process was killed by signal 9"
    );
    let events = d.ok(&["events"]);
    assert!(events.contains("on_crash = restart"), "{events}");
    // A preserved crash is cleared by destroy; then it starts again as usual.
    assert_eq!(d.json(&["destroy", "kept"])["state"], "stopped");
    assert_eq!(d.json(&["start", "kept"])["state"], "running");
}

#[test]
fn test_shutdown_destroys_a_guest_that_ignores_the_power_button() {
    let d = Gasangd::start("shutdown", &[]);
    d.define("deaf", &pvh_definition("deaf", "exit=halt", ""));
    d.ok(&["start", "deaf"]);
    let out = d.ok(&["shutdown", "deaf", "--timeout", "1s", "--wait"]);
    assert_eq!(out, "deaf: stopped\n");
    let vm = d.vm("deaf");
    assert_eq!(
        vm["last_exit"],
        "it did not power off within 1s of the power button"
    );
    let events = d.ok(&["events"]);
    assert!(events.contains("shutdown-requested"), "{events}");
}

#[test]
fn test_create_makes_a_transient_vm_that_is_forgotten_when_it_stops() {
    let d = Gasangd::start("create", &[]);
    let file = d.dir.join("tmp.toml");
    std::fs::write(&file, pvh_definition("tmp", "exit=poweroff", "")).unwrap();
    let vm = d.json(&["create", file.to_str().unwrap()]);
    assert_eq!(
        (vm["state"].as_str(), vm["transient"].as_bool()),
        (Some("running"), Some(true))
    );
    // The guest powers off by itself; a transient VM is then gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.json(&["list", "--all"]) != serde_json::json!([]) {
        assert!(Instant::now() < deadline, "still listed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !d.dir.join("state/run/tmp").exists(),
        "its runtime directory is removed"
    );
}

#[test]
fn test_autostart_runs_once_per_host_boot_and_overcommit_is_refused() {
    let mut d = Gasangd::start("autostart", &["--memory-overcommit", "0.002"]);
    // 0.2% of this host's RAM: room for one 32M guest, not two.
    let limit = d.json(&["host"])["memory_limit_bytes"].as_u64().unwrap();
    assert!(
        (32 << 20..64 << 20).contains(&limit),
        "this test needs 16 to 32 GiB of host RAM: {limit}"
    );
    d.define(
        "auto",
        &pvh_definition("auto", "exit=halt", "autostart = true"),
    );
    d.define("more", &pvh_definition("more", "exit=halt", ""));
    assert!(d.stop().success());
    d.restart();
    assert_eq!(
        d.vm("auto")["state"],
        "stopped",
        "this boot's autostart was done"
    );
    assert!(d.stop().success());
    // The marker lives in /run, which a host boot empties: that is a new boot.
    std::fs::remove_file(d.socket.with_extension("autostarted")).unwrap();
    d.restart();
    let vm = d.wait_state("auto", "running");
    assert!(d.ok(&["events"]).contains("autostart"), "{vm}");
    let out = d.run(&["start", "more"]);
    common::assert_one_line_error(&out, 1, "would commit 64 MiB of guest memory; the limit is");
    assert_eq!(d.vm("more")["state"], "stopped");
    let host = d.json(&["host"]);
    assert_eq!(
        (
            host["committed_memory_bytes"].as_u64(),
            host["active"].as_u64()
        ),
        (Some(32 << 20), Some(1))
    );
}

/// Definitions that are refused, each with one line that names its problem.
fn assert_bad_definitions_refused(d: &Gasangd) {
    let cases: [(&str, &str); 5] = [
        (
            "name = \"no/slash\"\nkernel = \"/k\"\n",
            "name \"no/slash\": use 1 to 64",
        ),
        (
            "name = \"x\"\nkernel = \"/k\"\ncolour = 1\n",
            "unknown field `colour`",
        ),
        (
            "name = \"x\"\nkernel = \"/k\"\nmemory = \"lots\"\n",
            "memory \"lots\": not a size",
        ),
        (
            &pvh_definition("ok", "exit=halt", ""),
            "a VM named \"ok\" is already defined",
        ),
        (
            "name = \"x\"\nkernel = \"relative\"\n",
            "must be an absolute path",
        ),
    ];
    for (k, (toml, message)) in cases.iter().enumerate() {
        let file = d.dir.join(format!("bad{k}.toml"));
        std::fs::write(&file, toml).unwrap();
        let out = d.run(&["define", file.to_str().unwrap()]);
        common::assert_one_line_error(&out, 1, message);
    }
}

#[test]
fn test_bad_requests_get_a_4xx_and_change_nothing() {
    let d = Gasangd::start("bad", &[]);
    d.define("ok", &pvh_definition("ok", "exit=halt", ""));
    assert_bad_definitions_refused(&d);
    d.define(
        "nokernel",
        "name = \"nokernel\"\nkernel = \"/nonexistent/vmlinuz\"\n",
    );
    let out = d.run(&["start", "nokernel"]);
    common::assert_one_line_error(
        &out,
        1,
        "kernel /nonexistent/vmlinuz: No such file or directory",
    );
    d.define(
        "notakernel",
        &pvh_definition("notakernel", "", "").replace(
            &common::pvh_guest().display().to_string(),
            d.dir.join("ok.toml").to_str().unwrap(),
        ),
    );
    let out = d.run(&["start", "notakernel"]);
    common::assert_one_line_error(&out, 1, "ok.toml");
    assert_eq!(d.vm("notakernel")["state"], "stopped");
    d.ok(&["start", "ok"]);
    common::assert_one_line_error(&d.run(&["start", "ok"]), 1, "ok is already running");
    common::assert_one_line_error(&d.run(&["destroy", "ghost"]), 1, "no VM named \"ghost\"");
    common::assert_one_line_error(
        &d.run(&["undefine", "ok"]),
        1,
        "ok is running; destroy it first",
    );

    // Nothing stored changed.
    let names: Vec<String> = d
        .json(&["list", "--all"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["nokernel", "notakernel", "ok"]);
    assert_eq!(d.vm("ok")["state"], "running");
}

#[test]
fn test_malformed_http_requests_get_a_4xx_with_a_json_error() {
    let d = Gasangd::start("http", &[]);
    d.define("ok", &pvh_definition("ok", "exit=halt", ""));
    let big = format!("POST /v1/vms HTTP/1.1\r\nContent-Length: {}\r\n", 1 << 20);
    let cases: [(&[u8], u16, &str); 5] = [
        (
            b"POST /v1/vms HTTP/1.1\r\nContent-Length: 2\r\n",
            400,
            "the definition is not UTF-8",
        ),
        (big.as_bytes(), 413, "at most 65536 are accepted"),
        (b"GET /v1/nothing HTTP/1.1\r\n", 404, "no such API path"),
        (
            b"POST /v1/vms/ok/shutdown?timeout=soon HTTP/1.1\r\n",
            400,
            "timeout",
        ),
        (b"DELETE /v1/host HTTP/1.1\r\n", 400, "method not allowed"),
    ];
    for (head, status, message) in cases {
        let mut request = head.to_vec();
        request.extend_from_slice(b"Host: x\r\nConnection: close\r\n\r\n");
        if head.starts_with(b"POST /v1/vms HTTP/1.1\r\nContent-Length: 2") {
            request.extend_from_slice(b"\xff\xfe");
        }
        let (got, body) = d.http(&request);
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(got, status, "{body}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{body}"
        );
        assert!(error["code"].is_string(), "{body}");
    }
    assert_eq!(d.http(b"this is not HTTP\r\n\r\n").0, 400);
    assert_eq!(
        d.json(&["list", "--all"])[0]["name"],
        "ok",
        "nothing stored changed"
    );
}

#[test]
fn test_silent_and_half_finished_clients_do_not_hold_up_others() {
    let d = Gasangd::start("slow", &[]);
    let mut silent: Vec<_> = (0..20)
        .map(|_| std::os::unix::net::UnixStream::connect(&d.socket).unwrap())
        .collect();
    for s in silent.iter_mut().take(10) {
        s.write_all(b"POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nname = ")
            .unwrap();
    }
    let start = Instant::now();
    d.define("t", &pvh_definition("t", "exit=halt", ""));
    assert_eq!(d.json(&["list", "--all"])[0]["name"], "t");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(silent);
}

#[test]
fn test_fifty_concurrent_clients_leave_a_consistent_database_and_no_stray_process() {
    let mut d = Gasangd::start("load", &[]);
    let daemon = &d;
    std::thread::scope(|scope| {
        for k in 0..50 {
            scope.spawn(move || {
                let name = format!("vm{k:02}");
                let file = daemon.dir.join(format!("{name}.toml"));
                std::fs::write(&file, pvh_definition(&name, "exit=halt", "")).unwrap();
                daemon.ok(&["define", file.to_str().unwrap()]);
                daemon.ok(&["start", &name]);
                if k % 2 == 0 {
                    daemon.ok(&["destroy", &name]);
                    daemon.ok(&["undefine", &name]);
                }
            });
        }
    });
    let running: Vec<String> = d
        .json(&["list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (1..50).step_by(2).map(|k| format!("vm{k:02}")).collect();
    assert_eq!(running, expected);
    assert_eq!(d.vmm_pids().len(), 25, "one VMM per running VM");
    d.kill9();
    d.restart();
    let all: Vec<String> = d
        .json(&["list", "--all"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(all, expected, "the database agrees after a kill -9");
    assert_eq!(
        d.json(&["list"]).as_array().unwrap().len(),
        25,
        "every VM re-attached"
    );
}
