//! The public key-value API: `GET`, `PUT` and `DELETE /kv/{key}`.
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

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dynkv_quorum::ReadOptions;
use dynkv_rpc::messages::{Quorum, WriteRequest};
use dynkv_vclock::{Content, Object, VersionVector, decode_context, encode_context};

use crate::siblings::{SiblingsJson, multipart};
use crate::{ApiError, AppState};

/// Header carrying the causal context token.
pub const CONTEXT_HEADER: &str = "x-dynkv-context";

/// The `/kv` routes. The body limit applies before the body is buffered.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/kv/{*key}", get(get_key).put(put_key).delete(delete_key))
        .route("/kv", get(empty_key).put(empty_key).delete(empty_key))
        .route("/kv/", get(empty_key).put(empty_key).delete(empty_key))
        .layer(DefaultBodyLimit::max(state.limits.max_value_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
}

/// Bulkhead for client requests: at most `max_inflight` at once; past it
/// the request is refused at once with 503 `overloaded` and `Retry-After`,
/// never queued.
async fn admit(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let max = state.limits.max_inflight;
    admit_or_refuse(&state, req, next, || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("this node is serving its maximum of {max} requests; retry shortly"),
        )
        .into_response()
    })
    .await
}

/// Runs the request under one of the node's in-flight permits, or answers
/// `refusal` with `Retry-After` at once when none is free (counted in
/// metrics). Both client APIs share the permits, so the bound is per node.
pub(crate) async fn admit_or_refuse(
    state: &AppState,
    req: axum::extract::Request,
    next: axum::middleware::Next,
    refusal: impl FnOnce() -> Response,
) -> Response {
    match state.inflight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            state.metrics.overloaded.inc();
            let mut r = refusal();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

async fn empty_key() -> ApiError {
    ApiError::bad_request(
        "empty_key",
        "the key is empty; use /kv/{key} with 1 to 1024 bytes",
    )
}

/// Runs a handler and records its status and latency under `op`.
async fn observed<F>(state: &AppState, op: &'static str, handler: F) -> Response
where
    F: std::future::Future<Output = Result<Response, ApiError>>,
{
    let started = Instant::now();
    let resp = handler.await.unwrap_or_else(IntoResponse::into_response);
    state.metrics.observe(op, resp.status().as_u16(), started);
    resp
}

/// Parsed and validated request parameters.
struct Params {
    r: Option<Quorum>,
    w: Option<Quorum>,
    sloppy: bool,
    timeout: Option<Duration>,
}

fn parse_params(
    state: &AppState,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Params, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::bad_request(
            "bad_parameter",
            format!("cannot parse the query string: {e}"),
        )
    })?;
    let n = state.coord.effective_n();
    let quorum = |name: &str| -> Result<Option<Quorum>, ApiError> {
        q.get(name)
            .map(|v| {
                Quorum::parse(v, n)
                    .map_err(|e| ApiError::bad_request("bad_parameter", format!("{name} {e}")))
            })
            .transpose()
    };
    let sloppy = match q.get("sloppy").map(|s| s.as_str()) {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_parameter",
                format!("sloppy must be true or false, got {other:?}"),
            ));
        }
    };
    let timeout = match q.get("timeout_ms") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms >= 1 && ms <= state.limits.max_timeout_ms => {
                Some(Duration::from_millis(ms))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "bad_parameter",
                    format!(
                        "timeout_ms must be a number from 1 to {}, got {v:?}",
                        state.limits.max_timeout_ms
                    ),
                ));
            }
        },
    };
    Ok(Params {
        r: quorum("r")?,
        w: quorum("w")?,
        sloppy,
        timeout,
    })
}

/// Validates the key from the path.
pub fn parse_key(
    state: &AppState,
    key: Result<Path<String>, PathRejection>,
) -> Result<Bytes, ApiError> {
    let Path(key) = key.map_err(|e| {
        ApiError::bad_request(
            "bad_key",
            format!("the key is not valid percent-encoded UTF-8: {e}"),
        )
    })?;
    if key.is_empty() {
        return Err(ApiError::bad_request("empty_key", "the key is empty"));
    }
    if key.len() > state.limits.max_key_bytes {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "key_too_long",
            format!(
                "the key is {} bytes long; at most {} are allowed",
                key.len(),
                state.limits.max_key_bytes
            ),
        ));
    }
    Ok(Bytes::from(key))
}

fn parse_context(headers: &HeaderMap) -> Result<VersionVector, ApiError> {
    match headers.get(CONTEXT_HEADER) {
        None => Ok(VersionVector::new()),
        Some(v) => {
            let s = v.to_str().map_err(|_| {
                ApiError::bad_request("bad_context", "the X-Dynkv-Context header is not ASCII")
            })?;
            if s.trim().is_empty() {
                return Ok(VersionVector::new());
            }
            decode_context(s).map_err(|e| {
                ApiError::bad_request("bad_context", format!("invalid X-Dynkv-Context: {e}"))
            })
        }
    }
}

fn context_value(vv: &VersionVector) -> HeaderValue {
    HeaderValue::from_str(&encode_context(vv)).expect("base64url is a valid header value")
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("multipart/mixed"))
}

async fn get_key(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    observed(&state, "get", do_get(&state, key, query, &headers)).await
}

async fn do_get(
    state: &AppState,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let key = parse_key(state, key)?;
    let p = parse_params(state, query)?;
    // A context on a read asks for read-your-writes / monotonic reads.
    let after = parse_context(headers)?;
    let opts = ReadOptions {
        r: p.r,
        sloppy: p.sloppy,
        timeout: p.timeout,
        after: (!after.is_empty()).then_some(after),
        n_val: None,
    };
    let object = state.coord.get(key, opts).await?;
    Ok(render_object(object.as_ref(), headers))
}

/// Renders a read: 200 / 300 / 404 as described in the module doc.
pub fn render_object(object: Option<&Object>, headers: &HeaderMap) -> Response {
    let ctx = object.map(|o| o.join()).unwrap_or_default();
    let Some(object) = object.filter(|o| !o.is_deleted()) else {
        let mut e = ApiError::new(StatusCode::NOT_FOUND, "not_found", "the key has no value");
        e.context = Some(encode_context(&ctx));
        return e.into_response();
    };
    let values = object.values();
    let mut resp = if values.len() == 1 {
        let c = values[0];
        let ct = if c.content_type.is_empty() {
            "application/octet-stream"
        } else {
            &c.content_type
        };
        let mut r = Response::new(Body::from(c.value.clone()));
        if let Ok(v) = HeaderValue::from_str(ct) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    } else if wants_json(headers) {
        let mut r = axum::Json(SiblingsJson::of(Some(object))).into_response();
        *r.status_mut() = StatusCode::MULTIPLE_CHOICES;
        r
    } else {
        let (boundary, body) = multipart(object);
        let mut r = Response::new(Body::from(body));
        *r.status_mut() = StatusCode::MULTIPLE_CHOICES;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")).expect("ascii"),
        );
        r
    };
    resp.headers_mut()
        .insert(CONTEXT_HEADER, context_value(&ctx));
    resp
}

async fn put_key(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    observed(
        &state,
        "put",
        write(&state, key, query, &headers, Some(body)),
    )
    .await
}

async fn delete_key(
    State(state): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    observed(&state, "delete", write(&state, key, query, &headers, None)).await
}

/// Converts a body rejection into our error (413 keeps its meaning).
pub(crate) fn body_error(e: BytesRejection, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!("the value is larger than the {limit} bytes allowed"),
        )
    } else {
        ApiError::bad_request("bad_body", format!("cannot read the request body: {e}"))
    }
}

/// PUT (with a body) or DELETE (without).
async fn write(
    state: &AppState,
    key: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: &HeaderMap,
    body: Option<Result<Bytes, BytesRejection>>,
) -> Result<Response, ApiError> {
    let key = parse_key(state, key)?;
    let p = parse_params(state, query)?;
    let context = parse_context(headers)?;
    let content = match body {
        Some(body) => {
            let value = body.map_err(|e| body_error(e, state.limits.max_value_bytes))?;
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/octet-stream");
            Content::value(value, ct, 0)
        }
        None => Content::tombstone(0),
    };
    let idempotency_key = parse_idempotency_key(headers)?;
    let timeout = p.timeout.unwrap_or(state.coord.config().default_timeout);
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
    };
    let outcome = state.coord.put(req).await?;
    let object = &outcome.object;
    // A write that leaves siblings shows them (as Riak's returnbody does),
    // so the context it returns covers only what the client has been shown.
    let mut resp = if object.sibling_count() > 1 {
        axum::Json(SiblingsJson::of(Some(object))).into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    resp.headers_mut()
        .insert(CONTEXT_HEADER, context_value(&object.join()));
    if let Some((actor, counter)) = &outcome.dot
        && let Ok(v) = HeaderValue::from_str(&format!("{actor}:{counter}"))
    {
        resp.headers_mut().insert(DOT_HEADER, v);
    }
    if outcome.replayed {
        resp.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
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
