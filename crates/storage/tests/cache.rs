//! The object cache never serves what the objects family does not hold,
//! and stays within its byte bound.

use std::collections::HashMap;

use dynkv_storage::Store;
use dynkv_vclock::{DvvSet, Object};
use proptest::prelude::*;

mod common;
use common::{obj, open_with, spread_key as key};

fn open(dir: &tempfile::TempDir, cache_bytes: u64) -> Store {
    open_with(dir, cache_bytes, false)
}

/// One step of a random history.
#[derive(Clone, Debug)]
enum Op {
    Merge(u8, u8, u8),
    Replace(u8, u8),
    Remove(u8),
    Get(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..6, 0u8..3, any::<u8>()).prop_map(|(k, a, v)| Op::Merge(k, a, v)),
        (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Replace(k, v)),
        (0u8..6).prop_map(Op::Remove),
        (0u8..6).prop_map(Op::Get),
    ]
}

fn name(k: u8) -> Vec<u8> {
    vec![b'k', k]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A store with a tiny cache (constant evictions) and one with none
    /// answer every call as a plain map of merged objects does.
    #[test]
    fn a_cached_store_agrees_with_a_model(ops in prop::collection::vec(op(), 1..60)) {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cached = open(&d1, 1_000);
        let plain = open(&d2, 0);
        let mut model: HashMap<Vec<u8>, Object> = HashMap::new();
        for op in ops {
            match op {
                Op::Merge(k, a, v) => {
                    let n = name(k);
                    let incoming = obj(&format!("n{a}"), &v.to_string());
                    let want = match model.get(&n) {
                        Some(cur) => DvvSet::sync(cur, &incoming),
                        None => incoming.clone(),
                    };
                    model.insert(n.clone(), want.clone());
                    for s in [&cached, &plain] {
                        prop_assert_eq!(s.merge(&key(&n), &incoming).unwrap().object, Some(want.clone()));
                    }
                }
                Op::Replace(k, v) => {
                    let n = name(k);
                    let next = obj("r", &v.to_string());
                    model.insert(n.clone(), next.clone());
                    for s in [&cached, &plain] {
                        let seen = s.update(&key(&n), |_| Some(next.clone())).unwrap();
                        prop_assert_eq!(seen.object, Some(next.clone()));
                    }
                }
                Op::Remove(k) => {
                    let n = name(k);
                    model.remove(&n);
                    for s in [&cached, &plain] {
                        prop_assert_eq!(s.remove(&key(&n)).unwrap().object, None);
                    }
                }
                Op::Get(k) => {
                    let n = name(k);
                    for s in [&cached, &plain] {
                        prop_assert_eq!(s.get(&key(&n)).unwrap(), model.get(&n).cloned());
                    }
                }
            }
        }
        for k in 0..6 {
            let n = name(k);
            prop_assert_eq!(cached.get(&key(&n)).unwrap(), model.get(&n).cloned());
            // What update reads (maybe from the cache) is what is stored.
            let mut read = None;
            cached.update(&key(&n), |cur| { read = cur.clone(); cur }).unwrap();
            prop_assert_eq!(read, model.get(&n).cloned());
        }
        prop_assert_eq!(cached.scan_digests(0, u64::MAX).unwrap(), plain.scan_digests(0, u64::MAX).unwrap());
    }
}

#[test]
fn the_cache_stays_within_its_byte_bound() {
    let dir = tempfile::tempdir().unwrap();
    let bound = 64 << 10;
    let s = open(&dir, bound);
    let value = "x".repeat(1024);
    let names: Vec<Vec<u8>> = (0..500).map(|i| format!("key-{i}").into_bytes()).collect();
    for n in &names {
        s.merge(&key(n), &obj("n1", &value)).unwrap();
    }
    for n in &names {
        assert!(s.get(&key(n)).unwrap().is_some());
    }
    let (held, max) = s.object_cache_bytes();
    assert_eq!(max, bound);
    assert!(held <= bound, "{held} bytes held, bound {bound}");
    assert!(held > bound / 2, "the cache is used: {held} bytes held");
}

#[test]
fn without_a_cache_nothing_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, 0);
    s.merge(&key(b"a"), &obj("n1", "v")).unwrap();
    assert!(s.get(&key(b"a")).unwrap().is_some());
    assert_eq!(s.object_cache_bytes(), (0, 0));
}
