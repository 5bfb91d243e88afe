//! Memory sizes as users write them ("512M", "2G", "1024").

use std::fmt;
use std::str::FromStr;

use crate::layout::MIN_MEMORY;

/// A memory size the user gave is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemorySizeError {
    /// Not a number with an optional K/M/G/T suffix.
    #[error("'{0}' is not a size: use a number with an optional suffix K, M, G or T (a bare number is MiB), e.g. 512M")]
    Syntax(String),
    /// Below what a guest needs.
    #[error("{0} is too little memory: the minimum is 16 MiB")]
    TooSmall(String),
    /// More than the host can sensibly back.
    #[error("{asked} is more memory than this host can give a guest (at most {max})")]
    TooLarge {
        /// What was asked for.
        asked: String,
        /// The largest allowed on this host.
        max: String,
    },
    /// Not a whole number of 4 KiB pages.
    #[error("{0} is not a multiple of 4 KiB")]
    Unaligned(String),
}

/// A guest memory size: at least 16 MiB, page aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MemorySize(u64);

impl MemorySize {
    /// Validates a size in bytes.
    pub fn new(bytes: u64) -> Result<Self, MemorySizeError> {
        if bytes < MIN_MEMORY {
            return Err(MemorySizeError::TooSmall(human(bytes)));
        }
        if !bytes.is_multiple_of(4096) {
            return Err(MemorySizeError::Unaligned(human(bytes)));
        }
        Ok(Self(bytes))
    }

    /// Checks the size against what this host has: at most 15/16 of its RAM, so the
    /// host keeps room for itself (guest pages are allocated lazily, but can all be touched).
    pub fn check_host_limit(self, host_total: u64) -> Result<Self, MemorySizeError> {
        let max = host_total / 16 * 15;
        if self.0 > max {
            return Err(MemorySizeError::TooLarge {
                asked: human(self.0),
                max: human(max),
            });
        }
        Ok(self)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for MemorySize {
    type Err = MemorySizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || MemorySizeError::Syntax(s.to_string());
        let t = s.trim();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, suffix) = t.split_at(digits);
        let num: u64 = num.parse().map_err(|_| syntax())?;
        let shift = match suffix.to_ascii_uppercase().as_str() {
            "K" | "KB" | "KIB" => 10,
            "" | "M" | "MB" | "MIB" => 20,
            "G" | "GB" | "GIB" => 30,
            "T" | "TB" | "TIB" => 40,
            _ => return Err(syntax()),
        };
        let bytes = num.checked_mul(1 << shift).ok_or_else(syntax)?;
        Self::new(bytes)
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&human(self.0))
    }
}

/// "512 MiB", "2 GiB", or bytes when not a whole number of MiB.
fn human(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// Total RAM of this host, from /proc/meminfo.
pub fn host_total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_memory_size_parses_suffixes() {
        assert_eq!("512M".parse::<MemorySize>().unwrap().bytes(), 512 << 20);
        assert_eq!("2G".parse::<MemorySize>().unwrap().bytes(), 2 << 30);
        assert_eq!("2GiB".parse::<MemorySize>().unwrap().bytes(), 2 << 30);
        assert_eq!("65536k".parse::<MemorySize>().unwrap().bytes(), 64 << 20);
    }

    #[test]
    fn test_memory_size_bare_number_is_mib() {
        assert_eq!("128".parse::<MemorySize>().unwrap().bytes(), 128 << 20);
    }

    #[test]
    fn test_memory_size_rejects_garbage() {
        assert!(matches!(
            "lots".parse::<MemorySize>(),
            Err(MemorySizeError::Syntax(_))
        ));
        assert!(matches!(
            "12X".parse::<MemorySize>(),
            Err(MemorySizeError::Syntax(_))
        ));
        assert!(matches!(
            "".parse::<MemorySize>(),
            Err(MemorySizeError::Syntax(_))
        ));
        assert!(matches!(
            "-5M".parse::<MemorySize>(),
            Err(MemorySizeError::Syntax(_))
        ));
        assert!(matches!(
            "99999999999999T".parse::<MemorySize>(),
            Err(MemorySizeError::Syntax(_))
        ));
    }

    #[test]
    fn test_memory_size_below_minimum_is_too_small() {
        let err = "8M".parse::<MemorySize>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "8 MiB is too little memory: the minimum is 16 MiB"
        );
    }

    #[test]
    fn test_memory_size_above_host_limit_is_too_large() {
        let size: MemorySize = "64G".parse().unwrap();
        assert!(matches!(
            size.check_host_limit(16 << 30),
            Err(MemorySizeError::TooLarge { .. })
        ));
        assert!(size.check_host_limit(128 << 30).is_ok());
    }

    #[test]
    fn test_memory_size_unaligned_is_rejected() {
        assert!(matches!(
            MemorySize::new((16 << 20) + 1),
            Err(MemorySizeError::Unaligned(_))
        ));
    }
}
