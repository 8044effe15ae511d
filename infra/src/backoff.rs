//! Capped exponential backoff for transient failures (database, broker or registry down),
//! shared by the consumer runtime and the outbox relay.
//!
//! A transient failure is retried forever: giving up would mean either dropping the message or
//! dead-lettering a message that is perfectly fine, and both break guarantee 3 ("a broken
//! dependency never drops data"). The cap keeps a recovered dependency from waiting long for the
//! next attempt; the jitter spreads the partitions of many replicas so they do not hammer a
//! recovering database in lockstep.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// `initial` is the first delay; each further attempt doubles it up to `max`. A `max`
    /// below `initial` is raised to `initial`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
        }
    }

    /// The delay before retry number `attempt` (1 = first retry), without jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(31);
        let factor = 1u32 << exp;
        self.initial
            .checked_mul(factor)
            .map_or(self.max, |d| d.min(self.max))
    }

    /// The delay with "equal jitter": uniformly in [delay/2, delay] for `unit` in [0, 1).
    /// Taking `unit` as an argument keeps this deterministic under test.
    pub fn jittered(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.delay(attempt);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        base.mul_f64(0.5 + unit / 2.0)
    }

    /// The delay with random jitter.
    pub fn next_delay(&self, attempt: u32) -> Duration {
        self.jittered(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (1..=7).map(|a| b.delay(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn attempt_zero_is_the_initial_delay() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.delay(0), Duration::from_millis(100));
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
        let b = Backoff::new(
            Duration::from_secs(u64::MAX / 4),
            Duration::from_secs(u64::MAX),
        );
        assert_eq!(b.delay(40), Duration::from_secs(u64::MAX));
    }

    #[test]
    fn max_below_initial_is_raised() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.delay(5), Duration::from_secs(2));
    }

    #[test]
    fn jitter_stays_between_half_and_full_delay() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        assert_eq!(b.jittered(3, 0.0), Duration::from_millis(200));
        assert_eq!(b.jittered(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.jittered(3, f64::NAN), Duration::from_millis(200));
        for _ in 0..100 {
            let d = b.next_delay(3);
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
    }
}
