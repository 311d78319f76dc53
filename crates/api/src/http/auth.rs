//! Authentication and authorisation of every client request, when the
//! cluster's security is enabled (`dynkv admin security enable`); when it
//! is off, requests pass untouched, exactly as before security existed.
//!
//! One layer around the whole router ([`crate::router`]) sees each request
//! before any route, bulkhead or body extractor: it decides from the
//! method, the path and the headers alone, so no body is read for a
//! request that will be refused.
//!
//! 1. **What the route needs** ([`classify`]): `/health` is open; `/kv`
//!    needs `riak_kv.get|put|delete` on bucket type `kv` (native keys have
//!    no bucket: grant `on kv` or `on any`), and so do watches (a GET);
//!    `/feed` needs `riak_kv.get` on `kv` (it shows values); the Riak routes need Riak's
//!    permissions on their bucket type (`default` when the path names none)
//!    and bucket; `/admin/*`, `/metrics` and the dashboard (`/ui`) need
//!    `dynkv.admin`; anything else (`/ring`, `/ping`, `/stats`, unknown
//!    paths) needs a valid user only.
//! 2. **Who is asking**: `Authorization: Basic` (checked by the source that
//!    matches the user and the peer address) or `Bearer` (a token from
//!    `dynkv admin token create`). The cluster admin token in
//!    `X-Dynkv-Token` also opens every `dynkv.admin` route, so the
//!    operator's `dynkv admin` commands keep working.
//! 3. **Over what**: credentials are accepted over TLS (a connection whose
//!    requests carry the [`Tls`] extension), or in plain HTTP only from a
//!    loopback peer; anything else is refused with 403 `tls_required`, as
//!    Riak refuses credentials over HTTP.
//!
//! The peer address comes from the `ConnectInfo<SocketAddr>` request
//! extension the listener adds (`into_make_service_with_connect_info`).
//! Without it the peer is unknown: only `/0` sources match, and plain
//! HTTP counts as not loopback.
//!
//! Password checks (argon2) are slow by design, so a successful check is
//! cached for [`VERIFIED_TTL`], keyed by the SHA-256 of the header and the
//! stored hash: changing a password changes the key, and deleting the
//! user fails before the cache is asked. At most [`MAX_VERIFYING`] checks
//! run at once, off the async workers.
//!
//! Refusals: 401 with `WWW-Authenticate: Basic realm="dynkv"` without
//! valid credentials, 403 `forbidden` without the grant; JSON
//! `{"error","code"}` on `/kv` and `/admin`, plain text on the Riak routes
//! (their error style). Each is counted in
//! `dynkv_auth_failures_total{reason}`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dynkv_security::{Credentials, Denied, Permission, SecurityState};
use percent_encoding::percent_decode_str;
use sha2::{Digest, Sha256};

use crate::riak::RiakError;
use crate::{ADMIN_TOKEN_HEADER, ApiError, AppState};

/// How long a successful password check is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);

/// Password checks running at once (each takes ~19 MiB and tens of ms).
pub const MAX_VERIFYING: usize = 4;

/// Bucket type of native `/kv` keys in grants.
pub const KV_BUCKET_TYPE: &str = "kv";

/// Request extension a TLS listener adds to every request of a TLS
/// connection; absent means plain HTTP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tls;

/// Request extension this layer adds when the request was authorised for
/// `dynkv.admin` (by a user's grant or the admin token), so admin handlers
/// need not check again.
#[derive(Clone, Copy, Debug, Default)]
pub struct AdminAuthorised;

/// The node's security enforcement: its cache of verified passwords and
/// what it knows of its own listener.
pub struct SecurityGate {
    verified: moka::sync::Cache<[u8; 32], ()>,
    verifying: tokio::sync::Semaphore,
    listen_loopback: bool,
}

impl SecurityGate {
    /// A gate for a node whose public listener is (or is not) on a loopback address.
    pub fn new(listen_loopback: bool) -> SecurityGate {
        SecurityGate {
            verified: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(VERIFIED_TTL)
                .build(),
            verifying: tokio::sync::Semaphore::new(MAX_VERIFYING),
            listen_loopback,
        }
    }

    /// Whether the public listener is on a loopback address.
    pub fn listen_loopback(&self) -> bool {
        self.listen_loopback
    }

    /// Whether `password` verifies against `phc`, through the cache.
    async fn verify(&self, header: &[u8], phc: &str, password: String) -> bool {
        let key: [u8; 32] = Sha256::new()
            .chain_update(header)
            .chain_update([0])
            .chain_update(phc.as_bytes())
            .finalize()
            .into();
        if self.verified.contains_key(&key) {
            return true;
        }
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        let phc = phc.to_string();
        let ok =
            tokio::task::spawn_blocking(move || dynkv_security::verify_password(&phc, &password))
                .await
                .unwrap_or(false);
        if ok {
            self.verified.insert(key, ());
        }
        ok
    }
}

impl Default for SecurityGate {
    fn default() -> Self {
        SecurityGate::new(true)
    }
}

/// What a route requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing (`/health`).
    Open,
    /// A valid user, no particular grant.
    User,
    /// A permission on (bucket type, bucket); `None` where the route names
    /// none (or a name that is not UTF-8, which only wider grants cover).
    Grant(Permission, Option<String>, Option<String>),
}

/// Which error style a route answers in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// JSON `{"error","code"}` (`/kv`, `/admin`, `/metrics`).
    Json,
    /// Riak's plain text.
    Riak,
}

fn name(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn object_perm(method: &Method) -> Option<Permission> {
    match *method {
        Method::GET | Method::HEAD => Some(Permission::Get),
        Method::PUT | Method::POST => Some(Permission::Put),
        Method::DELETE => Some(Permission::Delete),
        _ => None,
    }
}

/// The Riak routes under a bucket type (`rest` starts at `buckets`).
fn riak(method: &Method, bucket_type: Option<String>, rest: &[&str]) -> Need {
    let grant = |p: Permission, bucket: Option<String>| Need::Grant(p, bucket_type.clone(), bucket);
    match rest {
        ["buckets"] | ["buckets", ""] => grant(Permission::ListBuckets, None),
        ["buckets", b, "keys"] => match *method {
            Method::POST => grant(Permission::Put, name(b)),
            _ => grant(Permission::ListKeys, name(b)),
        },
        ["buckets", b, "keys", _, ..] => match object_perm(method) {
            Some(p) => grant(p, name(b)),
            None => Need::User,
        },
        ["buckets", b, "index", ..] => grant(Permission::Index, name(b)),
        ["buckets", b, "datatypes", ..] => match object_perm(method) {
            Some(p) => grant(p, name(b)),
            None => Need::User,
        },
        ["buckets", b, "props"] => match *method {
            Method::GET | Method::HEAD => grant(Permission::GetBucket, name(b)),
            _ => grant(Permission::SetBucket, name(b)),
        },
        _ => Need::User,
    }
}

/// What a request needs, from its method and path alone.
pub fn classify(method: &Method, path: &str) -> (Need, Style) {
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let default = || Some("default".to_string());
    match segs.as_slice() {
        ["health"] => (Need::Open, Style::Json),
        ["metrics"] | ["admin", ..] | ["ui", ..] => {
            (Need::Grant(Permission::Admin, None, None), Style::Json)
        }
        // The feed shows every value under its prefix: the get grant.
        ["feed"] => (
            Need::Grant(Permission::Get, Some(KV_BUCKET_TYPE.to_string()), None),
            Style::Json,
        ),
        ["kv", ..] => match object_perm(method) {
            Some(p) => (
                Need::Grant(p, Some(KV_BUCKET_TYPE.to_string()), None),
                Style::Json,
            ),
            None => (Need::User, Style::Json),
        },
        ["types", t, rest @ ..] => (riak(method, name(t), rest), Style::Riak),
        ["buckets", ..] => (riak(method, default(), &segs), Style::Riak),
        ["riak", b, rest @ ..] => {
            let need = match (rest, object_perm(method)) {
                ([] | [""], _) if *method == Method::GET => {
                    Need::Grant(Permission::GetBucket, default(), name(b))
                }
                ([] | [""], _) => Need::Grant(Permission::SetBucket, default(), name(b)),
                (_, Some(p)) => Need::Grant(p, default(), name(b)),
                (_, None) => Need::User,
            };
            (need, Style::Riak)
        }
        // The one MapReduce job served is an index query; its bucket is in
        // the body, so only a grant on any bucket covers it.
        ["mapred"] => (Need::Grant(Permission::Index, None, None), Style::Riak),
        [""] | ["ping"] | ["stats"] => (Need::User, Style::Riak),
        _ => (Need::User, Style::Json),
    }
}

/// Why a request was refused.
enum Refusal {
    Unauthorized(&'static str),
    Forbidden(String),
    TlsRequired,
}

fn refuse(state: &AppState, style: Style, r: Refusal) -> Response {
    let reason = match &r {
        Refusal::Unauthorized(reason) => reason,
        Refusal::Forbidden(_) => "forbidden",
        Refusal::TlsRequired => "tls_required",
    };
    state.metrics.auth_failure(reason);
    let mut resp = match (style, r) {
        (Style::Json, Refusal::Unauthorized(reason)) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("valid credentials are needed: Authorization Basic (user and password) or Bearer (token) ({})", reason.replace('_', " ")),
        )
        .into_response(),
        (Style::Json, Refusal::Forbidden(what)) => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("permission denied: {what}")).into_response()
        }
        (Style::Json, Refusal::TlsRequired) => ApiError::new(
            StatusCode::FORBIDDEN,
            "tls_required",
            "security is enabled and credentials are accepted over plain HTTP only from loopback; use HTTPS",
        )
        .into_response(),
        (Style::Riak, Refusal::Unauthorized(_)) => {
            RiakError::new(StatusCode::UNAUTHORIZED, "Authentication failed").into_response()
        }
        (Style::Riak, Refusal::Forbidden(what)) => {
            RiakError::new(StatusCode::FORBIDDEN, format!("Permission denied: {what}")).into_response()
        }
        (Style::Riak, Refusal::TlsRequired) => RiakError::new(
            StatusCode::FORBIDDEN,
            "Security is enabled and credentials are not accepted over HTTP. Try HTTPS instead.",
        )
        .into_response(),
    };
    if resp.status() == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"dynkv\""),
        );
    }
    resp
}

fn describe(p: Permission, t: &Option<String>, b: &Option<String>) -> String {
    match (t, b) {
        (Some(t), Some(b)) => format!("{p} on {t} {b}"),
        (Some(t), None) => format!("{p} on {t}"),
        _ => p.to_string(),
    }
}

/// Whether credentials may be accepted on this connection: over TLS, or
/// in plain HTTP from a loopback peer only (an unknown peer is not one).
pub fn credentials_may_travel(tls: bool, peer: Option<IpAddr>) -> bool {
    tls || peer.is_some_and(|p| p.to_canonical().is_loopback())
}

/// Who the credentials of `req` stand for, under `sec`.
async fn authenticate(
    state: &AppState,
    sec: &SecurityState,
    authorization: Option<HeaderValue>,
    tls: bool,
    peer: Option<IpAddr>,
) -> Result<String, Refusal> {
    let Some(value) = authorization else {
        return Err(Refusal::Unauthorized("no_credentials"));
    };
    if !credentials_may_travel(tls, peer) {
        return Err(Refusal::TlsRequired);
    }
    let denied = |d: Denied| Refusal::Unauthorized(d.reason());
    match dynkv_security::parse_authorization(value.as_bytes()) {
        Err(_) => Err(Refusal::Unauthorized("malformed")),
        Ok(Credentials::Bearer(token)) => sec
            .token_user(&dynkv_security::token_hash(&token), peer)
            .map(str::to_string)
            .map_err(denied),
        Ok(Credentials::Basic { user, password }) => match sec.basic_requirement(&user, peer) {
            Err(d) => Err(denied(d)),
            Ok(None) => Ok(user),
            Ok(Some(phc)) => {
                if state.security.verify(value.as_bytes(), phc, password).await {
                    Ok(user)
                } else {
                    Err(denied(Denied::BadPassword))
                }
            }
        },
    }
}

/// Checks a user's password under `sec` for a peer (Riak's `RpbAuthReq`
/// carries them bare): the same sources and password cache as Basic
/// credentials. `Err` is the failure's reason for the metrics.
pub async fn check_password(
    state: &AppState,
    sec: &SecurityState,
    user: &str,
    password: &str,
    peer: Option<IpAddr>,
) -> Result<(), &'static str> {
    match sec.basic_requirement(user, peer) {
        Err(d) => Err(d.reason()),
        Ok(None) => Ok(()),
        Ok(Some(phc)) => {
            let cache_key = [b"pbc\0", user.as_bytes(), b"\0", password.as_bytes()].concat();
            if state
                .security
                .verify(&cache_key, phc, password.to_string())
                .await
            {
                Ok(())
            } else {
                Err(Denied::BadPassword.reason())
            }
        }
    }
}

/// The layer: see the module docs.
pub async fn enforce(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    // Security off (or no cluster state): nothing to decide, nothing parsed.
    let Some(sec) = state
        .membership
        .as_ref()
        .map(|m| m.security())
        .filter(|s| s.enabled())
    else {
        return next.run(req).await;
    };
    let (need, style) = classify(req.method(), req.uri().path());
    if need == Need::Open {
        return next.run(req).await;
    }
    if let Need::Grant(Permission::Admin, ..) = need
        && let Some(t) = req.headers().get(ADMIN_TOKEN_HEADER)
        && dynkv_rpc::token_matches(t.as_bytes(), state.admin_token.as_bytes())
    {
        req.extensions_mut().insert(AdminAuthorised);
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let authorization = req.headers().get(header::AUTHORIZATION).cloned();
    let tls = req.extensions().get::<Tls>().is_some();
    let user = match authenticate(&state, &sec, authorization, tls, peer).await {
        Ok(u) => u,
        Err(r) => return refuse(&state, style, r),
    };
    if let Need::Grant(p, t, b) = &need {
        if !sec.allowed(&user, *p, t.as_deref(), b.as_deref()) {
            return refuse(&state, style, Refusal::Forbidden(describe(*p, t, b)));
        }
        if *p == Permission::Admin {
            req.extensions_mut().insert(AdminAuthorised);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(method: Method, path: &str) -> Need {
        classify(&method, path).0
    }

    fn grant(p: Permission, t: &str, b: Option<&str>) -> Need {
        Need::Grant(p, Some(t.into()), b.map(String::from))
    }

    #[test]
    fn every_route_family_needs_its_permission() {
        use Permission::*;
        assert_eq!(need(Method::GET, "/health"), Need::Open);
        // The ring view clients route by names no key: any user reads it.
        assert_eq!(need(Method::GET, "/ring"), Need::User);
        assert_eq!(need(Method::GET, "/kv/a/b"), grant(Get, "kv", None));
        assert_eq!(need(Method::GET, "/feed"), grant(Get, "kv", None));
        assert_eq!(need(Method::PUT, "/kv/a"), grant(Put, "kv", None));
        assert_eq!(need(Method::DELETE, "/kv/a"), grant(Delete, "kv", None));
        assert_eq!(
            need(Method::GET, "/buckets/b%20x/keys/k"),
            grant(Get, "default", Some("b x"))
        );
        assert_eq!(
            need(Method::HEAD, "/buckets/b/keys/k"),
            grant(Get, "default", Some("b"))
        );
        assert_eq!(
            need(Method::POST, "/buckets/b/keys/k"),
            grant(Put, "default", Some("b"))
        );
        assert_eq!(
            need(Method::POST, "/buckets/b/keys"),
            grant(Put, "default", Some("b"))
        );
        assert_eq!(
            need(Method::GET, "/buckets/b/keys"),
            grant(ListKeys, "default", Some("b"))
        );
        assert_eq!(
            need(Method::DELETE, "/types/t/buckets/b/keys/k"),
            grant(Delete, "t", Some("b"))
        );
        assert_eq!(
            need(Method::GET, "/types/t/buckets/b/props"),
            grant(GetBucket, "t", Some("b"))
        );
        assert_eq!(
            need(Method::PUT, "/buckets/b/props"),
            grant(SetBucket, "default", Some("b"))
        );
        assert_eq!(
            need(Method::DELETE, "/buckets/b/props"),
            grant(SetBucket, "default", Some("b"))
        );
        assert_eq!(
            need(Method::GET, "/buckets"),
            grant(ListBuckets, "default", None)
        );
        assert_eq!(
            need(Method::GET, "/types/t/buckets"),
            grant(ListBuckets, "t", None)
        );
        assert_eq!(
            need(Method::GET, "/riak/b/k"),
            grant(Get, "default", Some("b"))
        );
        assert_eq!(
            need(Method::GET, "/riak/b"),
            grant(GetBucket, "default", Some("b"))
        );
        let admin = Need::Grant(Admin, None, None);
        for p in [
            "/metrics",
            "/admin/cluster",
            "/admin/members",
            "/admin/security",
            "/admin/join",
            "/admin/transfers",
            "/admin/transfer-limit",
            "/admin/overview",
            "/ui",
            "/ui/ui.js",
        ] {
            assert_eq!(need(Method::GET, p), admin, "{p}");
        }
        assert_eq!(need(Method::GET, "/ping"), Need::User);
        assert_eq!(need(Method::GET, "/nowhere"), Need::User);
        assert_eq!(classify(&Method::GET, "/ping").1, Style::Riak);
        assert_eq!(classify(&Method::GET, "/kv/x").1, Style::Json);
    }

    #[test]
    fn credentials_travel_over_tls_or_loopback_only() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(credentials_may_travel(false, ip("127.0.0.1")));
        assert!(credentials_may_travel(false, ip("::1")));
        assert!(credentials_may_travel(false, ip("::ffff:127.0.0.1")));
        assert!(!credentials_may_travel(false, ip("10.0.0.1")));
        assert!(!credentials_may_travel(false, None), "unknown peer");
        assert!(credentials_may_travel(true, ip("10.0.0.1")));
        assert!(credentials_may_travel(true, None));
    }

    #[test]
    fn a_bucket_that_is_not_utf8_names_no_bucket() {
        assert_eq!(
            need(Method::GET, "/buckets/%FF/keys/k"),
            Need::Grant(Permission::Get, Some("default".into()), None)
        );
    }
}
