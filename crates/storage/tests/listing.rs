//! Key and group listing scans against a real RocksDB.

use dynkv_storage::{KeyRef, Store, StoreConfig};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

/// A grouping of the kind protocols use (Riak's buckets): `0xFF ‖ len(ns)
/// ‖ ns ‖ name`, a one-byte length here.
mod namespace {
    pub const TAG: u8 = 0xFF;

    pub fn prefix(ns: &[u8]) -> Vec<u8> {
        let mut out = vec![TAG, ns.len() as u8];
        out.extend_from_slice(ns);
        out
    }

    pub fn key(ns: &[u8], name: &[u8]) -> Vec<u8> {
        [prefix(ns), name.to_vec()].concat()
    }

    /// The length of the group prefix of `key`.
    pub fn group(key: &[u8]) -> Option<usize> {
        match key {
            [TAG, len, rest @ ..] if rest.len() >= *len as usize => Some(2 + *len as usize),
            _ => None,
        }
    }

    pub fn split(key: &[u8]) -> Option<(&[u8], &[u8])> {
        let g = group(key)?;
        Some((&key[2..g], &key[g..]))
    }
}

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

fn namespaces(s: &Store, after: Option<&[u8]>, limit: usize) -> Vec<Vec<u8>> {
    let after = after.map(namespace::prefix);
    s.scan_groups(
        2,
        &[namespace::TAG],
        after.as_deref(),
        limit,
        namespace::group,
    )
    .unwrap()
    .into_iter()
    .map(|g| g[2..].to_vec())
    .collect()
}

#[test]
fn distinct_groups_skip_dead_ones_and_page() {
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
    // Under the prefix but in no group: stepped over.
    put(&s, 2, &[namespace::TAG, 9, b'x'], false);
    put(&s, 3, &namespace::key(b"elsewhere", b"1"), false);
    let all = namespaces(&s, None, 100);
    let expect: Vec<Vec<u8>> = [&b"a"[..], b"b", b"c", b"bb", b"half"]
        .iter()
        .map(|n| n.to_vec())
        .collect();
    let mut sorted_all = all.clone();
    sorted_all.sort();
    let mut sorted_expect = expect.clone();
    sorted_expect.sort();
    assert_eq!(sorted_all, sorted_expect);
    let first = namespaces(&s, None, 2);
    let rest = namespaces(&s, Some(first.last().unwrap()), 100);
    assert_eq!([first, rest].concat(), all);
    // The groups are the prefixes of their keys.
    let groups = s
        .scan_groups(2, &[namespace::TAG], None, 1, namespace::group)
        .unwrap();
    assert_eq!(groups, [namespace::prefix(b"a")]);
    // A group of all 0xFF bytes has no successor: nothing after it.
    assert!(
        s.scan_groups(2, &[], Some(&[0xff, 0xff]), 10, |_| Some(1))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn groups_of_the_whole_partition() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::new(dir.path()), None).unwrap();
    for k in [&b"a/1"[..], b"a/2", b"b/1", b"c", b"c/3"] {
        put(&s, 4, k, false);
    }
    // Group by the first byte, empty prefix.
    let groups = s.scan_groups(4, &[], None, 10, |_| Some(1)).unwrap();
    assert_eq!(groups, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    // A grouping that names a length past the key skips it.
    let groups = s.scan_groups(4, &[], None, 10, |_| Some(2)).unwrap();
    assert_eq!(groups, [b"a/".to_vec(), b"b/".to_vec(), b"c/".to_vec()]);
}
