//! Time for the software backend: the host's TSC (the guest's TSC is the host's) and
//! its rate, measured once.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The host's time-stamp counter (the guest's TSC is the host's).
pub use gasang_softcpu::host_tsc as tsc;

/// TSC ticks per second, measured against the monotonic clock over 20 ms, once.
pub fn tsc_hz() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| {
        let (t0, c0) = (Instant::now(), tsc());
        std::thread::sleep(Duration::from_millis(20));
        let (ticks, elapsed) = (tsc() - c0, t0.elapsed());
        let hz = u128::from(ticks) * 1_000_000_000 / elapsed.as_nanos().max(1);
        u64::try_from(hz).unwrap_or(u64::MAX).max(1)
    })
}

/// Nanoseconds on the monotonic clock since this process first asked.
pub fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// How long until TSC `deadline`, from TSC `now`.
pub fn until(deadline: u64, now: u64) -> Duration {
    let ticks = deadline.saturating_sub(now);
    Duration::from_nanos((u128::from(ticks) * 1_000_000_000 / u128::from(tsc_hz())) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_tsc_rate_is_plausible_and_deadlines_convert() {
        let hz = tsc_hz();
        assert!((100_000_000..20_000_000_000).contains(&hz), "{hz}");
        assert_eq!(until(hz, 0), Duration::from_secs(1));
        assert_eq!(until(5, 10), Duration::ZERO);
    }
}
