//! Membership administration: `/admin/members`, `/admin/plan`,
//! `/admin/join`, `/admin/leave`, `/admin/commit`, `/admin/transfers` and
//! `/admin/transfer-limit`. They change (or reveal)
//! the cluster's shape, so every one requires the admin token (derived
//! from the cluster secret: `dynkv admin` computes it) in `X-Dynkv-Token`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::Value;

use crate::http::auth::AdminAuthorised;
use crate::{ApiError, AppState};

/// What the membership subsystem offers operators.
pub trait MembershipAdmin: Send + Sync + 'static {
    /// Members, statuses and the transition under way.
    fn members(&self) -> Value;
    /// What committing the staged changes would move.
    fn plan(&self) -> Result<Value, String>;
    /// Makes this node join the cluster of the member at `seed` (`host:port`).
    fn join(&self, seed: String) -> BoxFuture<'static, Result<Value, String>>;
    /// Stages `node` (default: this node) to leave.
    fn leave(&self, node: Option<String>) -> BoxFuture<'static, Result<Value, String>>;
    /// Commits the staged changes.
    fn commit(&self) -> BoxFuture<'static, Result<Value, String>>;
    /// The running change's transfers, this node's streams and the cleanup.
    fn transfers(&self) -> Value;
    /// Sets how many streams this node runs at once (run time).
    fn set_transfer_limit(&self, limit: usize);
    /// The security rules in force on this node (read on every request).
    fn security(&self) -> Arc<dynkv_security::SecurityState>;
    /// Applies a security change here and spreads it to every member.
    fn change_security(
        &self,
        cmd: dynkv_security::Command,
    ) -> BoxFuture<'static, Result<Arc<dynkv_security::SecurityState>, String>>;
    /// One bucket type as this node knows it (read on typed requests).
    fn bucket_type(&self, name: &str) -> Option<dynkv_btypes::TypeEntry>;
    /// Every bucket type but `default`.
    fn bucket_types(&self) -> dynkv_btypes::BucketTypes;
    /// Applies a bucket-type change here and spreads it to every member.
    fn change_bucket_type(
        &self,
        cmd: dynkv_btypes::TypeCommand,
    ) -> BoxFuture<'static, Result<dynkv_btypes::BucketTypes, String>>;
}

/// The membership routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/members", get(members))
        .route("/admin/plan", get(plan))
        .route("/admin/join", post(join))
        .route("/admin/leave", post(leave))
        .route("/admin/commit", post(commit))
        .route("/admin/transfers", get(transfers))
        .route("/admin/transfer-limit", post(transfer_limit))
}

fn authorised(
    state: &AppState,
    headers: &HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
) -> Result<Arc<dyn MembershipAdmin>, ApiError> {
    if granted.is_none() && !crate::has_admin_token(state, headers) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "membership commands need the admin token derived from the cluster secret in X-Dynkv-Token",
        ));
    }
    state.membership.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "no_membership",
            "live membership is off on this node",
        )
    })
}

fn refused(e: String) -> Response {
    ApiError::new(StatusCode::CONFLICT, "membership_refused", e).into_response()
}

async fn members(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
) -> Response {
    match authorised(&state, &headers, granted) {
        Ok(m) => Json(m.members()).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn plan(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
) -> Response {
    match authorised(&state, &headers, granted).map(|m| m.plan()) {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => refused(e),
        Err(e) => e.into_response(),
    }
}

/// Body of `POST /admin/join`.
#[derive(Deserialize)]
struct JoinBody {
    seed: String,
}

async fn join(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
    body: Option<Json<JoinBody>>,
) -> Response {
    let m = match authorised(&state, &headers, granted) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let Some(Json(body)) = body else {
        return ApiError::bad_request("bad_body", "send {\"seed\": \"host:port\"}").into_response();
    };
    match m.join(body.seed).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => refused(e),
    }
}

/// Body of `POST /admin/leave`.
#[derive(Deserialize, Default)]
struct LeaveBody {
    node: Option<String>,
}

async fn leave(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
    body: Option<Json<LeaveBody>>,
) -> Response {
    let m = match authorised(&state, &headers, granted) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let node = body.map(|Json(b)| b).unwrap_or_default().node;
    match m.leave(node).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => refused(e),
    }
}

async fn commit(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
) -> Response {
    match authorised(&state, &headers, granted) {
        Ok(m) => match m.commit().await {
            Ok(v) => Json(v).into_response(),
            Err(e) => refused(e),
        },
        Err(e) => e.into_response(),
    }
}

async fn transfers(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
) -> Response {
    match authorised(&state, &headers, granted) {
        Ok(m) => Json(m.transfers()).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Body of `POST /admin/transfer-limit`.
#[derive(Deserialize)]
struct LimitBody {
    limit: usize,
}

/// Most streams a node may be told to run at once.
const MAX_TRANSFER_LIMIT: usize = 64;

async fn transfer_limit(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
    body: Option<Json<LimitBody>>,
) -> Response {
    let m = match authorised(&state, &headers, granted) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    match body {
        Some(Json(LimitBody { limit })) if limit <= MAX_TRANSFER_LIMIT => {
            m.set_transfer_limit(limit);
            Json(serde_json::json!({ "transfer_limit": limit })).into_response()
        }
        _ => ApiError::bad_request(
            "bad_body",
            format!("send {{\"limit\": N}} with N from 0 (pause) to {MAX_TRANSFER_LIMIT}"),
        )
        .into_response(),
    }
}
