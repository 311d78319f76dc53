//! The public key-value API: `GET`, `PUT` and `DELETE /kv/{key}`, an
//! adapter over the HTTP core ([`crate::http`]) in the words of DESIGN.md
//! §4 (JSON errors `{"error", "code"}`).
//!
//! - Every answer carries `X-Dynkv-Context`, the opaque token to send back
//!   with the next write of the key.
//! - GET: 200 with the value when there is exactly one sibling; 300 Multiple
//!   Choices when there are several (`multipart/mixed`, or JSON with
//!   `Accept: application/json`); 404 with the context when the key was
//!   never written or every sibling is a tombstone.
//! - PUT / DELETE: 204 with the new context; a DELETE writes a tombstone.
//! - Query parameters: `r`, `w` (`one|quorum|all|1..N`), `sloppy`
//!   (`true|false`), `timeout_ms`.
//! - Every answer the coordinator gave, success or failure, carries
//!   `X-Dynkv-Replicas: asked=A answered=B repaired=C sloppy=D`: what the
//!   key's replicas did before the client was answered
//!   ([`dynkv_rpc::messages::ReplicaReport`] defines each number). A
//!   request refused before any replica is involved (a bad parameter, a
//!   value too large) has no such header.
//! - `GET ...?watch=true` with `X-Dynkv-Context` (even the context of a
//!   404, which has seen nothing: then any write ends the wait) waits until
//!   the key holds a version that context has not seen and answers as a
//!   read does, or
//!   answers 304 Not Modified with the same context after `timeout_ms`
//!   (default `feed.default_wait`, at most `feed.max_wait`); without a
//!   context it is a read. A watch takes no admission permit: it holds one
//!   of `feed.max_waiting` slots (503 `too_many_watches` past them), and
//!   learns of writes from the key's primaries (`dynkv_quorum::feed`).

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dynkv_quorum::ReadOptions;
use dynkv_rpc::messages::{Quorum, ReplicaReport, WriteOutcome, WriteRequest};
use dynkv_vclock::{Content, ContextKey, Object, VersionVector, decode_context, encode_context};

use crate::http::admit::{Refusals, admit};
use crate::http::input::{self, BodyError, MetadataError, NameError};
use crate::http::observe::observed;
use crate::http::params::{Allowed, ParamError, Params};
use crate::http::siblings::{self, DEFAULT_CONTENT_TYPE, Framing};
use crate::{ApiError, AppState};

/// Header carrying the causal context token.
pub const CONTEXT_HEADER: &str = "x-dynkv-context";

/// Header reporting what the replicas did for the request.
pub const REPLICAS_HEADER: &str = "x-dynkv-replicas";

/// The coordinator's answer (or its error) with the replica report on it,
/// which the node's metrics also count.
fn reported(
    state: &AppState,
    op: &'static str,
    result: Result<Response, ApiError>,
    report: ReplicaReport,
) -> Response {
    state.metrics.replica_report(op, &report);
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    if let Ok(v) = HeaderValue::from_str(&report.to_string()) {
        resp.headers_mut().insert(REPLICAS_HEADER, v);
    }
    resp
}

/// The `/kv` routes. The body limit applies before the body is buffered.
pub fn router(state: &AppState) -> Router<AppState> {
    let m = &state.metrics;
    Router::new()
        .route(
            "/kv/{*key}",
            get(observed(m, "get", get_key))
                .put(observed(m, "put", put_key))
                .delete(observed(m, "delete", delete_key)),
        )
        .route("/kv", get(empty_key).put(empty_key).delete(empty_key))
        .route("/kv/", get(empty_key).put(empty_key).delete(empty_key))
        .layer(DefaultBodyLimit::max(state.limits.max_value_bytes))
        .layer(from_fn_with_state(state.clone(), admit_unless_watch))
}

/// The bulkhead ([`admit`]) for every request but a watch, which waits
/// without a permit (it has a slot of its own, see [`watch_key`]).
async fn admit_unless_watch(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let watch = req.method() == axum::http::Method::GET
        && req
            .uri()
            .query()
            .is_some_and(|q| q.contains("watch=") && Params::parse(q).get("watch") == Some("true"));
    if watch {
        return next.run(req).await;
    }
    admit(State((state, REFUSALS)), req, next).await
}

/// The bulkhead's refusals ([`admit`]) in this API's words.
const REFUSALS: Refusals = Refusals {
    overloaded,
    body_timeout,
};

/// 503 `overloaded`.
fn overloaded(max: usize) -> Response {
    let message = format!("this node is serving its maximum of {max} requests; retry shortly");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message).into_response()
}

/// 408 `body_timeout`.
fn body_timeout(limit: Duration) -> Response {
    let message = format!(
        "the request body did not arrive within {:.3}s",
        limit.as_secs_f64()
    );
    ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message).into_response()
}

async fn empty_key() -> ApiError {
    ApiError::bad_request(
        "empty_key",
        "the key is empty; use /kv/{key} with 1 to 1024 bytes",
    )
}

// ---------------------------------------------------------------------------
// The core's refusals, in this API's words.

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        let (name, value) = (e.name, &e.value);
        let message = match e.allowed {
            Allowed::Quorum { max } => {
                let n = max.map_or_else(|| "N".to_string(), |n| n.to_string());
                format!("{name} must be one, quorum, all or a number from 1 to {n}, got {value:?}")
            }
            Allowed::Flag => format!("{name} must be true or false, got {value:?}"),
            Allowed::Millis { max } => {
                format!("{name} must be a number from 1 to {max}, got {value:?}")
            }
        };
        ApiError::bad_request("bad_parameter", message)
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        let code = match e {
            NameError::Empty { .. } => "empty_key",
            NameError::TooLong { .. } => "key_too_long",
        };
        ApiError::new(e.status(), code, e.to_string())
    }
}

impl From<MetadataError> for ApiError {
    fn from(e: MetadataError) -> Self {
        ApiError::bad_request("metadata_too_large", e.to_string())
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        let (code, message) = match &e {
            BodyError::TooLarge { limit } => (
                "value_too_large",
                format!("the value is larger than the {limit} bytes allowed"),
            ),
            BodyError::Unreadable(_) => ("bad_body", e.to_string()),
        };
        ApiError::new(e.status(), code, message)
    }
}

// ---------------------------------------------------------------------------
// Typed request parts.

/// The key of the path, validated: percent-encoded UTF-8 of 1 to
/// `limits.max_key_bytes` bytes.
pub struct Key(pub Bytes);

impl FromRequestParts<AppState> for Key {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Key, ApiError> {
        let Path(key) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                ApiError::bad_request(
                    "bad_key",
                    format!("the key is not valid percent-encoded UTF-8: {e}"),
                )
            })?;
        input::check_name("key", key.as_bytes(), state.limits.max_key_bytes)?;
        Ok(Key(Bytes::from(key)))
    }
}

/// The consistency a request asks for: `r`, `w`, `sloppy`, `timeout_ms`,
/// and whether a read is a watch (`watch`, whose `timeout_ms` is its wait).
struct Consistency {
    r: Option<Quorum>,
    w: Option<Quorum>,
    sloppy: bool,
    timeout: Option<Duration>,
    watch: bool,
}

impl FromRequestParts<AppState> for Consistency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Ok(q) = Params::from_request_parts(parts, state).await;
        let n = state.coord.effective_n();
        let watch = q.flag("watch")?.unwrap_or(false);
        let max_ms = if watch {
            state.coord.feed().config().max_wait.as_millis() as u64
        } else {
            state.limits.max_timeout_ms
        };
        Ok(Consistency {
            watch,
            sloppy: q.flag("sloppy")?.unwrap_or(true),
            timeout: q.millis("timeout_ms", max_ms)?.map(Duration::from_millis),
            r: q.quorum_of("r", n)?,
            w: q.quorum_of("w", n)?,
        })
    }
}

/// The causal context a request carries in `X-Dynkv-Context` (empty when
/// absent or blank), its signature verified.
struct Context(VersionVector);

impl FromRequestParts<AppState> for Context {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Context, ApiError> {
        parse_context(&parts.headers, &state.context_key)
            .inspect_err(|_| {
                state.metrics.bad_contexts.inc();
            })
            .map(Context)
    }
}

fn parse_context(headers: &HeaderMap, key: &ContextKey) -> Result<VersionVector, ApiError> {
    match headers.get(CONTEXT_HEADER) {
        None => Ok(VersionVector::new()),
        Some(v) => {
            let s = v.to_str().map_err(|_| {
                ApiError::bad_request("bad_context", "the X-Dynkv-Context header is not ASCII")
            })?;
            if s.trim().is_empty() {
                return Ok(VersionVector::new());
            }
            decode_context(s, key).map_err(|e| {
                ApiError::bad_request("bad_context", format!("invalid X-Dynkv-Context: {e}"))
            })
        }
    }
}

fn context_value(vv: &VersionVector, key: &ContextKey) -> HeaderValue {
    HeaderValue::from_str(&encode_context(vv, key)).expect("base64url is a valid header value")
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("multipart/mixed"))
}

// ---------------------------------------------------------------------------
// Handlers.

async fn get_key(
    State(state): State<AppState>,
    Key(key): Key,
    p: Consistency,
    // A context on a read asks for read-your-writes / monotonic reads.
    Context(after): Context,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // A context header, even one that has seen nothing (the 404 of a key
    // never written), makes a watch wait; without one it is a read.
    let has_context = headers
        .get(CONTEXT_HEADER)
        .is_some_and(|v| !v.as_bytes().trim_ascii().is_empty());
    if p.watch && has_context {
        return watch_key(&state, key, p, after, &headers).await;
    }
    let opts = ReadOptions {
        r: p.r,
        sloppy: p.sloppy,
        // A watch without a context is a read, within the read deadline.
        timeout: p.timeout.filter(|_| !p.watch),
        after: (!after.is_empty()).then_some(after),
        n_val: None,
    };
    let (result, report) = state.coord.get_reported(key, opts).await;
    let answer = result
        .map(|object| render_object(object.as_ref(), &headers, &state.context_key))
        .map_err(ApiError::from);
    Ok(reported(&state, "get", answer, report))
}

/// `GET ?watch=true` with a context: the read answer once the key holds a
/// version the context has not seen, or 304 with the same context after
/// the wait.
async fn watch_key(
    state: &AppState,
    key: Bytes,
    p: Consistency,
    seen: VersionVector,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let hub = state.coord.feed().clone();
    let Some(_slot) = hub.try_wait(false) else {
        return Ok(crate::feed::too_many_waits(hub.config().max_waiting));
    };
    let wait = p.timeout.unwrap_or(hub.config().default_wait);
    let opts = ReadOptions {
        r: p.r,
        sloppy: p.sloppy,
        timeout: None,
        after: None,
        n_val: None,
    };
    match state.coord.watch(key, seen.clone(), opts, wait).await? {
        Some(object) => Ok(render_object(object.as_ref(), headers, &state.context_key)),
        None => {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut()
                .insert(CONTEXT_HEADER, context_value(&seen, &state.context_key));
            Ok(r)
        }
    }
}

/// Renders a read: 200 / 300 / 404 as described in the module doc.
fn render_object(object: Option<&Object>, headers: &HeaderMap, key: &ContextKey) -> Response {
    let ctx = object.map(|o| o.join()).unwrap_or_default();
    let Some(object) = object.filter(|o| !o.is_deleted()) else {
        let mut e = ApiError::new(StatusCode::NOT_FOUND, "not_found", "the key has no value");
        e.context = Some(encode_context(&ctx, key));
        return e.into_response();
    };
    let values = object.values();
    let mut resp = if let [c] = values[..] {
        let mut r = Response::new(Body::from(c.value.clone()));
        if let Ok(v) = HeaderValue::from_str(siblings::content_type(c)) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    } else {
        let framing = if wants_json(headers) {
            Framing::Json(key)
        } else {
            Framing::Multipart(&mark_tombstone)
        };
        siblings::render(StatusCode::MULTIPLE_CHOICES, object, &values, framing)
    };
    resp.headers_mut()
        .insert(CONTEXT_HEADER, context_value(&ctx, key));
    resp
}

/// The part headers of a native multipart sibling: tombstones are parts
/// with an empty body and `X-Dynkv-Deleted: true`.
fn mark_tombstone(c: &Content, head: &mut String) {
    if c.deleted {
        head.push_str("X-Dynkv-Deleted: true\r\n");
    }
}

async fn put_key(
    State(state): State<AppState>,
    Key(key): Key,
    p: Consistency,
    Context(context): Context,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let value = input::body(body, state.limits.max_value_bytes)?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(DEFAULT_CONTENT_TYPE);
    input::check_metadata(&state.limits, ct, &Default::default()).inspect_err(|e| {
        state.metrics.metadata_refused(e.limit);
    })?;
    let content = Content::value(value, ct, 0);
    write(&state, key, p, &headers, context, content).await
}

async fn delete_key(
    State(state): State<AppState>,
    Key(key): Key,
    p: Consistency,
    Context(context): Context,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    write(&state, key, p, &headers, context, Content::tombstone(0)).await
}

/// A PUT's value or a DELETE's tombstone, written through the coordinator.
async fn write(
    state: &AppState,
    key: Bytes,
    p: Consistency,
    headers: &HeaderMap,
    context: VersionVector,
    content: Content,
) -> Result<Response, ApiError> {
    let idempotency_key = parse_idempotency_key(headers)?;
    let timeout = p.timeout.unwrap_or(state.coord.config().default_timeout);
    let op = if content.deleted { "delete" } else { "put" };
    let req = WriteRequest {
        key,
        content,
        context,
        w: p.w.unwrap_or(state.coord.config().default_w),
        sloppy: p.sloppy,
        timeout_ms: timeout.as_millis() as u64,
        idempotency_key,
        n_val: None,
        supersede: false,
        datatype_op: None,
    };
    let (result, report) = state.coord.put_reported(req).await;
    let answer = result
        .map(|outcome| render_write(state, &outcome))
        .map_err(ApiError::from);
    Ok(reported(state, op, answer, report))
}

/// Renders an acknowledged write: 204, or 200 with the siblings it left.
fn render_write(state: &AppState, outcome: &WriteOutcome) -> Response {
    let object = &outcome.object;
    // A write that leaves siblings shows them (as Riak's returnbody does),
    // so the context it returns covers only what the client has been shown.
    let mut resp = if object.sibling_count() > 1 {
        let framing = Framing::Json(&state.context_key);
        siblings::render(StatusCode::OK, object, &object.values(), framing)
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    resp.headers_mut().insert(
        CONTEXT_HEADER,
        context_value(&object.join(), &state.context_key),
    );
    if let Some((actor, counter)) = &outcome.dot
        && let Ok(v) = HeaderValue::from_str(&format!("{actor}:{counter}"))
    {
        resp.headers_mut().insert(DOT_HEADER, v);
    }
    if outcome.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Header naming the version a write created, `actor:counter`.
pub const DOT_HEADER: &str = "x-dynkv-dot";

/// Header naming a client write for deduplication.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

fn parse_idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s.is_empty() || s.len() > MAX_IDEMPOTENCY_KEY_LEN || !s.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(
            "bad_idempotency_key",
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        ));
    }
    Ok(Some(s.to_string()))
}
