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

/// A store with the default settings in `dir`.
pub fn open_default(dir: &tempfile::TempDir) -> Store {
    Store::open(&StoreConfig::new(dir.path()), None).unwrap()
}
