//! The Riak-compatible HTTP API across real `dynkv` processes: objects,
//! siblings and their multipart framing, bucket properties, listings,
//! conditional writes and Riak's error answers.

use std::collections::BTreeSet;
use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use reqwest::header::{HeaderMap, HeaderValue};

/// One answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

async fn send(rb: reqwest::RequestBuilder) -> Answer {
    let r = rb.send().await.unwrap();
    Answer {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.bytes().await.unwrap().to_vec(),
    }
}

fn obj(c: &Cluster, i: usize, bucket: &str, key: &str, query: &str) -> String {
    format!("{}/buckets/{bucket}/keys/{key}?{query}", c.url(i))
}

async fn put_text(c: &Cluster, i: usize, bucket: &str, key: &str, value: &str) -> Answer {
    send(
        c.http
            .put(obj(c, i, bucket, key, ""))
            .header("content-type", "text/plain")
            .body(value.to_string()),
    )
    .await
}

async fn set_props(c: &Cluster, i: usize, bucket: &str, props: serde_json::Value) -> Answer {
    send(
        c.http
            .put(format!("{}/buckets/{bucket}/props", c.url(i)))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "props": props }).to_string()),
    )
    .await
}

#[tokio::test]
async fn an_object_round_trips_with_its_metadata_and_riaks_headers() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let r = send(
        c.http
            .put(obj(&c, 1, "photos", "me+at+home", "returnbody=true"))
            .header("content-type", "application/json; charset=\"UTF-8\"")
            .header("x-riak-meta-camera", "pinhole")
            .header("x-riak-index-year_int", "2024, 1999")
            .header("link", "</buckets/albums/keys/summer>; riaktag=\"in\"")
            .body("{\"w\":1}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "{\"w\":1}");
    let vclock = r.header("x-riak-vclock").unwrap();
    assert_eq!(vclock.len() % 4, 0, "standard, padded base64: {vclock}");
    assert!(!vclock.contains('-') && !vclock.contains('_'));

    // Read from another node: the key "me at home" (+ is a space).
    let g = send(c.http.get(obj(&c, 2, "photos", "me%20at%20home", ""))).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    assert_eq!(g.text(), "{\"w\":1}");
    assert_eq!(
        g.header("content-type").as_deref(),
        Some("application/json; charset=UTF-8")
    );
    assert_eq!(g.header("content-length").as_deref(), Some("7"));
    assert_eq!(g.header("x-riak-meta-camera").as_deref(), Some("pinhole"));
    assert_eq!(
        g.header("x-riak-index-year_int").as_deref(),
        Some("1999, 2024")
    );
    let link = g.header("link").unwrap();
    assert!(link.contains("</buckets/photos>; rel=\"up\""), "{link}");
    assert!(
        link.contains("</buckets/albums/keys/summer>; riaktag=\"in\""),
        "{link}"
    );
    let etag = g.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let lm = g.header("last-modified").unwrap();
    assert!(lm.ends_with(" GMT") && lm.len() == 29, "RFC 1123: {lm}");
    // The same object through the typed path, and a conditional GET.
    let t = send(
        c.http
            .get(format!(
                "{}/types/default/buckets/photos/keys/me+at+home",
                c.url(3)
            ))
            .header("if-none-match", etag.as_str()),
    )
    .await;
    assert_eq!(t.status, StatusCode::NOT_MODIFIED);
    let other = send(
        c.http
            .get(format!("{}/types/other/buckets/photos/keys/x", c.url(1))),
    )
    .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.text(), "Unknown bucket type: other\n");

    // Missing key: Riak's plain-text 404, no vclock.
    let m = send(c.http.get(obj(&c, 1, "photos", "nobody", ""))).await;
    assert_eq!(m.status, StatusCode::NOT_FOUND);
    assert_eq!(m.text(), "not found\n");
    assert_eq!(m.header("content-type").as_deref(), Some("text/plain"));
    assert!(m.header("x-riak-vclock").is_none());

    // A write needs a Content-Type; bad parameters are Riak's 400s.
    let r = send(c.http.put(obj(&c, 1, "photos", "k", "")).body("x")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.text(), "Missing Content-Type request header\n");
    let r = send(c.http.get(obj(&c, 1, "photos", "k", "r=lots"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text().starts_with("r query parameter must be an integer"),
        "{}",
        r.text()
    );
    let r = send(c.http.get(obj(&c, 1, "photos", "k", "r=4"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.text(),
        "Specified w/dw/pw values invalid for bucket n value of 3\n"
    );
    let r = send(
        c.http
            .put(obj(&c, 1, "photos", "k", ""))
            .header("content-type", "text/plain")
            .header("x-riak-vclock", "not base64!")
            .body("x"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Riak objects and native keys never meet.
    let native = send(c.http.get(format!("{}/kv/photos", c.url(1)))).await;
    assert_eq!(native.status, StatusCode::NOT_FOUND);

    // Delete without a vclock deletes what is there; then 404 with the
    // tombstone's vclock and X-Riak-Deleted.
    let d = send(c.http.delete(obj(&c, 1, "photos", "me+at+home", ""))).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text());
    let g = send(c.http.get(obj(&c, 3, "photos", "me+at+home", ""))).await;
    assert_eq!(g.status, StatusCode::NOT_FOUND);
    assert_eq!(g.header("x-riak-deleted").as_deref(), Some("true"));
    assert!(g.header("x-riak-vclock").is_some());
    let d = send(c.http.delete(obj(&c, 1, "photos", "never-there", ""))).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn siblings_are_framed_as_riak_frames_them_and_a_vclock_resolves_them() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    assert_eq!(
        set_props(&c, 1, "carts", serde_json::json!({"allow_mult": true}))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    // Every node reads the property from the cluster (no cached copy yet).
    for i in 2..=3 {
        let p = send(c.http.get(format!("{}/buckets/carts/props", c.url(i)))).await;
        assert_eq!(p.json()["props"]["allow_mult"], true);
    }
    let base = put_text(&c, 1, "carts", "k", "start").await;
    assert_eq!(base.status, StatusCode::NO_CONTENT);
    let start = send(c.http.get(obj(&c, 1, "carts", "k", "r=all"))).await;
    let vclock = start.header("x-riak-vclock").unwrap();
    // Three writes from the same stale vclock, through three nodes.
    for (i, v) in [(1, "apples"), (2, "pears"), (3, "plums")] {
        let r = send(
            c.http
                .put(obj(&c, i, "carts", "k", "w=all"))
                .header("content-type", "text/plain")
                .header("x-riak-vclock", vclock.as_str())
                .body(v),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    }
    let mp = send(
        c.http
            .get(obj(&c, 2, "carts", "k", "r=all"))
            .header("accept", "multipart/mixed, application/json, */*;q=0.5"),
    )
    .await;
    assert_eq!(mp.status, StatusCode::MULTIPLE_CHOICES);
    let ct = mp.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/mixed; boundary=").unwrap();
    let body = mp.text();
    assert!(
        body.starts_with(&format!("\r\n--{boundary}\r\n")),
        "{body:?}"
    );
    assert!(
        body.ends_with(&format!("\r\n--{boundary}--\r\n")),
        "{body:?}"
    );
    let parts: Vec<&str> = body
        .trim_end_matches(&format!("\r\n--{boundary}--\r\n"))
        .split(&format!("\r\n--{boundary}\r\n"))
        .skip(1)
        .collect();
    let mut values = BTreeSet::new();
    let mut etags = Vec::new();
    for p in &parts {
        let (head, value) = p.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Type: text/plain\r\n"), "{head}");
        assert!(head.contains("Last-Modified: "), "{head}");
        assert!(
            head.contains("Link: </buckets/carts>; rel=\"up\""),
            "{head}"
        );
        let etag = head
            .lines()
            .find_map(|l| l.strip_prefix("Etag: "))
            .unwrap()
            .to_string();
        etags.push(etag);
        values.insert(value.to_string());
    }
    assert_eq!(
        values,
        ["apples", "pears", "plums"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    // Without multipart in Accept: Riak's list of vtags; ?vtag= picks one.
    let list = send(c.http.get(obj(&c, 1, "carts", "k", "r=all"))).await;
    assert_eq!(list.status, StatusCode::MULTIPLE_CHOICES);
    assert!(list.text().starts_with("Siblings:\n"));
    for e in &etags {
        assert!(list.text().contains(e.as_str()));
    }
    let one = send(
        c.http
            .get(obj(&c, 1, "carts", "k", &format!("vtag={}", etags[0]))),
    )
    .await;
    assert_eq!(one.status, StatusCode::OK);
    assert!(values.contains(&one.text()));

    // Resolve with the 300's vclock: one value everywhere.
    let r = send(
        c.http
            .put(obj(&c, 3, "carts", "k", "w=all&returnbody=true"))
            .header("content-type", "text/plain")
            .header("x-riak-vclock", mp.header("x-riak-vclock").unwrap())
            .body("apples,pears,plums"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    for i in 1..=3 {
        let g = send(c.http.get(obj(&c, i, "carts", "k", "r=all"))).await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.text(), "apples,pears,plums");
    }

    // A delete from a stale vclock leaves the tombstone as a sibling,
    // marked X-Riak-Deleted in its part.
    let del = send(
        c.http
            .delete(obj(&c, 1, "carts", "k", "w=all"))
            .header("x-riak-vclock", vclock.as_str()),
    )
    .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    let mp = send(
        c.http
            .get(obj(&c, 1, "carts", "k", "r=all"))
            .header("accept", "multipart/mixed"),
    )
    .await;
    assert_eq!(mp.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(mp.text().matches("X-Riak-Deleted: true\r\n").count(), 1);
}

#[tokio::test]
async fn buckets_without_siblings_keep_one_value_the_newest() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    // allow_mult=false is the default: blind writes supersede.
    for v in ["one", "two", "three"] {
        assert_eq!(
            put_text(&c, 1, "plain", "k", v).await.status,
            StatusCode::NO_CONTENT
        );
    }
    let g = send(c.http.get(obj(&c, 2, "plain", "k", "r=all"))).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), "three");
    // What is stored is one value, not three siblings resolved at read.
    set_props(&c, 1, "plain", serde_json::json!({"allow_mult": true})).await;
    let g = send(c.http.get(obj(&c, 1, "plain", "k", "r=all"))).await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    assert_eq!(g.text(), "three");
    // Two blind writes to an allow_mult bucket are siblings; switching the
    // bucket back to allow_mult=false shows the newer.
    put_text(&c, 1, "plain", "k2", "older").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    put_text(&c, 1, "plain", "k2", "newer").await;
    let g = send(c.http.get(obj(&c, 3, "plain", "k2", "r=all"))).await;
    assert_eq!(g.status, StatusCode::MULTIPLE_CHOICES);
    set_props(&c, 3, "plain", serde_json::json!({"allow_mult": false})).await;
    let g = send(c.http.get(obj(&c, 3, "plain", "k2", "r=all"))).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), "newer");
}

#[tokio::test]
async fn bucket_properties_default_validate_and_clear() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let url = |i| format!("{}/buckets/conf/props", c.url(i));
    let p = send(c.http.get(url(1))).await.json()["props"].clone();
    assert_eq!(p["allow_mult"], false);
    assert_eq!(p["last_write_wins"], false);
    assert_eq!(p["n_val"], 3);
    for q in ["r", "w", "dw", "rw"] {
        assert_eq!(p[q], "quorum", "{q}");
    }
    assert_eq!((p["pr"].clone(), p["pw"].clone()), (0.into(), 0.into()));
    assert_eq!(p["notfound_ok"], true);
    assert_eq!(p["basic_quorum"], false);
    assert_eq!(p["name"], "conf");

    let r = set_props(
        &c,
        1,
        "conf",
        serde_json::json!({"n_val": 1, "w": 1, "pw": "one"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let p = send(c.http.get(url(2))).await.json()["props"].clone();
    assert_eq!((p["n_val"].clone(), p["w"].clone()), (1.into(), 1.into()));
    assert_eq!(p["pw"], "one");
    // n_val=1: a write asking for two replicas is refused.
    let r = send(
        c.http
            .put(obj(&c, 2, "conf", "k", "w=2"))
            .header("content-type", "text/plain")
            .body("v"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        put_text(&c, 2, "conf", "k", "v").await.status,
        StatusCode::NO_CONTENT
    );
    let g = send(c.http.get(obj(&c, 3, "conf", "k", "r=all"))).await;
    assert_eq!(g.text(), "v");

    let r = set_props(
        &c,
        1,
        "conf",
        serde_json::json!({"n_val": 4, "allow_mult": "maybe"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let errors = r.json();
    assert!(
        errors.get("n_val").is_some() && errors.get("allow_mult").is_some(),
        "{errors}"
    );
    let r = send(c.http.put(url(1)).body("[1]")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().starts_with("bucket PUT must be a JSON object"));

    let r = send(c.http.delete(url(3))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let p = send(c.http.get(url(1))).await.json()["props"].clone();
    assert_eq!(
        (p["n_val"].clone(), p["w"].clone()),
        (3.into(), "quorum".into())
    );
}

#[tokio::test]
async fn keys_and_buckets_are_listed_across_the_cluster_whole_or_streamed() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let mut keys = BTreeSet::new();
    for _ in 0..30 {
        let r = send(
            c.http
                .post(format!("{}/buckets/many/keys", c.url(1)))
                .header("content-type", "text/plain")
                .body("x"),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let loc = r.header("location").unwrap();
        let key = loc.strip_prefix("/buckets/many/keys/").unwrap().to_string();
        assert!(!key.is_empty() && !key.contains('/'));
        keys.insert(key);
    }
    put_text(&c, 2, "few", "only", "x").await;
    put_text(&c, 2, "gone", "k", "x").await;
    send(c.http.delete(obj(&c, 2, "gone", "k", ""))).await;
    send(
        c.http
            .put(format!("{}/kv/not-a-bucket", c.url(1)))
            .body("native"),
    )
    .await;

    let listed = send(
        c.http
            .get(format!("{}/buckets/many/keys?keys=true", c.url(3))),
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    let got: BTreeSet<String> = listed.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, keys);

    let streamed = send(
        c.http
            .get(format!("{}/buckets/many/keys?keys=stream", c.url(2))),
    )
    .await;
    assert_eq!(streamed.status, StatusCode::OK);
    let text = streamed.text();
    let mut got = BTreeSet::new();
    for chunk in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        let chunk = chunk.unwrap();
        for k in chunk["keys"].as_array().unwrap() {
            assert!(got.insert(k.as_str().unwrap().to_string()), "listed twice");
        }
    }
    assert_eq!(got, keys);

    let buckets = send(c.http.get(format!("{}/buckets?buckets=true", c.url(1)))).await;
    let got: BTreeSet<String> = buckets.json()["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ["few", "many"].iter().map(|s| s.to_string()).collect());
    let streamed = send(c.http.get(format!("{}/buckets?buckets=stream", c.url(3)))).await;
    assert!(streamed.text().contains("\"many\""));

    // A listing that cannot finish in time says so.
    let t = send(c.http.get(format!(
        "{}/buckets/many/keys?keys=stream&timeout=1",
        c.url(1)
    )))
    .await;
    assert!(
        t.text().ends_with("{\"error\":\"timeout\"}"),
        "{}",
        t.text()
    );
}

#[tokio::test]
async fn conditional_writes_and_unmet_quorums_answer_as_riak_does() {
    let mut c = Cluster::start(3, ClusterOptions::default()).await;
    let put_if = |i: usize, header: &'static str, value: String| {
        c.http
            .put(obj(&c, i, "cond", "k", ""))
            .header("content-type", "text/plain")
            .header(header, HeaderValue::from_str(&value).unwrap())
            .body("v")
    };
    let r = send(put_if(1, "if-none-match", "*".into())).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = send(put_if(2, "if-none-match", "*".into())).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let etag = send(c.http.get(obj(&c, 1, "cond", "k", "")))
        .await
        .header("etag")
        .unwrap();
    let r = send(put_if(1, "if-match", "\"nope\"".into())).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
    let r = send(put_if(1, "if-match", etag)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    c.kill(3);
    let down = poll(Duration::from_secs(10), || async {
        let s = send(c.http.get(format!("{}/stats", c.url(1)))).await.json();
        s["connected_nodes"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    })
    .await;
    assert!(down, "n1 never noticed n3 down");
    let r = send(
        c.http
            .put(obj(&c, 1, "cond", "q", "w=all"))
            .header("content-type", "text/plain")
            .body("v"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "Too Many write failures to satisfy W/DW\n");
    let r = send(
        c.http
            .put(obj(&c, 1, "cond", "q", "pw=3"))
            .header("content-type", "text/plain")
            .body("v"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "PW-value unsatisfied: 2/3\n");
    let r = send(c.http.get(obj(&c, 1, "cond", "k", "pr=all"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "PR-value unsatisfied: 2/3\n");
    let r = send(c.http.get(obj(&c, 1, "cond", "k", "r=all"))).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "R-value unsatisfied: 2/3\n");
    // A quorum is still there.
    let r = send(c.http.get(obj(&c, 2, "cond", "k", ""))).await;
    assert_eq!(r.status, StatusCode::OK);

    // The service resources clients probe first.
    let ping = send(c.http.get(format!("{}/ping", c.url(1)))).await;
    assert_eq!(ping.text(), "OK");
    let stats = send(c.http.get(format!("{}/stats", c.url(2)))).await.json();
    assert_eq!(stats["riak_kv_version"], "2.0.0");
    assert!(stats["node_puts_total"].as_u64().is_some());
    let map = send(
        c.http
            .get(format!("{}/", c.url(1)))
            .header("accept", "application/json"),
    )
    .await
    .json();
    assert_eq!(map["riak_kv_wm_buckets"], "/buckets");
}

#[tokio::test]
async fn bucket_types_are_agreed_inherited_and_namespaces_of_their_own() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    // Created and activated through n1 (as `dynkv admin bucket-type` does).
    let (s, _) = c
        .admin(
            1,
            "bucket-types/nosib/create",
            serde_json::json!({"props": {"allow_mult": false, "n_val": 2}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Not usable before it is active.
    let typed = |i, b: &str, k: &str| format!("{}/types/nosib/buckets/{b}/keys/{k}", c.url(i));
    let r = send(c.http.get(typed(2, "b", "k"))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let (s, v) = c
        .admin(1, "bucket-types/nosib/activate", serde_json::Value::Null)
        .await;
    assert_eq!((s, v["active"].clone()), (StatusCode::OK, true.into()));
    let (s, _) = c
        .admin(1, "bucket-types/nosib/activate", serde_json::Value::Null)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = c
        .admin(
            2,
            "bucket-types/maps/create",
            serde_json::json!({"props": {"datatype": "tree"}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Every node learns the type by gossip, and its buckets inherit it.
    for i in [2, 3] {
        assert!(
            poll(Duration::from_secs(10), || async {
                send(c.http.get(format!("{}/types/nosib/props", c.url(i))))
                    .await
                    .status
                    == StatusCode::OK
            })
            .await,
            "n{i} never learnt the type"
        );
    }
    let p = send(
        c.http
            .get(format!("{}/types/nosib/buckets/b/props", c.url(3))),
    )
    .await
    .json()["props"]
        .clone();
    assert_eq!(
        (p["allow_mult"].clone(), p["n_val"].clone()),
        (false.into(), 2.into())
    );
    // A bucket of another type starts from allow_mult=true.
    let (s, _) = c
        .admin(3, "bucket-types/multi/create", serde_json::json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    c.admin(3, "bucket-types/multi/activate", serde_json::Value::Null)
        .await;

    // A typed bucket is its own namespace: b/k of nosib is not b/k of default.
    let put = |url: String, v: &'static str| {
        send(c.http.put(url).header("content-type", "text/plain").body(v))
    };
    assert_eq!(
        put(typed(1, "b", "k"), "typed").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        put_text(&c, 1, "b", "k", "plain").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(send(c.http.get(typed(2, "b", "k"))).await.text(), "typed");
    assert_eq!(
        send(c.http.get(obj(&c, 3, "b", "k", ""))).await.text(),
        "plain"
    );
    let keys = send(
        c.http
            .get(format!("{}/types/nosib/buckets/b/keys?keys=true", c.url(3))),
    )
    .await
    .json();
    assert_eq!(keys["keys"], serde_json::json!(["k"]));
    let buckets = send(
        c.http
            .get(format!("{}/types/nosib/buckets?buckets=true", c.url(2))),
    )
    .await
    .json();
    assert_eq!(buckets["buckets"], serde_json::json!(["b"]));

    // Updating the type reaches its buckets; what creation fixed stays.
    let r = send(
        c.http
            .put(format!("{}/types/nosib/props", c.url(2)))
            .header("content-type", "application/json")
            .body(r#"{"props":{"allow_mult":true}}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = send(
        c.http
            .put(format!("{}/types/nosib/props", c.url(2)))
            .header("content-type", "application/json")
            .body(r#"{"props":{"write_once":true}}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        poll(Duration::from_secs(10), || async {
            send(
                c.http
                    .get(format!("{}/types/nosib/buckets/b/props", c.url(1))),
            )
            .await
            .json()["props"]["allow_mult"]
                == true
        })
        .await
    );
    let (s, v) = c.admin(3, "bucket-types", serde_json::Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "multi", "nosib"]);
}
