//! # dynkv-pbs: how stale can a read be?
//!
//! Probabilistically Bounded Staleness (Bailis, Venkataraman, Franklin,
//! Hellerstein and Stoica, VLDB 2012) answers, for a Dynamo-style store
//! with N replicas and per-request R and W, the probability that a read
//! issued `t` ms after a write was acknowledged returns that write (or a
//! newer one). It needs four latency distributions, the *WARS* model:
//!
//! | letter | what | measured as |
//! |---|---|---|
//! | **W** | a write travelling from the coordinator to a replica, until it is stored there | coordinator → replica, one way, plus the replica's service time |
//! | **A** | the replica's acknowledgement travelling back | replica → coordinator, one way |
//! | **R** | a read request travelling to a replica, until it has read its copy | coordinator → replica, one way, plus the replica's service time |
//! | **S** | the read response travelling back | replica → coordinator, one way |
//!
//! ## Layout
//! - [`recorder`]: what each node records from its live traffic, per peer,
//!   decayed over time, with no lock on the hot path.
//! - [`model`]: the Monte Carlo, a pure function of the four distributions,
//!   N, R, W and a seeded random source: no clock, no I/O.
//!
//! ## One-way latencies: the round trip, placed by the clocks
//! The coordinator measures each replica request's round trip on its own
//! monotonic clock. The replica answers with two stamps: its *service
//! time* (from taking the request to answering, on its monotonic clock)
//! and its wall clock when it took the request. Then
//!
//! ```text
//! net   = rtt - service                 (time on the wire, both ways)
//! there = replica stamp - coordinator's wall clock at send, clamped to [0, net]
//! W = there + service    A = net - there
//! R = there + service    S = net - there
//! ```
//!
//! The replica's write (or read) is taken to happen at the end of its
//! service time, the conservative end (a write becomes visible no earlier
//! than the model says).
//!
//! *Why the clocks, and why clamped.* Splitting the round trip in halves
//! needs no clock at all, but it cannot recover the distribution of one
//! direction, only that of the average of two: with independent delays
//! each way, the halves have the right mean and too thin a tail, and the
//! tail is exactly where stale reads come from. The wall-clock stamps give
//! the true one-way time on one host and, across hosts, that time plus the
//! clock offset; clamping into the measured round trip bounds the error
//! of a skewed clock by the round trip itself, and W + A stays exact
//! whatever the skew. Where clocks are known to be unsynchronised,
//! `pbs.clocks = false` splits in halves (as does a peer that sends no
//! stamp).

//! ## How dynkv differs from the paper's model, and how the model follows it
//! The paper's coordinator is not a replica and sends every request to all
//! N replicas. A dynkv write is always coordinated by a primary of the key,
//! which stores it locally first (its own copy is the first
//! acknowledgement, with W = A = 0), and a read coordinated by a replica
//! reads its own copy first (R = S = 0) and then the fastest others. The
//! model keeps the paper's "the first R replies by R + S" for the replicas
//! read, with those zeros in place ([`model::ReadVia`] says which node
//! coordinates the read). Speculative retry, read repair and anti-entropy
//! only make reads fresher and are left out, as in the paper.
//!
//! ## Cost on the hot path
//! Recording one sample is a lookup in an atomically swapped map of peers
//! (no lock), one `Instant::now()` and two relaxed atomic increments (the
//! bucket of each letter of the pair); no allocation. The measured cost is
//! in docs/PERFORMANCE.md.

pub mod model;
pub mod recorder;

pub use model::{Distribution, Prediction, ReadVia, Scenario, Wars, predict};
pub use recorder::{Exchange, Letter, Recorder, Samples};
