//! The client against tiny in-process HTTP servers that play a node's
//! part: what it sends (contexts, idempotency keys, watch parameters) and
//! how it reacts (retries, failover, 304). The real cluster tests are in
//! `tests/tests/client.rs`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dynkv_client::{Client, Context, Routing, Watched};

/// What a fake node saw and how it should answer.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, HeaderMap)>>,
    /// Writes to refuse with 503 before accepting.
    refuse_writes: AtomicU32,
    ring: Mutex<Option<String>>,
    name: String,
}

type Shared = Arc<Seen>;

async fn kv(
    State(s): State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
    _body: Bytes,
) -> Response {
    s.requests
        .lock()
        .unwrap()
        .push((format!("{method} {uri}"), headers.clone()));
    let ctx = headers
        .get("x-dynkv-context")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if q.get("watch").is_some_and(|w| w == "true") {
        if ctx == "seen" {
            return (StatusCode::NOT_MODIFIED, [("x-dynkv-context", "seen")]).into_response();
        }
        if ctx == "plain" {
            // A node that answers a watch as a plain read: the same state.
            return (StatusCode::OK, [("x-dynkv-context", "plain")], "old").into_response();
        }
        return (StatusCode::OK, [("x-dynkv-context", "seen")], "new").into_response();
    }
    if method == axum::http::Method::PUT {
        if s.refuse_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "application/json")],
                r#"{"error":"write needed 2 acknowledgements, got 1","code":"quorum_not_met"}"#,
            )
                .into_response();
        }
        return (
            StatusCode::NO_CONTENT,
            [
                ("x-dynkv-context", "after-write"),
                ("x-dynkv-replicas", "asked=3 answered=2 repaired=0 sloppy=0"),
            ],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            ("x-dynkv-context", "after-read"),
            ("content-type", "text/plain"),
        ],
        s.name.clone(),
    )
        .into_response()
}

async fn ring(State(s): State<Shared>) -> Response {
    match s.ring.lock().unwrap().clone() {
        Some(r) => ([("content-type", "application/json")], r).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A fake node on its own runtime thread: stopping it drops the runtime,
/// which closes its listener and every connection, as a dead node's.
struct Stop(
    Option<tokio::sync::oneshot::Sender<()>>,
    Option<std::thread::JoinHandle<()>>,
);

impl Stop {
    fn stop(mut self) {
        let _ = self.0.take().unwrap().send(());
        self.1.take().unwrap().join().unwrap();
    }
}

async fn serve(name: &str) -> (String, Shared, Stop) {
    let seen = Arc::new(Seen {
        name: name.to_string(),
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/ring", get(ring))
        .route("/kv/{*key}", get(kv).put(kv).delete(kv))
        .with_state(seen.clone());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            tokio::select! {
                _ = axum::serve(l, app) => {}
                _ = rx => {}
            }
        });
    });
    (url, seen, Stop(Some(tx), Some(thread)))
}

/// An observer that keeps (op, status, attempt) of every attempt.
#[derive(Default)]
struct Events(Mutex<Vec<(&'static str, Option<u16>, u32)>>);

impl dynkv_client::Observer for Events {
    fn on_request(&self, e: &dynkv_client::RequestEvent<'_>) {
        assert!(e.node.starts_with("http://127.0.0.1:"));
        self.0
            .lock()
            .unwrap()
            .push((e.op.as_str(), e.status, e.attempt));
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_retried_write_keeps_its_idempotency_key_and_reads_carry_the_session() {
    let (url, seen, _t) = serve("a").await;
    seen.refuse_writes.store(2, Ordering::SeqCst);
    let events = Arc::new(Events::default());
    let c = Client::builder([url.as_str()])
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .observer(events.clone())
        .build()
        .unwrap();
    let w = c.put("k", "v", None).await.unwrap();
    // The hook saw every attempt: the ring fetch (refused), two 503s, the write.
    let seen_by_hook = events.0.lock().unwrap().clone();
    assert_eq!(
        seen_by_hook,
        [
            ("ring", Some(404), 0),
            ("put", Some(503), 0),
            ("put", Some(503), 1),
            ("put", Some(204), 2),
        ]
    );
    assert_eq!(w.context.as_ref().unwrap().as_str(), "after-write");
    assert_eq!(w.replicas.unwrap().answered, 2);
    let reqs = seen.requests.lock().unwrap().clone();
    let puts: Vec<&HeaderMap> = reqs
        .iter()
        .filter(|(l, _)| l.starts_with("PUT"))
        .map(|(_, h)| h)
        .collect();
    assert_eq!(puts.len(), 3, "two refusals, then the write");
    let key = header(puts[0], "idempotency-key").unwrap();
    assert_eq!(key.len(), 32);
    assert!(
        puts.iter()
            .all(|h| header(h, "idempotency-key") == Some(key))
    );
    // The next read asks for at least the state the write left.
    let r = c.get("k").await.unwrap();
    assert_eq!(r.value().unwrap(), "a");
    let reqs = seen.requests.lock().unwrap().clone();
    let (line, h) = reqs.last().unwrap();
    assert_eq!(line, "GET /kv/k");
    assert_eq!(header(h, "x-dynkv-context"), Some("after-write"));
    // And the one after that, the state that read saw.
    c.get("k").await.unwrap();
    let reqs = seen.requests.lock().unwrap().clone();
    assert_eq!(
        header(&reqs.last().unwrap().1, "x-dynkv-context"),
        Some("after-read")
    );
}

#[tokio::test]
async fn without_idempotency_keys_a_refused_write_is_not_retried() {
    let (url, seen, _t) = serve("a").await;
    seen.refuse_writes.store(1, Ordering::SeqCst);
    let c = Client::builder([url.as_str()])
        .idempotency_keys(false)
        .session_capacity(0)
        .build()
        .unwrap();
    let e = c.put("k", "v", None).await.unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(e.code(), Some("quorum_not_met"));
    let reqs = seen.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 1);
    assert!(header(&reqs[0].1, "idempotency-key").is_none());
    // No session: a read carries no context.
    c.get("k").await.unwrap();
    let reqs = seen.requests.lock().unwrap().clone();
    assert!(header(&reqs[1].1, "x-dynkv-context").is_none());
}

#[tokio::test]
async fn watch_sends_its_context_and_tells_unchanged_from_changed() {
    let (url, seen, _t) = serve("a").await;
    let c = Client::builder([url.as_str()])
        .routing(Routing::Direct)
        .build()
        .unwrap();
    let first = c
        .watch("k", None, Duration::from_millis(300))
        .await
        .unwrap();
    let Watched::Changed(f) = first else {
        panic!("no context: answered at once")
    };
    assert_eq!(f.value().unwrap(), "new");
    let ctx = f.context.unwrap();
    let again = c
        .watch("k", Some(&ctx), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(matches!(again, Watched::Unchanged));
    let plain = Context::from_token("plain").unwrap();
    let same = c
        .watch("k", Some(&plain), Duration::from_millis(300))
        .await
        .unwrap();
    assert!(matches!(same, Watched::Unchanged), "{same:?}");
    let reqs = seen.requests.lock().unwrap().clone();
    assert_eq!(reqs[1].0, "GET /kv/k?watch=true&timeout_ms=300");
    assert_eq!(header(&reqs[1].1, "x-dynkv-context"), Some("seen"));
    assert!(Context::from_token(" ").is_none());
}

fn ring_json(partitions: usize, list: &[&str], urls: &[(&str, &str)]) -> String {
    serde_json::json!({
        "node": "a", "epoch": 1, "version": 1, "n_val": list.len(),
        "partitions": partitions, "hash": "xxh3_64",
        "members": urls.iter().map(|(id, u)| serde_json::json!({"id": id, "url": u, "up": true})).collect::<Vec<_>>(),
        "preference_lists": vec![list; partitions],
    })
    .to_string()
}

#[tokio::test]
async fn routes_to_the_primary_and_fails_over_in_ring_order() {
    let (a, seen_a, _ta) = serve("a").await;
    let (b, seen_b, tb) = serve("b").await;
    // B is every key's first primary, A its second.
    let view = ring_json(4, &["b", "a"], &[("a", &a), ("b", &b)]);
    *seen_a.ring.lock().unwrap() = Some(view.clone());
    *seen_b.ring.lock().unwrap() = Some(view);
    let c = Client::builder([a.as_str()])
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    for i in 0..10 {
        let r = c.get(&format!("k{i}")).await.unwrap();
        assert_eq!(r.value().unwrap(), "b", "key k{i} answered by {}", r.node);
    }
    assert_eq!(c.ring().unwrap().preference_list(b"k1"), ["b", "a"]);
    // B goes away: requests fail over to A.
    tb.stop();
    for i in 0..5 {
        let r = c.get(&format!("k{i}")).await.unwrap();
        assert_eq!(r.value().unwrap(), "a");
    }
    // Round-robin spreads requests over both whatever the key.
    let (b2, seen_b2, _tb2) = serve("b").await;
    let view = ring_json(4, &["b", "a"], &[("a", &a), ("b", &b2)]);
    *seen_a.ring.lock().unwrap() = Some(view.clone());
    *seen_b2.ring.lock().unwrap() = Some(view);
    let rr = Client::builder([a.as_str()])
        .routing(Routing::RoundRobin)
        .build()
        .unwrap();
    let mut by = std::collections::HashMap::new();
    for _ in 0..10 {
        let r = rr.get("same-key").await.unwrap();
        *by.entry(r.value().unwrap().clone()).or_insert(0) += 1;
    }
    assert_eq!(by.len(), 2, "{by:?}");
}

#[tokio::test]
async fn a_client_without_a_reachable_node_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Client::builder([format!("http://127.0.0.1:{port}")])
        .retries(1)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .build()
        .unwrap();
    let e = c.get("k").await.unwrap_err();
    assert!(
        matches!(e, dynkv_client::Error::Transport(ref t) if t.never_sent()),
        "{e}"
    );
    assert!(Client::builder(Vec::<String>::new()).build().is_err());
    assert!(Client::builder(["ftp://x"]).build().is_err());
    assert!(c.get("").await.is_err());
}
