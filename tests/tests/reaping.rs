//! Tombstone reaping across real processes (`crates/quorum/src/reaper.rs`
//! has the safety argument): deleted keys leave every replica after the
//! grace, nothing is reaped while a primary is down or a hint for the key
//! is pending, a deleted value never comes back from a replica that was
//! away, and writes after reaping are never lost.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};

/// A short grace, frequent passes, a short settle.
fn reaping() -> ClusterOptions {
    ClusterOptions::default()
        .set("DYNKV__STORAGE__TOMBSTONE_GRACE_MS", "1500")
        .set("DYNKV__STORAGE__REAP_INTERVAL_MS", "300")
        .set("DYNKV__STORAGE__REAP_SETTLE_MS", "400")
        .set("DYNKV__ANTIENTROPY__EXCHANGE_INTERVAL_MS", "300")
}

/// Whether node `i` stores anything for `key` (its own replica).
async fn stored(c: &Cluster, i: usize, key: &str) -> bool {
    c.local(i, key).await["found"] == true
}

async fn hinted(c: &Cluster, i: usize, key: &str) -> bool {
    c.local(i, key).await["hints"]
        .as_array()
        .is_some_and(|h| !h.is_empty())
}

/// Every running node in `nodes` has dropped `key` (no object, no hint).
async fn gone_from(c: &Cluster, nodes: &[usize], key: &str) -> bool {
    for &i in nodes {
        if stored(c, i, key).await || hinted(c, i, key).await {
            return false;
        }
    }
    true
}

/// Writes `value` at w=all and deletes it with the context of an r=all
/// read, at w=`w`.
async fn write_then_delete(c: &Cluster, key: &str, value: &str, w: &str) {
    let put = c.put(1, key, value, "w=all", None).await;
    assert!(put.status.is_success(), "{}", put.text());
    let read = c.get(2, key, "r=all").await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    let del = c
        .delete(
            2,
            key,
            &format!("w={w}&sloppy=false"),
            read.context.as_deref(),
        )
        .await;
    assert!(del.status.is_success(), "{}", del.text());
}

async fn reaped_total(c: &Cluster, nodes: &[usize]) -> f64 {
    let mut sum = 0.0;
    for &i in nodes {
        sum += c.metric(i, "dynkv_tombstones_reaped_total", "").await;
    }
    sum
}

async fn skipped(c: &Cluster, nodes: &[usize], reason: &str) -> f64 {
    let mut sum = 0.0;
    for &i in nodes {
        sum += c
            .metric(
                i,
                "dynkv_reap_skipped_total",
                &format!("reason=\"{reason}\""),
            )
            .await;
    }
    sum
}

#[tokio::test]
async fn deleted_keys_leave_every_replica_after_the_grace_and_later_writes_are_kept() {
    let c = Cluster::start(3, reaping()).await;
    let keys: Vec<String> = (0..12).map(|i| format!("doomed-{i}")).collect();
    for k in &keys {
        write_then_delete(&c, k, "v", "all").await;
        // Within the grace every replica keeps the tombstone.
        for i in 1..=3 {
            let l = c.local(i, k).await;
            assert_eq!(l["found"], true, "n{i} dropped {k} within the grace: {l}");
            assert!(dynkv_tests::sibling_values(&l).is_empty(), "{l}");
        }
    }
    let all_gone = poll(Duration::from_secs(30), || async {
        for k in &keys {
            if !gone_from(&c, &[1, 2, 3], k).await {
                return false;
            }
        }
        true
    })
    .await;
    assert!(
        all_gone,
        "tombstones still stored; n1 reaper: {}",
        c.http
            .get(format!("{}/admin/reaper", c.url(1)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    );
    assert_eq!(reaped_total(&c, &[1, 2, 3]).await, 3.0 * keys.len() as f64);
    let view: serde_json::Value = c
        .http
        .get(format!("{}/admin/reaper", c.url(1)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["enabled"], true, "{view}");
    assert!(view["passes"].as_u64().unwrap() > 0, "{view}");
    // Compaction is an admin command: refused without the token.
    let r = c
        .http
        .post(format!("{}/admin/compact", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A reaped key reads as never written: 404 with an empty context.
    for i in 1..=3 {
        let r = c.get(i, &keys[0], "r=all").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    }

    // Blind writes through every node after reaping: each is numbered
    // above the tombstone's dots, so every one is kept.
    let key = &keys[1];
    for i in 1..=3 {
        let w = c.put(i, key, &format!("after-{i}"), "w=all", None).await;
        assert!(w.status.is_success(), "n{i}: {}", w.text());
    }
    let expected = vec!["after-1", "after-2", "after-3"];
    for i in 1..=3 {
        assert_eq!(
            c.get(i, key, "r=all").await.values(),
            expected,
            "through n{i}"
        );
    }
    // Anti-entropy and the reaper keep running: nothing is lost later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for i in 1..=3 {
        assert_eq!(
            c.get(i, key, "r=all").await.values(),
            expected,
            "through n{i}"
        );
        assert_eq!(c.local_values(i, key).await, expected, "on n{i}");
    }
    // The other reaped keys stay gone.
    for k in &keys[2..] {
        assert!(gone_from(&c, &[1, 2, 3], k).await, "{k} came back");
    }
}

#[tokio::test]
async fn a_deleted_value_never_comes_back_from_a_primary_that_was_away() {
    let mut c = Cluster::start(3, reaping()).await;
    // N=3 on three nodes: every node is a primary of every key.
    let key = "away";
    let put = c.put(1, key, "old", "w=all", None).await;
    assert!(put.status.is_success(), "{}", put.text());
    c.kill(3);
    let read = c.get(1, key, "r=2").await;
    let del = c
        .delete(1, key, "w=2&sloppy=false", read.context.as_deref())
        .await;
    assert!(del.status.is_success(), "{}", del.text());
    // Well past the grace and the settle: not reaped, n3 is down.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(stored(&c, 1, key).await && stored(&c, 2, key).await);
    assert!(skipped(&c, &[1, 2], "primary_down").await >= 1.0);
    assert_eq!(reaped_total(&c, &[1, 2]).await, 0.0);

    // n3 returns holding the old value: anti-entropy gives it the
    // tombstone, then the key is reaped everywhere.
    c.restart(3).await;
    let gone = poll(Duration::from_secs(30), || async {
        gone_from(&c, &[1, 2, 3], key).await
    })
    .await;
    assert!(gone, "n3: {}", c.local(3, key).await);
    // And the old value is nowhere, now or after more anti-entropy rounds.
    for _ in 0..3 {
        for i in 1..=3 {
            let r = c.get(i, key, "r=all").await;
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "through n{i}: {}",
                r.text()
            );
            assert!(!stored(&c, i, key).await, "n{i} holds the key again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_key_with_a_pending_hint_is_not_reaped() {
    // Four nodes so that a fallback exists; handoff off so the hint stays.
    let mut c = Cluster::start(4, reaping().set("DYNKV__HANDOFF__ENABLED", "false")).await;
    let key = c.find_key("hint", |p, _| p[0] == 1).await;
    let (primaries, fallbacks) = c.placement(1, &key).await;
    let (away, fallback) = (primaries[2], fallbacks[0]);
    let put = c.put(1, &key, "old", "w=all", None).await;
    assert!(put.status.is_success(), "{}", put.text());
    c.kill(away);
    // The delete reaches the away primary only as a hint on the fallback.
    let read = c.get(1, &key, "r=2").await;
    let del = c.delete(1, &key, "w=3", read.context.as_deref()).await;
    assert!(del.status.is_success(), "{}", del.text());
    assert!(
        hinted(&c, fallback, &key).await,
        "{}",
        c.local(fallback, &key).await
    );
    c.restart(away).await;
    // Anti-entropy gives the returning primary the tombstone, so every
    // primary holds it; the hint is still pending on the fallback.
    let same = poll(Duration::from_secs(20), || async {
        let l = c.local(away, &key).await;
        l["found"] == true && dynkv_tests::sibling_values(&l).is_empty()
    })
    .await;
    assert!(same, "n{away}: {}", c.local(away, &key).await);
    let held = poll(Duration::from_secs(15), || async {
        skipped(&c, &[primaries[0]], "hinted").await >= 2.0
    })
    .await;
    assert!(held, "the driver never saw the hint");
    for p in &primaries {
        assert!(
            stored(&c, *p, &key).await,
            "n{p} reaped a key with a pending hint"
        );
    }
    // The fallback hands the hint off (handoff on after a restart): then
    // the key is reaped everywhere.
    c.kill(fallback);
    c.restart_with(fallback, &[("DYNKV__HANDOFF__ENABLED", "true")])
        .await;
    let nodes: Vec<usize> = (1..=4).collect();
    let gone = poll(Duration::from_secs(30), || async {
        gone_from(&c, &nodes, &key).await
    })
    .await;
    assert!(
        gone,
        "fallback n{fallback}: {}; primary n{}: {}",
        c.local(fallback, &key).await,
        primaries[0],
        c.local(primaries[0], &key).await
    );
    for i in 1..=4 {
        assert_eq!(c.get(i, &key, "r=all").await.status, StatusCode::NOT_FOUND);
    }
}

/// Bytes under a directory: (apparent size, disk usage in 512-byte blocks).
fn dir_bytes(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut apparent, mut disk) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (a, d) = dir_bytes(&e.path());
            apparent += a;
            disk += d;
        } else {
            apparent += m.len();
            disk += m.blocks() * 512;
        }
    }
    (apparent, disk)
}

/// Disk usage (`du`) and apparent size (`du -b`) of every node's data
/// directory, summed.
fn cluster_bytes(c: &Cluster) -> serde_json::Value {
    let (mut apparent, mut disk) = (0, 0);
    for n in &c.nodes {
        let (a, d) = dir_bytes(n.data_dir());
        apparent += a;
        disk += d;
    }
    serde_json::json!({ "du": disk, "apparent": apparent })
}

/// `POST /admin/compact` on every node; the SST bytes after, summed.
async fn compact_all(c: &Cluster) -> u64 {
    let mut after = 0;
    for i in 1..=c.nodes.len() {
        let r = c
            .http
            .post(format!("{}/admin/compact", c.url(i)))
            .header("x-dynkv-token", c.admin_token())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "compact n{i}: {}", r.status());
        let v: serde_json::Value = r.json().await.unwrap();
        after += v["sst_bytes_after"].as_u64().unwrap();
    }
    after
}

/// The disk space measurement of docs/DELETES.md: a 3-node cluster (N=3)
/// takes `DYNKV_REAP_KEYS` (100,000) keys of 1 KiB, deletes them all, and
/// reaps them. Run it alone:
/// `cargo nextest run -p dynkv-tests --test reaping --run-ignored only --no-capture`.
/// Prints the figures (and writes them as JSON to `$DYNKV_REAP_REPORT` if set).
#[tokio::test]
#[ignore = "a measurement of a few minutes; run it on its own"]
async fn deleting_many_keys_gives_the_disk_space_back_after_reaping() {
    use futures::StreamExt;
    let keys: usize = std::env::var("DYNKV_REAP_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    // Reaping off while the tombstones are measured; on after a restart.
    // The default failure detector and timeouts, not the tests' hair
    // triggers: three nodes and the load generator share the machine.
    let opts = ClusterOptions::default()
        .set("DYNKV__STORAGE__REAP_INTERVAL_MS", "0")
        .set("DYNKV__FAILURE_DETECTOR__PING_INTERVAL_MS", "1000")
        .set("DYNKV__FAILURE_DETECTOR__PING_TIMEOUT_MS", "500")
        .set("DYNKV__FAILURE_DETECTOR__FAILURE_THRESHOLD", "3")
        .set("DYNKV__QUORUM__RPC_TIMEOUT_MS", "1000")
        .set("DYNKV__QUORUM__REQUEST_TIMEOUT_MS", "3000");
    let mut c = Cluster::start(3, opts).await;
    let c_ref = &c;
    let value = |i: usize| -> String {
        // 1 KiB that LZ4 cannot shrink: hex of an xorshift stream.
        let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..64)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{:016x}", x)
            })
            .collect()
    };
    let started = std::time::Instant::now();
    let contexts: Vec<String> = futures::stream::iter(0..keys)
        .map(|i| async move {
            let key = format!("bulk-{i:06}");
            // A write that failed under load is retried (a blind retry
            // may leave a sibling; the delete's context covers it).
            let mut attempt = 0;
            loop {
                let r = c_ref
                    .put(1 + (i + attempt) % 3, &key, &value(i), "w=all", None)
                    .await;
                if r.status.is_success() {
                    break r.context.expect("a write answers its context");
                }
                assert!(attempt < 5, "put {key}: {}", r.text());
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .buffered(32)
        .collect()
        .await;
    let write_s = started.elapsed().as_secs_f64();
    let written_raw = cluster_bytes(&c);
    let written_sst = compact_all(&c).await;
    let written = cluster_bytes(&c);

    let started = std::time::Instant::now();
    futures::stream::iter(contexts.iter().enumerate())
        .for_each_concurrent(32, |(i, ctx)| async move {
            let key = format!("bulk-{i:06}");
            for attempt in 0..6 {
                let r = c_ref
                    .delete(1 + (i + 1 + attempt) % 3, &key, "w=all", Some(ctx))
                    .await;
                if r.status.is_success() {
                    return;
                }
                assert!(attempt < 5, "delete {key}: {}", r.text());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    let delete_s = started.elapsed().as_secs_f64();
    let deleted_raw = cluster_bytes(&c);
    let deleted_sst = compact_all(&c).await;
    let deleted = cluster_bytes(&c);

    // Every tombstone is older than the grace by now: reap.
    for i in 1..=3 {
        c.stop(i);
    }
    for i in 1..=3 {
        c.restart_with(
            i,
            &[
                ("DYNKV__STORAGE__REAP_INTERVAL_MS", "1000"),
                ("DYNKV__STORAGE__TOMBSTONE_GRACE_MS", "1000"),
                ("DYNKV__STORAGE__REAP_SETTLE_MS", "2000"),
            ],
        )
        .await;
    }
    for i in 1..=3 {
        c.wait_sees_all_up(i).await;
    }
    let started = std::time::Instant::now();
    let all = (3 * keys) as f64;
    let reaped = poll(Duration::from_secs(900), || async {
        reaped_total(&c, &[1, 2, 3]).await >= all
    })
    .await;
    assert!(
        reaped,
        "reaped {} of {all}",
        reaped_total(&c, &[1, 2, 3]).await
    );
    let reap_s = started.elapsed().as_secs_f64();
    let reaped_raw = cluster_bytes(&c);
    let reaped_sst = compact_all(&c).await;
    let reaped = cluster_bytes(&c);
    for k in [
        "bulk-000000",
        "bulk-050000",
        &format!("bulk-{:06}", keys - 1),
    ] {
        assert!(gone_from(&c, &[1, 2, 3], k).await, "{k} is still stored");
    }

    let report = serde_json::json!({
        "keys": keys,
        "value_bytes": 1024,
        "nodes": 3,
        "n_val": 3,
        "seconds": { "write": write_s, "delete": delete_s, "reap": reap_s },
        "data_dir_bytes": {
            "written": written_raw, "written_compacted": written,
            "deleted": deleted_raw, "deleted_compacted": deleted,
            "reaped": reaped_raw, "reaped_compacted": reaped,
        },
        "sst_bytes": {
            "written_compacted": written_sst,
            "deleted_compacted": deleted_sst,
            "reaped_compacted": reaped_sst,
        },
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    if let Ok(path) = std::env::var("DYNKV_REAP_REPORT") {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    assert!(
        reaped_sst * 20 < written_sst,
        "reaping and compaction left {reaped_sst} SST bytes of {written_sst}"
    );
    drop(c);
}
