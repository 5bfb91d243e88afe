//! Paravirtual disk and network, without hardware virtualization: the Debian 12 system
//! disk of scripts/fetch-assets.sh booted on gasang's software CPU (`--accel soft`) and
//! on QEMU TCG (`-M pc -accel tcg`), both with virtio-blk-pci (the system disk and a
//! 256 MiB raw data disk) and virtio-net-pci on a tap, 1 GiB, 2 vCPUs, alternating runs
//! in one invocation. Everything runs in a network namespace the benchmark makes.
//!
//! - **login prompt**: process start to systemd's getty asking `login:`;
//! - **disk** (Debian's dd in the guest, on the data disk, O_DIRECT): sequential write
//!   then read of 256 MiB in 1 MiB blocks, and the VMM's host CPU time per GiB moved.
//!   (Debian's fio aborts at start on the software CPU, so it cannot be the tool yet:
//!   no 4 KiB random-read IOPS until it runs);
//! - **iperf3** (Debian's, both ends): TCP for 5 s from the guest to the host's end of
//!   the tap and back (`-R`);
//! - **ping**: the mean of 10 round trips from the guest to the tap.
//!
//! `cargo bench -p gasang-cli --bench disk_net_io [-- RUNS]` (default 3 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;
mod peer;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(600);
const DATA_MIB: u64 = 256;
const CMDLINE: &str = "console=ttyS0 root=/dev/vda rw panic=-1";

/// A row of the table: its name and how to read it from a sample.
type Row = (&'static str, fn(&Sample) -> f64);

/// One run's figures: seconds, MiB/s, IOPS, CPU seconds per GiB, Mbit/s, ms.
#[derive(Clone, Copy, Default)]
struct Sample {
    login: f64,
    write: f64,
    read: f64,
    write_cpu: f64,
    read_cpu: f64,
    tx: f64,
    rx: f64,
    ping: f64,
    peak_rss_kib: i64,
}

fn wait(console: &Mutex<String>, marker: &str) -> Option<Instant> {
    peer::wait_for(console, marker, 1, LIMIT)
}

/// Types `line`, waits for `key=` and returns the number after it.
fn figure(stdin: &mut impl Write, console: &Mutex<String>, line: &str, key: &str) -> Option<f64> {
    writeln!(stdin, "{line}").unwrap();
    let marker = format!("{key}=");
    wait(console, &marker)?;
    let seen = console.lock().unwrap();
    let at = seen.rfind(&marker)? + marker.len();
    let text: String = seen[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    text.parse().ok()
}

/// The VMM's user and system CPU time so far.
fn cpu_seconds(child: &Child) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no memory effects.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A timed dd of the data disk (`args`: its direction): MiB/s, and the VMM's CPU
/// seconds per GiB it moved. dd's figure follows a key the echo of the command does
/// not contain (`"K" "EY="`).
fn dd_job(
    (stdin, console, child): (&mut impl Write, &Mutex<String>, &Child),
    args: &str,
    key: &str,
) -> Option<(f64, f64)> {
    let (k0, k1) = key.split_at(1);
    let line = format!(
        "dd {args} bs=1M count={DATA_MIB} 2>&1 | awk '/copied/ {{print \"{k0}\" \"{k1}=\" $(NF-3)}}'"
    );
    let before = cpu_seconds(child);
    let seconds = figure(stdin, console, &line, key)?;
    let per_gib = (cpu_seconds(child) - before) * 1024.0 / DATA_MIB as f64;
    Some((DATA_MIB as f64 / seconds, per_gib))
}

fn measure(mut cmd: Command) -> Option<Sample> {
    let start = Instant::now();
    let (mut child, mut stdin, console) = peer::spawn_console(&mut cmd, Stdio::null());
    let sample = run_guest(&mut stdin, &console, &child, start);
    let Some(mut sample) = sample else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    writeln!(stdin, "poweroff -f").unwrap();
    sample.peak_rss_kib = peer::reap(&child);
    Some(sample)
}

fn run_guest(
    stdin: &mut impl Write,
    console: &Mutex<String>,
    child: &Child,
    start: Instant,
) -> Option<Sample> {
    let mut s = Sample {
        login: (wait(console, "gasang login:")? - start).as_secs_f64(),
        ..Sample::default()
    };
    eprintln!("login prompt after {:.1} s", s.login);
    writeln!(stdin, "root").unwrap();
    wait(console, "Password:")?;
    writeln!(stdin, "gasang").unwrap();
    wait(console, "root@gasang:~#")?;
    let setup =
        "systemctl stop systemd-networkd; dev=$(ls /sys/class/net | grep -v '^lo$' | head -1); \
        ip addr add 10.0.0.2/24 dev $dev; ip link set $dev up; echo; echo NET-$((6*7))";
    writeln!(stdin, "{setup}").unwrap();
    wait(console, "NET-42")?;
    let io = (&mut *stdin, console, child);
    (s.write, s.write_cpu) = dd_job(io, "if=/dev/zero of=/dev/vdb oflag=direct", "SW")?;
    let io = (&mut *stdin, console, child);
    (s.read, s.read_cpu) = dd_job(io, "if=/dev/vdb of=/dev/null iflag=direct", "SR")?;
    eprintln!("disk: write {:.0} MiB/s, read {:.0} MiB/s", s.write, s.read);
    let ping = "ping -c 10 -i 0.2 10.0.0.1 | awk -F/ '/^rtt/ {print \"P\" \"ING=\" $5}'";
    s.ping = figure(stdin, console, ping, "PING")?;
    let iperf = |dir: &str, key: &str| {
        let (k0, k1) = key.split_at(1);
        format!(
            "iperf3 -c 10.0.0.1 -t 5 -f m {dir} | awk '/receiver/ {{print \"{k0}\" \"{k1}=\" $7}}'"
        )
    };
    s.tx = figure(stdin, console, &iperf("", "TX"), "TX")?;
    s.rx = figure(stdin, console, &iperf("-R", "RX"), "RX")?;
    Some(s)
}

/// A fresh copy of the system disk and a data disk full of bytes, for one run.
fn disks(dir: &Path, system: &Path) -> (PathBuf, PathBuf) {
    let (sys, data) = (dir.join("system.img"), dir.join("data.img"));
    let copy = format!(
        "cp --sparse=always '{}' '{}' && head -c {}M /dev/urandom > '{}'",
        system.display(),
        sys.display(),
        DATA_MIB,
        data.display()
    );
    assert!(Command::new("sh")
        .args(["-c", &copy])
        .status()
        .unwrap()
        .success());
    (sys, data)
}

/// Moves the benchmark into a network namespace of its own with a tap at
/// 10.0.0.1/24 and an iperf3 server on it.
fn network() -> Child {
    // SAFETY: unshare(CLONE_NEWNET) takes no pointers; it moves only this thread.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
    let setup = "ip link set lo up && ip tuntap add gbtap0 mode tap \
        && ip addr add 10.0.0.1/24 dev gbtap0 && ip link set gbtap0 up";
    assert!(Command::new("sh")
        .args(["-c", setup])
        .status()
        .unwrap()
        .success());
    Command::new("iperf3")
        .args(["-s", "-B", "10.0.0.1"])
        .stdout(Stdio::null())
        .spawn()
        .expect("iperf3 is needed (apt-get install iperf3)")
}

fn main() {
    let runs = peer::runs();
    let assets = common::root().join("assets/cache");
    let system = assets.join("debian-disk.img");
    assert!(system.exists(), "run scripts/fetch-assets.sh first");
    let (kernel, initrd) = (
        assets.join("debian-disk.vmlinuz"),
        assets.join("debian-disk.initrd"),
    );
    let gasang_bin = peer::release_gasang();
    let mut iperf = network();
    let dir = common::scratch("bench-io");
    let guest = peer::LinuxGuest {
        kernel: &kernel,
        initrd: &initrd,
        cmdline: CMDLINE,
        memory: "1G",
        vcpus: 2,
    };
    let gasang = || {
        let (sys, data) = disks(&dir, &system);
        let mut c = guest.gasang(&gasang_bin);
        c.arg("--disk").arg(&sys).arg("--disk").arg(&data);
        c.args(["--net", "tap=gbtap0"]);
        measure(c)
    };
    let qemu = || {
        let (sys, data) = disks(&dir, &system);
        let mut c = guest.qemu("pc");
        for (image, id) in [(&sys, "d0"), (&data, "d1")] {
            let drive = format!("file={},format=raw,if=none,id={id}", image.display());
            let device = format!("virtio-blk-pci,drive={id}");
            c.args(["-drive", &drive, "-device", &device]);
        }
        c.args(["-netdev", "tap,id=n0,ifname=gbtap0,script=no,downscript=no"])
            .args(["-device", "virtio-net-pci,netdev=n0"]);
        measure(c)
    };
    let results = peer::alternate(runs, gasang, qemu);
    let _ = iperf.kill();
    let _ = iperf.wait();
    let _ = std::fs::remove_dir_all(&dir);
    print(runs, &results);
}

fn median(samples: &[Sample], metric: fn(&Sample) -> f64) -> f64 {
    let mut v: Vec<f64> = samples.iter().map(metric).collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print(runs: usize, results: &peer::Results<Sample>) {
    println!(
        "{runs} runs each (hung: gasang {}, QEMU {}), medians of the rest; \
         ratio = gasang / QEMU TCG",
        results.hangs[0], results.hangs[1]
    );
    println!("| | gasang --accel soft | QEMU -accel tcg | ratio |");
    println!("|---|---|---|---|");
    let rows: [Row; 9] = [
        ("login prompt (s, lower is better)", |s| s.login),
        ("dd O_DIRECT write, 1 MiB blocks (MiB/s)", |s| s.write),
        ("dd O_DIRECT read, 1 MiB blocks (MiB/s)", |s| s.read),
        ("host CPU per GiB written (s, lower is better)", |s| {
            s.write_cpu
        }),
        ("host CPU per GiB read (s, lower is better)", |s| s.read_cpu),
        ("iperf3 guest to host (Mbit/s)", |s| s.tx),
        ("iperf3 host to guest (Mbit/s)", |s| s.rx),
        ("ping (ms, lower is better)", |s| s.ping),
        ("peak RSS (MiB)", |s| s.peak_rss_kib as f64 / 1024.0),
    ];
    for (name, metric) in rows {
        let (a, b) = (
            median(&results.ours, metric),
            median(&results.theirs, metric),
        );
        println!("| {name} | {a:.2} | {b:.2} | {:.2} |", a / b);
    }
}
