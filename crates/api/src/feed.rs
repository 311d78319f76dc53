//! The change feed: `GET /feed?prefix=P&cursor=C`, every acknowledged
//! write and delete of a key under `P`, once per version (dot), in write
//! order, as long-poll JSON batches or as server-sent events
//! (`Accept: text/event-stream`). docs/FEED.md is the contract; the
//! argument that nothing is missed or repeated is in `dynkv_quorum::feed`.
//!
//! - **Cursor**: an opaque token (`base64url(1 ‖ ts u64 BE ‖ h u64 BE)`,
//!   23 characters) naming a position in the one order every node's change
//!   log shares, so it is valid on any node and for any prefix. Absent: the
//!   oldest position the logs keep.
//! - **Long poll** (the default): answers as soon as there is at least one
//!   event, or with none after `timeout_ms` (default `feed.default_wait`);
//!   `{"events": [...], "cursor": "..."}`. The next request sends `cursor`.
//! - **Server-sent events**: one `change` event per version, each with
//!   `id:` set to the cursor just after it, so a client that reconnects
//!   with `Last-Event-ID` resumes exactly after the last event it got;
//!   when a poll finds nothing new but the logs moved on, a `cursor` event
//!   carries the new position (and `id:`), and a comment keeps idle
//!   connections open.
//! - **Errors**: 400 `bad_cursor`/`bad_parameter`; 410 `cursor_expired`
//!   with `oldest_cursor` in the body; 503 `feed_unavailable` when too many
//!   nodes are silent to deliver without a gap (retry, here or elsewhere);
//!   503 `too_many_watches` at `feed.max_waiting`; 404 `feed_disabled`.
//!
//! A feed request takes no client admission permit: it holds one of
//! `feed.max_waiting` slots (shared with watches) for as long as it is open.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use dynkv_quorum::feed::{FeedBatch, FeedError, Position};
use dynkv_rpc::messages::FeedEntry;
use dynkv_vclock::{ContextKey, encode_context};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::http::observe::observed;
use crate::http::params::Params;
use crate::{ApiError, AppState};

/// Leading byte of a cursor token.
pub const CURSOR_FORMAT_V1: u8 = 1;

/// Longest key prefix accepted, bytes (a key is at most 1024).
const MAX_PREFIX_BYTES: usize = 1024;

/// Idle server-sent-event streams send a comment this often.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The `/feed` route (outside the client admission bulkhead).
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new().route("/feed", get(observed(&state.metrics, "feed", feed)))
}

/// Encodes a position as a cursor token.
pub fn encode_cursor(p: Position) -> String {
    let mut b = Vec::with_capacity(17);
    b.push(CURSOR_FORMAT_V1);
    b.extend_from_slice(&p.ts.to_be_bytes());
    b.extend_from_slice(&p.h.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

/// Decodes a cursor token; anything else is a sentence for a 400.
pub fn decode_cursor(token: &str) -> Result<Position, String> {
    let token = token.trim();
    if token.len() > 64 {
        return Err("the cursor is too long to be one".into());
    }
    let b = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| "the cursor is not base64url".to_string())?;
    match b.split_first() {
        Some((&CURSOR_FORMAT_V1, rest)) if rest.len() == 16 => Ok(Position {
            ts: u64::from_be_bytes(rest[..8].try_into().expect("8 bytes")),
            h: u64::from_be_bytes(rest[8..].try_into().expect("8 bytes")),
        }),
        Some((&CURSOR_FORMAT_V1, _)) => Err("the cursor is truncated".into()),
        Some((v, _)) => Err(format!("the cursor has unknown format version {v}")),
        None => Err("the cursor is empty".into()),
    }
}

/// One event in the JSON shape of docs/FEED.md.
pub fn event_json(e: &FeedEntry, key: &ContextKey) -> Value {
    let (k, key_encoding) = match std::str::from_utf8(&e.key) {
        Ok(s) => (s.to_string(), "utf8"),
        Err(_) => (STANDARD.encode(&e.key), "base64"),
    };
    let (value, encoding) = match std::str::from_utf8(&e.content.value) {
        Ok(s) => (s.to_string(), "utf8"),
        Err(_) => (STANDARD.encode(&e.content.value), "base64"),
    };
    let mut v = json!({
        "key": k,
        "dot": format!("{}:{}", e.actor, e.counter),
        "context": encode_context(&e.context, key),
        "deleted": e.content.deleted,
        "modified_micros": e.content.modified_micros,
        "cursor": encode_cursor(Position { ts: e.position.0, h: e.position.1 }),
    });
    if key_encoding != "utf8" {
        v["key_encoding"] = json!(key_encoding);
    }
    if !e.content.deleted {
        v["value"] = json!(value);
        v["encoding"] = json!(encoding);
        v["content_type"] = json!(e.content.content_type);
    }
    v
}

impl From<FeedError> for ApiError {
    fn from(e: FeedError) -> Self {
        let (status, code) = match &e {
            FeedError::Expired { .. } => (StatusCode::GONE, "cursor_expired"),
            FeedError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "feed_unavailable"),
            FeedError::Disabled => (StatusCode::NOT_FOUND, "feed_disabled"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// A feed error as its answer (410 carries the oldest valid cursor).
fn feed_error(e: FeedError) -> Response {
    if let FeedError::Expired { oldest } = &e {
        let body = json!({
            "error": e.to_string(),
            "code": "cursor_expired",
            "oldest_cursor": encode_cursor(*oldest),
        });
        return (StatusCode::GONE, axum::Json(body)).into_response();
    }
    let mut r = ApiError::from(e).into_response();
    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// 503 `too_many_watches`.
pub fn too_many_waits(max: usize) -> Response {
    let mut r = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_watches",
        format!(
            "this node already serves its maximum of {max} watches and feed requests (feed.max_waiting); retry shortly or on another node"
        ),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// What a feed request asks for.
struct FeedQuery {
    prefix: Bytes,
    cursor: Option<Position>,
    wait: Duration,
    limit: usize,
    stream: bool,
}

fn parse_query(state: &AppState, q: &Params, headers: &HeaderMap) -> Result<FeedQuery, ApiError> {
    let config = state.coord.feed().config();
    let prefix = q.get("prefix").unwrap_or("");
    if prefix.len() > MAX_PREFIX_BYTES {
        return Err(ApiError::bad_request(
            "bad_parameter",
            format!("prefix must be at most {MAX_PREFIX_BYTES} bytes"),
        ));
    }
    let stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    // Last-Event-ID (a reconnecting event stream) wins over the parameter.
    let given = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.trim().is_empty())
        .or(q.get("cursor").filter(|s| !s.trim().is_empty()));
    let cursor = match given {
        Some(t) => Some(decode_cursor(t).map_err(|m| {
            ApiError::bad_request("bad_cursor", format!("invalid feed cursor: {m}"))
        })?),
        None => None,
    };
    let max_ms = config.max_wait.as_millis() as u64;
    let wait = q
        .millis("timeout_ms", max_ms)?
        .map_or(config.default_wait, Duration::from_millis);
    let limit = match q.get("limit") {
        None => config.batch,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=config.batch).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!(
                        "limit must be a number from 1 to {}, got {v:?}",
                        config.batch
                    ),
                ));
            }
        },
    };
    Ok(FeedQuery {
        prefix: Bytes::copy_from_slice(prefix.as_bytes()),
        cursor,
        wait,
        limit,
        stream,
    })
}

async fn feed(State(state): State<AppState>, q: Params, headers: HeaderMap) -> Response {
    let query = match parse_query(&state, &q, &headers) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let hub = state.coord.feed().clone();
    let Some(slot) = hub.try_wait(true) else {
        return too_many_waits(hub.config().max_waiting);
    };
    if query.stream {
        return stream(state, query, slot).await;
    }
    let deadline = Instant::now() + query.wait;
    let mut cursor = query.cursor;
    loop {
        let batch = match state
            .coord
            .feed_read(cursor, query.prefix.clone(), query.limit)
            .await
        {
            Ok(b) => b,
            Err(e) => return feed_error(e),
        };
        cursor = Some(batch.cursor);
        let left = deadline.saturating_duration_since(Instant::now());
        if !batch.entries.is_empty() || left.is_zero() {
            drop(slot);
            return long_poll_answer(&batch, &state.context_key);
        }
        tokio::time::sleep(left.min(hub.config().poll_interval)).await;
    }
}

fn long_poll_answer(batch: &FeedBatch, key: &ContextKey) -> Response {
    let events: Vec<Value> = batch.entries.iter().map(|e| event_json(e, key)).collect();
    let body = json!({ "events": events, "cursor": encode_cursor(batch.cursor) });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// The state of one event stream between polls.
struct Stream {
    state: AppState,
    query: FeedQuery,
    cursor: Option<Position>,
    /// The cursor last sent as an `id:`.
    sent: Option<Position>,
    last_write: Instant,
    _slot: dynkv_quorum::feed::WaitSlot,
    done: bool,
}

/// Serves `query` as `text/event-stream` until the client goes or an error
/// ends it (sent as an `error` event with the JSON error body).
async fn stream(state: AppState, query: FeedQuery, slot: dynkv_quorum::feed::WaitSlot) -> Response {
    // The first read answers errors (410, 503) as statuses, not events.
    let first = match state
        .coord
        .feed_read(query.cursor, query.prefix.clone(), query.limit)
        .await
    {
        Ok(b) => b,
        Err(e) => return feed_error(e),
    };
    let initial = render_batch(&first, &state.context_key, query.cursor, true);
    let s = Stream {
        cursor: Some(first.cursor),
        sent: Some(first.cursor),
        last_write: Instant::now(),
        state,
        query,
        _slot: slot,
        done: false,
    };
    let head = futures::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(initial) });
    let rest = futures::stream::unfold(s, |mut s| async move {
        if s.done {
            return None;
        }
        let poll = s.state.coord.feed().config().poll_interval;
        loop {
            tokio::time::sleep(poll).await;
            match s
                .state
                .coord
                .feed_read(s.cursor, s.query.prefix.clone(), s.query.limit)
                .await
            {
                Ok(batch) => {
                    let moved = Some(batch.cursor) != s.sent;
                    s.cursor = Some(batch.cursor);
                    let quiet = s.last_write.elapsed() >= KEEPALIVE;
                    if !batch.entries.is_empty() || (moved && quiet) {
                        let out = render_batch(&batch, &s.state.context_key, s.sent, false);
                        s.sent = Some(batch.cursor);
                        s.last_write = Instant::now();
                        return Some((Ok(out), s));
                    }
                    if quiet {
                        s.last_write = Instant::now();
                        return Some((Ok(Bytes::from_static(b": keepalive\n\n")), s));
                    }
                }
                // Unavailable for now: keep the stream and try again; an
                // expired cursor or a disabled feed ends it.
                Err(e @ FeedError::Unavailable { .. }) => {
                    if s.last_write.elapsed() >= KEEPALIVE {
                        s.last_write = Instant::now();
                        let line = format!(": waiting: {e}\n\n").replace('\r', " ");
                        return Some((Ok(Bytes::from(line)), s));
                    }
                }
                Err(e) => {
                    s.done = true;
                    let body = serde_json::to_string(&error_body(&e)).unwrap_or_default();
                    return Some((
                        Ok(Bytes::from(format!("event: error\ndata: {body}\n\n"))),
                        s,
                    ));
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(futures::StreamExt::chain(head, rest)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn error_body(e: &FeedError) -> Value {
    let mut v = json!({ "error": e.to_string() });
    v["code"] = json!(match e {
        FeedError::Expired { .. } => "cursor_expired",
        FeedError::Unavailable { .. } => "feed_unavailable",
        FeedError::Disabled => "feed_disabled",
    });
    if let FeedError::Expired { oldest } = e {
        v["oldest_cursor"] = json!(encode_cursor(*oldest));
    }
    v
}

/// A batch as events: one `change` per entry with its own cursor as `id:`,
/// then, when the batch's cursor moved past the last one sent, a `cursor`
/// event (`first`: always one, so a client learns where it starts).
fn render_batch(batch: &FeedBatch, key: &ContextKey, sent: Option<Position>, first: bool) -> Bytes {
    let mut out = String::new();
    if first {
        out.push_str("retry: 1000\n\n");
    }
    let mut last = sent;
    for e in &batch.entries {
        let p = Position {
            ts: e.position.0,
            h: e.position.1,
        };
        let data = event_json(e, key).to_string();
        out.push_str(&format!(
            "id: {}\nevent: change\ndata: {data}\n\n",
            encode_cursor(p)
        ));
        last = Some(p);
    }
    if first || last != Some(batch.cursor) {
        let c = encode_cursor(batch.cursor);
        out.push_str(&format!(
            "id: {c}\nevent: cursor\ndata: {{\"cursor\":\"{c}\"}}\n\n"
        ));
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_sentences() {
        let p = Position {
            ts: 1_700_000_000_000_000,
            h: u64::MAX,
        };
        let t = encode_cursor(p);
        assert_eq!(t.len(), 23);
        assert_eq!(decode_cursor(&t), Ok(p));
        assert!(decode_cursor("!!").unwrap_err().contains("base64url"));
        assert!(decode_cursor("").unwrap_err().contains("empty"));
        assert!(decode_cursor(&t[..10]).is_err());
        let future = URL_SAFE_NO_PAD.encode([9u8; 17]);
        assert!(decode_cursor(&future).unwrap_err().contains("version 9"));
        assert!(decode_cursor(&"A".repeat(100)).is_err());
    }

    #[test]
    fn events_show_values_as_text_or_base64_and_tombstones_without_value() {
        let key = ContextKey::new([1; 32]);
        let e = FeedEntry {
            position: (5, 6),
            key: Bytes::from_static(b"user/1"),
            actor: "n1#x".into(),
            counter: 2,
            context: dynkv_vclock::VersionVector::new(),
            content: dynkv_vclock::Content::value(vec![0xffu8, 0], "application/x", 5),
        };
        let v = event_json(&e, &key);
        assert_eq!(v["key"], "user/1");
        assert_eq!(v["dot"], "n1#x:2");
        assert_eq!(v["encoding"], "base64");
        assert_eq!(v["deleted"], false);
        assert_eq!(
            decode_cursor(v["cursor"].as_str().unwrap()),
            Ok(Position { ts: 5, h: 6 })
        );
        let t = FeedEntry {
            content: dynkv_vclock::Content::tombstone(5),
            ..e
        };
        let v = event_json(&t, &key);
        assert_eq!(v["deleted"], true);
        assert!(v.get("value").is_none());
    }
}
