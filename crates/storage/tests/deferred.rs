//! Deferred merges (the replica step written as a RocksDB merge operand)
//! leave the store exactly as read-modify-write merges do: the same
//! objects, the same digest index, across flushes, compactions, reopens
//! and concurrent writers of one key.

use std::collections::HashMap;
use std::sync::Arc;

use dynkv_storage::Store;
use dynkv_vclock::{DvvSet, Object};
use proptest::prelude::*;

mod common;
use common::{obj, open_with, spread_key as key};

fn open(dir: &tempfile::TempDir, cache_bytes: u64) -> Store {
    open_with(dir, cache_bytes, true)
}

/// One step of a random history.
#[derive(Clone, Debug)]
enum Op {
    /// A replica step: deferred in the stores under test.
    Replicated(u8, u8, u8),
    /// A read-modify-write merge (read repair, handoff).
    Merge(u8, u8, u8),
    Replace(u8, u8),
    Remove(u8),
    Get(u8),
    Flush,
    Compact,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5, 0u8..4, any::<u8>()).prop_map(|(k, a, v)| Op::Replicated(k, a, v)),
        2 => (0u8..5, 0u8..4, any::<u8>()).prop_map(|(k, a, v)| Op::Merge(k, a, v)),
        1 => (0u8..5, any::<u8>()).prop_map(|(k, v)| Op::Replace(k, v)),
        1 => (0u8..5).prop_map(Op::Remove),
        2 => (0u8..5).prop_map(Op::Get),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn name(k: u8) -> Vec<u8> {
    vec![b'k', k]
}

fn synced(model: &HashMap<Vec<u8>, Object>, n: &[u8], incoming: &Object) -> Object {
    match model.get(n) {
        Some(cur) => DvvSet::sync(cur, incoming),
        None => incoming.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Stores applying replica steps as merge operands (one with a tiny
    /// object cache) answer every call as a map of synced objects does,
    /// and end with the digest index of a store that read before every
    /// merge.
    #[test]
    fn deferred_merges_agree_with_a_model(ops in prop::collection::vec(op(), 1..60)) {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut deferred = open(&dirs[0], 0);
        let mut cached = open(&dirs[1], 1_000);
        let read_first = open_with(&dirs[2], 0, false);
        let mut model: HashMap<Vec<u8>, Object> = HashMap::new();
        for op in ops {
            match op {
                Op::Replicated(k, a, v) => {
                    let n = name(k);
                    let incoming = obj(&format!("n{a}"), &v.to_string());
                    model.insert(n.clone(), synced(&model, &n, &incoming));
                    for s in [&deferred, &cached, &read_first] {
                        s.merge_replicated(&key(&n), &incoming).unwrap();
                    }
                }
                Op::Merge(k, a, v) => {
                    let n = name(k);
                    let incoming = obj(&format!("m{a}"), &v.to_string());
                    let want = synced(&model, &n, &incoming);
                    model.insert(n.clone(), want.clone());
                    for s in [&deferred, &cached, &read_first] {
                        prop_assert_eq!(s.merge(&key(&n), &incoming).unwrap().object, Some(want.clone()));
                    }
                }
                Op::Replace(k, v) => {
                    let n = name(k);
                    let next = obj("r", &v.to_string());
                    model.insert(n.clone(), next.clone());
                    for s in [&deferred, &cached, &read_first] {
                        s.update(&key(&n), |_| Some(next.clone())).unwrap();
                    }
                }
                Op::Remove(k) => {
                    let n = name(k);
                    model.remove(&n);
                    for s in [&deferred, &cached, &read_first] {
                        s.remove(&key(&n)).unwrap();
                    }
                }
                Op::Get(k) => {
                    let n = name(k);
                    for s in [&deferred, &cached, &read_first] {
                        prop_assert_eq!(s.get(&key(&n)).unwrap(), model.get(&n).cloned());
                    }
                }
                Op::Flush => {
                    deferred.flush().unwrap();
                    cached.flush().unwrap();
                }
                Op::Compact => {
                    deferred.compact();
                    cached.compact();
                }
                Op::Reopen => {
                    // Dropped without a flush: the WAL replays the operands.
                    drop(deferred);
                    drop(cached);
                    deferred = open(&dirs[0], 0);
                    cached = open(&dirs[1], 1_000);
                }
            }
        }
        for k in 0..5 {
            let n = name(k);
            for s in [&deferred, &cached] {
                prop_assert_eq!(s.get(&key(&n)).unwrap(), model.get(&n).cloned());
                // What an update reads is the merged object.
                let mut read = None;
                s.update(&key(&n), |cur| { read = cur.clone(); cur }).unwrap();
                prop_assert_eq!(read, model.get(&n).cloned());
            }
        }
        let want = read_first.scan_digests(0, u64::MAX).unwrap();
        prop_assert_eq!(deferred.scan_digests(0, u64::MAX).unwrap(), want.clone());
        prop_assert_eq!(cached.scan_digests(0, u64::MAX).unwrap(), want);
    }
}

/// A replica step racing the key's read-modify-writes is never hidden by
/// one: every concurrent version written either way is kept as a sibling.
/// Each update dawdles between its read and its write, so an operand
/// written without the key's lock would land there and be overwritten.
#[test]
fn a_deferred_merge_is_never_lost_to_a_concurrent_update() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir, 0));
    const EACH: usize = 100;
    let updates = {
        let s = s.clone();
        std::thread::spawn(move || {
            for i in 0..EACH {
                let incoming = obj(&format!("read-first-{i}"), "v");
                s.update(&key(b"hot"), |cur| {
                    std::thread::sleep(std::time::Duration::from_micros(300));
                    Some(match cur {
                        Some(cur) => DvvSet::sync(&cur, &incoming),
                        None => incoming,
                    })
                })
                .unwrap();
            }
        })
    };
    for i in 0..EACH {
        s.merge_deferred(&key(b"hot"), &obj(&format!("deferred-{i}"), "v"))
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    updates.join().unwrap();
    let stored = s.get(&key(b"hot")).unwrap().expect("the key is stored");
    assert_eq!(stored.values().len(), 2 * EACH);
}

/// The digest index learns a deferred merge's digest without a read on the
/// write path: a scan (which flushes the queue) sees the merged object's.
#[test]
fn the_digest_index_follows_deferred_merges() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, 0);
    let (a, b) = (obj("n1", "a"), obj("n2", "b"));
    s.merge_deferred(&key(b"k"), &a).unwrap();
    s.merge_deferred(&key(b"k"), &b).unwrap();
    let merged = DvvSet::sync(&a, &b);
    let k = key(b"k");
    assert_eq!(
        s.scan_digests(0, u64::MAX).unwrap(),
        vec![(k.hash, b"k".to_vec(), merged.digest())]
    );
}
