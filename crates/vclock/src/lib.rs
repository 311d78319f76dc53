//! # dynkv-vclock: versions, siblings and contexts
//!
//! dynkv never loses a concurrent write: every key's state is a **dotted
//! version vector set** (DVVSet, Almeida, Baquero et al.), the structure Riak
//! 2.x uses. Its job is to tell *causally later* writes (which replace what
//! they saw) from *concurrent* ones (which are kept side by side as
//! siblings), while keeping the clock as small as the number of nodes that
//! coordinated writes, never the number of clients or writes.
//!
//! ## The operations and how dynkv uses them
//! - A client reads and receives the [`DvvSet::join`] of the state: a
//!   [`VersionVector`] handed out as an opaque, versioned base64url token
//!   signed by the cluster ([`encode_context`] / [`decode_context`]).
//! - A write arrives at a coordinator node (a primary replica of the key),
//!   which computes [`DvvSet::update`]`(context, local, own_node_id, value)`:
//!   the new value gets the next *dot* `(node, n)`; the siblings the context
//!   has seen are dropped, all others survive. A blind write (no context)
//!   therefore becomes a sibling of everything stored.
//! - The coordinator ships the result to the other replicas, which merge it
//!   with [`DvvSet::sync`]. Read repair, hinted handoff and anti-entropy use
//!   the same `sync`, so any order of merges converges.
//! - DELETE writes a tombstone [`Content`]; a key whose siblings are all
//!   tombstones reads as not found but keeps its history, so an older value
//!   arriving later loses to it instead of coming back.
//!
//! ## Laws (checked by the property tests in `tests/`)
//! - `sync` is commutative, associative and idempotent; `sync(a, b)`
//!   descends from both `a` and `b`.
//! - A write with the context of a read replaces exactly the siblings that
//!   read saw; two writes from the same older context become two siblings;
//!   a chain of read-modify-writes never creates a sibling.
//! - The clock has at most one entry per coordinating node.
//!
//! ## Layout
//! - [`dvvset`]: the generic structure and its algorithms (no I/O).
//! - [`object`]: [`Content`], the stored [`Object`] type, its versioned
//!   encoding and its digest.
//! - [`meta`]: [`Meta`], a sibling's typed metadata (idempotency records,
//!   user metadata, links, index entries), and its string-pair form.
//! - [`context`]: client context tokens.

pub mod context;
pub mod dvvset;
pub mod meta;
pub mod object;

pub use context::{
    ContextError, ContextKey, context_payload, decode_context, decode_context_payload,
    encode_context, inspect_context,
};
pub use dvvset::{Actor, DvvSet, Entry, VersionVector};
pub use meta::{IdempotencyRecord, Link, Meta};
pub use object::{
    Content, Object, ObjectDecodeError, decode_object, encode_object, encode_object_v1,
    encode_version_into,
};
