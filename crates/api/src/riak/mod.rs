//! # A Riak-compatible HTTP API
//!
//! Riak KV's HTTP interface (`riak_kv_wm_object` and friends) served over
//! the same [`Coordinator`](dynkv_quorum::Coordinator) as the native `/kv`
//! API, so that existing Riak clients and applications work unchanged and
//! there is one replication path, not two. It is an adapter over the HTTP
//! core ([`crate::http`]): metrics, query parameters, validation and
//! sibling framing are the core's; this module translates Riak's requests
//! ([`request`]) and answers ([`RiakError`], [`object`]).
//!
//! ## Buckets are namespaces of the one keyspace
//! A Riak `(bucket, key)` is stored under the namespaced key
//! `0xFF ‖ varint(len(bucket)) ‖ bucket ‖ key`
//! ([`namespace`]). Native keys are UTF-8 and no UTF-8 string
//! starts with `0xFF`, so the two APIs can never address each other's
//! objects. The ring hashes the whole encoded key, which makes placement
//! bucket-aware, and a bucket's keys are contiguous inside each partition,
//! which makes key and bucket listing range scans ([`listing`]).
//!
//! ## Bucket properties live in the cluster
//! A bucket's properties are an ordinary replicated object under
//! `0xFE ‖ bucket`, written and read through the coordinator (W and R
//! quorum) and resolved last-write-wins ([`props`]). Each node caches them
//! for [`shared::CACHE_TTL`]: a change made through one node is seen by the
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
//! /buckets/{b}/props`, `GET /buckets?buckets=true|stream`, `GET
//! /buckets/{b}/index/{field}/{term}[/{to}]` (secondary indexes: [`index`]),
//! the same under `/types/{t}/...`, `GET|PUT /types/{t}/props` ([`types`]),
//! `GET|POST /types/{t}/buckets/{b}/datatypes/{k}` and `POST
//! /types/{t}/buckets/{b}/datatypes` ([`datatypes`]), and `GET /ping`,
//! `/stats`, `/`.

pub mod bucket;
pub mod datatypes;
pub mod index;
mod info;
pub mod listing;
pub mod namespace;
pub mod object;
pub mod pb;
pub mod props;
pub mod request;
pub mod shared;
pub mod types;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use dynkv_quorum::QuorumError;

use crate::AppState;
use crate::http::admit::{Refusals, admit};
use crate::http::input::{BodyError, MetadataError, NameError};
use crate::http::observe::observed;
use crate::http::params::{Allowed, ParamError};

/// The Riak routes, merged into the node's router by [`crate::router`].
pub fn router(state: &AppState) -> Router<AppState> {
    let m = &state.metrics;
    let object = get(observed(m, "riak_get", object::get))
        .put(observed(m, "riak_put", object::put))
        .post(observed(m, "riak_put", object::put))
        .delete(observed(m, "riak_delete", object::delete));
    let keys = get(observed(m, "riak_list_keys", listing::keys)).post(observed(
        m,
        "riak_put",
        object::post,
    ));
    let props = get(observed(m, "riak_props", props::get))
        .put(observed(m, "riak_props", props::put))
        .delete(observed(m, "riak_props", props::delete));
    let buckets = get(observed(m, "riak_list_buckets", listing::buckets));
    let datatype = get(observed(m, "riak_dt_fetch", datatypes::fetch)).post(observed(
        m,
        "riak_dt_update",
        datatypes::update,
    ));
    let new_datatype = post(observed(m, "riak_dt_update", datatypes::update_new));
    let index = get(observed(m, "riak_index", index::query));
    let objects = Router::new()
        .route("/types/{type}/buckets/{bucket}/datatypes/{key}", datatype)
        .route("/types/{type}/buckets/{bucket}/datatypes", new_datatype)
        .route("/buckets/{bucket}/keys/{key}", object.clone())
        .route("/types/{type}/buckets/{bucket}/keys/{key}", object)
        .route("/buckets/{bucket}/keys", keys.clone())
        .route("/types/{type}/buckets/{bucket}/keys", keys)
        .layer(DefaultBodyLimit::max(state.limits.max_value_bytes));
    Router::new()
        .merge(objects)
        .route("/buckets/{bucket}/props", props.clone())
        .route("/types/{type}/buckets/{bucket}/props", props)
        .route(
            "/types/{type}/props",
            get(observed(m, "riak_props", types::get)).put(observed(m, "riak_props", types::put)),
        )
        .route("/buckets/{bucket}/index/{index}/{from}", index.clone())
        .route("/buckets/{bucket}/index/{index}/{from}/{to}", index.clone())
        .route(
            "/types/{type}/buckets/{bucket}/index/{index}/{from}",
            index.clone(),
        )
        .route(
            "/types/{type}/buckets/{bucket}/index/{index}/{from}/{to}",
            index,
        )
        .route(
            "/mapred",
            axum::routing::post(observed(m, "riak_mapred", index::mapred)),
        )
        .route("/buckets", buckets.clone())
        .route("/types/{type}/buckets", buckets)
        .route("/ping", get(info::ping))
        .route("/stats", get(info::stats))
        .route("/", get(info::resources))
        .layer(axum::Extension(state.riak.clone()))
        .layer(from_fn_with_state((state.clone(), REFUSALS), admit))
}

/// The bulkhead's refusals ([`admit`]) in Riak's words (plain text).
const REFUSALS: Refusals = Refusals {
    overloaded,
    body_timeout,
};

/// 408 when a body does not arrive within `limits.body_read_timeout`.
fn body_timeout(limit: std::time::Duration) -> Response {
    let message = format!(
        "body_timeout: the request body did not arrive within {:.3}s",
        limit.as_secs_f64()
    );
    RiakError::new(StatusCode::REQUEST_TIMEOUT, message).into_response()
}

/// The bulkhead's refusal (the node's one in-flight limit, shared with
/// `/kv`): 503 at once.
fn overloaded(_max: usize) -> Response {
    let message = "overloaded: this node is serving its maximum number of requests; retry shortly";
    RiakError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response()
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
            e @ QuorumError::InsufficientStorage { .. } => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
            }
            QuorumError::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m),
            QuorumError::Precondition(m) => Self::new(StatusCode::PRECONDITION_FAILED, m),
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

// The core's refusals, in Riak's words.

impl From<ParamError> for RiakError {
    fn from(e: ParamError) -> Self {
        let name = e.name;
        Self::bad_request(match e.allowed {
            Allowed::Quorum { .. } => format!(
                "{name} query parameter must be an integer or one of the following words: 'one', 'quorum' or 'all'"
            ),
            Allowed::Flag => format!("{name} query parameter must be true or false"),
            Allowed::Millis { .. } => format!("Bad timeout value {:?}", e.value),
        })
    }
}

impl From<NameError> for RiakError {
    fn from(e: NameError) -> Self {
        Self::new(e.status(), e.to_string())
    }
}

/// Metadata past a limit: 400 with a JSON body naming the limit (as
/// Riak's own validation errors are JSON).
impl From<MetadataError> for RiakError {
    fn from(e: MetadataError) -> Self {
        let body = serde_json::json!({"error": e.to_string(), "code": "metadata_too_large"});
        Self::new(StatusCode::BAD_REQUEST, body.to_string()).with_header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
    }
}

impl From<BodyError> for RiakError {
    fn from(e: BodyError) -> Self {
        let message = match &e {
            BodyError::TooLarge { limit } => {
                format!("Object too large: at most {limit} bytes are allowed")
            }
            BodyError::Unreadable(_) => e.to_string(),
        };
        Self::new(e.status(), message)
    }
}

#[cfg(test)]
mod full_disk_tests {
    use super::*;

    #[test]
    fn a_full_disk_is_507_for_riak_clients_too() {
        let full = || QuorumError::InsufficientStorage {
            node: "n2".into(),
            detail: "IO error: No space left on device".into(),
        };
        for e in [
            RiakError::write(full(), false),
            RiakError::read(full(), false),
        ] {
            assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
            assert!(e.body.contains("n2 has no space left"), "{}", e.body);
        }
    }
}
