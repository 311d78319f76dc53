//! Operations on stored data types, and how a replica applies one.
//!
//! An [`Update`] is what a client asked for (Riak's `{update, Op}` with
//! its optional context). It travels from the node that received the
//! request to the coordinating replica in its versioned encoding
//! ([`Update::encode`]); only that replica applies it, with its own actor,
//! to the merge of every state it holds for the key ([`apply`]), so an
//! actor's dots are minted in one causal chain.
//!
//! ## Order and removes
//! Within one operation removes apply before adds and updates, so "remove
//! the field, then add to it" leaves only the new additions (a counter
//! field removed and incremented by 2 reads 2), and "add X, remove X" with
//! a context keeps X (the new add was not seen by the context).
//!
//! A remove *with* a context removes what the context saw; an element the
//! context did not see (or that is absent) is left alone, as Riak does. A
//! remove *without* a context removes what this replica holds, and is
//! refused with [`UpdateError::NotPresent`] when there is nothing to
//! remove (riak_dt's `{precondition, {not_present, X}}`).
//!
//! Removes inside a map's fields (a nested set's element, a nested map's
//! field, a flag's disable) use what the client saw of that field
//! ([`Map::field_context`]): the nested structures keep clocks of their
//! own, which the top-level context does not name, but each version of a
//! field holds the field as its update left it, so the versions the
//! context covers say exactly what the client had read. When the field was
//! updated since (a version the context has not seen), the remove is
//! refused with [`UpdateError::FieldChanged`] rather than guessed: removing
//! what is there now could remove an add the client never saw, and
//! ignoring the remove would drop it silently.

use serde::{Deserialize, Serialize};

use crate::datatype::{DataType, Kind};
use crate::map::{Field, FieldType, Value};
use crate::{Map, OrSet, Precondition, VersionVector};

/// The version byte of an encoded [`Update`].
pub const OP_FORMAT_VERSION: u8 = 1;

/// A client's operation with the context of its earlier read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// What to do.
    pub op: Op,
    /// What the client had read (removes need it).
    pub context: Option<VersionVector>,
    /// The precision of a sketch this update creates (the bucket's
    /// `hll_precision`); ignored by other types and by existing sketches.
    pub hll_precision: u8,
}

/// An operation on one top-level type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Add this (negative: subtract).
    Counter(i64),
    /// Adds and removes of set elements.
    Set(SetOp),
    /// Elements to add to a grow-only set.
    GSet(Vec<Vec<u8>>),
    /// Elements to add to a HyperLogLog.
    Hll(Vec<Vec<u8>>),
    /// Field removes and updates.
    Map(MapOp),
}

/// A set operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetOp {
    /// Elements to add.
    pub add: Vec<Vec<u8>>,
    /// Elements to remove (applied first).
    pub remove: Vec<Vec<u8>>,
}

/// A map operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapOp {
    /// Fields to remove (applied first).
    pub remove: Vec<Field>,
    /// Fields to update (created if absent).
    pub update: Vec<(Field, FieldOp)>,
}

/// An operation on one map field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldOp {
    /// Counter increment (negative: decrement).
    Counter(i64),
    /// Set adds and removes.
    Set(SetOp),
    /// Register assignment.
    Register(Vec<u8>),
    /// Flag enable (`true`) or disable.
    Flag(bool),
    /// A nested map's operation.
    Map(MapOp),
    /// Create the field with its empty value (Riak's map `add`).
    Touch,
}

/// Why an update was not applied; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// A remove without a context of something not there.
    #[error("{{precondition,{{not_present,{0}}}}}")]
    NotPresent(String),
    /// The context has seen updates the coordinating replica has not.
    #[error(
        "precondition failed: the context has seen updates this replica has not received yet; retry shortly"
    )]
    UnseenContext,
    /// A remove inside a map field that was updated after the context was
    /// read.
    #[error(
        "precondition failed: the field {0} changed since the context was read; fetch it again and retry"
    )]
    FieldChanged(String),
    /// The operation is for another type than the one stored.
    #[error("the key holds a {stored}, not a {op}")]
    WrongType {
        /// The stored type's name.
        stored: &'static str,
        /// The operation's type's name.
        op: &'static str,
    },
    /// The operation cannot be decoded.
    #[error("malformed data type operation: {0}")]
    Malformed(String),
}

impl Op {
    /// The top-level type this operation is for.
    pub fn kind(&self) -> Kind {
        match self {
            Op::Counter(_) => Kind::Counter,
            Op::Set(_) => Kind::Set,
            Op::GSet(_) => Kind::GSet,
            Op::Hll(_) => Kind::Hll,
            Op::Map(_) => Kind::Map,
        }
    }
}

impl Update {
    /// The wire encoding: version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![OP_FORMAT_VERSION];
        out.extend(postcard::to_stdvec(self).expect("operations always serialise"));
        out
    }

    /// Decodes [`Update::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Update, UpdateError> {
        match bytes.split_first() {
            Some((&OP_FORMAT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| UpdateError::Malformed(e.to_string()))
            }
            Some((v, _)) => Err(UpdateError::Malformed(format!("unknown version {v}"))),
            None => Err(UpdateError::Malformed("empty".into())),
        }
    }
}

/// Runs one remove of `what` with the client's context `context` (else
/// with `own`, what this replica holds) and maps its precondition to
/// Riak's outcome: with a context, what it did not see is left alone.
fn remove_with(
    context: Option<&VersionVector>,
    own: VersionVector,
    what: &[u8],
    f: impl FnOnce(&VersionVector) -> Result<(), Precondition>,
) -> Result<(), UpdateError> {
    let ctx = context.cloned().unwrap_or(own);
    match f(&ctx) {
        Ok(()) => Ok(()),
        Err(Precondition::NotPresent) if context.is_some() => Ok(()),
        Err(Precondition::NotPresent) => Err(UpdateError::NotPresent(
            String::from_utf8_lossy(what).into_owned(),
        )),
        Err(Precondition::UnseenContext) => Err(UpdateError::UnseenContext),
    }
}

/// Applies `update` on behalf of `actor` at time `now` (register
/// timestamps) to `state` (`None`: nothing stored yet), returning the new
/// state. On error nothing changes.
pub fn apply(
    state: Option<DataType>,
    update: &Update,
    actor: &str,
    now: u64,
) -> Result<DataType, UpdateError> {
    let hll_precision = update.hll_precision;
    let kind = update.op.kind();
    let mut state = match state {
        Some(s) => s,
        None => {
            DataType::new(kind, hll_precision).map_err(|e| UpdateError::Malformed(e.to_string()))?
        }
    };
    if state.kind() != kind {
        return Err(UpdateError::WrongType {
            stored: state.kind().name(),
            op: kind.name(),
        });
    }
    let context = update.context.as_ref();
    match (&mut state, &update.op) {
        (DataType::Counter(c), Op::Counter(by)) => c.increment(actor, *by),
        (DataType::Set(s), Op::Set(op)) => apply_set(s, op, actor, context)?,
        (DataType::GSet(s), Op::GSet(add)) => add.iter().for_each(|e| s.add(e.clone())),
        (DataType::Hll(h), Op::Hll(add)) => add.iter().for_each(|e| h.add(e)),
        (DataType::Map(m), Op::Map(op)) => apply_map(m, op, actor, now, context)?,
        _ => unreachable!("kinds checked above"),
    }
    Ok(state)
}

/// Removes (with `context`, see [`remove_with`]) then adds on a set.
fn apply_set(
    s: &mut OrSet,
    op: &SetOp,
    actor: &str,
    context: Option<&VersionVector>,
) -> Result<(), UpdateError> {
    for e in &op.remove {
        remove_with(context, s.context(), e, |ctx| s.remove(e, ctx))?;
    }
    for e in &op.add {
        s.add(actor, e.clone());
    }
    Ok(())
}

/// A map's operation at any depth, `context` being what the client saw of
/// this map: field removes, then field updates, each field's own removes
/// with what the client saw of that field.
fn apply_map(
    m: &mut Map,
    op: &MapOp,
    actor: &str,
    now: u64,
    context: Option<&VersionVector>,
) -> Result<(), UpdateError> {
    for field in &op.remove {
        remove_with(context, m.context(), field.0.as_bytes(), |ctx| {
            m.remove(&field.0, field.1, ctx)
        })?;
    }
    for ((name, kind), fop) in &op.update {
        if !fits(*kind, fop) {
            return Err(UpdateError::Malformed(format!(
                "operation does not fit field {name} of type {kind:?}"
            )));
        }
        let seen = match context {
            Some(ctx) if removes(fop) => Some(
                m.field_context(name, *kind, ctx)
                    .ok_or_else(|| UpdateError::FieldChanged(name.clone()))?,
            ),
            _ => None,
        };
        m.update(actor, name, *kind, |v| {
            apply_field(v, fop, actor, now, seen.as_ref())
        })?;
    }
    Ok(())
}

/// Whether a field operation removes anything (and so needs a context).
fn removes(op: &FieldOp) -> bool {
    match op {
        FieldOp::Set(s) => !s.remove.is_empty(),
        FieldOp::Flag(enable) => !enable,
        FieldOp::Map(m) => !m.remove.is_empty() || m.update.iter().any(|(_, f)| removes(f)),
        FieldOp::Counter(_) | FieldOp::Register(_) | FieldOp::Touch => false,
    }
}

/// Whether `op` is an operation on a field of type `kind`.
fn fits(kind: FieldType, op: &FieldOp) -> bool {
    matches!(
        (kind, op),
        (_, FieldOp::Touch)
            | (FieldType::Counter, FieldOp::Counter(_))
            | (FieldType::Set, FieldOp::Set(_))
            | (FieldType::Register, FieldOp::Register(_))
            | (FieldType::Flag, FieldOp::Flag(_))
            | (FieldType::Map, FieldOp::Map(_))
    )
}

fn apply_field(
    v: &mut Value,
    op: &FieldOp,
    actor: &str,
    now: u64,
    context: Option<&VersionVector>,
) -> Result<(), UpdateError> {
    match (v, op) {
        (_, FieldOp::Touch) => {}
        (Value::Counter(c), FieldOp::Counter(by)) => c.increment(actor, *by),
        (Value::Set(s), FieldOp::Set(op)) => apply_set(s, op, actor, context)?,
        (Value::Register(r), FieldOp::Register(value)) => r.assign(value.clone(), now, actor),
        (Value::Flag(f), FieldOp::Flag(true)) => f.enable(actor),
        (Value::Flag(f), FieldOp::Flag(false)) => {
            let ctx = context.cloned().unwrap_or_else(|| f.context());
            f.disable(&ctx).map_err(|_| UpdateError::UnseenContext)?
        }
        (Value::Map(m), FieldOp::Map(op)) => apply_map(m, op, actor, now, context)?,
        // A stored field whose value is of another type than its key says
        // (no replica writes one): refuse rather than guess.
        (v, _) => {
            return Err(UpdateError::Malformed(format!(
                "a stored field holds a {:?}, not the field's type",
                v.kind()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Convergent;

    fn set_op(add: &[&str], remove: &[&str]) -> SetOp {
        SetOp {
            add: add.iter().map(|s| s.as_bytes().to_vec()).collect(),
            remove: remove.iter().map(|s| s.as_bytes().to_vec()).collect(),
        }
    }

    fn elems(d: &DataType) -> Vec<String> {
        match d {
            DataType::Set(s) => s
                .value()
                .map(|e| String::from_utf8(e.clone()).unwrap())
                .collect(),
            _ => panic!("not a set"),
        }
    }

    fn upd(op: Op, context: Option<VersionVector>) -> Update {
        Update {
            op,
            context,
            hll_precision: 14,
        }
    }

    #[test]
    fn set_removes_need_a_context_or_something_to_remove() {
        let s = apply(None, &upd(Op::Set(set_op(&["X", "Y"], &[])), None), "a", 1).unwrap();
        let ctx = s.context();
        // Without a context, removing what is absent is riak_dt's precondition.
        let e = apply(
            Some(s.clone()),
            &upd(Op::Set(set_op(&[], &["Q"])), None),
            "a",
            1,
        );
        assert_eq!(e, Err(UpdateError::NotPresent("Q".into())));
        assert_eq!(e.unwrap_err().to_string(), "{precondition,{not_present,Q}}");
        // With one, it is a no-op.
        let s2 = apply(
            Some(s.clone()),
            &upd(Op::Set(set_op(&[], &["Q"])), Some(ctx.clone())),
            "a",
            1,
        )
        .unwrap();
        assert_eq!(elems(&s2), ["X", "Y"]);
        // Add and remove of the same element in one op with a context: add wins.
        let s3 = apply(
            Some(s.clone()),
            &upd(Op::Set(set_op(&["X"], &["X"])), Some(ctx.clone())),
            "a",
            1,
        )
        .unwrap();
        assert_eq!(elems(&s3), ["X", "Y"]);
        let s4 = apply(
            Some(s),
            &upd(Op::Set(set_op(&[], &["X"])), Some(ctx)),
            "a",
            1,
        )
        .unwrap();
        assert_eq!(elems(&s4), ["Y"]);
    }

    #[test]
    fn a_context_ahead_of_the_replica_is_refused() {
        let s = apply(None, &upd(Op::Set(set_op(&["X"], &[])), None), "a", 1).unwrap();
        let mut ahead = s.context();
        ahead.next_dot("b");
        let e = apply(
            Some(s),
            &upd(Op::Set(set_op(&[], &["X"])), Some(ahead)),
            "a",
            1,
        );
        assert_eq!(e, Err(UpdateError::UnseenContext));
    }

    #[test]
    fn map_removes_apply_before_updates() {
        let counter = ("counter".to_string(), FieldType::Counter);
        let m = apply(
            None,
            &upd(
                Op::Map(MapOp {
                    remove: vec![],
                    update: vec![(counter.clone(), FieldOp::Counter(5))],
                }),
                None,
            ),
            "a",
            1,
        )
        .unwrap();
        let ctx = m.context();
        let m = apply(
            Some(m),
            &upd(
                Op::Map(MapOp {
                    remove: vec![counter.clone()],
                    update: vec![(counter.clone(), FieldOp::Counter(2))],
                }),
                Some(ctx),
            ),
            "a",
            2,
        )
        .unwrap();
        let DataType::Map(m) = m else { panic!() };
        assert_eq!(
            m.get("counter", FieldType::Counter),
            Some(Value::Counter({
                let mut c = crate::Counter::new();
                c.increment("a", 2);
                c
            }))
        );
    }

    fn tags(add: &[&str], remove: &[&str]) -> Op {
        Op::Map(MapOp {
            remove: vec![],
            update: vec![(
                ("tags".to_string(), FieldType::Set),
                FieldOp::Set(set_op(add, remove)),
            )],
        })
    }

    fn tag_values(d: &DataType) -> Vec<String> {
        let DataType::Map(m) = d else { panic!() };
        match m.get("tags", FieldType::Set) {
            Some(Value::Set(s)) => s
                .value()
                .map(|e| String::from_utf8(e.clone()).unwrap())
                .collect(),
            _ => vec![],
        }
    }

    #[test]
    fn nested_removes_remove_what_the_client_saw_of_the_field() {
        let m = apply(None, &upd(tags(&["x", "y"], &[]), None), "a", 1).unwrap();
        let ctx = m.context();
        let removed = apply(
            Some(m.clone()),
            &upd(tags(&[], &["x"]), Some(ctx.clone())),
            "a",
            2,
        )
        .unwrap();
        assert_eq!(tag_values(&removed), ["y"]);
        // Another actor re-adds x concurrently; once merged here, the
        // field has a version the client's context has not seen: the
        // remove is refused, not applied to the unseen add nor dropped.
        let readd = apply(Some(m.clone()), &upd(tags(&["x"], &[]), None), "b", 2).unwrap();
        let mut merged = m.clone();
        merged.merge(&readd);
        assert_eq!(
            apply(
                Some(merged.clone()),
                &upd(tags(&[], &["x"]), Some(ctx)),
                "a",
                3
            ),
            Err(UpdateError::FieldChanged("tags".into()))
        );
        // With the merged state's context the remove goes through.
        let ctx = merged.context();
        let done = apply(Some(merged), &upd(tags(&[], &["x"]), Some(ctx)), "a", 3).unwrap();
        assert_eq!(tag_values(&done), ["y"]);
        // Without a context: what is here, and nothing there is an error.
        let e = apply(Some(done), &upd(tags(&[], &["q"]), None), "a", 4);
        assert_eq!(e, Err(UpdateError::NotPresent("q".into())));
    }

    #[test]
    fn wrong_types_and_mismatched_fields_are_refused() {
        let c = apply(None, &upd(Op::Counter(1), None), "a", 1).unwrap();
        assert!(matches!(
            apply(Some(c), &upd(Op::Set(SetOp::default()), None), "a", 1),
            Err(UpdateError::WrongType {
                stored: "counter",
                op: "set"
            })
        ));
        let bad = MapOp {
            remove: vec![],
            update: vec![(("f".into(), FieldType::Flag), FieldOp::Counter(1))],
        };
        assert!(matches!(
            apply(None, &upd(Op::Map(bad), None), "a", 1),
            Err(UpdateError::Malformed(_))
        ));
    }

    #[test]
    fn updates_round_trip_and_replicas_converge() {
        let u = upd(
            Op::Map(MapOp {
                remove: vec![("r".into(), FieldType::Register)],
                update: vec![(
                    ("s".into(), FieldType::Set),
                    FieldOp::Set(set_op(&["a"], &["b"])),
                )],
            }),
            Some(VersionVector::new()),
        );
        assert_eq!(Update::decode(&u.encode()).unwrap(), u);
        assert!(Update::decode(&[]).is_err() && Update::decode(&[7]).is_err());
        // Two actors add concurrently; merging in either order agrees.
        let a = apply(None, &upd(Op::Set(set_op(&["x"], &[])), None), "a", 1).unwrap();
        let b = apply(None, &upd(Op::Set(set_op(&["y"], &[])), None), "b", 1).unwrap();
        let (mut ab, mut ba) = (a.clone(), b.clone());
        ab.merge(&b);
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(elems(&ab), ["x", "y"]);
    }
}
