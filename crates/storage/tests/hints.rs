//! Hint bookkeeping against a real RocksDB: bytes held, creation times,
//! bounds, the format hints were written in before creation times, and the
//! WAL sync the periodic one calls.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dynkv_storage::{HINT_FORMAT_V2, HintBound, HintLimits, HintPut};
use dynkv_vclock::{DvvSet, Object, encode_object};

mod common;
use common::{key_in as key, obj, open_default as open};

/// The stored key of a hint: owner length, owner, partition, key.
fn raw_hint_key(owner: &str, partition: u32, k: &[u8]) -> Vec<u8> {
    let mut out = vec![owner.len() as u8];
    out.extend_from_slice(owner.as_bytes());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(k);
    out
}

/// What a hint costs in `hint_bytes` in the current format: its stored key,
/// the format byte, the creation time and the encoded object.
fn size(owner: &str, partition: u32, k: &[u8], o: &Object) -> u64 {
    (raw_hint_key(owner, partition, k).len() + 1 + 8 + encode_object(o).len()) as u64
}

#[test]
fn bytes_follow_put_merge_remove_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb) = (key(5, b"alpha"), key(9, b"b"));
    let a1 = obj("n1", "short");
    let a2 = obj("n2", &"x".repeat(300));
    let b = obj("n1", "bee");
    let expected;
    {
        let s = open(&dir);
        assert_eq!((s.hint_count(), s.hint_bytes()), (0, 0));
        assert!(s.put_hint("n3", &ka, &a1).unwrap());
        assert_eq!(s.hint_bytes(), size("n3", 5, b"alpha", &a1));
        // A merge replaces the stored value: the bytes follow its new size.
        assert!(!s.put_hint("n3", &ka, &a2).unwrap());
        let merged = DvvSet::sync(&a1, &a2);
        assert_eq!(s.hint_bytes(), size("n3", 5, b"alpha", &merged));
        // Merging what the hint already holds changes nothing.
        assert!(!s.put_hint("n3", &ka, &a1).unwrap());
        assert_eq!(s.hint_bytes(), size("n3", 5, b"alpha", &merged));
        assert!(s.put_hint("node-four", &kb, &b).unwrap());
        expected = size("n3", 5, b"alpha", &merged) + size("node-four", 9, b"b", &b);
        assert_eq!(s.hint_bytes(), expected);
        assert_eq!(s.hint_count(), 2);
    }
    // Rebuilt from the hints family at open.
    let s = open(&dir);
    assert_eq!((s.hint_count(), s.hint_bytes()), (2, expected));
    let hb = &s.hints(Some("node-four"), None, 10).unwrap()[0];
    assert!(
        s.remove_hint_if_unchanged("node-four", &kb, hb.object.digest())
            .unwrap()
    );
    let merged = DvvSet::sync(&a1, &a2);
    assert_eq!(s.hint_bytes(), size("n3", 5, b"alpha", &merged));
    // An expired-hint delete takes its bytes too.
    assert!(
        s.remove_hint_created_before("n3", &ka, SystemTime::now())
            .unwrap()
    );
    assert_eq!((s.hint_count(), s.hint_bytes()), (0, 0));
    drop(s);
    let s = open(&dir);
    assert_eq!((s.hint_count(), s.hint_bytes()), (0, 0));
}

#[test]
fn creation_time_is_kept_by_merges_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let k = key(2, b"k");
    let before = SystemTime::now();
    let created;
    {
        let s = open(&dir);
        s.put_hint("n3", &k, &obj("n1", "a")).unwrap();
        created = s.hints(None, None, 10).unwrap()[0].created;
        assert!(created >= before - Duration::from_millis(1) && created <= SystemTime::now());
        std::thread::sleep(Duration::from_millis(20));
        s.put_hint("n3", &k, &obj("n2", "b")).unwrap();
        let h = &s.hints(None, None, 10).unwrap()[0];
        assert_eq!(h.object.sibling_count(), 2);
        assert_eq!(h.created, created, "a merge keeps the oldest write's time");
    }
    let s = open(&dir);
    assert_eq!(s.hints(None, None, 10).unwrap()[0].created, created);
    // Not expired by a cutoff before its creation; expired by one after.
    assert!(
        !s.remove_hint_created_before("n3", &k, created - Duration::from_millis(5))
            .unwrap()
    );
    assert_eq!(s.hint_count(), 1);
    assert!(s.remove_hint_created_before("n3", &k, created).unwrap());
    assert_eq!(s.hint_count(), 0);
    assert!(
        !s.remove_hint_created_before("n3", &k, SystemTime::now())
            .unwrap()
    );
}

#[test]
fn bounds_refuse_new_hints_past_count_or_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let small = obj("n1", "v");
    let one = size("n3", 1, b"k1", &small);
    let by_count = HintLimits {
        max_hints: 1,
        max_bytes: u64::MAX,
    };
    assert_eq!(
        s.put_hint_bounded("n3", &key(1, b"k1"), &small, by_count)
            .unwrap(),
        HintPut::Created
    );
    assert_eq!(
        s.put_hint_bounded("n3", &key(1, b"k2"), &small, by_count)
            .unwrap(),
        HintPut::Refused(HintBound::Count)
    );
    // A merge into a hint already held is not a new hint.
    assert_eq!(
        s.put_hint_bounded("n3", &key(1, b"k1"), &obj("n2", "w"), by_count)
            .unwrap(),
        HintPut::Merged
    );
    assert_eq!(s.hint_count(), 1);
    let held = s.hint_bytes();
    assert!(held > one);

    // Room for exactly what is held plus one small hint.
    let by_bytes = HintLimits {
        max_hints: u64::MAX,
        max_bytes: held + one,
    };
    assert_eq!(
        s.put_hint_bounded("n3", &key(1, b"k3"), &small, by_bytes)
            .unwrap(),
        HintPut::Created
    );
    assert_eq!(s.hint_bytes(), held + one);
    assert_eq!(
        s.put_hint_bounded("n3", &key(1, b"k4"), &small, by_bytes)
            .unwrap(),
        HintPut::Refused(HintBound::Bytes)
    );
    // Growing a held hint past the bound is refused too, and changes nothing.
    let big = obj("n4", &"y".repeat(100));
    assert_eq!(
        s.put_hint_bounded("n3", &key(1, b"k3"), &big, by_bytes)
            .unwrap(),
        HintPut::Refused(HintBound::Bytes)
    );
    assert_eq!(
        s.get_hint("n3", &key(1, b"k3")).unwrap(),
        Some(small.clone())
    );
    // A merge that does not grow the hint is always taken.
    assert_eq!(
        s.put_hint_bounded("n3", &key(1, b"k3"), &small, by_bytes)
            .unwrap(),
        HintPut::Merged
    );
    assert_eq!((s.hint_count(), s.hint_bytes()), (2, held + one));
    assert!(s.get_hint("n3", &key(1, b"k4")).unwrap().is_none());
}

#[test]
fn hints_in_the_format_before_creation_times_are_read() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    // Write a hint as the previous build did: the bare encoded object.
    let old = obj("n1", "from-the-old-format");
    let hkey = raw_hint_key("n3", 7, b"legacy");
    let old_value = encode_object(&old);
    assert_ne!(old_value[0], HINT_FORMAT_V2);
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(false);
        let db = rocksdb::DB::open_cf(
            &opts,
            dir.path(),
            ["objects", "digests", "hints", "meta", "index", "changes"],
        )
        .unwrap();
        db.put_cf(db.cf_handle("hints").unwrap(), &hkey, &old_value)
            .unwrap();
        db.flush_wal(true).unwrap();
    }
    let before_open = SystemTime::now();
    let s = open(&dir);
    let after_open = SystemTime::now();
    let k = key(7, b"legacy");
    assert_eq!(s.hint_count(), 1);
    assert_eq!(s.hint_bytes(), (hkey.len() + old_value.len()) as u64);
    assert_eq!(s.get_hint("n3", &k).unwrap(), Some(old.clone()));
    let hints = s.hints(None, None, 10).unwrap();
    assert_eq!(hints.len(), 1);
    assert_eq!((hints[0].owner.as_str(), hints[0].partition), ("n3", 7));
    assert_eq!(hints[0].object, old);
    let created = hints[0].created;
    assert!(
        created >= before_open - Duration::from_millis(1)
            && created <= after_open + Duration::from_millis(1),
        "an old-format hint reads as created at open"
    );
    // A merge rewrites it in the new format and keeps that creation time.
    std::thread::sleep(Duration::from_millis(10));
    s.put_hint("n3", &k, &obj("n2", "new")).unwrap();
    let h = &s.hints(None, None, 10).unwrap()[0];
    assert_eq!(h.object.sibling_count(), 2);
    assert_eq!(h.created, created);
    assert_eq!(s.hint_bytes(), size("n3", 7, b"legacy", &h.object));
    // And it is delivered (deleted) like any other.
    assert!(
        s.remove_hint_if_unchanged("n3", &k, h.object.digest())
            .unwrap()
    );
    assert_eq!((s.hint_count(), s.hint_bytes()), (0, 0));
}

#[test]
fn wal_syncs_are_counted_and_dated() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    assert!(s.last_wal_sync().is_none());
    assert_eq!(s.wal_sync_stats(), (0, 0));
    let started = SystemTime::now();
    s.merge(&key(1, b"k"), &obj("n1", "v")).unwrap();
    for n in 1..=3 {
        s.sync_wal().unwrap();
        assert_eq!(s.wal_sync_stats(), (n, 0));
    }
    let last = s.last_wal_sync().expect("a sync ran");
    assert!(last >= started - Duration::from_millis(1) && last <= SystemTime::now());
    // The store is still usable after syncs.
    s.merge(&key(1, b"k2"), &obj("n1", "v2")).unwrap();
    assert!(s.get(&key(1, b"k2")).unwrap().is_some());
}
