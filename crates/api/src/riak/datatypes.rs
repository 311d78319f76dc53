//! Convergent data types over HTTP, as `riak_kv_wm_crdt` serves them:
//! `GET /types/{t}/buckets/{b}/datatypes/{k}` (fetch) and
//! `POST /types/{t}/buckets/{b}/datatypes[/{k}]` (update; without a key
//! the server picks one and answers `201` with `Location`).
//!
//! ## Where the work happens
//! A fetch is an ordinary quorum read whose siblings (concurrent states)
//! are merged with the CRDT merge ([`dynkv_quorum::datatype::merged_state`]).
//! An update is an ordinary write carrying the operation
//! ([`dynkv_rpc::messages::WriteRequest::datatype_op`]): the coordinating
//! primary applies it with its own actor to the merge of the states it
//! holds, and replicates the result with the request's W. This node never
//! applies an operation to a state it read from others.
//!
//! ## Contexts
//! A set's or map's answer carries `"context"`: its version vector, signed
//! and encoded like `X-Riak-Vclock` (with a key derived for data types, so
//! an object vclock is not taken for one), so a client cannot forge one
//! (a forged or altered context is a 400 `bad_context`). Removes with a
//! context remove what it saw; without one, what the coordinator holds,
//! and removing what is not there is `412` with riak_dt's
//! `{precondition,{not_present,X}}` (Riak itself answers 500 with that
//! text).
//!
//! ## Parameters
//! Fetch: `r`, `pr`, `notfound_ok`, `basic_quorum`, `timeout`,
//! `include_context` (default true). Update: `w`, `dw`, `pw`, `timeout`,
//! `returnbody` (default false, as in Riak), `include_context`.
//!
//! ## Which type a bucket holds
//! [`bucket_datatype`] reads the `datatype` and `hll_precision` properties
//! the bucket inherits from its bucket type; a bucket whose type names no
//! datatype answers Riak's 400 `Bucket datatype 'undefined' is not a
//! supported type.`, and the default bucket type Riak's 301 to the legacy
//! counters URL.

pub mod json;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynkv_crdt::{DataType, Kind, Update};
use dynkv_quorum::datatype::merged_state;
use dynkv_rpc::messages::{Quorum, WriteRequest};
use dynkv_vclock::{Content, ContextKey, Object};

use super::RiakError;
use super::bucket::BucketProps;
use super::object::{bucket_n, read, read_params, write_params};
use super::request::{Target, decode_vclock};
use super::shared::Riak;
use crate::AppState;
use crate::http::codec::{quote_plus, random_id};
use crate::http::input;
use crate::http::params::Params;

/// The data type a bucket holds and its sketches' precision, from its
/// properties; `None`: not a data type bucket.
pub fn bucket_datatype(props: &BucketProps) -> Option<(Kind, u8)> {
    let kind = Kind::from_name(props.datatype.as_deref()?)?;
    Some((kind, props.hll_precision))
}

/// The data type of the target's bucket, or Riak's refusal: the default
/// bucket type redirects to the legacy counters (301), a bucket whose type
/// names no datatype is a 400.
fn datatype_of(t: &Target, props: &BucketProps) -> Result<(Kind, u8), RiakError> {
    if t.btype.is_none() {
        let location = format!(
            "/buckets/{}/counters/{}",
            quote_plus(&t.bucket),
            quote_plus(t.key.as_deref().unwrap_or_default())
        );
        let e = RiakError::new(
            StatusCode::MOVED_PERMANENTLY,
            "Counters in the default bucket-type should use the legacy URL",
        );
        return Err(match HeaderValue::from_str(&location) {
            Ok(v) => e.with_header(header::LOCATION, v),
            Err(_) => e,
        });
    }
    bucket_datatype(props).ok_or_else(|| {
        RiakError::bad_request("Bucket datatype 'undefined' is not a supported type.")
    })
}

/// The key data type contexts are signed with: derived from the cluster's
/// context key, so an object's `X-Riak-Vclock` (whose counters number
/// object versions, not data type dots) is refused as a data type context.
fn datatype_key(state: &AppState) -> ContextKey {
    state.context_key.derive("riak data type context")
}

/// The signed context of a state, as raw bytes (HTTP sends them base64,
/// protocol buffers as they are); `None` for types without a context
/// (counters, hlls, gsets).
pub fn context_bytes(app: &AppState, state: &DataType) -> Option<Vec<u8>> {
    if !json::has_context(state.kind()) {
        return None;
    }
    let vv = dynkv_vclock::VersionVector::from_pairs(
        state.context().iter().map(|(a, c)| (a.clone(), c)),
    );
    Some(dynkv_vclock::context_payload(&vv, &datatype_key(app)))
}

/// A client's raw context bytes, verified: a forged or altered context
/// is a 400 `bad_context` (and counted).
pub fn verify_context(app: &AppState, raw: &[u8]) -> Result<dynkv_crdt::VersionVector, RiakError> {
    let vv = dynkv_vclock::decode_context_payload(raw, &datatype_key(app)).map_err(|e| {
        app.metrics.bad_contexts.inc();
        RiakError::bad_request(format!("bad_context: Invalid context: {e}"))
    })?;
    Ok(dynkv_crdt::VersionVector::from_pairs(
        vv.entries().iter().cloned(),
    ))
}

/// A client's context token (base64, as HTTP carries it), verified.
fn parse_context(app: &AppState, token: &str) -> Result<dynkv_crdt::VersionVector, RiakError> {
    let vv = decode_vclock(token.trim(), &datatype_key(app)).map_err(|e| {
        app.metrics.bad_contexts.inc();
        RiakError::bad_request(format!("bad_context: Invalid context: {e}"))
    })?;
    Ok(dynkv_crdt::VersionVector::from_pairs(
        vv.entries().iter().cloned(),
    ))
}

/// The path of a new key's data type (`Location`).
fn location(t: &Target, key: &[u8]) -> String {
    format!(
        "/types/{}/buckets/{}/datatypes/{}",
        quote_plus(t.type_name().as_bytes()),
        quote_plus(&t.bucket),
        quote_plus(key)
    )
}

/// A JSON answer.
fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A data type bucket, resolved once per request: what every transport
/// needs before it reads or writes a data type.
pub struct DtBucket {
    /// The type its bucket type declares.
    pub kind: Kind,
    /// Precision of its hll sketches.
    pub hll_precision: u8,
    props: std::sync::Arc<BucketProps>,
}

/// The data type bucket of `t`, or Riak's refusal (see [`datatype_of`]).
pub async fn dt_bucket(state: &AppState, riak: &Riak, t: &Target) -> Result<DtBucket, RiakError> {
    let props = riak.props(state, t).await?;
    let (kind, hll_precision) = datatype_of(t, &props)?;
    Ok(DtBucket {
        kind,
        hll_precision,
        props,
    })
}

/// The merged live state of an object's siblings (`None`: none live);
/// states that do not merge are a 409.
fn merged(object: Option<&Object>) -> Result<Option<DataType>, RiakError> {
    match object.map(merged_state).transpose() {
        Ok(m) => Ok(m.flatten()),
        Err(e) => Err(RiakError::new(StatusCode::CONFLICT, e)),
    }
}

/// Fetches the data type at `t` with the read options of `q` (`r`, `pr`,
/// `notfound_ok`, `basic_quorum`, `timeout`): its merged state, `None`
/// when it holds none. The core of every transport's fetch.
pub async fn fetch_state(
    state: &AppState,
    b: &DtBucket,
    t: &Target,
    q: &Params,
) -> Result<Option<DataType>, RiakError> {
    let n = bucket_n(state, &b.props);
    let p = read_params(state, &b.props, q, n)?;
    let key = Bytes::from(t.internal_key());
    let object = read(state, &key, &p, n).await?;
    merged(object.as_ref())
}

/// Applies `op` to the data type at `t` with the write options of `q`
/// (`w`, `dw`, `pw`, `timeout`) and the verified `context`; answers the
/// state the coordinator wrote. The core of every transport's update.
pub async fn update_state(
    state: &AppState,
    b: &DtBucket,
    t: &Target,
    op: dynkv_crdt::Op,
    context: Option<dynkv_crdt::VersionVector>,
    q: &Params,
) -> Result<Option<DataType>, RiakError> {
    let n = bucket_n(state, &b.props);
    let wp = write_params(state, &b.props, q, n, false)?;
    let op = Update {
        op,
        context,
        hll_precision: b.hll_precision,
    };
    let req = WriteRequest {
        key: Bytes::from(t.internal_key()),
        content: Content::value(Bytes::new(), dynkv_crdt::CONTENT_TYPE, 0),
        context: dynkv_vclock::VersionVector::new(),
        w: Quorum::Count(wp.required as u32),
        sloppy: wp.pw == 0,
        timeout_ms: wp.timeout.as_millis() as u64,
        idempotency_key: None,
        n_val: Some(n as u32),
        supersede: false,
        datatype_op: Some(Bytes::from(op.encode())),
    };
    let outcome = state
        .coord
        .put(req)
        .await
        .map_err(|e| RiakError::write(e, wp.pw > 0))?;
    merged(Some(&outcome.object))
}

/// The JSON fetch answer of a state (404 with Riak's body when there is
/// none).
fn answer(
    state: &AppState,
    kind: Kind,
    merged: Option<DataType>,
    include_context: bool,
    status: StatusCode,
) -> Response {
    let Some(s) = merged else {
        return json_response(StatusCode::NOT_FOUND, &json::not_found(kind));
    };
    let context = include_context
        .then(|| context_bytes(state, &s))
        .flatten()
        .map(|raw| STANDARD.encode(raw));
    json_response(status, &json::fetch_answer(&s, context))
}

/// `GET /types/{t}/buckets/{b}/datatypes/{k}`.
pub async fn fetch(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
    q: Params,
) -> Result<Response, RiakError> {
    let b = dt_bucket(&state, &riak, &t).await?;
    let include_context = q.flag_or_default("include_context")?.unwrap_or(true);
    let merged = fetch_state(&state, &b, &t, &q).await?;
    Ok(answer(
        &state,
        b.kind,
        merged,
        include_context,
        StatusCode::OK,
    ))
}

/// `POST /types/{t}/buckets/{b}/datatypes/{k}`.
pub async fn update(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
    q: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RiakError> {
    apply(&state, &riak, t, false, &q, &headers, body).await
}

/// `POST /types/{t}/buckets/{b}/datatypes`: a new key chosen by the server.
pub async fn update_new(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    mut t: Target,
    q: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RiakError> {
    t.key = Some(random_id().into_bytes());
    apply(&state, &riak, t, true, &q, &headers, body).await
}

async fn apply(
    state: &AppState,
    riak: &Riak,
    t: Target,
    created: bool,
    q: &Params,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RiakError> {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    if !json_body {
        return Err(RiakError::new(
            StatusCode::NOT_ACCEPTABLE,
            "Data type updates must be sent as application/json",
        ));
    }
    let b = dt_bucket(state, riak, &t).await?;
    let body = input::body(body, state.limits.max_value_bytes)?;
    let parsed =
        json::parse_update(b.kind, &body).map_err(|e| RiakError::bad_request(e.to_string()))?;
    let context = match &parsed.context {
        Some(token) => Some(parse_context(state, token)?),
        None => None,
    };
    let returnbody = q.flag_or_default("returnbody")?.unwrap_or(false);
    let include_context = q.flag_or_default("include_context")?.unwrap_or(true);
    let merged = update_state(state, &b, &t, parsed.op, context, q).await?;
    // A new key's answer always has a body: Riak clients read the key
    // from `Location` and the state from the body of a 201.
    let mut r = if returnbody || created {
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        answer(state, b.kind, merged, include_context, status)
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    if created {
        let key = t.key.as_deref().unwrap_or_default();
        if let Ok(v) = HeaderValue::from_str(&location(&t, key)) {
            r.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(r)
}
