//! A Linux guest on the software CPU, driven through its serial console on pipes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An asset of scripts/fetch-assets.sh.
pub fn asset(name: &str) -> PathBuf {
    let path = super::root().join("assets/cache").join(name);
    assert!(path.exists(), "{name}: run scripts/fetch-assets.sh first");
    path
}

/// A guest on the software CPU with the console on pipes, read by a thread.
pub struct Guest {
    child: Child,
    stdin: ChildStdin,
    console: Arc<Mutex<String>>,
    /// Read by a thread of its own, so a chatty gasang (`-v`) never blocks on it.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Guest {
    /// Debian's kernel with the busybox initramfs and 256 MiB, and `extra` arguments.
    pub fn boot(extra: &[&str]) -> Self {
        Self::boot_with(&asset("initrd.img"), extra)
    }

    /// Debian's kernel with `initrd` and 256 MiB, and `extra` arguments.
    pub fn boot_with(initrd: &Path, extra: &[&str]) -> Self {
        let mut args = vec!["--memory", "256M"];
        args.extend(extra);
        Self::start(initrd, &args)
    }

    /// Debian's kernel on the software CPU with `initrd` and `args`.
    pub fn start(initrd: &Path, args: &[&str]) -> Self {
        Self::start_kernel(&asset("vmlinuz"), initrd, args)
    }

    /// `kernel` on the software CPU with `initrd` and `args`.
    pub fn start_kernel(kernel: &Path, initrd: &Path, args: &[&str]) -> Self {
        let mut child = super::gasang()
            .args(["run", "--accel", "soft", "--kernel"])
            .arg(kernel)
            .arg("--initrd")
            .arg(initrd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let console = super::console_reader(child.stdout.take().unwrap());
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        });
        Self {
            child,
            stdin,
            console,
            stderr: Some(stderr),
        }
    }

    /// Waits (up to 3 minutes: a debug build on a shared host) until `marker` has
    /// appeared `times` times on the console; returns the console so far.
    pub fn wait_for(&mut self, marker: &str, times: usize) -> String {
        self.wait_within(marker, times, Duration::from_secs(180))
    }

    /// Waits for a whole system's boot: up to 7 minutes, for systemd's on a debug
    /// build of the software CPU on a loaded 2-core host (3.5 minutes seen).
    pub fn wait_for_boot(&mut self, marker: &str) -> String {
        self.wait_within(marker, 1, Duration::from_secs(420))
    }

    /// Waits up to `limit` until `marker` has appeared `times` times; returns the
    /// console so far, or fails the test with it.
    fn wait_within(&mut self, marker: &str, times: usize, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let seen = self.console.lock().unwrap().clone();
            if seen.matches(marker).count() >= times {
                return seen;
            }
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.take_stderr();
                panic!("no {times}x '{marker}' on the console:\n{seen}\nstderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// Everything the guest printed so far, and from then on.
    pub fn console(&self) -> Arc<Mutex<String>> {
        Arc::clone(&self.console)
    }

    /// Kills gasang with SIGKILL and reaps it: its status (none: a signal) and stderr.
    pub fn kill(mut self) -> (Option<i32>, String) {
        self.child.kill().unwrap();
        self.exit()
    }

    /// Waits (up to 2 minutes) for gasang to exit: its status and stderr.
    pub fn exit(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let seen = self.console.lock().unwrap().clone();
                panic!("gasang did not exit within 2 minutes:\n{seen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status.code(), self.take_stderr())
    }

    /// What gasang wrote to stderr, once it has exited.
    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|reader| super::join_within(reader, "gasang's stderr"))
            .unwrap_or_default()
    }
}

/// A test that fails part-way leaves no gasang behind.
impl Drop for Guest {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value after `key=` in the guest's output (not in the echoed command).
pub fn value<'a>(console: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}=");
    console
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix))
        .find(|v| !v.starts_with('$'))
        .unwrap_or_else(|| panic!("no {key}= in:\n{console}"))
}

/// The virtio initramfs with guests/vm-tests/xfer.c (built static) as /bin/xfer: a
/// second cpio archive appended to the first, which the kernel unpacks over it.
pub fn initrd_with_xfer() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = super::root();
            let dir = root.join("target/vm-tests");
            std::fs::create_dir_all(dir.join("bin")).unwrap();
            let status = std::process::Command::new("cc")
                .args(["-O2", "-static", "-Wall", "-o"])
                .arg(dir.join("bin/xfer"))
                .arg(root.join("guests/vm-tests/xfer.c"))
                .status()
                .expect("gcc is needed to build the guest's test program");
            assert!(status.success(), "cannot build guests/vm-tests/xfer.c");
            let tmp = dir.join(format!("initrd-xfer.img.{}", std::process::id()));
            let out = dir.join("initrd-xfer.img");
            // The kernel looks for the second archive's magic only at a multiple of 4
            // bytes (zeros before it are skipped): pad the first to that.
            let mut image = std::fs::read(asset("initrd-virtio.img")).unwrap();
            image.resize(image.len().next_multiple_of(4), 0);
            std::fs::write(&tmp, image).unwrap();
            let script = format!(
                "cd '{}' && echo bin/xfer | /bin/busybox cpio -o -H newc >> '{}'",
                dir.display(),
                tmp.display(),
            );
            let status = std::process::Command::new("sh")
                .args(["-c", &script])
                .status()
                .unwrap();
            assert!(status.success(), "cannot append xfer to the initramfs");
            std::fs::rename(&tmp, &out).unwrap();
            out
        })
        .clone()
}
