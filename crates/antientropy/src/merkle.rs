//! The Merkle tree of one partition: a pure structure, no I/O.
//!
//! Three levels: the **root**; a **middle** level of `2^mid_bits` nodes; and
//! `2^leaf_bits` **leaves**. A key belongs to the leaf named by the bits of
//! its ring hash just below the partition bits, so every leaf is one
//! contiguous range of hashes (which the storage's digest index can scan
//! directly). A leaf's hash is the hash of its keys' `(key, object digest)`
//! pairs in (hash, key) order; an inner node's hash is the hash of its
//! children. Empty subtrees hash to 0, so two empty trees agree at once.
//!
//! Updates are incremental: [`MerkleTree::set_leaf`] replaces one leaf and
//! recomputes only its path (one middle node and the root), never the rest
//! of the partition.
//!
//! Two trees are compared top-down with [`differing`]: the root, then the
//! middle nodes, then only the leaves under differing middle nodes, then
//! only the keys under differing leaves ([`diff_keys`]). The work of a
//! comparison therefore grows with the number of differences, not with the
//! number of keys.

use std::cmp::Ordering;

use xxhash_rust::xxh3::{Xxh3, xxh3_64};

/// Sizes of a tree. Both sides of an exchange must use the same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeShape {
    /// log2 of the number of leaves.
    pub leaf_bits: u8,
    /// log2 of the number of middle nodes (at most `leaf_bits`).
    pub mid_bits: u8,
}

impl TreeShape {
    /// The shape for a ring of `partitions`: about 65,536 leaves over the
    /// whole ring (as Riak's AAE uses a fixed segment count), between 64 and
    /// 1,024 leaves per partition, and a middle level of about the square
    /// root of that, so each level of the descent asks for a handful of
    /// hashes.
    pub fn for_partitions(partitions: u32) -> TreeShape {
        let leaves = (65_536 / partitions.max(1)).clamp(64, 1024);
        let leaf_bits = leaves.trailing_zeros() as u8;
        TreeShape {
            leaf_bits,
            mid_bits: leaf_bits / 2,
        }
    }

    /// Number of leaves.
    pub fn leaves(&self) -> usize {
        1 << self.leaf_bits
    }

    /// Number of middle nodes.
    pub fn mids(&self) -> usize {
        1 << self.mid_bits
    }

    /// Leaves under one middle node.
    pub fn fanout(&self) -> usize {
        1 << (self.leaf_bits - self.mid_bits)
    }

    /// The leaf of a key hash, given the ring's partition bits.
    pub fn leaf_of(&self, hash: u64, partition_bits: u32) -> u32 {
        let below = if partition_bits >= 64 {
            0
        } else {
            hash << partition_bits
        };
        (below >> (64 - self.leaf_bits as u32)) as u32
    }

    /// The inclusive hash range of one leaf of one partition.
    pub fn leaf_range(&self, partition: u32, partition_bits: u32, leaf: u32) -> (u64, u64) {
        let total_bits = partition_bits + self.leaf_bits as u32;
        let prefix = ((partition as u64) << self.leaf_bits) | leaf as u64;
        let lo = prefix << (64 - total_bits);
        let hi = lo | (u64::MAX >> total_bits);
        (lo, hi)
    }

    /// The inclusive hash range of a whole partition.
    pub fn partition_range(partition: u32, partition_bits: u32) -> (u64, u64) {
        if partition_bits == 0 {
            return (0, u64::MAX);
        }
        let lo = (partition as u64) << (64 - partition_bits);
        (lo, lo | (u64::MAX >> partition_bits))
    }
}

/// The hash of one leaf's `(key, digest)` items, given in (hash, key) order.
/// 0 for an empty leaf.
pub fn leaf_hash<'a, I: IntoIterator<Item = (&'a [u8], u64)>>(items: I) -> u64 {
    let mut h = Xxh3::new();
    let mut any = false;
    for (key, digest) in items {
        any = true;
        h.update(&(key.len() as u32).to_le_bytes());
        h.update(key);
        h.update(&digest.to_le_bytes());
    }
    if any { nonzero(h.digest()) } else { 0 }
}

fn nonzero(h: u64) -> u64 {
    if h == 0 { 1 } else { h }
}

fn node_hash(children: &[u64]) -> u64 {
    if children.iter().all(|c| *c == 0) {
        return 0;
    }
    let mut bytes = Vec::with_capacity(children.len() * 8);
    for c in children {
        bytes.extend_from_slice(&c.to_le_bytes());
    }
    nonzero(xxh3_64(&bytes))
}

/// One partition's tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    shape: TreeShape,
    leaves: Vec<u64>,
    mids: Vec<u64>,
    root: u64,
}

impl MerkleTree {
    /// An empty tree (every hash 0).
    pub fn new(shape: TreeShape) -> Self {
        MerkleTree {
            shape,
            leaves: vec![0; shape.leaves()],
            mids: vec![0; shape.mids()],
            root: 0,
        }
    }

    /// The tree's shape.
    pub fn shape(&self) -> TreeShape {
        self.shape
    }

    /// Replaces one leaf's hash and recomputes its path to the root.
    pub fn set_leaf(&mut self, leaf: usize, hash: u64) {
        if self.leaves[leaf] == hash {
            return;
        }
        self.leaves[leaf] = hash;
        let f = self.shape.fanout();
        let mid = leaf / f;
        self.mids[mid] = node_hash(&self.leaves[mid * f..(mid + 1) * f]);
        self.root = node_hash(&self.mids);
    }

    /// The root hash.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Every hash of a level: 0 = root, 1 = middle, 2 = leaves.
    pub fn level(&self, level: u8) -> &[u64] {
        match level {
            0 => std::slice::from_ref(&self.root),
            1 => &self.mids,
            _ => &self.leaves,
        }
    }

    /// The hashes of a level at `indices` (all of the level when empty);
    /// out-of-range indices read as 0.
    pub fn hashes(&self, level: u8, indices: &[u32]) -> Vec<u64> {
        let all = self.level(level);
        if indices.is_empty() {
            return all.to_vec();
        }
        indices
            .iter()
            .map(|i| all.get(*i as usize).copied().unwrap_or(0))
            .collect()
    }

    /// The leaf indices under middle node `mid`.
    pub fn children_of(&self, mid: u32) -> std::ops::Range<u32> {
        let f = self.shape.fanout() as u32;
        mid * f..(mid + 1) * f
    }
}

/// Positions where two equally long hash lists differ, returned as the
/// given `indices` (or positions when `indices` is empty).
pub fn differing(indices: &[u32], mine: &[u64], theirs: &[u64]) -> Vec<u32> {
    (0..mine.len().max(theirs.len()))
        .filter(|i| mine.get(*i) != theirs.get(*i))
        .map(|i| {
            if indices.is_empty() {
                i as u32
            } else {
                indices[i]
            }
        })
        .collect()
}

/// Keys whose digest differs, or that only one side holds. Both inputs are
/// sorted by key.
pub fn diff_keys<K: Ord + Clone>(mine: &[(K, u64)], theirs: &[(K, u64)]) -> Vec<K> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < mine.len() || j < theirs.len() {
        match (mine.get(i), theirs.get(j)) {
            (Some(a), Some(b)) => match a.0.cmp(&b.0) {
                Ordering::Equal => {
                    if a.1 != b.1 {
                        out.push(a.0.clone());
                    }
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    out.push(a.0.clone());
                    i += 1;
                }
                Ordering::Greater => {
                    out.push(b.0.clone());
                    j += 1;
                }
            },
            (Some(a), None) => {
                out.push(a.0.clone());
                i += 1;
            }
            (None, Some(b)) => {
                out.push(b.0.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let s = TreeShape::for_partitions(64);
        assert_eq!((s.leaves(), s.mids(), s.fanout()), (1024, 32, 32));
        let s = TreeShape::for_partitions(65536);
        assert_eq!(s.leaves(), 64);
        let s = TreeShape::for_partitions(1);
        assert_eq!(s.leaves(), 1024);
    }

    #[test]
    fn leaf_ranges_tile_the_partition() {
        let s = TreeShape::for_partitions(64);
        let pbits = 6;
        let (plo, phi) = TreeShape::partition_range(5, pbits);
        let (lo0, _) = s.leaf_range(5, pbits, 0);
        let (_, hin) = s.leaf_range(5, pbits, s.leaves() as u32 - 1);
        assert_eq!((lo0, hin), (plo, phi));
        for leaf in [0u32, 1, 17, 1023] {
            let (lo, hi) = s.leaf_range(5, pbits, leaf);
            assert_eq!(s.leaf_of(lo, pbits), leaf);
            assert_eq!(s.leaf_of(hi, pbits), leaf);
            assert_eq!((lo >> (64 - pbits)) as u32, 5);
        }
        assert_eq!(TreeShape::partition_range(0, 0), (0, u64::MAX));
    }
}
