//! Request metrics as a layer around each handler: every answer of an
//! observed handler is counted in `dynkv_http_requests_total{op,status}`
//! and timed in `dynkv_http_request_duration_seconds{op}`, whatever
//! produced it (the handler, or an extractor that refused the request).
//!
//! A router names the operation where it mounts the handler:
//! `get(observed(&metrics, "get", get_key))`. Requests refused before the
//! handler (the in-flight bulkhead, an unknown route or method) are not
//! operations and are not observed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;

use crate::HttpMetrics;

/// `handler`, with its requests recorded under operation `op`.
pub fn observed<H, T, S>(
    metrics: &Arc<HttpMetrics>,
    op: &'static str,
    handler: H,
) -> impl Handler<T, S>
where
    H: Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    handler.layer(from_fn_with_state((metrics.clone(), op), observe))
}

async fn observe(
    State((metrics, op)): State<(Arc<HttpMetrics>, &'static str)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics.observe(op, resp.status().as_u16(), started);
    resp
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use prometheus_client::registry::Registry;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn counts_every_answer_under_its_operation() {
        let m = Arc::new(HttpMetrics::default());
        let ok = observed(&m, "get", || async { StatusCode::NO_CONTENT });
        let bad = observed(&m, "get", || async { StatusCode::BAD_REQUEST });
        let app: Router = Router::new().route("/ok", get(ok)).route("/bad", get(bad));
        for path in ["/ok", "/ok", "/bad", "/none"] {
            let req = Request::builder().uri(path).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            r#"dynkv_http_requests_total{op="get",status="204"} 2"#,
            r#"dynkv_http_requests_total{op="get",status="400"} 1"#,
            r#"dynkv_http_request_duration_seconds_count{op="get"} 3"#,
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        assert!(!text.contains("404"), "{text}");
    }
}
