//! Signed contexts on real nodes: a token the cluster did not issue (valid
//! encoding under another key), an altered token and an unsigned token of
//! the earlier format are refused with 400 `bad_context` on PUT and DELETE,
//! on `/kv` and on the Riak API, and nothing stored changes; a token issued
//! by one node is accepted by another, and after a restart.

use dynkv_tests::{Cluster, ClusterOptions, Reply};
use dynkv_vclock::context::{CONTEXT_FORMAT_V1, CONTEXT_MAC_LEN};
use dynkv_vclock::{ContextKey, VersionVector, context_payload, inspect_context};
use reqwest::StatusCode;

/// base64url without padding, as `/kv` tokens are written.
fn url_b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Standard base64 with padding, as `X-Riak-Vclock` is written.
fn std_b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn url_b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Bad payloads built from a real one: (what, payload bytes).
fn bad_payloads(real: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let vv = {
        let good = url_b64(real);
        let mut v = inspect_context(&good).unwrap();
        // A forger would claim more than was read.
        v = v.merge(&VersionVector::from_pairs([("n1".to_string(), 1_000_000)]));
        v
    };
    // Valid encoding, MAC under a key that is not the cluster's.
    let forged = context_payload(&vv, &ContextKey::new([0x11; 32]));
    // The real token with one bit of its vector changed.
    let mut altered = real.to_vec();
    altered[3] ^= 0x01;
    // The earlier, unsigned format of the real vector.
    let mut unsigned = real[..real.len() - CONTEXT_MAC_LEN].to_vec();
    unsigned[0] = CONTEXT_FORMAT_V1;
    vec![
        ("forged", forged),
        ("altered", altered),
        ("unsigned", unsigned),
    ]
}

async fn riak_put(c: &Cluster, i: usize, value: &str, vclock: Option<&str>) -> Reply {
    let mut req = c
        .http
        .put(format!("{}/buckets/b/keys/k", c.url(i)))
        .header("content-type", "text/plain")
        .body(value.to_string());
    if let Some(v) = vclock {
        req = req.header("x-riak-vclock", v);
    }
    Reply::read(req.send().await.unwrap()).await
}

async fn riak_get(c: &Cluster, i: usize) -> (StatusCode, String, Option<String>) {
    let r = c
        .http
        .get(format!("{}/buckets/b/keys/k?r=all", c.url(i)))
        .send()
        .await
        .unwrap();
    let vclock = r
        .headers()
        .get("x-riak-vclock")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status(), r.text().await.unwrap(), vclock)
}

fn std_b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn forged_altered_and_unsigned_contexts_are_refused_on_both_apis() {
    let mut c = Cluster::start(2, ClusterOptions::default().set("DYNKV__CLUSTER__N_VAL", 2)).await;

    // /kv: a stored value and the context a read hands out.
    let w = c.put(1, "k", "v1", "w=all", None).await;
    assert!(w.status.is_success(), "{}", w.text());
    let token = c.get(1, "k", "r=all").await.context.expect("a context");
    let real = url_b64_decode(&token);
    for (what, payload) in bad_payloads(&real) {
        let bad = url_b64(&payload);
        let put = c.put(1, "k", "evil", "w=all", Some(&bad)).await;
        assert_eq!(
            put.status,
            StatusCode::BAD_REQUEST,
            "{what} PUT: {}",
            put.text()
        );
        assert_eq!(put.json()["code"], "bad_context", "{what}");
        if what == "unsigned" {
            let msg = put.json()["error"].as_str().unwrap().to_string();
            assert!(
                msg.contains("signed") && msg.contains("read the key again"),
                "{msg}"
            );
        }
        let del = c.delete(2, "k", "w=all", Some(&bad)).await;
        assert_eq!(
            del.status,
            StatusCode::BAD_REQUEST,
            "{what} DELETE: {}",
            del.text()
        );
        assert_eq!(del.json()["code"], "bad_context", "{what}");
    }
    for i in 1..=2 {
        assert_eq!(c.local_values(i, "k").await, vec!["v1".to_string()], "n{i}");
    }

    // Riak: the same three kinds in X-Riak-Vclock.
    let w = riak_put(&c, 1, "r1", None).await;
    assert!(w.status.is_success(), "{}", w.text());
    let (status, body, vclock) = riak_get(&c, 1).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "r1"));
    let real = std_b64_decode(&vclock.expect("a vclock"));
    for (what, payload) in bad_payloads(&real) {
        let bad = std_b64(&payload);
        let put = riak_put(&c, 1, "evil", Some(&bad)).await;
        assert_eq!(
            put.status,
            StatusCode::BAD_REQUEST,
            "{what} PUT: {}",
            put.text()
        );
        assert!(
            put.text().starts_with("bad_context"),
            "{what}: {}",
            put.text()
        );
        let del = c
            .http
            .delete(format!("{}/buckets/b/keys/k", c.url(2)))
            .header("x-riak-vclock", &bad)
            .send()
            .await
            .unwrap();
        let del = Reply::read(del).await;
        assert_eq!(
            del.status,
            StatusCode::BAD_REQUEST,
            "{what} DELETE: {}",
            del.text()
        );
        assert!(
            del.text().starts_with("bad_context"),
            "{what}: {}",
            del.text()
        );
    }
    for i in 1..=2 {
        let (status, body, _) = riak_get(&c, i).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "r1"), "n{i}");
    }
    // Every refusal is counted: three kinds, PUT and DELETE, two APIs.
    let counted = c.metric(1, "dynkv_bad_contexts_total", "").await
        + c.metric(2, "dynkv_bad_contexts_total", "").await;
    assert_eq!(counted, 12.0);

    // A token issued by node 1 is accepted by node 2: the write supersedes
    // what was read, leaving one value.
    let token = c.get(1, "k", "r=all").await.context.unwrap();
    let ok = c.put(2, "k", "v2", "w=all", Some(&token)).await;
    assert!(ok.status.is_success(), "{}", ok.text());
    assert_eq!(
        c.get(1, "k", "r=all").await.values(),
        vec!["v2".to_string()]
    );
    let (_, _, vclock) = riak_get(&c, 1).await;
    let ok = riak_put(&c, 2, "r2", vclock.as_deref()).await;
    assert!(ok.status.is_success(), "{}", ok.text());

    // And after a restart of the node it is presented to.
    let token = c.get(2, "k", "r=all").await.context.unwrap();
    c.stop(1);
    c.restart(1).await;
    let ok = c.put(1, "k", "v3", "w=all", Some(&token)).await;
    assert!(ok.status.is_success(), "{}", ok.text());
    for i in 1..=2 {
        assert_eq!(c.local_values(i, "k").await, vec!["v3".to_string()], "n{i}");
    }
}
