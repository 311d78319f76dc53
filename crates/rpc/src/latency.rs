//! A decayed estimate of one peer's call latency: a moving average and a
//! p99 from a small fixed-bucket histogram.
//!
//! The coordinator uses it twice on every read: to ask the fastest replicas
//! first, and to decide how long to wait for a replica before sending a
//! speculative read to another (Cassandra's `speculative_retry = p99`).
//! Both need only a rough, recent figure, so the histogram has fixed
//! logarithmic buckets and forgets by halving every count once
//! [`DECAY_EVERY`] samples have been added: old samples weigh less and less,
//! and a peer that became slow shows it within a few hundred calls.
//!
//! Pure: no clock, no I/O; the caller measures and records.

use std::time::Duration;

/// Buckets of the histogram.
const BUCKETS: usize = 40;
/// Upper bound of the first bucket, in microseconds.
const FIRST_BOUND_MICROS: f64 = 50.0;
/// Samples between two halvings of every bucket.
pub const DECAY_EVERY: u32 = 256;
/// Weight of a new sample in the moving average.
const EWMA_ALPHA: f64 = 0.125;

/// Upper bound (microseconds) of bucket `i`: each bucket is √2 times wider
/// than the previous one, from 50 µs to about 50 s.
fn bound_micros(i: usize) -> f64 {
    FIRST_BOUND_MICROS * 2f64.powf(i as f64 / 2.0)
}

/// The bucket a latency falls in (the last one catches everything longer).
fn bucket_of(micros: f64) -> usize {
    if micros <= FIRST_BOUND_MICROS {
        return 0;
    }
    let i = (2.0 * (micros / FIRST_BOUND_MICROS).log2()).ceil() as usize;
    i.min(BUCKETS - 1)
}

/// Recent call latencies of one peer.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: [f64; BUCKETS],
    since_decay: u32,
    ewma_micros: Option<f64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: [0.0; BUCKETS],
            since_decay: 0,
            ewma_micros: None,
        }
    }
}

/// What [`LatencyHistogram::estimate`] reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencyEstimate {
    /// Moving average, for ordering replicas by speed.
    pub mean: Duration,
    /// Recent 99th percentile (a bucket's upper bound, so never below the
    /// true value by more than the bucket width), for speculative retry.
    pub p99: Duration,
}

impl LatencyHistogram {
    /// Adds one call's latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = latency.as_secs_f64() * 1e6;
        self.since_decay += 1;
        if self.since_decay >= DECAY_EVERY {
            self.since_decay = 0;
            for c in &mut self.counts {
                *c /= 2.0;
            }
        }
        self.counts[bucket_of(micros)] += 1.0;
        self.ewma_micros = Some(match self.ewma_micros {
            None => micros,
            Some(m) => m + EWMA_ALPHA * (micros - m),
        });
    }

    /// The latency below which a fraction `q` (0..=1) of recent calls fell,
    /// or `None` before the first sample.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total: f64 = self.counts.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let want = q.clamp(0.0, 1.0) * total;
        let mut seen = 0.0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want && *c > 0.0 {
                return Some(Duration::from_secs_f64(bound_micros(i) / 1e6));
            }
        }
        Some(Duration::from_secs_f64(bound_micros(BUCKETS - 1) / 1e6))
    }

    /// The moving average and p99, or `None` before the first sample.
    pub fn estimate(&self) -> Option<LatencyEstimate> {
        Some(LatencyEstimate {
            mean: Duration::from_secs_f64(self.ewma_micros? / 1e6),
            p99: self.quantile(0.99)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn nothing_recorded_means_no_estimate() {
        assert_eq!(LatencyHistogram::default().estimate(), None);
    }

    #[test]
    fn p99_sees_the_slow_tail_and_the_mean_does_not() {
        let mut h = LatencyHistogram::default();
        for i in 0..200 {
            h.record(if i % 50 == 0 { ms(100) } else { ms(1) });
        }
        let e = h.estimate().unwrap();
        assert!(e.p99 >= ms(100), "p99 {:?}", e.p99);
        assert!(e.mean < ms(20), "mean {:?}", e.mean);
    }

    #[test]
    fn a_peer_that_became_fast_is_seen_fast_after_decay() {
        let mut h = LatencyHistogram::default();
        for _ in 0..200 {
            h.record(ms(200));
        }
        for _ in 0..(DECAY_EVERY * 8) {
            h.record(ms(1));
        }
        assert!(h.quantile(0.99).unwrap() < ms(5));
    }

    proptest! {
        /// The estimate brackets the sample: never below it, and at most
        /// one bucket (×√2) above it.
        #[test]
        fn one_repeated_sample_is_its_own_quantile(micros in 1u64..10_000_000, q in 0.0f64..=1.0) {
            let mut h = LatencyHistogram::default();
            for _ in 0..10 {
                h.record(Duration::from_micros(micros));
            }
            let got = h.quantile(q).unwrap().as_secs_f64() * 1e6;
            let want = micros as f64;
            prop_assert!(got + 1.0 >= want.min(bound_micros(BUCKETS - 1)));
            prop_assert!(got <= (want * std::f64::consts::SQRT_2).max(FIRST_BOUND_MICROS) + 1.0);
        }

        /// Quantiles never decrease with q.
        #[test]
        fn quantiles_are_monotone(samples in prop::collection::vec(1u64..1_000_000, 1..300), a in 0.0f64..=1.0, b in 0.0f64..=1.0) {
            let mut h = LatencyHistogram::default();
            for s in samples {
                h.record(Duration::from_micros(s));
            }
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(h.quantile(lo).unwrap() <= h.quantile(hi).unwrap());
        }
    }
}
