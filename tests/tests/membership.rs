//! Live membership across real processes: a node joins a loaded cluster
//! under traffic and later leaves, with ownership handoff and nothing lost;
//! a handoff interrupted by kill -9 of its receiver, or of its source,
//! resumes; two commits at once leave one agreed ring; a node that was down
//! through a change comes back and adopts the new ring.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, member_ids, poll};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;

const KEYS: usize = 10_000;

async fn load(c: &Cluster, n: usize) {
    load_keys(c, "k", n, &[1, 2, 3]).await;
}

/// Writes `{prefix}{i}` = `v{i}` for `i < n` at W=2, through `via` in
/// turn, each acknowledged; returns what was written.
async fn load_keys(c: &Cluster, prefix: &str, n: usize, via: &[usize]) -> BTreeMap<String, String> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let r = c
                .put(
                    via[i % via.len()],
                    &format!("{prefix}{i}"),
                    &format!("v{i}"),
                    "w=2",
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    (0..n)
        .map(|i| (format!("{prefix}{i}"), format!("v{i}")))
        .collect()
}

/// Gossip every 200 ms and a 1 s cleanup grace: changes spread and settle
/// quickly.
fn quick_gossip() -> ClusterOptions {
    ClusterOptions::default()
        .set("DYNKV__MEMBERSHIP__GOSSIP_INTERVAL_MS", "200")
        .set("DYNKV__MEMBERSHIP__CLEANUP_GRACE_MS", "1000")
}

/// Settings that make a handoff slow enough (small paced batches, one
/// transfer at a time per node) to be caught under way.
fn slow_handoff() -> ClusterOptions {
    ClusterOptions::default()
        .set("DYNKV__MEMBERSHIP__GOSSIP_INTERVAL_MS", "200")
        .set("DYNKV__MEMBERSHIP__TRANSFER_BATCH", "20")
        .set("DYNKV__MEMBERSHIP__TRANSFER_PAUSE_MS", "40")
        .set("DYNKV__MEMBERSHIP__TRANSFER_CONCURRENCY", "1")
        .set("DYNKV__ANTIENTROPY__ENABLED", "false")
}

/// Starts a new node and stages its join through n1; returns its number.
async fn start_and_stage_a_joiner(c: &mut Cluster) -> usize {
    let n = c.start_joiner().await;
    let seed = c.node(1).cluster_addr();
    let (s, v) = c.admin(n, "join", json!({ "seed": seed })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    n
}

/// Waits until node `i` reports a transition with at least `started`
/// transfers done and at least `left` still pending.
async fn wait_handoff_under_way(c: &Cluster, i: usize, started: u64, left: u64) -> bool {
    poll(Duration::from_secs(30), || async {
        let (_, v) = c.admin(i, "members", json!(null)).await;
        let t = &v["transition"];
        match (
            t["transfers_pending"].as_u64(),
            t["transfers_total"].as_u64(),
        ) {
            (Some(pending), Some(total)) => pending + started <= total && pending >= left,
            _ => false,
        }
    })
    .await
}

/// Waits until every one of `nodes` reports no change in progress.
async fn wait_all_transitions_done(c: &Cluster, nodes: &[usize], limit: Duration) {
    for &i in nodes {
        assert!(
            c.wait_transition_done(i, limit).await,
            "n{i} still reports a membership change in progress: {}",
            c.admin(i, "members", json!(null)).await.1
        );
    }
}

/// The status of member `id` in a ring summary or members view, if listed.
fn status_of(view: &serde_json::Value, id: &str) -> Option<String> {
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == id)
        .and_then(|m| m["status"].as_str().map(str::to_string))
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
    let mut c = Cluster::start(3, quick_gossip()).await;
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
    let mut c = Cluster::start(3, slow_handoff()).await;
    load(&c, 4000).await;
    let expected: BTreeMap<String, String> = (0..4000)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    let n4 = start_and_stage_a_joiner(&mut c).await;
    assert_eq!(c.admin(1, "commit", json!(null)).await.0, StatusCode::OK);
    // Wait until the transfer is under way but far from done.
    assert!(
        wait_handoff_under_way(&c, 1, 3, 0).await,
        "the handoff never started"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_interrupted_by_kill_9_of_the_leaving_source_resumes_after_its_restart() {
    // Four nodes, so that n2's leave moves data (with three, every node
    // already replicates every partition).
    let mut c = Cluster::start(4, slow_handoff()).await;
    let expected = load_keys(&c, "k", 3000, &[1, 2, 3, 4]).await;

    let (s, v) = c.admin(1, "leave", json!({ "node": "n2" })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = c.admin(1, "commit", json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The leaver is the preferred source of its partitions: kill it once
    // it has handed some off and many remain.
    assert!(
        wait_handoff_under_way(&c, 1, 3, 10).await,
        "the handoff never got under way: {}",
        c.admin(1, "members", json!(null)).await.1
    );
    c.kill(2);
    let (_, v) = c.admin(1, "members", json!(null)).await;
    assert!(
        !v["transition"].is_null(),
        "the handoff finished before the kill; slow it down: {v}"
    );
    c.restart(2).await;

    wait_all_transitions_done(&c, &[1, 3, 4], Duration::from_secs(90)).await;
    let agreed = c
        .wait_ring_agreed(&[1, 3, 4], Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(member_ids(&agreed), ["n1", "n3", "n4"], "{agreed}");
    for id in ["n1", "n3", "n4"] {
        assert_eq!(status_of(&agreed, id).as_deref(), Some("valid"), "{agreed}");
    }
    // The restarted leaver learns the outcome too: it is a member nowhere.
    let n2_out = poll(Duration::from_secs(30), || async {
        let (_, v) = c.admin(2, "members", json!(null)).await;
        !member_ids(&v).iter().any(|m| m == "n2")
    })
    .await;
    assert!(
        n2_out,
        "n2 still lists itself as a member: {}",
        c.admin(2, "members", json!(null)).await.1
    );
    all_readable(&c, 3, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_commits_at_once_leave_one_agreed_ring() {
    let mut c = Cluster::start(3, quick_gossip()).await;
    let expected = load_keys(&c, "k", 2000, &[1, 2, 3]).await;

    let n4 = start_and_stage_a_joiner(&mut c).await;
    // Both committers know the staged join, so both have something to commit.
    let staged = poll(Duration::from_secs(20), || async {
        let (_, v) = c.admin(2, "members", json!(null)).await;
        status_of(&v, "n4").is_some()
    })
    .await;
    assert!(staged, "n2 never learned the staged join");

    let (a, b) = tokio::join!(
        c.admin(1, "commit", json!(null)),
        c.admin(2, "commit", json!(null))
    );
    let replies = [("n1", a), ("n2", b)];
    for (node, (status, body)) in &replies {
        if *status != StatusCode::OK {
            assert_eq!(
                *status,
                StatusCode::CONFLICT,
                "commit on {node}: neither accepted nor refused: {body}"
            );
            assert!(
                body["error"].is_string() && body["code"].is_string(),
                "commit on {node} refused without an error JSON: {body}"
            );
        }
    }
    let accepted: Vec<&serde_json::Value> = replies
        .iter()
        .filter(|(_, (s, _))| *s == StatusCode::OK)
        .map(|(_, (_, body))| body)
        .collect();
    // The claimant makes every change: one commit wins, the other is
    // refused because a change is then in progress.
    assert_eq!(
        accepted.len(),
        1,
        "exactly one commit must be accepted: {replies:?}"
    );
    assert!(
        replies
            .iter()
            .any(|(_, (s, body))| *s == StatusCode::CONFLICT
                && body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("in progress"))),
        "the other commit is refused as a change in progress: {replies:?}"
    );
    // Each accepted commit names the ring it moves to.
    let target = |v: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        v["members"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap_or_default().to_string(),
                    m["partitions_owned_next"].clone(),
                )
            })
            .collect()
    };
    if let [first, second] = accepted[..] {
        assert_eq!(
            target(first),
            target(second),
            "both commits were accepted, for different transitions"
        );
    }

    wait_all_transitions_done(&c, &[1, 2, 3, n4], Duration::from_secs(60)).await;
    let agreed = c
        .wait_ring_agreed(&[1, 2, 3, n4], Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(member_ids(&agreed), ["n1", "n2", "n3", "n4"], "{agreed}");
    // The ring every node ended on is the one the commit announced.
    for m in agreed["members"].as_array().unwrap() {
        assert_eq!(m["status"], "valid", "{agreed}");
        let announced = target(accepted[0])
            .into_iter()
            .find(|(id, _)| m["id"] == id.as_str())
            .map(|(_, owned)| owned);
        assert_eq!(
            Some(&m["partitions_owned"]),
            announced.as_ref(),
            "the ring differs from the committed plan: {agreed}"
        );
    }
    all_readable(&c, n4, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_through_a_change_adopts_the_new_ring_when_it_returns() {
    let mut c = Cluster::start(3, quick_gossip()).await;
    let mut expected = load_keys(&c, "k", 2000, &[1, 2, 3]).await;
    let (_, old_view) = c.admin(3, "members", json!(null)).await;

    c.kill(3);
    let n4 = start_and_stage_a_joiner(&mut c).await;
    let (s, v) = c.admin(1, "commit", json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // n3 being down must not hold the change up: its partitions have other
    // replicas to stream from.
    wait_all_transitions_done(&c, &[1, 2, n4], Duration::from_secs(60)).await;
    let agreed = c
        .wait_ring_agreed(&[1, 2, n4], Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(member_ids(&agreed), ["n1", "n2", "n3", "n4"], "{agreed}");
    assert_eq!(
        status_of(&agreed, "n4").as_deref(),
        Some("valid"),
        "{agreed}"
    );
    assert_ne!(
        dynkv_tests::ring_summary(&old_view),
        agreed,
        "the change did not change the ring"
    );
    expected.extend(load_keys(&c, "after-", 1000, &[1, 2, n4]).await);

    // n3 comes back with the state it had on disk.
    c.restart(3).await;
    let all = [1, 2, 3, n4];
    let rejoined = c
        .wait_ring_agreed(&all, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("n3 did not adopt the new ring: {e}"));
    // Nobody went back to n3's old view: the ring is the one the change
    // made, at a version no older.
    assert_eq!(rejoined["members"], agreed["members"], "{rejoined}");
    assert!(
        rejoined["version"].as_u64() >= agreed["version"].as_u64(),
        "the version went back: {} then {}",
        agreed["version"],
        rejoined["version"]
    );
    all_readable(&c, 1, &expected).await;
}

/// `dynkv admin transfers` names every transfer of a change and what it
/// waits on; a transfer limit of 0, set at run time, holds every stream
/// until it is raised; once the change is done, every node cleans up and
/// the ring is reported settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfers_view_names_what_moves_and_a_zero_limit_holds_it() {
    let mut c = Cluster::start(3, slow_handoff()).await;
    let expected = load_keys(&c, "k", 2000, &[1, 2, 3]).await;
    for i in 1..=3 {
        let (s, v) = c.admin(i, "transfer-limit", json!({ "limit": 0 })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["transfer_limit"], 0);
    }
    let (s, v) = c.admin(1, "transfer-limit", json!({ "limit": 1000 })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["code"], "bad_body", "{v}");
    assert!(v["error"].is_string(), "{v}");

    let n4 = start_and_stage_a_joiner(&mut c).await;
    let (s, v) = c.admin(1, "commit", json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let in_progress = poll(Duration::from_secs(10), || async {
        c.admin(1, "transfers", json!(null)).await.1["in_progress"] == true
    })
    .await;
    assert!(in_progress, "the change never showed in /admin/transfers");

    // Every limit is 0: nothing streams, and the view says why.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (s, v) = c.admin(1, "transfers", json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let rows = v["transfers"].as_array().expect("transfers").clone();
    assert!(!rows.is_empty(), "{v}");
    assert_eq!(v["transfers_pending"], v["transfers_total"], "{v}");
    for t in &rows {
        assert_eq!(t["target"], "n4", "{t}");
        assert_eq!(t["complete"], false, "{t}");
        assert_eq!(t["streamed_by"], json!([]), "{t}");
        assert_eq!(t["sources"].as_array().map(Vec::len), Some(3), "{t}");
        assert_eq!(t["blocker"], "waiting for a transfer slot here", "{t}");
    }

    // Raised again, the streams run to the end and every node cleans up.
    for i in 1..=3 {
        assert_eq!(
            c.admin(i, "transfer-limit", json!({ "limit": 2 })).await.0,
            StatusCode::OK
        );
    }
    wait_all_transitions_done(&c, &[1, 2, 3, n4], Duration::from_secs(90)).await;
    let settled = poll(Duration::from_secs(30), || async {
        let mut all = true;
        for i in [1, 2, 3, n4] {
            all &= c.admin(i, "transfers", json!(null)).await.1["cleanup"]["settled"] == true;
        }
        all
    })
    .await;
    assert!(
        settled,
        "the cleanup after the change never settled: {}",
        c.admin(1, "transfers", json!(null)).await.1
    );
    all_readable(&c, n4, &expected).await;
}
