//! Tests against a real RocksDB in a temporary directory.

use std::sync::{Arc, Mutex};

use dynkv_storage::{KeyRef, Store, StoreConfig, WriteListener};
use dynkv_vclock::{Content, DvvSet, VersionVector};

mod common;
use common::{key_in as key, obj, open_default as open};

#[test]
fn put_get_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = obj("n1", "hello");
    {
        let s = open(&dir);
        assert!(s.get(&key(3, b"a")).unwrap().is_none());
        let u = s.merge(&key(3, b"a"), &o).unwrap();
        assert!(u.changed);
        // Merging the same state again changes nothing.
        assert!(!s.merge(&key(3, b"a"), &o).unwrap().changed);
    }
    let s = open(&dir);
    assert_eq!(s.get(&key(3, b"a")).unwrap(), Some(o));
}

#[test]
fn merge_keeps_concurrent_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.merge(&key(1, b"k"), &obj("n1", "x")).unwrap();
    let u = s.merge(&key(1, b"k"), &obj("n2", "y")).unwrap();
    assert_eq!(u.object.unwrap().sibling_count(), 2);
}

#[test]
fn concurrent_updates_to_one_key_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    s.update(&key(0, b"hot"), |cur| {
                        let cur = cur.unwrap_or_default();
                        Some(DvvSet::update(
                            &VersionVector::new(),
                            &cur,
                            "n1",
                            Content::value(format!("{t}-{i}"), "", 0),
                        ))
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // 400 blind writes by one actor: no update lost means 400 siblings and counter 400.
    let o = s.get(&key(0, b"hot")).unwrap().unwrap();
    assert_eq!(o.sibling_count(), 400);
    assert_eq!(o.entries()[0].counter, 400);
}

#[test]
fn partition_scan_is_contiguous_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for p in 0..3u32 {
        for i in 0..10 {
            let k = format!("key{i:02}");
            s.merge(&key(p, k.as_bytes()), &obj("n1", &k)).unwrap();
        }
    }
    let first = s.scan_partition(1, None, 4).unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(first[0].0, b"key00");
    let rest = s.scan_partition(1, Some(&first[3].0), 100).unwrap();
    assert_eq!(rest.len(), 6);
    assert_eq!(rest[0].0, b"key04");
    assert!(rest.iter().all(|(k, _)| k.starts_with(b"key")));
}

#[test]
fn digest_index_follows_objects() {
    type Event = (Vec<u8>, Option<u64>, Option<u64>);
    struct Log(Mutex<Vec<Event>>);
    impl WriteListener for Log {
        fn digest_changed(&self, key: &KeyRef<'_>, old: Option<u64>, new: Option<u64>) {
            self.0.lock().unwrap().push((key.key.to_vec(), old, new));
        }
        fn merged(&self, key: &KeyRef<'_>) {
            panic!("no deferred merge in this test: {:?}", key.key);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log(Mutex::new(Vec::new())));
    let s = Store::open(&StoreConfig::new(dir.path()), Some(log.clone())).unwrap();
    let k = KeyRef {
        partition: 0,
        hash: 42,
        key: b"k",
    };
    let o = obj("n1", "v");
    s.merge(&k, &o).unwrap();
    assert_eq!(
        s.scan_digests(0, u64::MAX).unwrap(),
        vec![(42, b"k".to_vec(), o.digest())]
    );
    assert_eq!(s.scan_digests(43, 100).unwrap(), vec![]);
    s.remove(&k).unwrap();
    assert!(s.scan_digests(0, u64::MAX).unwrap().is_empty());
    let events = log.0.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            (b"k".to_vec(), None, Some(o.digest())),
            (b"k".to_vec(), Some(o.digest()), None)
        ]
    );
}

#[test]
fn hints_merge_survive_reopen_and_delete_only_when_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(5, b"h");
    let first = obj("n1", "a");
    {
        let s = open(&dir);
        assert!(s.put_hint("n3", &k, &first).unwrap());
        assert!(s.put_hint("n4", &k, &first).unwrap());
        assert_eq!(s.hint_count(), 2);
    }
    let s = open(&dir);
    assert_eq!(s.hint_count(), 2);
    let hints = s.hints(Some("n3"), None, 10).unwrap();
    assert_eq!(hints.len(), 1);
    assert_eq!(hints[0].owner, "n3");
    assert_eq!(hints[0].partition, 5);
    let delivered = hints[0].object.digest();
    // A newer write lands in the hint before the delete: it must stay.
    assert!(!s.put_hint("n3", &k, &obj("n2", "b")).unwrap());
    assert!(!s.remove_hint_if_unchanged("n3", &k, delivered).unwrap());
    let again = s.hints(Some("n3"), None, 10).unwrap();
    assert_eq!(again[0].object.sibling_count(), 2);
    assert!(
        s.remove_hint_if_unchanged("n3", &k, again[0].object.digest())
            .unwrap()
    );
    assert_eq!(s.hint_count(), 1);
    assert_eq!(s.hint_counts_by_owner().unwrap().get("n4"), Some(&1));
    let all = s.hints(None, None, 10).unwrap();
    assert_eq!(all.len(), 1);
    let after = s.hints(None, Some(("n4", 5, b"h")), 10).unwrap();
    assert!(after.is_empty());
}

#[test]
fn meta_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.put_meta("ring", b"abc").unwrap();
    assert_eq!(s.get_meta("ring").unwrap().as_deref(), Some(&b"abc"[..]));
    s.flush().unwrap();
}

#[test]
fn sync_writes_mode_opens_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path());
    cfg.sync_writes = true;
    let s = Store::open(&cfg, None).unwrap();
    s.merge(&key(0, b"x"), &obj("n1", "v")).unwrap();
    assert!(s.get(&key(0, b"x")).unwrap().is_some());
}
