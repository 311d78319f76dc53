//! A bucket's properties as values: Riak's defaults for the default
//! bucket type, the properties a client set overlaid on them and
//! validated, and the `{"props": {...}}` document Riak shows. No I/O: the
//! properties are stored and cached by [`super::props`].
//!
//! The defaults are Riak's for the default bucket type: `allow_mult=false`,
//! `last_write_wins=false`, `n_val` = the cluster's N, `r`, `w`, `dw`, `rw`
//! = `quorum`, `pr`, `pw` = 0, `notfound_ok=true`, `basic_quorum=false`.
//! `n_val` may be lowered per bucket, never raised above the cluster's.
//! Unknown properties are kept and echoed; ones naming a feature dynkv does
//! not have (commit hooks, strong consistency) are refused, as are
//! malformed values (a JSON object naming each bad property, as Riak
//! answers).
//!
//! A bucket of a bucket type (`dynkv-btypes`) starts from the type's
//! properties instead: [`BucketProps::from_set`] is given the type's set
//! overlaid with the bucket's. `datatype` names the convergent data type
//! of every key of the type's buckets; `write_once` buckets keep no
//! siblings (each write supersedes, as last-write-wins does here).

use serde_json::{Map, Value, json};

use crate::http::params::QuorumParam;

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
    pub r: QuorumParam,
    /// Default write quorum.
    pub w: QuorumParam,
    /// Default durable-write quorum (every acknowledgement here is durable).
    pub dw: QuorumParam,
    /// Default quorum of deletes.
    pub rw: QuorumParam,
    /// Default primary read quorum (0: none).
    pub pr: QuorumParam,
    /// Default primary write quorum (0: none).
    pub pw: QuorumParam,
    /// A replica's "not found" counts toward R.
    pub notfound_ok: bool,
    /// With `notfound_ok=false`, stop at a majority of "not found".
    pub basic_quorum: bool,
    /// The convergent data type of every key (`counter`, `set`, `map`,
    /// `hll`, `gset`), fixed by the bucket type.
    pub datatype: Option<String>,
    /// Registers of a HyperLogLog: 2^precision (4 to 16).
    pub hll_precision: u8,
    /// Objects are written once: no read before write, no siblings.
    pub write_once: bool,
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
            r: QuorumParam::Quorum,
            w: QuorumParam::Quorum,
            dw: QuorumParam::Quorum,
            rw: QuorumParam::Quorum,
            pr: QuorumParam::Num(0),
            pw: QuorumParam::Num(0),
            notfound_ok: true,
            basic_quorum: false,
            datatype: None,
            hll_precision: dynkv_btypes::DEFAULT_HLL_PRECISION as u8,
            write_once: false,
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
                "allow_mult" | "last_write_wins" | "notfound_ok" | "basic_quorum"
                | "write_once" => match as_bool(v) {
                    Some(b) => {
                        *match k.as_str() {
                            "allow_mult" => &mut p.allow_mult,
                            "last_write_wins" => &mut p.last_write_wins,
                            "notfound_ok" => &mut p.notfound_ok,
                            "write_once" => &mut p.write_once,
                            _ => &mut p.basic_quorum,
                        } = b;
                        None
                    }
                    None => Some(bad("must be true or false")),
                },
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
                "r" | "w" | "dw" | "rw" | "pr" | "pw" => match quorum_from_json(v) {
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
                "datatype" => match v.as_str() {
                    Some(d) if dynkv_btypes::DATATYPES.contains(&d) => {
                        p.datatype = Some(d.to_string());
                        None
                    }
                    _ => Some(bad(&format!(
                        "must be one of {}",
                        dynkv_btypes::DATATYPES.join(", ")
                    ))),
                },
                "hll_precision" => match v.as_u64() {
                    Some(n @ 4..=16) => {
                        p.hll_precision = n as u8;
                        None
                    }
                    _ => Some(bad("must be an integer from 4 to 16")),
                },
                "consistent" if as_bool(v) == Some(true) => Some(bad("not supported by dynkv")),
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
            if let QuorumParam::Num(k) = q
                && k as usize > p.n_val
            {
                if strict {
                    errors.insert(name.into(), Value::from("must be at most n_val"));
                } else {
                    let clamped = QuorumParam::Num(p.n_val as u32);
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
        !self.allow_mult || self.last_write_wins || self.write_once
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
            ("r", quorum_json(self.r)),
            ("w", quorum_json(self.w)),
            ("dw", quorum_json(self.dw)),
            ("rw", quorum_json(self.rw)),
            ("pr", quorum_json(self.pr)),
            ("pw", quorum_json(self.pw)),
            ("notfound_ok", self.notfound_ok.into()),
            ("basic_quorum", self.basic_quorum.into()),
            ("write_once", self.write_once.into()),
            ("hll_precision", self.hll_precision.into()),
            ("dvv_enabled", true.into()),
            ("precommit", json!([])),
            ("postcommit", json!([])),
        ];
        for (k, v) in known {
            m.insert(k.into(), v);
        }
        if let Some(d) = &self.datatype {
            m.insert("datatype".into(), d.as_str().into());
        }
        json!({ "props": m })
    }
}

/// The JSON form of a quorum in bucket properties.
fn quorum_json(q: QuorumParam) -> Value {
    match q {
        QuorumParam::Default => "default".into(),
        QuorumParam::One => "one".into(),
        QuorumParam::Quorum => "quorum".into(),
        QuorumParam::All => "all".into(),
        QuorumParam::Num(n) => n.into(),
    }
}

/// Reads the JSON form of a quorum (a non-negative integer or one of the
/// words).
fn quorum_from_json(v: &Value) -> Option<QuorumParam> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(QuorumParam::Num),
        Value::String(s) => QuorumParam::parse(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_in_json() {
        assert_eq!(quorum_from_json(&json!(1)), Some(QuorumParam::Num(1)));
        assert_eq!(quorum_from_json(&json!("one")), Some(QuorumParam::One));
        assert_eq!(quorum_from_json(&json!(true)), None);
        assert_eq!(quorum_from_json(&json!(-1)), None);
        assert_eq!(quorum_json(QuorumParam::Quorum), json!("quorum"));
        assert_eq!(quorum_json(QuorumParam::Num(0)), json!(0));
    }

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
        assert_eq!(
            (p.n_val, p.w, p.pw),
            (2, QuorumParam::Num(1), QuorumParam::Quorum)
        );
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
        assert_eq!((lenient.n_val, lenient.w), (3, QuorumParam::Num(3)));
    }
}
