//! Rate limiting for log lines a guest can trigger.
//!
//! A hostile guest can hit an unknown port millions of times a second; each call site
//! that logs on its behalf holds a `RateLimit` and logs only when it allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Allows `burst` events per window of `window_secs` seconds, lock-free.
///
/// The state is one word: the window number in the high 40 bits and the count of
/// events seen in it in the low 24, so one compare-and-swap updates both.
#[derive(Debug)]
pub struct RateLimit {
    state: AtomicU64,
    burst: u32,
    window_secs: u64,
}

const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

impl RateLimit {
    /// A limiter allowing `burst` events per `window_secs` (both at least 1).
    pub const fn new(burst: u32, window_secs: u64) -> Self {
        Self {
            state: AtomicU64::new(0),
            burst,
            window_secs,
        }
    }

    /// Whether one more event may be logged now.
    pub fn allow(&self) -> bool {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.allow_at(secs)
    }

    fn allow_at(&self, now_secs: u64) -> bool {
        let window = now_secs / self.window_secs.max(1);
        let mut allowed = false;
        let _ = self
            .state
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                let (w, count) = (s >> COUNT_BITS, s & COUNT_MASK);
                let count = if w == window { count } else { 0 };
                allowed = count < u64::from(self.burst);
                let count = (count + 1).min(COUNT_MASK);
                Some((window << COUNT_BITS) | count)
            });
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rate_limit_allows_burst_then_refuses() {
        let limit = RateLimit::new(3, 10);
        let allowed: Vec<bool> = (0..5).map(|_| limit.allow_at(100)).collect();
        assert_eq!(allowed, [true, true, true, false, false]);
    }

    #[test]
    fn test_rate_limit_allows_again_in_next_window() {
        let limit = RateLimit::new(1, 10);
        assert!(limit.allow_at(100));
        assert!(!limit.allow_at(105));
        assert!(limit.allow_at(110));
    }
}
