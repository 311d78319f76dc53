//! Proof of cost: how much an anti-entropy exchange sends, as a function of
//! the keys stored (K) and the keys that differ (D).
//!
//! Two replicas (real RocksDB stores in a temporary directory) hold the same
//! K keys; then D keys are changed on one side only and one full exchange
//! (every partition) runs over the in-process network. Printed per case:
//! messages, tree hashes received, keys compared, keys repaired, request
//! bytes and time. Also measures rebuilding every tree from the digest index.
//!
//! ```sh
//! cargo run --release -p dynkv-antientropy --example aae_cost -- [--max-keys 1000000] [--json out.json]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynkv_antientropy::{AaeMetrics, AntiEntropy, AntiEntropyConfig, TreeSet};
use dynkv_quorum::{Coordinator, CoordinatorConfig, QuorumMetrics};
use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::sim::SimNetwork;
use dynkv_rpc::{Dispatcher, PeerHealth};
use dynkv_storage::{KeyRef, Store, StoreConfig};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

const PARTITIONS: u32 = 64;

struct Node {
    coord: Arc<Coordinator>,
    aae: Arc<AntiEntropy>,
    trees: Arc<TreeSet>,
}

fn node(net: &SimNetwork, id: &str, dir: &std::path::Path) -> Node {
    let ids: Vec<NodeId> = vec!["n1".into(), "n2".into()];
    let ring = Ring::new(ids.clone(), PARTITIONS).unwrap();
    let trees = Arc::new(TreeSet::new(PARTITIONS));
    let store = Arc::new(Store::open(&StoreConfig::new(dir), Some(trees.clone())).unwrap());
    let coord = Coordinator::new(
        id.into(),
        ring,
        store,
        Arc::new(net.transport(id.into())),
        Arc::new(PeerHealth::new(id.into(), ids, 1)),
        CoordinatorConfig {
            n_val: 2,
            ..CoordinatorConfig::default()
        },
        Arc::new(QuorumMetrics::default()),
    );
    let config = AntiEntropyConfig {
        batch_pause: Duration::ZERO,
        ..AntiEntropyConfig::default()
    };
    let aae = AntiEntropy::new(
        coord.clone(),
        trees.clone(),
        config,
        Arc::new(AaeMetrics::default()),
    );
    let mut d = Dispatcher::new();
    coord.register(&mut d);
    aae.register(&mut d);
    net.register(id.into(), Arc::new(d));
    Node { coord, aae, trees }
}

fn put(n: &Node, key: &str, o: &Object) {
    let hash = dynkv_ring::key_hash(key.as_bytes());
    let kr = KeyRef {
        partition: n.coord.ring().partition_of_hash(hash),
        hash,
        key: key.as_bytes(),
    };
    n.coord.store().merge(&kr, o).unwrap();
}

fn value(i: u64, generation: u32) -> Object {
    DvvSet::update(
        &VersionVector::new(),
        &Object::new(),
        "n1",
        Content::value(
            format!("value-{i}-{generation}-{}", "x".repeat(100)),
            "text/plain",
            1,
        ),
    )
}

#[derive(serde::Serialize)]
struct Row {
    keys: u64,
    differing: u64,
    messages: u64,
    hashes: u64,
    keys_compared: u64,
    repaired: u64,
    bytes_sent: u64,
    millis: f64,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let max_keys: u64 = arg("--max-keys")
        .map(|s| s.parse().unwrap())
        .unwrap_or(1_000_000);
    let json_out = arg("--json");
    let mut rows = Vec::new();
    let mut rebuilds = Vec::new();
    println!(
        "| keys stored | keys differing | messages | hashes | keys compared | keys repaired | bytes sent | time (ms) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for k in [10_000u64, 100_000, 1_000_000]
        .into_iter()
        .filter(|k| *k <= max_keys)
    {
        let dir = tempfile::tempdir().unwrap();
        let net = SimNetwork::new();
        let a = node(&net, "n1", &dir.path().join("a"));
        let b = node(&net, "n2", &dir.path().join("b"));
        let load = Instant::now();
        for i in 0..k {
            let key = format!("key-{i}");
            let o = value(i, 0);
            put(&a, &key, &o);
            put(&b, &key, &o);
            if i > 0 && i % 200_000 == 0 {
                eprintln!("  loaded {i}/{k} keys ({:.0?})", load.elapsed());
            }
        }
        let started = Instant::now();
        let stats = a.trees.rebuild_all(a.coord.store()).unwrap();
        let took = started.elapsed();
        b.trees.rebuild_all(b.coord.store()).unwrap();
        eprintln!(
            "K={k}: loaded in {:.1?}; tree rebuild from the digest index: {:.1?} ({} keys)",
            load.elapsed(),
            took,
            stats.keys
        );
        rebuilds.push(serde_json::json!({"keys": k, "rebuild_ms": took.as_secs_f64() * 1000.0}));
        for (generation, d) in (1u32..).zip([0u64, 1, 10, 1000]) {
            // Change d keys on n1 only (spread over the key space).
            for j in 0..d {
                let i = (j * 7919) % k;
                let key = format!("key-{i}");
                let hash = dynkv_ring::key_hash(key.as_bytes());
                let kr = KeyRef {
                    partition: a.coord.ring().partition_of_hash(hash),
                    hash,
                    key: key.as_bytes(),
                };
                let cur = a.coord.store().get(&kr).unwrap().unwrap_or_default();
                let next = DvvSet::update(
                    &cur.join(),
                    &cur,
                    "n1",
                    value(i, generation).values()[0].clone(),
                );
                put(&a, &key, &next);
            }
            let started = Instant::now();
            let mut row = Row {
                keys: k,
                differing: d,
                messages: 0,
                hashes: 0,
                keys_compared: 0,
                repaired: 0,
                bytes_sent: 0,
                millis: 0.0,
            };
            for p in 0..PARTITIONS {
                let s = a.aae.exchange(p, &NodeId::from("n2")).await.unwrap();
                row.messages += s.messages;
                row.hashes += s.hashes;
                row.keys_compared += s.keys_compared;
                row.repaired += s.repaired_here + s.repaired_there;
                row.bytes_sent += s.bytes_sent;
            }
            row.millis = started.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(
                row.repaired, d,
                "every differing key is repaired exactly once"
            );
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                row.keys,
                row.differing,
                row.messages,
                row.hashes,
                row.keys_compared,
                row.repaired,
                row.bytes_sent,
                row.millis
            );
            rows.push(row);
        }
    }
    for r in &rebuilds {
        println!(
            "rebuild of every tree from the digest index: {} keys in {:.0} ms",
            r["keys"],
            r["rebuild_ms"].as_f64().unwrap()
        );
    }
    if let Some(path) = json_out {
        let doc =
            serde_json::json!({"partitions": PARTITIONS, "exchanges": rows, "rebuilds": rebuilds});
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        eprintln!("wrote {path}");
    }
}
