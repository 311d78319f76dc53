//! The coordinator's write on its own copy of a key, as a pure function of
//! the stored state: what it checks before numbering a new version, and
//! the caps it enforces before anything is stored.
//!
//! - **Contexts are checked against what was issued.** A context that
//!   claims a version of this node's own actor above anything it issued
//!   for the key (and above its counter floor) is refused: this node
//!   stores every dot it issues before acknowledging it, so such a context
//!   was not issued by the cluster. A context ahead of the local copy for
//!   *other* actors is normal when this replica lags, and is kept as it is
//!   (it must supersede what the writer saw, wherever that is stored); but
//!   a counter no cluster can reach ([`MAX_COUNTER`]) is refused, so no
//!   stored clock can ever make its actor's next counter saturate and
//!   repeat. (A context may still claim versions of another actor it never
//!   saw; signing contexts so that only the cluster's own are accepted is
//!   the answer to that.)
//! - **Data type operations are applied here** ([`datatype`]): the
//!   operation is applied with this replica's actor to the merge of every
//!   live sibling stored here, under the store's per-key atomicity, and the
//!   result supersedes all of them: each actor's dots are minted in one
//!   causal chain, never from a state read elsewhere.
//! - **Caps** (Riak's `max_siblings`, and an object size limit): a write
//!   that would leave more siblings or more bytes than allowed is refused
//!   with nothing stored, so no object ever outgrows what replication,
//!   hints and anti-entropy carry.

use std::time::Duration;

use dynkv_vclock::{Content, Object, VersionVector};

use crate::{QuorumError, idempotency};

/// The largest counter a context may carry: 2^48 versions of one key by
/// one incarnation is beyond any real history, and far enough below
/// `u64::MAX` that no counter ever saturates.
pub(crate) const MAX_COUNTER: u64 = 1 << 48;

/// One coordinated write, with the coordinator's identity and limits.
pub(crate) struct LocalWrite {
    /// This incarnation's actor.
    pub actor: String,
    /// Its counter floor.
    pub floor: u64,
    /// What the writer had seen.
    pub context: VersionVector,
    /// The new value or tombstone.
    pub content: Content,
    /// The client's idempotency key.
    pub idempotency_key: Option<String>,
    /// Replace every sibling stored here (Riak `allow_mult=false`).
    pub supersede: bool,
    /// A data type operation (encoded `dynkv_crdt::Update`) whose result
    /// becomes the content's value.
    pub datatype_op: Option<bytes::Bytes>,
    /// How long idempotency records last.
    pub window: Duration,
    /// Most siblings a write may leave.
    pub max_siblings: usize,
    /// Most bytes an object may hold.
    pub max_object_bytes: usize,
}

/// What happened to the write.
#[derive(Debug)]
pub(crate) enum Step {
    /// Stored (or recognised as a replay of an earlier attempt).
    Applied {
        /// The idempotency key showed it was already applied.
        replayed: bool,
    },
    /// Refused; nothing was stored.
    Refused(QuorumError),
}

/// Applies `w` to the stored state `stored` (`None`: no copy here). Returns
/// what to store (the input unchanged when nothing is written) and why.
pub(crate) fn apply(stored: Option<Object>, w: &LocalWrite, now: u64) -> (Option<Object>, Step) {
    let had_copy = stored.is_some();
    let cur = stored.unwrap_or_default();
    let unchanged = |cur: Object| if had_copy { Some(cur) } else { None };
    let known = cur.join();
    let own = w.context.get(&w.actor);
    if own > known.get(&w.actor).max(w.floor) {
        let e = QuorumError::BadContext(format!(
            "the context claims version {own} of {} for this key, which it never issued",
            w.actor
        ));
        return (unchanged(cur), Step::Refused(e));
    }
    if let Some((a, n)) = w.context.entries().iter().find(|(_, n)| *n > MAX_COUNTER) {
        let e = QuorumError::BadContext(format!(
            "the context claims version {n} of {a}, beyond any version the cluster issues"
        ));
        return (unchanged(cur), Step::Refused(e));
    }
    // Superseding writes (and data type updates, which merge every
    // sibling) have seen everything stored here.
    let context = if w.supersede || w.datatype_op.is_some() {
        w.context.merge(&known)
    } else {
        w.context.clone()
    };
    let mut content = match &w.datatype_op {
        None => w.content.clone(),
        Some(op) => match crate::datatype::apply(&cur, op, &w.actor, now, &w.content) {
            Ok(c) => c,
            Err(e) => return (unchanged(cur), Step::Refused(e)),
        },
    };
    // A new version is stamped after every version stored here, which
    // include those it replaces: per key, stamps (the change feed's order)
    // follow causality even when the node that took the write has a
    // clock behind.
    if let Some(newest) = cur.values().iter().map(|c| c.modified_micros).max()
        && content.modified_micros <= newest
    {
        content.modified_micros = newest.saturating_add(1);
    }
    if let Some(k) = &w.idempotency_key
        && idempotency::seen(&cur, k, now, w.window)
    {
        return (unchanged(cur), Step::Applied { replayed: true });
    }
    let next = idempotency::apply(
        &context,
        &cur,
        &w.actor,
        content,
        w.idempotency_key.as_deref(),
        now,
        w.window,
        w.floor,
    );
    let count = next.sibling_count();
    if count > w.max_siblings && count > cur.sibling_count() {
        let e = QuorumError::TooManySiblings {
            count,
            max: w.max_siblings,
        };
        return (unchanged(cur), Step::Refused(e));
    }
    let bytes = next.byte_size();
    if bytes > w.max_object_bytes && bytes > cur.byte_size() {
        let e = QuorumError::ObjectTooLarge {
            bytes,
            max: w.max_object_bytes,
        };
        return (unchanged(cur), Step::Refused(e));
    }
    (Some(next), Step::Applied { replayed: false })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynkv_vclock::DvvSet;

    fn write(actor: &str, context: VersionVector, value: &str) -> LocalWrite {
        LocalWrite {
            actor: actor.into(),
            floor: 0,
            context,
            content: Content::value(value.to_string(), "text/plain", 1),
            idempotency_key: None,
            supersede: false,
            datatype_op: None,
            window: Duration::from_secs(600),
            max_siblings: 3,
            max_object_bytes: 1 << 20,
        }
    }

    fn values(o: &Option<Object>) -> Vec<String> {
        let mut v: Vec<String> = o
            .as_ref()
            .map(|o| {
                o.values()
                    .iter()
                    .map(|c| String::from_utf8_lossy(&c.value).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn a_context_claiming_an_unissued_version_of_this_node_is_refused() {
        let stored = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1#a",
            Content::value("v1", "t", 1),
        );
        let forged = VersionVector::from_pairs([("n1#a".to_string(), u64::MAX)]);
        let (kept, step) = apply(Some(stored.clone()), &write("n1#a", forged, "x"), 1);
        assert!(matches!(step, Step::Refused(QuorumError::BadContext(_))));
        assert_eq!(kept, Some(stored));
        // Nothing stored, and no copy made where there was none.
        let forged = VersionVector::from_pairs([("n1#a".to_string(), 5)]);
        let (kept, step) = apply(None, &write("n1#a", forged.clone(), "x"), 1);
        assert!(matches!(step, Step::Refused(_)));
        assert_eq!(kept, None);
        // Up to the floor is legitimate (a reaped tombstone's dots).
        let mut w = write("n1#a", forged, "x");
        w.floor = 5;
        let (next, step) = apply(None, &w, 1);
        assert!(matches!(step, Step::Applied { .. }));
        assert_eq!(
            next.unwrap().join().get("n1#a"),
            6,
            "numbered above the floor"
        );
    }

    #[test]
    fn a_context_ahead_for_other_actors_is_kept_unless_it_is_absurd() {
        // A lagging replica: the writer saw n2's version 7, this copy has not.
        let ahead = VersionVector::from_pairs([("n2#b".to_string(), 7)]);
        let (next, step) = apply(None, &write("n1#a", ahead, "x"), 1);
        assert!(matches!(step, Step::Applied { .. }));
        assert_eq!(
            next.unwrap().join().get("n2#b"),
            7,
            "it supersedes what the writer saw, wherever that is"
        );
        // A counter no cluster reaches never enters a stored clock.
        let absurd = VersionVector::from_pairs([("n2#b".to_string(), u64::MAX)]);
        let (kept, step) = apply(None, &write("n1#a", absurd, "x"), 1);
        assert!(matches!(step, Step::Refused(QuorumError::BadContext(_))));
        assert_eq!(kept, None);
    }

    #[test]
    fn caps_refuse_before_anything_is_stored() {
        let mut o = Object::new();
        for (i, a) in ["n1#a", "n2#b", "n3#c"].iter().enumerate() {
            o = DvvSet::update(
                &VersionVector::new(),
                &o,
                a,
                Content::value(format!("v{i}"), "t", 1),
            );
        }
        let (kept, step) = apply(
            Some(o.clone()),
            &write("n1#a", VersionVector::new(), "x"),
            1,
        );
        assert!(matches!(
            step,
            Step::Refused(QuorumError::TooManySiblings { count: 4, max: 3 })
        ));
        assert_eq!(kept, Some(o.clone()));
        // A write that resolves siblings is always allowed.
        let (next, step) = apply(Some(o.clone()), &write("n1#a", o.join(), "x"), 1);
        assert!(matches!(step, Step::Applied { .. }));
        assert_eq!(values(&next), vec!["x"]);
        let mut big = write("n1#a", VersionVector::new(), "");
        big.content = Content::value(vec![0u8; 2 << 20], "t", 1);
        let (kept, step) = apply(None, &big, 1);
        assert!(matches!(
            step,
            Step::Refused(QuorumError::ObjectTooLarge { .. })
        ));
        assert_eq!(kept, None);
    }
}
