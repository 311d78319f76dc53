//! Map of embedded data types (`riak_dt_map`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Actor, Convergent, Counter, Flag, OrSet, Precondition, Register, VersionVector};

/// The type of a map field; part of its key, so `("n", Counter)` and
/// `("n", Register)` are two fields, as in Riak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FieldType {
    /// A [`Counter`].
    Counter,
    /// An [`OrSet`].
    Set,
    /// A [`Register`].
    Register,
    /// A [`Flag`].
    Flag,
    /// A nested [`Map`].
    Map,
}

/// The value of one field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// A counter field.
    Counter(Counter),
    /// A set field.
    Set(OrSet),
    /// A register field.
    Register(Register),
    /// A flag field.
    Flag(Flag),
    /// A nested map.
    Map(Map),
}

impl Value {
    /// The empty value of `kind`: what a field holds before its first update.
    pub fn bottom(kind: FieldType) -> Value {
        match kind {
            FieldType::Counter => Value::Counter(Counter::new()),
            FieldType::Set => Value::Set(OrSet::new()),
            FieldType::Register => Value::Register(Register::new()),
            FieldType::Flag => Value::Flag(Flag::new()),
            FieldType::Map => Value::Map(Map::new()),
        }
    }

    /// The causal context of removes inside this value (a set's, a nested
    /// map's or a flag's clock; empty for counters and registers).
    pub fn context(&self) -> VersionVector {
        match self {
            Value::Set(s) => s.context(),
            Value::Map(m) => m.context(),
            Value::Flag(f) => f.context(),
            Value::Counter(_) | Value::Register(_) => VersionVector::new(),
        }
    }

    /// The type of this value.
    pub fn kind(&self) -> FieldType {
        match self {
            Value::Counter(_) => FieldType::Counter,
            Value::Set(_) => FieldType::Set,
            Value::Register(_) => FieldType::Register,
            Value::Flag(_) => FieldType::Flag,
            Value::Map(_) => FieldType::Map,
        }
    }
}

impl Convergent for Value {
    /// Merges values of the same type; a value of another type (which a
    /// field key rules out) is ignored.
    fn merge(&mut self, other: &Self) {
        match (self, other) {
            (Value::Counter(a), Value::Counter(b)) => a.merge(b),
            (Value::Set(a), Value::Set(b)) => a.merge(b),
            (Value::Register(a), Value::Register(b)) => a.merge(b),
            (Value::Flag(a), Value::Flag(b)) => a.merge(b),
            (Value::Map(a), Value::Map(b)) => a.merge(b),
            _ => {}
        }
    }
}

/// A field's key: its name and type.
pub type Field = (String, FieldType);

/// Per actor, the field's latest dot of that actor and the field's value as
/// that update left it. A dot's value never changes once minted, so equal
/// dots on two replicas carry equal values.
type Versions = BTreeMap<Actor, (u64, Value)>;

/// A map of named, typed fields holding embedded data types
/// (`riak_dt_map`): for documents whose parts change independently (a
/// profile's counter of visits, set of tags, register of name). Field
/// presence is an observed-remove set: an update tags the field with a new
/// dot, a remove drops the dots its context has seen, and an update
/// concurrent with a remove wins, keeping the field.
///
/// Each dot carries the field's value as its update left it; the field's
/// value is the merge of the values of its surviving dots. A field removed
/// everywhere forgets its value: updating it again starts from empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Map {
    clock: VersionVector,
    entries: BTreeMap<Field, Versions>,
}

fn join(versions: &Versions) -> Option<Value> {
    let mut it = versions.values();
    let (_, first) = it.next()?;
    let mut out = first.clone();
    for (_, v) in it {
        out.merge(v);
    }
    Some(out)
}

impl Map {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `update` to field `(name, kind)` on behalf of `actor`,
    /// creating the field if absent, and returns what `update` returns
    /// (e.g. a nested precondition error). The field gets a new dot of
    /// `actor` holding the updated value, which replaces the dots this
    /// replica has seen.
    pub fn update<R>(
        &mut self,
        actor: &str,
        name: &str,
        kind: FieldType,
        update: impl FnOnce(&mut Value) -> R,
    ) -> R {
        let key = (name.to_owned(), kind);
        let mut value = self
            .entries
            .get(&key)
            .and_then(join)
            .unwrap_or_else(|| Value::bottom(kind));
        let out = update(&mut value);
        if value.kind() != kind {
            // The closure swapped the type; keep the field well typed.
            value = Value::bottom(kind);
        }
        let dot = self.clock.next_dot(actor);
        let mut versions = Versions::new();
        versions.insert(dot.actor, (dot.counter, value));
        self.entries.insert(key, versions);
        out
    }

    /// Removes field `(name, kind)` as far as `context` has seen it; a
    /// concurrent update survives.
    pub fn remove(
        &mut self,
        name: &str,
        kind: FieldType,
        context: &VersionVector,
    ) -> Result<(), Precondition> {
        if !self.clock.descends(context) {
            return Err(Precondition::UnseenContext);
        }
        let key = (name.to_owned(), kind);
        let Some(versions) = self.entries.get_mut(&key) else {
            return Err(Precondition::NotPresent);
        };
        versions.retain(|actor, (c, _)| !context.contains(actor, *c));
        if versions.is_empty() {
            self.entries.remove(&key);
        }
        Ok(())
    }

    /// The value of field `(name, kind)`, if present.
    pub fn get(&self, name: &str, kind: FieldType) -> Option<Value> {
        self.entries.get(&(name.to_owned(), kind)).and_then(join)
    }

    /// All fields and their values, by key.
    pub fn value(&self) -> BTreeMap<Field, Value> {
        self.entries
            .iter()
            .filter_map(|(k, v)| join(v).map(|v| (k.clone(), v)))
            .collect()
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no field.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The causal context to hand to a client with a read.
    pub fn context(&self) -> VersionVector {
        self.clock.clone()
    }

    /// What a client whose (top-level) context is `seen` observed of field
    /// `(name, kind)`'s own state, for removes inside it: the join of the
    /// contexts of the field's versions. Each version holds the field as
    /// its update left it, so a client that saw every current version saw
    /// exactly that much. `None` when `seen` misses a current version (the
    /// field was updated since the client's read); an absent field gives
    /// an empty context (nothing of it was seen).
    pub fn field_context(
        &self,
        name: &str,
        kind: FieldType,
        seen: &VersionVector,
    ) -> Option<VersionVector> {
        let mut out = VersionVector::new();
        let Some(versions) = self.entries.get(&(name.to_owned(), kind)) else {
            return Some(out);
        };
        for (actor, (c, v)) in versions {
            if !seen.contains(actor, *c) {
                return None;
            }
            out.merge(&v.context());
        }
        Some(out)
    }
}

/// The ORSWOT rule on one field's versions (see [`OrSet`]'s merge).
fn merge_versions(
    mine: &Versions,
    my_clock: &VersionVector,
    theirs: &Versions,
    their_clock: &VersionVector,
) -> Versions {
    let mut out = Versions::new();
    for (actor, (c, v)) in mine {
        let both = theirs.get(actor).is_some_and(|(tc, _)| tc == c);
        if both || !their_clock.contains(actor, *c) {
            out.insert(actor.clone(), (*c, v.clone()));
        }
    }
    for (actor, (c, v)) in theirs {
        let both = mine.get(actor).is_some_and(|(mc, _)| mc == c);
        if both || !my_clock.contains(actor, *c) {
            match out.get_mut(actor) {
                Some(slot) if slot.0 > *c => {}
                Some(slot) if slot.0 == *c => slot.1.merge(v),
                _ => {
                    out.insert(actor.clone(), (*c, v.clone()));
                }
            }
        }
    }
    out
}

impl Convergent for Map {
    fn merge(&mut self, other: &Self) {
        self.entries = crate::vv::merge_keyed(
            &self.entries,
            &self.clock,
            &other.entries,
            &other.clock,
            merge_versions,
            Versions::is_empty,
        );
        self.clock.merge(&other.clock);
    }
}
