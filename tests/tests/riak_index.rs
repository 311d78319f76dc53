//! Riak secondary indexes across real `dynkv` processes: objects written
//! through some nodes are found through another by exact, range, paged,
//! term-returning and streamed queries; entries follow updates and
//! deletes; a query still answers with a node down; and anti-entropy
//! brings a replica's index entries along with its objects.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use serde_json::Value;

/// Writes `bucket/key` through node `i` with index headers.
async fn put(c: &Cluster, i: usize, bucket: &str, key: &str, indexes: &[(&str, String)]) {
    put_at(c, i, &format!("buckets/{bucket}/keys/{key}"), indexes).await
}

/// Writes the object at `path` (below the node's root) through node `i`
/// with index headers.
async fn put_at(c: &Cluster, i: usize, path: &str, indexes: &[(&str, String)]) {
    let mut rb = c
        .http
        .put(format!("{}/{path}?w=3", c.url(i)))
        .header("content-type", "text/plain")
        .body(format!("value of {path}"));
    for (field, value) in indexes {
        rb = rb.header(format!("x-riak-index-{field}"), value);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "{}",
        r.text().await.unwrap()
    );
}

/// A query through node `i` (`path` after `/buckets/`), as JSON.
async fn query(c: &Cluster, i: usize, path: &str) -> Value {
    query_at(c, i, &format!("buckets/{path}")).await
}

/// A query through node `i` (`path` below the node's root), as JSON.
async fn query_at(c: &Cluster, i: usize, path: &str) -> Value {
    let r = c
        .http
        .get(format!("{}/{path}", c.url(i)))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn keys(v: &Value) -> Vec<String> {
    v["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys: {v}"))
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// The parts of a streamed (`multipart/mixed`) answer through node `i`.
async fn stream(c: &Cluster, i: usize, path: &str) -> Vec<Value> {
    let r = c
        .http
        .get(format!("{}/buckets/{path}", c.url(i)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let ctype = r.headers()["content-type"].to_str().unwrap().to_string();
    let boundary = ctype
        .strip_prefix("multipart/mixed;boundary=")
        .unwrap()
        .to_string();
    let body = r.text().await.unwrap();
    assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")), "{body}");
    body.split(&format!("\r\n--{boundary}"))
        .filter_map(|p| {
            p.split_once("\r\n\r\n")
                .map(|(_, json)| serde_json::from_str(json).unwrap())
        })
        .collect()
}

/// Every key of a streamed answer, sorted (parts are sorted only within
/// themselves).
async fn stream_keys(c: &Cluster, i: usize, path: &str) -> Vec<String> {
    let mut all: Vec<String> = stream(c, i, path).await.iter().flat_map(keys).collect();
    all.sort();
    all
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("k{i:02}")).collect()
}

/// Twenty objects in bucket `b`, written through n1 and n2 in turn:
/// `k{i}` carries `num_int = i - 10` and `f_bin = v{i}`.
async fn write_twenty(c: &Cluster) {
    for i in 0..20usize {
        let key = format!("k{i:02}");
        let num = (i as i64 - 10).to_string();
        put(
            c,
            1 + i % 2,
            "b",
            &key,
            &[("num_int", num), ("f_bin", format!("v{i:02}"))],
        )
        .await;
    }
}

#[tokio::test]
async fn queries_through_any_node_find_what_others_wrote() {
    let mut c = Cluster::start(3, ClusterOptions::default()).await;
    write_twenty(&c).await;
    // Another bucket with the same field is not in the answers.
    put(&c, 1, "other", "k05", &[("f_bin", "v05".to_string())]).await;

    assert_eq!(keys(&query(&c, 3, "b/index/f_bin/v05").await), names(5..6));
    // Integers sort numerically, negative ones first.
    assert_eq!(
        keys(&query(&c, 3, "b/index/num_int/-10/-1").await),
        names(0..10)
    );
    let terms = query(&c, 3, "b/index/num_int/-3/1?return_terms=true").await;
    assert_eq!(
        terms["results"],
        serde_json::json!([{"-3": "k07"}, {"-2": "k08"}, {"-1": "k09"}, {"0": "k10"}, {"1": "k11"}])
    );
    // Typed paths and the special indexes.
    assert_eq!(
        keys(&query(&c, 2, "b/index/f_bin/v00/v03").await),
        keys(
            &c.http
                .get(format!(
                    "{}/types/default/buckets/b/index/f_bin/v00/v03",
                    c.url(2)
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
        )
    );
    assert_eq!(
        keys(&query(&c, 3, "b/index/%24bucket/b").await),
        names(0..20)
    );
    assert_eq!(
        keys(&query(&c, 3, "b/index/%24key/k03/k06").await),
        names(3..7)
    );

    // Pages of 7: stable, complete, and a continuation while a page is full.
    let mut all = Vec::new();
    let mut continuation: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "b/index/f_bin/v00/v99?max_results=7".to_string();
        if let Some(cont) = &continuation {
            path.push_str(&format!("&continuation={cont}"));
        }
        let page = query(&c, 1 + pages % 3, &path).await;
        all.extend(keys(&page));
        pages += 1;
        match page["continuation"].as_str() {
            Some(next) => continuation = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!((all, pages), (names(0..20), 3));

    // Streamed: multipart/mixed parts with the results, then the
    // continuation, then the closing boundary.
    let parts = stream(
        &c,
        3,
        "b/index/num_int/-10/10?stream=true&max_results=4&return_terms=true",
    )
    .await;
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0]["results"][0], serde_json::json!({"-10": "k00"}));
    assert!(parts[1]["continuation"].is_string());
    // Without a page size, every replica's pages as they come.
    assert_eq!(
        stream_keys(&c, 2, "b/index/f_bin/v00/v99?stream=true").await,
        names(0..20)
    );

    // An update replaces the old term; a delete removes the key.
    put(&c, 2, "b", "k05", &[("f_bin", "moved".to_string())]).await;
    assert!(keys(&query(&c, 3, "b/index/f_bin/v05").await).is_empty());
    assert_eq!(
        keys(&query(&c, 1, "b/index/f_bin/moved").await),
        names(5..6)
    );
    let d = c
        .http
        .delete(format!("{}/buckets/b/keys/k06?w=3", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), StatusCode::NO_CONTENT);
    assert!(keys(&query(&c, 3, "b/index/f_bin/v06").await).is_empty());

    // Bad queries are 400s in Riak's words.
    for (path, says) in [
        ("b/index/field/x", "unknown_field_type"),
        ("b/index/num_int/ten", "could_not_parse_integer"),
        ("b/index/f_bin/a/b?max_results=0", "max_results"),
        ("b/index/f_bin/a/b?continuation=%21", "continuation"),
    ] {
        let r = c
            .http
            .get(format!("{}/buckets/{path}", c.url(2)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(r.text().await.unwrap().contains(says), "{path}");
    }
    let r = c
        .http
        .put(format!("{}/buckets/b/keys/bad", c.url(1)))
        .header("content-type", "text/plain")
        .header("x-riak-index-field1", "x")
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // With a node down every partition still has a replica to ask.
    c.kill(1);
    // (k05's update carries no `num_int`, k06 is deleted.)
    let mut want = names(0..20);
    want.retain(|k| k != "k05" && k != "k06");
    assert_eq!(keys(&query(&c, 3, "b/index/num_int/-100/100").await), want);
    assert_eq!(
        stream_keys(&c, 2, "b/index/num_int/-100/100?stream=true").await,
        want
    );
}

#[tokio::test]
async fn anti_entropy_brings_index_entries_with_their_objects() {
    let mut c = Cluster::start(
        3,
        ClusterOptions::default()
            .set("DYNKV__READ_REPAIR__ENABLED", "false")
            .set("DYNKV__HANDOFF__ENABLED", "false")
            .set("DYNKV__ANTIENTROPY__EXCHANGE_INTERVAL_MS", "20")
            .set("DYNKV__ANTIENTROPY__BATCH_PAUSE_MS", "0"),
    )
    .await;
    c.stop(3);
    for i in 0..30usize {
        let r = c
            .http
            .put(format!("{}/buckets/b/keys/k{i:02}?w=2", c.url(1 + i % 2)))
            .header("content-type", "text/plain")
            .header("x-riak-index-n_int", i.to_string())
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    c.restart(3).await;
    let repaired = poll(Duration::from_secs(60), || async {
        c.metric(3, "dynkv_aae_keys_repaired_total", "").await >= 30.0
    })
    .await;
    assert!(repaired, "n3 was not repaired");
    // Only n3 is left: it answers every partition from what anti-entropy
    // gave it.
    c.kill(1);
    c.kill(2);
    assert_eq!(
        keys(&query(&c, 3, "b/index/n_int/0/1000").await),
        names(0..30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_handoff_brings_index_entries_to_a_joining_node() {
    // Only the handoff moves data: no anti-entropy, no read repair.
    let mut c = Cluster::start(
        3,
        ClusterOptions::default()
            .set("DYNKV__MEMBERSHIP__GOSSIP_INTERVAL_MS", "200")
            .set("DYNKV__MEMBERSHIP__CLEANUP_GRACE_MS", "1000")
            .set("DYNKV__ANTIENTROPY__ENABLED", "false")
            .set("DYNKV__READ_REPAIR__ENABLED", "false"),
    )
    .await;
    for i in 0..40usize {
        put(
            &c,
            1 + i % 3,
            "b",
            &format!("k{i:02}"),
            &[("n_int", i.to_string())],
        )
        .await;
    }
    let n4 = c.start_joiner().await;
    let seed = c.node(1).cluster_addr();
    let (s, v) = c
        .admin(n4, "join", serde_json::json!({ "seed": seed }))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = c.admin(1, "commit", serde_json::json!(null)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for i in [1, 2, 3, n4] {
        assert!(
            c.wait_transition_done(i, Duration::from_secs(90)).await,
            "n{i} still reports a change in progress"
        );
    }
    // With n1 and n2 gone, every partition is answered by n3 or by n4, and
    // n4 holds what it holds only through the handoff.
    c.kill(1);
    c.kill(2);
    assert_eq!(
        keys(&query(&c, n4, "b/index/n_int/0/100").await),
        names(0..40)
    );
}

#[tokio::test]
async fn a_typed_bucket_has_an_index_of_its_own() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    for verb in ["create", "activate"] {
        let (s, v) = c
            .admin(1, &format!("bucket-types/plain/{verb}"), Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    assert!(
        poll(Duration::from_secs(10), || async {
            c.http
                .get(format!("{}/types/plain/props", c.url(2)))
                .send()
                .await
                .unwrap()
                .status()
                == StatusCode::OK
        })
        .await
    );
    // The same bucket, key and term in the default type and in `plain`.
    put(&c, 1, "b", "dflt", &[("f_bin", "x".to_string())]).await;
    put_at(
        &c,
        2,
        "types/plain/buckets/b/keys/typed",
        &[("f_bin", "x".to_string())],
    )
    .await;
    let typed = query_at(&c, 3, "types/plain/buckets/b/index/f_bin/x").await;
    assert_eq!(keys(&typed), ["typed"]);
    assert_eq!(keys(&query(&c, 3, "b/index/f_bin/x").await), ["dflt"]);
    // A phaseless job names the type as Riak's clients do.
    let job = serde_json::json!({
        "inputs": {"bucket": ["plain", "b"], "index": "f_bin", "key": "x"},
        "query": []
    });
    let r = c
        .http
        .post(format!("{}/mapred", c.url(1)))
        .header("content-type", "application/json")
        .body(job.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    assert!(body.contains("typed") && !body.contains("dflt"), "{body}");
}
