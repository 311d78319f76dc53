//! Incarnations of a node's actor: why a node that lost data never reissues
//! a version it issued before (Riak's KV679, fixed there with per-vnode
//! epochs).
//!
//! A coordinator numbers its writes to a key from its own stored clock. If
//! the node lost writes it had acknowledged (a wiped or replaced data
//! directory, a power cut that took unsynced WAL records), that clock is
//! behind what other replicas hold, and reusing a counter would make them
//! drop the new write as already seen while acknowledging it.
//!
//! So the actor in version vectors is `<node id>#<incarnation>`, and a node
//! takes a new, random incarnation (persisted with an fsync before it
//! serves) whenever it cannot prove its counters are complete:
//! - its data directory holds no incarnation (new, emptied or wiped), or
//!   one recorded under another node id (a directory copied from another
//!   node);
//! - it did not shut down cleanly and writes are not fsynced one by one
//!   (`storage.sync_writes = false`): a power cut may have taken the tail
//!   of the WAL;
//! - the operator asks for it (`node.new_incarnation = true`), as after
//!   restoring a backup taken while the node was stopped.
//!
//! A new incarnation is a new actor: its counters start from nothing and
//! cannot collide with any dot of the old one.
//!
//! **Growth of version vectors.** An object's clock gains at most one entry
//! per incarnation that coordinated a write to it. Incarnations change only
//! on the events above (not on clean restarts, nor on crashes when
//! `sync_writes` is on), so a key's clock has at most one entry per
//! (coordinating node × such event since the key was created). Entries of
//! old incarnations are retired with the key: when its tombstone is reaped
//! the whole clock goes; an entry of a live key stays (it carries history a
//! lagging replica may still need), as in Riak.
//!
//! **The counter floor.** A primary may also hold a key without every dot
//! it issued for it, legitimately: after its tombstone was reaped here. For
//! that it keeps one number per incarnation, the floor, persisted before
//! the tombstone is deleted: a write to a key where this actor has no live
//! value is numbered above it ([`dynkv_vclock::DvvSet::update_above`]), and
//! supersedes the tombstone on a replica that has not reaped it yet. (A
//! floor only works for dots that hold tombstones: numbering a write above
//! dots whose *values* are gone from here would claim to have seen those
//! values. Writes coordinated as a fallback, whose hints are handed off and
//! deleted, use a separate actor that is retired instead; see
//! `Coordinator::fallback_actor`.)

use dynkv_ring::NodeId;
use dynkv_storage::{Result, Store};

const META_INCARNATION: &str = "epoch.incarnation";
const META_NODE: &str = "epoch.node";
const META_CLEAN: &str = "epoch.clean_shutdown";
const META_FLOOR: &str = "epoch.counter_floor";
const META_FALLBACK: &str = "epoch.fallback_generation";

/// This run's actor and why it has its incarnation.
#[derive(Clone, Debug)]
pub struct Epoch {
    /// `<node id>#<incarnation>`: the actor of every write this node
    /// coordinates in this incarnation.
    pub actor: String,
    /// The incarnation alone.
    pub incarnation: String,
    /// Why a new incarnation was taken at this start (`None`: the stored
    /// one was proven complete and kept).
    pub renewed: Option<&'static str>,
    /// Dots of this actor up to here may exist without being stored here.
    pub floor: u64,
    /// Generation of the fallback actor (`<actor>~<generation>`).
    pub fallback_generation: u64,
}

/// A random incarnation: 40 bits in base 36 (at most 8 characters), so two
/// incarnations of one node id never meet.
fn new_incarnation() -> String {
    let mut n: u64 = rand::random::<u64>() & ((1 << 40) - 1);
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii digits")
}

/// Decides this run's incarnation before the node serves, and marks the
/// run as started (unclean until [`end`] runs). Every write is fsynced.
///
/// `counters_durable`: every acknowledged write is fsynced before it is
/// acknowledged (`storage.sync_writes`), so a crash loses no issued dot.
pub fn begin(store: &Store, node: &NodeId, counters_durable: bool, force: bool) -> Result<Epoch> {
    let text = |v: Option<Vec<u8>>| v.and_then(|b| String::from_utf8(b).ok());
    let stored = text(store.get_meta(META_INCARNATION)?).filter(|s| !s.is_empty());
    let owner = text(store.get_meta(META_NODE)?);
    let clean = text(store.get_meta(META_CLEAN)?);
    let renewed = match &stored {
        None => Some("no incarnation in the data directory (new or wiped)"),
        Some(_) if owner.as_deref() != Some(node.as_str()) => {
            Some("the data directory belonged to another node id")
        }
        Some(inc) if clean.as_deref() != Some(inc.as_str()) && !counters_durable => {
            Some("unclean shutdown without synced writes")
        }
        Some(_) if force => Some("asked for by node.new_incarnation"),
        Some(_) => None,
    };
    let (incarnation, floor) = match (&stored, renewed) {
        (Some(inc), None) => {
            let floor = store
                .get_meta(META_FLOOR)?
                .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
                .map_or(0, u64::from_le_bytes);
            (inc.clone(), floor)
        }
        _ => {
            let inc = new_incarnation();
            store.put_meta(META_FLOOR, &0u64.to_le_bytes())?;
            store.put_meta(META_NODE, node.as_str().as_bytes())?;
            store.put_meta(META_INCARNATION, inc.as_bytes())?;
            (inc, 0)
        }
    };
    // A stored generation is kept even across incarnations: it only ever
    // grows, and a new incarnation makes a new fallback actor anyway.
    let fallback_generation = store
        .get_meta(META_FALLBACK)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map_or(1, u64::from_le_bytes);
    // From now on the run is unclean until `end` says otherwise.
    store.put_meta(META_CLEAN, b"")?;
    Ok(Epoch {
        actor: format!("{node}#{incarnation}"),
        incarnation,
        renewed,
        floor,
        fallback_generation,
    })
}

/// Records a clean shutdown (after the store was flushed): the next start
/// keeps this incarnation.
pub fn end(store: &Store, epoch: &Epoch) -> Result<()> {
    store.put_meta(META_CLEAN, epoch.incarnation.as_bytes())
}

/// Persists a new fallback generation (fsynced).
pub fn save_fallback_generation(store: &Store, generation: u64) -> Result<()> {
    store.put_meta(META_FALLBACK, &generation.to_le_bytes())
}

/// Persists a new counter floor (fsynced).
pub fn save_floor(store: &Store, floor: u64) -> Result<()> {
    store.put_meta(META_FLOOR, &floor.to_le_bytes())
}

/// The node id of an actor (`n1#k3j9x2` → `n1`; an actor without an
/// incarnation, from data written before incarnations, is its node id).
pub fn node_of(actor: &str) -> &str {
    actor.split_once('#').map_or(actor, |(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynkv_storage::StoreConfig;

    fn open(dir: &std::path::Path) -> Store {
        Store::open(&StoreConfig::new(dir), None).unwrap()
    }

    #[test]
    fn incarnations_change_exactly_when_counters_may_be_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let n1 = NodeId::from("n1");
        let first = {
            let s = open(dir.path());
            let e = begin(&s, &n1, false, false).unwrap();
            assert!(e.renewed.is_some(), "a new directory gets an incarnation");
            assert!(e.actor.starts_with("n1#"));
            end(&s, &e).unwrap();
            e
        };
        // Clean shutdown: kept.
        let second = {
            let s = open(dir.path());
            let e = begin(&s, &n1, false, false).unwrap();
            assert_eq!(e.actor, first.actor);
            assert!(e.renewed.is_none());
            save_floor(&s, 42).unwrap();
            e
            // No `end`: the process dies.
        };
        // Unclean, without synced writes: renewed, floor reset.
        let third = {
            let s = open(dir.path());
            let e = begin(&s, &n1, false, false).unwrap();
            assert_ne!(e.actor, second.actor);
            assert_eq!(e.floor, 0);
            e
        };
        // Unclean, with every write synced: kept, floor kept.
        {
            let s = open(dir.path());
            save_floor(&s, 7).unwrap();
            let e = begin(&s, &n1, true, false).unwrap();
            assert_eq!(e.actor, third.actor);
            assert_eq!(e.floor, 7);
            end(&s, &e).unwrap();
        }
        // A directory of another node, or an operator's request: renewed.
        {
            let s = open(dir.path());
            let e = begin(&s, &NodeId::from("n2"), true, false).unwrap();
            assert!(e.actor.starts_with("n2#"));
            end(&s, &e).unwrap();
            let f = begin(&s, &NodeId::from("n2"), true, true).unwrap();
            assert_ne!(f.actor, e.actor);
        }
        assert_eq!(node_of(&third.actor), "n1");
        assert_eq!(node_of("n1"), "n1");
    }
}
