//! Resilience across real processes: idempotent retries, session
//! guarantees across a real (proxied) partition, and the in-flight bulkhead.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};

async fn put_idem(
    c: &Cluster,
    i: usize,
    key: &str,
    value: &str,
    query: &str,
    idem: Option<&str>,
) -> dynkv_tests::Reply {
    let mut req = c
        .http
        .put(c.key_url(i, key, query))
        .header("content-type", "text/plain")
        .body(value.to_string());
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    let r = req.send().await.unwrap();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    let mut reply = dynkv_tests::Reply::read(r).await;
    if replayed {
        reply.retry_after = Some("replayed".into());
    }
    reply
}

#[tokio::test]
async fn a_retry_with_an_idempotency_key_through_another_node_makes_one_version() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let first = put_idem(&c, 1, "order-1", "pay 10", "w=all", Some("client-7-op-1")).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT, "{}", first.text());
    // The client did not see the answer and retries through another node.
    let retry = put_idem(&c, 2, "order-1", "pay 10", "w=all", Some("client-7-op-1")).await;
    assert_eq!(retry.status, StatusCode::NO_CONTENT, "{}", retry.text());
    assert_eq!(
        retry.retry_after.as_deref(),
        Some("replayed"),
        "the retry is recognised"
    );
    let g = c.get(3, "order-1", "r=all").await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.text());
    assert_eq!(g.text(), "pay 10");
    assert_eq!(
        c.metric(2, "dynkv_idempotent_replays_total", "").await
            + c.metric(1, "dynkv_idempotent_replays_total", "").await
            + c.metric(3, "dynkv_idempotent_replays_total", "").await,
        1.0
    );

    // Without a key, Dynamo semantics: the retry is a concurrent write, a second sibling.
    put_idem(&c, 1, "order-2", "pay 10", "w=all", None).await;
    let dup = put_idem(&c, 2, "order-2", "pay 10", "w=all", None).await;
    assert_eq!(
        dup.status,
        StatusCode::OK,
        "a write that leaves siblings shows them"
    );
    let g = c.get(3, "order-2", "r=all").await;
    assert_eq!(g.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(g.values(), vec!["pay 10", "pay 10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_failed_attempt_is_not_applied_twice() {
    let c = Cluster::start(3, ClusterOptions::default().proxied()).await;
    let key = c
        .find_key("pay", |p, _| p.contains(&1) && p.contains(&2))
        .await;
    // The first attempt reaches only n1 (cut off) and times out for the client.
    c.isolate(1);
    let first = put_idem(&c, 1, &key, "pay 20", "w=all&timeout_ms=800", Some("op-42")).await;
    assert_eq!(
        first.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        first.text()
    );
    c.heal();
    // n2 and n3 must see n1 again (their breakers probe after a cooldown).
    c.wait_sees_all_up(2).await;
    c.wait_sees_all_up(3).await;
    let retry = put_idem(&c, 2, &key, "pay 20", "w=all", Some("op-42")).await;
    assert!(retry.status.is_success(), "{}", retry.text());
    let g = c.get(3, &key, "r=all").await;
    assert_eq!(
        g.status,
        StatusCode::OK,
        "one version, no sibling: {}",
        g.text()
    );
    assert_eq!(g.text(), "pay 20");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_read_sees_its_write_or_fails_stale_across_a_partition() {
    let c = Cluster::start(
        3,
        ClusterOptions::default()
            .proxied()
            .set("DYNKV__READ_REPAIR__ENABLED", "false"),
    )
    .await;
    let key = c
        .find_key("session", |p, _| p.contains(&1) && p.contains(&3))
        .await;
    let v1 = c.put(1, &key, "v1", "w=all", None).await;
    assert_eq!(v1.status, StatusCode::NO_CONTENT);
    c.isolate(3);
    let v2 = c.put(1, &key, "v2", "w=1", v1.context.as_deref()).await;
    assert_eq!(v2.status, StatusCode::NO_CONTENT, "{}", v2.text());
    let session = v2.context.clone().unwrap();
    // Through n3, cut off from the write: a session read must not answer v1.
    let r = c
        .http
        .get(c.key_url(3, &key, "r=1&timeout_ms=1500"))
        .header("x-dynkv-context", &session)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("\"code\":\"stale\""), "{body}");
    // The same read without the context shows why: n3 only has v1.
    assert_eq!(c.get(3, &key, "r=1").await.text(), "v1");
    // Once healed, the session read through n3 answers the write.
    c.heal();
    let fresh = poll(Duration::from_secs(10), || async {
        let r = c
            .http
            .get(c.key_url(3, &key, "r=1"))
            .header("x-dynkv-context", &session)
            .send()
            .await
            .unwrap();
        r.status() == StatusCode::OK && r.text().await.unwrap() == "v2"
    })
    .await;
    assert!(fresh, "session read never caught up after healing");
}

#[tokio::test]
async fn requests_over_the_in_flight_limit_get_503_overloaded_and_the_node_stays_healthy() {
    let c = Cluster::start(
        3,
        ClusterOptions::default().set("DYNKV__LIMITS__MAX_INFLIGHT_REQUESTS", "4"),
    )
    .await;
    c.put(1, "slow", "v", "w=all", None).await;
    // A paused replica makes r=all reads hold their slot until the call times out.
    c.pause(3);
    let reads = (0..20).map(|_| {
        let url = c.key_url(1, "slow", "r=all&timeout_ms=1500");
        let http = c.http.clone();
        async move { http.get(url).send().await.unwrap() }
    });
    let replies = futures::future::join_all(reads).await;
    let overloaded: Vec<_> = replies
        .iter()
        .filter(|r| {
            r.status() == StatusCode::SERVICE_UNAVAILABLE
                && r.headers().get("retry-after").is_some()
        })
        .collect();
    assert!(
        overloaded.len() >= 10,
        "only {} of 20 were refused",
        overloaded.len()
    );
    let health = c
        .http
        .get(format!("{}/health", c.url(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    c.resume(3);
    assert!(c.metric(1, "dynkv_overloaded_total", "").await >= 10.0);
    let ok = poll(Duration::from_secs(10), || async {
        c.get(1, "slow", "r=all").await.status == StatusCode::OK
    })
    .await;
    assert!(ok, "the node did not recover");
}
