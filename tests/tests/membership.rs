//! Live membership across real processes: a node joins a loaded cluster
//! under traffic and later leaves, with ownership handoff and nothing lost;
//! a handoff interrupted by kill -9 of its receiver resumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;

const KEYS: usize = 10_000;

async fn load(c: &Cluster, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let r = c
                .put(1 + i % 3, &format!("k{i}"), &format!("v{i}"), "w=2", None)
                .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

/// Every key readable at R=all through `via`, with its value.
async fn all_readable(c: &Cluster, via: usize, expected: &BTreeMap<String, String>) {
    let failures: Vec<String> = futures::stream::iter(expected.iter())
        .map(|(k, v)| async move {
            let g = c.get(via, k, "r=all").await;
            (g.status == StatusCode::OK && g.text() == *v)
                .then_some(())
                .map_or(Some(format!("{k}: {} {}", g.status, g.text())), |_| None)
        })
        .buffer_unordered(32)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} keys not readable at r=all, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}

/// Writes read-modify-write versions of a few keys until `stop`, recording
/// every acknowledged value (the last acked value of each key must survive).
async fn traffic(
    c: Arc<Cluster>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeMap<String, String>>>,
) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("live-{}", i % 50);
        let via = 1 + (i as usize % 3);
        let g = c.get(via, &key, "r=2").await;
        let value = format!("w{i}");
        let w = c.put(via, &key, &value, "w=2", g.context.as_deref()).await;
        if w.status == StatusCode::NO_CONTENT {
            acked.lock().await.insert(key, value);
        }
        i += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_under_load_then_one_leaves_and_nothing_is_lost() {
    let opts = ClusterOptions::default()
        .set("DYNKV__MEMBERSHIP__GOSSIP_INTERVAL_MS", "200")
        .set("DYNKV__MEMBERSHIP__CLEANUP_GRACE_MS", "1000");
    let mut c = Cluster::start(3, opts).await;
    load(&c, KEYS).await;
    let mut expected: BTreeMap<String, String> = (0..KEYS)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();

    let n4 = c.start_joiner().await;
    let c = Arc::new(c);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let load_task = tokio::spawn(traffic(c.clone(), stop.clone(), acked.clone()));

    let seed = c.node(1).cluster_addr();
    let (s, v) = c.admin(n4, "join", json!({ "seed": seed })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, plan) = c.admin(1, "plan", json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{plan}");
    assert_eq!(
        plan["partitions_moving"], 16,
        "a join moves only the new node's share: {plan}"
    );
    let (s, v) = c.admin(1, "commit", json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        c.wait_transition_done(1, Duration::from_secs(60)).await,
        "handoff did not finish"
    );
    stop.store(true, Ordering::Relaxed);
    load_task.await.unwrap();

    let (_, members) = c.admin(n4, "members", json!(null)).await;
    let me = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "n4")
        .unwrap()
        .clone();
    assert_eq!(me["status"], "valid");
    assert_eq!(me["partitions_owned"], 16);
    expected.extend(acked.lock().await.clone());
    all_readable(&c, n4, &expected).await;
    // The new node holds its share itself.
    let held = futures::stream::iter((0..KEYS).step_by(97))
        .map(|i| {
            let c = c.clone();
            async move { c.local(4, &format!("k{i}")).await["found"] == true }
        })
        .buffer_unordered(16)
        .filter(|f| {
            let f = *f;
            async move { f }
        })
        .count()
        .await;
    let sampled = KEYS.div_ceil(97);
    assert!(
        held * 4 >= sampled * 2,
        "n4 holds only {held} of {sampled} sampled keys (expected about 3/4)"
    );

    // n2 leaves; the same must hold on the three that stay.
    let (s, v) = c.admin(1, "leave", json!({ "node": "n2" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = c.admin(1, "commit", json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        c.wait_transition_done(1, Duration::from_secs(60)).await,
        "leave handoff did not finish"
    );
    let (_, members) = c.admin(1, "members", json!(null)).await;
    let ids: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["n1", "n3", "n4"]);
    all_readable(&c, 3, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_interrupted_by_kill_9_of_the_receiver_resumes() {
    let opts = ClusterOptions::default()
        .set("DYNKV__MEMBERSHIP__GOSSIP_INTERVAL_MS", "200")
        .set("DYNKV__MEMBERSHIP__TRANSFER_BATCH", "20")
        .set("DYNKV__MEMBERSHIP__TRANSFER_PAUSE_MS", "40")
        .set("DYNKV__MEMBERSHIP__TRANSFER_CONCURRENCY", "1")
        .set("DYNKV__ANTIENTROPY__ENABLED", "false");
    let mut c = Cluster::start(3, opts).await;
    load(&c, 4000).await;
    let expected: BTreeMap<String, String> = (0..4000)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let n4 = c.start_joiner().await;
    let seed = c.node(1).cluster_addr();
    assert_eq!(
        c.admin(n4, "join", json!({ "seed": seed })).await.0,
        StatusCode::OK
    );
    assert_eq!(c.admin(1, "commit", json!(null)).await.0, StatusCode::OK);
    // Wait until the transfer is under way but far from done.
    let started = poll(Duration::from_secs(30), || async {
        let (_, v) = c.admin(1, "members", json!(null)).await;
        let t = &v["transition"];
        t["transfers_pending"]
            .as_u64()
            .is_some_and(|p| p + 3 <= t["transfers_total"].as_u64().unwrap_or(0))
    })
    .await;
    assert!(started, "the handoff never started");
    c.kill(n4);
    let (_, v) = c.admin(1, "members", json!(null)).await;
    assert!(
        !v["transition"].is_null(),
        "the handoff finished before the kill; slow it down"
    );
    c.restart(n4).await;
    assert!(
        c.wait_transition_done(1, Duration::from_secs(90)).await,
        "handoff did not resume to completion"
    );
    all_readable(&c, n4, &expected).await;
}
