//! Idempotency keys: a client write applied at most once.
//!
//! A client that timed out cannot know whether its write was applied; if it
//! retries (perhaps through another node), Dynamo semantics make the retry a
//! *new* concurrent write: a second sibling with the same value. With an
//! `Idempotency-Key`, the coordinator recognises the retry and applies
//! nothing new.
//!
//! The dedup record travels with the object, so it works whichever primary
//! coordinates the retry: the written sibling carries an
//! [`IdempotencyRecord`] (the key and the write time in µs) in its
//! [`Meta::idempotency`](dynkv_vclock::Meta::idempotency). When a later
//! write replaces siblings, the records of the siblings it replaces are
//! copied into the new value, so a record outlives the value that carried
//! it until it is older than the window. A coordinator handling a write
//! with a key first merges the other reachable primaries' copies into its
//! own (so it sees a first attempt coordinated elsewhere), then looks for
//! the record.
//!
//! Limits (documented for users): records live for `idempotency_window`;
//! at most [`MAX_RECORDS`] are carried per value (the newest); and when no
//! replica holding the first attempt is reachable at retry time, the retry
//! is applied as a new write (availability over dedup, as everywhere in a
//! Dynamo store).

use std::time::Duration;

use dynkv_vclock::{Content, DvvSet, IdempotencyRecord, Object, VersionVector};

/// Most dedup records carried by one value.
pub const MAX_RECORDS: usize = 64;

fn fresh(at: u64, now: u64, window: Duration) -> bool {
    now.saturating_sub(at) <= window.as_micros() as u64
}

/// True when `object` holds a live record of `key` written within `window`.
pub fn seen(object: &Object, key: &str, now: u64, window: Duration) -> bool {
    object
        .values()
        .iter()
        .flat_map(|c| c.meta.idempotency.iter())
        .any(|r| r.key == key && fresh(r.at_micros, now, window))
}

/// The coordinator's update with idempotency records: tags the new value
/// with its own record (if it has a key) and carries over the fresh records
/// of the siblings it replaces.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    context: &VersionVector,
    current: &Object,
    actor: &str,
    mut content: Content,
    key: Option<&str>,
    now: u64,
    window: Duration,
    floor: u64,
) -> Object {
    let plain = DvvSet::update_above(context, current, actor, content.clone(), floor);
    let survivors = plain.values();
    let mut records: Vec<IdempotencyRecord> = current
        .values()
        .into_iter()
        .filter(|v| !survivors.contains(v))
        .flat_map(|v| v.meta.idempotency.iter())
        .filter(|r| fresh(r.at_micros, now, window))
        .cloned()
        .collect();
    if let Some(k) = key {
        records.push(IdempotencyRecord {
            key: k.to_string(),
            at_micros: now,
        });
    }
    if records.is_empty() {
        return plain;
    }
    // Newest first, one per key, at most MAX_RECORDS.
    records.sort_by_key(|r| std::cmp::Reverse(r.at_micros));
    let mut kept: Vec<IdempotencyRecord> = Vec::new();
    for r in records {
        if !kept.iter().any(|k| k.key == r.key) && kept.len() < MAX_RECORDS {
            kept.push(r);
        }
    }
    content.meta.idempotency = kept;
    content.meta.normalize();
    DvvSet::update_above(context, current, actor, content, floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(600);

    fn v(s: &str) -> Content {
        Content::value(s.to_string(), "text/plain", 1)
    }

    #[test]
    fn a_record_is_found_and_survives_being_overwritten() {
        let o = apply(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            v("a"),
            Some("req-1"),
            1_000,
            W,
            0,
        );
        assert!(seen(&o, "req-1", 2_000, W));
        assert!(!seen(&o, "req-2", 2_000, W));
        // Another client overwrites the value with a context: the record moves along.
        let o2 = apply(&o.join(), &o, "n2", v("b"), None, 3_000, W, 0);
        assert_eq!(o2.sibling_count(), 1);
        assert!(seen(&o2, "req-1", 4_000, W));
        // Past the window it is forgotten, and dropped on the next write.
        let late = 1_000 + W.as_micros() as u64 + 1;
        assert!(!seen(&o2, "req-1", late, W));
        let o3 = apply(&o2.join(), &o2, "n1", v("c"), None, late, W, 0);
        assert!(o3.values()[0].meta.is_empty());
        // Records stay in their old pair form for digests and older peers.
        assert_eq!(
            o2.values()[0].meta.to_pairs(),
            [("dynkv.idem.req-1".to_string(), "1000".to_string())]
        );
    }

    #[test]
    fn records_are_capped_and_kept_apart_from_other_metadata() {
        let mut o = Object::new();
        for i in 0..100 {
            o = apply(
                &o.join(),
                &o,
                "n1",
                v("x"),
                Some(&format!("k{i}")),
                1_000 + i,
                W,
                0,
            );
        }
        let c = o.values()[0];
        assert_eq!(c.meta.idempotency.len(), MAX_RECORDS);
        assert_eq!(c.meta.pair_count(), MAX_RECORDS);
        assert!(seen(&o, "k99", 2_000, W), "the newest records are kept");
        assert!(!seen(&o, "k0", 2_000, W));
        // A value's own metadata stays beside its record.
        let mut riak = v("y");
        riak.meta.user = vec![("color".into(), "red".into())];
        let o = apply(&o.join(), &o, "n1", riak, Some("k100"), 3_000, W, 0);
        let c = o.values()[0];
        assert_eq!(c.meta.user, [("color".to_string(), "red".to_string())]);
        assert_eq!(c.meta.idempotency.len(), MAX_RECORDS);
        assert!(seen(&o, "k100", 3_000, W));
    }
}
