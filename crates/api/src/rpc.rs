//! `POST /rpc`: the internode endpoint.
//!
//! Frames are versioned postcard (see `dynkv-rpc`). A request without the
//! cluster token, or with a wrong one, is refused with 401 and counted; the
//! comparison is constant-time. A frame that does not decode, or that carries
//! a malformed object, is a 400: a peer's garbage never reaches the store.

use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use dynkv_rpc::{RPC_PATH, Request, decode, encode};

use crate::{ApiError, AppState};

/// The `/rpc` route.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(RPC_PATH, post(handle))
        .layer(DefaultBodyLimit::max(state.limits.max_rpc_bytes))
}

async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    if !crate::has_cluster_token(&state, &headers) {
        state.metrics.observe("rpc", 401, started);
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong cluster token",
        )
        .into_response();
    }
    let resp = match body {
        Err(e) => crate::kv::body_error(e, state.limits.max_rpc_bytes).into_response(),
        Ok(body) => match decode::<Request>(&body) {
            Ok(req) if req.is_well_formed() => {
                let answer = state.rpc.handle(req).await;
                let mut r = encode(&answer).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(dynkv_rpc::RPC_CONTENT_TYPE),
                );
                r
            }
            Ok(_) => ApiError::bad_request("bad_frame", "the frame carries a malformed object")
                .into_response(),
            Err(e) => ApiError::bad_request("bad_frame", e.to_string()).into_response(),
        },
    };
    state
        .metrics
        .observe("rpc", resp.status().as_u16(), started);
    resp
}
