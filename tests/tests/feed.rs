//! Watching a key and following the change feed, across real processes:
//! a watch learns of a write through another node from the key's
//! primaries; a watch times out to 304; a feed consumer that moves between
//! nodes (one of them killed) sees every acknowledged write once; an event
//! stream resumes on another node with `Last-Event-ID`; a cursor older than
//! retention gets 410 with the oldest valid cursor.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};

/// The feed reads this far behind the clocks: the harness's request
/// timeout (2 s) plus its ping interval, as the node documentation asks.
const SETTLE: &str = "2500ms";

fn feed_options() -> ClusterOptions {
    ClusterOptions::default().set("DYNKV__FEED__SETTLE", SETTLE)
}

/// Starts `k` nodes and waits until each sees every other up and a write
/// reaches every replica.
async fn start(k: usize, opts: ClusterOptions) -> Cluster {
    let c = Cluster::start(k, opts).await;
    for i in 1..=k {
        c.wait_sees_all_up(i).await;
    }
    assert!(
        poll(Duration::from_secs(30), || async {
            c.put(1, "warmup", "w", "w=all", None).await.status == StatusCode::NO_CONTENT
        })
        .await,
        "the cluster takes writes"
    );
    c
}

/// A write through node `i` (`value: None`: a delete), retried while it
/// fails: the acknowledged reply and its value, and the values of the
/// attempts that failed (which may or may not be stored).
async fn write(
    c: &Cluster,
    i: usize,
    key: &str,
    value: Option<&str>,
    ctx: Option<&str>,
) -> (dynkv_tests::Reply, Option<String>, Vec<String>) {
    let mut failed = Vec::new();
    for attempt in 0..5 {
        let v = value.map(|v| format!("{v}#{attempt}"));
        let r = match &v {
            Some(v) => c.put(i, key, v, "", ctx).await,
            None => c.delete(i, key, "", ctx).await,
        };
        if r.status.is_success() {
            return (r, v, failed);
        }
        failed.push(v.unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{key}: five attempts failed");
}

/// The answer to a watch: status, context, body.
type Watched = (StatusCode, Option<String>, String);

/// A GET of `key` through node `i` with `?watch=true&{query}` and
/// `context`.
async fn watch(c: &Cluster, i: usize, key: &str, query: &str, context: &str) -> Watched {
    watch_answer(watch_request(c, i, key, query, context)).await
}

/// [`watch`] as a task of its own, for a watch that waits while the test
/// writes.
fn spawn_watch(
    c: &Cluster,
    i: usize,
    key: &str,
    query: &str,
    context: &str,
) -> tokio::task::JoinHandle<Watched> {
    tokio::spawn(watch_answer(watch_request(c, i, key, query, context)))
}

/// Waits until one watch waits on node `i` (its `dynkv_watches_active`).
async fn wait_watching(c: &Cluster, i: usize) {
    let waiting = poll(Duration::from_secs(10), || async {
        c.metric(i, "dynkv_watches_active", "").await == 1.0
    })
    .await;
    assert!(waiting, "no watch waits on n{i}");
}

fn watch_request(
    c: &Cluster,
    i: usize,
    key: &str,
    query: &str,
    context: &str,
) -> reqwest::RequestBuilder {
    c.http
        .get(c.key_url(i, key, &format!("watch=true&{query}")))
        .header("x-dynkv-context", context)
        .timeout(Duration::from_secs(60))
}

async fn watch_answer(request: reqwest::RequestBuilder) -> Watched {
    let r = request.send().await.expect("watch sent");
    let status = r.status();
    let ctx = r
        .headers()
        .get("x-dynkv-context")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, ctx, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_watch_on_one_node_returns_soon_after_a_write_through_another() {
    // 4 nodes, N=3: the watching node is not a replica of the key, so it
    // can only learn of the write from the key's primaries.
    let c = start(4, feed_options()).await;
    let key = c.find_key("watched", |p, _| !p.contains(&1)).await;
    let first = c.put(2, &key, "v1", "w=all", None).await;
    assert_eq!(first.status, StatusCode::NO_CONTENT, "{}", first.text());
    let ctx = first.context.clone().unwrap();

    let watcher = {
        let watch = spawn_watch(&c, 1, &key, "timeout_ms=20000", &ctx);
        tokio::spawn(async move { (watch.await.unwrap(), Instant::now()) })
    };
    // The watch is waiting (counted), and has not answered.
    wait_watching(&c, 1).await;
    assert!(!watcher.is_finished());

    let written = Instant::now();
    let second = c.put(3, &key, "v2", "", Some(&ctx)).await;
    assert_eq!(second.status, StatusCode::NO_CONTENT, "{}", second.text());
    let ((status, new_ctx, body), answered) = watcher.await.unwrap();
    let latency = answered.saturating_duration_since(written);
    println!("watch answered {latency:?} after the write through another node");
    // Answered with the new version (not the 304 of its 20 s timeout).
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "v2");
    assert_ne!(new_ctx.as_deref(), Some(ctx.as_str()));
    assert_eq!(c.metric(1, "dynkv_watches_active", "").await, 0.0);

    // Watching with the new context waits again; a delete through a third
    // node ends it with a 404 that carries the tombstone's context.
    let new_ctx = new_ctx.unwrap();
    let w2 = spawn_watch(&c, 4, &key, "timeout_ms=20000", &new_ctx);
    wait_watching(&c, 4).await;
    let del = c.delete(2, &key, "", Some(&new_ctx)).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.text());
    let (status, ctx3, _) = w2.await.unwrap();
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(ctx3.is_some_and(|c| c != new_ctx));
}

#[tokio::test]
async fn a_watch_times_out_to_304_and_without_a_context_is_a_read() {
    let c = start(3, feed_options().set("DYNKV__FEED__MAX_WAITING", "1")).await;
    let w = c.put(1, "quiet", "same", "w=all", None).await;
    let ctx = w.context.unwrap();
    let started = Instant::now();
    let (status, back, body) = watch(&c, 2, "quiet", "timeout_ms=700", &ctx).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(back.as_deref(), Some(ctx.as_str()), "the same context");
    assert!(body.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(700));

    // Without a context: answered at once, like a read.
    let r = c
        .http
        .get(c.key_url(3, "quiet", "watch=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "same");

    // A context that has not seen the stored version: answered at once.
    let older = c
        .put(1, "quiet-2", "a", "w=all", None)
        .await
        .context
        .unwrap();
    c.put(1, "quiet-2", "b", "w=all", Some(&older)).await;
    let (status, _, body) = watch(&c, 3, "quiet-2", "timeout_ms=20000", &older).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "b"));

    // A key never written: the 404's context has seen nothing, so a watch
    // with it waits for the first write.
    let fresh = c.get(2, "fresh", "").await;
    assert_eq!(fresh.status, StatusCode::NOT_FOUND);
    let empty = fresh.context.unwrap();
    let waiting = spawn_watch(&c, 2, "fresh", "timeout_ms=20000", &empty);
    wait_watching(&c, 2).await;
    assert_eq!(
        c.put(3, "fresh", "first", "", None).await.status,
        StatusCode::NO_CONTENT
    );
    let (status, _, body) = waiting.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "first"));

    // Bad parameters are 400s with the JSON error body.
    let (status, _, body) = watch(&c, 1, "quiet", "timeout_ms=0", &ctx).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("bad_parameter"), "{body}");
    let r = c
        .http
        .get(c.key_url(1, "quiet", "watch=maybe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // One waiting watch per node here (feed.max_waiting = 1): a second is
    // refused with a clear 503, and takes nothing from reads.
    let first = spawn_watch(&c, 1, "quiet", "timeout_ms=3000", &ctx);
    wait_watching(&c, 1).await;
    let (status, _, body) = watch(&c, 1, "quiet", "timeout_ms=3000", &ctx).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("too_many_watches"), "{body}");
    assert_eq!(c.get(1, "quiet", "").await.status, StatusCode::OK);
    assert_eq!(first.await.unwrap().0, StatusCode::NOT_MODIFIED);
    assert_eq!(c.metric(1, "dynkv_waits_refused_total", "").await, 1.0);
}

/// One long-poll answer of `/feed` through node `i`.
async fn feed_once(
    c: &Cluster,
    i: usize,
    query: &str,
) -> Result<(Vec<serde_json::Value>, String), (u16, String)> {
    let r = c
        .http
        .get(format!("{}/feed?{query}", c.url(i)))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .map_err(|e| (0, e.to_string()))?;
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    if status != 200 {
        return Err((status, body));
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    Ok((
        v["events"].as_array().unwrap().clone(),
        v["cursor"].as_str().unwrap().to_string(),
    ))
}

#[tokio::test]
async fn a_feed_consumer_that_switches_nodes_mid_stream_loses_and_duplicates_nothing() {
    let mut c = start(3, feed_options()).await;
    // Acknowledged writes under the prefix, as (key, dot) -> value (None:
    // a delete), in the order they were made per key.
    let mut acked: BTreeMap<(String, String), Option<String>> = BTreeMap::new();
    let mut order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Keys with a failed attempt, which may have left a version too.
    let mut uncertain: BTreeSet<String> = BTreeSet::new();
    let mut contexts: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..3 {
        for k in 0..15 {
            let key = format!("user/{k}");
            let value = format!("{key}={round}");
            let i = 1 + (k + round) % 3;
            let ctx = contexts.get(&key).cloned();
            let (r, v, failed) = write(&c, i, &key, Some(&value), ctx.as_deref()).await;
            if !failed.is_empty() {
                uncertain.insert(key.clone());
            }
            contexts.insert(key.clone(), r.context.clone().unwrap());
            let dot = r.dot.clone().unwrap();
            order.entry(key.clone()).or_default().push(dot.clone());
            acked.insert((key, dot), v);
        }
        // Keys outside the prefix never show up.
        write(&c, 1, &format!("other/{round}"), Some("x"), None).await;
    }
    let ctx = contexts.get("user/0").cloned();
    let (r, _, failed) = write(&c, 2, "user/0", None, ctx.as_deref()).await;
    if !failed.is_empty() {
        uncertain.insert("user/0".into());
    }
    let dot = r.dot.clone().unwrap();
    order.entry("user/0".into()).or_default().push(dot.clone());
    acked.insert(("user/0".into(), dot), None);

    // Consume from n1 in small batches, then kill n1 and go on through n2
    // and n3 with the cursor, while more writes arrive.
    let mut got: Vec<serde_json::Value> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut node = 1;
    let mut batches_on_n1 = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut killed = false;
    let mut late_writes = false;
    while Instant::now() < deadline {
        let q = match &cursor {
            Some(cur) => format!("prefix=user/&limit=7&timeout_ms=2000&cursor={cur}"),
            None => "prefix=user/&limit=7&timeout_ms=2000".to_string(),
        };
        match feed_once(&c, node, &q).await {
            Ok((events, next)) => {
                got.extend(events.iter().cloned());
                cursor = Some(next);
                if node == 1 && !events.is_empty() {
                    batches_on_n1 += 1;
                }
            }
            Err((status, body)) => {
                assert!(
                    status == 0 || status == 503,
                    "only an unreachable node or a 503 may interrupt the feed: {status} {body}"
                );
                node = node % 3 + 1;
                continue;
            }
        }
        if node == 1 && batches_on_n1 >= 2 && !killed {
            c.kill(1);
            killed = true;
            node = 2;
        } else if killed && node == 2 && !late_writes {
            for k in 0..5 {
                let key = format!("user/late-{k}");
                let (r, v, failed) = write(&c, 2 + k % 2, &key, Some("late"), None).await;
                if !failed.is_empty() {
                    uncertain.insert(key.clone());
                }
                let dot = r.dot.clone().unwrap();
                order.entry(key.clone()).or_default().push(dot.clone());
                acked.insert((key, dot), v);
            }
            late_writes = true;
            node = 3;
        }
        let seen: BTreeSet<(String, String)> = got
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap().to_string(),
                    e["dot"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if late_writes && acked.keys().all(|k| seen.contains(k)) {
            break;
        }
    }
    assert!(
        killed && late_writes,
        "the consumer moved through the nodes"
    );

    // Every acknowledged write, once, with its value; nothing else.
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &got {
        let key = e["key"].as_str().unwrap().to_string();
        assert!(key.starts_with("user/"), "{e}");
        *count
            .entry((key, e["dot"].as_str().unwrap().to_string()))
            .or_default() += 1;
        match acked.get(&(
            e["key"].as_str().unwrap().to_string(),
            e["dot"].as_str().unwrap().to_string(),
        )) {
            Some(Some(v)) => assert_eq!(e["value"].as_str(), Some(v.as_str()), "{e}"),
            Some(None) => assert_eq!(e["deleted"], true, "{e}"),
            None => assert!(
                uncertain.contains(e["key"].as_str().unwrap()),
                "an event for a write never made: {e}"
            ),
        }
    }
    let dups: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "delivered twice: {dups:?}");
    let missing: Vec<_> = acked.keys().filter(|k| !count.contains_key(*k)).collect();
    assert!(missing.is_empty(), "missing from the feed: {missing:?}");
    // Per key, in the order the writes were made (causal order here).
    for (key, dots) in &order {
        let seen: Vec<String> = got
            .iter()
            .filter(|e| e["key"] == key.as_str())
            .map(|e| e["dot"].as_str().unwrap().to_string())
            .filter(|d| dots.contains(d))
            .collect();
        assert_eq!(&seen, dots, "order of {key}");
    }
}

/// Reads an event stream until `want` change events arrived (or the time
/// is up); returns them and the last `id:` seen.
async fn read_stream(
    c: &Cluster,
    i: usize,
    last_event_id: Option<&str>,
    want: usize,
) -> (Vec<serde_json::Value>, Option<String>) {
    let mut req = c
        .http
        .get(format!("{}/feed?prefix=s/", c.url(i)))
        .header("accept", "text/event-stream")
        .timeout(Duration::from_secs(60));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut r = r;
    let mut buf = String::new();
    let mut events = Vec::new();
    let mut last_id = last_event_id.map(str::to_string);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    while events.len() < want {
        let chunk = match tokio::time::timeout_at(deadline, r.chunk()).await {
            Ok(Ok(Some(b))) => b,
            _ => break,
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (None, None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    kind = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = Some(v.to_string());
                }
            }
            if id.is_some() {
                last_id = id;
            }
            if kind.as_deref() == Some("change") && events.len() < want {
                events.push(serde_json::from_str(&data.unwrap()).unwrap());
                if events.len() == want {
                    // Stop right after this event: what a client that lost
                    // its connection here would have.
                    return (events, last_id);
                }
            }
        }
    }
    (events, last_id)
}

#[tokio::test]
async fn an_event_stream_resumes_on_another_node_with_last_event_id() {
    let c = start(3, feed_options()).await;
    let mut dots = BTreeSet::new();
    for k in 0..12 {
        let key = format!("s/{k}");
        let r = c.put(1 + k % 3, &key, "v", "", None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        dots.insert((key, r.dot.unwrap()));
    }
    let (first, id) = read_stream(&c, 1, None, 5).await;
    assert_eq!(first.len(), 5);
    let id = id.expect("events carry ids");
    let (rest, _) = read_stream(&c, 2, Some(&id), 7).await;
    assert_eq!(rest.len(), 7);
    let all: Vec<(String, String)> = first
        .iter()
        .chain(&rest)
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                e["dot"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let unique: BTreeSet<(String, String)> = all.iter().cloned().collect();
    assert_eq!(unique.len(), all.len(), "no event twice: {all:?}");
    assert_eq!(unique, dots);
}

#[tokio::test]
async fn an_expired_cursor_gets_410_with_the_oldest_valid_cursor() {
    let c = start(
        3,
        feed_options()
            // Longer than the settle, so an entry is served before it goes.
            .set("DYNKV__FEED__RETENTION", "4s")
            .set("DYNKV__FEED__TRIM_INTERVAL", "200ms"),
    )
    .await;
    assert_eq!(
        c.put(1, "e/1", "a", "w=all", None).await.status,
        StatusCode::NO_CONTENT
    );
    // A cursor from when the feed had just this write.
    let mut cursor = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while cursor.is_none() && Instant::now() < deadline {
        if let Ok((events, next)) = feed_once(&c, 1, "prefix=e/&timeout_ms=500").await
            && !events.is_empty()
        {
            cursor = Some(next);
        }
    }
    let old = cursor.expect("the first write shows up");
    // Malformed cursors are 400s.
    let bad = feed_once(&c, 2, "cursor=!!!").await.unwrap_err();
    assert_eq!(bad.0, 400);
    assert!(bad.1.contains("bad_cursor"), "{}", bad.1);

    // More writes; then the logs are trimmed past the old cursor.
    assert_eq!(
        c.put(2, "e/2", "b", "w=all", None).await.status,
        StatusCode::NO_CONTENT
    );
    let mut gone = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while gone.is_none() && Instant::now() < deadline {
        match feed_once(&c, 3, &format!("prefix=e/&timeout_ms=200&cursor={old}")).await {
            Err((410, body)) => gone = Some(body),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let body: serde_json::Value =
        serde_json::from_str(&gone.expect("the old cursor expires")).unwrap();
    assert_eq!(body["code"], "cursor_expired");
    let oldest = body["oldest_cursor"].as_str().unwrap();
    // The oldest valid cursor is served (on any node).
    let (_, next) = feed_once(&c, 1, &format!("prefix=e/&timeout_ms=200&cursor={oldest}"))
        .await
        .expect("the oldest cursor is valid");
    assert!(!next.is_empty());
    assert!(c.metric(1, "dynkv_feed_trimmed_entries_total", "").await >= 1.0);
}
