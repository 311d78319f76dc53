//! # dynkv-api: the HTTP surface of a node
//!
//! One axum [`Router`] per audience, merged on one listener:
//! - the public key-value API under `/kv/{key}` ([`kv`]),
//! - a Riak-compatible API (`/buckets/...`, `/types/default/...`, `/ping`,
//!   `/stats`, `/`) over the same coordinator ([`riak`]),
//! - operator views under `/admin/...`, `/metrics` and `/health`, and the
//!   ring view clients route by, `/ring` ([`admin`]),
//!   and membership commands ([`members`]),
//! - security administration under `/admin/security` ([`security`]),
//! - the dashboard under `/ui` ([`ui`]) and the cluster-wide figures it
//!   draws, `/admin/overview` ([`overview`]).
//!
//! When the cluster's security is on, one layer in front of all of them
//! ([`http::auth`]) authenticates and authorises every request but
//! `/health` from its headers, before any body is read.
//!
//! Internode traffic does not come here: it has its own listener
//! (`dynkv-rpc`).
//!
//! The two client APIs are thin adapters over one HTTP core ([`http`]):
//! request metrics, typed query parameters, key and body validation and
//! sibling rendering are written once there, and each API only translates
//! its protocol's requests and answers. Handlers translate HTTP to
//! coordinator calls and back; replication, quorums and versioning live in
//! `dynkv-quorum`. Every error of `/kv` and `/admin` leaves through
//! [`ApiError`], the one place that maps failures to a status and a JSON
//! body `{"error": "<sentence>", "code": "<slug>"}`; the Riak routes answer
//! errors as Riak does ([`riak::RiakError`]).

pub mod admin;
mod error;
pub mod feed;
pub mod http;
pub mod kv;
pub mod members;
mod metrics;
pub mod overview;
pub mod pbs;
pub mod riak;
pub mod security;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use dynkv_quorum::Coordinator;
use dynkv_rpc::AddressBook;
use prometheus_client::registry::Registry;

pub use dynkv_vclock::ContextKey;
pub use error::ApiError;
pub use members::MembershipAdmin;
pub use metrics::HttpMetrics;

/// Request-size limits (from the node config).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest key in bytes.
    pub max_key_bytes: usize,
    /// Largest value in bytes; larger bodies get 413 before being buffered.
    pub max_value_bytes: usize,
    /// Longest `timeout_ms` a client may ask for.
    pub max_timeout_ms: u64,
    /// Client requests served at once; more are refused with 503 `overloaded`.
    pub max_inflight: usize,
    /// Longest a client may take to send a body (408 `body_timeout`);
    /// bounds how long a slow sender occupies anything of the node.
    pub body_read_timeout: Duration,
    /// Longest stored `Content-Type`, bytes (stored with every sibling).
    pub max_content_type_bytes: usize,
    /// Most `X-Riak-Meta-*` entries per write.
    pub max_meta_entries: usize,
    /// Most bytes of user metadata (names and values) per write.
    pub max_meta_bytes: usize,
    /// Most `X-Riak-Index-*` entries per write.
    pub max_index_entries: usize,
    /// Most `Link` entries per write.
    pub max_links: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
            max_timeout_ms: 60_000,
            max_inflight: 1024,
            body_read_timeout: Duration::from_secs(10),
            max_content_type_bytes: 256,
            max_meta_entries: 64,
            max_meta_bytes: 8 * 1024,
            max_index_entries: 64,
            max_links: 1024,
        }
    }
}

/// A read-only JSON view a subsystem publishes under `/admin/{name}`.
pub trait AdminView: Send + Sync + 'static {
    /// The current state as JSON.
    fn view(&self) -> serde_json::Value;
}

/// Where clients reach each member's public API: what `GET /ring`
/// publishes so a client can send a request straight to a replica of its
/// key. The node learns its peers' advertised addresses from their
/// internode handshakes, so the directory lives outside this crate.
pub trait Directory: Send + Sync + 'static {
    /// Base URLs (`http://host:port`, or `https://` when the public
    /// listener serves TLS) of the members whose address is known, this
    /// node's own included, by node id.
    fn public_urls(&self) -> std::collections::HashMap<String, String>;
}

/// Everything a handler needs, cloned per request (all `Arc`s).
#[derive(Clone)]
pub struct AppState {
    /// This node's coordinator.
    pub coord: Arc<Coordinator>,
    /// Extra JSON views under `/admin/...` (anti-entropy status, ...),
    /// keyed by path segment.
    pub views: Arc<Vec<(&'static str, Arc<dyn AdminView>)>>,
    /// Node addresses, for the admin views.
    pub book: Arc<AddressBook>,
    /// Size limits.
    pub limits: Limits,
    /// The token membership commands must present in `X-Dynkv-Token`
    /// (derived from the cluster secret, never the secret itself).
    pub admin_token: Arc<str>,
    /// HTTP-level metrics.
    pub metrics: Arc<HttpMetrics>,
    /// Every metric of the node, rendered by `/metrics`.
    pub registry: Arc<Registry>,
    /// Permits of the client-request bulkhead (`limits.max_inflight`).
    pub inflight: Arc<tokio::sync::Semaphore>,
    /// Live membership, when the node runs it.
    pub membership: Option<Arc<dyn MembershipAdmin>>,
    /// The key context tokens are signed and verified with (the same on
    /// every node of the cluster), so a client cannot forge a context.
    pub context_key: ContextKey,
    /// Security enforcement (its rules come from `membership`).
    pub security: Arc<http::auth::SecurityGate>,
    /// The Riak APIs' shared state (bucket property cache, `/stats`
    /// counters): one per node, so HTTP and PBC see the same properties.
    pub riak: riak::shared::Riak,
    /// The recent readings of this node's counters that `/admin/overview`
    /// and peers' overview requests answer rates from.
    pub overview: Arc<overview::Recent>,
    /// Members' public addresses for `GET /ring` (none: the view lists
    /// members without URLs).
    pub directory: Option<Arc<dyn Directory>>,
}

/// Header carrying the admin token of membership commands.
pub const ADMIN_TOKEN_HEADER: &str = "x-dynkv-token";

/// Whether a request carries the admin token (compared in constant time);
/// a refusal is counted in `dynkv_admin_unauthorized_total`.
pub(crate) fn has_admin_token(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    let presented = headers
        .get(ADMIN_TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let ok = dynkv_rpc::token_matches(presented, state.admin_token.as_bytes());
    if !ok {
        state.metrics.unauthorized.inc();
    }
    ok
}

/// The whole HTTP surface of a node.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(kv::router(&state))
        .merge(feed::router(&state))
        .merge(riak::router(&state))
        .merge(admin::router())
        .merge(members::router())
        .merge(security::router())
        .merge(riak::types::admin_router())
        .merge(ui::router())
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not serve that method",
            )
        })
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such route",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::auth::enforce,
        ))
        .with_state(state)
}
