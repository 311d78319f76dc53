//! Bucket properties: `GET`, `PUT` and `DELETE /buckets/{b}/props`, and
//! where they are kept.
//!
//! Properties ([`BucketProps`]) are stored in the cluster as an ordinary
//! replicated object under the reserved key `0xFE ‖ bucket` (no native or
//! namespaced key starts with `0xFE`), holding a JSON object of the
//! properties explicitly set. Writes go through the coordinator with
//! W=quorum and *supersede* (each write replaces what its coordinator
//! holds); reads use R=quorum (R=1 when a quorum cannot answer, so that a
//! degraded cluster keeps serving its buckets) and resolve concurrent
//! versions last-write-wins, by timestamp. `DELETE` writes a tombstone: the
//! bucket is back to the defaults. Invalid properties are refused with 400
//! and a JSON object naming each one.
//!
//! Every node caches a bucket's properties for
//! [`CACHE_TTL`](super::shared::CACHE_TTL); a change made through this
//! node is cached at once, one made through another node is seen here
//! within the TTL.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dynkv_quorum::{QuorumError, ReadOptions};
use dynkv_rpc::messages::{Quorum, WriteRequest};
use dynkv_vclock::{Content, VersionVector};
use serde_json::{Map, Value};

use super::RiakError;
use super::bucket::BucketProps;
use super::request::Target;
use super::shared::Riak;
use crate::AppState;
use crate::http::siblings::newest;
use dynkv_rpc::messages::listing::component_prefix;

/// First byte of the key holding a default-type bucket's properties.
pub const PROPS_TAG: u8 = 0xFE;

/// First byte of the key holding the properties of a bucket of another
/// type: `0xFC ‖ varint(len(type)) ‖ type ‖ bucket`.
pub const TYPED_PROPS_TAG: u8 = 0xFC;

/// The internal key of a bucket's properties.
pub fn props_key(t: &Target) -> Vec<u8> {
    let mut k = match &t.btype {
        None => vec![PROPS_TAG],
        Some(name) => component_prefix(&[TYPED_PROPS_TAG], name.as_bytes()),
    };
    k.extend_from_slice(&t.bucket);
    k
}

impl Riak {
    /// A bucket's properties: cached, or read from the cluster.
    pub async fn props(&self, state: &AppState, t: &Target) -> Result<Arc<BucketProps>, RiakError> {
        if let Some(p) = self.cached_props(&props_key(t)) {
            return Ok(p);
        }
        self.reload_props(state, t).await
    }

    /// Reads a bucket's properties from the cluster and caches them.
    pub(super) async fn reload_props(
        &self,
        state: &AppState,
        t: &Target,
    ) -> Result<Arc<BucketProps>, RiakError> {
        let set = read_stored(state, t).await?;
        let p = Arc::new(effective(state, t, set));
        self.cache_props(&props_key(t), p.clone());
        Ok(p)
    }
}

/// The properties of bucket type `t.btype` as set (none for `default`).
pub fn type_set(state: &AppState, t: &Target) -> Map<String, Value> {
    t.btype
        .as_deref()
        .and_then(|name| state.membership.as_ref()?.bucket_type(name))
        .map(|e| e.props())
        .unwrap_or_default()
}

/// A bucket's properties: the defaults, under its type's, under its own
/// `set` (stored ones: invalid values are skipped, not refused).
fn effective(state: &AppState, t: &Target, set: Map<String, Value>) -> BucketProps {
    let cluster_n = state.coord.config().n_val;
    let mut all = type_set(state, t);
    all.extend(set);
    BucketProps::from_set(all, cluster_n, false)
        .unwrap_or_else(|_| BucketProps::defaults(cluster_n))
}

/// The properties explicitly set on a bucket (empty: none, or cleared).
async fn read_stored(state: &AppState, t: &Target) -> Result<Map<String, Value>, RiakError> {
    let key = Bytes::from(props_key(t));
    let read = |r| ReadOptions {
        r: Some(r),
        sloppy: true,
        timeout: None,
        after: None,
        n_val: None,
    };
    let object = match state.coord.get(key.clone(), read(Quorum::Majority)).await {
        Ok(o) => o,
        Err(QuorumError::NotEnough { .. } | QuorumError::Unavailable(_)) => state
            .coord
            .get(key, read(Quorum::One))
            .await
            .map_err(|e| RiakError::read(e, false))?,
        Err(e) => return Err(RiakError::read(e, false)),
    };
    Ok(object
        .as_ref()
        .and_then(newest)
        .filter(|c| !c.deleted)
        .and_then(|c| serde_json::from_slice::<Map<String, Value>>(&c.value).ok())
        .unwrap_or_default())
}

/// Writes (or, with a tombstone, clears) a bucket's stored properties.
async fn write_stored(state: &AppState, t: &Target, content: Content) -> Result<(), RiakError> {
    let req = WriteRequest {
        key: Bytes::from(props_key(t)),
        content,
        context: VersionVector::new(),
        w: Quorum::Majority,
        sloppy: true,
        timeout_ms: state.coord.config().default_timeout.as_millis() as u64,
        idempotency_key: None,
        n_val: None,
        supersede: true,
        datatype_op: None,
    };
    state
        .coord
        .put(req)
        .await
        .map(|_| ())
        .map_err(|e| RiakError::write(e, false))
}

/// `GET /buckets/{b}/props`: always read from the cluster (and re-cached).
pub async fn get(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
) -> Result<Response, RiakError> {
    let p = riak.reload_props(&state, &t).await?;
    Ok(Json(p.to_json(&t.bucket)).into_response())
}

/// `PUT /buckets/{b}/props` with `{"props": {...}}`: merges the given
/// properties over those already set, validates, stores.
pub async fn put(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RiakError> {
    let body = body.map_err(|e| RiakError::bad_request(e.to_string()))?;
    let malformed = || {
        RiakError::bad_request(
            "bucket PUT must be a JSON object of the form:\n{\"props\":{...bucket properties...}}",
        )
    };
    let Ok(Value::Object(mut doc)) = serde_json::from_slice::<Value>(&body) else {
        return Err(malformed());
    };
    let Some(Value::Object(new)) = doc.remove("props") else {
        return Err(malformed());
    };
    match set(&state, &riak, &t, new).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(PropsRefused::Invalid(errors)) => {
            Ok((StatusCode::BAD_REQUEST, Json(errors)).into_response())
        }
        Err(PropsRefused::Failed(e)) => Err(e),
    }
}

/// Why properties were not set.
pub(super) enum PropsRefused {
    /// Invalid properties, each with why.
    Invalid(Map<String, Value>),
    /// The cluster could not be read or written.
    Failed(RiakError),
}

impl From<RiakError> for PropsRefused {
    fn from(e: RiakError) -> Self {
        PropsRefused::Failed(e)
    }
}

/// Merges `new` over a bucket's stored properties, validates and stores
/// them: the transport-neutral core of the HTTP `PUT .../props` and the
/// PBC `RpbSetBucketReq`.
pub(super) async fn set(
    state: &AppState,
    riak: &Riak,
    t: &Target,
    new: Map<String, Value>,
) -> Result<(), PropsRefused> {
    let of_type = type_set(state, t);
    let mut set = read_stored(state, t).await?;
    let mut errors = Map::new();
    for (k, v) in new {
        if k == "name" {
            continue;
        }
        // What a bucket type fixes, a bucket may only repeat.
        let unset = if k == "datatype" {
            Value::Null
        } else {
            Value::Bool(false)
        };
        if dynkv_btypes::IMMUTABLE.contains(&k.as_str()) && of_type.get(&k).unwrap_or(&unset) != &v
        {
            errors.insert(
                k.clone(),
                Value::from("is fixed by the bucket type: create a bucket type to set it"),
            );
        }
        set.insert(k, v);
    }
    if !errors.is_empty() {
        return Err(PropsRefused::Invalid(errors));
    }
    let cluster_n = state.coord.config().n_val;
    let mut all = of_type;
    all.extend(set.clone());
    let props = BucketProps::from_set(all, cluster_n, true).map_err(PropsRefused::Invalid)?;
    let value = Value::Object(set).to_string();
    write_stored(state, t, Content::value(value, "application/json", 0)).await?;
    riak.cache_props(&props_key(t), Arc::new(props));
    Ok(())
}

/// `DELETE /buckets/{b}/props`: back to the defaults.
pub async fn delete(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
) -> Result<Response, RiakError> {
    reset(&state, &riak, &t).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Clears a bucket's own properties (back to its type's): the core of the
/// HTTP `DELETE .../props` and the PBC `RpbResetBucketReq`.
pub(super) async fn reset(state: &AppState, riak: &Riak, t: &Target) -> Result<(), RiakError> {
    write_stored(state, t, Content::tombstone(0)).await?;
    let defaults = effective(state, t, Map::new());
    riak.cache_props(&props_key(t), Arc::new(defaults));
    Ok(())
}
