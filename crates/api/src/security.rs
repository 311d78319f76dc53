//! Security administration, `riak-admin security` over HTTP:
//! `GET /admin/security` (status, users, sources, grants, tokens) and
//! `POST /admin/security/{verb}` with a JSON body, the verbs being
//! `enable`, `disable`, `add-user`, `alter-user`, `del-user`,
//! `add-source`, `del-source`, `grant`, `revoke`, `token-create` and
//! `token-revoke` (`dynkv admin security ...` and `dynkv admin token ...`
//! send them).
//!
//! Every change is applied on the node that takes it, persisted in its
//! cluster state and gossiped to every member at once. Passwords are
//! hashed here (argon2id, random salt) and only the hash leaves this
//! handler; a new bearer token is answered once and only its SHA-256 is
//! kept. All of it needs the cluster admin token in `X-Dynkv-Token`, or,
//! once security is on, a user holding `dynkv.admin`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use dynkv_security::{Command, Method, Permission, Scope, SecurityState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::auth::AdminAuthorised;
use crate::members::MembershipAdmin;
use crate::{ApiError, AppState};

/// The security routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/security", get(status))
        .route("/admin/security/{verb}", post(change))
}

/// Body of `POST /admin/security/{verb}`; each verb reads its fields.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Change {
    /// User of add-user, alter-user, del-user.
    name: Option<String>,
    /// Clear-text password of add-user, alter-user.
    password: Option<String>,
    /// Users (or `all`) of add-source, del-source, grant, revoke.
    users: Option<Vec<String>>,
    /// CIDR of add-source, del-source.
    cidr: Option<String>,
    /// `password` or `trust`, for add-source.
    method: Option<String>,
    /// Permissions of grant, revoke.
    permissions: Option<Vec<String>>,
    /// Bucket type of grant, revoke (absent: `any`).
    bucket_type: Option<String>,
    /// Bucket of grant, revoke (needs a bucket type).
    bucket: Option<String>,
    /// User of token-create, token-revoke.
    user: Option<String>,
    /// Token of token-revoke.
    token: Option<String>,
}

fn authorised(
    state: &AppState,
    headers: &HeaderMap,
    granted: bool,
) -> Result<Arc<dyn MembershipAdmin>, ApiError> {
    if !granted && !crate::has_admin_token(state, headers) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "security commands need the admin token derived from the cluster secret in X-Dynkv-Token, or a user holding dynkv.admin",
        ));
    }
    state.membership.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "no_membership",
            "this node keeps no cluster state, hence no security rules",
        )
    })
}

fn missing(field: &str, verb: &str) -> ApiError {
    ApiError::bad_request(
        "bad_security_command",
        format!("{verb} needs the field {field:?}"),
    )
}

fn cidr(s: Option<String>, verb: &str) -> Result<ipnet::IpNet, ApiError> {
    let s = s.ok_or_else(|| missing("cidr", verb))?;
    s.parse().map_err(|_| {
        ApiError::bad_request(
            "bad_security_command",
            format!("{s:?} is not a CIDR such as 10.0.0.0/8 or ::1/128"),
        )
    })
}

async fn hash(password: String) -> String {
    let salt: [u8; 16] = rand::random();
    tokio::task::spawn_blocking(move || dynkv_security::hash_password(&password, salt))
        .await
        .expect("hashing does not panic")
}

/// Turns a verb and its body into a command (hashing a password), plus
/// the answer's extra fields (a new token).
async fn command(verb: &str, c: Change) -> Result<(Command, Value), ApiError> {
    let none = Value::Null;
    let cmd = match verb {
        "enable" => Command::Enable,
        "disable" => Command::Disable,
        "add-user" | "alter-user" => {
            let name = c.name.ok_or_else(|| missing("name", verb))?;
            let password = match c.password {
                Some(p) => Some(hash(p).await),
                None => None,
            };
            if verb == "add-user" {
                Command::AddUser { name, password }
            } else {
                Command::AlterUser { name, password }
            }
        }
        "del-user" => Command::DelUser {
            name: c.name.ok_or_else(|| missing("name", verb))?,
        },
        "add-source" => {
            let method: Method = c
                .method
                .ok_or_else(|| missing("method", verb))?
                .parse()
                .map_err(|e: dynkv_security::CommandError| {
                    ApiError::bad_request("bad_security_command", e.to_string())
                })?;
            Command::AddSource {
                users: c.users.ok_or_else(|| missing("users", verb))?,
                cidr: cidr(c.cidr, verb)?,
                method,
            }
        }
        "del-source" => Command::DelSource {
            users: c.users.ok_or_else(|| missing("users", verb))?,
            cidr: cidr(c.cidr, verb)?,
        },
        "grant" | "revoke" => {
            let perms = c
                .permissions
                .ok_or_else(|| missing("permissions", verb))?
                .iter()
                .map(|p| p.parse::<Permission>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::bad_request("bad_security_command", e.to_string()))?;
            let scope = match (c.bucket_type, c.bucket) {
                (None, None) => Scope::Any,
                (Some(t), None) => Scope::Type(t),
                (Some(t), Some(b)) => Scope::Bucket(t, b),
                (None, Some(_)) => {
                    return Err(ApiError::bad_request(
                        "bad_security_command",
                        "a bucket needs its bucket type (e.g. default)",
                    ));
                }
            };
            let users = c.users.ok_or_else(|| missing("users", verb))?;
            if verb == "grant" {
                Command::Grant {
                    perms,
                    scope,
                    users,
                }
            } else {
                Command::Revoke {
                    perms,
                    scope,
                    users,
                }
            }
        }
        "token-create" => {
            let user = c.user.ok_or_else(|| missing("user", verb))?;
            let token = dynkv_security::new_token(rand::random());
            let hash = dynkv_security::token_hash(&token);
            let extra = json!({"token": token, "user": user, "id": &hash[..12]});
            return Ok((Command::AddToken { hash, user }, extra));
        }
        "token-revoke" => match (c.token, c.user) {
            (Some(t), _) => Command::RevokeToken {
                hash: dynkv_security::token_hash(&t),
            },
            (None, Some(user)) => Command::RevokeUserTokens { user },
            (None, None) => return Err(missing("token\" or \"user", verb)),
        },
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no security verb {other:?}"),
            ));
        }
    };
    Ok((cmd, none))
}

async fn change(
    State(state): State<AppState>,
    Path(verb): Path<String>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
    body: Option<Json<Change>>,
) -> Response {
    let m = match authorised(&state, &headers, granted.is_some()) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let Json(body) = body.unwrap_or_default();
    let (cmd, extra) = match command(&verb, body).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    match m.change_security(cmd).await {
        Ok(s) => {
            let mut v = view(&s);
            if !extra.is_null() {
                v["created"] = extra;
            }
            Json(v).into_response()
        }
        Err(e) => ApiError::bad_request("security_refused", e).into_response(),
    }
}

async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<Extension<AdminAuthorised>>,
) -> Response {
    match authorised(&state, &headers, granted.is_some()) {
        Ok(m) => Json(view(&m.security())).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The JSON of `GET /admin/security` (no secret in it: no hash is shown,
/// tokens only by the first 12 hex digits of their hash).
pub fn view(s: &SecurityState) -> Value {
    let mut grants: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for (u, scope, p) in s.live_grants() {
        grants
            .entry((u.clone(), scope.to_string()))
            .or_default()
            .push(p.as_str());
    }
    json!({
        "enabled": s.enabled(),
        "version": s.version(),
        "users": s.live_users().map(|(n, u)| json!({"name": n, "password": u.password.is_some()})).collect::<Vec<_>>(),
        "sources": s.live_sources().into_iter().map(|(u, net, m)| json!({"user": u, "cidr": net.to_string(), "method": m.as_str()})).collect::<Vec<_>>(),
        "grants": grants.into_iter().map(|((u, scope), perms)| json!({"user": u, "on": scope, "permissions": perms})).collect::<Vec<_>>(),
        "tokens": s.live_tokens().map(|(h, u)| json!({"user": u, "id": &h[..h.len().min(12)]})).collect::<Vec<_>>(),
    })
}
