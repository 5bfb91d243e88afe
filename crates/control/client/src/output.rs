//! How the commands print: aligned tables for people, `--json` for scripts.

use gasang_api::{Event, HostInfo, VmInfo};

/// `gasang list`: one row per VM.
pub fn vm_table(vms: &[VmInfo]) -> String {
    let mut rows = vec![[
        "NAME", "STATE", "BACKEND", "VCPUS", "MEMORY", "UPTIME", "PID",
    ]
    .map(String::from)];
    for vm in vms {
        rows.push([
            vm.name.clone(),
            serde_plain(&vm.state),
            vm.backend.clone().unwrap_or_else(|| serde_plain(&vm.accel)),
            vm.vcpus.to_string(),
            bytes(vm.memory_bytes),
            vm.uptime_ms.map_or_else(|| "-".into(), duration),
            vm.pid.map_or_else(|| "-".into(), |p| p.to_string()),
        ]);
    }
    table(&rows)
}

/// `gasang info`: one `key: value` line per field.
pub fn vm_details(vm: &VmInfo) -> String {
    let mut lines = vec![
        ("name", vm.name.clone()),
        ("state", serde_plain(&vm.state)),
        ("accel", serde_plain(&vm.accel)),
        ("backend", vm.backend.clone().unwrap_or_else(|| "-".into())),
        ("vcpus", vm.vcpus.to_string()),
        ("memory", bytes(vm.memory_bytes)),
        ("pid", vm.pid.map_or_else(|| "-".into(), |p| p.to_string())),
        ("uptime", vm.uptime_ms.map_or_else(|| "-".into(), duration)),
        ("autostart", vm.autostart.to_string()),
        ("transient", vm.transient.to_string()),
    ];
    if let Some(last) = &vm.last_exit {
        lines.push(("last exit", last.clone()));
    }
    lines
        .iter()
        .map(|(k, v)| format!("{:<11}{v}\n", format!("{k}:")))
        .collect()
}

/// `gasang host`.
pub fn host_details(host: &HostInfo) -> String {
    format!(
        "cpus:       {} ({} vCPUs committed)\nmemory:     {} ({} committed, limit {})\nvms:        {} defined, {} active\n",
        host.cpus,
        host.committed_vcpus,
        bytes(host.memory_bytes),
        bytes(host.committed_memory_bytes),
        bytes(host.memory_limit_bytes),
        host.defined,
        host.active
    )
}

/// `gasang events`: one line per event.
pub fn event_line(event: &Event) -> String {
    let secs = event.time_unix_ms / 1000;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!(
        "{h:02}:{m:02}:{s:02}.{:03} {:<16} {:<18} {}\n",
        event.time_unix_ms % 1000,
        event.vm,
        serde_plain(&event.kind),
        event.reason
    )
}

/// Columns padded to their widest cell, two spaces apart.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (k, (cell, w)) in row.iter().zip(widths).enumerate() {
            if k + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A unit enum's wire name ("shutting-down").
pub fn serde_plain<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// 536870912 → "512M".
pub fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (size, unit) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{}{unit}", n / size)
            } else {
                format!("{:.1}{unit}", n as f64 / size as f64)
            };
        }
    }
    format!("{n}B")
}

/// 3723000 ms → "1h02m".
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s / 60) % 60),
        _ => format!("{}d{:02}h", s / 86400, (s / 3600) % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sizes_durations_and_tables() {
        assert_eq!(bytes(512 << 20), "512M");
        assert_eq!(bytes(3 << 29), "1.5G");
        assert_eq!(bytes(10), "10B");
        assert_eq!(duration(59_999), "59s");
        assert_eq!(duration(3_723_000), "1h02m");
        let rows = [
            ["A".to_string(), "BB".to_string()],
            ["ccc".to_string(), "d".to_string()],
        ];
        assert_eq!(table(&rows), "A    BB\nccc  d\n");
    }
}
