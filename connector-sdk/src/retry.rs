//! The one backoff policy: exponential with full jitter, capped. The host uses it between
//! delivery attempts and restarts; a connector that retries on its own (a source's reader
//! tasks) uses it too.
//!
//! Full jitter (a uniform delay between zero and the exponential cap) spreads retries of many
//! pipelines and sink instances so they do not hit a recovering service in lockstep.

use std::time::Duration;

use rand::Rng;

/// Retry delays for one kind of failure.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The delay before the next try; each call doubles the cap up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = delay(self.initial, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Full-jitter delay for `attempt` (0-based): uniform in `[0, min(max, initial * 2^attempt)]`.
pub fn delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = initial
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    if cap.is_zero() {
        return cap;
    }
    Duration::from_nanos(rand::rng().random_range(0..=cap.as_nanos() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_growing_cap() {
        let i = Duration::from_millis(100);
        let m = Duration::from_secs(2);
        for attempt in 0..40 {
            let cap = (i * 2u32.saturating_pow(attempt.min(20))).min(m);
            for _ in 0..50 {
                assert!(delay(i, m, attempt) <= cap);
            }
        }
        let mut b = Backoff::new(i, m);
        b.next_delay();
        assert_eq!(b.attempts(), 1);
        b.reset();
        assert_eq!(b.attempts(), 0);
    }
}
