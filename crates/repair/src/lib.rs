//! # dynkv-repair: read repair
//!
//! A read asks every replica of a key and answers the client as soon as R of
//! them replied. The replies keep arriving after that; once all are in (or
//! the repair deadline passes) the coordinator hands them to
//! [`plan_read_repair`], which merges them with `sync` and lists every
//! replica whose reply is not already that merged state: the ones that
//! answered "not found", the ones that hold an older version, and the ones
//! that hold only some of the siblings. Each is then sent the merged object,
//! which it `sync`s into its own, so a replica is never repaired *backwards*
//! and siblings are repaired as a full set, never to one of them.
//!
//! This crate is the pure decision (no I/O); the coordinator in
//! `dynkv-quorum` executes the plan after the client has its answer, bounded
//! in time, and counts the outcome in metrics. As in Cassandra's
//! `read_repair_chance`, [`should_repair`] lets an operator repair only a
//! fraction of reads.

use dynkv_ring::NodeId;
use dynkv_vclock::{DvvSet, Object};

/// One replica's answer to a read.
#[derive(Clone, Debug)]
pub struct ReplicaReply<'a> {
    /// Who answered.
    pub node: &'a NodeId,
    /// What it holds (`None`: not found).
    pub object: Option<&'a Object>,
    /// The primary this fallback stands in for (`None` for a primary):
    /// fallbacks are not repaired directly; their hint reaches the owner.
    pub hint_for: Option<&'a NodeId>,
}

/// What read repair should do after a read.
#[derive(Clone, Debug, PartialEq)]
pub struct RepairPlan {
    /// The `sync` of every reply.
    pub merged: Object,
    /// Primaries to send `merged` to, in reply order.
    pub stale: Vec<NodeId>,
}

/// Merges the replies and lists the primaries that do not hold the merged
/// state. Returns `None` when no replica holds anything.
pub fn plan_read_repair(replies: &[ReplicaReply<'_>]) -> Option<RepairPlan> {
    let merged = replies
        .iter()
        .filter_map(|r| r.object)
        .fold(None::<Object>, |acc, o| {
            Some(acc.map_or_else(|| o.clone(), |a| DvvSet::sync(&a, o)))
        })?;
    let digest = merged.digest();
    let stale = replies
        .iter()
        .filter(|r| r.hint_for.is_none())
        .filter(|r| r.object.is_none_or(|o| o.digest() != digest))
        .map(|r| r.node.clone())
        .collect();
    Some(RepairPlan { merged, stale })
}

/// Decides whether this read is repaired, given `chance` in `0.0..=1.0` and
/// a uniform random draw in `0.0..1.0` (passed in, so the decision is pure).
pub fn should_repair(chance: f64, draw: f64) -> bool {
    chance >= 1.0 || draw < chance
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynkv_vclock::{Content, VersionVector};

    fn write(base: &Object, actor: &str, v: &str) -> Object {
        DvvSet::update(
            &base.join(),
            base,
            actor,
            Content::value(v.to_string(), "", 0),
        )
    }

    #[test]
    fn stale_missing_and_partial_replicas_are_repaired_to_the_full_set() {
        let (a, b, c, d): (NodeId, NodeId, NodeId, NodeId) =
            ("a".into(), "b".into(), "c".into(), "d".into());
        let v1 = write(&Object::new(), "a", "v1");
        // Two concurrent children of v1, on different replicas.
        let left = write(&v1, "a", "left");
        let right = DvvSet::update(&v1.join(), &v1, "b", Content::value("right", "", 0));
        let replies = [
            ReplicaReply {
                node: &a,
                object: Some(&left),
                hint_for: None,
            },
            ReplicaReply {
                node: &b,
                object: Some(&right),
                hint_for: None,
            },
            ReplicaReply {
                node: &c,
                object: None,
                hint_for: None,
            },
            ReplicaReply {
                node: &d,
                object: Some(&v1),
                hint_for: Some(&c),
            },
        ];
        let plan = plan_read_repair(&replies).unwrap();
        assert_eq!(plan.merged.sibling_count(), 2);
        assert_eq!(plan.stale, vec![a.clone(), b.clone(), c.clone()]);
        // A replica already holding the merged state is left alone.
        let merged = plan.merged.clone();
        let replies = [
            ReplicaReply {
                node: &a,
                object: Some(&merged),
                hint_for: None,
            },
            ReplicaReply {
                node: &b,
                object: Some(&right),
                hint_for: None,
            },
        ];
        assert_eq!(plan_read_repair(&replies).unwrap().stale, vec![b.clone()]);
        assert!(
            plan_read_repair(&[ReplicaReply {
                node: &a,
                object: None,
                hint_for: None
            }])
            .is_none()
        );
        let _ = VersionVector::new();
    }

    #[test]
    fn chance() {
        assert!(should_repair(1.0, 0.99));
        assert!(!should_repair(0.0, 0.0));
        assert!(should_repair(0.5, 0.2));
        assert!(!should_repair(0.5, 0.7));
    }
}
