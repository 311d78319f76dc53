//! # Bucket types
//!
//! Riak 2.x groups buckets under *bucket types*: named property sets an
//! operator creates (`riak-admin bucket-type create T '{"props":{...}}'`),
//! activates, and later updates. Every bucket of a type inherits its
//! properties (a bucket may override the mutable ones), and a type is also
//! a namespace: bucket `b` of type `T` is not bucket `b` of another type.
//!
//! This crate is the registry as a pure value ([`BucketTypes`]), with no
//! I/O: the cluster state carries it and gossips it, so every node agrees
//! on the types, as Riak keeps them in its cluster metadata. Each type is
//! a last-writer-wins register stamped `(counter, node)`; merging keeps the
//! greater stamp type by type, so concurrent changes to two types never
//! undo each other, and every node converges on the same registry
//! whatever the order gossip brings the changes in.
//!
//! ## Rules copied from Riak
//! - `default` is built in: it is always active and its properties are the
//!   node's defaults; it cannot be created or updated here.
//! - A new type's properties start from Riak's defaults for custom types:
//!   `allow_mult=true` unless given (the default type keeps
//!   `allow_mult=false`), and an `hll` datatype gets `hll_precision=14`.
//! - A type is usable only once active; activation cannot be undone.
//! - `datatype`, `consistent` and `write_once` are fixed at creation
//!   ([`IMMUTABLE`]); `hll_precision` may be lowered, never raised (a
//!   HyperLogLog cannot gain precision it never recorded).
//! - A datatype needs `allow_mult=true` (its replicas merge, they never
//!   choose).
//!
//! Property *values* (an `n_val` within the cluster's N, quorum words, ...)
//! are validated by the API before a command is made, because they depend
//! on the node's configuration; this registry checks only what depends on
//! a type's history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The built-in type of un-typed buckets.
pub const DEFAULT_TYPE: &str = "default";

/// Properties that a type fixes at creation.
pub const IMMUTABLE: [&str; 3] = ["datatype", "consistent", "write_once"];

/// Precision of a HyperLogLog when its type does not name one (Riak's).
pub const DEFAULT_HLL_PRECISION: u64 = 14;

/// Longest type name accepted (bytes).
pub const MAX_NAME_BYTES: usize = 255;

/// The datatypes a type may name, as Riak spells them.
pub const DATATYPES: [&str; 5] = ["counter", "set", "map", "hll", "gset"];

/// One type: its properties as set, whether it may be used, and the stamp
/// of its last change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeEntry {
    /// The properties set on the type, as a JSON object (text, because the
    /// cluster state's binary codec cannot carry free-form JSON values).
    pub props: String,
    /// Whether buckets of this type may be used.
    pub active: bool,
    /// `(counter, node)` of the last change: the greater wins a merge.
    pub stamp: (u64, String),
}

impl TypeEntry {
    /// What orders two versions of a type in a merge.
    fn rank(&self) -> (&(u64, String), bool, &str) {
        (&self.stamp, self.active, &self.props)
    }

    /// The properties as a JSON object (an unreadable stored text, which
    /// no command of this crate writes, reads as no properties).
    pub fn props(&self) -> Map<String, Value> {
        serde_json::from_str(&self.props).unwrap_or_default()
    }
}

/// An operator's change to the registry (`riak-admin bucket-type`'s verbs
/// that change something).
#[derive(Clone, Debug, PartialEq)]
pub enum TypeCommand {
    /// Creates (or, while not yet active, re-creates) a type.
    Create {
        /// Its name.
        name: String,
        /// The properties given.
        props: Map<String, Value>,
    },
    /// Makes a created type usable.
    Activate {
        /// Its name.
        name: String,
    },
    /// Changes an active type's mutable properties (merged over the old).
    Update {
        /// Its name.
        name: String,
        /// The properties to change.
        props: Map<String, Value>,
    },
}

impl TypeCommand {
    /// The type the command names.
    pub fn name(&self) -> &str {
        match self {
            TypeCommand::Create { name, .. }
            | TypeCommand::Activate { name }
            | TypeCommand::Update { name, .. } => name,
        }
    }
}

/// Why a command was refused (the messages are shown to operators and
/// clients).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// `default` is built in.
    #[error("the default bucket type is built in: set bucket properties instead")]
    Default,
    /// No such type.
    #[error("bucket type {0} does not exist")]
    NotFound(String),
    /// Created but not active yet.
    #[error("bucket type {0} is not active")]
    NotActive(String),
    /// Create on an active type.
    #[error("bucket type {0} is already active")]
    AlreadyActive(String),
    /// Activate on an active type.
    #[error("bucket type {0} is already active")]
    AlreadyActivated(String),
    /// A bad name.
    #[error("invalid bucket type name: {0}")]
    BadName(String),
    /// A property that cannot take that value, or cannot change.
    #[error("{property}: {reason}")]
    BadProperty {
        /// The property.
        property: String,
        /// Why.
        reason: String,
    },
}

/// Every bucket type but `default`, as the cluster agrees on them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketTypes {
    types: BTreeMap<String, TypeEntry>,
}

impl BucketTypes {
    /// The type named `name` (`None` for `default` and unknown names).
    pub fn get(&self, name: &str) -> Option<&TypeEntry> {
        self.types.get(name)
    }

    /// Every type, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TypeEntry)> {
        self.types.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The greatest stamp counter (bounded by the cluster state's checks).
    pub fn version(&self) -> u64 {
        self.types.values().map(|e| e.stamp.0).max().unwrap_or(0)
    }

    /// The union of two registries, type by type the greater stamp.
    pub fn merge(&self, other: &BucketTypes) -> BucketTypes {
        let mut out = self.clone();
        for (name, theirs) in &other.types {
            match out.types.get(name) {
                // Equal stamps come from one node and so are one change;
                // the content decides only for a corrupt pair, so that the
                // merge stays commutative whatever it is given.
                Some(ours) if ours.rank() >= theirs.rank() => {}
                _ => {
                    out.types.insert(name.clone(), theirs.clone());
                }
            }
        }
        out
    }

    /// Applies `cmd` made on node `by`: the changed type gets a stamp
    /// above every stamp this registry has seen.
    pub fn apply(&self, by: &str, cmd: &TypeCommand) -> Result<BucketTypes, TypeError> {
        let name = cmd.name();
        check_name(name)?;
        let old = self.types.get(name);
        let (props, active) = match cmd {
            TypeCommand::Create { props, .. } => {
                if old.is_some_and(|e| e.active) {
                    return Err(TypeError::AlreadyActive(name.into()));
                }
                (creation_props(props)?, false)
            }
            TypeCommand::Activate { .. } => {
                let e = old.ok_or_else(|| TypeError::NotFound(name.into()))?;
                if e.active {
                    return Err(TypeError::AlreadyActivated(name.into()));
                }
                (e.props(), true)
            }
            TypeCommand::Update { props, .. } => {
                let e = old.ok_or_else(|| TypeError::NotFound(name.into()))?;
                if !e.active {
                    return Err(TypeError::NotActive(name.into()));
                }
                (updated_props(&e.props(), props)?, true)
            }
        };
        let mut out = self.clone();
        let counter = self.version().saturating_add(1);
        out.types.insert(
            name.to_string(),
            TypeEntry {
                props: Value::Object(props).to_string(),
                active,
                stamp: (counter, by.to_string()),
            },
        );
        Ok(out)
    }
}

/// Checks a type name: not `default`, not empty, not too long, no `/`
/// (it is a URL path segment).
fn check_name(name: &str) -> Result<(), TypeError> {
    if name == DEFAULT_TYPE {
        return Err(TypeError::Default);
    }
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains('/') {
        return Err(TypeError::BadName(format!(
            "{name:?}: 1 to {MAX_NAME_BYTES} bytes, no '/'"
        )));
    }
    Ok(())
}

fn bad(property: &str, reason: impl Into<String>) -> TypeError {
    TypeError::BadProperty {
        property: property.into(),
        reason: reason.into(),
    }
}

/// A new type's properties: the custom-type defaults under `given`.
fn creation_props(given: &Map<String, Value>) -> Result<Map<String, Value>, TypeError> {
    let mut props = Map::new();
    props.insert("allow_mult".into(), Value::Bool(true));
    props.extend(given.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(dt) = props.get("datatype") {
        let known = dt.as_str().is_some_and(|d| DATATYPES.contains(&d));
        if !known {
            return Err(bad(
                "datatype",
                format!("must be one of {}", DATATYPES.join(", ")),
            ));
        }
        if props.get("allow_mult") != Some(&Value::Bool(true)) {
            return Err(bad("allow_mult", "a datatype needs allow_mult=true"));
        }
        if dt == "hll" && !props.contains_key("hll_precision") {
            props.insert("hll_precision".into(), DEFAULT_HLL_PRECISION.into());
        }
    }
    Ok(props)
}

/// An active type's properties after an update: `changes` over `old`,
/// refusing changes to what creation fixed and a higher `hll_precision`.
fn updated_props(
    old: &Map<String, Value>,
    changes: &Map<String, Value>,
) -> Result<Map<String, Value>, TypeError> {
    for p in IMMUTABLE {
        if let Some(v) = changes.get(p) {
            let unchanged = old.get(p).map_or(v == &Value::Bool(false), |o| o == v);
            if !unchanged {
                return Err(bad(p, "cannot be changed after the type is created"));
            }
        }
    }
    if let Some(new) = changes.get("hll_precision")
        && let (Some(new), Some(old)) = (
            new.as_u64(),
            old.get("hll_precision").and_then(Value::as_u64),
        )
        && new > old
    {
        return Err(bad(
            "hll_precision",
            format!("can only be lowered (it is {old})"),
        ));
    }
    let mut props = old.clone();
    props.extend(changes.iter().map(|(k, v)| (k.clone(), v.clone())));
    if props.contains_key("datatype") && props.get("allow_mult") != Some(&Value::Bool(true)) {
        return Err(bad("allow_mult", "a datatype needs allow_mult=true"));
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn create(name: &str, props: Value) -> TypeCommand {
        TypeCommand::Create {
            name: name.into(),
            props: obj(props),
        }
    }

    fn activate(name: &str) -> TypeCommand {
        TypeCommand::Activate { name: name.into() }
    }

    fn update(name: &str, props: Value) -> TypeCommand {
        TypeCommand::Update {
            name: name.into(),
            props: obj(props),
        }
    }

    #[test]
    fn a_type_is_created_then_activated_then_updated() {
        let r = BucketTypes::default()
            .apply("n1", &create("maps", json!({"datatype": "map"})))
            .unwrap();
        let e = r.get("maps").unwrap();
        assert!(!e.active);
        assert_eq!(e.props()["allow_mult"], json!(true));
        assert_eq!(
            r.apply("n1", &update("maps", json!({"n_val": 2}))),
            Err(TypeError::NotActive("maps".into()))
        );
        let r = r.apply("n2", &activate("maps")).unwrap();
        assert!(r.get("maps").unwrap().active);
        assert_eq!(
            r.apply("n1", &activate("maps")),
            Err(TypeError::AlreadyActivated("maps".into()))
        );
        assert_eq!(
            r.apply("n1", &create("maps", json!({}))),
            Err(TypeError::AlreadyActive("maps".into()))
        );
        let r = r.apply("n1", &update("maps", json!({"n_val": 2}))).unwrap();
        let p = r.get("maps").unwrap().props();
        assert_eq!(
            (p["n_val"].clone(), p["datatype"].clone()),
            (json!(2), json!("map"))
        );
        assert_eq!(r.get("maps").unwrap().stamp, (3, "n1".into()));
    }

    #[test]
    fn riaks_rules_are_kept() {
        let none = BucketTypes::default();
        assert_eq!(
            none.apply("n1", &create("default", json!({}))),
            Err(TypeError::Default)
        );
        assert!(matches!(
            none.apply("n1", &create("", json!({}))),
            Err(TypeError::BadName(_))
        ));
        assert!(matches!(
            none.apply("n1", &create("a/b", json!({}))),
            Err(TypeError::BadName(_))
        ));
        assert_eq!(
            none.apply("n1", &activate("x")),
            Err(TypeError::NotFound("x".into()))
        );
        for bad_dt in [
            json!({"datatype": "tree"}),
            json!({"datatype": "map", "allow_mult": false}),
        ] {
            assert!(matches!(
                none.apply("n1", &create("t", bad_dt)),
                Err(TypeError::BadProperty { .. })
            ));
        }
        let hll = none
            .apply("n1", &create("hlls", json!({"datatype": "hll"})))
            .unwrap()
            .apply("n1", &activate("hlls"))
            .unwrap();
        assert_eq!(hll.get("hlls").unwrap().props()["hll_precision"], json!(14));
        assert!(
            hll.apply("n1", &update("hlls", json!({"hll_precision": 14})))
                .is_ok()
        );
        assert!(
            hll.apply("n1", &update("hlls", json!({"hll_precision": 12})))
                .is_ok()
        );
        assert!(matches!(
            hll.apply("n1", &update("hlls", json!({"hll_precision": 15}))),
            Err(TypeError::BadProperty { .. })
        ));
        assert!(matches!(
            hll.apply("n1", &update("hlls", json!({"datatype": "counter"}))),
            Err(TypeError::BadProperty { .. })
        ));
        assert!(
            hll.apply("n1", &update("hlls", json!({"datatype": "hll"})))
                .is_ok()
        );
        assert!(matches!(
            hll.apply("n1", &update("hlls", json!({"allow_mult": false}))),
            Err(TypeError::BadProperty { .. })
        ));
        let plain = none
            .apply("n1", &create("plain", json!({"allow_mult": false})))
            .unwrap()
            .apply("n1", &activate("plain"))
            .unwrap();
        assert!(matches!(
            plain.apply("n1", &update("plain", json!({"write_once": true}))),
            Err(TypeError::BadProperty { .. })
        ));
        assert!(
            plain
                .apply("n1", &update("plain", json!({"write_once": false})))
                .is_ok()
        );
    }

    #[test]
    fn the_registry_round_trips_through_the_state_codec() {
        let r = BucketTypes::default()
            .apply(
                "n1",
                &create("sets", json!({"datatype": "set", "n_val": 3})),
            )
            .unwrap();
        let bytes = postcard::to_allocvec(&r).unwrap();
        assert_eq!(postcard::from_bytes::<BucketTypes>(&bytes).unwrap(), r);
    }

    fn command() -> impl Strategy<Value = TypeCommand> {
        let name = prop::sample::select(vec!["a", "b", "c"]);
        let n_val = 1u64..4;
        (name, 0u8..3, n_val).prop_map(|(name, verb, n)| match verb {
            0 => create(name, json!({"n_val": n})),
            1 => activate(name),
            _ => update(name, json!({"n_val": n})),
        })
    }

    /// Three nodes each apply their own commands, then exchange states
    /// in some order.
    fn histories() -> impl Strategy<Value = Vec<Vec<TypeCommand>>> {
        prop::collection::vec(prop::collection::vec(command(), 0..6), 3)
    }

    fn run(node: usize, cmds: &[TypeCommand]) -> BucketTypes {
        let by = format!("n{node}");
        cmds.iter()
            .fold(BucketTypes::default(), |r, c| r.apply(&by, c).unwrap_or(r))
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_and_idempotent(h in histories()) {
            let (a, b, c) = (run(0, &h[0]), run(1, &h[1]), run(2, &h[2]));
            prop_assert_eq!(a.merge(&b), b.merge(&a));
            prop_assert_eq!(a.merge(&b).merge(&c), a.merge(&b.merge(&c)));
            prop_assert_eq!(a.merge(&a), a.clone());
        }

        #[test]
        fn a_change_made_after_a_merge_wins_over_everything_merged(h in histories()) {
            let merged = run(0, &h[0]).merge(&run(1, &h[1]));
            for cmd in &h[2] {
                if let Ok(next) = merged.apply("n2", cmd) {
                    let again = next.merge(&merged);
                    prop_assert_eq!(again.get(cmd.name()), next.get(cmd.name()));
                }
            }
        }
    }
}
