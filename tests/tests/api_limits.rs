//! Limits inside the API, on real nodes over real TCP: clients that trickle
//! their bodies do not hold the node's in-flight permits (a normal client is
//! served while more slow clients than permits are connected, and the slow
//! ones get 408 `body_timeout`), and a write whose metadata passes a
//! `limits` bound is refused with a 400 naming the bound, storing nothing.

use dynkv_tests::{Cluster, ClusterOptions, Reply};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// More slow clients than the node has permits.
const MAX_INFLIGHT: usize = 2;
const SLOW_CLIENTS: usize = 6;

/// Opens a connection and sends a PUT's headers announcing a 100-byte body,
/// then one byte of it, and nothing more.
async fn slow_put(port: u16, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nx"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

/// The status line and body of the answer on a raw connection (it is
/// closed after a 408).
async fn answer(mut s: TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn slow_bodies_hold_no_permit_and_get_408() {
    let c = Cluster::start(
        1,
        ClusterOptions::default()
            .set("DYNKV__CLUSTER__N_VAL", 1)
            .set("DYNKV__LIMITS__MAX_INFLIGHT_REQUESTS", MAX_INFLIGHT)
            .set("DYNKV__LIMITS__BODY_READ_TIMEOUT", "3s"),
    )
    .await;
    let port = c.node(1).port;
    let mut slow = Vec::new();
    for i in 0..SLOW_CLIENTS {
        let path = if i % 2 == 0 {
            format!("/kv/slow{i}")
        } else {
            format!("/buckets/b/keys/slow{i}")
        };
        slow.push((i, slow_put(port, &path).await));
    }
    // While they are all waiting on their bodies, a normal client is served.
    let w = c.put(1, "fast", "v", "", None).await;
    assert_eq!(w.status, StatusCode::NO_CONTENT, "{}", w.text());
    let r = c.get(1, "fast", "").await;
    assert_eq!(r.values(), vec!["v".to_string()]);
    // The slow ones are cut off with 408 in their API's words.
    for (i, s) in slow {
        let (status, body) = answer(s).await;
        assert_eq!(status, 408, "slow client {i}: {body}");
        if i % 2 == 0 {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["code"], "body_timeout", "{body}");
        } else {
            assert!(body.starts_with("body_timeout"), "{body}");
        }
    }
    for i in 0..SLOW_CLIENTS {
        let url = if i % 2 == 0 {
            c.key_url(1, &format!("slow{i}"), "")
        } else {
            format!("{}/buckets/b/keys/slow{i}", c.url(1))
        };
        let r = c.http.get(url).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "nothing stored for slow{i}"
        );
    }
    assert_eq!(
        c.metric(1, "dynkv_body_timeouts_total", "").await,
        SLOW_CLIENTS as f64
    );
    // The node still serves.
    let w = c.put(1, "after", "v", "", None).await;
    assert_eq!(w.status, StatusCode::NO_CONTENT, "{}", w.text());
}

/// A chunked body (no declared length) past `max_value_bytes` is cut off
/// once the limit is passed and answered 413, as a declared one is.
#[tokio::test]
async fn bodies_past_the_value_limit_get_413_declared_or_chunked() {
    const MAX: usize = 1024;
    let c = Cluster::start(
        1,
        ClusterOptions::default()
            .set("DYNKV__CLUSTER__N_VAL", 1)
            .set("DYNKV__LIMITS__MAX_VALUE_BYTES", MAX),
    )
    .await;
    let port = c.node(1).port;
    let big = "x".repeat(2 * MAX);
    let requests = [
        format!(
            "PUT /kv/chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        ),
        format!(
            "PUT /kv/declared HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
            big.len()
        ),
    ];
    for req in requests {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let (status, body) = answer(s).await;
        assert_eq!(status, 413, "{body}");
        assert!(body.contains("value_too_large"), "{body}");
    }
    for key in ["chunked", "declared"] {
        assert_eq!(
            c.get(1, key, "").await.status,
            StatusCode::NOT_FOUND,
            "{key}"
        );
    }
    // Within the limit, chunked is stored.
    let ok = "PUT /kv/small HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(ok.as_bytes()).await.unwrap();
    let (status, body) = answer(s).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        c.get(1, "small", "").await.values(),
        vec!["abc".to_string()]
    );
}

async fn riak_put(c: &Cluster, key: &str, headers: &[(String, String)]) -> Reply {
    let mut req = c
        .http
        .put(format!("{}/buckets/m/keys/{key}", c.url(1)))
        .body("v");
    if !headers.iter().any(|(k, _)| k == "content-type") {
        req = req.header("content-type", "text/plain");
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    Reply::read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn metadata_past_a_limit_is_refused_and_nothing_stored() {
    let c = Cluster::start(
        1,
        ClusterOptions::default()
            .set("DYNKV__CLUSTER__N_VAL", 1)
            .set("DYNKV__LIMITS__MAX_META_ENTRIES", 4)
            .set("DYNKV__LIMITS__MAX_META_BYTES", 64)
            .set("DYNKV__LIMITS__MAX_INDEX_ENTRIES", 4)
            .set("DYNKV__LIMITS__MAX_LINKS", 4),
    )
    .await;
    let long_type = format!("text/{}", "x".repeat(300));

    // /kv: the Content-Type.
    let r = c
        .http
        .put(c.key_url(1, "ct", ""))
        .header("content-type", &long_type)
        .body("v")
        .send()
        .await
        .unwrap();
    let r = Reply::read(r).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert_eq!(r.json()["code"], "metadata_too_large");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("limits.max_content_type_bytes")
    );
    assert_eq!(c.get(1, "ct", "").await.status, StatusCode::NOT_FOUND);

    // Riak: each bound.
    let h = |k: &str, v: &str| (k.to_string(), v.to_string());
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "max_content_type_bytes",
            vec![h("content-type", &long_type)],
        ),
        (
            "max_meta_entries",
            (0..5)
                .map(|i| h(&format!("x-riak-meta-m{i}"), "v"))
                .collect(),
        ),
        (
            "max_meta_bytes",
            vec![h("x-riak-meta-big", &"y".repeat(80))],
        ),
        (
            "max_index_entries",
            vec![h("x-riak-index-f_bin", "a,b,c,d,e")],
        ),
        (
            "max_links",
            vec![h(
                "link",
                &(0..5)
                    .map(|i| format!("</buckets/m/keys/k{i}>; riaktag=\"t\""))
                    .collect::<Vec<_>>()
                    .join(", "),
            )],
        ),
    ];
    for (limit, headers) in cases {
        let key = format!("k-{limit}");
        let r = riak_put(&c, &key, &headers).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{limit}: {}", r.text());
        assert_eq!(r.json()["code"], "metadata_too_large", "{limit}");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(&format!("limits.{limit}")), "{limit}: {msg}");
        let got = c
            .http
            .get(format!("{}/buckets/m/keys/{key}", c.url(1)))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::NOT_FOUND, "{limit}: stored");
        assert!(
            c.metric(1, "dynkv_metadata_refused_total", limit).await >= 1.0,
            "{limit} not counted"
        );
    }

    // At the bounds the write is stored.
    let at: Vec<(String, String)> = (0..4)
        .map(|i| h(&format!("x-riak-meta-m{i}"), "v"))
        .chain([h("x-riak-index-f_bin", "a,b,c,d")])
        .collect();
    let r = riak_put(&c, "ok", &at).await;
    assert!(r.status.is_success(), "{}", r.text());
}

/// Keys written to one partition: more than two listing pages (1,000 keys
/// a page) so the listing spans several.
const LISTED_KEYS: usize = 2_500;

#[tokio::test]
async fn listings_spanning_several_pages_are_streamed_complete() {
    use futures::StreamExt;
    use std::collections::BTreeSet;

    let c = Cluster::start(
        1,
        ClusterOptions::default()
            .set("DYNKV__CLUSTER__N_VAL", 1)
            .set("DYNKV__CLUSTER__PARTITIONS", 1),
    )
    .await;
    let keys: BTreeSet<String> = (0..LISTED_KEYS).map(|i| format!("key-{i:05}")).collect();
    let puts = futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let req = c
                .http
                .put(format!("{}/buckets/big/keys/{k}", c.url(1)))
                .header("content-type", "text/plain")
                .body("x");
            async move { req.send().await.unwrap().status() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    assert!(puts.iter().all(|s| s.is_success()), "a write failed");

    // keys=true: one JSON document, sent chunked as the pages arrive.
    let r = c
        .http
        .get(format!("{}/buckets/big/keys?keys=true", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("chunked"),
        "the whole listing is streamed, not buffered"
    );
    let doc: serde_json::Value = r.json().await.unwrap();
    let listed: Vec<String> = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), LISTED_KEYS, "each key once");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), keys);

    // keys=stream: one chunk per page, each key once.
    let text = c
        .http
        .get(format!("{}/buckets/big/keys?keys=stream", c.url(1)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut got = BTreeSet::new();
    let mut chunks = 0;
    for chunk in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        chunks += 1;
        for k in chunk.unwrap()["keys"].as_array().unwrap() {
            assert!(got.insert(k.as_str().unwrap().to_string()), "listed twice");
        }
    }
    assert!(chunks >= 3, "{chunks} chunks for {LISTED_KEYS} keys");
    assert_eq!(got, keys);

    // An empty bucket is an empty document.
    let r = c
        .http
        .get(format!("{}/buckets/none/keys?keys=true", c.url(1)))
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = r.json().await.unwrap();
    assert_eq!(doc, serde_json::json!({"keys": []}));
}
