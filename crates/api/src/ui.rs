//! `GET /ui`: the dashboard, a single page whose three files are compiled
//! into the binary (`include_str!`), so a node serves it with no file on
//! disk, no Node toolchain at build time and no CDN at run time.
//!
//! The page is plain HTML, CSS and JavaScript; its charts are hand-written
//! SVG (a curve is a `<path>`, a bar a `<rect>`), which needs no charting
//! library and so no licence to vendor. It reads only this node's routes:
//! `/admin/overview` every 2 s (every member's figures, gathered by this
//! node over the internode RPC, [`crate::overview`]) and `/admin/pbs` every
//! 10 s for each R and W of the cluster's N. Refreshes are chained (the
//! next starts when the last answered), so a slow node is never asked
//! twice at once by one page.
//!
//! Security: `/ui` is classified like `/admin/*` ([`crate::http::auth`]):
//! with security on it needs a user holding `dynkv.admin`. The 401 carries
//! `WWW-Authenticate: Basic`, so a browser asks for the user once and sends
//! the credentials with the page's own requests. The answers forbid
//! anything but this origin's scripts and styles (`Content-Security-Policy`)
//! and framing by other sites.
//!
//! Accessibility: up and down are written out (▲ up, ▼ down) and differ by
//! border style as well as colour; PBS curves differ by dash pattern and
//! are listed in a table; the layout is one column on a phone.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
pub const INDEX_HTML: &str = include_str!("../assets/ui/index.html");
/// Its script.
pub const UI_JS: &str = include_str!("../assets/ui/ui.js");
/// Its style sheet.
pub const UI_CSS: &str = include_str!("../assets/ui/ui.css");

/// What the page may load: its own files and its own node's JSON.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The dashboard's routes (they need no state).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/ui.js",
            get(|| async { asset(UI_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/ui.css",
            get(|| async { asset(UI_CSS, "text/css; charset=utf-8") }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files, and a new binary may bring new ones: always revalidate.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn serves_the_embedded_files_with_their_types() {
        for (path, ty, needle) in [
            ("/ui", "text/html", "/ui/ui.js"),
            ("/ui/", "text/html", "/ui/ui.css"),
            ("/ui/ui.js", "text/javascript", "/admin/overview"),
            ("/ui/ui.css", "text/css", "@media"),
        ] {
            let resp = router::<()>()
                .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let ct = resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .to_string();
            assert!(ct.starts_with(ty), "{path}: {ct}");
            assert!(
                resp.headers()[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap()
                    .contains("script-src 'self'")
            );
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert!(text.contains(needle), "{path} lacks {needle}");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("ui.js", UI_JS),
            ("ui.css", UI_CSS),
        ] {
            for bad in ["http://", "https://", "//cdn", "<script>"] {
                // The SVG namespace is an identifier, not a fetch.
                let hits = text
                    .match_indices(bad)
                    .filter(|(i, _)| !text[*i..].starts_with("http://www.w3.org/2000/svg"))
                    .count();
                assert_eq!(hits, 0, "{name} contains {bad:?}");
            }
        }
    }
}
