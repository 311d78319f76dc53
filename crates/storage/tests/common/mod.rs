//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use dynkv_storage::{KeyRef, Store, StoreConfig};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

/// A first version of a key written by `actor` with value `v`.
pub fn obj(actor: &str, v: &str) -> Object {
    DvvSet::update(
        &VersionVector::new(),
        &Object::new(),
        actor,
        Content::value(v.to_string(), "text/plain", 1),
    )
}

/// A key placed by partition and a hash made from it (no ring needed).
pub fn key_in(partition: u32, k: &[u8]) -> KeyRef<'_> {
    KeyRef {
        partition,
        hash: (partition as u64) << 58 | (k.len() as u64),
        key: k,
    }
}

/// A key spread over four partitions by its first byte, with its real
/// hash: for tests that hold many keys in several partitions.
pub fn spread_key(k: &[u8]) -> KeyRef<'_> {
    KeyRef {
        partition: k.first().copied().unwrap_or(0) as u32 % 4,
        hash: xxhash_rust::xxh3::xxh3_64(k),
        key: k,
    }
}

/// A store in `dir` with an object cache of `cache_bytes` (0: none),
/// applying replica steps as deferred merges or not.
pub fn open_with(dir: &tempfile::TempDir, cache_bytes: u64, deferred_merges: bool) -> Store {
    let mut config = StoreConfig::new(dir.path());
    config.object_cache_bytes = cache_bytes;
    config.deferred_merges = deferred_merges;
    Store::open(&config, None).unwrap()
}

/// A store with the default settings in `dir`.
pub fn open_default(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig::new(dir.path()), None).unwrap()
}
