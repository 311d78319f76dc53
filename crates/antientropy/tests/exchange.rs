//! Exchanges between real RocksDB stores over the in-process network.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynkv_antientropy::{AaeMetrics, AntiEntropy, AntiEntropyConfig, TreeSet};
use dynkv_quorum::{Coordinator, CoordinatorConfig, QuorumMetrics};
use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::messages::AaeHashes;
use dynkv_rpc::sim::SimNetwork;
use dynkv_rpc::{Dispatcher, PeerHealth, RemoteError, RpcError};
use dynkv_storage::{KeyRef, Store, StoreConfig};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

const PARTITIONS: u32 = 16;

struct Node {
    coord: Arc<Coordinator>,
    aae: Arc<AntiEntropy>,
    _dir: tempfile::TempDir,
}

fn nodes(net: &SimNetwork) -> Vec<Node> {
    let ids: Vec<NodeId> = vec!["n1".into(), "n2".into()];
    let ring = Ring::new(ids.clone(), PARTITIONS).unwrap();
    ids.iter()
        .map(|id| {
            let dir = tempfile::tempdir().unwrap();
            let trees = Arc::new(TreeSet::new(PARTITIONS));
            let store =
                Arc::new(Store::open(&StoreConfig::new(dir.path()), Some(trees.clone())).unwrap());
            let coord = Coordinator::new(
                id.clone(),
                ring.clone(),
                store,
                Arc::new(net.transport(id.clone())),
                Arc::new(PeerHealth::new(id.clone(), ids.clone(), 1)),
                CoordinatorConfig {
                    n_val: 2,
                    ..CoordinatorConfig::default()
                },
                Arc::new(QuorumMetrics::default()),
            );
            let config = AntiEntropyConfig {
                keys_per_batch: 7,
                batch_pause: Duration::ZERO,
                ..AntiEntropyConfig::default()
            };
            let aae = AntiEntropy::new(
                coord.clone(),
                trees,
                config,
                Arc::new(AaeMetrics::default()),
            );
            let mut d = Dispatcher::new();
            coord.register(&mut d);
            aae.register(&mut d);
            net.register(id.clone(), Arc::new(d));
            Node {
                coord,
                aae,
                _dir: dir,
            }
        })
        .collect()
}

fn kref<'a>(c: &Coordinator, key: &'a [u8]) -> KeyRef<'a> {
    let hash = dynkv_ring::key_hash(key);
    KeyRef {
        partition: c.ring().partition_of_hash(hash),
        hash,
        key,
    }
}

fn put(n: &Node, key: &str, o: &Object) {
    n.coord
        .store()
        .merge(&kref(&n.coord, key.as_bytes()), o)
        .unwrap();
}

fn get(n: &Node, key: &str) -> Option<Object> {
    n.coord
        .store()
        .get(&kref(&n.coord, key.as_bytes()))
        .unwrap()
}

fn write(base: &Object, actor: &str, v: &str) -> Object {
    DvvSet::update(
        &base.join(),
        base,
        actor,
        Content::value(Bytes::from(v.to_string()), "text/plain", 1),
    )
}

async fn exchange_all(from: &Node, to: &str) -> (u64, u64, u64) {
    let mut totals = (0, 0, 0);
    for p in 0..PARTITIONS {
        let s = from.aae.exchange(p, &NodeId::from(to)).await.unwrap();
        totals.0 += s.repaired_here;
        totals.1 += s.repaired_there;
        totals.2 += s.messages;
    }
    totals
}

#[tokio::test]
async fn exchange_repairs_both_sides_including_siblings_and_tombstones() {
    let net = SimNetwork::new();
    let n = nodes(&net);
    // 200 keys in sync.
    for i in 0..200 {
        let o = write(&Object::new(), "n1", &format!("v{i}"));
        put(&n[0], &format!("k{i}"), &o);
        put(&n[1], &format!("k{i}"), &o);
    }
    let (here, there, msgs) = exchange_all(&n[0], "n2").await;
    assert_eq!((here, there), (0, 0));
    assert_eq!(
        msgs, PARTITIONS as u64,
        "in-sync partitions cost one message each"
    );

    // n1 misses 5 keys, n2 misses 3 others.
    for i in 0..5 {
        put(
            &n[1],
            &format!("only2-{i}"),
            &write(&Object::new(), "n2", "x"),
        );
    }
    for i in 0..3 {
        put(
            &n[0],
            &format!("only1-{i}"),
            &write(&Object::new(), "n1", "y"),
        );
    }
    // Concurrent siblings on the two sides of one key.
    let base = get(&n[0], "k1").unwrap();
    put(&n[0], "k1", &write(&base, "n1", "left"));
    put(&n[1], "k1", &write(&base, "n2", "right"));
    // A tombstone on n1 that covers n2's older value.
    let old = get(&n[0], "k2").unwrap();
    let tomb = DvvSet::update(&old.join(), &old, "n1", Content::tombstone(2));
    put(&n[0], "k2", &tomb);

    let (here, there, _) = exchange_all(&n[0], "n2").await;
    assert_eq!(here, 5 + 1, "n1 gains the 5 keys and the right sibling");
    assert_eq!(
        there,
        3 + 1 + 1,
        "n2 gains the 3 keys, the left sibling and the tombstone"
    );

    let k1 = get(&n[1], "k1").unwrap();
    let mut vals: Vec<String> = k1
        .live_values()
        .iter()
        .map(|c| String::from_utf8(c.value.to_vec()).unwrap())
        .collect();
    vals.sort();
    assert_eq!(vals, vec!["left", "right"]);
    assert!(
        get(&n[1], "k2").unwrap().is_deleted(),
        "the tombstone wins over the older value"
    );
    for key in ["only1-0", "only2-4", "k1", "k2", "k150"] {
        assert_eq!(
            get(&n[0], key).map(|o| o.digest()),
            get(&n[1], key).map(|o| o.digest()),
            "{key}"
        );
    }
    // Converged: the next round repairs nothing, from either side.
    assert_eq!(
        exchange_all(&n[0], "n2").await.0 + exchange_all(&n[1], "n1").await.0,
        0
    );
    let _ = VersionVector::new();
}

#[tokio::test]
async fn a_request_with_another_tree_shape_is_refused_with_both_shapes() {
    let net = SimNetwork::new();
    let n = nodes(&net);
    let ours = TreeSet::new(PARTITIONS).shape();
    let ours = (ours.leaf_bits, ours.mid_bits);
    let theirs = (ours.0 + 1, ours.1);
    let req = AaeHashes {
        partition: 0,
        shape: theirs,
        level: 0,
        indices: vec![],
    };
    let r = n[0]
        .coord
        .transport()
        .call(&NodeId::from("n2"), &req, Duration::from_secs(2))
        .await;
    assert_eq!(
        r,
        Err(RpcError::Remote(RemoteError::ShapeMismatch {
            ours,
            theirs
        }))
    );
    // The same request with the right shape is answered.
    let req = AaeHashes { shape: ours, ..req };
    let r = n[0]
        .coord
        .transport()
        .call(&NodeId::from("n2"), &req, Duration::from_secs(2))
        .await;
    assert_eq!(r.map(|h| h.0.len()), Ok(1));
}
