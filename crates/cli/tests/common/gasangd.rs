//! A real gasangd on a real Unix socket for a test, and the `gasang` CLI pointed at
//! it. Dropping it kills the daemon and every VMM process it started, and removes
//! its state directory.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A daemon under test.
pub struct Gasangd {
    /// Its state directory (short: socket paths are limited to 108 bytes).
    pub dir: PathBuf,
    /// Its API socket.
    pub socket: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl Gasangd {
    /// Starts a daemon with a fresh state directory named after `name`.
    pub fn start(name: &str, args: &[&str]) -> Self {
        let dir = PathBuf::from(format!("/tmp/gd-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut daemon = Self {
            socket: dir.join("api.sock"),
            dir,
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        daemon.restart();
        daemon
    }

    /// Starts the daemon again on the same state (after [`Self::kill9`] or
    /// [`Self::stop`]).
    pub fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("gasangd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gasangd"))
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(self.dir.join("state"))
            .arg("-v")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&self.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "gasangd did not listen: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9` of the daemon (its VMs run on).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and waits for the daemon to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: kill(2) with two integers; the child has not been reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        child.wait().unwrap()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gasangd.log")).unwrap_or_default()
    }

    /// `gasang --socket SOCKET`.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gasang"));
        cmd.arg("--socket").arg(&self.socket).stdin(Stdio::null());
        cmd
    }

    /// Runs a CLI command.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().unwrap()
    }

    /// Runs a CLI command that must succeed, and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gasang {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a CLI command with `--json`, and parses what it prints.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// VM `name` as `gasang info --json` shows it.
    pub fn vm(&self, name: &str) -> Value {
        self.json(&["info", name])
    }

    /// Writes `toml` to a file in the state directory and defines it.
    pub fn define(&self, name: &str, toml: &str) -> PathBuf {
        let file = self.dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        self.ok(&["define", file.to_str().unwrap()]);
        file
    }

    /// Waits until VM `name`'s state is `state`.
    pub fn wait_state(&self, name: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let vm = self.vm(name);
            if vm["state"] == state {
                return vm;
            }
            assert!(Instant::now() < deadline, "{name} never {state}: {vm}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `request` (raw HTTP/1.1) and returns the status and body.
    pub fn http(&self, request: &[u8]) -> (u16, String) {
        let mut stream = UnixStream::connect(&self.socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let status = reply
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = reply
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    /// PIDs of the live VMM processes this daemon started (their command lines name
    /// a runtime directory in its state directory).
    pub fn vmm_pids(&self) -> Vec<u32> {
        processes_naming(&self.dir.join("state/run"))
    }
}

/// Live (not zombie) processes whose command line contains `dir`.
pub fn processes_naming(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if !zombie
            && String::from_utf8_lossy(&cmdline).contains(&needle)
            && pid != std::process::id()
        {
            pids.push(pid);
        }
    }
    pids
}

impl Drop for Gasangd {
    fn drop(&mut self) {
        self.kill9();
        for pid in processes_naming(&self.dir) {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) with two integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A definition of the PVH test guest on KVM.
pub fn pvh_definition(name: &str, cmdline: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nkernel = {:?}\ncmdline = \"{cmdline}\"\nmemory = \"32M\"\n\
         accel = \"kvm\"\n{extra}\n",
        super::pvh_guest().display().to_string()
    )
}
