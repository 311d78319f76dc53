//! `X-Dynkv-Replicas: asked=A answered=B repaired=C sloppy=D` on every
//! `/kv` answer, across real processes: what each number says in the
//! cases that set it (all replicas up, one down, a read repair, a sloppy
//! write through a fallback, a write forwarded to a primary, a quorum
//! failure).

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};

/// No background healing: only the requests under test touch the replicas.
fn quiet() -> ClusterOptions {
    ClusterOptions::default().set("DYNKV__ANTIENTROPY__ENABLED", "false")
}

/// Waits until node `i` holds node `j` down (or up).
async fn wait_seen(c: &Cluster, i: usize, j: usize, up: bool) {
    let seen = poll(Duration::from_secs(10), || async {
        let v = c
            .http
            .get(format!("{}/admin/cluster", c.url(i)))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == format!("n{j}") && m["up"] == up)
    })
    .await;
    assert!(
        seen,
        "n{i} never saw n{j} {}",
        if up { "up" } else { "down" }
    );
}

#[tokio::test]
async fn reads_and_writes_report_their_replicas() {
    let mut c = Cluster::start(3, quiet()).await;

    // All up, N = 3: every replica asked and answering.
    let put = c.put(1, "k", "v1", "w=all", None).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.text());
    assert_eq!(put.replica_report(), [3, 3, 0, 0]);
    let get = c.get(1, "k", "r=all").await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.replica_report(), [3, 3, 0, 0]);
    // W = 1 answers on the coordinator's own copy: the other two were
    // asked, their answers came after.
    let put = c.put(2, "k2", "v", "w=1", None).await;
    let [asked, answered, repaired, sloppy] = put.replica_report();
    assert_eq!((asked, repaired, sloppy), (3, 0, 0), "{:?}", put.replicas);
    assert!((1..=3).contains(&answered));
    // A 404 and a DELETE carry it too.
    let missing = c.get(1, "never-written", "r=2").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let [asked, answered, _, _] = missing.replica_report();
    assert!(asked >= 2 && answered >= 2, "{:?}", missing.replicas);
    let del = c.delete(1, "k", "w=all", get.context.as_deref()).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text());
    assert_eq!(del.replica_report(), [3, 3, 0, 0]);
    // A request refused before any replica is involved has none.
    let bad = c.get(1, "k", "r=9").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.replicas, None);

    // One replica down: a write is not sent to it (no fallback in a
    // 3-node cluster), a strict write misses W = 3 with a 503 that still
    // reports, and a read asking it counts it as asked, not answered.
    let before = c.put(1, "stale", "old", "w=all", None).await;
    assert_eq!(before.replica_report(), [3, 3, 0, 0]);
    c.kill(3);
    wait_seen(&c, 1, 3, false).await;
    let strict = c
        .put(
            1,
            "stale",
            "new",
            "w=all&sloppy=false&timeout_ms=1000",
            before.context.as_deref(),
        )
        .await;
    assert_eq!(
        strict.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        strict.text()
    );
    assert_eq!(strict.replica_report(), [2, 2, 0, 0]);
    let failed_read = c
        .get(1, "stale", "r=all&sloppy=false&timeout_ms=1000")
        .await;
    assert_eq!(failed_read.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed_read.replica_report(), [3, 2, 0, 0]);

    // Back up with the old value: a read of all three finds it behind and
    // repairs it.
    c.restart(3).await;
    wait_seen(&c, 1, 3, true).await;
    let read = c.get(1, "stale", "r=all").await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());
    assert_eq!(read.text(), "new");
    assert_eq!(read.replica_report(), [3, 3, 1, 0]);
    let repaired = poll(Duration::from_secs(10), || async {
        c.local_values(3, "stale").await == vec!["new".to_string()]
    })
    .await;
    assert!(
        repaired,
        "n3 was reported repaired but still holds the old value"
    );
    let again = c.get(1, "stale", "r=all").await;
    assert_eq!(again.replica_report(), [3, 3, 0, 0]);
}

#[tokio::test]
async fn forwarded_and_sloppy_writes_report_their_replicas() {
    let mut c = Cluster::start(4, quiet()).await;

    // A write through a node outside the key's replicas is coordinated by
    // a primary, whose report comes back with the answer.
    let away = c.find_key("away", |p, _| !p.contains(&1)).await;
    let put = c.put(1, &away, "v", "w=all", None).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.text());
    assert_eq!(put.replica_report(), [3, 3, 0, 0]);

    // A primary down: its copy goes to a fallback as a hint.
    let key = c.find_key("sloppy", |p, _| p[0] == 1).await;
    let (primaries, _) = c.placement(1, &key).await;
    c.kill(primaries[2]);
    wait_seen(&c, 1, primaries[2], false).await;
    let put = c.put(1, &key, "v", "w=3", None).await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.text());
    assert_eq!(put.replica_report(), [3, 3, 0, 1]);
    // A sloppy read asks that fallback in the primary's place.
    let get = c.get(1, &key, "r=3").await;
    assert_eq!(get.status, StatusCode::OK, "{}", get.text());
    assert_eq!(get.replica_report(), [3, 3, 0, 1]);
}

#[tokio::test]
async fn the_reports_are_summed_in_the_metrics() {
    let c = Cluster::start(3, quiet()).await;
    // What the headers of node 1's answers said, summed per operation.
    let mut said = std::collections::BTreeMap::<&str, [u32; 4]>::new();
    let mut add = |op, r: [u32; 4]| {
        let s = said.entry(op).or_default();
        for (t, v) in s.iter_mut().zip(r) {
            *t += v;
        }
    };
    for i in 0..5 {
        let key = format!("m{i}");
        let put = c.put(1, &key, "v", "w=all", None).await;
        assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.text());
        add("put", put.replica_report());
        let get = c.get(1, &key, "r=2").await;
        assert_eq!(get.status, StatusCode::OK);
        add("get", get.replica_report());
        let del = c.delete(1, &key, "w=2", get.context.as_deref()).await;
        assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text());
        add("delete", del.replica_report());
    }
    let missing = c.get(1, "never-written", "r=2").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    add("get", missing.replica_report());

    for (op, sums) in said {
        assert!(sums[0] > 0, "{op}: nothing asked?");
        for (n, name) in sums.iter().zip(["asked", "answered", "repaired", "sloppy"]) {
            let labels = format!("op=\"{op}\",replicas=\"{name}\"");
            let counted = c.metric(1, "dynkv_replica_reports_total", &labels).await;
            assert_eq!(counted, f64::from(*n), "{labels}");
        }
    }
}
