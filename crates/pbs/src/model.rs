//! The WARS Monte Carlo (Bailis et al., VLDB 2012, section 5), adapted to
//! dynkv's coordinators: a pure function of four latency distributions,
//! the request's N, R and W, and a seeded random source.
//!
//! ## One trial
//! Time 0 is when the write reaches its coordinator, replica 0, which
//! stores it at once (`w₀ = a₀ = 0`). Replica `i > 0` stores it at `wᵢ`
//! and its acknowledgement is back at `wᵢ + aᵢ`. The write is acknowledged
//! to the client at `c`, the W-th smallest of `wᵢ + aᵢ` (replica 0's zero
//! included). The read is issued at `c + t` by its coordinator; the request
//! reaches replica `i` at `c + t + rᵢ` and the answer is back `sᵢ` later
//! (`rₖ = sₖ = 0` for the read coordinator `k` when it is a replica). The
//! first R answers by `rᵢ + sᵢ` make the read; replica `i` answers with the
//! write when `wᵢ ≤ c + t + rᵢ`. So the read is fresh exactly when
//!
//! ```text
//! t ≥ min over the first R replicas of (wᵢ − c − rᵢ)
//! ```
//!
//! Each trial therefore yields one *threshold* (clamped at 0): the
//! smallest `t` at which it is fresh. The probability at `t` is the
//! fraction of thresholds `≤ t`, so every `t` of a curve is answered from
//! the same trials, the curve never decreases in `t`, and the `t` at which
//! it reaches a probability `p` is the `p`-quantile of the thresholds.
//!
//! ## Laws (property-tested below)
//! - The probability lies in `[0, 1]` and never decreases in `t`.
//! - `R + W > N` gives 1 at every `t`: the R replicas read and the W that
//!   acknowledged share one, which stored the write before `c`.
//! - Reading through the write's coordinator gives 1.
//! - With N = 3, R = W = 1 and the read on another replica, the
//!   probability at `t` is the distribution function of W at `t`.

use rand::Rng;

/// A latency distribution in milliseconds: weighted pieces, each uniform
/// in the logarithm of the latency between its bounds (a point mass when
/// the bounds are equal). Built from a recorder's histogram or from plain
/// samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distribution {
    /// `(low_ms, high_ms, cumulative weight)`, in order.
    pieces: Vec<(f64, f64, f64)>,
}

impl Distribution {
    /// A distribution from `(low_ms, high_ms, weight)` pieces; pieces of
    /// zero (or negative, or NaN) weight are left out.
    pub fn from_pieces(pieces: impl IntoIterator<Item = (f64, f64, f64)>) -> Distribution {
        let mut total = 0.0;
        let mut out = Vec::new();
        for (lo, hi, w) in pieces {
            if w.is_nan() || w <= 0.0 {
                continue;
            }
            let lo = lo.max(0.0);
            total += w;
            out.push((lo, hi.max(lo), total));
        }
        Distribution { pieces: out }
    }

    /// The empirical distribution of `samples_ms` (each a point mass).
    pub fn from_samples(samples_ms: &[f64]) -> Distribution {
        Distribution::from_pieces(samples_ms.iter().map(|s| (*s, *s, 1.0)))
    }

    /// A single latency.
    pub fn constant(ms: f64) -> Distribution {
        Distribution::from_samples(&[ms])
    }

    /// Whether there is nothing to sample.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Total weight of the pieces.
    pub fn weight(&self) -> f64 {
        self.pieces.last().map_or(0.0, |p| p.2)
    }

    /// A latency drawn with `u` and `v`, two uniform draws in `[0, 1)`
    /// (the first picks the piece, the second the place inside it).
    /// `None` when empty.
    pub fn sample_with(&self, u: f64, v: f64) -> Option<f64> {
        let total = self.weight();
        if total <= 0.0 {
            return None;
        }
        let want = u * total;
        let i = self
            .pieces
            .partition_point(|p| p.2 <= want)
            .min(self.pieces.len() - 1);
        let (lo, hi, _) = self.pieces[i];
        if hi <= lo {
            return Some(lo);
        }
        if lo <= 0.0 {
            // The first bucket starts at 0: uniform.
            return Some(hi * v);
        }
        Some(lo * (hi / lo).powf(v))
    }

    /// The fraction of the weight at or below `ms` (pieces straddling it
    /// counted in proportion to their logarithmic width).
    pub fn cdf(&self, ms: f64) -> f64 {
        let total = self.weight();
        if total <= 0.0 {
            return 0.0;
        }
        let mut below = 0.0;
        let mut prev = 0.0;
        for &(lo, hi, cum) in &self.pieces {
            let w = cum - prev;
            prev = cum;
            if hi <= ms {
                below += w;
            } else if lo < ms {
                let f = if lo <= 0.0 {
                    ms / hi
                } else {
                    (ms / lo).ln() / (hi / lo).ln()
                };
                below += w * f.clamp(0.0, 1.0);
            }
        }
        below / total
    }

    fn sample(&self, rng: &mut impl Rng) -> f64 {
        self.sample_with(rng.random(), rng.random()).unwrap_or(0.0)
    }
}

/// The four distributions of the model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wars {
    /// Coordinator to replica, until the write is stored there.
    pub w: Distribution,
    /// The acknowledgement back.
    pub a: Distribution,
    /// Coordinator to replica, until the copy is read there.
    pub r: Distribution,
    /// The read's answer back.
    pub s: Distribution,
}

impl Wars {
    /// The distributions with an empty letter borrowing its twin on the
    /// same link (W and R go out, A and S come back): a node that has only
    /// written to its peers so far still predicts reads. `None` when a
    /// direction has no sample at all.
    pub fn completed(&self) -> Option<Wars> {
        let pick = |own: &Distribution, twin: &Distribution| {
            if own.is_empty() {
                twin.clone()
            } else {
                own.clone()
            }
        };
        let out = Wars {
            w: pick(&self.w, &self.r),
            a: pick(&self.a, &self.s),
            r: pick(&self.r, &self.w),
            s: pick(&self.s, &self.a),
        };
        (!out.w.is_empty() && !out.a.is_empty()).then_some(out)
    }
}

/// Which node coordinates the read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadVia {
    /// The node that coordinated the write (a client that sticks to one
    /// node of the preference list).
    WriteCoordinator,
    /// Another replica of the key.
    OtherReplica,
    /// A node outside the key's replicas (every replica is then asked over
    /// the network).
    NotReplica,
    /// A node chosen uniformly among the `cluster` nodes (a client behind
    /// a load balancer): the write's coordinator with probability
    /// `1 / cluster`, another replica with probability `(N − 1) / cluster`,
    /// a non-replica otherwise.
    AnyNode {
        /// Nodes in the cluster (at least N is assumed).
        cluster: usize,
    },
}

/// What is asked: N, R, W and who reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Replicas of the key.
    pub n: usize,
    /// Replies a read waits for, `1..=n`.
    pub r: usize,
    /// Acknowledgements a write waits for, `1..=n`.
    pub w: usize,
    /// The read's coordinator.
    pub via: ReadVia,
}

/// The outcome of a Monte Carlo run: per trial, the least `t` (ms) at which
/// the read is fresh, sorted.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    thresholds: Vec<f64>,
}

impl Prediction {
    /// Trials run.
    pub fn trials(&self) -> usize {
        self.thresholds.len()
    }

    /// The probability that a read issued `t_ms` after the write's
    /// acknowledgement returns it (or newer).
    pub fn probability(&self, t_ms: f64) -> f64 {
        if self.thresholds.is_empty() {
            return 0.0;
        }
        let fresh = self.thresholds.partition_point(|x| *x <= t_ms);
        fresh as f64 / self.thresholds.len() as f64
    }

    /// The least `t` (ms) at which the probability reaches `p`, or `None`
    /// when no trial was run or `p` is above 1.
    pub fn t_for(&self, p: f64) -> Option<f64> {
        if self.thresholds.is_empty() || !(0.0..=1.0).contains(&p) {
            return None;
        }
        let k = (p * self.thresholds.len() as f64).ceil() as usize;
        Some(self.thresholds[k.clamp(1, self.thresholds.len()) - 1])
    }
}

/// Runs `trials` trials of `scenario` over `wars` (see the module docs).
/// `r` and `w` are clamped into `1..=n`; an empty distribution samples as 0.
pub fn predict(wars: &Wars, scenario: &Scenario, trials: usize, rng: &mut impl Rng) -> Prediction {
    let n = scenario.n.max(1);
    let r = scenario.r.clamp(1, n);
    let w = scenario.w.clamp(1, n);
    let mut write_at = vec![0.0f64; n];
    let mut acks: Vec<f64> = Vec::with_capacity(n);
    let mut read_at = vec![0.0f64; n];
    let mut order: Vec<(f64, usize)> = Vec::with_capacity(n);
    let mut thresholds = Vec::with_capacity(trials);
    for _ in 0..trials {
        // Replica 0 coordinates the write: stored and acknowledged at 0.
        acks.clear();
        acks.push(0.0);
        for at in write_at.iter_mut().skip(1) {
            *at = wars.w.sample(rng);
            acks.push(*at + wars.a.sample(rng));
        }
        acks.sort_by(f64::total_cmp);
        let commit = acks[w - 1];
        let reader = match scenario.via {
            ReadVia::WriteCoordinator => Some(0),
            ReadVia::OtherReplica => Some(1 % n),
            ReadVia::NotReplica => None,
            ReadVia::AnyNode { cluster } => {
                let pick = rng.random_range(0..cluster.max(n));
                (pick < n).then_some(pick)
            }
        };
        order.clear();
        for (i, at) in read_at.iter_mut().enumerate() {
            let (ri, si) = if reader == Some(i) {
                (0.0, 0.0)
            } else {
                (wars.r.sample(rng), wars.s.sample(rng))
            };
            *at = ri;
            order.push((ri + si, i));
        }
        order.sort_by(|x, y| x.0.total_cmp(&y.0));
        let threshold = order[..r]
            .iter()
            .map(|&(_, i)| write_at[i] - commit - read_at[i])
            .fold(f64::INFINITY, f64::min);
        thresholds.push(threshold.max(0.0));
    }
    thresholds.sort_by(f64::total_cmp);
    Prediction { thresholds }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn exp_samples(mean_ms: f64, count: usize, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..count)
            .map(|_| -mean_ms * (1.0 - rng.random::<f64>()).ln())
            .collect()
    }

    fn wars_of(w: &[f64], a: &[f64], r: &[f64], s: &[f64]) -> Wars {
        Wars {
            w: Distribution::from_samples(w),
            a: Distribution::from_samples(a),
            r: Distribution::from_samples(r),
            s: Distribution::from_samples(s),
        }
    }

    fn exp_wars(mean_ms: f64) -> Wars {
        let e = |seed| exp_samples(mean_ms, 2000, seed);
        wars_of(&e(1), &e(2), &e(3), &e(4))
    }

    fn run(wars: &Wars, n: usize, r: usize, w: usize, via: ReadVia) -> Prediction {
        let mut rng = StdRng::seed_from_u64(7);
        predict(wars, &Scenario { n, r, w, via }, 20_000, &mut rng)
    }

    #[test]
    fn a_read_on_another_replica_follows_the_cdf_of_w() {
        // N=3, R=W=1: the write is acknowledged at once by its
        // coordinator; another replica read in place has it iff it arrived
        // within t.
        let wars = exp_wars(5.0);
        let p = run(&wars, 3, 1, 1, ReadVia::OtherReplica);
        for t in [0.0, 1.0, 2.0, 5.0, 10.0, 20.0] {
            let want = wars.w.cdf(t);
            let got = p.probability(t);
            assert!((got - want).abs() < 0.02, "t={t}: {got} vs cdf {want}");
        }
    }

    #[test]
    fn reading_through_the_write_coordinator_is_always_fresh() {
        let p = run(&exp_wars(5.0), 3, 1, 1, ReadVia::WriteCoordinator);
        assert_eq!(p.probability(0.0), 1.0);
        assert_eq!(p.t_for(0.999), Some(0.0));
    }

    #[test]
    fn any_node_mixes_the_three_cases() {
        // Cluster of 3 = N: a third of reads land on the coordinator.
        let wars = exp_wars(5.0);
        let any = run(&wars, 3, 1, 1, ReadVia::AnyNode { cluster: 3 });
        let other = run(&wars, 3, 1, 1, ReadVia::OtherReplica);
        for t in [0.0, 2.0, 10.0] {
            let want = 1.0 / 3.0 + 2.0 / 3.0 * other.probability(t);
            assert!((any.probability(t) - want).abs() < 0.02, "t={t}");
        }
    }

    #[test]
    fn slow_writes_make_reads_stale_and_waiting_helps() {
        // Writes take 10 ms to arrive, reads 1 or 2 ms: a read coordinated
        // off the replicas with R=1, W=1 at t=0 is stale unless the
        // write's coordinator answers it first.
        let wars = wars_of(&[10.0], &[10.0], &[1.0, 2.0], &[1.0, 2.0]);
        let p = run(&wars, 3, 1, 1, ReadVia::NotReplica);
        // Fresh at once only when the write's coordinator answers first
        // (about 55 % of trials with these two-point distributions).
        assert!(p.probability(0.0) > 0.45 && p.probability(0.0) < 0.65);
        assert!(p.probability(8.5) < 1.0);
        // From t = 9 ms (a read takes at least 1 ms to arrive) every
        // replica has it.
        assert_eq!(p.probability(9.0), 1.0);
        assert_eq!(p.t_for(1.0), Some(9.0));
    }

    #[test]
    fn no_trials_predict_nothing() {
        let p = predict(
            &Wars::default(),
            &Scenario {
                n: 3,
                r: 1,
                w: 1,
                via: ReadVia::OtherReplica,
            },
            0,
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(p.trials(), 0);
        assert_eq!(p.t_for(0.5), None);
        assert_eq!(p.probability(1.0), 0.0);
    }

    #[test]
    fn an_empty_letter_borrows_its_twin() {
        let only_writes = wars_of(&[1.0], &[2.0], &[], &[]);
        let done = only_writes.completed().unwrap();
        assert_eq!(done.r, only_writes.w);
        assert_eq!(done.s, only_writes.a);
        assert_eq!(Wars::default().completed(), None);
    }

    #[test]
    fn sampling_stays_inside_its_piece() {
        let d = Distribution::from_pieces([(1.0, 2.0, 1.0), (0.0, 0.0, 0.0), (4.0, 8.0, 3.0)]);
        assert_eq!(d.weight(), 4.0);
        for (u, v) in [(0.0, 0.0), (0.2, 0.99), (0.3, 0.5), (0.99, 0.99)] {
            let x = d.sample_with(u, v).unwrap();
            assert!((1.0..=2.0).contains(&x) || (4.0..=8.0).contains(&x), "{x}");
        }
        assert_eq!(d.sample_with(0.1, 0.0), Some(1.0));
        assert!((d.cdf(2.0) - 0.25).abs() < 1e-9);
        assert!((d.cdf(6.0) - (0.25 + 0.75 * 0.5849625)).abs() < 1e-6);
        assert_eq!(Distribution::default().sample_with(0.5, 0.5), None);
    }

    fn dist() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(0.0f64..50.0, 1..40)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The probability never decreases in t and stays in [0, 1].
        #[test]
        fn probability_is_monotone_in_t(w in dist(), a in dist(), r in dist(), s in dist(),
                                        n in 1usize..6, rr in 1usize..6, ww in 1usize..6,
                                        t1 in 0.0f64..100.0, t2 in 0.0f64..100.0, seed in any::<u64>()) {
            let (r_, w_) = (rr.min(n), ww.min(n));
            let wars = wars_of(&w, &a, &r, &s);
            let sc = Scenario { n, r: r_, w: w_, via: ReadVia::AnyNode { cluster: n + 2 } };
            let p = predict(&wars, &sc, 500, &mut StdRng::seed_from_u64(seed));
            let (lo, hi) = if t1 <= t2 { (t1, t2) } else { (t2, t1) };
            prop_assert!(p.probability(lo) <= p.probability(hi));
            prop_assert!((0.0..=1.0).contains(&p.probability(lo)));
            // The t for a probability is where the curve reaches it.
            let t = p.t_for(0.9).unwrap();
            prop_assert!(p.probability(t) >= 0.9);
        }

        /// Overlapping quorums (R + W > N) always read the write.
        #[test]
        fn overlapping_quorums_are_always_fresh(w in dist(), a in dist(), r in dist(), s in dist(),
                                                n in 1usize..6, rr in 1usize..6, seed in any::<u64>(),
                                                via in 0usize..4) {
            let r_ = rr.min(n);
            let w_ = n + 1 - r_;
            let via = [ReadVia::WriteCoordinator, ReadVia::OtherReplica, ReadVia::NotReplica,
                       ReadVia::AnyNode { cluster: 7 }][via];
            let wars = wars_of(&w, &a, &r, &s);
            let p = predict(&wars, &Scenario { n, r: r_, w: w_, via }, 300, &mut StdRng::seed_from_u64(seed));
            prop_assert_eq!(p.probability(0.0), 1.0);
        }

        /// The same seed gives the same prediction (a pure function).
        #[test]
        fn predictions_are_reproducible(w in dist(), seed in any::<u64>()) {
            let wars = wars_of(&w, &w, &w, &w);
            let sc = Scenario { n: 3, r: 1, w: 1, via: ReadVia::NotReplica };
            let a = predict(&wars, &sc, 200, &mut StdRng::seed_from_u64(seed));
            let b = predict(&wars, &sc, 200, &mut StdRng::seed_from_u64(seed));
            prop_assert_eq!(a, b);
        }
    }
}
