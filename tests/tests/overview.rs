//! `/admin/overview` and `/ui` across real processes: one node gathers every
//! member's summary over the internode RPC; the figures follow the traffic
//! (requests per operation, sibling counts, hints per owner); a killed
//! member shows down with the reason while the others keep answering.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);

async fn overview(c: &Cluster, i: usize) -> Value {
    let r = c
        .http
        .get(format!("{}/admin/overview", c.url(i)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Polls node `i`'s overview until `cond` holds (at most [`WAIT`]);
/// answers whether it did and the last overview seen.
async fn overview_until(c: &Cluster, i: usize, cond: impl Fn(&Value) -> bool) -> (bool, Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = overview(c, i).await;
        if cond(&v) {
            return (true, v);
        }
        if tokio::time::Instant::now() >= deadline {
            return (false, v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn member<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no member {id} in {v}"))
}

/// Requests of `op` a member's summary counts in its window.
fn requests(m: &Value, op: &str) -> u64 {
    m["summary"]["ops"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["op"] == op)
        .map(|o| o["requests"].as_u64().unwrap())
        .sum()
}

/// Reads a member's summary counts that returned more than one sibling.
fn reads_with_siblings(m: &Value) -> u64 {
    m["summary"]["siblings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["le"].as_f64().is_none_or(|le| le >= 2.0))
        .map(|b| b["count"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_node_shows_every_member_and_a_killed_one_goes_down() {
    // N=2 on three nodes, so that a write meant for a down node has a
    // fallback to keep its hint.
    let mut c = Cluster::start(3, ClusterOptions::default().set("DYNKV__CLUSTER__N_VAL", 2)).await;
    for i in 1..=3 {
        c.wait_sees_all_up(i).await;
    }
    for k in 0..30 {
        let i = 1 + k % 3;
        assert_eq!(
            c.put(i, &format!("o{k}"), "v", "w=all", None).await.status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            c.get(1 + (k + 1) % 3, &format!("o{k}"), "r=all")
                .await
                .status,
            StatusCode::OK
        );
    }
    // Two blind writes through different nodes: siblings on the next read.
    c.put(1, "twins", "a", "w=all", None).await;
    c.put(2, "twins", "b", "w=all", None).await;
    assert_eq!(
        c.get(3, "twins", "r=all").await.status,
        StatusCode::MULTIPLE_CHOICES
    );

    let v = overview(&c, 1).await;
    assert_eq!(v["node"], "n1");
    assert_eq!(v["n_val"], 2);
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{v}");
    for id in ["n1", "n2", "n3"] {
        let m = member(&v, id);
        assert_eq!(m["up"], true, "{m}");
        assert_eq!(m["reachable"], true, "{m}");
        assert_eq!(m["summary"]["node"], id, "{m}");
        assert_eq!(m["self"], id == "n1");
        // Ten writes and ten reads (and a few more) went through each node.
        assert!(requests(m, "put") >= 10, "{id}: {m}");
        assert!(requests(m, "get") >= 10, "{id}: {m}");
        assert!(m["summary"]["inflight_capacity"].as_u64().unwrap() > 0);
        assert!(m["summary"]["inflight"].as_u64().unwrap() <= 1, "{m}");
    }
    let get_ops = &member(&v, "n2")["summary"]["ops"];
    let get = get_ops
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "get")
        .unwrap();
    let (p50, p99) = (
        get["p50_ms"].as_f64().unwrap(),
        get["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99, "{get}");
    assert!(get["rate"].as_f64().unwrap() > 0.0, "{get}");
    assert!(
        reads_with_siblings(member(&v, "n3")) >= 1,
        "n3 coordinated a read of two siblings: {}",
        member(&v, "n3")
    );
    let owners = v["ring"]["owners"].as_array().unwrap();
    assert_eq!(
        owners.len() as u64,
        v["ring"]["partitions"].as_u64().unwrap()
    );
    for id in ["n1", "n2", "n3"] {
        assert!(owners.iter().any(|o| o == id), "{id} owns no partition");
    }

    // Down: the page's node cannot reach n3 at once, and its failure
    // detector agrees soon after.
    c.kill(3);
    let (down, seen) = overview_until(&c, 1, |v| {
        let m = member(v, "n3");
        m["up"] == false && m["reachable"] == false
    })
    .await;
    assert!(down, "n3 never showed down: {seen}");
    let m3 = member(&seen, "n3");
    assert!(m3["summary"].is_null(), "{m3}");
    assert!(!m3["error"].as_str().unwrap_or("").is_empty(), "{m3}");
    for id in ["n1", "n2"] {
        assert_eq!(member(&seen, id)["reachable"], true, "{seen}");
    }

    // Writes meant for n3 become hints, shown per owner.
    for k in 0..20 {
        c.put(1, &format!("h{k}"), "v", "w=2", None).await;
    }
    let (hinted, last) = overview_until(&c, 2, |v| {
        ["n1", "n2"].iter().any(|id| {
            member(v, id)["summary"]["hints"]
                .as_array()
                .is_some_and(|h| {
                    h.iter()
                        .any(|h| h["owner"] == "n3" && h["count"].as_u64() > Some(0))
                })
        })
    })
    .await;
    assert!(hinted, "no hint for n3 shown: {last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_is_served_by_every_node() {
    let c = Cluster::start(1, ClusterOptions::default()).await;
    let r = c.http.get(format!("{}/ui", c.url(1))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(page.contains("/ui/ui.js") && page.contains("id=\"pbs\""));
    for (path, ty) in [("/ui/ui.js", "text/javascript"), ("/ui/ui.css", "text/css")] {
        let r = c
            .http
            .get(format!("{}{path}", c.url(1)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty),
            "{path}"
        );
    }
    let r = c
        .http
        .get(format!("{}/ui/nothing", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "not_found");
}
