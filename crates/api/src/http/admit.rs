//! The client-request bulkhead both APIs share: at most
//! `limits.max_inflight` requests at once per node (the permits are the
//! node's, so `/kv` and the Riak API share one bound); past it a request
//! is refused at once with 503 and `Retry-After` in its protocol's words,
//! never queued, and counted in `dynkv_overloaded_total`.
//!
//! A router mounts it as
//! `.layer(from_fn_with_state((state.clone(), refusal as Refuse), admit))`.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// How an API words the refusal, given the node's limit.
pub type Refuse = fn(usize) -> Response;

/// Runs the request under one of the node's in-flight permits, or answers
/// the API's refusal with `Retry-After` when none is free.
pub async fn admit(
    State((state, refuse)): State<(AppState, Refuse)>,
    req: Request,
    next: Next,
) -> Response {
    match state.inflight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            state.metrics.overloaded.inc();
            let mut r = refuse(state.limits.max_inflight);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}
