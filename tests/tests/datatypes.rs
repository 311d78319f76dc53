//! Riak data types across real `dynkv` processes: concurrent set and map
//! updates through different nodes on both sides of a partition converge,
//! once it heals, to exactly what the operations imply (no lost update, no
//! resurrected element), and contexts cannot be forged.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use serde_json::{Value, json};

/// The data type URL of `key` on node `i`, in bucket `b` of the bucket
/// type `bucket` (made by [`set_datatype`]).
fn dt_url(c: &Cluster, i: usize, bucket: &str, key: &str, query: &str) -> String {
    format!(
        "{}/types/{bucket}/buckets/b/datatypes/{key}?{query}",
        c.url(i)
    )
}

async fn set_datatype(c: &Cluster, btype: &str, datatype: &str) {
    let (s, v) = c
        .admin(
            1,
            &format!("bucket-types/{btype}/create"),
            json!({"props": {"datatype": datatype}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = c
        .admin(1, &format!("bucket-types/{btype}/activate"), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Every node learns the type by gossip.
    for i in 1..=c.nodes.len() {
        let url = format!("{}/types/{btype}/props", c.url(i));
        let known = poll(Duration::from_secs(10), || async {
            matches!(c.http.get(&url).send().await, Ok(r) if r.status().is_success())
        })
        .await;
        assert!(known, "n{i} never learned bucket type {btype}");
    }
}

/// POSTs an operation through node `i`; returns the status and body.
async fn update(
    c: &Cluster,
    i: usize,
    bucket: &str,
    key: &str,
    query: &str,
    op: Value,
) -> (StatusCode, String) {
    let r = c
        .http
        .post(dt_url(c, i, bucket, key, query))
        .json(&op)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.text().await.unwrap())
}

async fn fetch(c: &Cluster, i: usize, bucket: &str, key: &str, query: &str) -> (StatusCode, Value) {
    let r = c
        .http
        .get(dt_url(c, i, bucket, key, query))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v)
}

async fn ok(c: &Cluster, i: usize, bucket: &str, key: &str, query: &str, op: Value) {
    let (status, body) = update(c, i, bucket, key, query, op.clone()).await;
    assert!(status.is_success(), "n{i} {op}: {status} {body}");
}

/// Waits (up to 20 s) until node `i` believes every node of `gone` down.
async fn sees_down(c: &Cluster, i: usize, gone: &[&str]) -> bool {
    let url = format!("{}/admin/cluster", c.url(i));
    poll(Duration::from_secs(20), || async {
        let Ok(r) = c.http.get(&url).send().await else {
            return false;
        };
        let v: Value = r.json().await.unwrap_or_default();
        v["members"].as_array().is_some_and(|m| {
            let down = m
                .iter()
                .filter(|m| gone.iter().any(|g| m["id"] == *g) && m["up"] == false)
                .count();
            down == gone.len()
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_across_a_partition_merge_exactly() {
    let c = Cluster::start(3, ClusterOptions::default().proxied()).await;
    set_datatype(&c, "sets", "set").await;
    set_datatype(&c, "maps", "map").await;
    ok(
        &c,
        1,
        "sets",
        "k",
        "w=all",
        json!({"add_all": ["a", "b", "c"]}),
    )
    .await;
    ok(
        &c,
        1,
        "maps",
        "k",
        "w=all",
        json!({"update": {
        "n_counter": 1,
        "tags_set": {"add_all": ["x", "y"]},
        "f_flag": "enable",
        "r_register": {"assign": "v0"}}}),
    )
    .await;
    let (_, s0) = fetch(&c, 1, "sets", "k", "r=all").await;
    let (_, m0) = fetch(&c, 1, "maps", "k", "r=all").await;
    assert_eq!(s0["value"], json!(["a", "b", "c"]));
    let (sctx, mctx) = (s0["context"].clone(), m0["context"].clone());

    c.partition(&[&[1], &[2, 3]]);
    // The cut is in effect once each side's failure detector says so.
    for (i, gone) in [(1, &["n2", "n3"][..]), (2, &["n1"][..]), (3, &["n1"][..])] {
        assert!(sees_down(&c, i, gone).await, "n{i} never saw {gone:?} down");
    }
    // n1's side.
    ok(
        &c,
        1,
        "sets",
        "k",
        "w=1&dw=1",
        json!({"remove": "a", "add": "d", "context": sctx}),
    )
    .await;
    ok(
        &c,
        1,
        "maps",
        "k",
        "w=1&dw=1",
        json!({"context": mctx, "update": {
        "n_counter": {"increment": 2},
        "tags_set": {"remove": "x"},
        "r_register": {"assign": "left"}}}),
    )
    .await;
    // n2 and n3's side: a concurrent re-add of the element n1 removed, a
    // remove of a field n1 updated, a flag disable.
    ok(
        &c,
        2,
        "sets",
        "k",
        "w=2",
        json!({"remove": "b", "add_all": ["e", "a"], "context": sctx}),
    )
    .await;
    ok(&c, 3, "sets", "k", "w=2", json!({"add": "f"})).await;
    ok(
        &c,
        2,
        "maps",
        "k",
        "w=2",
        json!({"context": mctx, "remove": ["r_register"], "update": {
        "n_counter": 3,
        "tags_set": {"add": "z"},
        "f_flag": "disable"}}),
    )
    .await;
    // Each side sees only its own updates.
    let (_, left) = fetch(&c, 1, "sets", "k", "r=1").await;
    assert_eq!(left["value"], json!(["b", "c", "d"]));
    let (_, right) = fetch(&c, 3, "sets", "k", "r=2").await;
    assert_eq!(right["value"], json!(["a", "c", "e", "f"]));

    c.heal();
    for i in 1..=3 {
        c.wait_sees_all_up(i).await;
    }
    let want_set = json!(["a", "c", "d", "e", "f"]);
    let want_map = json!({
        "n_counter": 6,
        "tags_set": ["y", "z"],
        "f_flag": false,
        "r_register": "left"});
    let converged = poll(Duration::from_secs(30), || async {
        let mut all = true;
        for i in 1..=3 {
            let (_, s) = fetch(&c, i, "sets", "k", "r=all").await;
            let (_, m) = fetch(&c, i, "maps", "k", "r=all").await;
            all &= s["value"] == want_set && m["value"] == want_map;
        }
        all
    })
    .await;
    let (_, s) = fetch(&c, 2, "sets", "k", "r=all").await;
    let (_, m) = fetch(&c, 2, "maps", "k", "r=all").await;
    assert!(converged, "set {s}, map {m}");

    // The merged state takes further updates through any node, and a remove
    // with a context of the merged state removes exactly what it saw.
    ok(
        &c,
        3,
        "sets",
        "k",
        "w=all",
        json!({"remove_all": ["a", "f"], "context": s["context"]}),
    )
    .await;
    for i in 1..=3 {
        let (_, s) = fetch(&c, i, "sets", "k", "r=all").await;
        assert_eq!(s["value"], json!(["c", "d", "e"]), "n{i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn riak_answers_for_data_types() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    set_datatype(&c, "sets", "set").await;
    set_datatype(&c, "counters", "counter").await;
    // Not found, as riak_kv_wm_crdt answers it.
    let (status, v) = fetch(&c, 1, "sets", "none", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v, json!({"type": "set", "error": "notfound"}));
    // A remove without a context of something absent: riak_dt's precondition.
    ok(&c, 1, "sets", "k", "", json!({"add": "a"})).await;
    let (status, body) = update(&c, 2, "sets", "k", "", json!({"remove": "zz"})).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(body.contains("{precondition,{not_present,zz}}"), "{body}");
    // A forged context changes nothing.
    let (_, v) = fetch(&c, 1, "sets", "k", "").await;
    let mut forged = v["context"].as_str().unwrap().to_string();
    forged.replace_range(4..6, if &forged[4..6] == "AA" { "BB" } else { "AA" });
    let (status, body) = update(
        &c,
        1,
        "sets",
        "k",
        "",
        json!({"remove": "a", "context": forged}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.starts_with("bad_context"), "{body}");
    // An object's vclock (counting object versions) is not a data type
    // context, though the cluster signed it.
    let raw = c
        .http
        .get(format!("{}/types/sets/buckets/b/keys/k", c.url(1)))
        .send()
        .await
        .unwrap();
    let vclock = raw.headers()["x-riak-vclock"].to_str().unwrap().to_string();
    let (status, body) = update(
        &c,
        1,
        "sets",
        "k",
        "",
        json!({"remove": "a", "context": vclock}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.starts_with("bad_context"), "{body}");
    // include_context=false leaves it out; returnbody answers the state.
    let (_, v) = fetch(&c, 1, "sets", "k", "include_context=false").await;
    assert_eq!(v, json!({"type": "set", "value": ["a"]}));
    let (status, body) = update(
        &c,
        3,
        "counters",
        "k",
        "returnbody=true",
        json!({"decrement": 3}),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"type":"counter","value":-3}"#)
    );
    // A server-chosen key: 201 with Location.
    let r = c
        .http
        .post(format!("{}/types/counters/buckets/b/datatypes", c.url(2)))
        .json(&json!(7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let key = location.rsplit('/').next().unwrap();
    assert_eq!(fetch(&c, 1, "counters", key, "").await.1["value"], json!(7));
    // Bad operations and buckets without a datatype are 400s.
    let (status, body) = update(&c, 1, "sets", "k", "", json!({"add": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.starts_with("Invalid operation on datatype 'set'"),
        "{body}"
    );
    let (s, _) = c.admin(1, "bucket-types/plain/create", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    c.admin(1, "bucket-types/plain/activate", Value::Null).await;
    assert!(
        poll(Duration::from_secs(10), || async {
            let (status, body) = update(&c, 1, "plain", "k", "", json!(1)).await;
            status == StatusCode::BAD_REQUEST
                && body.starts_with("Bucket datatype 'undefined' is not a supported type.")
        })
        .await
    );
    // The default bucket type has only the legacy counters: Riak's 301.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .post(format!("{}/types/default/buckets/b/datatypes/k", c.url(1)))
        .json(&json!(1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/buckets/b/counters/k");
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    // Delete goes through the object API; the key then reads as not found.
    let d = c
        .http
        .delete(format!("{}/types/sets/buckets/b/keys/k", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), StatusCode::NO_CONTENT);
    assert_eq!(fetch(&c, 2, "sets", "k", "").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_through_other_nodes_are_forwarded_to_a_primary() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    // One replica per key: two of the three nodes forward every update.
    let (s, v) = c
        .admin(
            1,
            "bucket-types/one/create",
            json!({"props": {"datatype": "set", "n_val": 1}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    c.admin(1, "bucket-types/one/activate", Value::Null).await;
    for i in 1..=3 {
        let url = format!("{}/types/one/props", c.url(i));
        assert!(
            poll(Duration::from_secs(10), || async {
                matches!(c.http.get(&url).send().await, Ok(r) if r.status().is_success())
            })
            .await
        );
    }
    for k in 0..6 {
        let key = format!("k{k}");
        for i in 1..=3 {
            ok(&c, i, "one", &key, "", json!({"add": format!("from-n{i}")})).await;
        }
        for i in 1..=3 {
            let (status, v) = fetch(&c, i, "one", &key, "").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                v["value"],
                json!(["from-n1", "from-n2", "from-n3"]),
                "{key} via n{i}"
            );
        }
        // A refused precondition comes back across the forward as Riak's 412.
        for i in 1..=3 {
            let (status, body) = update(&c, i, "one", &key, "", json!({"remove": "nope"})).await;
            assert_eq!(
                status,
                StatusCode::PRECONDITION_FAILED,
                "{key} via n{i}: {body}"
            );
            assert!(body.contains("not_present"), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyperloglogs_and_grow_only_sets_through_several_nodes() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    set_datatype(&c, "hlls", "hll").await;
    set_datatype(&c, "gsets", "gset").await;
    for i in 1..=3 {
        let users: Vec<String> = (0..40).map(|u| format!("user{}", u + 20 * i)).collect();
        ok(&c, i, "hlls", "visits", "", json!({"add_all": users})).await;
        ok(&c, i, "gsets", "seen", "", json!({"add": format!("id{i}")})).await;
    }
    // 80 distinct users (20..100); the default precision (14) counts
    // that few exactly, with linear counting.
    for i in 1..=3 {
        let (_, v) = fetch(&c, i, "hlls", "visits", "").await;
        assert_eq!(v, json!({"type": "hll", "value": 80}), "n{i}");
        let (_, v) = fetch(&c, i, "gsets", "seen", "").await;
        assert_eq!(
            v,
            json!({"type": "gset", "value": ["id1", "id2", "id3"]}),
            "n{i}"
        );
    }
    let (status, body) = update(&c, 1, "gsets", "seen", "", json!({"remove": "id1"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.starts_with("Invalid operation on datatype 'gset'"),
        "{body}"
    );
}
