//! Secondary index entries against a real RocksDB: they follow the live
//! siblings of every write path, sort as their field says, and survive a
//! reopen together with their objects.

mod common;

use common::key_in;
use dynkv_storage::index::IndexRange;
use dynkv_storage::{Store, StoreConfig};
use dynkv_vclock::{Content, DvvSet, Meta, Object};

/// Keys are `scope ‖ name` with a one-byte scope (a bucket, say).
fn scope(key: &[u8]) -> Option<usize> {
    (!key.is_empty()).then_some(1)
}

fn open(dir: &tempfile::TempDir, deferred: bool) -> Store {
    let mut config = StoreConfig::new(dir.path());
    config.index_scope = scope;
    config.deferred_merges = deferred;
    Store::open(&config, None).unwrap()
}

fn content(v: &str, entries: &[(&str, &str)]) -> Content {
    let mut meta = Meta {
        indexes: entries
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect(),
        ..Meta::default()
    };
    meta.normalize();
    Content::value(v.to_string(), "text/plain", 1).with_meta(meta)
}

/// A write by `actor` that supersedes what `seen` holds.
fn write(actor: &str, seen: &Object, c: Content) -> Object {
    DvvSet::update(&seen.join(), seen, actor, c)
}

/// `(term, key)` of a whole range of `field` in scope `S`, partition 1.
fn query(s: &Store, field: &str, from: &str, to: &str) -> Vec<(String, String)> {
    let range = IndexRange::new(b"S", field, from.as_bytes(), to.as_bytes()).unwrap();
    s.scan_index(1, &range, None, 100, |_| true)
        .unwrap()
        .into_iter()
        .map(|(t, k)| (String::from_utf8(t).unwrap(), String::from_utf8(k).unwrap()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn entries_follow_live_siblings_supersession_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, false);
    let k = key_in(1, b"Sk");
    let empty = Object::new();
    // Two concurrent writes: both siblings' entries are found.
    let a = write("n1", &empty, content("a", &[("f_bin", "red")]));
    let b = write(
        "n2",
        &empty,
        content("b", &[("f_bin", "blue"), ("g_int", "5")]),
    );
    s.merge(&k, &a).unwrap();
    s.merge(&k, &b).unwrap();
    assert_eq!(
        query(&s, "f_bin", "a", "z"),
        pairs(&[("blue", "Sk"), ("red", "Sk")])
    );
    assert_eq!(query(&s, "g_int", "0", "9"), pairs(&[("5", "Sk")]));
    // A write that has seen both replaces them: only its entries remain.
    let both = s.get(&k).unwrap().unwrap();
    let c = write("n1", &both, content("c", &[("f_bin", "green")]));
    s.merge(&k, &c).unwrap();
    assert_eq!(query(&s, "f_bin", "a", "z"), pairs(&[("green", "Sk")]));
    assert!(query(&s, "g_int", "0", "9").is_empty());
    // A tombstone carries no entries.
    let now = s.get(&k).unwrap().unwrap();
    let gone = DvvSet::update(&now.join(), &now, "n1", Content::tombstone(2));
    s.merge(&k, &gone).unwrap();
    assert!(query(&s, "f_bin", "a", "z").is_empty());
    // Written again, then removed outright (reaping): nothing is left.
    let again = write(
        "n1",
        &s.get(&k).unwrap().unwrap(),
        content("d", &[("f_bin", "x")]),
    );
    s.merge(&k, &again).unwrap();
    assert_eq!(query(&s, "f_bin", "x", "x"), pairs(&[("x", "Sk")]));
    s.remove(&k).unwrap();
    assert!(query(&s, "f_bin", "a", "z").is_empty());
}

#[test]
fn ranges_sort_by_term_then_key_and_resume_after_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, false);
    let terms = ["-10000", "-1004", "-5", "0", "3", "1001"];
    for (i, t) in terms.iter().enumerate() {
        for name in ["b", "a"] {
            let key = format!("S{name}{i}");
            let o = write("n1", &Object::new(), content("v", &[("n_int", t)]));
            s.merge(&key_in(1, key.as_bytes()), &o).unwrap();
        }
    }
    // Another scope and another partition are not in the range.
    let o = write("n1", &Object::new(), content("v", &[("n_int", "1")]));
    s.merge(&key_in(1, b"Tz"), &o).unwrap();
    s.merge(&key_in(2, b"Sz"), &o).unwrap();

    let got = query(&s, "n_int", "-10000", "0");
    let want: Vec<(String, String)> = (0..4)
        .flat_map(|i| ["a", "b"].map(|n| (terms[i].to_string(), format!("S{n}{i}"))))
        .collect();
    assert_eq!(got, want);

    let range = IndexRange::new(b"S", "n_int", b"-10000", b"2000").unwrap();
    let page = |after: Option<(&[u8], &[u8])>| s.scan_index(1, &range, after, 3, |_| true).unwrap();
    let first = page(None);
    assert_eq!(first.len(), 3);
    let (t, k) = first.last().unwrap().clone();
    let second = page(Some((&t, &k)));
    assert_eq!(second[0], (b"-1004".to_vec(), b"Sb1".to_vec()));
    // A filter on terms applies before the limit.
    let only_three = s.scan_index(1, &range, None, 1, |t| t == b"3").unwrap();
    assert_eq!(only_three, vec![(b"3".to_vec(), b"Sa4".to_vec())]);
    // Bounds that are not integers are refused.
    assert!(IndexRange::new(b"S", "n_int", b"x", b"1").is_err());
}

#[test]
fn entries_are_written_with_their_object_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir, false);
        let o = write("n1", &Object::new(), content("v", &[("f_bin", "kept")]));
        s.merge(&key_in(1, b"Sk"), &o).unwrap();
        // Dropped without a flush: the WAL holds the object and its entries.
    }
    let s = open(&dir, false);
    assert_eq!(query(&s, "f_bin", "kept", "kept"), pairs(&[("kept", "Sk")]));
    let now = s.get(&key_in(1, b"Sk")).unwrap().unwrap();
    let o = write("n1", &now, content("v", &[("f_bin", "new")]));
    s.merge(&key_in(1, b"Sk"), &o).unwrap();
    s.flush().unwrap();
    drop(s);
    let s = open(&dir, false);
    assert_eq!(query(&s, "f_bin", "a", "z"), pairs(&[("new", "Sk")]));
}

#[test]
fn deferred_merges_index_a_superset_and_queries_check_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, true);
    let k = key_in(1, b"Sk");
    let a = write("n1", &Object::new(), content("a", &[("f_bin", "old")]));
    s.merge_replicated(&k, &a).unwrap();
    assert_eq!(query(&s, "f_bin", "a", "z"), pairs(&[("old", "Sk")]));
    // A newer version, merged without a read, supersedes `old`: its entry
    // stays on disk but the query finds only the live one.
    let b = write("n1", &a, content("b", &[("f_bin", "young")]));
    s.merge_replicated(&k, &b).unwrap();
    assert_eq!(query(&s, "f_bin", "a", "z"), pairs(&[("young", "Sk")]));
    // The query deleted the stale entry: a store that trusts its entries
    // finds only the live one.
    drop(s);
    let s = open(&dir, false);
    assert_eq!(query(&s, "f_bin", "a", "z"), pairs(&[("young", "Sk")]));
}

#[test]
fn a_database_written_before_the_index_existed_is_indexed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir, false);
        let o = write("n1", &Object::new(), content("v", &[("f_bin", "t")]));
        s.merge(&key_in(1, b"Sk"), &o).unwrap();
        s.flush().unwrap();
    }
    // Take the entries and the marker away, as in a database of the
    // release before the index.
    {
        let opts = rocksdb::Options::default();
        let mut db = rocksdb::DB::open_cf(
            &opts,
            dir.path(),
            ["objects", "digests", "hints", "meta", "index", "changes"],
        )
        .unwrap();
        db.delete_cf(db.cf_handle("meta").unwrap(), b"index_built_v1")
            .unwrap();
        db.drop_cf("index").unwrap();
    }
    let s = open(&dir, false);
    assert_eq!(query(&s, "f_bin", "t", "t"), pairs(&[("t", "Sk")]));
}
