//! Key and bucket listing: `GET /buckets/{b}/keys?keys=true|stream` and
//! `GET /buckets?buckets=true|stream`.
//!
//! As in Riak these are **expensive**: they visit every partition of the
//! ring, so their cost grows with the data in the whole cluster, and they
//! are meant for development and operations, not for serving requests.
//!
//! A listing asks one replica of each partition (a *covering set*: the
//! replica is chosen in turn among the partition's primaries, so the work
//! is spread over the cluster, and believed-down nodes are skipped; a replica
//! that fails is replaced by the next one, resuming where it stopped). Each
//! replica scans only its local store, in pages of [`PAGE`] keys
//! ([`Request::ListKeys`], [`Request::ListNamespaces`]): keys of one bucket
//! are contiguous in a partition, and distinct buckets are found by seeking
//! past each one. [`CONCURRENCY`] partitions are listed at once.
//!
//! With `=stream` every page is sent as soon as it arrives, as a chunk
//! `{"keys":[...]}` (or `{"buckets":[...]}`) of a chunked response; a
//! failure mid-way ends the stream with `{"error":"..."}`, as Riak does.
//! With `=true` the answer is one JSON document, `{"keys":[...]}`, but it
//! too is written as the pages arrive (a chunked body), so a node never
//! holds a whole listing in memory: at most the pages in flight between
//! the partition scans and the client ([`CONCURRENCY`] pages of [`PAGE`]
//! names, and what the client has not yet read). If the listing fails
//! before its first page the answer is 503 with `{"error":"..."}`; if it
//! fails later the body is cut off without its closing `]}` (the status is
//! already sent), so a client sees a broken transfer, never a short list.
//! `timeout` (milliseconds) bounds the whole listing and fails it with
//! `{"error":"timeout"}`.
//!
//! Like Riak's, a listing reads one replica per partition (R=1): a key
//! written moments ago, or one a replica missed, may be absent. Keys whose
//! every sibling is a tombstone are left out.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dynkv_ring::NodeId;
use dynkv_rpc::messages::{Keys, ListKeys, ListNamespaces};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tokio::sync::mpsc;

use super::RiakError;
use super::request::{Target, listing_deadline};
use super::shared::{Riak, Stats};
use crate::AppState;
use crate::http::params::Params;

/// Keys (or buckets) asked of a replica per call.
pub const PAGE: u32 = 1000;

/// Partitions listed at once.
pub const CONCURRENCY: usize = 4;

/// What to list.
#[derive(Clone)]
enum Listing {
    /// The keys of a bucket (its namespace prefix).
    Keys(Bytes),
    /// The buckets that hold at least one live key (of the bucket type
    /// whose keys start with this).
    Buckets(Bytes),
}

/// What the listing task reports.
pub(super) enum Event {
    /// Some names (keys or buckets), each reported once.
    Batch(Vec<Vec<u8>>),
    /// The listing stopped: `timeout`, or why no replica answered.
    Failed(String),
}

/// `GET /buckets/{b}/keys?keys=true|stream`.
pub async fn keys(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
    q: Params,
) -> Result<Response, RiakError> {
    let deadline = listing_deadline(&state, &q)?;
    let stream = match q.get("keys") {
        Some("stream") => true,
        Some("true") => false,
        // Riak answers the (here: no) bucket properties without `keys`.
        _ => return Ok(Json(json!({})).into_response()),
    };
    Ok(answer(key_events(&state, &riak, &t, deadline), "keys", stream).await)
}

/// `GET /buckets?buckets=true|stream`.
pub async fn buckets(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
    q: Params,
) -> Result<Response, RiakError> {
    let deadline = listing_deadline(&state, &q)?;
    let stream = q.get("buckets") == Some("stream");
    Ok(answer(
        bucket_events(&state, &riak, &t, deadline),
        "buckets",
        stream,
    )
    .await)
}

fn names_json(field: &str, names: &[Vec<u8>]) -> serde_json::Value {
    let names: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    json!({ field: names })
}

/// Runs a listing and answers it, streamed or whole.
/// Starts listing the keys of `t`'s bucket: batches of names until the
/// channel closes, or a failure (the transport-neutral core of the HTTP
/// key listing and the PBC `RpbListKeysReq`).
pub(super) fn key_events(
    state: &AppState,
    riak: &Riak,
    t: &Target,
    deadline: Instant,
) -> mpsc::Receiver<Event> {
    Stats::bump(&riak.stats().key_listings);
    let what = Listing::Keys(Bytes::from(t.bucket_prefix()));
    start(state.clone(), what, deadline)
}

/// Starts listing the buckets of `t`'s type, as [`key_events`] does keys.
pub(super) fn bucket_events(
    state: &AppState,
    riak: &Riak,
    t: &Target,
    deadline: Instant,
) -> mpsc::Receiver<Event> {
    Stats::bump(&riak.stats().bucket_listings);
    let what = Listing::Buckets(Bytes::from(t.type_base()));
    start(state.clone(), what, deadline)
}

async fn answer(mut rx: mpsc::Receiver<Event>, field: &'static str, stream: bool) -> Response {
    if stream {
        let chunks = futures::stream::unfold(rx, move |mut rx| async move {
            let chunk = match rx.recv().await? {
                Event::Batch(names) => names_json(field, &names),
                Event::Failed(e) => json!({ "error": e }),
            }
            .to_string();
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), rx))
        });
        let mut r = Response::new(Body::from_stream(chunks));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return r;
    }
    let first = match rx.recv().await {
        None => return Json(names_json(field, &[])).into_response(),
        Some(Event::Failed(e)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": e }))).into_response();
        }
        Some(Event::Batch(names)) => names,
    };
    let open = Bytes::from(format!("{{\"{field}\":["));
    let doc = Document {
        rx,
        pending: Some(first),
        written: false,
        done: false,
    };
    let rest = futures::stream::unfold(doc, Document::next_chunk);
    let body = futures::stream::once(async move { Ok(open) }).chain(rest);
    let mut r = Response::new(Body::from_stream(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A whole-document listing (`=true`) written page by page.
struct Document {
    rx: mpsc::Receiver<Event>,
    /// The first page, read before the status was chosen.
    pending: Option<Vec<Vec<u8>>>,
    /// Whether a name has been written (the next needs a comma).
    written: bool,
    /// Whether the document is closed (or cut off).
    done: bool,
}

impl Document {
    /// The next piece of the document: a page's names, the closing `]}`,
    /// or an error that cuts the body off.
    async fn next_chunk(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        let page = match self.pending.take() {
            Some(page) => Some(page),
            None => match self.rx.recv().await {
                Some(Event::Batch(page)) => Some(page),
                Some(Event::Failed(e)) => {
                    self.done = true;
                    return Some((Err(std::io::Error::other(e)), self));
                }
                None => None,
            },
        };
        let Some(page) = page else {
            self.done = true;
            return Some((Ok(Bytes::from_static(b"]}")), self));
        };
        let mut out = Vec::new();
        for name in page {
            if self.written {
                out.push(b',');
            }
            self.written = true;
            serde_json::to_writer(&mut out, &String::from_utf8_lossy(&name))
                .expect("a string serialises");
        }
        Some((Ok(Bytes::from(out)), self))
    }
}

/// Starts the listing task; its events arrive on the returned channel,
/// which closes when the listing is complete. Dropping the receiver (the
/// client went away) stops the task.
fn start(state: AppState, what: Listing, deadline: Instant) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(2 * CONCURRENCY);
    tokio::spawn(async move {
        let run = run(state, what, tx.clone());
        let failure = match tokio::time::timeout_at(deadline.into(), run).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(_) => "timeout".to_string(),
        };
        let _ = tx.send(Event::Failed(failure)).await;
    });
    rx
}

async fn run(state: AppState, what: Listing, tx: mpsc::Sender<Event>) -> Result<(), String> {
    let ring = state.coord.ring();
    let n = state.coord.effective_n();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    futures::stream::iter((0..ring.partitions()).map(Ok))
        .try_for_each_concurrent(CONCURRENCY, |partition| {
            let replicas: Vec<NodeId> = ring.walk(partition).into_iter().take(n).cloned().collect();
            list_partition(
                state.clone(),
                what.clone(),
                partition,
                replicas,
                tx.clone(),
                seen.clone(),
            )
        })
        .await
}

/// Lists one partition from one of its replicas, page by page.
async fn list_partition(
    state: AppState,
    what: Listing,
    partition: u32,
    replicas: Vec<NodeId>,
    tx: mpsc::Sender<Event>,
    seen: Arc<Mutex<HashSet<Vec<u8>>>>,
) -> Result<(), String> {
    let coord = &state.coord;
    // Spread the work: start at a different replica for each partition,
    // and try believed-up replicas first. (2i queries ask this node or the
    // first primary instead, `covering_order`; a listing does not, because
    // on a cluster where this node holds every partition it would never
    // leave the node, and a listing is an operator's tool, not a read.)
    let len = replicas.len().max(1);
    let mut order: Vec<NodeId> = (0..replicas.len())
        .map(|i| replicas[(partition as usize + i) % len].clone())
        .collect();
    order.sort_by_key(|r| !coord.health().is_up(r));
    let mut candidates = order.into_iter();
    let mut tried = Vec::new();
    let mut node = candidates
        .next()
        .ok_or_else(|| format!("partition {partition} has no replica"))?;
    let mut after: Option<Bytes> = None;
    loop {
        let timeout = coord.config().rpc_timeout;
        let reply = match &what {
            Listing::Keys(prefix) => {
                let req = ListKeys {
                    partition,
                    prefix: prefix.clone(),
                    after: after.clone(),
                    limit: PAGE,
                };
                coord.ask(&node, req, timeout).await
            }
            Listing::Buckets(base) => {
                let req = ListNamespaces {
                    partition,
                    prefix: base.clone(),
                    after: after.clone(),
                    limit: PAGE,
                };
                coord.ask(&node, req, timeout).await
            }
        };
        let why = match reply {
            // A page is at most what was asked: a replica answering more is
            // refused (the frame limit already bounds its bytes).
            Ok(Keys(items)) if items.len() > PAGE as usize => {
                format!("answered {} names for a page of {PAGE}", items.len())
            }
            Ok(Keys(items)) => {
                let done = items.len() < PAGE as usize;
                after = items.last().cloned();
                let names: Vec<Vec<u8>> = match &what {
                    Listing::Keys(prefix) => items
                        .iter()
                        .filter_map(|k| k.strip_prefix(&prefix[..]).map(<[u8]>::to_vec))
                        .collect(),
                    Listing::Buckets(_) => {
                        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                        items
                            .iter()
                            .filter(|b| seen.insert(b.to_vec()))
                            .map(|b| b.to_vec())
                            .collect()
                    }
                };
                if !names.is_empty() && tx.send(Event::Batch(names)).await.is_err() {
                    return Err("the client went away".into());
                }
                if done {
                    return Ok(());
                }
                continue;
            }
            Err(e) => e.to_string(),
        };
        tried.push(format!("{node}: {why}"));
        node = candidates.next().ok_or_else(|| {
            format!(
                "no replica of partition {partition} could be listed ({})",
                tried.join("; ")
            )
        })?;
    }
}
