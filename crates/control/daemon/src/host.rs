//! The host's resources, read from /proc.

/// Host RAM in bytes (`MemTotal`), 0 if /proc/meminfo cannot be read.
pub fn memory_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    parse_mem_total(&text).unwrap_or(0)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// CPUs this process may run on.
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}

/// The host's boot ID: runtime directories from another boot are stale.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mem_total_is_read_in_bytes() {
        let text = "MemFree:  10 kB\nMemTotal:       24576000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_576_000 * 1024));
        assert_eq!(parse_mem_total("nothing"), None);
        assert!(memory_bytes() > 0 && cpus() > 0 && !boot_id().is_empty());
    }
}
