//! # A Riak-compatible HTTP API
//!
//! Riak KV's HTTP interface (`riak_kv_wm_object` and friends) served over
//! the same [`Coordinator`](dynkv_quorum::Coordinator) as the native `/kv`
//! API, so that existing Riak clients and applications work unchanged and
//! there is one replication path, not two.
//!
//! ## Buckets are namespaces of the one keyspace
//! A Riak `(bucket, key)` is stored under the namespaced key
//! `0xFF ‖ varint(len(bucket)) ‖ bucket ‖ key`
//! ([`dynkv_storage::namespace`]). Native keys are UTF-8 and no UTF-8 string
//! starts with `0xFF`, so the two APIs can never address each other's
//! objects. The ring hashes the whole encoded key, which makes placement
//! bucket-aware, and a bucket's keys are contiguous inside each partition,
//! which makes key and bucket listing range scans ([`listing`]).
//!
//! ## Bucket properties live in the cluster
//! A bucket's properties are an ordinary replicated object under
//! `0xFE ‖ bucket`, written and read through the coordinator (W and R
//! quorum) and resolved last-write-wins ([`props`]). Each node caches them
//! for [`props::CACHE_TTL`]: a change made through one node is seen by the
//! others within that time, much as Riak's ring gossip spreads it.
//!
//! ## Versions and siblings
//! `X-Riak-Vclock` carries our causal context token (a dotted version
//! vector's join), re-encoded in the standard base64 alphabet with padding
//! because Riak clients base64-decode and re-encode it; both alphabets are
//! accepted back. With `allow_mult=true` concurrent writes are kept and a
//! read answers `300 Multiple Choices` exactly as Riak frames it. With
//! `allow_mult=false` (the default for Riak's default bucket type) or
//! `last_write_wins=true` the server resolves siblings as Riak does for such
//! buckets: a write supersedes every sibling its coordinator holds, and a
//! read that still finds concurrent siblings (written through different
//! coordinators) answers the newest by timestamp ([`object`]).
//!
//! ## Errors
//! Riak's HTTP API answers errors with plain-text bodies (`not found`,
//! `R-value unsatisfied: 1/2`, `Missing Content-Type request header`, ...),
//! and clients match on status codes and sometimes on those sentences, so
//! this router follows Riak's conventions ([`RiakError`]) rather than the
//! JSON error bodies of `/kv`. Bucket-property validation errors are JSON,
//! as in Riak.
//!
//! ## Routes
//! `GET|HEAD|PUT|POST|DELETE /buckets/{b}/keys/{k}`, `POST /buckets/{b}/keys`,
//! `GET /buckets/{b}/keys?keys=true|stream`, `GET|PUT|DELETE
//! /buckets/{b}/props`, `GET /buckets?buckets=true|stream`, the same under
//! `/types/default/...`, and `GET /ping`, `/stats`, `/`.

mod http_date;
mod info;
pub mod listing;
pub mod object;
pub mod props;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, RawPathParams, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dynkv_quorum::QuorumError;
use dynkv_vclock::{VersionVector, decode_context, encode_context};

use crate::AppState;

/// The Riak routes, merged into the node's router by [`crate::router`].
pub fn router(state: &AppState) -> Router<AppState> {
    let riak = Riak(Arc::new(Shared {
        props: props::Cache::default(),
        stats: Stats::default(),
    }));
    let objects = Router::new()
        .route(
            "/buckets/{bucket}/keys/{key}",
            get(object::get)
                .put(object::put)
                .post(object::put)
                .delete(object::delete),
        )
        .route(
            "/types/{type}/buckets/{bucket}/keys/{key}",
            get(object::get)
                .put(object::put)
                .post(object::put)
                .delete(object::delete),
        )
        .route(
            "/buckets/{bucket}/keys",
            get(listing::keys).post(object::post),
        )
        .route(
            "/types/{type}/buckets/{bucket}/keys",
            get(listing::keys).post(object::post),
        )
        .layer(DefaultBodyLimit::max(state.limits.max_value_bytes));
    Router::new()
        .merge(objects)
        .route(
            "/buckets/{bucket}/props",
            get(props::get).put(props::put).delete(props::delete),
        )
        .route(
            "/types/{type}/buckets/{bucket}/props",
            get(props::get).put(props::put).delete(props::delete),
        )
        .route("/buckets", get(listing::buckets))
        .route("/types/{type}/buckets", get(listing::buckets))
        .route("/ping", get(info::ping))
        .route("/stats", get(info::stats))
        .route("/", get(info::resources))
        .layer(axum::Extension(riak))
        .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
}

/// State the Riak routes share on one node (reached through an
/// `Extension`, so [`AppState`] stays as it is).
#[derive(Clone)]
pub struct Riak(Arc<Shared>);

struct Shared {
    props: props::Cache,
    stats: Stats,
}

/// Operation counters reported by `GET /stats` (since the node started).
#[derive(Default)]
struct Stats {
    gets: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    siblings_answered: AtomicU64,
    siblings_resolved: AtomicU64,
    key_listings: AtomicU64,
    bucket_listings: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bulkhead for Riak client requests: the node's one in-flight limit
/// (`limits.max_inflight`), shared with `/kv`; past it, 503 at once.
async fn admit(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    crate::kv::admit_or_refuse(&state, req, next, || {
        RiakError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded: this node is serving its maximum number of requests; retry shortly",
        )
        .into_response()
    })
    .await
}

/// An error answered the way Riak's HTTP API does: a status and a
/// plain-text body ending in a newline.
#[derive(Debug)]
pub struct RiakError {
    /// HTTP status.
    pub status: StatusCode,
    /// Plain-text body.
    pub body: String,
    /// Extra headers (the vclock of a deleted key's 404, ...).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl RiakError {
    /// An error with `message` as its body.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let mut body = message.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        RiakError {
            status,
            body,
            headers: Vec::new(),
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// Riak's 404 body.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not found")
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A failed read, in Riak's words (`pr`: primaries were required).
    fn read(e: QuorumError, pr: bool) -> Self {
        match e {
            QuorumError::NotEnough { needed, acked, .. } => {
                let what = if pr { "PR" } else { "R" };
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{what}-value unsatisfied: {acked}/{needed}"),
                )
            }
            other => Self::other(other),
        }
    }

    /// A failed write, in Riak's words (`pw`: primaries were required).
    fn write(e: QuorumError, pw: bool) -> Self {
        match e {
            QuorumError::NotEnough { needed, acked, .. } if pw => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("PW-value unsatisfied: {acked}/{needed}"),
            ),
            QuorumError::NotEnough { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too Many write failures to satisfy W/DW",
            ),
            other => Self::other(other),
        }
    }

    fn other(e: QuorumError) -> Self {
        match e {
            QuorumError::BadRequest(m) | QuorumError::BadContext(m) => Self::bad_request(m),
            e @ QuorumError::TooManySiblings { .. } => {
                Self::new(StatusCode::CONFLICT, e.to_string())
            }
            e @ QuorumError::ObjectTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            QuorumError::Storage(m) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("Error:\n{m}"))
            }
            QuorumError::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m),
            e @ (QuorumError::NotEnough { .. } | QuorumError::Stale { .. }) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

impl IntoResponse for RiakError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

/// Runs a handler, counts it in the HTTP metrics under `op`.
async fn observed<F>(state: &AppState, op: &'static str, handler: F) -> Response
where
    F: std::future::Future<Output = Result<Response, RiakError>>,
{
    let started = std::time::Instant::now();
    let resp = handler.await.unwrap_or_else(IntoResponse::into_response);
    state.metrics.observe(op, resp.status().as_u16(), started);
    resp
}

/// Which bucket (and key) a request names, decoded from the raw path.
#[derive(Clone, Debug)]
pub struct Target {
    /// Bucket name bytes.
    pub bucket: Vec<u8>,
    /// Key bytes, when the path has one.
    pub key: Option<Vec<u8>>,
    /// True when addressed as `/types/default/...` (answers use that form).
    pub typed: bool,
}

impl Target {
    /// Decodes the path parameters the way Riak does (`+` is a space, then
    /// percent-decoding; keys may be any bytes) and checks the bucket type:
    /// only `default` exists here.
    fn from_path(state: &AppState, params: &RawPathParams) -> Result<Target, RiakError> {
        let mut t = Target {
            bucket: Vec::new(),
            key: None,
            typed: false,
        };
        let mut bucket = None;
        for (name, raw) in params.iter() {
            let value = unquote_plus(raw);
            match name {
                "type" => {
                    if value != b"default" {
                        return Err(RiakError::new(
                            StatusCode::NOT_FOUND,
                            format!("Unknown bucket type: {}", String::from_utf8_lossy(&value)),
                        ));
                    }
                    t.typed = true;
                }
                "bucket" => bucket = Some(value),
                "key" => t.key = Some(value),
                _ => {}
            }
        }
        let max = state.limits.max_key_bytes;
        for (what, v) in [("bucket", bucket.as_ref()), ("key", t.key.as_ref())] {
            let Some(v) = v else { continue };
            if v.is_empty() {
                return Err(RiakError::bad_request(format!("the {what} name is empty")));
            }
            if v.len() > max {
                return Err(RiakError::new(
                    StatusCode::URI_TOO_LONG,
                    format!(
                        "the {what} name is {} bytes long; at most {max} are allowed",
                        v.len()
                    ),
                ));
            }
        }
        t.bucket = bucket.unwrap_or_default();
        Ok(t)
    }

    /// The internal key of this bucket and key.
    fn internal_key(&self) -> Vec<u8> {
        dynkv_storage::namespace::key(&self.bucket, self.key.as_deref().unwrap_or_default())
    }

    /// The path of this bucket's key `key`, in the form the request used.
    fn key_path(&self, key: &[u8]) -> String {
        let prefix = if self.typed { "/types/default" } else { "" };
        format!(
            "{prefix}/buckets/{}/keys/{}",
            quote_plus(&self.bucket),
            quote_plus(key)
        )
    }
}

/// Query parameters as a map (`+` and `%XX` decoded).
type QueryMap = HashMap<String, String>;

fn query_map(q: Result<Query<QueryMap>, QueryRejection>) -> Result<QueryMap, RiakError> {
    q.map(|Query(m)| m)
        .map_err(|e| RiakError::bad_request(format!("cannot parse the query string: {e}")))
}

/// A quorum value as Riak accepts it in query strings and bucket
/// properties: a count, `one`, `quorum`, `all`, or `default` (the bucket's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rw {
    /// The bucket's (or built-in) value.
    Default,
    /// One replica.
    One,
    /// A majority of the bucket's `n_val`.
    Quorum,
    /// Every replica.
    All,
    /// An explicit count (0 means "none required" for `pr`/`pw`).
    Num(u32),
}

impl Rw {
    /// Parses the query-string form.
    pub fn parse(s: &str) -> Option<Rw> {
        match s.to_ascii_lowercase().as_str() {
            "default" => Some(Rw::Default),
            "one" => Some(Rw::One),
            "quorum" => Some(Rw::Quorum),
            "all" => Some(Rw::All),
            n => n.parse().ok().map(Rw::Num),
        }
    }

    /// The JSON form used in bucket properties.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Rw::Default => "default".into(),
            Rw::One => "one".into(),
            Rw::Quorum => "quorum".into(),
            Rw::All => "all".into(),
            Rw::Num(n) => n.into(),
        }
    }

    /// Reads the JSON form (a non-negative integer or one of the words).
    pub fn from_json(v: &serde_json::Value) -> Option<Rw> {
        match v {
            serde_json::Value::Number(n) => {
                n.as_u64().and_then(|n| u32::try_from(n).ok()).map(Rw::Num)
            }
            serde_json::Value::String(s) => Rw::parse(s),
            _ => None,
        }
    }

    /// The number of replicas this asks for out of `n`, with `fallback`
    /// standing in for `default`.
    pub fn resolve(self, n: usize, fallback: Rw) -> usize {
        match self {
            Rw::Default => match fallback {
                Rw::Default => n / 2 + 1,
                f => f.resolve(n, Rw::Default),
            },
            Rw::One => 1,
            Rw::Quorum => n / 2 + 1,
            Rw::All => n,
            Rw::Num(k) => k as usize,
        }
    }
}

/// Reads a quorum parameter; the error is Riak's sentence.
fn rw_param(q: &QueryMap, name: &str) -> Result<Rw, RiakError> {
    match q.get(name) {
        None => Ok(Rw::Default),
        Some(v) => Rw::parse(v).ok_or_else(|| {
            RiakError::bad_request(format!(
                "{name} query parameter must be an integer or one of the following words: 'one', 'quorum' or 'all'"
            ))
        }),
    }
}

/// Reads a boolean parameter (`None`: absent or `default`).
fn bool_param(q: &QueryMap, name: &str) -> Result<Option<bool>, RiakError> {
    match q.get(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" => Ok(Some(true)),
        Some(v) if v == "false" => Ok(Some(false)),
        Some(v) if v == "default" => Ok(None),
        Some(_) => Err(RiakError::bad_request(format!(
            "{name} query parameter must be true or false"
        ))),
    }
}

/// Reads `timeout` (milliseconds): Riak's sentence when it is not a number;
/// clamped to the node's `limits.max_timeout_ms`.
fn timeout_param(state: &AppState, q: &QueryMap) -> Result<Duration, RiakError> {
    match q.get("timeout") {
        None => Ok(state.coord.config().default_timeout),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms.min(state.limits.max_timeout_ms))),
            _ => Err(RiakError::bad_request(format!("Bad timeout value {v:?}"))),
        },
    }
}

/// The `X-Riak-Vclock` header value of a context: our token's bytes in the
/// standard base64 alphabet with padding (what Riak clients decode).
pub fn vclock_header(vv: &VersionVector) -> HeaderValue {
    let mut s: String = encode_context(vv)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    HeaderValue::from_str(&s).expect("base64 is a valid header value")
}

/// Decodes an `X-Riak-Vclock` header (standard or URL-safe base64, padded
/// or not). `None`: absent or empty.
pub fn parse_vclock(headers: &axum::http::HeaderMap) -> Result<Option<VersionVector>, RiakError> {
    let Some(v) = headers.get("x-riak-vclock") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| RiakError::bad_request("Invalid X-Riak-Vclock header: not ASCII"))?
        .trim();
    if s.is_empty() {
        return Ok(None);
    }
    let token: String = s
        .chars()
        .filter(|c| *c != '=')
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    decode_context(&token)
        .map(Some)
        .map_err(|e| RiakError::bad_request(format!("Invalid X-Riak-Vclock header: {e}")))
}

/// Decodes a URL component as Riak (mochiweb) does: `+` is a space and
/// `%XX` a byte; a malformed escape is kept literally.
pub fn unquote_plus(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    out
}

fn hex(c: Option<&u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Encodes bytes as a URL component the way Riak clients do (Python's
/// `quote_plus`): alphanumerics and `_.-~` stay, a space is `+`, the rest
/// is `%XX`.
pub fn quote_plus(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for &c in b {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(c as char)
            }
            b' ' => out.push('+'),
            c => out.push_str(&format!("%{c:02X}")),
        }
    }
    out
}

/// When a listing must end: the client's `timeout`, else a minute (capped
/// by `limits.max_timeout_ms`).
fn listing_deadline(state: &AppState, q: &QueryMap) -> Result<Instant, RiakError> {
    let t = match q.get("timeout") {
        None => Duration::from_millis(state.limits.max_timeout_ms.min(60_000)),
        Some(_) => timeout_param(state, q)?,
    };
    Ok(Instant::now() + t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_components_round_trip_like_riak() {
        assert_eq!(unquote_plus("a+b%20c%2Fd"), b"a b c/d");
        assert_eq!(unquote_plus("f%C3%B8%C3%B8"), "føø".as_bytes());
        assert_eq!(unquote_plus("100%"), b"100%");
        assert_eq!(unquote_plus("%zz%4"), b"%zz%4");
        assert_eq!(quote_plus("a b/ø".as_bytes()), "a+b%2F%C3%B8");
        for s in ["plain", "with space", "s/l/a/s/h", "ünï", "%+&="] {
            assert_eq!(unquote_plus(&quote_plus(s.as_bytes())), s.as_bytes());
        }
    }

    #[test]
    fn vclock_headers_use_the_standard_alphabet_and_read_both() {
        let vv = VersionVector::from_pairs([("n1".to_string(), 300), ("n2".to_string(), 7)]);
        let h = vclock_header(&vv);
        let s = h.to_str().unwrap();
        assert_eq!(s.len() % 4, 0);
        assert!(!s.contains('-') && !s.contains('_'));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-riak-vclock", h.clone());
        assert_eq!(parse_vclock(&headers).unwrap(), Some(vv.clone()));
        headers.insert(
            "x-riak-vclock",
            HeaderValue::from_str(&encode_context(&vv)).unwrap(),
        );
        assert_eq!(parse_vclock(&headers).unwrap(), Some(vv));
        headers.insert("x-riak-vclock", HeaderValue::from_static("!!"));
        assert!(parse_vclock(&headers).is_err());
    }

    #[test]
    fn quorum_words_and_numbers() {
        assert_eq!(Rw::parse("QUORUM"), Some(Rw::Quorum));
        assert_eq!(Rw::parse("2"), Some(Rw::Num(2)));
        assert_eq!(Rw::parse("-1"), None);
        assert_eq!(Rw::Quorum.resolve(3, Rw::Default), 2);
        assert_eq!(Rw::Default.resolve(3, Rw::All), 3);
        assert_eq!(Rw::Default.resolve(5, Rw::Default), 3);
        assert_eq!(Rw::Default.resolve(3, Rw::Num(0)), 0);
        assert_eq!(Rw::from_json(&serde_json::json!(1)), Some(Rw::Num(1)));
        assert_eq!(Rw::from_json(&serde_json::json!("one")), Some(Rw::One));
        assert_eq!(Rw::from_json(&serde_json::json!(true)), None);
    }
}
