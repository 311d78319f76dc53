//! What a Riak client asks before anything else: `GET /ping`, `GET /stats`
//! (it reads the server version from `riak_kv_version` to decide which
//! features to use) and `GET /` (the resource map, from which it learns the
//! paths it may use).
//!
//! We report [`RIAK_KV_VERSION`] 2.0.0: the HTTP API of Riak 2.0 for the
//! default bucket type is what this router serves. Clients then use the
//! `/buckets` paths and streaming listings (Riak ≥ 1.4), and do not ask for
//! preflists (2.1). Legacy counters, secondary indexes, MapReduce and
//! search are left out of the resource map, so clients know they are
//! absent.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use dynkv_quorum::metrics_labels::{OpLabels, OutcomeLabels};
use serde_json::{Value, json};

use super::shared::{Riak, Stats};
use crate::AppState;

/// The Riak KV version this API presents itself as.
pub const RIAK_KV_VERSION: &str = "2.0.0";

/// The resources served, as Riak's resource map names them.
const RESOURCES: [(&str, &str); 4] = [
    ("riak_kv_wm_buckets", "/buckets"),
    ("riak_kv_wm_bucket_type", "/types"),
    ("riak_kv_wm_ping", "/ping"),
    ("riak_kv_wm_stats", "/stats"),
];

/// `GET /ping`: `OK`.
pub async fn ping() -> Response {
    let mut r = "OK".into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// `GET /`: the resource map, JSON when asked for, else an HTML list.
pub async fn resources(headers: HeaderMap) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        let map: serde_json::Map<String, Value> = RESOURCES
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect();
        return Json(Value::Object(map)).into_response();
    }
    let items: String = RESOURCES
        .iter()
        .map(|(k, v)| format!("<li><a href=\"{v}\">{k}</a></li>"))
        .collect();
    let mut r = format!("<html><body><ul>{items}</ul></body></html>").into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// `GET /stats`: the version, the ring as this node sees it, and the
/// node's counters since it started (Riak's `*_total` names where one
/// exists).
pub async fn stats(State(state): State<AppState>, Extension(riak): Extension<Riak>) -> Response {
    let coord = &state.coord;
    let ring = coord.ring();
    let members: Vec<String> = ring.members().iter().map(|m| m.to_string()).collect();
    let connected: Vec<String> = ring
        .members()
        .iter()
        .filter(|m| *m != coord.node_id() && coord.health().is_up(m))
        .map(|m| m.to_string())
        .collect();
    let m = coord.metrics();
    let s = riak.stats();
    let get = Stats::read;
    let outcome = |o: &'static str| {
        m.read_repairs
            .get_or_create(&OutcomeLabels { outcome: o })
            .get()
    };
    let failures = |op: &'static str| m.quorum_failures.get_or_create(&OpLabels { op }).get();
    Json(json!({
        "riak_kv_version": RIAK_KV_VERSION,
        "dynkv_version": env!("CARGO_PKG_VERSION"),
        "nodename": coord.node_id().to_string(),
        "connected_nodes": connected,
        "ring_members": members,
        "ring_num_partitions": ring.partitions(),
        "ring_creation_size": ring.partitions(),
        "n_val": coord.config().n_val,
        "node_gets_total": get(&s.gets),
        "node_puts_total": get(&s.puts),
        "node_deletes_total": get(&s.deletes),
        "node_gets_siblings_total": get(&s.siblings_answered),
        "siblings_resolved_total": get(&s.siblings_resolved),
        "list_keys_total": get(&s.key_listings),
        "list_buckets_total": get(&s.bucket_listings),
        "coord_redirs_total": m.forwarded.get(),
        "coordinated_writes_total": m.coordinated.get(),
        "read_repairs_total": outcome("repaired"),
        "read_repairs_failed_total": outcome("failed"),
        "read_quorum_failures_total": failures("read"),
        "write_quorum_failures_total": failures("write"),
        "hinted_handoffs_total": m.hints_delivered.get(),
        "hints_pending": coord.store().hint_count(),
        "objects_estimate": coord.store().estimated_objects(),
    }))
    .into_response()
}
