//! Key and namespace listing scans against a real RocksDB.

use dynkv_storage::{KeyRef, Store, StoreConfig, namespace};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

fn put(s: &Store, partition: u32, k: &[u8], deleted: bool) {
    let content = if deleted {
        Content::tombstone(1)
    } else {
        Content::value("v", "text/plain", 1)
    };
    let o: Object = DvvSet::update(&VersionVector::new(), &Object::new(), "n1", content);
    s.merge(
        &KeyRef {
            partition,
            hash: 0,
            key: k,
        },
        &o,
    )
    .unwrap();
}

#[test]
fn keys_of_one_namespace_in_one_partition_with_paging() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::new(dir.path()), None).unwrap();
    for i in 0..10u8 {
        put(&s, 5, &namespace::key(b"ab", &[b'k', i]), false);
        put(&s, 5, &namespace::key(b"abc", &[b'k', i]), false);
        put(&s, 6, &namespace::key(b"ab", &[b'x', i]), false);
    }
    put(&s, 5, &namespace::key(b"ab", b"gone"), true);
    put(&s, 5, b"native-key", false);

    let prefix = namespace::prefix(b"ab");
    let all = s.scan_keys(5, &prefix, None, 100).unwrap();
    assert_eq!(
        all.len(),
        10,
        "tombstones and other namespaces are left out"
    );
    assert!(all.iter().all(|k| namespace::split(k).unwrap().0 == b"ab"));
    // Paging: 4 at a time gives the same keys in the same order.
    let mut paged = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = s.scan_keys(5, &prefix, after.as_deref(), 4).unwrap();
        let done = page.len() < 4;
        after = page.last().cloned();
        paged.extend(page);
        if done {
            break;
        }
    }
    assert_eq!(paged, all);
    assert!(s.scan_keys(7, &prefix, None, 100).unwrap().is_empty());
}

#[test]
fn distinct_namespaces_skip_dead_ones_and_page() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::new(dir.path()), None).unwrap();
    for ns in [&b"a"[..], b"b", b"bb", b"c"] {
        for i in 0..5u8 {
            put(&s, 2, &namespace::key(ns, &[i]), false);
        }
    }
    // Only tombstones: not listed. Its first key dead, later ones live: listed.
    put(&s, 2, &namespace::key(b"dead", b"1"), true);
    put(&s, 2, &namespace::key(b"half", b"1"), true);
    put(&s, 2, &namespace::key(b"half", b"2"), false);
    put(&s, 2, b"native", false);
    let all = s.scan_namespaces(2, None, 100).unwrap();
    let expect: Vec<Vec<u8>> = [&b"a"[..], b"b", b"c", b"bb", b"half"]
        .iter()
        .map(|n| n.to_vec())
        .collect();
    let mut sorted_all = all.clone();
    sorted_all.sort();
    let mut sorted_expect = expect.clone();
    sorted_expect.sort();
    assert_eq!(sorted_all, sorted_expect);
    let first = s.scan_namespaces(2, None, 2).unwrap();
    let rest = s
        .scan_namespaces(2, Some(first.last().unwrap()), 100)
        .unwrap();
    assert_eq!([first, rest].concat(), all);
}
