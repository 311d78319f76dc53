//! The history of a run: what every client did and saw, what the nemesis
//! did, and the state the cluster was left in. One JSON object per line, so
//! a run that dies half-way still leaves a readable prefix, and `grep`/`jq`
//! work on it.
//!
//! A history file is self-contained: the checker needs nothing else, so a
//! failing run can be re-checked (or the checker changed and re-run) without
//! running the cluster again (`dynkv-chaos --check FILE`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One line of a history file.
// Records are built and written one at a time; boxing the common variant
// would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Record {
    /// The run's parameters (first line).
    Run(RunInfo),
    /// A client operation, written when it completed.
    Op(Op),
    /// A fault the nemesis injected or healed.
    Nemesis(FaultEvent),
    /// What the cluster held after healing (last line).
    Final(FinalState),
    /// An event the feed consumer was given.
    Feed(FeedEvent),
    /// How the feed consumer's run went (once, when it stops).
    #[serde(rename = "feed_end")]
    FeedEnd(FeedSummary),
}

/// One event of the change feed, as the consumer got it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedEvent {
    /// Node (1-based) that answered it.
    pub node: usize,
    /// Microseconds since the run started, when it arrived.
    pub at_us: u64,
    /// The key.
    pub key: String,
    /// The version, `actor:counter` (as `X-Dynkv-Dot`).
    pub dot: String,
    /// The value (not for a tombstone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A delete's tombstone.
    #[serde(default)]
    pub deleted: bool,
}

/// The feed consumer's run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FeedSummary {
    /// Requests sent.
    pub polls: u64,
    /// Events received.
    pub events: u64,
    /// Moves to another node (after errors, and every few answers).
    pub switches: u64,
    /// Failed requests by kind (`connect`, `timeout`, `503 feed_unavailable`, ...).
    pub errors: BTreeMap<String, u64>,
    /// 410 answers (a gap in the feed), with their detail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<String>,
    /// Whether its cursor passed the end of the clients' work before it stopped.
    pub drained: bool,
    /// Microseconds since the run started, when it began and stopped.
    pub started_us: u64,
    /// See `started_us`.
    pub ended_us: u64,
    /// Its last cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Parameters that, with the binary, reproduce a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunInfo {
    /// Seed of the fault schedule and of every client's choices.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Replicas per key (N).
    pub n_val: usize,
    /// Length of the fault phase, in seconds.
    pub duration_s: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Hot keys (`hot-0`...) and cold keys (`cold-0`...).
    pub hot_keys: usize,
    /// See `hot_keys`.
    pub cold_keys: usize,
    /// The `dynkv` binary that ran.
    pub binary: String,
    /// Smallest W the clients asked for (2 when the schedule loses a
    /// node's data: a write acknowledged by one replica alone is not
    /// expected to survive that replica's disk).
    #[serde(default = "one")]
    pub min_w: usize,
    /// Whether the nodes ran under the disk and clock fault layer.
    #[serde(default)]
    pub fault_layer: bool,
    /// Tombstone reaping on the nodes, if it was on. `None` (also in
    /// histories from before it existed) means reaping was off: every
    /// acknowledged write's dot must then stay in the final context and
    /// every acknowledged delete not superseded keep its tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reap: Option<ReapSettings>,
}

/// The nodes' tombstone reaping settings (`storage.tombstone_grace_ms`,
/// `storage.reap_settle_ms`, `storage.reap_interval_ms`).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReapSettings {
    /// Age of a tombstone (by the wall clock of the node that wrote it,
    /// against the driver's) before it may be reaped, ms.
    pub grace_ms: u64,
    /// Least time between the two confirmations of a key (the driver's
    /// monotonic clock), ms.
    pub settle_ms: u64,
    /// Pause between reaping passes, ms (never 0: that is reaping off).
    pub interval_ms: u64,
}

impl ReapSettings {
    /// The chaos runs' default: a short grace, so that keys deleted during
    /// the run are reaped during it and the checker sees reaping.
    pub const CHAOS: ReapSettings = ReapSettings {
        grace_ms: 5_000,
        settle_ms: 3_000,
        interval_ms: 1_000,
    };
}

fn one() -> usize {
    1
}

/// What a client asked for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// `GET /kv/{key}`.
    Get,
    /// `PUT /kv/{key}`.
    Put,
    /// `DELETE /kv/{key}`.
    Delete,
}

impl OpKind {
    /// Lower-case name, as in the history.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Put => "put",
            OpKind::Delete => "delete",
        }
    }
}

/// How an operation ended, as far as the client can know.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged (a 2xx, a 300, or a 404 for a read).
    Ok,
    /// Certainly not applied: refused before any replica could store it
    /// (connection refused, 4xx, 503 `overloaded`).
    Fail,
    /// May or may not have been applied (timeout, 503 `quorum_not_met`,
    /// connection lost after sending): Dynamo semantics, a failed write may
    /// still be on some replicas.
    Unknown,
}

/// One client operation.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Op {
    /// Client number (0-based).
    pub client: u32,
    /// Per-client sequence number.
    pub seq: u64,
    /// What was asked.
    pub kind: Option<OpKind>,
    /// The key.
    pub key: String,
    /// Node (1-based) the request was sent to.
    pub node: usize,
    /// Microseconds since the run started, when the request was sent.
    pub start_us: u64,
    /// Microseconds since the run started, when the answer (or error) came.
    pub end_us: u64,
    /// `r` parameter sent (reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r: Option<String>,
    /// `w` parameter sent (writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<String>,
    /// `sloppy` parameter sent.
    pub sloppy: bool,
    /// `timeout_ms` parameter sent.
    pub timeout_ms: u64,
    /// The value written (puts): unique in the run, `c<client>-<seq>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `X-Dynkv-Context` sent (writes); `None` = a blind write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_sent: Option<String>,
    /// The live values shown by the response whose context was sent: the
    /// write replaces them (it causally follows them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
    /// How it ended.
    pub outcome: Option<Outcome>,
    /// HTTP status, if an answer came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Error code or transport error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `X-Dynkv-Context` returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `X-Dynkv-Dot` returned (writes): the version the value got, `actor:counter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dot: Option<String>,
    /// Live sibling values in the answer (reads; writes that answered 200).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Tombstone siblings in the answer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tombstones: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Op {
    /// The kind (histories always set it; `Option` only so `Default` exists).
    pub fn kind(&self) -> OpKind {
        self.kind.unwrap_or(OpKind::Get)
    }

    /// The outcome (see [`Op::kind`]).
    pub fn outcome(&self) -> Outcome {
        self.outcome.unwrap_or(Outcome::Unknown)
    }

    /// True for puts and deletes.
    pub fn is_write(&self) -> bool {
        matches!(self.kind(), OpKind::Put | OpKind::Delete)
    }

    /// `client:seq`, how reports name an operation.
    pub fn id(&self) -> String {
        format!("c{}#{}", self.client, self.seq)
    }
}

/// Which node of a membership change a handoff fault is aimed at.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HandoffRole {
    /// The joining node (it receives partitions).
    Joiner,
    /// The leaving node (it gives its partitions away).
    Leaver,
    /// A current replica streaming a moving partition (a member with an
    /// unfinished outbound transfer when one is seen, else any valid
    /// member other than the joiner).
    Source,
}

/// What a handoff fault does: none of them loses data.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HandoffFaultKind {
    /// `kill -9`, restarted on its disk at the heal.
    Kill,
    /// SIGSTOP, SIGCONT at the heal.
    Pause,
    /// Cut off from every other node (proxied nodes only, i.e. sources).
    Isolate,
}

/// Something the nemesis did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Cut every link between nodes of different groups, both ways.
    Partition {
        /// The sides (1-based node numbers).
        groups: Vec<Vec<usize>>,
    },
    /// Cut one node off from every other, both ways.
    Isolate {
        /// The node.
        node: usize,
    },
    /// Cut the listed directed links only (asymmetric: `from` cannot reach
    /// `to`, but `to` may still reach `from`).
    Cut {
        /// `(from, to)` pairs.
        links: Vec<(usize, usize)>,
    },
    /// Restore every link.
    HealNetwork,
    /// `kill -9`.
    Kill {
        /// The node.
        node: usize,
    },
    /// Start a killed node again on its data.
    Restart {
        /// The node.
        node: usize,
    },
    /// SIGSTOP: alive, holding its sockets, silent.
    Pause {
        /// The node.
        node: usize,
    },
    /// SIGCONT.
    Resume {
        /// The node.
        node: usize,
    },
    /// End of the fault phase: heal, resume and restart everything.
    HealAll,
    /// Live membership: start node `node` (a new one), stage its join and
    /// commit; the event ends when a commit was accepted (the handoff then
    /// runs until the next [`Action::AwaitHandoff`]), so that faults can
    /// land during it.
    Join {
        /// The new node's number.
        node: usize,
    },
    /// Live membership: stage `node`'s leave and commit; the event ends
    /// when a commit was accepted, like [`Action::Join`].
    Leave {
        /// The node.
        node: usize,
    },
    /// Racing changes: start node `join`, stage its join and the leave of
    /// `leave`, and commit both at once.
    JoinAndLeave {
        /// The new node's number.
        join: usize,
        /// The node that leaves.
        leave: usize,
    },
    /// Racing commits: stage `leave`'s leave, then commit it on two
    /// different nodes at the same moment. One commit suffices; a refused
    /// second one is correct (each outcome is an [`Action::Commit`]).
    RacingCommits {
        /// The node that leaves.
        leave: usize,
    },
    /// One commit of a staged membership change through `node`, and its
    /// outcome (recorded, never planned). A refusal is an outcome, not a
    /// failed action: `detail` holds the error.
    Commit {
        /// The node asked.
        node: usize,
        /// Whether it accepted the commit.
        accepted: bool,
    },
    /// Planned: a fault that loses no data, aimed at a node that takes part
    /// in the running membership handoff (chosen when it lands). Recorded
    /// as the concrete [`Action::Kill`], [`Action::Pause`] or
    /// [`Action::Isolate`] with `during_handoff` set.
    HandoffFault {
        /// Which node of the change.
        role: HandoffRole,
        /// What is done to it.
        kind: HandoffFaultKind,
        /// Picks among several candidates for the role.
        pick: u32,
    },
    /// Planned: heals the last [`Action::HandoffFault`] (recorded as the
    /// concrete restart, resume or network heal).
    HandoffHeal,
    /// Waits (bounded) until the running membership change has finished
    /// its handoff and switched rings: the end of the change's window.
    AwaitHandoff,
    /// Lose a node's disk: `kill -9`, remove its data directory. The node
    /// stays down until a [`Action::Restart`] starts it, empty, under the
    /// same id.
    WipeDisk {
        /// The node.
        node: usize,
    },
    /// A power cut: `kill -9`, then every file of its data directory loses
    /// what was written since its last fsync (the event's `detail` says
    /// which files lost how much). Down until a [`Action::Restart`].
    PowerCut {
        /// The node.
        node: usize,
        /// Keep a random prefix of each file's unsynced tail (some pages
        /// were written back; a record may be torn) instead of none of it.
        #[serde(default)]
        torn: bool,
        /// Seed of those prefixes.
        #[serde(default)]
        seed: u64,
    },
    /// The node's disk is full: writes under its data directory fail with
    /// ENOSPC until [`Action::DiskFree`].
    DiskFull {
        /// The node.
        node: usize,
    },
    /// Space is back on the node's disk.
    DiskFree {
        /// The node.
        node: usize,
    },
    /// The node's wall clock steps `offset_ms` away from true time (its
    /// monotonic clock does not move).
    ClockSkew {
        /// The node.
        node: usize,
        /// Offset from true time, ms (negative: behind).
        offset_ms: i64,
    },
    /// The node's wall clock steps back to true time.
    ClockReset {
        /// The node.
        node: usize,
    },
    /// Not an action: the nemesis found the node's process gone though
    /// nothing killed it (it crashed; `detail` holds its log's last lines).
    /// It stays down until the next [`Action::Restart`] of it or the final
    /// heal. A failure of the run.
    Died {
        /// The node.
        node: usize,
    },
}

impl Action {
    /// Short name used in the fault counts.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Partition { groups } if is_majority_split(groups) => "partition_majority",
            Action::Partition { .. } => "partition_random",
            Action::Isolate { .. } => "isolate",
            Action::Cut { .. } => "cut_asymmetric",
            Action::HealNetwork => "heal_network",
            Action::Kill { .. } => "kill",
            Action::Restart { .. } => "restart",
            Action::Pause { .. } => "pause",
            Action::Resume { .. } => "resume",
            Action::HealAll => "heal_all",
            Action::Join { .. } => "join",
            Action::Leave { .. } => "leave",
            Action::JoinAndLeave { .. } => "join_and_leave",
            Action::RacingCommits { .. } => "racing_commits",
            Action::Commit { accepted: true, .. } => "commit_accepted",
            Action::Commit {
                accepted: false, ..
            } => "commit_refused",
            Action::HandoffFault { .. } => "handoff_fault",
            Action::HandoffHeal => "handoff_heal",
            Action::AwaitHandoff => "await_handoff",
            Action::WipeDisk { .. } => "wipe_disk",
            Action::PowerCut { torn: false, .. } => "power_cut",
            Action::PowerCut { torn: true, .. } => "power_cut_torn",
            Action::DiskFull { .. } => "disk_full",
            Action::DiskFree { .. } => "disk_free",
            Action::ClockSkew { .. } => "clock_skew",
            Action::ClockReset { .. } => "clock_reset",
            Action::Died { .. } => "died",
        }
    }

    /// The node a disk or clock fault (or its heal) acts on.
    pub fn disk_or_clock_node(&self) -> Option<usize> {
        match self {
            Action::WipeDisk { node }
            | Action::PowerCut { node, .. }
            | Action::DiskFull { node }
            | Action::DiskFree { node }
            | Action::ClockSkew { node, .. }
            | Action::ClockReset { node } => Some(*node),
            _ => None,
        }
    }

    /// True for the steps that commit a membership change (its handoff
    /// runs from then until the next [`Action::AwaitHandoff`]).
    pub fn changes_membership(&self) -> bool {
        matches!(
            self,
            Action::Join { .. }
                | Action::Leave { .. }
                | Action::JoinAndLeave { .. }
                | Action::RacingCommits { .. }
        )
    }

    /// True for the faults that take data a node had acknowledged away
    /// from it (a wiped disk, a power cut).
    pub fn loses_data(&self) -> bool {
        matches!(self, Action::WipeDisk { .. } | Action::PowerCut { .. })
    }

    /// True for actions that inject a fault (not the ones that heal).
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Action::Partition { .. }
                | Action::Isolate { .. }
                | Action::Cut { .. }
                | Action::Kill { .. }
                | Action::Pause { .. }
                | Action::Join { .. }
                | Action::Leave { .. }
                | Action::JoinAndLeave { .. }
                | Action::RacingCommits { .. }
                | Action::HandoffFault { .. }
                | Action::WipeDisk { .. }
                | Action::PowerCut { .. }
                | Action::DiskFull { .. }
                | Action::ClockSkew { .. }
        )
    }
}

fn is_majority_split(groups: &[Vec<usize>]) -> bool {
    let total: usize = groups.iter().map(Vec::len).sum();
    groups.len() == 2 && groups.iter().any(|g| g.len() == total / 2 + 1)
}

/// A nemesis action as it happened.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FaultEvent {
    /// When it began (µs since the run started).
    pub start_us: u64,
    /// When it was done (a restart ends when the node answers `/health`).
    pub end_us: u64,
    /// What.
    #[serde(flatten)]
    pub action: Action,
    /// False if it could not be carried out (e.g. a node did not restart).
    pub ok: bool,
    /// Why not, when `ok` is false; otherwise what it did, when there is
    /// something to say (what a power cut dropped).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Whether a membership handoff was running when it was injected (a
    /// node reported a transition in progress).
    #[serde(default, skip_serializing_if = "is_false")]
    pub during_handoff: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One node's view of the ring (`/admin/members`) at the end of a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RingView {
    /// The node asked.
    pub node: usize,
    /// Its cluster state's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Its members, sorted by id.
    #[serde(default)]
    pub members: Vec<RingMember>,
    /// Whether it still reported a change in progress.
    #[serde(default)]
    pub transition: bool,
    /// Why it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One member as a node sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct RingMember {
    /// Node id.
    pub id: String,
    /// `valid`, `joining` or `leaving`.
    pub status: String,
    /// Partitions it owns in the current ring.
    pub partitions_owned: u64,
}

/// The cluster after healing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FinalState {
    /// When everything was healed and every node answered (µs since start).
    pub healed_us: u64,
    /// Whether every key's replicas held the same object (and no hint was
    /// left) before the bound passed.
    pub converged: bool,
    /// Time from `healed_us` to convergence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub convergence_ms: Option<u64>,
    /// The bound that was waited.
    pub convergence_bound_ms: u64,
    /// How many times every replica was polled until they agreed (the
    /// first poll comes after the clients have finished and every node sees
    /// every other up, so `1` means "converged by then").
    #[serde(default)]
    pub polls: u32,
    /// With reaping on: time from `healed_us` to the snapshot below, taken
    /// once every tombstone of the run could have been reaped (grace,
    /// largest forward clock skew, settle and two passes after the last
    /// client operation, and replicas agreeing again), and unchanged
    /// across the R=all reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_ms: Option<u64>,
    /// Per key.
    pub keys: BTreeMap<String, FinalKey>,
    /// Every running member's view of the ring after healing (empty in
    /// histories from before it was recorded: not checked then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rings: Vec<RingView>,
}

/// One key's final state, as every node saw it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FinalKey {
    /// The key's primary replicas (1-based).
    pub primaries: Vec<usize>,
    /// What each node stores locally (`/admin/local`), every node.
    pub replicas: Vec<ObjectView>,
    /// `GET ?r=all&sloppy=false` through each node.
    pub reads: Vec<ObjectView>,
}

/// A view of one key's object.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectView {
    /// The node that answered.
    pub node: usize,
    /// HTTP status (reads) or 200 (local views).
    pub status: u16,
    /// Whether the node stores the key itself (local views).
    #[serde(default)]
    pub found: bool,
    /// Context token of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Live values, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Tombstone siblings.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tombstones: usize,
    /// Hints this node still holds for the key (local views).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hints: usize,
}

impl ObjectView {
    /// Whether two views hold the same object: same context, same siblings.
    pub fn same_object(&self, other: &ObjectView) -> bool {
        self.context == other.context
            && self.values == other.values
            && self.tombstones == other.tombstones
    }
}

/// A whole history, split by record type.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The run line, if present.
    pub run: Option<RunInfo>,
    /// Client operations, in completion order.
    pub ops: Vec<Op>,
    /// Nemesis actions, in order.
    pub faults: Vec<FaultEvent>,
    /// The final state, if the run got that far.
    pub final_state: Option<FinalState>,
    /// The feed consumer's events, in arrival order.
    pub feed: Vec<FeedEvent>,
    /// The feed consumer's summary (`None`: no consumer ran).
    pub feed_summary: Option<FeedSummary>,
}

impl History {
    /// Splits records by type.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> History {
        let mut h = History::default();
        for r in records {
            match r {
                Record::Run(i) => h.run = Some(i),
                Record::Op(o) => h.ops.push(o),
                Record::Nemesis(f) => h.faults.push(f),
                Record::Final(f) => h.final_state = Some(f),
                Record::Feed(e) => h.feed.push(e),
                Record::FeedEnd(s) => h.feed_summary = Some(s),
            }
        }
        h
    }

    /// Reads a JSON-lines history file.
    pub fn load(path: &Path) -> std::io::Result<History> {
        let f = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut records = Vec::new();
        for (i, line) in f.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = serde_json::from_str(&line).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), i + 1),
                )
            })?;
            records.push(r);
        }
        Ok(History::from_records(records))
    }

    /// Writes it back as JSON lines (run, ops and faults by time, final).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        let line = |w: &mut std::io::BufWriter<std::fs::File>, r: &Record| {
            serde_json::to_writer(&mut *w, r)?;
            w.write_all(b"\n")
        };
        if let Some(run) = &self.run {
            line(&mut w, &Record::Run(run.clone()))?;
        }
        for o in &self.ops {
            line(&mut w, &Record::Op(o.clone()))?;
        }
        for f in &self.faults {
            line(&mut w, &Record::Nemesis(f.clone()))?;
        }
        for e in &self.feed {
            line(&mut w, &Record::Feed(e.clone()))?;
        }
        if let Some(s) = &self.feed_summary {
            line(&mut w, &Record::FeedEnd(s.clone()))?;
        }
        if let Some(f) = &self.final_state {
            line(&mut w, &Record::Final(f.clone()))?;
        }
        w.flush()
    }
}

/// Appends records to a history file as they happen (shared by clients and
/// the nemesis), and keeps them in memory for the checker.
pub struct Recorder {
    out: Option<std::sync::Mutex<std::io::BufWriter<std::fs::File>>>,
    records: std::sync::Mutex<Vec<Record>>,
}

impl Recorder {
    /// A recorder writing to `path` (or only to memory with `None`).
    pub fn new(path: Option<&Path>) -> std::io::Result<Recorder> {
        let out = match path {
            Some(p) => Some(std::sync::Mutex::new(std::io::BufWriter::new(
                std::fs::File::create(p)?,
            ))),
            None => None,
        };
        Ok(Recorder {
            out,
            records: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Records one line.
    pub fn record(&self, r: Record) {
        if let Some(out) = &self.out {
            let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
            // A history that cannot be written is a broken run, but the
            // in-memory copy still lets the checker report.
            let _ = serde_json::to_writer(&mut *w, &r);
            let _ = w.write_all(b"\n");
        }
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }

    /// Flushes the file.
    pub fn flush(&self) {
        if let Some(out) = &self.out {
            let _ = out.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }

    /// Everything recorded so far.
    pub fn history(&self) -> History {
        History::from_records(
            self.records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        )
    }
}
