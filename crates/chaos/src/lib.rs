//! # dynkv-chaos: fault injection with a history checker
//!
//! A Jepsen-style run against real `dynkv` processes on loopback:
//!
//! 1. [`schedule`] turns a seed into a timed list of faults: partitions
//!    (random splits, one node isolated, majority/minority, one-way cuts),
//!    `kill -9` and restart, SIGSTOP and SIGCONT.
//! 2. [`nemesis`] carries it out on a cluster started by the test harness
//!    (`dynkv-tests`) with every internode link routed through a cuttable
//!    TCP proxy, so partitions are real black holes, not flags in the node.
//! 3. [`workload`] runs concurrent clients doing read-modify-write, writes
//!    with a remembered context, blind writes, deletes and reads at random
//!    R/W and `sloppy`, logging every operation with its start, end, node,
//!    parameters, outcome, and the contexts and dot it sent and got
//!    ([`history`], JSON lines).
//! 4. [`feed`] follows the change feed for the whole run, one node at a
//!    time, recording every event; the checker then requires every
//!    acknowledged write in it exactly once.
//! 5. [`run`] then heals everything, waits until every key's replicas agree
//!    (hinted handoff and anti-entropy at work, no reads to repair them),
//!    reads every key at R=all through every node and each node's local
//!    copy, and hands the history to [`check`].
//!
//! The checker is a pure function of the history, so it is unit-tested on
//! hand-made histories and can re-check a saved history. What it checks and
//! why each check is sound is in [`check`]'s documentation.
//!
//! The seed fixes the schedule and every client's choices (key, node,
//! operation, R/W); what the cluster answers, and so the exact history,
//! depends on timing.

pub mod check;
pub mod feed;
pub mod history;
pub mod nemesis;
pub mod report;
pub mod run;
pub mod schedule;
pub mod workload;

pub use check::{Report, check};
pub use history::History;
pub use run::{RunConfig, RunResult, run};
