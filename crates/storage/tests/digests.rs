//! The digest index is written off the write path: scans see queued
//! changes, and an unclean shutdown is repaired by a rebuild at open.

use std::collections::BTreeSet;

use dynkv_storage::{KeyRef, Store, StoreConfig};

mod common;
use common::obj;

/// The store's hash of a key in these tests (what `key_hash` is set to).
fn test_hash(k: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(k)
}

fn key(k: &[u8]) -> KeyRef<'_> {
    KeyRef {
        partition: (test_hash(k) >> 60) as u32,
        hash: test_hash(k),
        key: k,
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    let mut config = StoreConfig::new(dir.path());
    config.key_hash = test_hash;
    Store::open(&config, None).unwrap()
}

/// Every (hash, key, digest) the objects imply, from the objects family.
fn digests_of_objects(s: &Store) -> BTreeSet<(u64, Vec<u8>, u64)> {
    (0..16)
        .flat_map(|p| s.scan_partition(p, None, usize::MAX).unwrap())
        .map(|(k, o)| (test_hash(&k), k, o.digest()))
        .collect()
}

fn digest_index(s: &Store) -> BTreeSet<(u64, Vec<u8>, u64)> {
    s.scan_digests(0, u64::MAX).unwrap().into_iter().collect()
}

#[test]
fn a_scan_sees_a_digest_queued_a_moment_ago() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let o = obj("n1", "v");
    s.merge(&key(b"k"), &o).unwrap();
    assert_eq!(
        s.scan_digests(0, u64::MAX).unwrap(),
        vec![(test_hash(b"k"), b"k".to_vec(), o.digest())]
    );
    let newer = obj("n2", "w");
    let merged = s.merge(&key(b"k"), &newer).unwrap().object.unwrap();
    let mut seen = Vec::new();
    s.for_each_digest(0, u64::MAX, |_, k, d| seen.push((k.to_vec(), d)))
        .unwrap();
    assert_eq!(seen, vec![(b"k".to_vec(), merged.digest())]);
    s.remove(&key(b"k")).unwrap();
    assert!(s.scan_digests(0, u64::MAX).unwrap().is_empty());
}

#[test]
fn the_digest_index_is_rebuilt_after_an_unclean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<Vec<u8>> = (0..300).map(|i| format!("key-{i}").into_bytes()).collect();
    {
        let s = open(&dir);
        for (i, k) in names.iter().enumerate() {
            s.merge(&key(k), &obj("n1", &format!("first {i}"))).unwrap();
        }
        // A clean point: the index is complete and marked so.
        s.flush().unwrap();
        for (i, k) in names.iter().enumerate() {
            match i % 3 {
                0 => {
                    s.merge(&key(k), &obj("n2", &format!("second {i}")))
                        .unwrap();
                }
                1 => {
                    s.remove(&key(k)).unwrap();
                }
                _ => {}
            }
        }
        for i in 0..50 {
            let k = format!("late-{i}").into_bytes();
            s.merge(&key(&k), &obj("n3", "late")).unwrap();
        }
        // Dropped without a flush: queued digests are lost.
    }
    let s = open(&dir);
    let expected = digests_of_objects(&s);
    assert_eq!(expected.len(), 300 - 100 + 50);
    assert_eq!(digest_index(&s), expected);
    // A clean close keeps the index as it is, and it still agrees.
    s.flush().unwrap();
    drop(s);
    let s = open(&dir);
    assert_eq!(digest_index(&s), digests_of_objects(&s));
}

#[test]
fn writes_after_a_clean_flush_are_not_trusted_to_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.merge(&key(b"a"), &obj("n1", "1")).unwrap();
        s.flush().unwrap();
        // Written after the clean point, then an unclean stop.
        s.merge(&key(b"a"), &obj("n2", "2")).unwrap();
        s.merge(&key(b"b"), &obj("n1", "3")).unwrap();
    }
    let s = open(&dir);
    let index = digest_index(&s);
    assert_eq!(index.len(), 2);
    assert_eq!(index, digests_of_objects(&s));
}
