//! Idempotency keys: a client write applied at most once.
//!
//! A client that timed out cannot know whether its write was applied; if it
//! retries (perhaps through another node), Dynamo semantics make the retry a
//! *new* concurrent write: a second sibling with the same value. With an
//! `Idempotency-Key`, the coordinator recognises the retry and applies
//! nothing new.
//!
//! The dedup record travels with the object, so it works whichever primary
//! coordinates the retry: the written sibling carries the metadata entry
//! `dynkv.idem.<key> = <write time in µs>`. When a later write replaces
//! siblings, the records of the siblings it replaces are copied into the new
//! value, so a record outlives the value that carried it until it is older
//! than the window. A coordinator handling a write with a key first merges
//! the other reachable primaries' copies into its own (so it sees a first
//! attempt coordinated elsewhere), then looks for the record.
//!
//! Limits (documented for users): records live for `idempotency_window`;
//! at most [`MAX_RECORDS`] are carried per value (the newest); and when no
//! replica holding the first attempt is reachable at retry time, the retry
//! is applied as a new write (availability over dedup, as everywhere in a
//! Dynamo store).

use std::time::Duration;

use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

/// Metadata prefix of dedup records.
pub const RECORD_PREFIX: &str = "dynkv.idem.";
/// Most dedup records carried by one value.
pub const MAX_RECORDS: usize = 64;

fn record_time(entry: &(String, String), key: &str) -> Option<u64> {
    entry
        .0
        .strip_prefix(RECORD_PREFIX)
        .filter(|k| *k == key)
        .and_then(|_| entry.1.parse().ok())
}

fn fresh(at: u64, now: u64, window: Duration) -> bool {
    now.saturating_sub(at) <= window.as_micros() as u64
}

/// True when `object` holds a live record of `key` written within `window`.
pub fn seen(object: &Object, key: &str, now: u64, window: Duration) -> bool {
    object
        .values()
        .iter()
        .flat_map(|c| c.meta.iter())
        .filter_map(|e| record_time(e, key))
        .any(|at| fresh(at, now, window))
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
    let mut records: Vec<(String, String)> = current
        .values()
        .into_iter()
        .filter(|v| !survivors.contains(v))
        .flat_map(|v| v.meta.iter())
        .filter(|(name, at)| {
            name.starts_with(RECORD_PREFIX) && at.parse().is_ok_and(|t| fresh(t, now, window))
        })
        .cloned()
        .collect();
    if let Some(k) = key {
        records.push((format!("{RECORD_PREFIX}{k}"), now.to_string()));
    }
    if records.is_empty() {
        return plain;
    }
    // Newest first, one per key, at most MAX_RECORDS.
    records.sort_by(|a, b| {
        b.1.parse::<u64>()
            .unwrap_or(0)
            .cmp(&a.1.parse::<u64>().unwrap_or(0))
    });
    let mut kept: Vec<(String, String)> = Vec::new();
    for r in records {
        if !kept.iter().any(|k| k.0 == r.0) && kept.len() < MAX_RECORDS {
            kept.push(r);
        }
    }
    content
        .meta
        .retain(|(name, _)| !name.starts_with(RECORD_PREFIX));
    content.meta.extend(kept);
    content.meta.sort();
    DvvSet::update_above(context, current, actor, content, floor)
}

/// Metadata that is not a dedup record: what clients should see.
pub fn user_meta(content: &Content) -> impl Iterator<Item = &(String, String)> {
    content
        .meta
        .iter()
        .filter(|(name, _)| !name.starts_with(RECORD_PREFIX))
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
    }

    #[test]
    fn records_are_capped_and_hidden_from_users() {
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
        assert_eq!(c.meta.len(), MAX_RECORDS);
        assert!(seen(&o, "k99", 2_000, W), "the newest records are kept");
        assert!(!seen(&o, "k0", 2_000, W));
        assert_eq!(user_meta(c).count(), 0);
    }
}
