//! Bucket types over HTTP: Riak's `GET|PUT /types/{t}/props`, and the
//! operator's `/admin/bucket-types` routes behind `dynkv admin
//! bucket-type create|activate|update|list|status` (`riak-admin
//! bucket-type`'s verbs).
//!
//! The registry itself is `dynkv-btypes`, carried and gossiped in the
//! cluster state, so a type created through one node is known to all.
//! This module validates property *values* against this node's
//! configuration (an `n_val` within the cluster's N, quorum words, a
//! `hll_precision` from 4 to 16) before it makes a command; the registry
//! checks what depends on a type's history (fixed properties, activation).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dynkv_btypes::{DEFAULT_TYPE, TypeCommand, TypeEntry};
use serde_json::{Map, Value, json};

use super::RiakError;
use super::bucket::BucketProps;
use super::request::Target;
use crate::http::auth::AdminAuthorised;
use crate::{ApiError, AppState};

/// Properties a client may send back from a `GET` that are not settable
/// (Riak's HTTP answers carry them; its clients echo them on a `PUT`).
const SHOWN_ONLY: [&str; 3] = ["name", "active", "claimant"];

/// Why a change to a type was refused: the status and the sentence.
pub struct Refused(pub StatusCode, pub String);

/// `{"props": {...}}` of a type as Riak shows it: its effective
/// properties (the defaults under the type's), and whether it is active.
pub fn type_json(state: &AppState, name: &str, entry: Option<&TypeEntry>) -> Value {
    let cluster_n = state.coord.config().n_val;
    let props = match entry {
        Some(e) => BucketProps::from_set(e.props(), cluster_n, false)
            .unwrap_or_else(|_| BucketProps::defaults(cluster_n)),
        None => BucketProps::defaults(cluster_n),
    };
    let mut doc = props.to_json(name.as_bytes());
    let active = entry.is_none_or(|e| e.active);
    doc["props"]["active"] = Value::Bool(active);
    doc
}

/// `{"name", "active", "props"}`: how the admin routes show a type, from
/// its [`type_json`].
fn status_json(name: &str, doc: &Value) -> Value {
    json!({
        "name": name,
        "active": doc["props"]["active"],
        "props": doc["props"],
    })
}

/// Validates and applies a change to a type, made on this node.
pub async fn change(state: &AppState, cmd: TypeCommand) -> Result<Value, Refused> {
    let membership = state.membership.clone().ok_or_else(|| {
        Refused(
            StatusCode::NOT_IMPLEMENTED,
            "bucket types need live membership, which is off on this node".into(),
        )
    })?;
    let name = cmd.name().to_string();
    if name == DEFAULT_TYPE {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            dynkv_btypes::TypeError::Default.to_string(),
        ));
    }
    let cluster_n = state.coord.config().n_val;
    let (check, cmd) = match cmd {
        TypeCommand::Create { name, props } => {
            let props = settable(props);
            (props.clone(), TypeCommand::Create { name, props })
        }
        TypeCommand::Update { name, props } => {
            let props = settable(props);
            let mut all = membership
                .bucket_type(&name)
                .map(|e| e.props())
                .unwrap_or_default();
            all.extend(props.clone());
            (all, TypeCommand::Update { name, props })
        }
        activate => (Map::new(), activate),
    };
    if let Err(errors) = BucketProps::from_set(check, cluster_n, true) {
        let why: Vec<String> = errors
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or_default()))
            .collect();
        return Err(Refused(StatusCode::BAD_REQUEST, why.join("; ")));
    }
    match membership.change_bucket_type(cmd).await {
        Ok(types) => Ok(type_json(state, &name, types.get(&name))),
        Err(e) => Err(Refused(status_of(&e), e)),
    }
}

/// The properties of a `PUT` without those only shown.
fn settable(mut props: Map<String, Value>) -> Map<String, Value> {
    for k in SHOWN_ONLY {
        props.remove(k);
    }
    props
}

/// The status of a refusal, from the registry's sentence.
fn status_of(why: &str) -> StatusCode {
    if why.contains("does not exist") {
        StatusCode::NOT_FOUND
    } else if why.contains("already active") {
        StatusCode::CONFLICT
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// `GET /types/{t}/props`.
pub async fn get(State(state): State<AppState>, t: Target) -> Response {
    let name = t.type_name().to_string();
    let entry = state.membership.as_ref().and_then(|m| m.bucket_type(&name));
    Json(type_json(&state, &name, entry.as_ref())).into_response()
}

/// `PUT /types/{t}/props` with `{"props": {...}}`: updates the type.
pub async fn put(
    State(state): State<AppState>,
    t: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RiakError> {
    let body = body.map_err(|e| RiakError::bad_request(e.to_string()))?;
    let props = props_of(&body).ok_or_else(|| {
        RiakError::bad_request(
            "bucket type PUT must be a JSON object of the form:\n{\"props\":{...bucket type properties...}}",
        )
    })?;
    let cmd = TypeCommand::Update {
        name: t.type_name().to_string(),
        props,
    };
    match change(&state, cmd).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(Refused(status, why)) => Err(RiakError::new(status, why)),
    }
}

/// The `props` object of `{"props": {...}}` (an empty body: none).
fn props_of(body: &[u8]) -> Option<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(Map::new());
    }
    match serde_json::from_slice::<Value>(body).ok()? {
        Value::Object(mut doc) => match doc.remove("props") {
            Some(Value::Object(p)) => Some(p),
            None if doc.is_empty() => Some(Map::new()),
            _ => None,
        },
        _ => None,
    }
}

/// The operator's routes (admin token or a `dynkv.admin` grant).
pub fn admin_router() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/admin/bucket-types", get(admin_list))
        .route("/admin/bucket-types/{name}", get(admin_status))
        .route("/admin/bucket-types/{name}/{verb}", post(admin_change))
}

fn admin_only(
    state: &AppState,
    headers: &HeaderMap,
    granted: Option<axum::Extension<AdminAuthorised>>,
) -> Result<(), ApiError> {
    if granted.is_none() && !crate::has_admin_token(state, headers) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bucket-type commands need the admin token derived from the cluster secret in X-Dynkv-Token",
        ));
    }
    Ok(())
}

/// `GET /admin/bucket-types`: every type, `default` first.
async fn admin_list(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<axum::Extension<AdminAuthorised>>,
) -> Result<Response, ApiError> {
    admin_only(&state, &headers, granted)?;
    let mut types = vec![status_json(
        DEFAULT_TYPE,
        &type_json(&state, DEFAULT_TYPE, None),
    )];
    if let Some(m) = &state.membership {
        for (name, e) in m.bucket_types().iter() {
            types.push(status_json(name, &type_json(&state, name, Some(e))));
        }
    }
    Ok(Json(json!({ "types": types })).into_response())
}

/// `GET /admin/bucket-types/{name}`.
async fn admin_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<axum::Extension<AdminAuthorised>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    admin_only(&state, &headers, granted)?;
    let entry = state.membership.as_ref().and_then(|m| m.bucket_type(&name));
    if entry.is_none() && name != DEFAULT_TYPE {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_bucket_type",
            format!("bucket type {name} does not exist"),
        ));
    }
    let doc = type_json(&state, &name, entry.as_ref());
    Ok(Json(status_json(&name, &doc)).into_response())
}

/// `POST /admin/bucket-types/{name}/{create|activate|update}` with
/// `{"props": {...}}` for create and update.
async fn admin_change(
    State(state): State<AppState>,
    headers: HeaderMap,
    granted: Option<axum::Extension<AdminAuthorised>>,
    Path((name, verb)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_only(&state, &headers, granted)?;
    let props = props_of(&body).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_props",
            "the body must be a JSON object {\"props\": {...}}",
        )
    })?;
    let cmd = match verb.as_str() {
        "create" => TypeCommand::Create {
            name: name.clone(),
            props,
        },
        "update" => TypeCommand::Update {
            name: name.clone(),
            props,
        },
        "activate" => TypeCommand::Activate { name: name.clone() },
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_verb",
                format!("{verb}: not one of create, activate, update"),
            ));
        }
    };
    match change(&state, cmd).await {
        Ok(doc) => Ok(Json(status_json(&name, &doc)).into_response()),
        Err(Refused(status, why)) => Err(ApiError::new(status, "bucket_type_refused", why)),
    }
}
