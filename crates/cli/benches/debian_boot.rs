//! A Debian 12 system with systemd, without hardware virtualization: gasang's software
//! CPU (`--accel soft`) beside QEMU's (`-M pc -accel tcg`; its microvm machine hangs
//! here with two vCPUs, at "tsc: Unable to calibrate against PIT"), alternating runs,
//! in one invocation, on the same guest: Debian's cloud kernel and the
//! mmdebstrap-built userland of scripts/fetch-assets.sh as the initramfs, 1 GiB,
//! 2 vCPUs.
//!
//! - **login prompt**: process start to systemd's getty asking `login:`;
//! - **shell**: root's name and password typed, to bash's prompt (login, PAM, bash);
//! - **python3**: `python3 -c ...` typed, to its output (a dynamically linked
//!   interpreter starting up);
//! - **peak RSS**: `ru_maxrss` of the VMM process, after `poweroff -f`.
//!
//! `cargo bench -p gasang-cli --bench debian_boot [-- RUNS]` (default 3 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;
mod peer;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Sample {
    login: Duration,
    shell: Duration,
    python: Duration,
    peak_rss_kib: i64,
}

/// How long a guest may take to show a marker: past that it hung.
const LIMIT: Duration = Duration::from_secs(300);

fn wait_for(console: &Mutex<String>, marker: &str, times: usize) -> Option<Instant> {
    peer::wait_for(console, marker, times, LIMIT)
}

/// Types `line` and waits for `marker` to appear `times` times: how long that took.
fn round_trip(
    stdin: &mut impl Write,
    console: &Mutex<String>,
    (line, marker, times): (&str, &str, usize),
) -> Option<Duration> {
    let typed = Instant::now();
    writeln!(stdin, "{line}").unwrap();
    Some(wait_for(console, marker, times)? - typed)
}

fn measure(mut cmd: Command) -> Option<Sample> {
    let start = Instant::now();
    let (mut child, mut stdin, console) = peer::spawn_console(&mut cmd, Stdio::null());
    let sample = (|| {
        let login = wait_for(&console, "gasang login:", 1)? - start;
        round_trip(&mut stdin, &console, ("root", "Password:", 1))?;
        let shell = round_trip(&mut stdin, &console, ("gasang", "root@gasang:~#", 1))?;
        let python = "python3 -c 'print(\"PY\", 6 * 7)'";
        let python = round_trip(&mut stdin, &console, (python, "PY 42", 1))?;
        Some((login, shell, python))
    })();
    let Some((login, shell, python)) = sample else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    writeln!(stdin, "poweroff -f").unwrap();
    let peak_rss_kib = peer::reap(&child);
    Some(Sample {
        login,
        shell,
        python,
        peak_rss_kib,
    })
}

fn main() {
    let runs = peer::runs();
    let assets = common::root().join("assets/cache");
    let (kernel, initrd) = (assets.join("vmlinuz"), assets.join("debian.cpio"));
    assert!(initrd.exists(), "run scripts/fetch-assets.sh first");
    let gasang_bin = peer::release_gasang();
    let cmdline = "console=ttyS0 rdinit=/sbin/init panic=-1";
    let guest = peer::LinuxGuest {
        kernel: &kernel,
        initrd: &initrd,
        cmdline,
        memory: "1G",
        vcpus: 2,
    };
    let gasang = || guest.gasang(&gasang_bin);
    let qemu = || guest.qemu("pc");
    let results = peer::alternate(runs, || measure(gasang()), || measure(qemu()));
    let rows: [peer::Row<Sample>; 3] = [
        ("login prompt", |s| s.login),
        ("root's login to a shell", |s| s.shell),
        ("python3 -c, typed to its output", |s| s.python),
    ];
    peer::print_table(runs, &results, &rows, |s| s.peak_rss_kib);
}
