//! The node's Merkle trees, kept current from the write path.
//!
//! Every write reaches [`TreeSet::digest_changed`] (the storage's write
//! listener), which only sets the key's leaf *dirty*: one atomic bit, no
//! lock, no hashing on the write path. Before a tree is compared,
//! [`TreeSet::refresh`] recomputes just the dirty leaves from the digest
//! index (one short range scan per leaf) and updates their path to the root.
//!
//! Marking dirty is idempotent, so it is race-free: a leaf's bit is cleared
//! *before* its range is read, and a write that lands during the read sets
//! it again. For the same reason a full rebuild is just "mark every leaf
//! dirty": at start-up (trees live in memory and are rebuilt from the digest
//! index, which is much smaller than the data) and periodically, which
//! guards against any silent drift, as Riak's tree expiry does.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dynkv_storage::{KeyRef, Store, WriteListener};
use parking_lot::Mutex;

use crate::merkle::{MerkleTree, TreeShape, leaf_hash};

struct PartitionTree {
    dirty: Vec<AtomicU64>,
    any_dirty: AtomicBool,
    tree: Mutex<MerkleTree>,
}

/// The trees of every partition of the ring.
pub struct TreeSet {
    partition_bits: u32,
    shape: TreeShape,
    parts: Vec<PartitionTree>,
}

/// What a refresh did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefreshStats {
    /// Leaves recomputed.
    pub leaves: u64,
    /// Keys read from the digest index.
    pub keys: u64,
}

impl TreeSet {
    /// Trees for a ring of `partitions`, every leaf dirty (so the first
    /// refresh builds them from the store).
    pub fn new(partitions: u32) -> Self {
        let shape = TreeShape::for_partitions(partitions);
        let words = shape.leaves().div_ceil(64);
        let parts = (0..partitions)
            .map(|_| PartitionTree {
                dirty: (0..words).map(|_| AtomicU64::new(u64::MAX)).collect(),
                any_dirty: AtomicBool::new(true),
                tree: Mutex::new(MerkleTree::new(shape)),
            })
            .collect();
        TreeSet {
            partition_bits: partitions.trailing_zeros(),
            shape,
            parts,
        }
    }

    /// The shape every tree here uses.
    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    /// log2 of the ring's partitions.
    pub fn partition_bits(&self) -> u32 {
        self.partition_bits
    }

    /// Marks every leaf of `partition` dirty (a full rebuild on next refresh).
    pub fn invalidate(&self, partition: u32) {
        if let Some(p) = self.parts.get(partition as usize) {
            for w in &p.dirty {
                w.store(u64::MAX, Ordering::Relaxed);
            }
            p.any_dirty.store(true, Ordering::Release);
        }
    }

    /// Recomputes the dirty leaves of `partition` from the digest index.
    pub fn refresh(&self, store: &Store, partition: u32) -> dynkv_storage::Result<RefreshStats> {
        let mut stats = RefreshStats::default();
        let Some(p) = self.parts.get(partition as usize) else {
            return Ok(stats);
        };
        if !p.any_dirty.swap(false, Ordering::AcqRel) {
            return Ok(stats);
        }
        // One refresh of a partition at a time: the tree lock is held for
        // the scan (writes never take it; they only set bits).
        let mut tree = p.tree.lock();
        for (w, word) in p.dirty.iter().enumerate() {
            let mut bits = word.swap(0, Ordering::AcqRel);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let leaf = w * 64 + b;
                if leaf >= self.shape.leaves() {
                    continue;
                }
                let (lo, hi) = self
                    .shape
                    .leaf_range(partition, self.partition_bits, leaf as u32);
                let items = store.scan_digests(lo, hi)?;
                stats.keys += items.len() as u64;
                stats.leaves += 1;
                tree.set_leaf(
                    leaf,
                    leaf_hash(items.iter().map(|(_, k, d)| (k.as_slice(), *d))),
                );
            }
        }
        Ok(stats)
    }

    /// Rebuilds every tree from the store, reading the digest index once
    /// partition by partition (start-up and measurement).
    pub fn rebuild_all(&self, store: &Store) -> dynkv_storage::Result<RefreshStats> {
        let mut total = RefreshStats::default();
        for p in 0..self.parts.len() as u32 {
            self.invalidate(p);
            let mut leaf_items: Vec<Vec<(Vec<u8>, u64)>> = Vec::new();
            let (lo, hi) = TreeShape::partition_range(p, self.partition_bits);
            let part = &self.parts[p as usize];
            let mut tree = part.tree.lock();
            for w in &part.dirty {
                w.store(0, Ordering::Relaxed);
            }
            part.any_dirty.store(false, Ordering::Release);
            leaf_items.resize_with(self.shape.leaves(), Vec::new);
            store.for_each_digest(lo, hi, |hash, key, digest| {
                let leaf = self.shape.leaf_of(hash, self.partition_bits) as usize;
                leaf_items[leaf].push((key.to_vec(), digest));
                total.keys += 1;
            })?;
            for (leaf, items) in leaf_items.iter().enumerate() {
                tree.set_leaf(
                    leaf,
                    leaf_hash(items.iter().map(|(k, d)| (k.as_slice(), *d))),
                );
            }
            total.leaves += self.shape.leaves() as u64;
        }
        Ok(total)
    }

    /// Hashes of one level of a partition's tree (refresh first).
    pub fn hashes(&self, partition: u32, level: u8, indices: &[u32]) -> Vec<u64> {
        match self.parts.get(partition as usize) {
            Some(p) => p.tree.lock().hashes(level, indices),
            None => Vec::new(),
        }
    }

    /// The leaves under middle node `mid`.
    pub fn children_of(&self, mid: u32) -> std::ops::Range<u32> {
        let f = self.shape.fanout() as u32;
        mid * f..(mid + 1) * f
    }

    /// `(key, digest)` of every key under `leaves` of `partition`, in
    /// (hash, key) order.
    pub fn keys_under(
        &self,
        store: &Store,
        partition: u32,
        leaves: &[u32],
    ) -> dynkv_storage::Result<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::new();
        for leaf in leaves {
            let (lo, hi) = self.shape.leaf_range(partition, self.partition_bits, *leaf);
            store.for_each_digest(lo, hi, |_, k, d| out.push((k.to_vec(), d)))?;
        }
        Ok(out)
    }
}

impl WriteListener for TreeSet {
    fn digest_changed(&self, key: &KeyRef<'_>, _old: Option<u64>, _new: Option<u64>) {
        self.merged(key);
    }

    fn merged(&self, key: &KeyRef<'_>) {
        let Some(p) = self.parts.get(key.partition as usize) else {
            return;
        };
        let leaf = self.shape.leaf_of(key.hash, self.partition_bits) as usize;
        p.dirty[leaf / 64].fetch_or(1 << (leaf % 64), Ordering::Relaxed);
        p.any_dirty.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dynkv_storage::StoreConfig;
    use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

    use super::*;

    const PARTITIONS: u32 = 4;

    fn obj(v: &str) -> Object {
        DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            Content::value(v.to_string(), "text/plain", 1),
        )
    }

    /// The partition whose hash range holds `hash`.
    fn partition_of(hash: u64) -> u32 {
        (0..PARTITIONS)
            .find(|&p| {
                let (lo, hi) = TreeShape::partition_range(p, PARTITIONS.trailing_zeros());
                lo <= hash && hash <= hi
            })
            .expect("the partitions cover the hash space")
    }

    #[test]
    fn a_refresh_right_after_a_write_sees_its_digest() {
        let dir = tempfile::tempdir().unwrap();
        let trees = Arc::new(TreeSet::new(PARTITIONS));
        let listener: Arc<dyn WriteListener> = trees.clone();
        let store = Store::open(&StoreConfig::new(dir.path()), Some(listener)).unwrap();
        for p in 0..PARTITIONS {
            trees.refresh(&store, p).unwrap();
        }
        let mut touched = Vec::new();
        for i in 0..20 {
            let name = format!("key-{i}").into_bytes();
            let hash = xxhash_rust::xxh3::xxh3_64(&name);
            let key = KeyRef {
                partition: partition_of(hash),
                hash,
                key: &name,
            };
            let before = trees.hashes(key.partition, 0, &[]);
            store.merge(&key, &obj(&format!("v{i}"))).unwrap();
            // At once, well before any background write of the digest.
            let stats = trees.refresh(&store, key.partition).unwrap();
            assert!(stats.keys >= 1, "the new key's digest is read");
            assert_ne!(trees.hashes(key.partition, 0, &[]), before);
            touched.push(key.partition);
        }
        // The trees equal ones built from scratch over the same store.
        let fresh = TreeSet::new(PARTITIONS);
        fresh.rebuild_all(&store).unwrap();
        for p in 0..PARTITIONS {
            trees.refresh(&store, p).unwrap();
            for level in 0..3 {
                assert_eq!(trees.hashes(p, level, &[]), fresh.hashes(p, level, &[]));
            }
        }
        assert!(!touched.is_empty());
    }
}
