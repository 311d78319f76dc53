//! The coordinator's write on its own copy of a key, as a pure function of
//! the stored state: what it checks before numbering a new version, and
//! the caps it enforces before anything is stored.
//!
//! - **Contexts are checked against what was issued.** A context that
//!   claims a version of this node's own actor above anything it issued
//!   for the key (and above its counter floor) is refused: this node
//!   stores every dot it issues before acknowledging it, so such a context
//!   was not issued by the cluster. A context ahead of the local copy for
//!   *other* actors is normal when this replica lags (the coordinator first
//!   pulls the other primaries' copies); whatever is still ahead after that
//!   is clamped to what the replicas hold, so a forged counter never enters
//!   a stored clock, where it would make its actor repeat a counter
//!   (u64::MAX + 1 saturates). Clamping can only leave a value the writer
//!   had seen as a sibling, never drop one.
//! - **Caps** (Riak's `max_siblings`, and an object size limit): a write
//!   that would leave more siblings or more bytes than allowed is refused
//!   with nothing stored, so no object ever outgrows what replication,
//!   hints and anti-entropy carry.

use std::time::Duration;

use dynkv_vclock::{Content, Object, VersionVector};

use crate::{QuorumError, idempotency};

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
        /// Part of the context was ahead of every replica and was clamped.
        clamped: bool,
    },
    /// The context is ahead of this replica: pull the other primaries'
    /// copies, then try again allowing a clamp.
    NeedsPull,
    /// Refused; nothing was stored.
    Refused(QuorumError),
}

/// The context with every counter above `known`'s lowered to it.
fn clamp(context: &VersionVector, known: &VersionVector) -> VersionVector {
    VersionVector::from_pairs(
        context
            .entries()
            .iter()
            .map(|(a, n)| (a.clone(), (*n).min(known.get(a)))),
    )
}

/// Applies `w` to the stored state `stored` (`None`: no copy here). Returns
/// what to store (the input unchanged when nothing is written) and why.
pub(crate) fn apply(
    stored: Option<Object>,
    w: &LocalWrite,
    may_clamp: bool,
    now: u64,
) -> (Option<Object>, Step) {
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
    // Superseding writes have seen everything stored here.
    let mut context = if w.supersede {
        w.context.merge(&known)
    } else {
        w.context.clone()
    };
    let mut clamped = false;
    if !known.descends(&context) {
        if !may_clamp {
            return (unchanged(cur), Step::NeedsPull);
        }
        context = clamp(&context, &known);
        clamped = true;
    }
    if let Some(k) = &w.idempotency_key
        && idempotency::seen(&cur, k, now, w.window)
    {
        return (
            unchanged(cur),
            Step::Applied {
                replayed: true,
                clamped,
            },
        );
    }
    let next = idempotency::apply(
        &context,
        &cur,
        &w.actor,
        w.content.clone(),
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
    (
        Some(next),
        Step::Applied {
            replayed: false,
            clamped,
        },
    )
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
        let (kept, step) = apply(Some(stored.clone()), &write("n1#a", forged, "x"), true, 1);
        assert!(matches!(step, Step::Refused(QuorumError::BadContext(_))));
        assert_eq!(kept, Some(stored));
        // Nothing stored, and no copy made where there was none.
        let forged = VersionVector::from_pairs([("n1#a".to_string(), 5)]);
        let (kept, step) = apply(None, &write("n1#a", forged.clone(), "x"), true, 1);
        assert!(matches!(step, Step::Refused(_)));
        assert_eq!(kept, None);
        // Up to the floor is legitimate (a reaped tombstone's dots).
        let mut w = write("n1#a", forged, "x");
        w.floor = 5;
        let (next, step) = apply(None, &w, true, 1);
        assert!(matches!(step, Step::Applied { .. }));
        assert_eq!(next.unwrap().join().get("n1#a"), 6, "numbered above the floor");
    }

    #[test]
    fn a_context_ahead_for_other_actors_pulls_then_clamps() {
        let ahead = VersionVector::from_pairs([("n2#b".to_string(), u64::MAX)]);
        let (_, step) = apply(None, &write("n1#a", ahead.clone(), "x"), false, 1);
        assert!(matches!(step, Step::NeedsPull));
        let (next, step) = apply(None, &write("n1#a", ahead, "x"), true, 1);
        assert!(matches!(step, Step::Applied { clamped: true, .. }));
        let next = next.unwrap();
        assert_eq!(next.join().get("n2#b"), 0, "the forged counter never enters a clock");
        assert_eq!(values(&Some(next)), vec!["x"]);
    }

    #[test]
    fn caps_refuse_before_anything_is_stored() {
        let mut o = Object::new();
        for (i, a) in ["n1#a", "n2#b", "n3#c"].iter().enumerate() {
            o = DvvSet::update(&VersionVector::new(), &o, a, Content::value(format!("v{i}"), "t", 1));
        }
        let (kept, step) = apply(Some(o.clone()), &write("n1#a", VersionVector::new(), "x"), true, 1);
        assert!(matches!(
            step,
            Step::Refused(QuorumError::TooManySiblings { count: 4, max: 3 })
        ));
        assert_eq!(kept, Some(o.clone()));
        // A write that resolves siblings is always allowed.
        let (next, step) = apply(Some(o.clone()), &write("n1#a", o.join(), "x"), true, 1);
        assert!(matches!(step, Step::Applied { .. }));
        assert_eq!(values(&next), vec!["x"]);
        let mut big = write("n1#a", VersionVector::new(), "");
        big.content = Content::value(vec![0u8; 2 << 20], "t", 1);
        let (kept, step) = apply(None, &big, true, 1);
        assert!(matches!(step, Step::Refused(QuorumError::ObjectTooLarge { .. })));
        assert_eq!(kept, None);
    }
}
