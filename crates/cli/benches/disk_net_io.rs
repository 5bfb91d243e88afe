//! Paravirtual disk and network, without hardware virtualization: the Debian 12 system
//! disk of scripts/fetch-assets.sh booted on gasang's software CPU (`--accel soft`) and
//! on QEMU TCG (`-M pc -accel tcg`), both with virtio-blk-pci (the system disk and a
//! 256 MiB raw data disk) and virtio-net-pci on a tap, 1 GiB, 2 vCPUs, alternating runs
//! in one invocation. Everything runs in a network namespace the benchmark makes.
//!
//! - **login prompt**: process start to systemd's getty asking `login:`;
//! - **disk** (Debian's fio in the guest, on the data disk, O_DIRECT, libaio):
//!   sequential write then read of 256 MiB in 1 MiB blocks (queue depth 4), with the
//!   VMM's host CPU time per GiB moved; 4 KiB random reads for 10 s (queue depth 16);
//! - **iperf3** (Debian's, both ends): TCP for 5 s from the guest to the host's end of
//!   the tap and back (`-R`);
//! - **ping**: the mean of 10 round trips from the guest to the tap;
//! - **where the time goes**: the VMM's CPU time during those jobs, by thread
//!   (`/proc/PID/task`): vCPUs, device threads, disk I/O workers, the rest.
//!
//! `cargo bench -p gasang-cli --bench disk_net_io [-- RUNS]` (default 3 runs each).

#![allow(clippy::unwrap_used)] // a benchmark: failing loudly is right

#[path = "../tests/common/mod.rs"]
mod common;
mod peer;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(600);
const DATA_MIB: u64 = 256;
const CMDLINE: &str = "console=ttyS0 root=/dev/vda rw panic=-1";
/// The fio options every job shares: the data disk, O_DIRECT, libaio, one terse line.
const FIO: &str = "fio --name=j --filename=/dev/vdb --direct=1 --ioengine=libaio \
    --output-format=terse --terse-version=3";

/// A row of the table: its name and how to read it from a sample.
type Row = (&'static str, fn(&Sample) -> f64);

/// CPU seconds by kind of thread.
type Threads = BTreeMap<&'static str, f64>;

/// One run's figures: seconds, MiB/s, IOPS, CPU seconds per GiB, Mbit/s, ms.
#[derive(Clone, Default)]
struct Sample {
    login: f64,
    write: f64,
    read: f64,
    write_cpu: f64,
    read_cpu: f64,
    iops: f64,
    tx: f64,
    rx: f64,
    ping: f64,
    peak_rss_kib: i64,
    /// The VMM's CPU time during the disk and network jobs.
    threads: Threads,
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

/// `command | awk` printing `key=` and `value` (an awk expression) for the lines
/// matching `pattern`, with `fields` separating fields. The key is split in two
/// strings, so that the echo of the command line does not contain it.
fn keyed(command: &str, (fields, pattern): (&str, &str), value: &str, key: &str) -> String {
    let (k0, k1) = key.split_at(1);
    format!("{command} | awk -F'{fields}' '{pattern} {{print \"{k0}\" \"{k1}=\" {value}}}'")
}

/// The user and system CPU seconds of each of `pid`'s threads, by thread ID, with
/// its name; and the whole process's (which keeps exited threads' time).
fn thread_times(pid: u32) -> (BTreeMap<u32, (String, f64)>, f64) {
    let times = |stat: &str| {
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let ticks = fields[11].parse::<f64>().ok()? + fields[12].parse::<f64>().ok()?;
        // SAFETY: sysconf has no memory effects.
        Some(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
    };
    let mut threads = BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
    {
        let dir = entry.unwrap().path();
        let (Ok(stat), Ok(comm)) = (
            std::fs::read_to_string(dir.join("stat")),
            std::fs::read_to_string(dir.join("comm")),
        ) else {
            continue; // it just exited
        };
        let tid = dir.file_name().unwrap().to_string_lossy().parse().unwrap();
        threads.insert(tid, (comm.trim().to_string(), times(&stat).unwrap_or(0.0)));
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    (threads, times(&stat).unwrap())
}

/// The kind of a VMM thread by its name: gasang's (`vcpu N`, `virtio-blk`,
/// `virtio-blk-ioN`) or QEMU's with `-name debug-threads=on` (`CPU N/TCG`, `worker`).
fn thread_kind(name: &str) -> &'static str {
    if name.starts_with("vcpu") || name.starts_with("CPU ") {
        "vCPU threads"
    } else if name.starts_with("virtio-blk-io") || name.starts_with("iou-wrk") || name == "worker" {
        "disk I/O workers"
    } else if name.starts_with("virtio-") {
        "device threads"
    } else {
        "main loop and the rest"
    }
}

/// The CPU time each kind of thread spent between two [`thread_times`]; threads gone
/// by the end (short-lived workers) count as disk I/O workers.
fn time_by_kind(before: &(BTreeMap<u32, (String, f64)>, f64), pid: u32) -> Threads {
    let after = thread_times(pid);
    let mut kinds = Threads::new();
    let mut live = 0.0;
    for (tid, (name, t)) in &after.0 {
        let spent = t - before.0.get(tid).map_or(0.0, |b| b.1);
        *kinds.entry(thread_kind(name)).or_default() += spent;
        live += spent;
    }
    *kinds.entry("disk I/O workers").or_default() += (after.1 - before.1 - live).max(0.0);
    kinds
}

/// A fio job on the data disk (`args`: its pattern), printing terse `field` after
/// `key`; and the VMM's CPU seconds per GiB the job moved.
fn fio_job(
    (stdin, console, child): (&mut impl Write, &Mutex<String>, &Child),
    args: &str,
    field: u32,
    key: &str,
) -> Option<(f64, f64)> {
    let line = keyed(
        &format!("{FIO} {args}"),
        (";", ""),
        &format!("${field}"),
        key,
    );
    let before = thread_times(child.id()).1;
    let value = figure(stdin, console, &line, key)?;
    let per_gib = (thread_times(child.id()).1 - before) * 1024.0 / DATA_MIB as f64;
    Some((value, per_gib))
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

/// Logs in and gives the guest 10.0.0.2 on its network interface. networkd (socket
/// activation included: it would start again and drop the address) is stopped first.
fn log_in(stdin: &mut impl Write, console: &Mutex<String>) -> Option<()> {
    writeln!(stdin, "root").unwrap();
    wait(console, "Password:")?;
    writeln!(stdin, "gasang").unwrap();
    wait(console, "root@gasang:~#")?;
    let setup =
        "systemctl stop systemd-networkd.socket systemd-networkd; dev=$(ls /sys/class/net | grep -v '^lo$' | head -1); \
        ip addr add 10.0.0.2/24 dev $dev; ip link set $dev up; echo; echo NET-$((6*7))";
    writeln!(stdin, "{setup}").unwrap();
    wait(console, "NET-42").map(drop)
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
    log_in(stdin, console)?;
    let threads = thread_times(child.id());
    let sequential = |rw| format!("--rw={rw} --bs=1M --iodepth=4 --size={DATA_MIB}M");
    // Terse fields: 7 and 8 are the read KiB/s and IOPS, 48 the write KiB/s.
    let io = (&mut *stdin, console, child);
    (s.write, s.write_cpu) = fio_job(io, &sequential("write"), 48, "SW")?;
    let io = (&mut *stdin, console, child);
    (s.read, s.read_cpu) = fio_job(io, &sequential("read"), 7, "SR")?;
    (s.write, s.read) = (s.write / 1024.0, s.read / 1024.0);
    let random = "--rw=randread --bs=4k --iodepth=16 --runtime=10 --time_based";
    s.iops = fio_job((&mut *stdin, console, child), random, 8, "RR")?.0;
    eprintln!(
        "disk: write {:.0} MiB/s, read {:.0} MiB/s, {:.0} IOPS",
        s.write, s.read, s.iops
    );
    let ping = keyed("ping -c 10 -i 0.2 10.0.0.1", ("/", "/^rtt/"), "$5", "PING");
    s.ping = figure(stdin, console, &ping, "PING")?;
    let iperf = |dir: &str, key| {
        let command = format!("iperf3 -c 10.0.0.1 -t 5 -f m {dir}");
        keyed(&command, (" ", "/receiver/"), "$7", key)
    };
    s.tx = figure(stdin, console, &iperf("", "TX"), "TX")?;
    s.rx = figure(stdin, console, &iperf("-R", "RX"), "RX")?;
    s.threads = time_by_kind(&threads, child.id());
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
        c.args(["-name", "debian,debug-threads=on"]);
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

fn median(samples: &[Sample], metric: impl Fn(&Sample) -> f64) -> f64 {
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
    let rows: [Row; 10] = [
        ("login prompt (s, lower is better)", |s| s.login),
        ("fio O_DIRECT write, 1 MiB blocks (MiB/s)", |s| s.write),
        ("fio O_DIRECT read, 1 MiB blocks (MiB/s)", |s| s.read),
        ("fio 4 KiB random read, depth 16 (IOPS)", |s| s.iops),
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
    println!("\nThe VMM's CPU seconds during the disk and network jobs, by thread (medians):");
    println!("| thread | gasang --accel soft | QEMU -accel tcg |");
    println!("|---|---|---|");
    let kinds: std::collections::BTreeSet<&str> = (results.ours.iter())
        .chain(&results.theirs)
        .flat_map(|s| s.threads.keys().copied())
        .collect();
    for kind in kinds {
        let spent = |s: &Sample| s.threads.get(kind).copied().unwrap_or(0.0);
        let (a, b) = (median(&results.ours, spent), median(&results.theirs, spent));
        println!("| {kind} | {a:.1} | {b:.1} |");
    }
}
