//! Capped exponential backoff with full jitter, shared by every retrying
//! component (hinted handoff, anti-entropy, the CLI client).
//!
//! The delay before retry `n` is a uniform draw in `[0, min(max, base·2ⁿ)]`
//! ("full jitter", as in the AWS architecture note on backoff): retries
//! spread out instead of arriving in synchronised waves. The coordinator
//! never retries inside one client request beyond its deadline; it moves to
//! another replica instead.

use std::time::Duration;

/// A backoff policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Cap of the first delay.
    pub base: Duration,
    /// Cap of every delay.
    pub max: Duration,
}

impl Backoff {
    /// The cap of the delay before retry number `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `attempt`, given a uniform draw in `[0, 1]`
    /// (passed in so the policy stays a pure function).
    pub fn delay(&self, attempt: u32, draw: f64) -> Duration {
        self.ceiling(attempt).mul_f64(draw.clamp(0.0, 1.0))
    }

    /// The delay before retry `attempt` with a random draw.
    pub fn jittered(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_and_jittered() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(800));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(5));
        assert_eq!(b.delay(100, 1.0), Duration::from_secs(5));
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(400));
        for a in 0..40 {
            assert!(b.jittered(a) <= b.ceiling(a));
        }
    }
}
