//! What a node records for the model: per peer, four histograms (W, A, R,
//! S) filled from its own requests to that peer, decayed over time.
//!
//! ## Histograms
//! Logarithmic buckets, eight per octave (each about 9 % wider than the
//! last) from 1 µs to about 134 s, with one bucket below 1 µs: 218 relaxed
//! atomic counters per letter and peer, so a sample is one increment and
//! the model samples a bucket log-uniformly between its bounds (an error
//! of at most 9 % on one sample's latency, far below the spread of real
//! latencies).
//!
//! ## Decay
//! Time is cut into epochs of one half-life (`pbs.half_life`, one minute
//! by default). The first sample of a peer in a new epoch halves every
//! counter of that peer once per epoch that passed (a compare-and-swap on
//! the peer's epoch elects the one thread that does it), and a snapshot
//! applies the halvings a quiet peer has not done yet. A link that became
//! slow thus dominates its histograms within a couple of half-lives, and a
//! peer that stopped answering fades out.
//!
//! ## No lock on the hot path
//! The peers are an atomically swapped map (`arc_swap`): recording loads
//! it without a lock and touches only atomics. A peer's first sample
//! copies the map under a mutex, once per peer for the life of the node.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::model::{Distribution, Wars};

/// Buckets per octave.
const PER_OCTAVE: f64 = 8.0;
/// Octaves above 1 µs.
const OCTAVES: usize = 27;
/// Buckets per histogram: one below 1 µs, then [`PER_OCTAVE`] per octave.
pub const BUCKETS: usize = 8 * OCTAVES + 2;

/// The bucket of a latency in microseconds.
fn bucket_of(micros: f64) -> usize {
    if micros.is_nan() || micros < 1.0 {
        return 0;
    }
    let i = (micros.log2() * PER_OCTAVE).floor() as usize + 1;
    i.min(BUCKETS - 1)
}

/// The bounds of bucket `i`, in milliseconds.
fn bounds_ms(i: usize) -> (f64, f64) {
    if i == 0 {
        return (0.0, 1e-3);
    }
    let lo = 2f64.powf((i - 1) as f64 / PER_OCTAVE);
    let hi = 2f64.powf(i as f64 / PER_OCTAVE);
    (lo / 1e3, hi / 1e3)
}

/// One letter of the WARS model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Letter {
    /// Write request to a replica, until stored.
    W = 0,
    /// Its acknowledgement back.
    A = 1,
    /// Read request to a replica, until read.
    R = 2,
    /// Its answer back.
    S = 3,
}

/// How many samples each letter holds now (decayed, summed over peers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Samples {
    /// W samples.
    pub w: u64,
    /// A samples.
    pub a: u64,
    /// R samples.
    pub r: u64,
    /// S samples.
    pub s: u64,
}

impl Samples {
    /// Whether nothing was recorded (or everything decayed away).
    pub fn is_empty(&self) -> bool {
        self.w + self.a + self.r + self.s == 0
    }
}

/// The four histograms of one peer.
struct PeerLatencies {
    /// The epoch its counters were last decayed to.
    epoch: AtomicU64,
    hist: [[AtomicU64; BUCKETS]; 4],
}

impl PeerLatencies {
    fn new(epoch: u64) -> Self {
        PeerLatencies {
            epoch: AtomicU64::new(epoch),
            hist: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Halves every counter once per epoch passed since the last decay,
    /// done by whichever caller moves the peer's epoch forward.
    fn decay_to(&self, epoch: u64) {
        let seen = self.epoch.load(Ordering::Relaxed);
        if epoch <= seen
            || self
                .epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let shift = (epoch - seen).min(63) as u32;
        for c in self.hist.iter().flatten() {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v >> shift));
        }
    }

    /// Counter `i` of `letter` as of `epoch` (decays not yet done applied).
    fn count(&self, letter: usize, i: usize, epoch: u64) -> u64 {
        let pending = epoch.saturating_sub(self.epoch.load(Ordering::Relaxed));
        self.hist[letter][i].load(Ordering::Relaxed) >> pending.min(63)
    }
}

/// A node's WARS latencies, per peer. Shared as `Arc<Recorder>`.
pub struct Recorder {
    started: Instant,
    half_life: Duration,
    enabled: bool,
    peers: ArcSwap<HashMap<String, Arc<PeerLatencies>>>,
    adding: parking_lot::Mutex<()>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new(Duration::from_secs(60), true)
    }
}

impl Recorder {
    /// A recorder whose counts halve every `half_life`; one built with
    /// `enabled = false` records nothing (to measure what recording costs).
    pub fn new(half_life: Duration, enabled: bool) -> Recorder {
        Recorder {
            started: Instant::now(),
            half_life: half_life.max(Duration::from_millis(1)),
            enabled,
            peers: ArcSwap::from_pointee(HashMap::new()),
            adding: parking_lot::Mutex::new(()),
        }
    }

    /// Whether samples are recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The half-life of the counts.
    pub fn half_life(&self) -> Duration {
        self.half_life
    }

    fn epoch_now(&self) -> u64 {
        (self.started.elapsed().as_nanos() / self.half_life.as_nanos()) as u64
    }

    /// Records a replica write to `peer`: one W and one A sample from
    /// the [`Exchange`].
    pub fn record_write(&self, peer: &str, x: Exchange) {
        self.record_pair(peer, Letter::W, Letter::A, x, None);
    }

    /// Records a replica read, like [`Recorder::record_write`]: one R and
    /// one S sample.
    pub fn record_read(&self, peer: &str, x: Exchange) {
        self.record_pair(peer, Letter::R, Letter::S, x, None);
    }

    /// Splits a round trip into its two one-way halves (see the crate
    /// docs) and counts them; `at` overrides the epoch (tests).
    fn record_pair(&self, peer: &str, out: Letter, back: Letter, x: Exchange, at: Option<u64>) {
        if !self.enabled {
            return;
        }
        let (there, back_micros) = x.split();
        let epoch = at.unwrap_or_else(|| self.epoch_now());
        let count = |p: &PeerLatencies| {
            p.decay_to(epoch);
            p.hist[out as usize][bucket_of(there)].fetch_add(1, Ordering::Relaxed);
            p.hist[back as usize][bucket_of(back_micros)].fetch_add(1, Ordering::Relaxed);
        };
        // The common case borrows from the loaded map: no reference count
        // is touched, so threads recording for one peer share no counter
        // but the histogram's.
        if let Some(p) = self.peers.load().get(peer) {
            return count(p);
        }
        count(&self.peer(peer, epoch));
    }

    /// The histograms of `peer`, added on its first sample.
    fn peer(&self, peer: &str, epoch: u64) -> Arc<PeerLatencies> {
        if let Some(p) = self.peers.load().get(peer) {
            return p.clone();
        }
        let _adding = self.adding.lock();
        let current = self.peers.load_full();
        if let Some(p) = current.get(peer) {
            return p.clone();
        }
        let p = Arc::new(PeerLatencies::new(epoch));
        let mut next = HashMap::clone(&current);
        next.insert(peer.to_string(), p.clone());
        self.peers.store(Arc::new(next));
        p
    }

    /// The peers recorded so far, sorted.
    pub fn peers(&self) -> Vec<String> {
        let mut v: Vec<String> = self.peers.load().keys().cloned().collect();
        v.sort();
        v
    }

    /// The four distributions pooled over every peer (or only `peer`),
    /// decayed to now.
    pub fn wars(&self, peer: Option<&str>) -> Wars {
        self.wars_at(peer, self.epoch_now())
    }

    fn wars_at(&self, only: Option<&str>, epoch: u64) -> Wars {
        let peers = self.peers.load();
        let letter = |l: Letter| {
            Distribution::from_pieces((0..BUCKETS).map(|i| {
                let total: u64 = peers
                    .iter()
                    .filter(|(id, _)| only.is_none_or(|o| o == id.as_str()))
                    .map(|(_, p)| p.count(l as usize, i, epoch))
                    .sum();
                let (lo, hi) = bounds_ms(i);
                (lo, hi, total as f64)
            }))
        };
        Wars {
            w: letter(Letter::W),
            a: letter(Letter::A),
            r: letter(Letter::R),
            s: letter(Letter::S),
        }
    }

    /// How many samples each letter holds now, over every peer.
    pub fn samples(&self) -> Samples {
        self.samples_at(self.epoch_now())
    }

    fn samples_at(&self, epoch: u64) -> Samples {
        let peers = self.peers.load();
        let sum = |l: Letter| -> u64 {
            peers
                .values()
                .map(|p| {
                    (0..BUCKETS)
                        .map(|i| p.count(l as usize, i, epoch))
                        .sum::<u64>()
                })
                .sum()
        };
        Samples {
            w: sum(Letter::W),
            a: sum(Letter::A),
            r: sum(Letter::R),
            s: sum(Letter::S),
        }
    }
}

/// One request to a replica and its answer, as the coordinator saw it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Exchange {
    /// The round trip, on the coordinator's monotonic clock.
    pub rtt: Duration,
    /// The replica's service time, from its answer (`None`: not reported,
    /// taken as 0).
    pub service: Option<Duration>,
    /// The request's one-way network time read from the two wall clocks
    /// (the replica's stamp minus the coordinator's send time), when the
    /// clocks are trusted and the replica stamped its answer; `None`: the
    /// network time is split in halves.
    pub there: Option<Duration>,
}

impl Exchange {
    /// The one-way time of a request sent at `sent_micros` and stamped by
    /// the replica at `received_micros` (both µs since the Unix epoch),
    /// saturating at 0 when the replica's clock is behind.
    pub fn one_way(sent_micros: u64, received_micros: Option<u64>) -> Option<Duration> {
        received_micros.map(|r| Duration::from_micros(r.saturating_sub(sent_micros)))
    }

    /// The round trip as (there, back), microseconds: the replica's
    /// service time on the way there, and the network time `rtt - service`
    /// split as the clocks say (clamped into it, so a skewed clock can
    /// move the split but never make a time negative or longer than the
    /// round trip), or in halves.
    fn split(&self) -> (f64, f64) {
        let rtt = self.rtt.as_secs_f64() * 1e6;
        let service = (self.service.unwrap_or_default().as_secs_f64() * 1e6).min(rtt);
        let net = rtt - service;
        let there = match self.there {
            Some(t) => (t.as_secs_f64() * 1e6).clamp(0.0, net),
            None => net / 2.0,
        };
        (there + service, net - there)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn halves(rtt: Duration, service: Option<Duration>) -> Exchange {
        Exchange {
            rtt,
            service,
            there: None,
        }
    }

    #[test]
    fn a_round_trip_is_split_around_the_service_time() {
        assert_eq!(halves(ms(10), Some(ms(2))).split(), (6000.0, 4000.0));
        assert_eq!(halves(ms(10), None).split(), (5000.0, 5000.0));
        // A service time above the round trip (a confused peer) is capped.
        assert_eq!(halves(ms(1), Some(ms(5))).split(), (1000.0, 0.0));
        // The clocks place the split; a skewed one is clamped into the trip.
        let clocked = |there| Exchange {
            rtt: ms(10),
            service: Some(ms(2)),
            there: Some(there),
        };
        assert_eq!(clocked(ms(1)).split(), (3000.0, 7000.0));
        assert_eq!(clocked(ms(30)).split(), (10000.0, 0.0));
        assert_eq!(Exchange::one_way(100, Some(1100)), Some(ms(1)));
        assert_eq!(Exchange::one_way(100, Some(50)), Some(Duration::ZERO));
        assert_eq!(Exchange::one_way(100, None), None);
        let r = Recorder::default();
        r.record_write("n2", halves(ms(10), Some(ms(2))));
        let wars = r.wars(None);
        // W ≈ 6 ms and A ≈ 4 ms, within a bucket (9 %).
        assert!(wars.w.cdf(5.4) == 0.0 && wars.w.cdf(6.6) == 1.0);
        assert!(wars.a.cdf(3.6) == 0.0 && wars.a.cdf(4.4) == 1.0);
        assert!(wars.r.is_empty() && wars.s.is_empty());
        assert_eq!(
            r.samples(),
            Samples {
                w: 1,
                a: 1,
                r: 0,
                s: 0
            }
        );
    }

    #[test]
    fn peers_are_pooled_or_read_one_by_one() {
        let r = Recorder::default();
        r.record_read("n2", halves(ms(2), None));
        r.record_read("n3", halves(ms(20), None));
        assert_eq!(r.peers(), vec!["n2".to_string(), "n3".to_string()]);
        assert_eq!(r.samples().r, 2);
        let n3 = r.wars(Some("n3"));
        assert_eq!(n3.r.cdf(9.0), 0.0);
        let all = r.wars(None);
        assert!((all.r.cdf(5.0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn counts_halve_every_half_life() {
        let r = Recorder::new(ms(1000), true);
        for _ in 0..64 {
            r.record_pair("n2", Letter::W, Letter::A, halves(ms(1), None), Some(0));
        }
        assert_eq!(r.samples_at(0).w, 64);
        // A snapshot two half-lives later sees a quarter, before any write.
        assert_eq!(r.samples_at(2).w, 16);
        // A new sample in epoch 3 decays the counters for good.
        r.record_pair("n2", Letter::W, Letter::A, halves(ms(50), None), Some(3));
        assert_eq!(r.samples_at(3).w, 9);
        let wars = r.wars_at(None, 3);
        assert!((wars.w.cdf(10.0) - 8.0 / 9.0).abs() < 1e-9);
        // Long silence forgets the peer.
        assert_eq!(r.samples_at(200).w, 0);
    }

    #[test]
    fn a_disabled_recorder_records_nothing() {
        let r = Recorder::new(ms(1000), false);
        r.record_write("n2", halves(ms(1), None));
        assert!(r.samples().is_empty());
        assert!(r.peers().is_empty());
    }

    #[test]
    fn threads_record_without_losing_samples() {
        let r = Arc::new(Recorder::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let peer = format!("n{}", (i + t) % 3);
                        r.record_read(&peer, halves(Duration::from_micros(100 + i), None));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(r.samples().r, 4000);
        assert_eq!(r.samples().s, 4000);
    }

    proptest! {
        /// A latency falls inside its bucket's bounds.
        #[test]
        fn buckets_bracket_their_latency(micros in 0.0f64..1e8) {
            let (lo, hi) = bounds_ms(bucket_of(micros));
            let ms = micros / 1e3;
            prop_assert!(lo <= ms * (1.0 + 1e-12));
            if bucket_of(micros) < BUCKETS - 1 {
                prop_assert!(ms <= hi * (1.0 + 1e-12));
            }
        }
    }
}
