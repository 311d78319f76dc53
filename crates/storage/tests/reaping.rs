//! What tombstone reaping needs from the store: which owners hints are kept
//! for, whether a key has a hint, and a manual compaction that gives the
//! space of removed keys back.

use dynkv_storage::{KeyRef, Store, StoreConfig};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

fn key(k: &[u8]) -> KeyRef<'_> {
    let hash = xxhash_like(k);
    KeyRef {
        partition: (hash >> 58) as u32,
        hash,
        key: k,
    }
}

/// Any well-spread hash will do for the store (the ring owns the real one).
fn xxhash_like(k: &[u8]) -> u64 {
    k.iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
        })
        .rotate_left(17)
}

fn obj(v: &[u8]) -> Object {
    DvvSet::update(
        &VersionVector::new(),
        &Object::new(),
        "n1#a",
        Content::value(v.to_vec(), "application/octet-stream", 1),
    )
}

#[test]
fn hint_owners_lists_each_owner_once_and_has_hint_finds_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::new(dir.path()), None).unwrap();
    assert!(s.hint_owners().unwrap().is_empty());
    // "n1" and "n10" share a prefix but not a length byte.
    for owner in ["n1", "n10", "n2", "a-much-longer-node-name"] {
        for i in 0..50 {
            let k = format!("{owner}-{i}");
            s.put_hint(owner, &key(k.as_bytes()), &obj(b"v")).unwrap();
        }
    }
    let mut owners = s.hint_owners().unwrap();
    owners.sort();
    assert_eq!(owners, vec!["a-much-longer-node-name", "n1", "n10", "n2"]);
    assert!(s.has_hint("n10", &key(b"n10-7")).unwrap());
    assert!(!s.has_hint("n1", &key(b"n10-7")).unwrap());
    assert!(!s.has_hint("n3", &key(b"n1-7")).unwrap());
}

#[test]
fn compaction_gives_the_space_of_removed_keys_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&StoreConfig::new(dir.path()), None).unwrap();
    // Incompressible values (LZ4 is on): an xorshift stream.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let keys: Vec<String> = (0..3000).map(|i| format!("key-{i}")).collect();
    for k in &keys {
        let value: Vec<u8> = (0..128)
            .flat_map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()
            })
            .collect();
        s.merge(&key(k.as_bytes()), &obj(&value)).unwrap();
    }
    s.flush().unwrap();
    s.compact();
    let full = s.sst_bytes();
    assert!(full > 1_000_000, "3000 KiB values take {full} bytes");
    for k in &keys {
        s.remove(&key(k.as_bytes())).unwrap();
    }
    s.flush().unwrap();
    let deleted = s.sst_bytes();
    assert!(
        deleted >= full,
        "deletes alone free nothing ({full} -> {deleted})"
    );
    s.compact();
    let compacted = s.sst_bytes();
    assert!(
        compacted < full / 20,
        "after compaction {compacted} bytes remain of {full}"
    );
    assert_eq!(s.get(&key(b"key-1")).unwrap(), None);
    assert!(s.scan_digests(0, u64::MAX).unwrap().is_empty());
}
