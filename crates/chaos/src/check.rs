//! The checker: from a [`History`] (operations, faults, final state) to a
//! [`Report`]. Pure: no I/O, no clock, so it is unit-tested on hand-made
//! histories.
//!
//! # What it can know
//!
//! Every write's value is unique, so a final sibling names the write it
//! came from. An acknowledged write returned its version (`X-Dynkv-Dot`,
//! `actor:counter`). A write with context `C` replaces exactly the siblings
//! whose dots `C` covers, so "Y supersedes X" is decidable: Y's sent context
//! covers X's dot, or Y's context came from an answer that showed X's value
//! (which is how an unacknowledged X, whose dot is unknown, gets
//! superseded).
//!
//! A write whose outcome is unknown may or may not have happened. It counts
//! as having happened (and so may excuse the absence of what it supersedes)
//! only with evidence: its value was seen in some answer or in the final
//! state. An unknown DELETE leaves no value to see; it is given the benefit
//! of the doubt and counted apart (`excused_by_unconfirmed_delete`).
//!
//! # The checks
//!
//! - **Lost writes**: an acknowledged write must be in the final state, or
//!   superseded by a write that happened; its dot must be covered by the
//!   final context; and no two acknowledged writes of a key may have been
//!   given the same dot (a store that acknowledges a write it did not keep
//!   hands the same dot to the next one).
//! - **Resurrections**: a key whose acknowledged DELETE covered every value
//!   ever written to it must have no live value at the end.
//! - **Convergence**: the primaries of every key hold the same object, no
//!   hint is left, and a read at R=all through every node agrees.
//! - **Sibling sanity**: every final sibling is a value some write wrote
//!   (not a definitely-failed one), none twice, none superseded by a write
//!   that happened, and no more siblings than writes not superseded.
//! - **Read-your-quorum**: with R+W>N and no fault from the write's start to
//!   the read's end, a read that started after an acknowledged write ended
//!   returns a context covering the write's dot. Pairs where either side was
//!   sloppy are counted apart: a sloppy write may sit on a fallback that a
//!   read does not ask.
//!
//! - **Change feed** (when a feed consumer ran): every acknowledged write
//!   (its key and the dot it was given) is in the events the consumer
//!   recorded exactly once, with the value it wrote (or a tombstone for a
//!   delete); no event names the same key and dot twice; no answer was a
//!   410 (a gap); and the consumer's cursor passed the end of the clients'
//!   work. Sound because a dot names one write of one key forever (a
//!   wiped node comes back as a new actor), and the consumer asked for
//!   every key.
//!
//! # Disk and clock faults
//!
//! A wiped disk or a power cut takes from one node what it had
//! acknowledged; the checks stay the same (the run asks W >= 2 of every
//! write then, so another replica holds it, and repair must bring it back).
//! Every lost write and resurrection names the disk and clock faults that
//! began after its operation did, to tell which one to suspect. A wipe or a
//! power cut counts as a disturbance for read-your-quorum until the node's
//! restart (like a kill), a full disk until space is back; a skewed clock
//! does not (dynkv must not let the wall clock decide what a quorum read
//! returns). The answers clients got through a node while its disk was
//! full are counted ([`Report::disk_full_answers`]).
//!
//! # Tombstone reaping
//!
//! When the run says the nodes reaped tombstones
//! ([`RunInfo::reap`](crate::history::RunInfo::reap)), a key
//! whose siblings were all tombstones may end up removed from every
//! replica: it then reads as never written (404, empty context), and a
//! write after that starts a fresh clock. What reaping removes is only
//! what a delete removed, so the checks change only there:
//!
//! - **Dot coverage** is judged per write: an acknowledged write whose dot
//!   the final context does not cover is not lost if it is a DELETE, or a
//!   PUT that a delete that happened removed (the delete superseded it,
//!   directly or through writes that happened and were removed by it).
//!   Any other uncovered dot is still a lost write.
//! - **Tombstones**: the lower bound (enough tombstones for the
//!   acknowledged deletes nothing superseded) is dropped; a lost delete
//!   shows through its effect, its value coming back, which the value
//!   checks catch. The upper bound stays.
//! - **Read-your-quorum**: a read that misses a write's dot is accepted
//!   only if the write is a delete or a PUT a delete removed, the read
//!   started at least `max(grace - clock spread, settle)` after that delete
//!   started (the earliest a reap can have happened: the grace on the wall
//!   clocks, the largest difference two of them had in the run taken off;
//!   the settle on the driver's monotonic clock), and it answered 404 or
//!   showed only values written after that delete started that no delete
//!   acknowledged before the read removed. A stale 200 showing an old
//!   value stays a violation.
//! - Unchanged, and what still catches a resurrection or a floor not
//!   applied: values are unique, so a deleted value in the final state is
//!   a resurrection whatever the clocks say; and no two acknowledged writes
//!   may share a dot (a write after reaping numbered under the counter
//!   floor reuses one), whether or not both values were seen.
//!
//! Without reaping, an acknowledged write whose dot the final context does
//! not cover is lost, and every acknowledged delete nothing superseded
//! needs its tombstone, as before.

use std::collections::{BTreeMap, HashMap, HashSet};

use dynkv_vclock::{VersionVector, inspect_context};
use serde::{Deserialize, Serialize};

use crate::history::{
    Action, FaultEvent, FinalKey, History, ObjectView, Op, OpKind, Outcome, ReapSettings,
};

/// How long after a fault is healed the cluster still counts as disturbed
/// for read-your-quorum (failure detectors and breakers catch up).
pub const SETTLE_US: u64 = 2_000_000;

/// Most examples listed per kind of violation.
const MAX_EXAMPLES: usize = 25;

/// Everything the checker found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Seed of the run, if the history has it.
    pub seed: Option<u64>,
    /// Operations by kind and outcome.
    pub ops: BTreeMap<String, OutcomeCounts>,
    /// Nemesis actions by kind (`ok` ones).
    pub faults: BTreeMap<String, u64>,
    /// Nemesis actions that could not be carried out.
    pub faults_failed: u64,
    /// The write checks.
    pub writes: WriteStats,
    /// Acknowledged writes missing from the final state.
    pub lost_writes: Vec<Violation>,
    /// Deleted values that came back.
    pub resurrections: Vec<Violation>,
    /// Keys whose history ends with a delete covering every value written.
    pub keys_checked_for_resurrection: u64,
    /// Values (puts) some delete that happened removed: each must stay gone.
    pub deleted_values_checked: u64,
    /// Replica agreement after healing.
    pub convergence: Convergence,
    /// Final sibling figures and problems.
    pub siblings: SiblingStats,
    /// Read-your-quorum.
    pub read_your_quorum: ReadYourQuorum,
    /// Node processes that died though nothing killed them (a crash, e.g.
    /// on a full disk): each is a failure.
    #[serde(default)]
    pub crashes: Vec<Violation>,
    /// What clients got through a node while its disk was full, by
    /// `"<kind> <status or error>"` (e.g. `"put 507"`, `"get 200"`).
    #[serde(default)]
    pub disk_full_answers: BTreeMap<String, u64>,
    /// Smallest W the clients asked for in this run.
    #[serde(default)]
    pub min_w: usize,
    /// The nodes' reaping settings, if they reaped tombstones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reap: Option<ReapSettings>,
    /// Keys some acknowledged write touched that end as never written
    /// (every primary stores nothing: reaped).
    #[serde(default)]
    pub keys_reaped: u64,
    /// Faults (kill, pause, network) injected while a membership
    /// handoff was running.
    #[serde(default)]
    pub faults_during_handoff: u64,
    /// The same by kind.
    #[serde(default)]
    pub faults_during_handoff_by_kind: BTreeMap<String, u64>,
    /// Membership commits accepted and refused (a refused racing commit is
    /// correct behaviour, not a failure).
    #[serde(default)]
    pub commits: CommitCounts,
    /// Whether every running member reported the same ring at the end.
    #[serde(default)]
    pub ring: RingAgreement,
    /// The change feed rule, if a feed consumer ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedCheck>,
    /// Whether every check passed.
    pub passed: bool,
    /// One sentence per failed check.
    pub failures: Vec<String>,
}

/// The change feed rule ([`check_feed`]).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedCheck {
    /// Events the consumer received.
    pub events: u64,
    /// Acknowledged writes checked (those that returned a dot).
    pub acknowledged: u64,
    /// Requests, node switches, and failed requests by kind.
    pub polls: u64,
    /// See `polls`.
    pub switches: u64,
    /// See `polls`.
    pub errors: BTreeMap<String, u64>,
    /// Whether the consumer's cursor passed the end of the clients' work.
    pub drained: bool,
    /// Acknowledged writes not in the feed.
    pub missing: Vec<Violation>,
    /// Key and dot pairs delivered more than once.
    pub duplicates: Vec<Violation>,
    /// Events whose value is not what the write with that dot wrote.
    pub wrong_values: Vec<Violation>,
    /// 410 answers: gaps.
    pub expired: Vec<String>,
}

/// Membership commit outcomes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommitCounts {
    /// Commits a node accepted.
    pub accepted: u64,
    /// Commits refused (or unanswered), with the first few reasons.
    pub refused: u64,
    /// Examples of refusals, `n<i>: <error>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<String>,
}

/// The final ring agreement check.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RingAgreement {
    /// Whether the history holds ring views (older ones do not).
    pub checked: bool,
    /// Nodes whose view was read.
    pub nodes: u64,
    /// Whether all of them report the same version, members, statuses and
    /// partitions owned, with no change in progress.
    pub agreed: bool,
    /// The agreed (or first node's) version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The agreed (or first node's) members, `id status partitions`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// Nodes whose view differs from the first node's, and how.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disagreements: Vec<Violation>,
}

/// Counts of one kind of operation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutcomeCounts {
    /// Acknowledged.
    pub ok: u64,
    /// Certainly not applied.
    pub fail: u64,
    /// Maybe applied.
    pub unknown: u64,
}

/// What became of the writes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WriteStats {
    /// Acknowledged puts and deletes.
    pub acknowledged: u64,
    /// Of those, present in the final state (a put's value, or for a delete
    /// a tombstone).
    pub present: u64,
    /// Of those, superseded by a later write that happened.
    pub superseded: u64,
    /// Of the superseded, excused only by a DELETE of unknown outcome.
    pub excused_by_unconfirmed_delete: u64,
    /// Writes of unknown outcome whose value is in the final state.
    pub unknown_present: u64,
    /// Writes of unknown outcome.
    pub unknown: u64,
    /// Acknowledged writes whose dot the final context no longer covers,
    /// accepted because reaping was on and each is a delete or a put a
    /// delete removed.
    #[serde(default)]
    pub reaped: u64,
    /// Of those, puts removed only by a delete of unknown outcome.
    #[serde(default)]
    pub reaped_by_unconfirmed_delete: u64,
    /// Acknowledged writes lost (a missing tombstone counts one each).
    pub lost: u64,
}

/// One problem, with what is needed to find it in the history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The operation (`c<client>#<seq>`), if one is to blame.
    pub op: Option<String>,
    /// What is wrong.
    pub detail: String,
}

/// Replica agreement after healing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Convergence {
    /// Keys checked.
    pub keys: u64,
    /// The run's own verdict: every key converged before the bound.
    pub converged: bool,
    /// Time from healing to convergence.
    pub time_ms: Option<u64>,
    /// Polls of every replica it took (1: converged at the first look).
    pub polls: u32,
    /// The bound waited.
    pub bound_ms: u64,
    /// Keys whose replicas or R=all reads disagree in the final state.
    pub diverged: Vec<Violation>,
}

/// Final siblings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiblingStats {
    /// Keys with a live value.
    pub keys_with_values: u64,
    /// Keys that read as deleted or never written.
    pub keys_deleted: u64,
    /// Most siblings on one key (live values and tombstones).
    pub max: u64,
    /// Keys by sibling count (live values and tombstones).
    pub histogram: BTreeMap<u64, u64>,
    /// Tombstone siblings in all.
    pub tombstones: u64,
    /// Phantom, duplicated or superseded siblings, or more siblings than
    /// writes not superseded.
    pub violations: Vec<Violation>,
}

/// Read-your-quorum pairs and their violations.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadYourQuorum {
    /// (write, read) pairs checked with `sloppy=false` on both sides.
    pub strict_checked: u64,
    /// Those whose read missed the write (a bug).
    pub strict_violations: u64,
    /// Pairs where either side was sloppy.
    pub sloppy_checked: u64,
    /// Those whose read missed the write (expected now and then).
    pub sloppy_violations: u64,
    /// Misses accepted because a delete removed the write and the key could
    /// have been reaped before the read (404, or only newer values).
    #[serde(default)]
    pub reaped_accepted: u64,
    /// Examples of both kinds.
    pub examples: Vec<Violation>,
}

/// A parsed dot.
type Dot = (String, u64);

fn parse_dot(s: &str) -> Option<Dot> {
    let (a, n) = s.rsplit_once(':')?;
    Some((a.to_string(), n.parse().ok()?))
}

fn covers(ctx: Option<&VersionVector>, dot: &Dot) -> bool {
    ctx.is_some_and(|c| c.get(&dot.0) >= dot.1)
}

/// The count a quorum parameter stands for out of `n`.
pub fn quorum_count(q: &str, n: usize) -> Option<usize> {
    match q {
        "one" => Some(1),
        "quorum" => Some(n / 2 + 1),
        "all" => Some(n),
        other => other.parse().ok(),
    }
}

/// An operation with what the checker derives from it once.
struct W<'a> {
    op: &'a Op,
    sent: Option<VersionVector>,
    got: Option<VersionVector>,
    dot: Option<Dot>,
}

/// Checks a history. `n_val` is N (3 unless the run says otherwise).
pub fn check(history: &History) -> Report {
    let n_val = history.run.as_ref().map_or(3, |r| r.n_val);
    let mut report = Report {
        seed: history.run.as_ref().map(|r| r.seed),
        ..Report::default()
    };
    for op in &history.ops {
        let c = report.ops.entry(op.kind().name().to_string()).or_default();
        match op.outcome() {
            Outcome::Ok => c.ok += 1,
            Outcome::Fail => c.fail += 1,
            Outcome::Unknown => c.unknown += 1,
        }
    }
    for f in &history.faults {
        if f.ok {
            *report
                .faults
                .entry(f.action.name().to_string())
                .or_default() += 1;
        } else {
            report.faults_failed += 1;
        }
        if f.ok && f.during_handoff && f.action.is_fault() {
            report.faults_during_handoff += 1;
            *report
                .faults_during_handoff_by_kind
                .entry(f.action.name().to_string())
                .or_default() += 1;
        }
        if let Action::Commit { node, accepted } = f.action {
            if accepted {
                report.commits.accepted += 1;
            } else {
                report.commits.refused += 1;
                if report.commits.refusals.len() < MAX_EXAMPLES {
                    report
                        .commits
                        .refusals
                        .push(format!("n{node}: {}", f.detail));
                }
            }
        }
    }

    let empty = crate::history::FinalState::default();
    let fin = history.final_state.as_ref().unwrap_or(&empty);
    if history.final_state.is_none() {
        report
            .failures
            .push("the history has no final state".to_string());
    }
    report.ring = ring_agreement(&fin.rings);
    report.convergence.converged = fin.converged;
    report.convergence.time_ms = fin.convergence_ms;
    report.convergence.polls = fin.polls;
    report.convergence.bound_ms = fin.convergence_bound_ms;

    // Operations by key.
    let mut by_key: BTreeMap<&str, Vec<W>> = BTreeMap::new();
    for op in &history.ops {
        by_key.entry(op.key.as_str()).or_default().push(W {
            op,
            sent: op
                .context_sent
                .as_deref()
                .and_then(|c| inspect_context(c).ok()),
            got: op.context.as_deref().and_then(|c| inspect_context(c).ok()),
            dot: op.dot.as_deref().and_then(parse_dot),
        });
    }
    let disturbed = disturbances(&history.faults);
    report.min_w = history.run.as_ref().map_or(1, |r| r.min_w);
    report.reap = history.run.as_ref().and_then(|r| r.reap);
    let env = KeyEnv {
        n_val,
        disturbed: &disturbed,
        reap: report.reap,
        clock_spread_us: clock_spread_us(&history.faults),
    };
    report.disk_full_answers = disk_full_answers(history);
    for f in &history.faults {
        if let Action::Died { node } = f.action {
            // The last disk or clock event of that node before, if it is
            // a fault still in force.
            let during = history
                .faults
                .iter()
                .rev()
                .find(|g| g.start_us <= f.start_us && g.action.disk_or_clock_node() == Some(node))
                .filter(|g| g.action.is_fault())
                .map(|g| {
                    format!(
                        " during {} (since {:.1} s)",
                        g.action.name(),
                        g.start_us as f64 / 1e6
                    )
                })
                .unwrap_or_default();
            let last_line = f
                .detail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            report.crashes.push(Violation {
                key: format!("n{node}"),
                op: None,
                detail: format!(
                    "found dead at {:.1} s{}; last log line: {last_line}",
                    f.start_us as f64 / 1e6,
                    during
                ),
            });
        }
    }
    let disk_faults: Vec<&FaultEvent> = history
        .faults
        .iter()
        .filter(|f| f.action.is_fault() && f.action.disk_or_clock_node().is_some())
        .collect();

    let mut keys: Vec<&str> = by_key.keys().copied().collect();
    for k in fin.keys.keys() {
        if !by_key.contains_key(k.as_str()) {
            keys.push(k);
        }
    }
    keys.sort_unstable();
    keys.dedup();
    let no_ops = Vec::new();
    for key in keys {
        let ops = by_key.get(key).unwrap_or(&no_ops);
        let fk = fin.keys.get(key);
        report.convergence.keys += 1;
        let final_view = final_view(key, fk, &mut report.convergence.diverged);
        let (lost_before, res_before) = (report.lost_writes.len(), report.resurrections.len());
        check_key(key, ops, &final_view, &env, &mut report);
        if !disk_faults.is_empty() {
            let start_of = |id: &Option<String>| {
                ops.iter()
                    .find(|w| id.as_deref() == Some(w.op.id().as_str()))
                    .map_or(0, |w| w.op.start_us)
            };
            for v in report.lost_writes[lost_before..]
                .iter_mut()
                .chain(report.resurrections[res_before..].iter_mut())
            {
                v.detail
                    .push_str(&faults_since(start_of(&v.op), &disk_faults));
            }
        }
    }

    // Verdict.
    let r = &mut report;
    if !r.crashes.is_empty() {
        r.failures.push(format!(
            "{} node processes died on their own",
            r.crashes.len()
        ));
    }
    if r.ring.checked && !r.ring.agreed {
        r.failures.push(format!(
            "the {} running members do not report the same ring",
            r.ring.nodes
        ));
    }
    if r.writes.lost > 0 {
        r.failures
            .push(format!("{} acknowledged writes lost", r.writes.lost));
    }
    if !r.resurrections.is_empty() {
        r.failures
            .push(format!("{} resurrections", r.resurrections.len()));
    }
    if !r.convergence.converged {
        r.failures.push(format!(
            "replicas did not converge within {} ms",
            r.convergence.bound_ms
        ));
    }
    if !r.convergence.diverged.is_empty() {
        r.failures.push(format!(
            "{} keys differ between replicas or reads in the final state",
            r.convergence.diverged.len()
        ));
    }
    if !r.siblings.violations.is_empty() {
        r.failures.push(format!(
            "{} sibling sanity violations",
            r.siblings.violations.len()
        ));
    }
    if r.read_your_quorum.strict_violations > 0 {
        r.failures.push(format!(
            "{} strict-quorum reads missed an acknowledged write",
            r.read_your_quorum.strict_violations
        ));
    }
    r.feed = check_feed(history);
    if let Some(f) = &r.feed {
        if !f.missing.is_empty() {
            r.failures.push(format!(
                "{} acknowledged writes missing from the change feed",
                f.missing.len()
            ));
        }
        if !f.duplicates.is_empty() {
            r.failures.push(format!(
                "{} versions delivered more than once by the change feed",
                f.duplicates.len()
            ));
        }
        if !f.wrong_values.is_empty() {
            r.failures.push(format!(
                "{} change feed events with a value other than their write's",
                f.wrong_values.len()
            ));
        }
        if !f.expired.is_empty() {
            r.failures.push(format!(
                "the change feed answered 410 (a gap) {} times",
                f.expired.len()
            ));
        }
        if !f.drained {
            r.failures
                .push("the feed consumer did not catch up with the end of the run".to_string());
        }
    }
    for list in [&mut r.convergence.diverged, &mut r.siblings.violations] {
        list.truncate(MAX_EXAMPLES * 4);
    }
    r.passed = r.failures.is_empty();
    report
}

/// The change feed rule (see the module documentation); `None` when no
/// feed consumer ran.
pub fn check_feed(history: &History) -> Option<FeedCheck> {
    let summary = history.feed_summary.as_ref()?;
    let mut out = FeedCheck {
        events: history.feed.len() as u64,
        polls: summary.polls,
        switches: summary.switches,
        errors: summary.errors.clone(),
        drained: summary.drained,
        expired: summary.expired.clone(),
        ..FeedCheck::default()
    };
    let mut seen: BTreeMap<(&str, &str), Vec<&crate::history::FeedEvent>> = BTreeMap::new();
    for e in &history.feed {
        seen.entry((e.key.as_str(), e.dot.as_str()))
            .or_default()
            .push(e);
    }
    for ((key, dot), events) in &seen {
        if events.len() > 1 {
            out.duplicates.push(Violation {
                key: key.to_string(),
                op: None,
                detail: format!(
                    "{dot} delivered {} times (nodes {:?})",
                    events.len(),
                    events.iter().map(|e| e.node).collect::<Vec<_>>()
                ),
            });
        }
    }
    for op in &history.ops {
        if !op.is_write() || op.outcome() != Outcome::Ok {
            continue;
        }
        let Some(dot) = op.dot.as_deref() else {
            continue;
        };
        out.acknowledged += 1;
        let Some(events) = seen.get(&(op.key.as_str(), dot)) else {
            out.missing.push(Violation {
                key: op.key.clone(),
                op: Some(op.id()),
                detail: format!(
                    "{} {dot} acknowledged at {} ms is not in the feed",
                    op.kind().name(),
                    op.end_us / 1000
                ),
            });
            continue;
        };
        let e = events[0];
        let right = match op.kind() {
            OpKind::Delete => e.deleted,
            _ => !e.deleted && e.value == op.value,
        };
        if !right {
            out.wrong_values.push(Violation {
                key: op.key.clone(),
                op: Some(op.id()),
                detail: format!(
                    "{dot}: the feed shows {} where the write wrote {}",
                    if e.deleted {
                        "a tombstone".to_string()
                    } else {
                        format!("{:?}", e.value)
                    },
                    match op.kind() {
                        OpKind::Delete => "a tombstone".to_string(),
                        _ => format!("{:?}", op.value),
                    }
                ),
            });
        }
    }
    for list in [&mut out.missing, &mut out.duplicates, &mut out.wrong_values] {
        list.truncate(MAX_EXAMPLES * 4);
    }
    Some(out)
}

/// Compares every node's final view of the ring with the first one's.
fn ring_agreement(views: &[crate::history::RingView]) -> RingAgreement {
    let Some(first) = views.first() else {
        return RingAgreement::default();
    };
    let show = |v: &crate::history::RingView| -> Vec<String> {
        v.members
            .iter()
            .map(|m| format!("{} {} {}", m.id, m.status, m.partitions_owned))
            .collect()
    };
    let mut out = RingAgreement {
        checked: true,
        nodes: views.len() as u64,
        version: first.version,
        members: show(first),
        ..RingAgreement::default()
    };
    for v in views {
        let why = if let Some(e) = &v.error {
            Some(e.clone())
        } else if v.transition {
            Some("still reports a membership change in progress".to_string())
        } else if v.version != first.version || v.members != first.members {
            Some(format!(
                "version {:?} members [{}], n{} has version {:?} members [{}]",
                v.version,
                show(v).join(", "),
                first.node,
                first.version,
                show(first).join(", ")
            ))
        } else {
            None
        };
        if let Some(detail) = why {
            out.disagreements.push(Violation {
                key: format!("n{}", v.node),
                op: None,
                detail,
            });
        }
    }
    out.agreed = out.disagreements.is_empty();
    out
}

/// The agreed final object of a key.
#[derive(Default)]
struct FinalView {
    /// Whether any node could tell.
    known: bool,
    values: Vec<String>,
    tombstones: usize,
    context: Option<VersionVector>,
    /// Every primary answered that it stores nothing for the key (never
    /// written, or reaped).
    absent: bool,
}

/// What the per-key checks need from the whole run.
struct KeyEnv<'a> {
    n_val: usize,
    disturbed: &'a [(u64, u64)],
    reap: Option<ReapSettings>,
    /// Largest difference two nodes' wall clocks can have had (µs).
    clock_spread_us: u64,
}

/// The largest difference between two nodes' wall clocks the run's clock
/// skews can have made, in µs: the largest step ahead plus the largest step
/// behind (a tombstone keeps the time its writer's clock said, so the two
/// need not be in force at once).
pub fn clock_spread_us(faults: &[FaultEvent]) -> u64 {
    let (mut ahead, mut behind) = (0u64, 0u64);
    for f in faults {
        if let Action::ClockSkew { offset_ms, .. } = f.action {
            if offset_ms >= 0 {
                ahead = ahead.max(offset_ms.unsigned_abs());
            } else {
                behind = behind.max(offset_ms.unsigned_abs());
            }
        }
    }
    (ahead + behind).saturating_mul(1_000)
}

/// Picks the final object of a key and records any disagreement: between
/// primaries' local copies, leftover hints, and R=all reads through
/// different nodes.
fn final_view(key: &str, fk: Option<&FinalKey>, diverged: &mut Vec<Violation>) -> FinalView {
    let Some(fk) = fk else {
        return FinalView::default();
    };
    let mut problems = Vec::new();
    let primaries: Vec<&ObjectView> = fk
        .replicas
        .iter()
        .filter(|c| fk.primaries.contains(&c.node))
        .collect();
    if let Some(first) = primaries.first() {
        for c in &primaries[1..] {
            if !c.same_object(first) {
                problems.push(format!(
                    "n{} holds {:?}+{}t, n{} holds {:?}+{}t",
                    first.node, first.values, first.tombstones, c.node, c.values, c.tombstones
                ));
            }
        }
    }
    for c in &fk.replicas {
        if c.hints > 0 {
            problems.push(format!("n{} still holds {} hints", c.node, c.hints));
        }
    }
    for c in &primaries {
        if c.status != 200 {
            problems.push(format!("primary n{} did not answer its local view", c.node));
        }
    }
    let reads: Vec<&ObjectView> = fk
        .reads
        .iter()
        .filter(|r| matches!(r.status, 200 | 300 | 404))
        .collect();
    if reads.len() < fk.reads.len() {
        problems.push(format!(
            "{} of {} R=all reads failed",
            fk.reads.len() - reads.len(),
            fk.reads.len()
        ));
    }
    if let Some(first) = reads.first() {
        for r in &reads[1..] {
            if !r.same_object(first) {
                problems.push(format!(
                    "reads through n{} and n{} differ: {:?}+{}t / {:?}+{}t",
                    first.node, r.node, first.values, first.tombstones, r.values, r.tombstones
                ));
            }
        }
    }
    // A read shows no tombstones when it answers 404, so reads and local
    // copies are compared on context and live values.
    let agreed = primaries
        .iter()
        .find(|c| c.status == 200)
        .copied()
        .or(reads.first().copied());
    if let Some(a) = agreed {
        for r in &reads {
            if r.context != a.context || r.values != a.values {
                problems.push(format!(
                    "read through n{} answers {:?}, the replicas hold {:?}",
                    r.node, r.values, a.values
                ));
            }
        }
    }
    if !problems.is_empty() {
        problems.dedup();
        diverged.push(Violation {
            key: key.to_string(),
            op: None,
            detail: problems.join("; "),
        });
    }
    match agreed {
        Some(a) => FinalView {
            known: true,
            values: a.values.clone(),
            tombstones: a.tombstones,
            context: a.context.as_deref().and_then(|c| inspect_context(c).ok()),
            absent: !primaries.is_empty()
                && primaries.iter().all(|c| {
                    c.status == 200 && !c.found && c.values.is_empty() && c.tombstones == 0
                }),
        },
        None => FinalView::default(),
    }
}

fn check_key(key: &str, ops: &[W], fin: &FinalView, env: &KeyEnv, report: &mut Report) {
    let writes: Vec<&W> = ops.iter().filter(|w| w.op.is_write()).collect();
    // Every live value an answer to some other operation showed, or the
    // final state holds: proof that the write happened and was stored. (A
    // write's own answer lists its value whether or not it was stored, and
    // so do the `supersedes` lists built from it.)
    let mut observed: HashSet<&str> = HashSet::new();
    for w in ops {
        let own = w.op.value.as_deref();
        if w.op.outcome() == Outcome::Ok {
            observed.extend(
                w.op.values
                    .iter()
                    .map(String::as_str)
                    .filter(|v| Some(*v) != own),
            );
        }
    }
    observed.extend(fin.values.iter().map(String::as_str));
    let by_value: HashMap<&str, &W> = writes
        .iter()
        .filter_map(|w| w.op.value.as_deref().map(|v| (v, *w)))
        .collect();

    // Did write `y` happen? Some(true): yes; Some(false): only an unknown
    // DELETE (benefit of the doubt); None: no evidence.
    let happened = |y: &W| -> Option<bool> {
        match (y.op.outcome(), y.op.kind()) {
            (Outcome::Ok, _) => Some(true),
            (Outcome::Fail, _) => None,
            (Outcome::Unknown, OpKind::Put) => {
                y.op.value
                    .as_deref()
                    .filter(|v| observed.contains(v))
                    .map(|_| true)
            }
            (Outcome::Unknown, _) => Some(false),
        }
    };
    let supersedes = |y: &W, x: &W| -> bool {
        if std::ptr::eq(y.op, x.op) {
            return false;
        }
        x.dot.as_ref().is_some_and(|d| covers(y.sent.as_ref(), d))
            || x.op
                .value
                .as_deref()
                .is_some_and(|v| y.op.supersedes.iter().any(|s| s == v))
    };
    // The strongest evidence that something that happened superseded each
    // write (same order as `writes`).
    let sup: Vec<Option<(bool, &W)>> = writes
        .iter()
        .map(|x| {
            let mut best: Option<(bool, &W)> = None;
            for y in &writes {
                // A context covering x was returned after x started.
                if y.op.start_us < x.op.start_us || !supersedes(y, x) {
                    continue;
                }
                match happened(y) {
                    Some(true) => return Some((true, *y)),
                    Some(false) if best.is_none() => best = Some((false, *y)),
                    _ => {}
                }
            }
            best
        })
        .collect();

    let final_values: HashSet<&str> = fin.values.iter().map(String::as_str).collect();

    // Which puts a delete removed (only asked when reaping was on and
    // something is missing, so computed on first use).
    let index: HashMap<*const Op, usize> = writes
        .iter()
        .enumerate()
        .map(|(i, w)| (w.op as *const Op, i))
        .collect();
    let removed = std::cell::OnceCell::new();
    let removed_of = |x: &W| -> (Option<u64>, bool) {
        let all = removed.get_or_init(|| removed_by_deletes(&writes, &happened, &supersedes));
        index
            .get(&(x.op as *const Op))
            .map_or((None, false), |&i| all[i])
    };

    // Dots handed to more than one acknowledged write.
    let mut by_dot: HashMap<&Dot, Vec<&W>> = HashMap::new();
    for w in &writes {
        if w.op.outcome() == Outcome::Ok
            && let Some(d) = &w.dot
        {
            by_dot.entry(d).or_default().push(w);
        }
    }
    let mut reused: HashSet<*const Op> = HashSet::new();
    for (dot, group) in &by_dot {
        if group.len() < 2 {
            continue;
        }
        // One version went to several writes: where they meet, replicas
        // keep one of them. The one kept here is the first whose value was
        // seen (or the first, if none was); every other one is a lost
        // write, seen or not (seen: e.g. a write after reaping numbered
        // under the counter floor, next to the deleted value it reused the
        // dot of).
        let keep = group
            .iter()
            .position(|w| w.op.value.as_deref().is_some_and(|v| observed.contains(v)))
            .unwrap_or(0);
        for (i, w) in group.iter().enumerate() {
            if i == keep {
                continue;
            }
            let was_seen = w.op.value.as_deref().is_some_and(|v| observed.contains(v));
            reused.insert(w.op as *const Op);
            report.writes.lost += 1;
            report.lost_writes.push(Violation {
                key: key.to_string(),
                op: Some(w.op.id()),
                detail: format!(
                    "acknowledged {} {} got dot {}:{} that {} other acknowledged writes also got ({}); {}",
                    w.op.kind().name(),
                    w.op.value.as_deref().unwrap_or("(tombstone)"),
                    dot.0,
                    dot.1,
                    group.len() - 1,
                    group
                        .iter()
                        .filter(|o| !std::ptr::eq(o.op, w.op))
                        .map(|o| o.op.id())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if was_seen {
                        "its value was seen too: one version given to two writes"
                    } else {
                        "it was never seen again"
                    }
                ),
            });
        }
    }

    // Lost writes.
    let mut unsuperseded_deletes = 0usize;
    let mut acked_unsuperseded_deletes: Vec<&W> = Vec::new();
    for (x, sup) in writes.iter().zip(&sup) {
        let ws = &mut report.writes;
        if x.op.outcome() == Outcome::Unknown {
            ws.unknown += 1;
            if x.op
                .value
                .as_deref()
                .is_some_and(|v| final_values.contains(v))
            {
                ws.unknown_present += 1;
            }
        }
        // Upper bounds count what a confirmed write did not supersede.
        if x.op.kind() == OpKind::Delete
            && x.op.outcome() != Outcome::Fail
            && !matches!(sup, Some((true, _)))
        {
            unsuperseded_deletes += 1;
        }
        if x.op.outcome() != Outcome::Ok {
            continue;
        }
        ws.acknowledged += 1;
        if reused.contains(&(x.op as *const Op)) {
            continue;
        }
        let present = match x.op.kind() {
            OpKind::Put => {
                x.op.value
                    .as_deref()
                    .is_some_and(|v| final_values.contains(v))
            }
            // Tombstones are anonymous: enough of them must be left for
            // every delete nothing superseded (checked below).
            _ => sup.is_none(),
        };
        let lost = |why: String| Violation {
            key: key.to_string(),
            op: Some(x.op.id()),
            detail: why,
        };
        if let Some(d) = &x.dot
            && fin.known
            && !covers(fin.context.as_ref(), d)
        {
            // With reaping, a dot goes with the tombstone that covered it:
            // a delete's own, or a put's that a delete removed (whether
            // confirmed, as for `sup`). The put's value must still be gone
            // and superseded (below).
            let gone = match (env.reap, x.op.kind()) {
                (None, _) => None,
                (Some(_), OpKind::Delete) => Some(true),
                (Some(_), _) => {
                    let (since, confirmed) = removed_of(x);
                    since.map(|_| confirmed)
                }
            };
            if let Some(confirmed) = gone {
                ws.reaped += 1;
                if !confirmed {
                    ws.reaped_by_unconfirmed_delete += 1;
                }
                if x.op.kind() == OpKind::Delete {
                    continue;
                }
            } else {
                ws.lost += 1;
                report.lost_writes.push(lost(format!(
                    "acknowledged {} {} (dot {}:{}, w={}, through n{}, {}..{} µs) is not covered by the final context",
                    x.op.kind().name(),
                    x.op.value.as_deref().unwrap_or("(tombstone)"),
                    d.0,
                    d.1,
                    x.op.w.as_deref().unwrap_or("?"),
                    x.op.node,
                    x.op.start_us,
                    x.op.end_us
                )));
                continue;
            }
        }
        if present {
            ws.present += 1;
            if x.op.kind() == OpKind::Delete {
                acked_unsuperseded_deletes.push(x);
            }
            continue;
        }
        match sup {
            Some((confirmed, _)) => {
                ws.superseded += 1;
                if !confirmed {
                    ws.excused_by_unconfirmed_delete += 1;
                }
            }
            None => {
                ws.lost += 1;
                report.lost_writes.push(lost(format!(
                "acknowledged {} {} (dot {}, w={}, through n{}, {}..{} µs) is neither in the final state ({:?}, {} tombstones) nor superseded by a later write",
                x.op.kind().name(),
                x.op.value.as_deref().unwrap_or("(tombstone)"),
                x.op.dot.as_deref().unwrap_or("?"),
                x.op.w.as_deref().unwrap_or("?"),
                x.op.node,
                x.op.start_us,
                x.op.end_us,
                fin.values,
                fin.tombstones
            )))
            }
        }
    }

    // Without reaping, the deletes nothing superseded keep their
    // tombstones; with it, a tombstone may be gone and only a value coming
    // back shows a lost delete.
    if env.reap.is_none() && fin.known && acked_unsuperseded_deletes.len() > fin.tombstones {
        report.writes.lost += (acked_unsuperseded_deletes.len() - fin.tombstones) as u64;
        report.lost_writes.push(Violation {
            key: key.to_string(),
            op: acked_unsuperseded_deletes.first().map(|d| d.op.id()),
            detail: format!(
                "{} acknowledged deletes were superseded by nothing ({}), but the final state has only {} tombstones",
                acked_unsuperseded_deletes.len(),
                acked_unsuperseded_deletes
                    .iter()
                    .map(|d| d.op.id())
                    .collect::<Vec<_>>()
                    .join(", "),
                fin.tombstones
            ),
        });
    }

    if fin.known && fin.absent && writes.iter().any(|w| w.op.outcome() == Outcome::Ok) {
        report.keys_reaped += 1;
    }

    // Sibling sanity.
    let s = &mut report.siblings;
    if fin.known {
        let total = (fin.values.len() + fin.tombstones) as u64;
        *s.histogram.entry(total).or_default() += 1;
        s.max = s.max.max(total);
        s.tombstones += fin.tombstones as u64;
        if fin.values.is_empty() {
            s.keys_deleted += 1;
        } else {
            s.keys_with_values += 1;
        }
    }
    let resurrected_before = report.resurrections.len();
    report.deleted_values_checked += writes
        .iter()
        .filter(|y| y.op.kind() == OpKind::Put && y.op.outcome() != Outcome::Fail)
        .filter(|y| {
            writes.iter().any(|d| {
                d.op.kind() == OpKind::Delete && happened(d) == Some(true) && supersedes(d, y)
            })
        })
        .count() as u64;
    let sib = |detail: String| Violation {
        key: key.to_string(),
        op: None,
        detail,
    };
    let mut counted: HashMap<&str, usize> = HashMap::new();
    for v in &fin.values {
        *counted.entry(v.as_str()).or_default() += 1;
    }
    for (v, n) in &counted {
        if *n > 1 {
            report
                .siblings
                .violations
                .push(sib(format!("value {v} is a sibling {n} times")));
        }
        match by_value.get(v) {
            None => report
                .siblings
                .violations
                .push(sib(format!("value {v:?} was never written"))),
            Some(y) if y.op.outcome() == Outcome::Fail => {
                report.siblings.violations.push(sib(format!(
                    "value {v} comes from {}, which certainly failed ({})",
                    y.op.id(),
                    y.op.error.as_deref().unwrap_or("")
                )))
            }
            Some(y) => {
                let by_delete = writes.iter().find(|z| {
                    z.op.kind() == OpKind::Delete && happened(z) == Some(true) && supersedes(z, y)
                });
                if let Some(d) = by_delete {
                    report.resurrections.push(Violation {
                        key: key.to_string(),
                        op: Some(d.op.id()),
                        detail: format!(
                            "value {v} ({}) is back though delete {} ({:?}, through n{}, {}..{} µs) removed it",
                            y.op.id(),
                            d.op.id(),
                            d.op.outcome(),
                            d.op.node,
                            d.op.start_us,
                            d.op.end_us
                        ),
                    });
                } else if let Some(z) = writes
                    .iter()
                    .find(|z| happened(z) == Some(true) && supersedes(z, y))
                {
                    report.siblings.violations.push(sib(format!(
                        "value {v} ({}) is still a sibling though {} ({} {}, {:?}) superseded it",
                        y.op.id(),
                        z.op.id(),
                        z.op.kind().name(),
                        z.op.value.as_deref().unwrap_or("(tombstone)"),
                        z.op.outcome()
                    )));
                }
            }
        }
    }
    if fin.tombstones > unsuperseded_deletes {
        report.siblings.violations.push(sib(format!(
            "{} tombstone siblings but only {} deletes not superseded",
            fin.tombstones, unsuperseded_deletes
        )));
    }
    let concurrent = writes
        .iter()
        .zip(&sup)
        .filter(|(x, sup)| x.op.outcome() != Outcome::Fail && !matches!(sup, Some((true, _))))
        .count();
    let total = fin.values.len() + fin.tombstones;
    if total > concurrent {
        report.siblings.violations.push(sib(format!(
            "{total} siblings but only {concurrent} writes that nothing superseded"
        )));
    }

    // Resurrections, per key: an acknowledged delete whose context covered
    // every value ever written to the key, and still a value at the end
    // (reported here only if no value was reported above).
    let puts: Vec<&&W> = writes
        .iter()
        .filter(|w| w.op.kind() == OpKind::Put && w.op.outcome() != Outcome::Fail)
        .collect();
    let covering = writes.iter().find(|d| {
        d.op.kind() == OpKind::Delete
            && d.op.outcome() == Outcome::Ok
            && d.op.context_sent.is_some()
            && puts.iter().all(|p| supersedes(d, p))
    });
    if let Some(d) = covering {
        report.keys_checked_for_resurrection += 1;
        if fin.known && !fin.values.is_empty() && report.resurrections.len() == resurrected_before {
            report.resurrections.push(Violation {
                key: key.to_string(),
                op: Some(d.op.id()),
                detail: format!(
                    "delete {} (through n{}, {}..{} µs) covered all {} values written, yet the key ends with {:?}",
                    d.op.id(),
                    d.op.node,
                    d.op.start_us,
                    d.op.end_us,
                    puts.len(),
                    fin.values
                ),
            });
        }
    }

    // Read-your-quorum. With reaping, a read may miss a write a delete
    // removed once the key could have been reaped: the read started at
    // least the grace (less the clock spread) or the settle, whichever is
    // longer, after the earliest such delete started, and it answered 404
    // or showed only values written after that delete that no delete
    // acknowledged before the read had removed.
    let after_reap = |x: &W, g: &W| -> bool {
        let Some(reap) = env.reap else {
            return false;
        };
        let since = match x.op.kind() {
            OpKind::Delete => x.op.start_us,
            _ => match removed_of(x).0 {
                Some(s) => s,
                None => return false,
            },
        };
        let wait_us = reap
            .grace_ms
            .saturating_mul(1_000)
            .saturating_sub(env.clock_spread_us)
            .max(reap.settle_ms.saturating_mul(1_000));
        if g.op.start_us < since.saturating_add(wait_us) {
            return false;
        }
        g.op.values.iter().all(|v| {
            by_value.get(v.as_str()).is_some_and(|y| {
                y.op.start_us > since
                    && !writes.iter().any(|z| {
                        z.op.kind() == OpKind::Delete
                            && z.op.outcome() == Outcome::Ok
                            && z.op.end_us < g.op.start_us
                            && supersedes(z, y)
                    })
            })
        })
    };
    read_your_quorum(key, ops, env, &after_reap, &mut report.read_your_quorum);
}

/// For each write (in the order of `writes`): the earliest start of a
/// delete that removed it, and whether one that removed it was
/// acknowledged. A delete removes a put it supersedes, and every put that
/// a put it removed superseded (the puts in between having happened).
/// Deletes themselves get `(None, false)`: their own tombstone is what
/// reaping removes.
fn removed_by_deletes(
    writes: &[&W],
    happened: &dyn Fn(&W) -> Option<bool>,
    supersedes: &dyn Fn(&W, &W) -> bool,
) -> Vec<(Option<u64>, bool)> {
    let mut order: Vec<usize> = (0..writes.len()).collect();
    order.sort_by_key(|&i| writes[i].op.start_us);
    let mut out = vec![(None, false); writes.len()];
    // Latest first, so that a later put's removal is known when an earlier
    // put it superseded asks.
    for pos in (0..order.len()).rev() {
        let x = writes[order[pos]];
        if x.op.kind() != OpKind::Put {
            continue;
        }
        let (mut best, mut confirmed): (Option<u64>, bool) = (None, false);
        for &yi in &order[pos + 1..] {
            let y = writes[yi];
            // Later ones cannot start earlier, nor confirm more.
            if confirmed && best.is_some_and(|b| y.op.start_us >= b) {
                break;
            }
            if !supersedes(y, x) {
                continue;
            }
            let (since, conf) = match (y.op.kind(), happened(y)) {
                (OpKind::Delete, Some(acked)) => (Some(y.op.start_us), acked),
                (OpKind::Put, Some(true)) => out[yi],
                _ => (None, false),
            };
            if let Some(t) = since {
                best = Some(best.map_or(t, |b: u64| b.min(t)));
                confirmed |= conf;
            }
        }
        out[order[pos]] = (best, confirmed);
    }
    out
}

/// The disk and clock faults that began at or after `since_us`, as a
/// suffix for a violation (empty if none).
fn faults_since(since_us: u64, disk: &[&FaultEvent]) -> String {
    let list: Vec<String> = disk
        .iter()
        .filter(|f| f.start_us >= since_us)
        .map(|f| {
            let node = f.action.disk_or_clock_node().unwrap_or(0);
            let what = match &f.action {
                Action::ClockSkew { offset_ms, .. } => format!(" {offset_ms:+} ms"),
                // "dropped N B from M of K files: ..." -> the count only.
                Action::PowerCut { .. } => f
                    .detail
                    .split(':')
                    .next()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            format!(
                "{} n{node}{what} at {:.1} s",
                f.action.name(),
                f.start_us as f64 / 1e6
            )
        })
        .collect();
    if list.is_empty() {
        String::new()
    } else {
        format!(" [disk/clock faults since: {}]", list.join("; "))
    }
}

/// What clients got through a node while its disk was full: operations sent
/// to that node that started between its `disk_full` and `disk_free` (or
/// the final heal), by kind and status (or error when no answer came).
pub fn disk_full_answers(history: &History) -> BTreeMap<String, u64> {
    let mut windows: Vec<(usize, u64, u64)> = Vec::new();
    let mut open: HashMap<usize, u64> = HashMap::new();
    for f in &history.faults {
        match f.action {
            Action::DiskFull { node } => {
                open.entry(node).or_insert(f.start_us);
            }
            Action::DiskFree { node } => {
                if let Some(s) = open.remove(&node) {
                    windows.push((node, s, f.end_us));
                }
            }
            Action::HealAll => {
                for (node, s) in open.drain() {
                    windows.push((node, s, f.end_us));
                }
            }
            _ => {}
        }
    }
    windows.extend(open.into_iter().map(|(n, s)| (n, s, u64::MAX)));
    let mut out = BTreeMap::new();
    for op in &history.ops {
        if windows
            .iter()
            .any(|&(n, s, e)| op.node == n && op.start_us >= s && op.start_us <= e)
        {
            let answer = match (op.status, &op.error) {
                (Some(st), _) => st.to_string(),
                // "transport: error sending request for url (...)" -> "transport".
                (None, Some(e)) => e.split(':').next().unwrap_or(e).to_string(),
                (None, None) => "?".to_string(),
            };
            *out.entry(format!("{} {answer}", op.kind().name()))
                .or_default() += 1;
        }
    }
    out
}

/// Intervals (µs) during which some fault was in force, each extended by
/// [`SETTLE_US`] after its heal.
pub fn disturbances(faults: &[FaultEvent]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut net: Option<u64> = None;
    let mut down: HashMap<usize, u64> = HashMap::new();
    let mut paused: HashMap<usize, u64> = HashMap::new();
    let mut full: HashMap<usize, u64> = HashMap::new();
    let mut membership: Option<u64> = None;
    for f in faults {
        match &f.action {
            Action::Partition { .. } | Action::Isolate { .. } | Action::Cut { .. } => {
                net.get_or_insert(f.start_us);
            }
            Action::HealNetwork => {
                if let Some(s) = net.take() {
                    out.push((s, f.end_us + SETTLE_US));
                }
            }
            // A wiped or power-cut node is down until its restart, like a
            // killed one.
            Action::Kill { node }
            | Action::WipeDisk { node }
            | Action::PowerCut { node, .. }
            | Action::Died { node } => {
                down.entry(*node).or_insert(f.start_us);
            }
            Action::DiskFull { node } => {
                full.entry(*node).or_insert(f.start_us);
            }
            Action::DiskFree { node } => {
                if let Some(s) = full.remove(node) {
                    out.push((s, f.end_us + SETTLE_US));
                }
            }
            // A skewed wall clock must not change what quorum reads return.
            Action::ClockSkew { .. } | Action::ClockReset { .. } => {}
            Action::Restart { node } => {
                if let Some(s) = down.remove(node) {
                    out.push((s, f.end_us + SETTLE_US));
                }
            }
            Action::Pause { node } => {
                paused.entry(*node).or_insert(f.start_us);
            }
            Action::Resume { node } => {
                if let Some(s) = paused.remove(node) {
                    out.push((s, f.end_us + SETTLE_US));
                }
            }
            // A membership change moves preference lists: its whole
            // transition, from its step to the await that saw the handoff
            // done, counts as a disturbance.
            Action::Join { .. }
            | Action::Leave { .. }
            | Action::JoinAndLeave { .. }
            | Action::RacingCommits { .. } => {
                membership.get_or_insert(f.start_us);
                out.push((f.start_us, f.end_us + SETTLE_US));
            }
            Action::AwaitHandoff => {
                if let Some(s) = membership.take() {
                    out.push((s, f.end_us + SETTLE_US));
                }
            }
            // Recorded as the concrete fault; commits happen inside a
            // change's step.
            Action::Commit { .. } | Action::HandoffFault { .. } | Action::HandoffHeal => {}
            Action::HealAll => {
                let starts: Vec<u64> = net
                    .take()
                    .into_iter()
                    .chain(membership.take())
                    .chain(down.drain().map(|(_, s)| s))
                    .chain(paused.drain().map(|(_, s)| s))
                    .chain(full.drain().map(|(_, s)| s))
                    .collect();
                for s in starts {
                    out.push((s, f.end_us + SETTLE_US));
                }
            }
        }
    }
    for s in net
        .into_iter()
        .chain(membership)
        .chain(down.into_values())
        .chain(paused.into_values())
        .chain(full.into_values())
    {
        out.push((s, u64::MAX));
    }
    out.sort_unstable();
    // Merge overlaps.
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in out {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// `after_reap(write, read)`: whether reaping explains the read missing
/// the write (see `check_key`).
fn read_your_quorum(
    key: &str,
    ops: &[W],
    env: &KeyEnv,
    after_reap: &dyn Fn(&W, &W) -> bool,
    out: &mut ReadYourQuorum,
) {
    let (n_val, disturbed) = (env.n_val, env.disturbed);
    let mut writes: Vec<&W> = ops
        .iter()
        .filter(|w| w.op.is_write() && w.op.outcome() == Outcome::Ok && w.dot.is_some())
        .collect();
    writes.sort_by_key(|w| w.op.start_us);
    // The fault-free gap containing [from, to], if any: its start.
    let gap_start = |from: u64, to: u64| -> Option<u64> {
        let mut start = 0;
        for &(s, e) in disturbed {
            if e <= from {
                start = start.max(e);
            } else if s < to {
                return None;
            }
        }
        Some(start)
    };
    for g in ops {
        if g.op.kind() != OpKind::Get || g.op.outcome() != Outcome::Ok {
            continue;
        }
        let (Some(r), Some(ctx)) = (
            g.op.r.as_deref().and_then(|q| quorum_count(q, n_val)),
            g.got.as_ref(),
        ) else {
            continue;
        };
        let Some(gs) = gap_start(g.op.start_us, g.op.end_us) else {
            continue;
        };
        let first = writes.partition_point(|w| w.op.start_us < gs);
        for x in &writes[first..] {
            if x.op.start_us >= g.op.start_us {
                break;
            }
            if x.op.end_us >= g.op.start_us {
                continue;
            }
            let Some(w) = x.op.w.as_deref().and_then(|q| quorum_count(q, n_val)) else {
                continue;
            };
            if r + w <= n_val {
                continue;
            }
            let dot = x.dot.as_ref().expect("filtered");
            let strict = !x.op.sloppy && !g.op.sloppy;
            let seen = covers(Some(ctx), dot);
            if strict {
                out.strict_checked += 1;
            } else {
                out.sloppy_checked += 1;
            }
            if !seen && after_reap(x, g) {
                out.reaped_accepted += 1;
            } else if !seen {
                if strict {
                    out.strict_violations += 1;
                } else {
                    out.sloppy_violations += 1;
                }
                if out.examples.len() < MAX_EXAMPLES || (strict && out.strict_violations <= 5) {
                    out.examples.push(Violation {
                        key: key.to_string(),
                        op: Some(g.op.id()),
                        detail: format!(
                            "{} read {} (r={}, sloppy={}, through n{}, {}..{} µs) missed {} {} (w={}, sloppy={}, through n{}, dot {}, ended {} µs)",
                            if strict { "strict" } else { "sloppy" },
                            g.op.id(),
                            g.op.r.as_deref().unwrap_or("?"),
                            g.op.sloppy,
                            g.op.node,
                            g.op.start_us,
                            g.op.end_us,
                            x.op.id(),
                            x.op.value.as_deref().unwrap_or("(tombstone)"),
                            x.op.w.as_deref().unwrap_or("?"),
                            x.op.sloppy,
                            x.op.node,
                            x.op.dot.as_deref().unwrap_or("?"),
                            x.op.end_us
                        ),
                    });
                }
            }
        }
    }
}
