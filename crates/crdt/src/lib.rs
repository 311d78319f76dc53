//! # dynkv-crdt: convergent data types
//!
//! Siblings (see `dynkv-vclock`) keep every concurrent write, but leave the
//! client to reconcile them. For values whose reconciliation is known in
//! advance (a count, a set, a flag, a last-written value, a cardinality
//! estimate) the store can do it itself: each type here is a state-based
//! CRDT whose [`Convergent::merge`] is commutative, associative and
//! idempotent, so replicas that exchanged the same updates in any order,
//! any number of times, hold equal states.
//!
//! The semantics follow Riak 2.x data types; each type names its anchor in
//! Basho's `riak_dt` library (by name only):
//!
//! | type | why it exists | riak_dt anchor |
//! | --- | --- | --- |
//! | [`Counter`] | counts that go up and down (likes, stock) | `riak_dt_pncounter` |
//! | [`GSet`] | membership that only grows (seen ids) | `riak_dt_gset` |
//! | [`OrSet`] | sets with removal, add-wins, without tombstones | `riak_dt_orswot` |
//! | [`Flag`] | on/off switch where enable wins | `riak_dt_od_flag` |
//! | [`Register`] | a single value, last writer wins | `riak_dt_lwwreg` |
//! | [`Map`] | documents of independently changing typed fields | `riak_dt_map` |
//! | [`Hll`] | approximate count of distinct elements in fixed space | Riak's `hll` data type (`hll_precision`) |
//!
//! The crate is pure: no I/O, no clocks, no randomness; callers supply
//! actor ids and timestamps.
//!
//! ## Stored data types and operations
//! [`DataType`] is the state a Riak bucket type's key holds (counter, set,
//! gset, map, hll) with its versioned storage encoding ([`datatype`]);
//! [`Update`] is a client's operation with its context, and
//! [`op::apply`] is how the one replica that owns an actor applies it
//! (removes before updates, riak_dt's preconditions) ([`op`]).
//!
//! ## Merge convention
//! [`Convergent::merge`] folds `other` into `self` in place
//! (`self := self ⊔ other`): replicas merge incoming state without cloning
//! their own.
//!
//! ## Where it differs from riak_dt
//! - A remove (set element, map field) or flag disable whose context has
//!   seen updates this replica has not is refused with
//!   [`Precondition::UnseenContext`] instead of being deferred until they
//!   arrive; retrying at a caught-up replica gives the same outcome.
//! - The dotted types keep at most one dot per actor per element, since an
//!   actor's new add supersedes its older one.
//!
//! ## Laws (checked by the property tests in `tests/laws.rs`)
//! For every type, on states reached by random histories over three
//! replicas: merge is commutative, associative and idempotent, and every
//! update is inflationary (merging the state before it into the state
//! after it changes nothing).

mod counter;
pub mod datatype;
mod flag;
mod gset;
mod hll;
mod map;
pub mod op;
mod orset;
mod register;
mod vv;

pub use counter::Counter;
pub use datatype::{CONTENT_TYPE, DataType, DecodeError, Kind};
pub use flag::Flag;
pub use gset::GSet;
pub use hll::{DEFAULT_PRECISION, Hll, InvalidPrecision, MAX_PRECISION, MIN_PRECISION};
pub use map::{Field, FieldType, Map, Value};
pub use op::{FieldOp, MapOp, Op, SetOp, Update, UpdateError};
pub use orset::OrSet;
pub use register::Register;
pub use vv::{Dot, VersionVector};

/// The id of the node (actor) that performs an update; each actor must be
/// unique among the replicas of one value, as dots are minted per actor.
pub type Actor = String;

/// A state-based CRDT: the least upper bound of two states.
pub trait Convergent {
    /// Folds `other` into `self` (`self := self ⊔ other`). Commutative,
    /// associative and idempotent.
    fn merge(&mut self, other: &Self);
}

/// Why an update that needs the client's causal context was refused, as
/// Riak refuses it with `{precondition, ...}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The element (or the enabled flag) is not here and the context gives
    /// no sign the client observed it: removing it would remove nothing.
    NotPresent,
    /// The context has seen updates this replica has not: removing now
    /// would let those unseen adds come back, so the caller must retry at
    /// a replica that has caught up.
    UnseenContext,
}

impl std::fmt::Display for Precondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Precondition::NotPresent => f.write_str("precondition failed: not present"),
            Precondition::UnseenContext => {
                f.write_str("precondition failed: context has updates this replica has not seen")
            }
        }
    }
}

impl std::error::Error for Precondition {}
