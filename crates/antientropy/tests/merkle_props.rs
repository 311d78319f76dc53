//! Property tests of the pure Merkle tree: the top-down comparison finds
//! exactly the keys whose digests differ, and incremental updates agree
//! with a rebuild.

use std::collections::BTreeMap;

use dynkv_antientropy::merkle::{MerkleTree, TreeShape, diff_keys, differing, leaf_hash};
use proptest::prelude::*;

const PARTITION_BITS: u32 = 6;
const PARTITION: u32 = 9;

/// A replica's content of one partition: key -> (hash, digest).
type Replica = BTreeMap<Vec<u8>, (u64, u64)>;

fn shape() -> TreeShape {
    TreeShape::for_partitions(1 << PARTITION_BITS)
}

/// A hash inside PARTITION, derived from the key (stands in for the ring hash).
fn hash_of(key: &[u8]) -> u64 {
    let h = xxhash_rust::xxh3::xxh3_64(key);
    ((PARTITION as u64) << (64 - PARTITION_BITS)) | (h >> PARTITION_BITS)
}

fn leaf_items(r: &Replica, leaf: u32) -> Vec<(Vec<u8>, u64)> {
    let mut items: Vec<(u64, Vec<u8>, u64)> = r
        .iter()
        .filter(|(_, (h, _))| shape().leaf_of(*h, PARTITION_BITS) == leaf)
        .map(|(k, (h, d))| (*h, k.clone(), *d))
        .collect();
    items.sort();
    items.into_iter().map(|(_, k, d)| (k, d)).collect()
}

fn build(r: &Replica) -> MerkleTree {
    let mut t = MerkleTree::new(shape());
    for leaf in 0..shape().leaves() as u32 {
        let items = leaf_items(r, leaf);
        t.set_leaf(
            leaf as usize,
            leaf_hash(items.iter().map(|(k, d)| (k.as_slice(), *d))),
        );
    }
    t
}

/// The top-down descent an exchange performs; returns the differing keys
/// and the number of hashes the initiator had to receive.
fn descend(a: &Replica, b: &Replica) -> (Vec<Vec<u8>>, usize) {
    let (ta, tb) = (build(a), build(b));
    let mut hashes = 1;
    if ta.root() == tb.root() {
        return (vec![], hashes);
    }
    hashes += tb.level(1).len();
    let mids = differing(&[], ta.level(1), tb.level(1));
    let leaves: Vec<u32> = mids.iter().flat_map(|m| ta.children_of(*m)).collect();
    hashes += leaves.len();
    let diff_leaves = differing(&leaves, &ta.hashes(2, &leaves), &tb.hashes(2, &leaves));
    let mut keys = Vec::new();
    for leaf in diff_leaves {
        let mut ia = leaf_items(a, leaf);
        let mut ib = leaf_items(b, leaf);
        ia.sort();
        ib.sort();
        keys.extend(diff_keys(&ia, &ib));
    }
    keys.sort();
    (keys, hashes)
}

fn replica_pair() -> impl Strategy<Value = (Replica, Replica)> {
    (
        proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 1..12),
            any::<u64>(),
            0..300,
        ),
        proptest::collection::vec((any::<prop::sample::Index>(), 0..3u8, any::<u64>()), 0..20),
        proptest::collection::vec(
            (
                proptest::collection::vec(any::<u8>(), 1..12),
                any::<u64>(),
                any::<bool>(),
            ),
            0..10,
        ),
    )
        .prop_map(|(base, edits, extra)| {
            let a: Replica = base
                .iter()
                .map(|(k, d)| (k.clone(), (hash_of(k), *d)))
                .collect();
            let mut b = a.clone();
            let keys: Vec<Vec<u8>> = a.keys().cloned().collect();
            if !keys.is_empty() {
                for (idx, kind, d) in edits {
                    let k = idx.get(&keys).clone();
                    match kind {
                        0 => {
                            b.remove(&k);
                        }
                        1 => {
                            b.insert(k.clone(), (hash_of(&k), d));
                        }
                        _ => {}
                    }
                }
            }
            let mut a = a;
            for (k, d, side) in extra {
                let target = if side { &mut a } else { &mut b };
                target.insert(k.clone(), (hash_of(&k), d));
            }
            (a, b)
        })
}

fn truly_differing(a: &Replica, b: &Replica) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = a
        .keys()
        .chain(b.keys())
        .filter(|k| a.get(*k).map(|x| x.1) != b.get(*k).map(|x| x.1))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn descent_finds_exactly_the_differing_keys((a, b) in replica_pair()) {
        let (found, _) = descend(&a, &b);
        prop_assert_eq!(found, truly_differing(&a, &b));
    }

    #[test]
    fn incremental_updates_match_a_rebuild((a, b) in replica_pair()) {
        // Start from a's tree and move it to b leaf by leaf, as writes do.
        let mut t = build(&a);
        let touched: std::collections::BTreeSet<u32> = truly_differing(&a, &b)
            .iter()
            .map(|k| shape().leaf_of(hash_of(k), PARTITION_BITS))
            .collect();
        for leaf in touched {
            let items = leaf_items(&b, leaf);
            t.set_leaf(leaf as usize, leaf_hash(items.iter().map(|(k, d)| (k.as_slice(), *d))));
        }
        prop_assert_eq!(t, build(&b));
    }
}

#[test]
fn identical_replicas_cost_one_hash() {
    let a: Replica = (0..500u32)
        .map(|i| {
            let k = i.to_be_bytes().to_vec();
            (k.clone(), (hash_of(&k), i as u64))
        })
        .collect();
    let (keys, hashes) = descend(&a, &a.clone());
    assert!(keys.is_empty());
    assert_eq!(hashes, 1);
}
