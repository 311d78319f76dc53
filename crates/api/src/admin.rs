//! Operator views: `/admin/cluster`, `/admin/ring`, `/admin/local/{key}`,
//! `/admin/overview` ([`crate::overview`]), `/admin/pbs` ([`crate::pbs`]), `/metrics`, `/health`; and the ring
//! view for clients, `/ring`. All read-only, all JSON except `/metrics`; and
//! `POST /admin/compact` (behind the admin token), which compacts this
//! node's store so the space of reaped tombstones comes back at once.

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::http::siblings::SiblingsJson;
use crate::kv::Key;
use crate::{ApiError, AppState};

/// The admin routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .route("/admin/cluster", get(cluster))
        .route("/admin/ring", get(ring))
        .route("/ring", get(client_ring))
        .route("/admin/local/{*key}", get(local))
        .route("/admin/compact", post(compact))
        .route("/admin/overview", get(crate::overview::route))
        .route("/admin/pbs", get(crate::pbs::pbs))
        .route("/admin/{name}", get(view))
}

/// Flushes and compacts this node's `objects` and `digests` column
/// families (`dynkv admin compact`): deleted keys, reaped tombstones
/// included, stop taking disk space now rather than when RocksDB compacts
/// their files on its own. Needs the admin token; answers the SST bytes
/// before and after. Expensive (it rewrites the live data): an operator
/// command, not a routine.
async fn compact(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<axum::Extension<crate::http::auth::AdminAuthorised>>,
) -> Response {
    if granted.is_none() && !crate::has_admin_token(&state, &headers) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin commands need the admin token derived from the cluster secret in X-Dynkv-Token",
        )
        .into_response();
    }
    let store = state.coord.store().clone();
    let started = std::time::Instant::now();
    let done = tokio::task::spawn_blocking(move || {
        store.flush().map(|()| {
            let before = store.sst_bytes();
            store.compact();
            (before, store.sst_bytes())
        })
    })
    .await;
    match done {
        Ok(Ok((before, after))) => Json(json!({
            "node": state.coord.node_id(),
            "sst_bytes_before": before,
            "sst_bytes_after": after,
            "duration_ms": started.elapsed().as_millis() as u64,
        }))
        .into_response(),
        Ok(Err(e)) => compact_failed(e.to_string()),
        Err(e) => compact_failed(e.to_string()),
    }
}

fn compact_failed(why: String) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", why).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    state
        .coord
        .metrics()
        .hints_pending
        .set(state.coord.store().hint_count() as i64);
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &state.registry) {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "metrics", e.to_string())
            .into_response();
    }
    let mut r = out.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// What this node believes about the cluster.
async fn cluster(State(state): State<AppState>) -> Response {
    let coord = &state.coord;
    let ring = coord.ring();
    let health = coord.health();
    let addrs: HashMap<_, _> = state.book.all().into_iter().collect();
    let peers: HashMap<_, _> = health
        .snapshot()
        .into_iter()
        .map(|p| (p.id.clone(), p))
        .collect();
    let n = coord.effective_n();
    let members: Vec<_> = ring
        .members()
        .iter()
        .map(|m| {
            let peer = peers.get(m);
            json!({
                "id": m,
                "addr": addrs.get(m),
                "up": health.is_up(m),
                "breaker": health.breaker(m).as_str(),
                "self": m == coord.node_id(),
                "partitions_owned": ring.partitions_owned_by(m).len(),
                "partitions_replicated": ring.partitions_replicated_by(m, n).len(),
                "consecutive_failures": peer.map_or(0, |p| p.consecutive_failures),
                "last_ok_ms": peer.map_or(0, |p| p.last_ok_ms),
            })
        })
        .collect();
    let hints: BTreeMap<String, u64> = coord.store().hint_counts_by_owner().unwrap_or_default();
    let secured = state
        .membership
        .as_ref()
        .is_some_and(|m| m.security().enabled());
    let loopback = state.security.listen_loopback();
    let warning = (!secured && !loopback).then_some(
        "the public API listens off loopback with security disabled: anyone who reaches it can read and write every key (dynkv admin security enable)",
    );
    Json(json!({
        "security": {"enabled": secured, "listen_loopback": loopback, "warning": warning},
        "node": coord.node_id(),
        "members": members,
        "n_val": coord.config().n_val,
        "effective_n": n,
        "partitions": ring.partitions(),
        "hints_pending": hints,
        "hints_total": coord.store().hint_count(),
        "transfers": state.membership.as_ref().map(|m| m.transfers()),
        "next_ring": coord.next_ring().is_some(),
    }))
    .into_response()
}

/// `GET /ring`: what a client needs to send each request straight to a
/// replica of its key (token-aware routing, as Dynamo §6.4 and the
/// Cassandra drivers do).
///
/// ```json
/// {"node": "n1", "epoch": 3, "version": 17, "n_val": 3, "partitions": 64,
///  "hash": "xxh3_64",
///  "members": [{"id": "n1", "url": "http://127.0.0.1:7071", "up": true}],
///  "preference_lists": [["n1", "n2", "n3"], ...]}
/// ```
///
/// `preference_lists[p]` are partition `p`'s primaries in ring order (the
/// first is its owner); a key's partition is the top `log2(partitions)`
/// bits of the xxh3-64 of its bytes (seed 0), as
/// [`dynkv_ring::Ring::partition_of_key`]. A member's `url` is its
/// advertised public address (`node.advertise`, else `node.listen`) as
/// this node last heard it, `null` while unknown; `up` is this node's
/// failure detector's belief. `epoch` and `version` are those of the
/// gossiped cluster state: a client that sees them change knows the view
/// did. Any authenticated user may read it (it names no key).
async fn client_ring(State(state): State<AppState>) -> Response {
    let coord = &state.coord;
    let ring = coord.ring();
    let health = coord.health();
    let urls = state
        .directory
        .as_ref()
        .map(|d| d.public_urls())
        .unwrap_or_default();
    let (epoch, version) = state.membership.as_ref().map_or((0, 0), |m| {
        let v = m.members();
        (
            v["epoch"].as_u64().unwrap_or(0),
            v["version"].as_u64().unwrap_or(0),
        )
    });
    let members: Vec<_> = ring
        .members()
        .iter()
        .map(|m| {
            json!({
                "id": m,
                "url": urls.get(m.as_str()),
                "up": health.is_up(m),
            })
        })
        .collect();
    let n = coord.effective_n();
    let lists: Vec<Vec<&str>> = (0..ring.partitions())
        .map(|p| {
            ring.preference_list(p, n)
                .into_iter()
                .map(|id| id.as_str())
                .collect()
        })
        .collect();
    Json(json!({
        "node": coord.node_id(),
        "epoch": epoch,
        "version": version,
        "n_val": n,
        "partitions": ring.partitions(),
        "hash": "xxh3_64",
        "members": members,
        "preference_lists": lists,
    }))
    .into_response()
}

async fn ring(State(state): State<AppState>, RawQuery(q): RawQuery) -> Response {
    // Decoded strictly (a form decoder would turn invalid UTF-8 into U+FFFD
    // and place a different key than the one asked about).
    let raw = q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("key="));
    let Some(raw) = raw else {
        return ApiError::bad_request("bad_parameter", "pass the key as ?key=K").into_response();
    };
    let Ok(key) = String::from_utf8(crate::http::codec::unquote_plus(raw)) else {
        return ApiError::bad_request("bad_key", "the key is not valid percent-encoded UTF-8")
            .into_response();
    };
    if key.is_empty() || key.len() > state.limits.max_key_bytes {
        return ApiError::bad_request("bad_key", "the key must be 1 to 1024 bytes").into_response();
    }
    let p = state.coord.placement(key.as_bytes());
    Json(json!({
        "key": key,
        "partition": p.partition,
        "preference_list": p.primaries,
        "fallbacks": p.fallbacks,
    }))
    .into_response()
}

/// What this one node stores for a key (its replica and its hints), asking
/// no other node: how tests and demos see a stale or repaired replica.
async fn local(State(state): State<AppState>, Key(key): Key) -> Response {
    match state.coord.local_view(&key).await {
        Ok((own, hints)) => {
            let mut body = serde_json::to_value(SiblingsJson::of(own.as_ref(), &state.context_key))
                .expect("serialisable");
            body["node"] = json!(state.coord.node_id());
            body["found"] = json!(own.is_some());
            body["hints"] = hints
                .iter()
                .map(|(owner, o)| {
                    let mut h = serde_json::to_value(SiblingsJson::of(Some(o), &state.context_key))
                        .expect("serialisable");
                    h["owner"] = json!(owner);
                    h
                })
                .collect();
            Json(body).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A subsystem's view, e.g. `/admin/aae`.
async fn view(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(name)) = name else {
        return ApiError::bad_request("bad_path", "the admin view name is not valid UTF-8")
            .into_response();
    };
    match state.views.iter().find(|(n, _)| *n == name) {
        Some((_, v)) => Json(v.view()).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no admin view named {name}"),
        )
        .into_response(),
    }
}
