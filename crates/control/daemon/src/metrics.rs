//! `GET /metrics`: per-VM figures in Prometheus's text format, read from each VMM's
//! control socket and from /proc.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use gasang_api::{VmInfo, VmState};
use gasang_control::VmmStats;

use crate::daemon::Daemon;
use crate::vmm;

/// Clock ticks per second in /proc/PID/stat: USER_HZ, fixed at 100 by Linux's ABI.
const USER_HZ: f64 = 100.0;

const STATES: [(VmState, &str); 6] = [
    (VmState::Stopped, "stopped"),
    (VmState::Starting, "starting"),
    (VmState::Running, "running"),
    (VmState::Paused, "paused"),
    (VmState::ShuttingDown, "shutting-down"),
    (VmState::Crashed, "crashed"),
];

/// One VM's figures.
struct Sample {
    info: VmInfo,
    stats: Option<VmmStats>,
    cpu: Option<ProcessCpu>,
    rss_bytes: Option<u64>,
}

/// Seconds of CPU time of a VMM process.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct ProcessCpu {
    total: f64,
    vcpus: f64,
}

/// The figures, gathered now.
pub async fn serve(State(daemon): State<Arc<Daemon>>) -> impl IntoResponse {
    let mut samples = Vec::new();
    for info in daemon.list() {
        let (stats, cpu, rss_bytes) = match info.pid {
            Some(pid) => {
                let dir = daemon.config.run_dir(&info.name);
                let stats = match vmm::call(&dir, &gasang_control::Request::Stats).await {
                    Ok(gasang_control::Reply::Stats(stats)) => Some(stats),
                    _ => None,
                };
                (stats, process_cpu(pid), rss(pid))
            }
            None => (None, None, None),
        };
        samples.push(Sample {
            info,
            stats,
            cpu,
            rss_bytes,
        });
    }
    let content = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    (content, render(&samples))
}

/// A per-VM series: name, type, help, and its value for a sample.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Sample) -> Option<f64>,
);

const SERIES: [Series; 5] = [
    ("gasang_vm_vcpus", "gauge", "vCPUs defined.", |s| {
        Some(f64::from(s.info.vcpus))
    }),
    (
        "gasang_vm_memory_bytes",
        "gauge",
        "Guest memory defined.",
        |s| Some(s.info.memory_bytes as f64),
    ),
    (
        "gasang_vm_rss_bytes",
        "gauge",
        "Resident memory of the VMM process (guest pages touched plus the VMM's own).",
        |s| s.rss_bytes.map(|b| b as f64),
    ),
    (
        "gasang_vm_cpu_seconds_total",
        "counter",
        "CPU time of the whole VMM process.",
        |s| s.cpu.map(|c| c.total),
    ),
    (
        "gasang_vm_vcpu_seconds_total",
        "counter",
        "CPU time of the vCPU threads.",
        |s| s.cpu.map(|c| c.vcpus),
    ),
];

fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "gasang_vm_state",
        "gauge",
        "1 for the state the VM is in.",
    );
    for s in samples {
        for (state, word) in STATES {
            let on = u8::from(s.info.state == state);
            let vm = &s.info.name;
            let _ = writeln!(out, "gasang_vm_state{{vm=\"{vm}\",state=\"{word}\"}} {on}");
        }
    }
    for (name, kind, help, value) in SERIES {
        family(&mut out, name, kind, help);
        for s in samples {
            if let Some(v) = value(s) {
                let _ = writeln!(out, "{name}{{vm=\"{}\"}} {v}", s.info.name);
            }
        }
    }
    traps(&mut out, samples);
    out
}

fn traps(out: &mut String, samples: &[Sample]) {
    let name = "gasang_vm_device_traps_total";
    let help = "Guest accesses that trapped to a device, by device and direction.";
    family(out, name, "counter", help);
    for s in samples {
        let Some(stats) = &s.stats else { continue };
        for d in &stats.devices {
            for (op, n) in [("read", d.reads), ("write", d.writes)] {
                let _ = writeln!(
                    out,
                    "{name}{{vm=\"{}\",device=\"{}\",space=\"{}\",base=\"{:#x}\",op=\"{op}\"}} {n}",
                    s.info.name, d.name, d.space, d.base
                );
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The CPU time of process `pid` and of its threads named `vcpu N`.
fn process_cpu(pid: u32) -> Option<ProcessCpu> {
    let total = stat_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let mut vcpus = 0.0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.starts_with("vcpu") {
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            vcpus += stat_seconds(&stat).unwrap_or(0.0);
        }
    }
    Some(ProcessCpu { total, vcpus })
}

/// utime + stime of a /proc stat line, in seconds.
fn stat_seconds(stat: &str) -> Option<f64> {
    // Fields after the parenthesized name: state is the 3rd field, utime the 14th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident memory of process `pid`.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stat_times_are_read_past_a_name_with_spaces() {
        let stat = "42 (vcpu 0) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(stat_seconds(stat), Some(3.0));
        assert_eq!(stat_seconds("garbage"), None);
        let me = std::process::id();
        assert!(process_cpu(me).is_some() && rss(me).is_some_and(|b| b > 0));
    }
}
