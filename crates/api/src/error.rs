//! The API's one error type and its mapping to HTTP.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dynkv_quorum::QuorumError;
use serde_json::json;

/// An error answer: status, slug and sentence, plus quorum figures when the
/// failure was a quorum that was not met.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable slug.
    pub code: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// For quorum failures: (needed, acked).
    pub quorum: Option<(usize, usize)>,
    /// A context token to return even on error (404 of a deleted key).
    pub context: Option<String>,
}

impl ApiError {
    /// An error with no quorum figures.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            quorum: None,
            context: None,
        }
    }

    /// 400 with a slug.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<QuorumError> for ApiError {
    fn from(e: QuorumError) -> Self {
        let status = match &e {
            QuorumError::NotEnough { .. }
            | QuorumError::Unavailable(_)
            | QuorumError::Stale { .. } => StatusCode::SERVICE_UNAVAILABLE,
            QuorumError::BadRequest(_) | QuorumError::BadContext(_) => StatusCode::BAD_REQUEST,
            QuorumError::TooManySiblings { .. } => StatusCode::CONFLICT,
            QuorumError::ObjectTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            QuorumError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
            QuorumError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            QuorumError::Precondition(_) => StatusCode::PRECONDITION_FAILED,
        };
        let quorum = match &e {
            QuorumError::NotEnough { needed, acked, .. } => Some((*needed, *acked)),
            _ => None,
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            quorum,
            context: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message, "code": self.code });
        if let Some((needed, acked)) = self.quorum {
            body["needed"] = json!(needed);
            body["acked"] = json!(acked);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(ctx) = self.context.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(crate::kv::CONTEXT_HEADER, ctx);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_507_insufficient_storage() {
        let e = ApiError::from(QuorumError::InsufficientStorage {
            node: "n2".into(),
            detail: "IO error: No space left on device".into(),
        });
        assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(e.code, "insufficient_storage");
        assert!(
            e.message.starts_with("n2 has no space left"),
            "{}",
            e.message
        );
    }
}
