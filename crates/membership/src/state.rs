//! The cluster state every node holds and gossips: a pure value with pure
//! transitions (no I/O), so its rules are unit- and property-tested.
//!
//! A state is a versioned record of the members (with their status), the
//! ring requests use now, and — while a membership change is under way —
//! the ring the cluster is moving to and the ownership transfers already
//! finished towards it.
//!
//! Life of a change, as in riak_core's staged clustering:
//! 1. `stage_join` / `stage_leave` mark members `Joining` / `Leaving`;
//! 2. `plan` computes the next ring from the current one with the minimal
//!    movement of `dynkv-ring` (only the new member's share moves on a join);
//! 3. `commit` installs it as `next`; every write now also reaches the
//!    future replicas, and each partition's data is streamed to every node
//!    that becomes its replica (`required_transfers`);
//! 4. once every transfer is `done`, `finish` switches `ring` to `next`:
//!    joiners become valid, leavers are removed, and old replicas may drop
//!    what they no longer replicate.
//!
//! ## One agreed order of changes
//! Every change to membership (staging a join or a leave, committing) is
//! made by one node, the **claimant** ([`ClusterState::claimant`]: the
//! lowest id among the valid members of the current ring), as in Riak's
//! `riak_core_claimant`; other nodes forward the request to it and it
//! applies them one at a time, so two commits issued at once are
//! serialised (the second is refused: a change is in progress). Each ring
//! transition (a commit, then its finish) adds one to the state's
//! **epoch**, and merging compares the epoch before the version: a node
//! with a stale view (it missed a commit or a finish, or was restored from
//! an old disk) can only lose a merge against a newer ring, never roll one
//! back, whatever its version counter says. A finish may be made by any
//! node, but only from the one committed transition, so every finisher
//! makes the same ring.
//!
//! Why a claimant and not a consensus log (Raft, Cassandra's transactional
//! metadata): membership changes are rare, operator-driven and may wait
//! for a node to come back, while a replicated log would add a second
//! durable log, elections and their failure modes to every node for them.
//! The claimant gives one order of changes with the gossip we already
//! have; its cost is that changes wait while the claimant is unreachable
//! (requests are refused with a clear error, nothing is lost).
//!
//! Merging (gossip) keeps the state with the higher (epoch, version); the
//! progress of the same transition (transfers streamed and finished, hints
//! handed over, nodes that applied or cleaned up after the epoch) is
//! unioned, so each node's progress reaches everyone whatever the order.
//!
//! The security rules ([`SecurityState`]: users, sources, grants, tokens)
//! ride along with their own clock: each of their entries is a
//! last-writer-wins register, merged entry by entry whichever membership
//! version wins, so a change to users or grants never waits for, nor
//! undoes, a membership change.

use std::collections::{BTreeMap, BTreeSet};

use dynkv_btypes::{BucketTypes, TypeCommand};
use dynkv_ring::{NodeId, PartitionMove, Ring};
use dynkv_security::{Command, SecurityState};
use serde::{Deserialize, Serialize};

/// Largest version counter a gossiped state may carry (membership's or any
/// security entry's). Each change adds one, so no real cluster comes near
/// it; a state above it (corrupt, or sent by a broken or hostile peer) is
/// refused, because a counter at `u64::MAX` would win every merge and
/// leave no room for another change.
pub const MAX_VERSION_COUNTER: u64 = 1 << 62;

/// First byte of an encoded state without security rules (still read).
pub const STATE_FORMAT_V1: u8 = 1;
/// First byte of an encoded state with its security rules, before epochs.
pub const STATE_FORMAT_V2: u8 = 2;
/// First byte of an encoded state with its epoch and transition progress,
/// before bucket types.
pub const STATE_FORMAT_V3: u8 = 3;
/// First byte of an encoded state with its bucket types.
pub const STATE_FORMAT_V4: u8 = 4;

/// Where a member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Staged to join: known and reachable, owns nothing yet.
    Joining,
    /// In the ring.
    Valid,
    /// Staged to leave: still serves until the transition finishes.
    Leaving,
}

/// One member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `host:port` other nodes use.
    pub addr: String,
    /// Its status.
    pub status: MemberStatus,
}

/// A transfer the transition needs: `partition`'s data must reach `target`
/// from every one of `sources` that is up (the current replicas, those
/// leaving the partition listed first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The partition.
    pub partition: u32,
    /// Its new replica.
    pub target: NodeId,
    /// Current replicas that hold it.
    pub sources: Vec<NodeId>,
}

/// Why a change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// A transition is already running.
    #[error("a membership change is already in progress; wait for its transfers to finish")]
    InProgress,
    /// Nothing staged.
    #[error("nothing to commit: stage a join or a leave first")]
    NothingStaged,
    /// A bucket-type change was refused.
    #[error(transparent)]
    BucketType(#[from] dynkv_btypes::TypeError),
    /// Unknown node.
    #[error("{0} is not a member")]
    NotMember(NodeId),
    /// Already a member.
    #[error("{0} is already a member")]
    AlreadyMember(NodeId),
    /// Would leave no node.
    #[error("the last valid member cannot leave")]
    LastMember,
    /// The security change was refused.
    #[error("{0}")]
    Security(#[from] dynkv_security::CommandError),
    /// Ring partition counts differ.
    #[error("the ring has {ours} partitions but the joining node has {theirs}")]
    PartitionMismatch {
        /// Ours.
        ours: u32,
        /// Theirs.
        theirs: u32,
    },
    /// The ring refused.
    #[error("ring: {0}")]
    Ring(String),
    /// This node is not the claimant, so it makes no change itself.
    #[error("{0} is the claimant (the node that makes membership changes); ask it or any node")]
    NotClaimant(NodeId),
    /// The claimant refused the change, or could not be asked.
    #[error("{0}")]
    Claimant(String),
}

/// The gossiped cluster state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// (counter, author): the greater wins on merge within one epoch.
    pub version: (u64, NodeId),
    /// Ring transitions so far (a commit and a finish add one each); it
    /// orders merges before `version`, so no stale view undoes a ring.
    pub epoch: u64,
    /// Every member, with its address and status.
    pub members: BTreeMap<NodeId, Member>,
    /// The ring requests use.
    pub ring: Ring,
    /// The ring a committed change is moving to.
    pub next: Option<Ring>,
    /// Transfers complete towards `next`: (partition, target).
    pub done: BTreeSet<(u32, NodeId)>,
    /// Copies streamed towards `next`: (partition, target, source). A
    /// transfer is complete once every source that is up has streamed.
    pub streamed: BTreeSet<(u32, NodeId, NodeId)>,
    /// Leaving members that handed their hints to members that stay.
    pub hints_handed: BTreeSet<NodeId>,
    /// Members that installed this epoch's rings.
    pub applied: BTreeSet<NodeId>,
    /// Members that, in this epoch, handed on and dropped what the ring
    /// no longer gives them (tombstones are reaped only after all did).
    pub cleaned: BTreeSet<NodeId>,
    /// Users, sources, grants and tokens (their own clock; see the module docs).
    pub security: SecurityState,
    /// Bucket types (their own clock, type by type, like `security`).
    pub bucket_types: BucketTypes,
}

/// A state in format 3, before bucket types.
#[derive(Deserialize)]
struct ClusterStateV3 {
    version: (u64, NodeId),
    epoch: u64,
    members: BTreeMap<NodeId, Member>,
    ring: Ring,
    next: Option<Ring>,
    done: BTreeSet<(u32, NodeId)>,
    streamed: BTreeSet<(u32, NodeId, NodeId)>,
    hints_handed: BTreeSet<NodeId>,
    applied: BTreeSet<NodeId>,
    cleaned: BTreeSet<NodeId>,
    security: SecurityState,
}

impl ClusterStateV3 {
    fn upgrade(self) -> ClusterState {
        ClusterState {
            version: self.version,
            epoch: self.epoch,
            members: self.members,
            ring: self.ring,
            next: self.next,
            done: self.done,
            streamed: self.streamed,
            hints_handed: self.hints_handed,
            applied: self.applied,
            cleaned: self.cleaned,
            security: self.security,
            bucket_types: BucketTypes::default(),
        }
    }
}

/// A state in format 1, before it carried security rules.
#[derive(Deserialize)]
struct ClusterStateV1 {
    version: (u64, NodeId),
    members: BTreeMap<NodeId, Member>,
    ring: Ring,
    next: Option<Ring>,
    done: BTreeSet<(u32, NodeId)>,
}

/// A state in format 2, before epochs and transition progress.
#[derive(Deserialize)]
struct ClusterStateV2 {
    version: (u64, NodeId),
    members: BTreeMap<NodeId, Member>,
    ring: Ring,
    next: Option<Ring>,
    done: BTreeSet<(u32, NodeId)>,
    security: SecurityState,
}

impl ClusterStateV2 {
    fn upgrade(self) -> ClusterState {
        ClusterState {
            version: self.version,
            epoch: 0,
            members: self.members,
            ring: self.ring,
            next: self.next,
            done: self.done,
            streamed: BTreeSet::new(),
            hints_handed: BTreeSet::new(),
            applied: BTreeSet::new(),
            cleaned: BTreeSet::new(),
            security: self.security,
            bucket_types: BucketTypes::default(),
        }
    }
}

fn effective_n(n_val: usize, ring: &Ring) -> usize {
    n_val.min(ring.members().len()).max(1)
}

impl ClusterState {
    /// The state of a cluster formed from a static member list (version 0).
    pub fn initial(
        members: &[(NodeId, String)],
        partitions: u32,
    ) -> Result<ClusterState, ChangeError> {
        let ring = Ring::new(members.iter().map(|(id, _)| id.clone()), partitions)
            .map_err(|e| ChangeError::Ring(e.to_string()))?;
        Ok(ClusterState {
            version: (0, NodeId::from("")),
            members: members
                .iter()
                .map(|(id, addr)| {
                    (
                        id.clone(),
                        Member {
                            addr: addr.clone(),
                            status: MemberStatus::Valid,
                        },
                    )
                })
                .collect(),
            ring,
            next: None,
            epoch: 0,
            done: BTreeSet::new(),
            streamed: BTreeSet::new(),
            hints_handed: BTreeSet::new(),
            applied: BTreeSet::new(),
            cleaned: BTreeSet::new(),
            security: SecurityState::default(),
            bucket_types: BucketTypes::default(),
        })
    }

    /// The node that makes every membership change (see the module docs):
    /// the lowest id among the ring's members that are not leaving, else
    /// the lowest id in the ring.
    pub fn claimant(&self) -> &NodeId {
        let ring = self.ring.members();
        ring.iter()
            .filter(|id| {
                self.members
                    .get(*id)
                    .is_some_and(|m| m.status == MemberStatus::Valid)
            })
            .min()
            .or_else(|| ring.iter().min())
            .expect("a ring has members")
    }

    /// Starts a new epoch: the progress of the last one is forgotten.
    fn next_epoch(&mut self) {
        self.epoch = self.epoch.saturating_add(1);
        self.done.clear();
        self.streamed.clear();
        self.hints_handed.clear();
        self.applied.clear();
        self.cleaned.clear();
    }

    fn bumped(&self, by: &NodeId) -> ClusterState {
        let mut s = self.clone();
        // Never wraps: decoding refuses counters near the top.
        s.version = (self.version.0.saturating_add(1), by.clone());
        s
    }

    /// What orders two states: the epoch first, then the version.
    fn order(&self) -> (u64, &(u64, NodeId)) {
        (self.epoch, &self.version)
    }

    /// The gossip merge: the newer (epoch, version) wins; the progress of
    /// the same epoch is unioned. Commutative, associative and idempotent.
    pub fn merge(&self, other: &ClusterState) -> ClusterState {
        let (winner, loser) = if other.order() > self.order() {
            (other, self)
        } else {
            (self, other)
        };
        let mut m = winner.clone();
        if winner.epoch == loser.epoch && winner.next == loser.next && winner.ring == loser.ring {
            m.done.extend(loser.done.iter().cloned());
            m.streamed.extend(loser.streamed.iter().cloned());
            m.hints_handed.extend(loser.hints_handed.iter().cloned());
            m.applied.extend(loser.applied.iter().cloned());
            m.cleaned.extend(loser.cleaned.iter().cloned());
        }
        m.security = self.security.merge(&other.security);
        m.bucket_types = self.bucket_types.merge(&other.bucket_types);
        m
    }

    /// Notes that `node` installed this epoch's rings.
    pub fn record_applied(&self, node: &NodeId) -> ClusterState {
        let mut s = self.clone();
        s.applied.insert(node.clone());
        s
    }

    /// Notes that `node` cleaned up after this epoch's ring.
    pub fn record_cleaned(&self, node: &NodeId) -> ClusterState {
        let mut s = self.clone();
        s.cleaned.insert(node.clone());
        s
    }

    /// Whether every member installed this epoch's rings: only then may a
    /// former owner hand on and drop data (no member still routes to it).
    pub fn applied_everywhere(&self) -> bool {
        self.members.keys().all(|m| self.applied.contains(m))
    }

    /// Whether the ring is settled: no change runs and every member has
    /// cleaned up after the last one, so no old copy is left anywhere that
    /// a reaped tombstone could let back in.
    pub fn settled(&self) -> bool {
        // Epoch 0 is the ring the cluster was formed with: nothing moved.
        self.next.is_none()
            && (self.epoch == 0 || self.members.keys().all(|m| self.cleaned.contains(m)))
    }

    /// Applies a security change made on node `by` (the membership version
    /// does not move: security has its own clock).
    pub fn change_security(&self, by: &NodeId, cmd: &Command) -> Result<ClusterState, ChangeError> {
        let mut s = self.clone();
        s.security = self.security.apply(by.as_str(), cmd)?;
        Ok(s)
    }

    /// Applies a bucket-type change made on node `by` (like security, bucket
    /// types have their own clock).
    pub fn change_bucket_type(
        &self,
        by: &NodeId,
        cmd: &TypeCommand,
    ) -> Result<ClusterState, ChangeError> {
        let mut s = self.clone();
        s.bucket_types = self.bucket_types.apply(by.as_str(), cmd)?;
        Ok(s)
    }

    /// Stages `id` at `addr` as joining. Refused while a change is in
    /// progress (as leaves and commits are): a join staged against the
    /// transition's state would outrank, by version, the `finish` another
    /// node makes concurrently. A joiner retries until the change is done.
    pub fn stage_join(
        &self,
        by: &NodeId,
        id: &NodeId,
        addr: &str,
        partitions: u32,
    ) -> Result<ClusterState, ChangeError> {
        if partitions != self.ring.partitions() {
            return Err(ChangeError::PartitionMismatch {
                ours: self.ring.partitions(),
                theirs: partitions,
            });
        }
        if let Some(m) = self.members.get(id) {
            // A joiner asking again (e.g. after a restart) is answered, not refused.
            if m.status == MemberStatus::Joining {
                let mut s = self.bumped(by);
                s.members.get_mut(id).expect("present").addr = addr.to_string();
                return Ok(s);
            }
            return Err(ChangeError::AlreadyMember(id.clone()));
        }
        if self.next.is_some() {
            return Err(ChangeError::InProgress);
        }
        let mut s = self.bumped(by);
        s.members.insert(
            id.clone(),
            Member {
                addr: addr.to_string(),
                status: MemberStatus::Joining,
            },
        );
        Ok(s)
    }

    /// Stages `id` to leave.
    pub fn stage_leave(&self, by: &NodeId, id: &NodeId) -> Result<ClusterState, ChangeError> {
        if self.next.is_some() {
            return Err(ChangeError::InProgress);
        }
        let m = self
            .members
            .get(id)
            .ok_or_else(|| ChangeError::NotMember(id.clone()))?;
        if m.status == MemberStatus::Joining {
            // Leaving before joining: simply forget it.
            let mut s = self.bumped(by);
            s.members.remove(id);
            return Ok(s);
        }
        let staying = self
            .members
            .values()
            .filter(|m| m.status == MemberStatus::Valid)
            .count();
        if m.status == MemberStatus::Valid && staying <= 1 {
            return Err(ChangeError::LastMember);
        }
        let mut s = self.bumped(by);
        s.members.get_mut(id).expect("present").status = MemberStatus::Leaving;
        Ok(s)
    }

    /// The ring the staged changes lead to.
    pub fn plan(&self) -> Result<Ring, ChangeError> {
        let mut ring = self.ring.clone();
        for (id, m) in &self.members {
            match m.status {
                MemberStatus::Joining => {
                    ring = ring
                        .with_member_added(id.clone())
                        .map_err(|e| ChangeError::Ring(e.to_string()))?
                }
                MemberStatus::Leaving if ring.contains(id) => {
                    ring = ring
                        .with_member_removed(id)
                        .map_err(|e| ChangeError::Ring(e.to_string()))?
                }
                _ => {}
            }
        }
        Ok(ring)
    }

    /// Partition ownership moves of the plan.
    pub fn planned_moves(&self) -> Result<Vec<PartitionMove>, ChangeError> {
        let next = self.plan()?;
        self.ring
            .moves_to(&next)
            .map_err(|e| ChangeError::Ring(e.to_string()))
    }

    /// Starts the transition to the planned ring.
    pub fn commit(&self, by: &NodeId) -> Result<ClusterState, ChangeError> {
        if self.next.is_some() {
            return Err(ChangeError::InProgress);
        }
        let next = self.plan()?;
        if next == self.ring
            && !self
                .members
                .values()
                .any(|m| m.status != MemberStatus::Valid)
        {
            return Err(ChangeError::NothingStaged);
        }
        let mut s = self.bumped(by);
        s.next = Some(next);
        s.next_epoch();
        Ok(s)
    }

    /// Every transfer the running transition needs (empty when none runs).
    pub fn required_transfers(&self, n_val: usize) -> Vec<Transfer> {
        let Some(next) = &self.next else {
            return Vec::new();
        };
        let (n_cur, n_next) = (effective_n(n_val, &self.ring), effective_n(n_val, next));
        let mut out = Vec::new();
        for p in 0..self.ring.partitions() {
            let cur: Vec<&NodeId> = self.ring.preference_list(p, n_cur);
            let nxt: Vec<&NodeId> = next.preference_list(p, n_next);
            let mut sources: Vec<NodeId> = cur
                .iter()
                .filter(|c| !nxt.contains(c))
                .map(|c| (*c).clone())
                .collect();
            sources.extend(cur.iter().filter(|c| nxt.contains(c)).map(|c| (*c).clone()));
            for t in nxt.iter().filter(|t| !cur.contains(t)) {
                out.push(Transfer {
                    partition: p,
                    target: (*t).clone(),
                    sources: sources.clone(),
                });
            }
        }
        out
    }

    /// Records that `source` streamed its copy of `partition` to `target`
    /// (no version change: progress merges by union).
    pub fn record_streamed(
        &self,
        partition: u32,
        target: &NodeId,
        source: &NodeId,
    ) -> ClusterState {
        let mut s = self.clone();
        if s.next.is_some() {
            s.streamed
                .insert((partition, target.clone(), source.clone()));
        }
        s
    }

    /// Marks complete every transfer whose sources have all streamed, or
    /// at least one has and the others are down (`is_up`): the new replica
    /// then holds every write an old replica that is up acknowledged.
    pub fn record_complete(&self, n_val: usize, is_up: impl Fn(&NodeId) -> bool) -> ClusterState {
        let mut s = self.clone();
        for t in self.pending_transfers(n_val) {
            let streamed = |src: &NodeId| self.has_streamed(&t, src);
            let any = t.sources.iter().any(streamed);
            if any && t.sources.iter().all(|src| streamed(src) || !is_up(src)) {
                s.done.insert((t.partition, t.target));
            }
        }
        s
    }

    /// Whether `source` has streamed its copy for transfer `t`.
    pub fn has_streamed(&self, t: &Transfer, source: &NodeId) -> bool {
        self.streamed
            .contains(&(t.partition, t.target.clone(), source.clone()))
    }

    /// Records a complete transfer (as [`ClusterState::record_complete`]
    /// would), for tests that skip the streams.
    #[cfg(test)]
    pub fn record_done(&self, partition: u32, target: &NodeId) -> ClusterState {
        let mut s = self.clone();
        if s.next.is_some() {
            s.done.insert((partition, target.clone()));
        }
        s
    }

    /// Notes that leaving member `node` handed its hints over.
    pub fn record_hints_handed(&self, node: &NodeId) -> ClusterState {
        let mut s = self.clone();
        if s.next.is_some() {
            s.hints_handed.insert(node.clone());
        }
        s
    }

    /// Leaving members that are up and still hold hints to hand over.
    pub fn leavers_owing_hints(&self, is_up: impl Fn(&NodeId) -> bool) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(id, m)| {
                m.status == MemberStatus::Leaving && !self.hints_handed.contains(*id) && is_up(id)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Transfers still missing.
    pub fn pending_transfers(&self, n_val: usize) -> Vec<Transfer> {
        self.required_transfers(n_val)
            .into_iter()
            .filter(|t| !self.done.contains(&(t.partition, t.target.clone())))
            .collect()
    }

    /// Switches to the next ring once every transfer is done and every
    /// leaving member that is up (`is_up`) handed its hints over (a dead
    /// leaver does not block the change: its hints wait for it to return).
    pub fn finish(
        &self,
        by: &NodeId,
        n_val: usize,
        is_up: impl Fn(&NodeId) -> bool,
    ) -> Option<ClusterState> {
        let next = self.next.clone()?;
        if !self.pending_transfers(n_val).is_empty() || !self.leavers_owing_hints(is_up).is_empty()
        {
            return None;
        }
        let mut s = self.bumped(by);
        s.next_epoch();
        s.members
            .retain(|id, m| m.status != MemberStatus::Leaving || next.contains(id));
        for (id, m) in s.members.iter_mut() {
            if next.contains(id) {
                m.status = MemberStatus::Valid;
            }
        }
        s.ring = next;
        s.next = None;
        Some(s)
    }

    /// Encodes with the format version byte.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![STATE_FORMAT_V4];
        postcard::to_io(self, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes [`ClusterState::encode`]'s output; total on arbitrary input.
    pub fn decode(bytes: &[u8]) -> Result<ClusterState, String> {
        let (&v, body) = bytes.split_first().ok_or("empty cluster state")?;
        let (s, rest): (ClusterState, &[u8]) = match v {
            STATE_FORMAT_V4 => postcard::take_from_bytes(body).map_err(|e| e.to_string())?,
            STATE_FORMAT_V3 => {
                let (o, rest): (ClusterStateV3, &[u8]) =
                    postcard::take_from_bytes(body).map_err(|e| e.to_string())?;
                (o.upgrade(), rest)
            }
            STATE_FORMAT_V2 => {
                let (o, rest): (ClusterStateV2, &[u8]) =
                    postcard::take_from_bytes(body).map_err(|e| e.to_string())?;
                (o.upgrade(), rest)
            }
            STATE_FORMAT_V1 => {
                let (o, rest): (ClusterStateV1, &[u8]) =
                    postcard::take_from_bytes(body).map_err(|e| e.to_string())?;
                let s = ClusterStateV2 {
                    version: o.version,
                    members: o.members,
                    ring: o.ring,
                    next: o.next,
                    done: o.done,
                    security: SecurityState::default(),
                };
                (s.upgrade(), rest)
            }
            v => return Err(format!("unknown cluster state format {v}")),
        };
        if !rest.is_empty() {
            return Err("trailing bytes after the cluster state".into());
        }
        if let Some(next) = &s.next
            && next.partitions() != s.ring.partitions()
        {
            return Err("next ring has another partition count".into());
        }
        if s.version.0 > MAX_VERSION_COUNTER
            || s.epoch > MAX_VERSION_COUNTER
            || s.security.version() > MAX_VERSION_COUNTER
            || s.bucket_types.version() > MAX_VERSION_COUNTER
        {
            return Err(format!(
                "version counter out of range (membership {}, epoch {}, security {}, bucket types {}; at most {MAX_VERSION_COUNTER})",
                s.version.0,
                s.epoch,
                s.security.version(),
                s.bucket_types.version()
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(k: usize) -> Vec<(NodeId, String)> {
        (1..=k)
            .map(|i| {
                (
                    NodeId::from(format!("n{i}")),
                    format!("127.0.0.1:{}", 7070 + i),
                )
            })
            .collect()
    }

    /// Three nodes with n4's join committed: the transition most tests run.
    fn join_of_n4_committed() -> ClusterState {
        ClusterState::initial(&ids(3), 16)
            .unwrap()
            .stage_join(&"n1".into(), &"n4".into(), "x:4", 16)
            .unwrap()
            .commit(&"n1".into())
            .unwrap()
    }

    fn complete(mut s: ClusterState, n: usize) -> ClusterState {
        for t in s.required_transfers(n) {
            s = s.record_done(t.partition, &t.target);
        }
        for leaver in s.leavers_owing_hints(|_| true) {
            s = s.record_hints_handed(&leaver);
        }
        s.finish(&"n1".into(), n, |_| true).expect("all done")
    }

    #[test]
    fn join_moves_one_share_and_finishes_after_every_transfer() {
        let s = ClusterState::initial(&ids(3), 64).unwrap();
        let n4: NodeId = "n4".into();
        let s = s
            .stage_join(&"n1".into(), &n4, "127.0.0.1:7075", 64)
            .unwrap();
        assert_eq!(s.members[&n4].status, MemberStatus::Joining);
        assert!(!s.ring.contains(&n4));
        let moves = s.planned_moves().unwrap();
        assert_eq!(moves.len(), 16, "only the new node's share moves");
        assert!(moves.iter().all(|m| m.to == n4));
        let s = s.commit(&"n1".into()).unwrap();
        assert!(s.commit(&"n1".into()).is_err(), "one transition at a time");
        let transfers = s.required_transfers(3);
        assert!(transfers.iter().all(|t| t.target == n4));
        // With N=3 on 4 nodes, n4 replicates 3/4 of the partitions.
        assert_eq!(transfers.len(), 48);
        assert!(
            s.finish(&"n1".into(), 3, |_| true).is_none(),
            "not before the transfers"
        );
        let done = complete(s, 3);
        assert!(done.ring.contains(&n4));
        assert_eq!(done.members[&n4].status, MemberStatus::Valid);
        assert!(done.next.is_none());
    }

    #[test]
    fn no_new_join_is_staged_while_a_change_runs() {
        let running = join_of_n4_committed();
        assert_eq!(
            running.stage_join(&"n2".into(), &"n5".into(), "x:5", 16),
            Err(ChangeError::InProgress)
        );
        // The joiner of the running change asking again is answered.
        let again = running
            .stage_join(&"n2".into(), &"n4".into(), "x:44", 16)
            .unwrap();
        assert_eq!(again.members[&NodeId::from("n4")].addr, "x:44");
        assert_eq!(again.next, running.next);
        // Once it finishes, the next join is taken.
        let done = complete(running, 3);
        assert!(
            done.stage_join(&"n2".into(), &"n5".into(), "x:5", 16)
                .is_ok()
        );
    }

    #[test]
    fn gossip_with_a_counter_out_of_range_is_refused() {
        let mut s = ClusterState::initial(&ids(3), 16).unwrap();
        s.version.0 = MAX_VERSION_COUNTER;
        assert_eq!(ClusterState::decode(&s.encode()), Ok(s.clone()));
        s.version.0 = u64::MAX;
        let e = ClusterState::decode(&s.encode()).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
        // Even an unchecked state never wraps to a lower version.
        let bumped = s.stage_leave(&"n1".into(), &"n2".into()).unwrap();
        assert_eq!(bumped.version.0, u64::MAX);
    }

    #[test]
    fn leave_removes_the_member_after_its_transfers() {
        let s = ClusterState::initial(&ids(4), 64).unwrap();
        let n2: NodeId = "n2".into();
        let s = s
            .stage_leave(&"n1".into(), &n2)
            .unwrap()
            .commit(&"n1".into())
            .unwrap();
        let t = s.required_transfers(3);
        assert!(!t.is_empty());
        assert!(
            t.iter()
                .all(|t| t.sources[0] == n2 || !t.sources.contains(&n2)),
            "the leaver is the preferred source"
        );
        let done = complete(s, 3);
        assert!(!done.members.contains_key(&n2));
        assert!(!done.ring.contains(&n2));
    }

    #[test]
    fn merge_prefers_newer_and_unions_progress() {
        let base = join_of_n4_committed();
        let tr = base.required_transfers(3);
        let a = base.record_done(tr[0].partition, &tr[0].target);
        let b = base.record_done(tr[1].partition, &tr[1].target);
        let m = a.merge(&b);
        assert_eq!(m.done.len(), 2);
        assert_eq!(m, b.merge(&a));
        assert_eq!(m.merge(&m), m);
        let newer = m.bumped(&"n9".into());
        assert_eq!(m.merge(&newer).version, newer.version);
        assert_eq!(newer.merge(&m).version, newer.version);
        // A higher version from an older epoch never wins.
        let stale = (0..5).fold(ClusterState::initial(&ids(3), 16).unwrap(), |s, _| {
            s.bumped(&"n9".into())
        });
        assert!(stale.version > m.version);
        assert_eq!(m.merge(&stale), m);
        assert_eq!(stale.merge(&m), m);
    }

    #[test]
    fn a_stale_view_cannot_roll_a_finished_change_back() {
        let running = join_of_n4_committed();
        assert_eq!(running.epoch, 1);
        let finished = complete(running.clone(), 3);
        assert_eq!(finished.epoch, 2);
        // A node that missed the finish answers the joiner again and again,
        // outgrowing the finish's version counter.
        let mut stale = running.clone();
        for i in 0..10 {
            stale = stale
                .stage_join(&"n2".into(), &"n4".into(), &format!("x:{i}"), 16)
                .unwrap();
        }
        assert!(stale.version > finished.version);
        for m in [finished.merge(&stale), stale.merge(&finished)] {
            assert_eq!(m.ring, finished.ring);
            assert!(m.next.is_none());
            assert_eq!(m.epoch, 2);
        }
    }

    #[test]
    fn a_transfer_completes_when_every_source_that_is_up_streamed() {
        let s = join_of_n4_committed();
        let t = s.required_transfers(3)[0].clone();
        assert_eq!(t.sources.len(), 3);
        let one = s.record_streamed(t.partition, &t.target, &t.sources[0]);
        let all_up = one.record_complete(3, |_| true);
        assert!(!all_up.done.contains(&(t.partition, t.target.clone())));
        // The sources that did not stream are down: one copy is enough.
        let rest_down = one.record_complete(3, |n| *n == t.sources[0]);
        assert!(rest_down.done.contains(&(t.partition, t.target.clone())));
        // Nobody streamed: never complete, whoever is down.
        assert!(s.record_complete(3, |_| false).done.is_empty());
        let every = t.sources.iter().fold(s.clone(), |s, src| {
            s.record_streamed(t.partition, &t.target, src)
        });
        let every = every.record_complete(3, |_| true);
        assert!(every.done.contains(&(t.partition, t.target.clone())));
    }

    #[test]
    fn a_leaver_that_is_up_hands_its_hints_over_before_the_finish() {
        let s = ClusterState::initial(&ids(4), 16)
            .unwrap()
            .stage_leave(&"n1".into(), &"n2".into())
            .unwrap()
            .commit(&"n1".into())
            .unwrap();
        let s = s
            .required_transfers(3)
            .iter()
            .fold(s.clone(), |s, t| s.record_done(t.partition, &t.target));
        let n2: NodeId = "n2".into();
        assert_eq!(s.leavers_owing_hints(|_| true), vec![n2.clone()]);
        assert!(s.finish(&"n1".into(), 3, |_| true).is_none());
        // A dead leaver does not block the change.
        assert!(s.finish(&"n1".into(), 3, |n| *n != n2).is_some());
        let handed = s.record_hints_handed(&n2);
        let done = handed.finish(&"n1".into(), 3, |_| true).unwrap();
        assert!(!done.members.contains_key(&n2));
    }

    #[test]
    fn the_claimant_is_the_lowest_valid_member_of_the_ring() {
        let s = ClusterState::initial(&ids(3), 16).unwrap();
        assert_eq!(s.claimant().as_str(), "n1");
        let leaving = s.stage_leave(&"n1".into(), &"n1".into()).unwrap();
        assert_eq!(leaving.claimant().as_str(), "n2");
        // A joiner is not in the ring yet, whatever its id.
        let joining = s.stage_join(&"n1".into(), &"a0".into(), "x", 16).unwrap();
        assert_eq!(joining.claimant().as_str(), "n1");
    }

    #[test]
    fn settled_once_every_member_cleaned_up_after_the_change() {
        let s = ClusterState::initial(&ids(3), 16).unwrap();
        assert!(s.settled(), "the ring the cluster formed with");
        let running = s
            .stage_join(&"n1".into(), &"n4".into(), "x:4", 16)
            .unwrap()
            .commit(&"n1".into())
            .unwrap();
        assert!(!running.settled());
        let done = complete(running, 3);
        assert!(!done.settled() && !done.applied_everywhere());
        let mut d = done.clone();
        for n in done.members.keys() {
            d = d.record_applied(n);
        }
        assert!(d.applied_everywhere() && !d.settled());
        for n in done.members.keys() {
            d = d.record_cleaned(n);
        }
        assert!(d.settled());
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let s = ClusterState::initial(&ids(3), 16).unwrap();
        assert_eq!(ClusterState::decode(&s.encode()).unwrap(), s);
        assert!(ClusterState::decode(&[]).is_err());
        assert!(ClusterState::decode(&[1, 2, 3]).is_err());
        assert!(ClusterState::decode(&[9]).is_err());
    }

    #[test]
    fn security_rides_along_and_merges_on_its_own_clock() {
        let base = ClusterState::initial(&ids(3), 16).unwrap();
        let secured = base
            .change_security(&"n2".into(), &Command::Enable)
            .unwrap();
        assert_eq!(
            secured.version, base.version,
            "membership version unchanged"
        );
        // A newer membership change made without seeing the security change
        // does not undo it.
        let moved = base
            .stage_join(&"n1".into(), &"n4".into(), "x:1", 16)
            .unwrap();
        for m in [moved.merge(&secured), secured.merge(&moved)] {
            assert!(m.security.enabled());
            assert_eq!(m.version, moved.version);
        }
        assert_eq!(ClusterState::decode(&secured.encode()).unwrap(), secured);
    }

    #[test]
    fn format_3_states_decode_without_bucket_types_and_types_merge_on_their_own_clock() {
        let s = ClusterState::initial(&ids(2), 16).unwrap();
        let mut v3 = vec![STATE_FORMAT_V3];
        let old = (
            &s.version,
            &s.epoch,
            &s.members,
            &s.ring,
            &s.next,
            &s.done,
            &s.streamed,
            &s.hints_handed,
            &s.applied,
            &s.cleaned,
            &s.security,
        );
        postcard::to_io(&old, &mut v3).unwrap();
        assert_eq!(ClusterState::decode(&v3).unwrap(), s);

        let create = TypeCommand::Create {
            name: "maps".into(),
            props: serde_json::json!({"datatype": "map"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let typed = s.change_bucket_type(&"n2".into(), &create).unwrap();
        assert_eq!(typed.version, s.version, "membership's clock does not move");
        let moved = s.stage_join(&"n1".into(), &"n3".into(), "x:1", 16).unwrap();
        for m in [moved.merge(&typed), typed.merge(&moved)] {
            assert!(m.bucket_types.get("maps").is_some());
            assert_eq!(m.version, moved.version);
        }
        assert_eq!(ClusterState::decode(&typed.encode()).unwrap(), typed);
    }

    #[test]
    fn format_1_states_still_decode() {
        let s = ClusterState::initial(&ids(2), 16).unwrap();
        let mut v1 = vec![STATE_FORMAT_V1];
        let old = (&s.version, &s.members, &s.ring, &s.next, &s.done);
        postcard::to_io(&old, &mut v1).unwrap();
        assert_eq!(ClusterState::decode(&v1).unwrap(), s);
    }

    #[test]
    fn refusals() {
        let s = ClusterState::initial(&ids(1), 16).unwrap();
        assert_eq!(
            s.stage_leave(&"n1".into(), &"n1".into()),
            Err(ChangeError::LastMember)
        );
        assert!(matches!(
            s.stage_join(&"n1".into(), &"n2".into(), "a", 32),
            Err(ChangeError::PartitionMismatch { .. })
        ));
        assert_eq!(s.commit(&"n1".into()), Err(ChangeError::NothingStaged));
        assert!(matches!(
            s.stage_join(&"n1".into(), &"n1".into(), "a", 16),
            Err(ChangeError::AlreadyMember(_))
        ));
    }

    mod order {
        //! Property: with every change made by the claimant of its own
        //! view (as `Membership` does), whatever the gossip order, the
        //! finishes by any node and nodes restored from old snapshots,
        //! each epoch names one ring transition only, and full gossip
        //! converges on the newest epoch ever reached.
        use super::*;
        use proptest::prelude::*;

        #[derive(Clone, Debug)]
        enum Op {
            Gossip(usize, usize),
            Join(usize, usize),
            Leave(usize, usize),
            Commit(usize),
            Progress(usize),
            Restore(usize, usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0..6usize, 0..6usize).prop_map(|(a, b)| Op::Gossip(a, b)),
                1 => (0..6usize, 3..6usize).prop_map(|(a, b)| Op::Join(a, b)),
                1 => (0..6usize, 0..6usize).prop_map(|(a, b)| Op::Leave(a, b)),
                2 => (0..6usize).prop_map(Op::Commit),
                2 => (0..6usize).prop_map(Op::Progress),
                1 => (0..6usize, 0..40usize).prop_map(|(a, b)| Op::Restore(a, b)),
            ]
        }

        fn id(i: usize) -> NodeId {
            NodeId::from(format!("n{}", i + 1))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn each_epoch_is_one_transition_and_none_rolls_back(ops in proptest::collection::vec(op(), 1..80)) {
                let first = ClusterState::initial(&ids(3), 16).unwrap();
                // Nodes 4..6 start alone (as a joiner does) and adopt the
                // cluster's state when they join.
                let mut nodes: Vec<ClusterState> = vec![first.clone(); 6];
                let mut history: Vec<Vec<ClusterState>> = vec![vec![first.clone()]; 6];
                let mut seen: BTreeMap<u64, (Ring, Option<Ring>)> = BTreeMap::new();
                let mut top = 0;
                for op in ops {
                    match op {
                        Op::Gossip(a, b) => {
                            let m = nodes[a].merge(&nodes[b]);
                            nodes[a] = m.clone();
                            nodes[b] = m;
                        }
                        Op::Join(a, b) | Op::Leave(a, b) => {
                            let c = nodes[a].claimant().clone();
                            let ci = (1..=6).position(|k| NodeId::from(format!("n{k}")) == c).unwrap();
                            if nodes[ci].claimant() == &c {
                                let r = match op {
                                    Op::Join(..) => nodes[ci].stage_join(&c, &id(b), "x", 16),
                                    _ => nodes[ci].stage_leave(&c, &id(b)),
                                };
                                if let Ok(s) = r {
                                    nodes[ci] = s;
                                }
                            }
                        }
                        Op::Commit(a) => {
                            let c = nodes[a].claimant().clone();
                            let ci = (1..=6).position(|k| NodeId::from(format!("n{k}")) == c).unwrap();
                            // The claimant learns what every member knows first.
                            for j in 0..6 {
                                nodes[ci] = nodes[ci].merge(&nodes[j]);
                            }
                            if nodes[ci].claimant() == &c
                                && let Ok(s) = nodes[ci].commit(&c)
                            {
                                nodes[ci] = s;
                            }
                        }
                        Op::Progress(a) => {
                            let mut s = nodes[a].clone();
                            for t in s.required_transfers(3) {
                                s = s.record_done(t.partition, &t.target);
                            }
                            for l in s.leavers_owing_hints(|_| true) {
                                s = s.record_hints_handed(&l);
                            }
                            if let Some(f) = s.finish(&id(a), 3, |_| true) {
                                s = f;
                            }
                            nodes[a] = s;
                        }
                        Op::Restore(a, back) => {
                            // What a node made was spread before its disk
                            // went back (a change is gossiped before it
                            // is acknowledged).
                            let b = (a + 1) % 6;
                            nodes[b] = nodes[b].merge(&nodes[a]);
                            let h = &history[a];
                            nodes[a] = h[h.len().saturating_sub(1 + back)].clone();
                        }
                    }
                    for (i, s) in nodes.iter().enumerate() {
                        let rings = (s.ring.clone(), s.next.clone());
                        let known = seen.entry(s.epoch).or_insert_with(|| rings.clone());
                        prop_assert_eq!(&*known, &rings, "epoch {} names two transitions", s.epoch);
                        top = top.max(s.epoch);
                        history[i].push(s.clone());
                    }
                }
                // Full gossip converges on the newest epoch.
                let all = nodes.iter().fold(nodes[0].clone(), |m, s| m.merge(s));
                prop_assert_eq!(all.epoch, top);
                for s in &nodes {
                    prop_assert_eq!(s.merge(&all).epoch, top);
                }
            }
        }
    }
}
