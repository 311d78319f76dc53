//! Data types over protocol buffers, as `riak_kv_pb_crdt` serves them:
//! `DtFetchReq` (80) → `DtFetchResp` (81) and `DtUpdateReq` (82) →
//! `DtUpdateResp` (83), for counters, sets, maps, hlls and gsets.
//!
//! This module only converts: the fetch and the update themselves are
//! [`datatypes::fetch_state`] and [`datatypes::update_state`], the same
//! cores the HTTP handlers call, so both transports read and write data
//! types alike. Contexts are the HTTP ones' signed bytes, raw instead of
//! base64, so a context fetched over one transport is good over the other.
//! Riak's legacy counters (`RpbCounterUpdateReq`/`GetReq`, 50-53) are not
//! served, as their HTTP URL is not: the dispatcher answers them as an
//! unknown message.

use dynkv_crdt::{
    DataType, Field, FieldOp, FieldType, Kind, MapOp, Op, SetOp, Value as FieldValue,
};
use dynkv_riakpb::messages::{
    DtFetchReq, DtFetchResp, DtOp, DtUpdateReq, DtUpdateResp, DtValue, MapEntry, MapField,
    MapUpdate, dt_fetch_resp, map_field::MapFieldType, map_update::FlagOp,
};
use prost::bytes::Bytes;

use super::super::RiakError;
use super::super::datatypes;
use super::super::request::Target;
use super::super::shared::Riak;
use super::params;
use crate::AppState;
use crate::http::codec::random_id;

/// `DtFetchReq`: the state at the key (no `value` when not found), with
/// its context unless `include_context=false`.
pub async fn fetch(
    state: &AppState,
    riak: &Riak,
    req: DtFetchReq,
) -> Result<DtFetchResp, RiakError> {
    let t = Target::new(
        state,
        Some(&req.r#type[..]).filter(|t| !t.is_empty()),
        &req.bucket,
        Some(&req.key),
    )?;
    let b = datatypes::dt_bucket(state, riak, &t).await?;
    let q = params(
        &[("r", req.r), ("pr", req.pr)],
        &[
            ("basic_quorum", req.basic_quorum),
            ("notfound_ok", req.notfound_ok),
        ],
        req.timeout,
    );
    let merged = datatypes::fetch_state(state, &b, &t, &q).await?;
    let context = match (&merged, req.include_context.unwrap_or(true)) {
        (Some(s), true) => datatypes::context_bytes(state, s).map(Bytes::from),
        _ => None,
    };
    Ok(DtFetchResp {
        context,
        r#type: pb_type(b.kind) as i32,
        value: merged.as_ref().map(value_of),
    })
}

/// `DtUpdateReq`: applies the operation (a key is chosen when none is
/// given, and answered); with `return_body` the new state comes back.
pub async fn update(
    state: &AppState,
    riak: &Riak,
    req: DtUpdateReq,
) -> Result<DtUpdateResp, RiakError> {
    let chosen = req.key.is_none();
    let key = req
        .key
        .clone()
        .unwrap_or_else(|| Bytes::from(random_id().into_bytes()));
    let t = Target::new(
        state,
        Some(&req.r#type[..]).filter(|t| !t.is_empty()),
        &req.bucket,
        Some(&key),
    )?;
    let b = datatypes::dt_bucket(state, riak, &t).await?;
    let op = op_of(b.kind, &req.op)?;
    let context = match req.context.as_ref().filter(|c| !c.is_empty()) {
        Some(raw) => Some(datatypes::verify_context(state, raw)?),
        None => None,
    };
    let q = params(
        &[("w", req.w), ("dw", req.dw), ("pw", req.pw)],
        &[],
        req.timeout,
    );
    let merged = datatypes::update_state(state, &b, &t, op, context, &q).await?;
    let mut resp = DtUpdateResp {
        key: chosen.then_some(key),
        ..Default::default()
    };
    if req.return_body.unwrap_or(false)
        && let Some(s) = &merged
    {
        if req.include_context.unwrap_or(true) {
            resp.context = datatypes::context_bytes(state, s).map(Bytes::from);
        }
        let v = value_of(s);
        resp.counter_value = v.counter_value;
        resp.set_value = v.set_value;
        resp.map_value = v.map_value;
        resp.hll_value = v.hll_value;
        resp.gset_value = v.gset_value;
    }
    Ok(resp)
}

/// The protocol's name of a type.
fn pb_type(kind: Kind) -> dt_fetch_resp::DataType {
    match kind {
        Kind::Counter => dt_fetch_resp::DataType::Counter,
        Kind::Set => dt_fetch_resp::DataType::Set,
        Kind::Map => dt_fetch_resp::DataType::Map,
        Kind::Hll => dt_fetch_resp::DataType::Hll,
        Kind::GSet => dt_fetch_resp::DataType::Gset,
    }
}

/// Riak's refusal of an operation that is not for the bucket's type.
fn wrong_op(op: &str, kind: Kind) -> RiakError {
    RiakError::bad_request(format!(
        "Operation type is `{op}` but  bucket type has `datatype` of `{}`",
        kind.name()
    ))
}

fn elements(v: &[Bytes]) -> Vec<Vec<u8>> {
    v.iter().map(|e| e.to_vec()).collect()
}

/// The operation a `DtOp` asks of a bucket of type `kind`: exactly the
/// type's own operation must be given.
pub fn op_of(kind: Kind, op: &DtOp) -> Result<Op, RiakError> {
    let given = [
        (op.counter_op.is_some(), "counter"),
        (op.set_op.is_some(), "set"),
        (op.map_op.is_some(), "map"),
        (op.hll_op.is_some(), "hll"),
        (op.gset_op.is_some(), "gset"),
    ];
    let named: Vec<&str> = given.iter().filter(|(g, _)| *g).map(|(_, n)| *n).collect();
    match (kind, op) {
        (
            Kind::Counter,
            DtOp {
                counter_op: Some(c),
                ..
            },
        ) if named.len() == 1 => Ok(Op::Counter(c.increment.unwrap_or(1))),
        (
            Kind::Set,
            DtOp {
                set_op: Some(s), ..
            },
        ) if named.len() == 1 => Ok(Op::Set(SetOp {
            add: elements(&s.adds),
            remove: elements(&s.removes),
        })),
        (
            Kind::GSet,
            DtOp {
                gset_op: Some(s), ..
            },
        ) if named.len() == 1 => Ok(Op::GSet(elements(&s.adds))),
        (
            Kind::Hll,
            DtOp {
                hll_op: Some(s), ..
            },
        ) if named.len() == 1 => Ok(Op::Hll(elements(&s.adds))),
        (
            Kind::Map,
            DtOp {
                map_op: Some(m), ..
            },
        ) if named.len() == 1 => Ok(Op::Map(map_op(m)?)),
        _ => match named.as_slice() {
            [one] => Err(wrong_op(one, kind)),
            [] => Err(RiakError::bad_request(format!(
                "An operation on `{}` is required",
                kind.name()
            ))),
            _ => Err(RiakError::bad_request("Only one operation may be given")),
        },
    }
}

/// A map field as the core names it (UTF-8 name, type).
fn field(f: &MapField) -> Result<Field, RiakError> {
    let name = String::from_utf8(f.name.to_vec())
        .map_err(|_| RiakError::bad_request("Invalid map field name: not UTF-8"))?;
    let kind = match MapFieldType::try_from(f.r#type) {
        Ok(MapFieldType::Counter) => FieldType::Counter,
        Ok(MapFieldType::Set) => FieldType::Set,
        Ok(MapFieldType::Register) => FieldType::Register,
        Ok(MapFieldType::Flag) => FieldType::Flag,
        Ok(MapFieldType::Map) => FieldType::Map,
        Err(_) => {
            return Err(RiakError::bad_request(format!(
                "Invalid map field type {}",
                f.r#type
            )));
        }
    };
    Ok((name, kind))
}

fn map_op(m: &dynkv_riakpb::messages::MapOp) -> Result<MapOp, RiakError> {
    let mut op = MapOp::default();
    for f in &m.removes {
        op.remove.push(field(f)?);
    }
    for u in &m.updates {
        let f = field(&u.field)?;
        let fop = field_op(f.1, u)?;
        op.update.push((f, fop));
    }
    Ok(op)
}

fn field_op(kind: FieldType, u: &MapUpdate) -> Result<FieldOp, RiakError> {
    let bad = || {
        RiakError::bad_request(format!(
            "Invalid operation on map field '{}'",
            String::from_utf8_lossy(&u.field.name)
        ))
    };
    Ok(match kind {
        FieldType::Counter => FieldOp::Counter(
            u.counter_op
                .as_ref()
                .map_or(1, |c| c.increment.unwrap_or(1)),
        ),
        FieldType::Set => match &u.set_op {
            Some(s) => FieldOp::Set(SetOp {
                add: elements(&s.adds),
                remove: elements(&s.removes),
            }),
            None => FieldOp::Touch,
        },
        FieldType::Register => match &u.register_op {
            Some(v) => FieldOp::Register(v.to_vec()),
            None => FieldOp::Touch,
        },
        FieldType::Flag => match u.flag_op.map(FlagOp::try_from) {
            Some(Ok(FlagOp::Enable)) => FieldOp::Flag(true),
            Some(Ok(FlagOp::Disable)) => FieldOp::Flag(false),
            Some(Err(_)) => return Err(bad()),
            None => FieldOp::Touch,
        },
        FieldType::Map => match &u.map_op {
            Some(m) => FieldOp::Map(map_op(m)?),
            None => FieldOp::Touch,
        },
    })
}

fn pb_field_type(kind: FieldType) -> MapFieldType {
    match kind {
        FieldType::Counter => MapFieldType::Counter,
        FieldType::Set => MapFieldType::Set,
        FieldType::Register => MapFieldType::Register,
        FieldType::Flag => MapFieldType::Flag,
        FieldType::Map => MapFieldType::Map,
    }
}

fn map_entries(m: &dynkv_crdt::Map) -> Vec<MapEntry> {
    m.value()
        .into_iter()
        .map(|((name, kind), v)| {
            let mut e = MapEntry {
                field: MapField {
                    name: Bytes::from(name.into_bytes()),
                    r#type: pb_field_type(kind) as i32,
                },
                ..Default::default()
            };
            match &v {
                FieldValue::Counter(c) => e.counter_value = Some(c.value()),
                FieldValue::Set(s) => {
                    e.set_value = s.value().map(|x| Bytes::from(x.clone())).collect()
                }
                FieldValue::Register(r) => {
                    e.register_value = Some(Bytes::copy_from_slice(r.value().unwrap_or_default()))
                }
                FieldValue::Flag(f) => e.flag_value = Some(f.value()),
                FieldValue::Map(m) => e.map_value = map_entries(m),
            }
            e
        })
        .collect()
}

/// The protocol's value of a state.
pub fn value_of(state: &DataType) -> DtValue {
    let mut v = DtValue::default();
    match state {
        DataType::Counter(c) => v.counter_value = Some(c.value()),
        DataType::Set(s) => v.set_value = s.value().map(|x| Bytes::from(x.clone())).collect(),
        DataType::GSet(s) => {
            v.gset_value = s.value().iter().map(|x| Bytes::from(x.clone())).collect()
        }
        DataType::Hll(h) => v.hll_value = Some(h.estimate()),
        DataType::Map(m) => v.map_value = map_entries(m),
    }
    v
}

#[cfg(test)]
mod tests {
    use dynkv_riakpb::messages::{CounterOp, GSetOp};

    use super::*;

    fn bytes(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    fn field(name: &str, t: MapFieldType) -> MapField {
        MapField {
            name: Bytes::from(name.to_string()),
            r#type: t as i32,
        }
    }

    #[test]
    fn operations_convert_to_the_cores() {
        let op = DtOp {
            counter_op: Some(CounterOp {
                increment: Some(-3),
            }),
            ..Default::default()
        };
        assert_eq!(op_of(Kind::Counter, &op).unwrap(), Op::Counter(-3));
        let op = DtOp {
            set_op: Some(dynkv_riakpb::messages::SetOp {
                adds: bytes(&["a"]),
                removes: bytes(&["b"]),
            }),
            ..Default::default()
        };
        assert_eq!(
            op_of(Kind::Set, &op).unwrap(),
            Op::Set(SetOp {
                add: vec![b"a".to_vec()],
                remove: vec![b"b".to_vec()],
            })
        );
        let op = DtOp {
            gset_op: Some(GSetOp {
                adds: bytes(&["x"]),
            }),
            ..Default::default()
        };
        assert_eq!(
            op_of(Kind::GSet, &op).unwrap(),
            Op::GSet(vec![b"x".to_vec()])
        );
        let op = DtOp {
            map_op: Some(dynkv_riakpb::messages::MapOp {
                removes: vec![field("gone", MapFieldType::Set)],
                updates: vec![
                    MapUpdate {
                        field: field("hits", MapFieldType::Counter),
                        counter_op: Some(CounterOp { increment: Some(2) }),
                        ..Default::default()
                    },
                    MapUpdate {
                        field: field("on", MapFieldType::Flag),
                        flag_op: Some(FlagOp::Enable as i32),
                        ..Default::default()
                    },
                    MapUpdate {
                        field: field("name", MapFieldType::Register),
                        register_op: Some(Bytes::from_static(b"v")),
                        ..Default::default()
                    },
                ],
            }),
            ..Default::default()
        };
        let Op::Map(m) = op_of(Kind::Map, &op).unwrap() else {
            panic!("a map operation");
        };
        assert_eq!(m.remove, vec![("gone".to_string(), FieldType::Set)]);
        assert_eq!(
            m.update,
            vec![
                (
                    ("hits".to_string(), FieldType::Counter),
                    FieldOp::Counter(2)
                ),
                (("on".to_string(), FieldType::Flag), FieldOp::Flag(true)),
                (
                    ("name".to_string(), FieldType::Register),
                    FieldOp::Register(b"v".to_vec())
                ),
            ]
        );
    }

    #[test]
    fn the_wrong_operation_or_none_is_refused() {
        let counter = DtOp {
            counter_op: Some(CounterOp { increment: Some(1) }),
            ..Default::default()
        };
        let e = op_of(Kind::Set, &counter).unwrap_err();
        assert!(e.body.contains("Operation type is `counter`"), "{}", e.body);
        assert!(op_of(Kind::Set, &DtOp::default()).is_err());
        let both = DtOp {
            set_op: Some(Default::default()),
            ..counter
        };
        assert!(op_of(Kind::Set, &both).is_err());
        let bad_field = DtOp {
            map_op: Some(dynkv_riakpb::messages::MapOp {
                removes: vec![MapField {
                    name: Bytes::from_static(b"f"),
                    r#type: 42,
                }],
                updates: vec![],
            }),
            ..Default::default()
        };
        assert!(op_of(Kind::Map, &bad_field).is_err());
    }

    #[test]
    fn states_convert_to_the_protocols_values() {
        let mut c = dynkv_crdt::Counter::new();
        c.increment("n1", 7);
        assert_eq!(value_of(&DataType::Counter(c)).counter_value, Some(7));
        let mut set = dynkv_crdt::OrSet::new();
        set.add("n1", b"b".to_vec());
        set.add("n1", b"a".to_vec());
        assert_eq!(value_of(&DataType::Set(set)).set_value, bytes(&["a", "b"]));
        let empty = DataType::new(Kind::Map, 14).unwrap();
        assert!(value_of(&empty).map_value.is_empty());
    }
}
