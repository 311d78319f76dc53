//! Healing across real processes: sloppy quorum with hinted handoff, read
//! repair, and Merkle-tree anti-entropy.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};

/// No background healing except what a test turns on.
fn quiet() -> ClusterOptions {
    ClusterOptions::default()
        .set("DYNKV__ANTIENTROPY__ENABLED", "false")
        .set("DYNKV__READ_REPAIR__ENABLED", "false")
}

async fn hints_on(c: &Cluster, i: usize) -> u64 {
    c.metric(i, "dynkv_hints_pending", "").await as u64
}

#[tokio::test]
async fn sloppy_write_lands_on_a_fallback_and_is_handed_off_when_the_primary_returns() {
    let mut c = Cluster::start(4, quiet()).await;
    let key = c.find_key("sloppy", |p, _| p[0] == 1).await;
    let (primaries, fallbacks) = c.placement(1, &key).await;
    let down = primaries[2];
    let fallback = fallbacks[0];
    c.kill(down);

    let strict = c
        .put(1, &key, "strict", "w=3&sloppy=false&timeout_ms=1500", None)
        .await;
    assert_eq!(
        strict.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        strict.text()
    );
    assert_eq!(strict.json()["code"], "quorum_not_met");
    let sloppy = c.put(1, &key, "sloppy", "w=3", None).await;
    assert!(sloppy.status.is_success(), "{}", sloppy.text());
    let local = c.local(fallback, &key).await;
    let hint = &local["hints"][0];
    assert_eq!(hint["owner"], format!("n{down}"), "{local}");
    assert!(
        local["found"] == false,
        "a fallback keeps hints apart from its own data"
    );

    c.restart(down).await;
    let delivered = poll(Duration::from_secs(15), || async {
        c.local_values(down, &key)
            .await
            .contains(&"sloppy".to_string())
            && c.local(fallback, &key).await["hints"]
                .as_array()
                .is_some_and(|h| h.is_empty())
    })
    .await;
    assert!(
        delivered,
        "primary n{down} did not get the hinted write; fallback: {}",
        c.local(fallback, &key).await
    );
    assert!(c.metric(fallback, "dynkv_hints_delivered_total", "").await >= 1.0);
    assert_eq!(hints_on(&c, fallback).await, 0);
}

#[tokio::test]
async fn hints_survive_a_restart_of_the_fallback() {
    let mut c = Cluster::start(4, quiet()).await;
    let key = c.find_key("durable", |p, _| p[0] == 1).await;
    let (primaries, fallbacks) = c.placement(1, &key).await;
    let (down, fallback) = (primaries[1], fallbacks[0]);
    c.kill(down);
    let w = c.put(1, &key, "kept", "w=3", None).await;
    assert_eq!(w.status, StatusCode::NO_CONTENT, "{}", w.text());
    assert_eq!(
        c.local(fallback, &key).await["hints"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The fallback crashes before it could hand off.
    c.kill(fallback);
    c.restart(fallback).await;
    assert_eq!(
        c.local(fallback, &key).await["hints"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "hint lost in the crash"
    );
    c.restart(down).await;
    let delivered = poll(Duration::from_secs(15), || async {
        c.local_values(down, &key).await == vec!["kept".to_string()]
    })
    .await;
    assert!(
        delivered,
        "hint was not handed off after the fallback restarted"
    );
}

#[tokio::test]
async fn read_repair_heals_a_stale_replica() {
    let mut c = Cluster::start(
        3,
        ClusterOptions::default()
            .set("DYNKV__ANTIENTROPY__ENABLED", "false")
            .set("DYNKV__HANDOFF__ENABLED", "false"),
    )
    .await;
    let v1 = c.put(1, "fruit", "v1", "w=all", None).await;
    c.stop(3);
    let w = c.put(1, "fruit", "v2", "w=2", v1.context.as_deref()).await;
    assert_eq!(w.status, StatusCode::NO_CONTENT);
    c.restart(3).await;
    c.wait_sees_all_up(1).await;
    assert_eq!(c.local_values(3, "fruit").await, vec!["v1"], "n3 is stale");
    let before = c.metric(1, "dynkv_read_repairs_total", "repaired").await;
    let g = c.get(1, "fruit", "r=all").await;
    assert_eq!(g.text(), "v2");
    let healed = poll(Duration::from_secs(10), || async {
        c.local_values(3, "fruit").await == vec!["v2".to_string()]
    })
    .await;
    assert!(healed, "n3 was not repaired: {}", c.local(3, "fruit").await);
    assert!(c.metric(1, "dynkv_read_repairs_total", "repaired").await > before);
}

#[tokio::test]
async fn siblings_on_different_replicas_are_repaired_as_a_full_set() {
    let mut c = Cluster::start(
        3,
        ClusterOptions::default()
            .set("DYNKV__ANTIENTROPY__ENABLED", "false")
            .set("DYNKV__HANDOFF__ENABLED", "false"),
    )
    .await;
    // "a" reaches only n1; "b" reaches only n2 and n3. A coordinator keeps
    // trying a replica that did not answer until the request deadline
    // (2 s in test clusters), so a killed node is restarted only after it:
    // sooner, the write would still reach it.
    let past_deadline = Duration::from_millis(2500);
    c.kill(2);
    c.kill(3);
    assert!(c.put(1, "pair", "a", "w=1", None).await.status.is_success());
    tokio::time::sleep(past_deadline).await;
    c.restart(2).await;
    c.restart(3).await;
    c.kill(1);
    let b = c.put(2, "pair", "b", "w=2", None).await;
    assert!(b.status.is_success(), "{}", b.text());
    tokio::time::sleep(past_deadline).await;
    c.restart(1).await;
    c.wait_sees_all_up(1).await;
    assert_eq!(c.local_values(1, "pair").await, vec!["a"]);
    assert_eq!(c.local_values(3, "pair").await, vec!["b"]);
    let g = c.get(1, "pair", "r=all").await;
    assert_eq!(g.status, StatusCode::MULTIPLE_CHOICES, "{}", g.text());
    assert_eq!(g.values(), vec!["a", "b"]);
    for i in 1..=3 {
        let full = poll(Duration::from_secs(10), || async {
            c.local_values(i, "pair").await == vec!["a".to_string(), "b".to_string()]
        })
        .await;
        assert!(
            full,
            "n{i} not repaired to both siblings: {}",
            c.local(i, "pair").await
        );
    }
}

#[tokio::test]
async fn anti_entropy_repairs_exactly_what_a_replica_missed() {
    let mut c = Cluster::start(
        3,
        ClusterOptions::default()
            .set("DYNKV__READ_REPAIR__ENABLED", "false")
            .set("DYNKV__HANDOFF__ENABLED", "false")
            .set("DYNKV__ANTIENTROPY__EXCHANGE_INTERVAL_MS", "20")
            .set("DYNKV__ANTIENTROPY__CONCURRENCY", "4")
            .set("DYNKV__ANTIENTROPY__BATCH_PAUSE_MS", "0"),
    )
    .await;
    c.stop(3);
    let writes = (0..1000).map(|i| {
        let c = &c;
        async move {
            let r = c
                .put(
                    1 + i % 2,
                    &format!("aae-{i}"),
                    &format!("v{i}"),
                    "w=2",
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        }
    });
    futures_join(writes, 16).await;
    c.restart(3).await;
    // Read nothing; wait for anti-entropy to bring n3 up to date.
    let repaired = poll(Duration::from_secs(60), || async {
        c.metric(3, "dynkv_aae_keys_repaired_total", "").await >= 1000.0
    })
    .await;
    assert!(
        repaired,
        "n3 repaired only {} keys",
        c.metric(3, "dynkv_aae_keys_repaired_total", "").await
    );
    for i in (0..1000).step_by(37) {
        let key = format!("aae-{i}");
        assert_eq!(
            c.local_values(3, &key).await,
            vec![format!("v{i}")],
            "{key}"
        );
    }
    for i in 1..=3 {
        let total: f64 = c.metric(i, "dynkv_aae_keys_repaired_total", "").await;
        assert_eq!(total, if i == 3 { 1000.0 } else { 0.0 }, "n{i}");
    }
    // Later exchanges find nothing more to repair.
    let done = c.metric(3, "dynkv_aae_exchanges_total", "ok").await;
    let more = poll(Duration::from_secs(30), || async {
        c.metric(3, "dynkv_aae_exchanges_total", "ok").await >= done + 200.0
    })
    .await;
    assert!(more, "exchanges stopped");
    assert_eq!(
        c.metric(3, "dynkv_aae_keys_repaired_total", "").await,
        1000.0
    );
    let view: serde_json::Value = serde_json::from_slice(
        &c.http
            .get(format!("{}/admin/aae", c.url(3)))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(view["keys_repaired"], 1000);
}

/// Runs futures with at most `limit` in flight.
async fn futures_join<F: std::future::Future<Output = ()>>(
    futs: impl Iterator<Item = F>,
    limit: usize,
) {
    use futures::StreamExt;
    futures::stream::iter(futs)
        .buffer_unordered(limit)
        .collect::<Vec<()>>()
        .await;
}

/// A fallback whose hints would pass `handoff.max_hint_bytes` refuses them:
/// the sloppy write then counts that copy as failed, so it still succeeds
/// when W is met without it and fails when W needed it, and the refusal is
/// counted by reason.
#[tokio::test]
async fn a_fallback_past_its_hint_byte_bound_refuses_hints_and_w_decides() {
    let mut c = Cluster::start(4, quiet().set("DYNKV__HANDOFF__MAX_HINT_BYTES", 64)).await;
    let key = c.find_key("hint-bytes", |p, _| p[0] == 1).await;
    let (primaries, fallbacks) = c.placement(1, &key).await;
    let (down, fallback) = (primaries[2], fallbacks[0]);
    c.kill(down);
    async fn refused(c: &Cluster, i: usize) -> f64 {
        c.metric(i, "dynkv_hints_refused_total", "reason=\"bytes\"")
            .await
    }

    // W=3 needs the hinted copy, which the fallback refuses: 503.
    let value = "v".repeat(100);
    let all = c.put(1, &key, &value, "w=3&timeout_ms=1500", None).await;
    assert_eq!(
        all.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        all.text()
    );
    assert_eq!(all.json()["code"], "quorum_not_met");
    // The two live primaries at most (fewer if one was slow under load).
    assert_eq!(all.json()["needed"], 3, "{}", all.text());
    assert!(all.json()["acked"].as_u64() <= Some(2), "{}", all.text());
    assert!(
        all.text().contains("bytes of hints"),
        "the answer names the byte bound: {}",
        all.text()
    );
    assert_eq!(refused(&c, fallback).await, 1.0);

    // W=2 is met by the two live primaries; the refused hint does not matter.
    let two = c.put(1, &key, &value, "w=2", all.context.as_deref()).await;
    assert!(two.status.is_success(), "{}", two.text());
    let counted = poll(Duration::from_secs(5), || async {
        refused(&c, fallback).await == 2.0
    })
    .await;
    assert!(counted, "refusals counted: {}", refused(&c, fallback).await);
    assert_eq!(
        c.metric(fallback, "dynkv_hints_refused_total", "reason=\"count\"")
            .await,
        0.0
    );
    assert_eq!(
        c.metric(fallback, "dynkv_hints_dropped_total", "").await,
        2.0
    );
    assert_eq!(c.metric(fallback, "dynkv_hint_bytes", "").await, 0.0);
    assert_eq!(hints_on(&c, fallback).await, 0);
    let local = c.local(fallback, &key).await;
    assert!(
        local["hints"].as_array().is_some_and(|h| h.is_empty()),
        "{local}"
    );
}

/// The periodic WAL sync is on by default and shows in the metrics.
#[tokio::test]
async fn the_wal_is_synced_periodically_by_default() {
    let c = Cluster::start(1, ClusterOptions::default().set("DYNKV__CLUSTER__N_VAL", 1)).await;
    assert!(c.put(1, "k", "v", "", None).await.status.is_success());
    let synced = poll(Duration::from_secs(10), || async {
        c.metric(1, "dynkv_wal_syncs_total", "outcome=\"ok\"").await >= 2.0
    })
    .await;
    assert!(synced, "no periodic WAL sync");
    assert_eq!(
        c.metric(1, "dynkv_wal_syncs_total", "outcome=\"failed\"")
            .await,
        0.0
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = c
        .metric(1, "dynkv_wal_last_sync_timestamp_seconds", "")
        .await;
    assert!((now - last).abs() < 10.0, "last sync at {last}, now {now}");
}

/// What a power cut leaves of 40 writes acknowledged by a lone node, after
/// waiting `wait` (the node runs under the fault layer, which drops every
/// byte not fsynced).
async fn survivors_of_a_power_cut(sync_interval_ms: u64, wait: Duration) -> usize {
    let mut c = Cluster::start(
        1,
        ClusterOptions::default()
            .with_fault_layer()
            .set("DYNKV__CLUSTER__N_VAL", 1)
            .set("DYNKV__STORAGE__SYNC_INTERVAL_MS", sync_interval_ms),
    )
    .await;
    for i in 0..40 {
        let r = c.put(1, &format!("k{i}"), &format!("v{i}"), "", None).await;
        assert!(r.status.is_success(), "{}", r.text());
    }
    tokio::time::sleep(wait).await;
    let report = c.power_cut(1).await;
    let mut kept = 0;
    for i in 0..40 {
        let r = c.get(1, &format!("k{i}"), "r=1").await;
        match r.status.as_u16() {
            200 => {
                assert_eq!(r.text(), format!("v{i}"));
                kept += 1;
            }
            404 => {}
            s => panic!("k{i}: {s} {}", r.text()),
        }
    }
    println!(
        "sync_interval_ms={sync_interval_ms}: kept {kept} of 40; {}",
        report.summary()
    );
    kept
}

/// With the periodic WAL sync, a power cut loses nothing acknowledged more
/// than an interval (plus one fsync) before it; with it off, the same
/// writes are lost (which shows the cut really drops what was not synced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_wal_sync_bounds_what_a_power_cut_loses() {
    let wait = Duration::from_millis(1000);
    assert_eq!(survivors_of_a_power_cut(100, wait).await, 40);
    assert!(survivors_of_a_power_cut(0, wait).await < 40);
}
