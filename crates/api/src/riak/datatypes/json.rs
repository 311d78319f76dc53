//! Riak's JSON for data types (`riak_kv_crdt_json`), as pure functions:
//! an update request's body into an operation, a state into a fetch
//! answer.
//!
//! - counter: `5`, `{"increment": 5}`, `{"decrement": 5}`; value `5`.
//! - set / gset / hll: `{"add": "x", "add_all": [..], "remove": "y",
//!   "remove_all": [..]}` (no removes on gset and hll); a set's value is
//!   its sorted elements, an hll's its estimate.
//! - map: `{"remove": ["f_set"], "add": ["g_flag"], "update": {"a_counter":
//!   .., "b_register": {"assign": "s"}, "c_flag": "enable" | "disable",
//!   "d_map": {...}}}`; a field name is `<name>_<type>`; its value is an
//!   object of such names.
//! - `"context"`: the opaque token of an earlier fetch, at the top level.

use dynkv_crdt::{DataType, FieldOp, FieldType, Kind, Map, MapOp, Op, SetOp, Value as Field};
use serde_json::{Map as JsonMap, Value, json};

/// A parsed update request.
#[derive(Debug, PartialEq)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// The context token, as sent.
    pub context: Option<String>,
}

/// Why a body is not an operation, in Riak's words (400).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all.
    #[error("Couldn't decode JSON: {0}")]
    Decode(String),
    /// JSON, but not an operation on that type.
    #[error("Invalid operation on datatype '{kind}': {op}")]
    Invalid {
        /// The type's name.
        kind: &'static str,
        /// The offending operation.
        op: String,
    },
    /// A map field name without a known type suffix.
    #[error("Invalid map field name '{0}'")]
    FieldName(String),
}

fn invalid(kind: &'static str, op: &Value) -> JsonError {
    JsonError::Invalid {
        kind,
        op: op.to_string(),
    }
}

/// Parses an update request for a bucket of `kind`.
pub fn parse_update(kind: Kind, body: &[u8]) -> Result<Request, JsonError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| JsonError::Decode(e.to_string()))?;
    let context = match v.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(invalid(kind.name(), other)),
    };
    let op = match kind {
        Kind::Counter => Op::Counter(counter_op(&v)?),
        Kind::Set => Op::Set(set_op(&v, "set", true)?),
        Kind::GSet => Op::GSet(set_op(&v, "gset", false)?.add),
        Kind::Hll => Op::Hll(set_op(&v, "hll", false)?.add),
        Kind::Map => Op::Map(map_op(&v)?),
    };
    Ok(Request { op, context })
}

fn counter_op(v: &Value) -> Result<i64, JsonError> {
    let amount = |n: &Value| n.as_i64();
    let by = match v {
        Value::Number(_) => amount(v),
        Value::Object(m) => {
            let keys: Vec<&str> = m
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "context")
                .collect();
            match (keys.as_slice(), m.get("increment"), m.get("decrement")) {
                (["increment"], Some(n), _) => amount(n),
                (["decrement"], _, Some(n)) => amount(n).and_then(i64::checked_neg),
                _ => None,
            }
        }
        _ => None,
    };
    by.ok_or_else(|| invalid("counter", v))
}

fn strings(v: &Value) -> Option<Vec<Vec<u8>>> {
    v.as_array()?
        .iter()
        .map(|e| e.as_str().map(|s| s.as_bytes().to_vec()))
        .collect()
}

fn set_op(v: &Value, kind: &'static str, removes: bool) -> Result<SetOp, JsonError> {
    let m = v.as_object().ok_or_else(|| invalid(kind, v))?;
    let mut op = SetOp::default();
    for (k, x) in m {
        let one = || x.as_str().map(|s| vec![s.as_bytes().to_vec()]);
        let got = match k.as_str() {
            "context" => continue,
            "add" => one().map(|e| op.add.extend(e)),
            "add_all" => strings(x).map(|e| op.add.extend(e)),
            "remove" if removes => one().map(|e| op.remove.extend(e)),
            "remove_all" if removes => strings(x).map(|e| op.remove.extend(e)),
            _ => None,
        };
        got.ok_or_else(|| invalid(kind, v))?;
    }
    Ok(op)
}

/// A map field name `<name>_<type>` as a field key.
pub fn field_key(name: &str) -> Result<(String, FieldType), JsonError> {
    let bad = || JsonError::FieldName(name.to_string());
    let (n, t) = name.rsplit_once('_').ok_or_else(bad)?;
    let kind = match t {
        "counter" => FieldType::Counter,
        "set" => FieldType::Set,
        "register" => FieldType::Register,
        "flag" => FieldType::Flag,
        "map" => FieldType::Map,
        _ => return Err(bad()),
    };
    Ok((n.to_string(), kind))
}

fn field_suffix(kind: FieldType) -> &'static str {
    match kind {
        FieldType::Counter => "counter",
        FieldType::Set => "set",
        FieldType::Register => "register",
        FieldType::Flag => "flag",
        FieldType::Map => "map",
    }
}

fn names(v: &Value, whole: &Value) -> Result<Vec<(String, FieldType)>, JsonError> {
    let list = v.as_array().ok_or_else(|| invalid("map", whole))?;
    list.iter()
        .map(|n| {
            n.as_str()
                .ok_or_else(|| invalid("map", whole))
                .and_then(field_key)
        })
        .collect()
}

fn map_op(v: &Value) -> Result<MapOp, JsonError> {
    let m = v.as_object().ok_or_else(|| invalid("map", v))?;
    let mut op = MapOp::default();
    for (k, x) in m {
        match k.as_str() {
            "context" => {}
            "remove" => op.remove.extend(names(x, v)?),
            "add" => op
                .update
                .extend(names(x, v)?.into_iter().map(|f| (f, FieldOp::Touch))),
            "update" => {
                let fields = x.as_object().ok_or_else(|| invalid("map", v))?;
                for (name, fop) in fields {
                    let key = field_key(name)?;
                    let parsed = field_op(key.1, fop)?;
                    op.update.push((key, parsed));
                }
            }
            _ => return Err(invalid("map", v)),
        }
    }
    Ok(op)
}

fn field_op(kind: FieldType, v: &Value) -> Result<FieldOp, JsonError> {
    Ok(match kind {
        FieldType::Counter => FieldOp::Counter(counter_op(v)?),
        FieldType::Set => FieldOp::Set(set_op(v, "set", true)?),
        FieldType::Map => FieldOp::Map(map_op(v)?),
        FieldType::Flag => match v.as_str() {
            Some("enable") => FieldOp::Flag(true),
            Some("disable") => FieldOp::Flag(false),
            _ => return Err(invalid("flag", v)),
        },
        FieldType::Register => match v.get("assign").and_then(Value::as_str) {
            Some(s) if v.as_object().is_some_and(|m| m.len() == 1) => {
                FieldOp::Register(s.as_bytes().to_vec())
            }
            _ => return Err(invalid("register", v)),
        },
    })
}

fn text(bytes: &[u8]) -> Value {
    Value::from(String::from_utf8_lossy(bytes).into_owned())
}

fn map_value(m: &Map) -> Value {
    let mut out = JsonMap::new();
    for ((name, kind), v) in m.value() {
        let shown = match &v {
            Field::Counter(c) => Value::from(c.value()),
            Field::Set(s) => Value::Array(s.value().map(|e| text(e)).collect()),
            Field::Register(r) => text(r.value().unwrap_or_default()),
            Field::Flag(f) => Value::from(f.value()),
            Field::Map(m) => map_value(m),
        };
        out.insert(format!("{name}_{}", field_suffix(kind)), shown);
    }
    Value::Object(out)
}

/// The `"value"` of a fetch answer.
pub fn value(state: &DataType) -> Value {
    match state {
        DataType::Counter(c) => Value::from(c.value()),
        DataType::Set(s) => Value::Array(s.value().map(|e| text(e)).collect()),
        DataType::GSet(s) => Value::Array(s.value().iter().map(|e| text(e)).collect()),
        DataType::Hll(h) => Value::from(h.estimate()),
        DataType::Map(m) => map_value(m),
    }
}

/// Whether answers about `kind` carry a context (the types with removes).
pub fn has_context(kind: Kind) -> bool {
    matches!(kind, Kind::Set | Kind::Map)
}

/// A fetch answer: `{"type", "value"}` plus `"context"` when given.
pub fn fetch_answer(state: &DataType, context: Option<String>) -> Value {
    let mut out = json!({"type": state.kind().name(), "value": value(state)});
    if let Some(c) = context {
        out["context"] = Value::from(c);
    }
    out
}

/// The 404 body of a key holding nothing (`riak_kv_wm_crdt`'s).
pub fn not_found(kind: Kind) -> Value {
    json!({"type": kind.name(), "error": "notfound"})
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynkv_crdt::op::apply;
    use dynkv_crdt::{Update, VersionVector};

    fn parse(kind: Kind, body: &str) -> Result<Request, JsonError> {
        parse_update(kind, body.as_bytes())
    }

    fn bytes(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn counter_ops() {
        for (body, by) in [
            ("5", 5),
            ("-2", -2),
            (r#"{"increment": 3}"#, 3),
            (r#"{"decrement": 4, "context": "x"}"#, -4),
        ] {
            assert_eq!(
                parse(Kind::Counter, body).unwrap().op,
                Op::Counter(by),
                "{body}"
            );
        }
        for bad in [
            "1.5",
            r#""a""#,
            r#"{"increment": 1, "decrement": 1}"#,
            r#"{"inc": 1}"#,
        ] {
            assert!(
                matches!(
                    parse(Kind::Counter, bad),
                    Err(JsonError::Invalid {
                        kind: "counter",
                        ..
                    })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse(Kind::Counter, "{"),
            Err(JsonError::Decode(_))
        ));
    }

    #[test]
    fn set_gset_and_hll_ops() {
        let r = parse(
            Kind::Set,
            r#"{"add": "a", "add_all": ["b", "c"], "remove": "d", "remove_all": ["e"], "context": "tok"}"#,
        )
        .unwrap();
        assert_eq!(
            r.op,
            Op::Set(SetOp {
                add: bytes(&["a", "b", "c"]),
                remove: bytes(&["d", "e"])
            })
        );
        assert_eq!(r.context.as_deref(), Some("tok"));
        assert_eq!(
            parse(Kind::GSet, r#"{"add_all": ["x"]}"#).unwrap().op,
            Op::GSet(bytes(&["x"]))
        );
        assert_eq!(
            parse(Kind::Hll, r#"{"add": "x", "add_all": ["y"]}"#)
                .unwrap()
                .op,
            Op::Hll(bytes(&["x", "y"]))
        );
        for (kind, bad) in [
            (Kind::Set, r#"{"add": 1}"#),
            (Kind::Set, r#"{"add_all": "x"}"#),
            (Kind::Set, "[]"),
            (Kind::GSet, r#"{"remove": "x"}"#),
            (Kind::Hll, r#"{"remove_all": ["x"]}"#),
            (Kind::Set, r#"{"context": 5}"#),
        ] {
            assert!(
                matches!(parse(kind, bad), Err(JsonError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn map_ops_nest() {
        let r = parse(
            Kind::Map,
            r#"{"remove": ["a_counter"], "add": ["t_flag"], "update": {
                "a_counter": {"increment": 2}, "b_register": {"assign": "testing"},
                "c_flag": "enable", "x_flag": "disable",
                "d_map": {"update": {"e_set": {"add_all": ["deep"]}}, "remove": ["q_set"]}}}"#,
        )
        .unwrap();
        let Op::Map(m) = r.op else { panic!() };
        assert_eq!(m.remove, vec![("a".to_string(), FieldType::Counter)]);
        let find = |n: &str| m.update.iter().find(|(k, _)| k.0 == n).unwrap().1.clone();
        assert_eq!(find("t"), FieldOp::Touch);
        assert_eq!(find("a"), FieldOp::Counter(2));
        assert_eq!(find("b"), FieldOp::Register(b"testing".to_vec()));
        assert_eq!(find("c"), FieldOp::Flag(true));
        assert_eq!(find("x"), FieldOp::Flag(false));
        let FieldOp::Map(d) = find("d") else { panic!() };
        assert_eq!(d.remove, vec![("q".to_string(), FieldType::Set)]);
        assert_eq!(
            field_key("my_field_set").unwrap(),
            ("my_field".to_string(), FieldType::Set)
        );
        assert_eq!(
            parse(Kind::Map, r#"{"update": {"x_thing": 1}}"#),
            Err(JsonError::FieldName("x_thing".into()))
        );
        assert_eq!(
            parse(Kind::Map, r#"{"remove": ["nounderscore"]}"#),
            Err(JsonError::FieldName("nounderscore".into()))
        );
        for bad in [
            r#"{"update": {"f_flag": "on"}}"#,
            r#"{"update": {"r_register": "s"}}"#,
            r#"{"frob": 1}"#,
        ] {
            assert!(
                matches!(parse(Kind::Map, bad), Err(JsonError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    fn applied(kind: Kind, body: &str) -> DataType {
        let r = parse(kind, body).unwrap();
        let u = Update {
            op: r.op,
            context: None,
            hll_precision: 14,
        };
        apply(None, &u, "n1#a", 1).unwrap()
    }

    #[test]
    fn answers_are_riaks() {
        assert_eq!(
            fetch_answer(&applied(Kind::Counter, "5"), None),
            json!({"type": "counter", "value": 5})
        );
        assert_eq!(
            fetch_answer(
                &applied(Kind::Set, r#"{"add_all": ["b", "a"]}"#),
                Some("c".into())
            ),
            json!({"type": "set", "value": ["a", "b"], "context": "c"})
        );
        assert_eq!(
            fetch_answer(&applied(Kind::GSet, r#"{"add": "a"}"#), None),
            json!({"type": "gset", "value": ["a"]})
        );
        assert_eq!(
            fetch_answer(&applied(Kind::Hll, r#"{"add_all": ["a", "b", "a"]}"#), None),
            json!({"type": "hll", "value": 2})
        );
        let m = applied(
            Kind::Map,
            r#"{"update": {"a_counter": 2, "b_register": {"assign": "testing"}, "c_flag": "enable",
               "d_map": {"update": {"e_set": {"add": "deep value"}}}, "f_set": {"add_all": []}}}"#,
        );
        assert_eq!(
            fetch_answer(&m, Some("ctx".into())),
            json!({"type": "map", "context": "ctx", "value": {
                "a_counter": 2, "b_register": "testing", "c_flag": true,
                "d_map": {"e_set": ["deep value"]}, "f_set": []}})
        );
        assert_eq!(
            not_found(Kind::Set),
            json!({"type": "set", "error": "notfound"})
        );
        assert!(has_context(Kind::Map) && !has_context(Kind::Counter));
        let _ = VersionVector::new();
    }
}
