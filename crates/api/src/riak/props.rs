//! Bucket properties: `GET`, `PUT` and `DELETE /buckets/{b}/props`.
//!
//! Properties are stored in the cluster as an ordinary replicated object
//! under the reserved key `0xFE ‖ bucket` (no native or namespaced key starts
//! with `0xFE`), holding a JSON object of the properties explicitly set.
//! Writes go through the coordinator with W=quorum and *supersede* (each
//! write replaces what its coordinator holds); reads use R=quorum (R=1 when
//! a quorum cannot answer, so that a degraded cluster keeps serving its
//! buckets) and resolve concurrent versions last-write-wins, by timestamp.
//! `DELETE` writes a tombstone: the bucket is back to the defaults.
//!
//! The defaults are Riak's for the default bucket type: `allow_mult=false`,
//! `last_write_wins=false`, `n_val` = the cluster's N, `r`, `w`, `dw`, `rw`
//! = `quorum`, `pr`, `pw` = 0, `notfound_ok=true`, `basic_quorum=false`.
//! `n_val` may be lowered per bucket, never raised above the cluster's.
//! Unknown properties are kept and echoed; ones naming a feature dynkv does
//! not have (commit hooks, datatypes, strong consistency, write-once) are
//! refused with 400, as are malformed values (a JSON object naming each bad
//! property, as Riak answers).
//!
//! Every node caches a bucket's properties for [`CACHE_TTL`]; a change made
//! through this node is cached at once, one made through another node is
//! seen here within the TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, RawPathParams, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dynkv_quorum::{QuorumError, ReadOptions};
use dynkv_rpc::messages::{Quorum, WriteRequest};
use dynkv_vclock::{Content, VersionVector};
use serde_json::{Map, Value, json};

use super::{Riak, RiakError, Rw, Target, object::newest, observed};
use crate::AppState;

/// How long a node trusts its cached copy of a bucket's properties.
pub const CACHE_TTL: Duration = Duration::from_secs(1);

/// First byte of the key holding a bucket's properties.
pub const PROPS_TAG: u8 = 0xFE;

/// Most buckets cached per node; past it the cache starts over.
const CACHE_MAX: usize = 10_000;

/// The internal key of a bucket's properties.
pub fn props_key(bucket: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1);
    k.push(PROPS_TAG);
    k.extend_from_slice(bucket);
    k
}

/// A bucket's effective properties.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketProps {
    /// Keep concurrent writes as siblings (else the newest wins).
    pub allow_mult: bool,
    /// Last-write-wins by timestamp, whatever `allow_mult` says.
    pub last_write_wins: bool,
    /// Replicas of each key (at most the cluster's N).
    pub n_val: usize,
    /// Default read quorum.
    pub r: Rw,
    /// Default write quorum.
    pub w: Rw,
    /// Default durable-write quorum (every acknowledgement here is durable).
    pub dw: Rw,
    /// Default quorum of deletes.
    pub rw: Rw,
    /// Default primary read quorum (0: none).
    pub pr: Rw,
    /// Default primary write quorum (0: none).
    pub pw: Rw,
    /// A replica's "not found" counts toward R.
    pub notfound_ok: bool,
    /// With `notfound_ok=false`, stop at a majority of "not found".
    pub basic_quorum: bool,
    /// Every property explicitly set, as stored (unknown ones included).
    set: Map<String, Value>,
}

impl BucketProps {
    /// Riak's defaults for the default bucket type on a cluster of `n`.
    pub fn defaults(cluster_n: usize) -> Self {
        BucketProps {
            allow_mult: false,
            last_write_wins: false,
            n_val: cluster_n,
            r: Rw::Quorum,
            w: Rw::Quorum,
            dw: Rw::Quorum,
            rw: Rw::Quorum,
            pr: Rw::Num(0),
            pw: Rw::Num(0),
            notfound_ok: true,
            basic_quorum: false,
            set: Map::new(),
        }
    }

    /// The defaults overlaid with `set`; every property that is not valid
    /// is named in the error (`strict`), or skipped (stored properties,
    /// validated when written, after the cluster's N changed).
    pub fn from_set(
        set: Map<String, Value>,
        cluster_n: usize,
        strict: bool,
    ) -> Result<Self, Map<String, Value>> {
        let mut p = BucketProps::defaults(cluster_n);
        let mut errors = Map::new();
        let as_bool = |v: &Value| match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        };
        for (k, v) in &set {
            let bad = |msg: &str| (k.clone(), Value::from(msg));
            let err = match k.as_str() {
                "allow_mult" | "last_write_wins" | "notfound_ok" | "basic_quorum" => {
                    match as_bool(v) {
                        Some(b) => {
                            *match k.as_str() {
                                "allow_mult" => &mut p.allow_mult,
                                "last_write_wins" => &mut p.last_write_wins,
                                "notfound_ok" => &mut p.notfound_ok,
                                _ => &mut p.basic_quorum,
                            } = b;
                            None
                        }
                        None => Some(bad("must be true or false")),
                    }
                }
                "n_val" => match v.as_u64() {
                    Some(n) if n >= 1 && n as usize <= cluster_n => {
                        p.n_val = n as usize;
                        None
                    }
                    _ if !strict => {
                        p.n_val = v
                            .as_u64()
                            .map_or(cluster_n, |n| (n as usize).clamp(1, cluster_n));
                        None
                    }
                    _ => Some(bad(&format!(
                        "must be an integer from 1 to the cluster's n_val, {cluster_n}"
                    ))),
                },
                "r" | "w" | "dw" | "rw" | "pr" | "pw" => match Rw::from_json(v) {
                    Some(q) => {
                        *match k.as_str() {
                            "r" => &mut p.r,
                            "w" => &mut p.w,
                            "dw" => &mut p.dw,
                            "rw" => &mut p.rw,
                            "pr" => &mut p.pr,
                            _ => &mut p.pw,
                        } = q;
                        None
                    }
                    None => Some(bad(
                        "must be a non-negative integer or one of one, quorum, all, default",
                    )),
                },
                "precommit" | "postcommit" if v.as_array().is_some_and(|a| !a.is_empty()) => {
                    Some(bad("commit hooks are not supported by dynkv"))
                }
                "datatype" => Some(bad("datatypes are not supported by dynkv")),
                "consistent" | "write_once" if as_bool(v) == Some(true) => {
                    Some(bad("not supported by dynkv"))
                }
                _ => None,
            };
            if let Some((k, msg)) = err {
                errors.insert(k, msg);
            }
        }
        for (name, q) in [
            ("r", p.r),
            ("w", p.w),
            ("dw", p.dw),
            ("rw", p.rw),
            ("pr", p.pr),
            ("pw", p.pw),
        ] {
            if let Rw::Num(k) = q
                && k as usize > p.n_val
            {
                if strict {
                    errors.insert(name.into(), Value::from("must be at most n_val"));
                } else {
                    let clamped = Rw::Num(p.n_val as u32);
                    match name {
                        "r" => p.r = clamped,
                        "w" => p.w = clamped,
                        "dw" => p.dw = clamped,
                        "rw" => p.rw = clamped,
                        "pr" => p.pr = clamped,
                        _ => p.pw = clamped,
                    }
                }
            }
        }
        if strict && !errors.is_empty() {
            return Err(errors);
        }
        p.set = set;
        Ok(p)
    }

    /// True when the server resolves siblings for the client (the newest
    /// wins) instead of answering them.
    pub fn resolves_siblings(&self) -> bool {
        !self.allow_mult || self.last_write_wins
    }

    /// `{"props": {...}}` as Riak shows it.
    pub fn to_json(&self, bucket: &[u8]) -> Value {
        let mut m = Map::new();
        for (k, v) in &self.set {
            m.insert(k.clone(), v.clone());
        }
        let known = [
            (
                "name",
                Value::from(String::from_utf8_lossy(bucket).into_owned()),
            ),
            ("allow_mult", self.allow_mult.into()),
            ("last_write_wins", self.last_write_wins.into()),
            ("n_val", self.n_val.into()),
            ("r", self.r.to_json()),
            ("w", self.w.to_json()),
            ("dw", self.dw.to_json()),
            ("rw", self.rw.to_json()),
            ("pr", self.pr.to_json()),
            ("pw", self.pw.to_json()),
            ("notfound_ok", self.notfound_ok.into()),
            ("basic_quorum", self.basic_quorum.into()),
            ("dvv_enabled", true.into()),
            ("precommit", json!([])),
            ("postcommit", json!([])),
        ];
        for (k, v) in known {
            m.insert(k.into(), v);
        }
        json!({ "props": m })
    }
}

/// Cached properties by bucket, with the time they were read.
type Entries = HashMap<Vec<u8>, (Instant, Arc<BucketProps>)>;

/// A node's cache of bucket properties.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<Entries>,
}

impl Cache {
    fn fresh(&self, bucket: &[u8]) -> Option<Arc<BucketProps>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(bucket)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, p)| p.clone())
    }

    fn insert(&self, bucket: &[u8], props: Arc<BucketProps>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(bucket.to_vec(), (Instant::now(), props));
    }
}

impl Riak {
    /// A bucket's properties: cached, or read from the cluster.
    pub async fn props(
        &self,
        state: &AppState,
        bucket: &[u8],
    ) -> Result<Arc<BucketProps>, RiakError> {
        if let Some(p) = self.0.props.fresh(bucket) {
            return Ok(p);
        }
        self.reload_props(state, bucket).await
    }

    /// Reads a bucket's properties from the cluster and caches them.
    async fn reload_props(
        &self,
        state: &AppState,
        bucket: &[u8],
    ) -> Result<Arc<BucketProps>, RiakError> {
        let set = read_stored(state, bucket).await?;
        let cluster_n = state.coord.config().n_val;
        let p = Arc::new(
            BucketProps::from_set(set, cluster_n, false)
                .unwrap_or_else(|_| BucketProps::defaults(cluster_n)),
        );
        self.0.props.insert(bucket, p.clone());
        Ok(p)
    }
}

/// The properties explicitly set on a bucket (empty: none, or cleared).
async fn read_stored(state: &AppState, bucket: &[u8]) -> Result<Map<String, Value>, RiakError> {
    let key = Bytes::from(props_key(bucket));
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
async fn write_stored(state: &AppState, bucket: &[u8], content: Content) -> Result<(), RiakError> {
    let req = WriteRequest {
        key: Bytes::from(props_key(bucket)),
        content,
        context: VersionVector::new(),
        w: Quorum::Majority,
        sloppy: true,
        timeout_ms: state.coord.config().default_timeout.as_millis() as u64,
        idempotency_key: None,
        n_val: None,
        supersede: true,
    };
    state
        .coord
        .put(req)
        .await
        .map(|_| ())
        .map_err(|e| RiakError::write(e, false))
}

fn json_response(v: &Value) -> Response {
    let mut r = v.to_string().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `GET /buckets/{b}/props`: always read from the cluster (and re-cached).
pub async fn get(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    params: RawPathParams,
) -> Response {
    observed(&state, "riak_props", async {
        let t = Target::from_path(&state, &params)?;
        let p = riak.reload_props(&state, &t.bucket).await?;
        Ok(json_response(&p.to_json(&t.bucket)))
    })
    .await
}

/// `PUT /buckets/{b}/props` with `{"props": {...}}`: merges the given
/// properties over those already set, validates, stores.
pub async fn put(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    params: RawPathParams,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    observed(&state, "riak_props", async {
        let t = Target::from_path(&state, &params)?;
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
        let mut set = read_stored(&state, &t.bucket).await?;
        for (k, v) in new {
            if k != "name" {
                set.insert(k, v);
            }
        }
        let cluster_n = state.coord.config().n_val;
        let props = match BucketProps::from_set(set.clone(), cluster_n, true) {
            Ok(p) => p,
            Err(errors) => {
                let mut r = json_response(&Value::Object(errors));
                *r.status_mut() = StatusCode::BAD_REQUEST;
                return Ok(r);
            }
        };
        let value = Value::Object(set).to_string();
        write_stored(&state, &t.bucket, Content::value(value, "application/json", 0)).await?;
        riak.0.props.insert(&t.bucket, Arc::new(props));
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

/// `DELETE /buckets/{b}/props`: back to the defaults.
pub async fn delete(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    params: RawPathParams,
) -> Response {
    observed(&state, "riak_props", async {
        let t = Target::from_path(&state, &params)?;
        write_stored(&state, &t.bucket, Content::tombstone(0)).await?;
        let defaults = BucketProps::defaults(state.coord.config().n_val);
        riak.0.props.insert(&t.bucket, Arc::new(defaults));
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_riaks() {
        let p = BucketProps::defaults(3);
        let j = p.to_json(b"b");
        assert_eq!(j["props"]["allow_mult"], json!(false));
        assert_eq!(j["props"]["n_val"], json!(3));
        assert_eq!(j["props"]["r"], json!("quorum"));
        assert_eq!(j["props"]["pr"], json!(0));
        assert_eq!(j["props"]["notfound_ok"], json!(true));
        assert_eq!(j["props"]["name"], json!("b"));
        assert!(p.resolves_siblings());
    }

    #[test]
    fn set_values_validate_and_round_trip() {
        let set: Map<String, Value> = serde_json::from_value(json!({
            "allow_mult": true, "n_val": 2, "w": 1, "pw": "quorum", "custom": [1]
        }))
        .unwrap();
        let p = BucketProps::from_set(set, 3, true).unwrap();
        assert!(p.allow_mult && !p.resolves_siblings());
        assert_eq!((p.n_val, p.w, p.pw), (2, Rw::Num(1), Rw::Quorum));
        let j = p.to_json(b"b");
        assert_eq!(j["props"]["w"], json!(1));
        assert_eq!(j["props"]["custom"], json!([1]));

        let bad: Map<String, Value> = serde_json::from_value(json!({
            "n_val": 4, "allow_mult": "maybe", "r": -1, "precommit": [{"mod": "m", "fun": "f"}]
        }))
        .unwrap();
        let errors = BucketProps::from_set(bad.clone(), 3, true).unwrap_err();
        for k in ["n_val", "allow_mult", "r", "precommit"] {
            assert!(errors.contains_key(k), "{k} not refused: {errors:?}");
        }
        // Stored props that no longer fit the cluster are clamped, not refused.
        let lenient = BucketProps::from_set(
            serde_json::from_value(json!({"n_val": 5, "w": 5})).unwrap(),
            3,
            false,
        )
        .unwrap();
        assert_eq!((lenient.n_val, lenient.w), (3, Rw::Num(3)));
    }
}
