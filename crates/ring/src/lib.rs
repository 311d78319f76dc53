//! # dynkv-ring: which nodes hold a key
//!
//! This crate answers one question for the rest of dynkv: *given a key, which
//! physical nodes store it, and which nodes stand in when those are down?* It is
//! pure data and arithmetic: no I/O, no async, no logging, no clocks. Every
//! answer is a deterministic function of a [`Ring`] value, so any two nodes
//! holding equal rings route every key identically.
//!
//! ## Keys to partitions
//!
//! A key is hashed with xxh3-64 ([`key_hash`]). The 64-bit hash space is cut
//! into `P` equal, contiguous ranges called *partitions* (`P` is a power of two
//! in `1..=65536`, default [`DEFAULT_PARTITIONS`] = 64). The partition of a hash
//! is simply its top `log2(P)` bits, so partition 0 holds the lowest hashes and
//! partition `P - 1` the highest; "clockwise" means increasing hash, wrapping
//! from `P - 1` back to 0.
//!
//! Why fixed partitions rather than one random token per node? With a fixed
//! grid, the unit of ownership, of hand-off and of anti-entropy (a Merkle tree
//! per partition) is the same everywhere, the number of ranges never changes
//! when nodes come and go, and balance can be *guaranteed* instead of hoped for
//! (the "strategy 3" of the Dynamo paper).
//!
//! ## Partitions to nodes
//!
//! Each partition is a *virtual node* owned by exactly one physical node. The
//! assignment is stored explicitly as `owners[partition]` rather than being
//! recomputed from hashes, because a later live-membership feature gossips a
//! ring between nodes and changes it incrementally: a join or leave must move as
//! few partitions as possible, and the resulting layout depends on history, not
//! just on the current member set.
//!
//! * [`Ring::new`] builds the initial layout from a member *set*: members are
//!   sorted and dealt round robin (`partition i -> members[i % k]`). That is
//!   perfectly balanced and puts consecutive partitions on distinct nodes
//!   (with `k >= 3`, any three consecutive ones; across the wrap from `P - 1`
//!   to 0 that can fail when `P % k` is 1 or 2).
//! * [`Ring::with_member_added`] / [`Ring::with_member_removed`] change the
//!   layout incrementally and keep every node at `floor(P/k)` or `ceil(P/k)`
//!   partitions. On a balanced ring a join moves exactly `floor(P/(k+1))`
//!   partitions, all to the new node, and a leave moves exactly the leaver's
//!   partitions; nothing else changes owner. See the method docs for the exact
//!   (deterministic) rules.
//! * [`Ring::moves_to`] lists what changed between two rings, which is what a
//!   node needs in order to hand data off.
//!
//! A member may own no partition at all when there are more members than
//! partitions (for example 100 nodes on the default 64 partitions). Such a
//! *standby* member never appears as an owner, but it is still part of the ring:
//! it is appended at the end of every walk (see below), so it can serve as a
//! replica or a fallback.
//!
//! ## Preference lists and fallbacks
//!
//! To replicate a partition `N` times, walk clockwise from it over the owners
//! (`p, p+1, ...`, wrapping) and collect the first `N` *distinct* physical
//! nodes: that is the partition's [preference list](Ring::preference_list).
//! Skipping nodes already met is what makes virtual nodes safe: two replicas
//! never land on the same machine. Continuing the same walk yields the
//! [fallbacks](Ring::fallbacks), the nodes a sloppy quorum writes to (with a
//! hint) when a primary is unreachable. [`Ring::walk`] returns the whole order:
//! every member exactly once, primaries first.
//!
//! After the owners of all `P` partitions have been visited, members that own
//! nothing are appended, starting at index `partition % members` of the sorted
//! member list and wrapping, so different partitions spread their load over
//! them.
//!
//! ## Cost
//!
//! Lookups are cheap enough for every request: [`Ring::partition_of_key`] is a
//! hash and a shift; [`Ring::preference_list`] walks only until it has found
//! `N` distinct nodes, so it costs `O(steps)` where `steps` is about `N` on a
//! balanced ring and at most `P` plus the member count. The ring keeps each
//! owner as an index into the member list, so deduplication is a bit test in a
//! small bitset (on the stack up to 256 members), not a string comparison.
//! [`Ring::walk`] is the same with `N = members`. Measured with P = 4096 and
//! 100 members (workspace dev profile): about 30 ns for a preference list of
//! 3 and 0.4 µs for a full walk. Membership changes cost
//! `O(moved partitions * P)` (about 1 ms for one join at P = 4096) and happen
//! rarely.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod rebalance;

use serde::{Deserialize, Serialize};
use std::fmt;

/// Partition count used when the operator does not choose one: enough ranges
/// to spread a small cluster's load in fine steps (each node owns within one
/// partition of the mean), few enough that per-partition bookkeeping (Merkle
/// trees, hand-off) stays cheap.
pub const DEFAULT_PARTITIONS: u32 = 64;

/// Largest accepted partition count. Bounds the size of a gossiped ring and
/// the cost of membership changes.
pub const MAX_PARTITIONS: u32 = 65536;

/// Name of a physical node, stable across restarts.
///
/// It is the identity used everywhere a node is referred to (ring ownership,
/// version vectors, hints), so it is a distinct type rather than a bare
/// `String`. Ordering is plain string ordering, which is what makes ring
/// construction independent of the order members were listed in. Serialized
/// as a plain string.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// Wraps a node name; same as `NodeId::from`, handy with `impl Into<String>`.
    pub fn new(id: impl Into<String>) -> Self {
        NodeId(id.into())
    }

    /// The node name, for logs, metrics labels and wire formats.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(id: &str) -> Self {
        NodeId(id.to_owned())
    }
}

impl From<String> for NodeId {
    fn from(id: String) -> Self {
        NodeId(id)
    }
}

/// Hash of a key: xxh3-64 of its bytes.
///
/// Exposed so that every crate (routing, anti-entropy, tests) places keys with
/// exactly the same function; [`Ring::partition_of_hash`] turns it into a
/// partition.
pub fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

/// Why a ring could not be built or changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RingError {
    /// A ring needs at least one member (or one owner) to place keys on.
    #[error("a ring needs at least one member")]
    NoMembers,
    /// The partition count must be a power of two in `1..=65536`, so that the
    /// partition of a hash is just its top bits.
    #[error("partition count {0} is not a power of two in 1..={MAX_PARTITIONS}")]
    BadPartitionCount(u32),
    /// A deserialized ring listed the same member twice.
    #[error("member {0} is listed more than once")]
    DuplicateMember(NodeId),
    /// The node is not a member (removing it, or a deserialized ring whose
    /// owners are not all members).
    #[error("{0} is not a member of the ring")]
    UnknownMember(NodeId),
    /// The node to add is already a member.
    #[error("{0} is already a member of the ring")]
    AlreadyMember(NodeId),
    /// Removing the only member would leave nowhere to put keys.
    #[error("cannot remove the last member of the ring")]
    LastMember,
    /// [`Ring::moves_to`] compares rings partition by partition, which only
    /// makes sense when both have the same partition count.
    #[error("rings have different partition counts ({ours} and {theirs})")]
    PartitionCountMismatch {
        /// Partition count of the ring `moves_to` was called on.
        ours: u32,
        /// Partition count of the ring passed to `moves_to`.
        theirs: u32,
    },
}

/// One partition that changes owner between two rings, as computed by
/// [`Ring::moves_to`]: the old owner must hand the partition's data to the new
/// one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMove {
    /// The partition that moves.
    pub partition: u32,
    /// Its owner in the old ring.
    pub from: NodeId,
    /// Its owner in the new ring.
    pub to: NodeId,
}

/// The consistent-hash ring: `P` partitions, the owner of each, and the
/// member set.
///
/// Invariants (upheld by every constructor, including deserialization):
/// `partitions` is a power of two in `1..=65536`, `owners.len() == partitions`,
/// `members` is sorted, free of duplicates, non-empty and contains every
/// owner. Two rings are `==` exactly when they route every key the same way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RingWire")]
pub struct Ring {
    partitions: u32,
    owners: Vec<NodeId>,
    members: Vec<NodeId>,
    /// `owners` as indices into `members`, so walks deduplicate with a
    /// bitset instead of string comparisons. Derived, never serialized.
    #[serde(skip)]
    owner_index: Vec<u32>,
}

/// Unvalidated shape of a serialized [`Ring`]; a ring received from the
/// network is checked before it can be used.
#[derive(Deserialize)]
struct RingWire {
    partitions: u32,
    owners: Vec<NodeId>,
    members: Vec<NodeId>,
}

impl TryFrom<RingWire> for Ring {
    type Error = RingError;

    fn try_from(wire: RingWire) -> Result<Ring, RingError> {
        check_partitions(wire.partitions)?;
        if wire.owners.len() != wire.partitions as usize {
            return Err(RingError::BadPartitionCount(len_u32(wire.owners.len())));
        }
        let mut members = wire.members;
        members.sort();
        if let Some(dup) = members.windows(2).find(|w| w[0] == w[1]) {
            return Err(RingError::DuplicateMember(dup[0].clone()));
        }
        if let Some(stray) = wire
            .owners
            .iter()
            .find(|o| members.binary_search(o).is_err())
        {
            return Err(RingError::UnknownMember(stray.clone()));
        }
        Ok(Ring::assemble(wire.partitions, wire.owners, members))
    }
}

fn check_partitions(partitions: u32) -> Result<(), RingError> {
    if partitions.is_power_of_two() && partitions <= MAX_PARTITIONS {
        Ok(())
    } else {
        Err(RingError::BadPartitionCount(partitions))
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl Ring {
    /// Builds a ring from already validated parts: `partitions` a valid
    /// count equal to `owners.len()`, `members` sorted, deduplicated and
    /// containing every owner.
    pub(crate) fn assemble(partitions: u32, owners: Vec<NodeId>, members: Vec<NodeId>) -> Ring {
        let owner_index = owners
            .iter()
            .map(|o| {
                let i = members
                    .binary_search(o)
                    .expect("ring invariant: every owner is a member");
                u32::try_from(i).expect("member count fits in u32")
            })
            .collect();
        Ring {
            partitions,
            owners,
            members,
            owner_index,
        }
    }

    /// Builds the initial ring for a member set.
    ///
    /// Deterministic from the member *set*: the same members in any order
    /// (duplicates ignored) give an identical ring, so every node configured
    /// with the same seed list agrees without talking. Members are sorted and
    /// partition `i` goes to `members[i % k]` (round robin), which is balanced
    /// (each node owns `floor(P/k)` or `ceil(P/k)` partitions) and keeps
    /// consecutive partitions on distinct nodes (good preference lists).
    ///
    /// Errors: [`RingError::BadPartitionCount`] unless `partitions` is a power
    /// of two in `1..=65536`; [`RingError::NoMembers`] for an empty member set.
    pub fn new<I, S>(members: I, partitions: u32) -> Result<Ring, RingError>
    where
        I: IntoIterator<Item = S>,
        S: Into<NodeId>,
    {
        check_partitions(partitions)?;
        let mut members: Vec<NodeId> = members.into_iter().map(Into::into).collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return Err(RingError::NoMembers);
        }
        let owners = (0..partitions as usize)
            .map(|i| members[i % members.len()].clone())
            .collect();
        Ok(Ring::assemble(partitions, owners, members))
    }

    /// Rebuilds a ring from an explicit owner table (`owners[p]` owns
    /// partition `p`), e.g. one received by gossip or kept on disk.
    ///
    /// The partition count is `owners.len()`, which must be a power of two in
    /// `1..=65536` ([`RingError::BadPartitionCount`]); an empty table is
    /// [`RingError::NoMembers`]. The members are the distinct owners, so a
    /// member owning no partition (possible only with more members than
    /// partitions) is not recovered: serialize the whole [`Ring`] to keep it.
    /// Balance is not required; a later join or leave restores it.
    pub fn from_owners(owners: Vec<NodeId>) -> Result<Ring, RingError> {
        if owners.is_empty() {
            return Err(RingError::NoMembers);
        }
        let partitions = len_u32(owners.len());
        check_partitions(partitions)?;
        let mut members = owners.clone();
        members.sort();
        members.dedup();
        Ok(Ring::assemble(partitions, owners, members))
    }

    /// Number of partitions `P`; needed to size per-partition state such as
    /// Merkle trees.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// All members, sorted by [`NodeId`]: who may be contacted, including
    /// members that currently own no partition.
    pub fn members(&self) -> &[NodeId] {
        &self.members
    }

    /// The owner table, indexed by partition: what a gossip layer ships and
    /// what [`Ring::from_owners`] takes back.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// The node owning `partition` (the first entry of its preference list).
    ///
    /// # Panics
    /// If `partition >= self.partitions()`; partitions always come from
    /// [`Ring::partition_of_key`] or a loop over `0..partitions()`, so an
    /// out-of-range one is a caller bug.
    pub fn owner(&self, partition: u32) -> &NodeId {
        self.check_partition(partition);
        &self.owners[partition as usize]
    }

    /// Partition holding a hash: its top `log2(P)` bits (always 0 when
    /// `P == 1`). Monotone: `0 -> 0`, `u64::MAX -> P - 1`.
    pub fn partition_of_hash(&self, hash: u64) -> u32 {
        let bits = self.partitions.trailing_zeros();
        // A shift by 64 (P == 1) is None: everything is partition 0.
        hash.checked_shr(64 - bits).map_or(0, |p| p as u32)
    }

    /// Partition holding a key: `partition_of_hash(key_hash(key))`.
    pub fn partition_of_key(&self, key: &[u8]) -> u32 {
        self.partition_of_hash(key_hash(key))
    }

    /// The nodes that store `partition` with replication factor `n`: the
    /// first `min(n, members)` distinct nodes met walking clockwise from it.
    /// The first entry is the partition's owner (the coordinator).
    ///
    /// Cost: `O(steps)`, stopping as soon as enough nodes are found; about
    /// `n` steps on a balanced ring.
    ///
    /// # Panics
    /// If `partition >= self.partitions()` (see [`Ring::owner`]).
    pub fn preference_list(&self, partition: u32, n: usize) -> Vec<&NodeId> {
        self.walk_prefix(partition, n)
    }

    /// Every member exactly once, in ring-walk order from `partition`:
    /// primaries first, then the fallbacks in the order a sloppy quorum
    /// should try them, then members owning no partition.
    ///
    /// # Panics
    /// If `partition >= self.partitions()` (see [`Ring::owner`]).
    pub fn walk(&self, partition: u32) -> Vec<&NodeId> {
        self.walk_prefix(partition, self.members.len())
    }

    /// The stand-ins for a partition replicated `n` times: [`Ring::walk`]
    /// after skipping the `n` primaries. A sloppy quorum writes a hinted
    /// replica to the first reachable ones when a primary is down.
    ///
    /// # Panics
    /// If `partition >= self.partitions()` (see [`Ring::owner`]).
    pub fn fallbacks(&self, partition: u32, n: usize) -> Vec<&NodeId> {
        let mut walk = self.walk(partition);
        walk.drain(..n.min(walk.len()));
        walk
    }

    /// Partitions whose owner is `node`, ascending (empty for a non-member).
    pub fn partitions_owned_by(&self, node: &NodeId) -> Vec<u32> {
        (0..self.partitions)
            .filter(|&p| &self.owners[p as usize] == node)
            .collect()
    }

    /// Partitions whose preference list of size `n` contains `node`,
    /// ascending: what a node must store and keep in sync by anti-entropy.
    /// Cost: `P` preference lists.
    pub fn partitions_replicated_by(&self, node: &NodeId, n: usize) -> Vec<u32> {
        if n == 0 || !self.contains(node) {
            return Vec::new();
        }
        (0..self.partitions)
            .filter(|&p| self.walk_prefix(p, n).contains(&node))
            .collect()
    }

    /// Whether `node` is a member (whether or not it owns a partition).
    pub fn contains(&self, node: &NodeId) -> bool {
        self.members.binary_search(node).is_ok()
    }

    /// The ring after `node` joins, moving as few partitions as possible.
    ///
    /// With `k` current members, every node's target becomes `floor(P/(k+1))`
    /// or `ceil(P/(k+1))`. The new node gets the floor; the ceil slots go to
    /// the existing nodes with the highest current counts (ties: smaller
    /// [`NodeId`] first), so that as few partitions as possible move. Then,
    /// one at a time, a partition is moved to the new node from a donor whose
    /// count is above its target, choosing the partition that maximizes the
    /// minimum circular distance to partitions the new node already owns (its
    /// partitions stay spread, consecutive partitions stay on distinct nodes);
    /// ties go to the donor with the higher count, then to the lowest
    /// partition index.
    ///
    /// On a balanced ring only partitions moved *to* the new node change
    /// owner, `floor(P/(k+1))` of them. If the ring was unbalanced (built by
    /// hand with [`Ring::from_owners`]), further moves restore balance.
    /// Deterministic: the same ring and node always give the same result.
    ///
    /// Errors: [`RingError::AlreadyMember`].
    pub fn with_member_added(&self, node: NodeId) -> Result<Ring, RingError> {
        if self.contains(&node) {
            return Err(RingError::AlreadyMember(node));
        }
        Ok(rebalance::join(self, node))
    }

    /// The ring after `node` leaves, moving as few partitions as possible.
    ///
    /// The remaining `k` nodes get targets `floor(P/k)` or `ceil(P/k)`, the
    /// ceil slots going to the nodes with the highest current counts (ties:
    /// smaller [`NodeId`] first). Each of the leaving node's partitions, in
    /// ascending order, goes to a remaining node below its target, preferring
    /// one that owns no partition within circular distance 2 of it (keeps
    /// preference lists spread); failing that, one owning no partition
    /// adjacent to it; then the lowest count; then the smaller [`NodeId`].
    /// (When every candidate is close, avoiding adjacency still keeps the
    /// partition's preference list from starting with the same node twice;
    /// over long leave sequences this cuts adjacent same-owner pairs by about
    /// a third.)
    ///
    /// On a balanced ring nothing but the leaving node's partitions moves. If
    /// the ring was unbalanced (built with [`Ring::from_owners`]), further
    /// moves restore balance. Deterministic.
    ///
    /// Errors: [`RingError::UnknownMember`], [`RingError::LastMember`].
    pub fn with_member_removed(&self, node: &NodeId) -> Result<Ring, RingError> {
        if !self.contains(node) {
            return Err(RingError::UnknownMember(node.clone()));
        }
        if self.members.len() == 1 {
            return Err(RingError::LastMember);
        }
        Ok(rebalance::leave(self, node))
    }

    /// The partitions whose owner differs in `next`, as
    /// `(partition, old owner, new owner)` in ascending partition order: the
    /// hand-offs a membership change requires.
    ///
    /// Errors: [`RingError::PartitionCountMismatch`] when the rings have
    /// different partition counts (partitions would not cover the same hash
    /// ranges, so a per-partition diff means nothing).
    pub fn moves_to(&self, next: &Ring) -> Result<Vec<PartitionMove>, RingError> {
        if self.partitions != next.partitions {
            return Err(RingError::PartitionCountMismatch {
                ours: self.partitions,
                theirs: next.partitions,
            });
        }
        Ok((0..self.partitions)
            .zip(self.owners.iter().zip(&next.owners))
            .filter(|(_, (from, to))| from != to)
            .map(|(partition, (from, to))| PartitionMove {
                partition,
                from: from.clone(),
                to: to.clone(),
            })
            .collect())
    }

    fn check_partition(&self, partition: u32) {
        assert!(
            partition < self.partitions,
            "partition {partition} out of range: the ring has {} partitions",
            self.partitions
        );
    }

    /// First `min(limit, members)` distinct nodes of the walk from
    /// `partition`: owners clockwise, then members owning nothing.
    fn walk_prefix(&self, partition: u32, limit: usize) -> Vec<&NodeId> {
        self.check_partition(partition);
        let k = self.members.len();
        let want = limit.min(k);
        let mut found: Vec<&NodeId> = Vec::with_capacity(want);
        if want == 0 {
            return found;
        }
        let mut seen = Seen::new(k);
        let start = partition as usize;
        let (before, from_start) = self.owner_index.split_at(start);
        for &member in from_start.iter().chain(before) {
            if seen.insert(member as usize) {
                found.push(&self.members[member as usize]);
                if found.len() == want {
                    return found;
                }
            }
        }
        // Only members owning no partition are left; rotate where we start
        // among them so that different partitions spread their load.
        for i in 0..k {
            let member = (start + i) % k;
            if seen.insert(member) {
                found.push(&self.members[member]);
                if found.len() == want {
                    break;
                }
            }
        }
        found
    }
}

/// Set of member indices met during a walk. A bitset on the stack for up to
/// 256 members (no allocation on the request path), on the heap beyond.
struct Seen {
    small: [u64; 4],
    big: Vec<u64>,
}

impl Seen {
    fn new(members: usize) -> Seen {
        let big = if members > 256 {
            vec![0; members.div_ceil(64)]
        } else {
            Vec::new()
        };
        Seen { small: [0; 4], big }
    }

    /// Marks `member` as seen; true if it was not seen before.
    fn insert(&mut self, member: usize) -> bool {
        let words = if self.big.is_empty() {
            &mut self.small[..]
        } else {
            &mut self.big[..]
        };
        let (word, bit) = (member / 64, 1u64 << (member % 64));
        let fresh = words[word] & bit == 0;
        words[word] |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|&n| NodeId::from(n)).collect()
    }

    #[test]
    fn wire_validation_accepts_valid_and_rejects_broken_rings() {
        let ring = Ring::new(["a", "b", "c"], 8).unwrap();
        let wire = |partitions, owners: Vec<NodeId>, members: Vec<NodeId>| RingWire {
            partitions,
            owners,
            members,
        };
        assert_eq!(
            Ring::try_from(wire(8, ring.owners.clone(), ids(&["c", "a", "b"]))),
            Ok(ring.clone())
        );
        assert_eq!(
            Ring::try_from(wire(4, ring.owners.clone(), ring.members.clone())),
            Err(RingError::BadPartitionCount(8))
        );
        assert_eq!(
            Ring::try_from(wire(6, ring.owners.clone(), ring.members.clone())),
            Err(RingError::BadPartitionCount(6))
        );
        assert_eq!(
            Ring::try_from(wire(8, ring.owners.clone(), ids(&["a", "b", "b", "c"]))),
            Err(RingError::DuplicateMember("b".into()))
        );
        assert_eq!(
            Ring::try_from(wire(8, ring.owners.clone(), ids(&["a", "b"]))),
            Err(RingError::UnknownMember("c".into()))
        );
        // A standby member (owning nothing) survives the wire, unlike from_owners.
        let big = Ring::new(["a", "b", "c"], 2).unwrap();
        assert_eq!(
            Ring::try_from(wire(2, big.owners.clone(), big.members.clone())),
            Ok(big)
        );
    }

    #[test]
    fn walks_with_many_members_use_the_heap_bitset() {
        // 300 members: beyond the 256 the stack bitset holds.
        for partitions in [64, 512] {
            let ring = Ring::new((0..300).map(|i| format!("n{i:03}")), partitions).unwrap();
            for p in [0, partitions - 1] {
                let walk = ring.walk(p);
                let mut sorted = walk.clone();
                sorted.sort();
                sorted.dedup();
                assert_eq!(sorted.len(), 300);
                assert_eq!(ring.preference_list(p, 3), walk[..3]);
            }
        }
    }

    #[test]
    fn node_id_conversions() {
        let a = NodeId::from("node-a");
        assert_eq!(a, NodeId::from(String::from("node-a")));
        assert_eq!(a, NodeId::new("node-a"));
        assert_eq!(a.as_str(), "node-a");
        assert_eq!(a.to_string(), "node-a");
    }
}
