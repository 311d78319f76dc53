//! A hybrid logical clock: the time a node stamps versions with
//! (`Content::modified_micros`), which the change feed orders by.
//!
//! Wall clocks drift and are set wrong; a node whose clock is behind would
//! stamp its writes in the past, where a feed consumer may already have
//! passed. The clock here is `max(wall clock, last time seen + 1 µs)`: it
//! never goes back, and it is pulled forward by the times the node sees
//! from others (each [`dynkv_rpc::messages::Pong`] carries the answering
//! node's clock, so every node catches up with the fastest one within a
//! ping interval; a coordinated write carries its stamp). A clock far ahead
//! drags the others with it (bounded by [`MAX_AHEAD`]), which the feed
//! tolerates; one behind is what it must not meet.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Most a seen time may be ahead of this node's wall clock and still be
/// taken (a corrupt or absurd stamp cannot push the clock into next year).
pub const MAX_AHEAD: Duration = Duration::from_secs(3600);

/// One node's hybrid logical clock, in Unix microseconds.
#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

impl Hlc {
    /// A fresh stamp: above every earlier stamp and every time seen.
    pub fn now(&self) -> u64 {
        let wall = crate::now_micros();
        let mut last = self.last.load(Ordering::Acquire);
        loop {
            let next = wall.max(last.saturating_add(1));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// The clock's reading without taking a stamp.
    pub fn peek(&self) -> u64 {
        crate::now_micros().max(self.last.load(Ordering::Acquire))
    }

    /// Takes in a time seen from another node.
    pub fn observe(&self, t: u64) {
        let cap = crate::now_micros().saturating_add(MAX_AHEAD.as_micros() as u64);
        self.last.fetch_max(t.min(cap), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_rise_and_follow_what_is_seen_within_the_cap() {
        let c = Hlc::default();
        let a = c.now();
        let b = c.now();
        assert!(b > a);
        let ahead = crate::now_micros() + 10_000_000;
        c.observe(ahead);
        assert!(c.now() > ahead);
        assert!(c.peek() > ahead);
        // Behind: ignored.
        c.observe(1);
        assert!(c.now() > ahead);
        // Absurdly ahead: capped.
        c.observe(u64::MAX);
        assert!(c.peek() <= crate::now_micros() + MAX_AHEAD.as_micros() as u64 + 1);
    }
}
