//! Every internode message: one typed request per endpoint, each naming its
//! typed response ([`crate::wire::Endpoint`]), encoded as protobuf.
//!
//! Each domain type (what call sites use: `Bytes`, `Object`, `NodeId`, ...)
//! has a hand-written `prost` twin, the `Wire*` struct of the same file,
//! whose field numbers are the schema and are never reused or renumbered.
//! A message that is one value (a newtype response such as [`Hashes`], or
//! a request with one field such as [`Gossip`]) declares its twin through
//! `one_field_message!`, which also writes the conversions.
//! Conversions from the wire are checked and total: a corrupt object, an
//! out-of-range integer or a missing required field is a
//! [`WireError`], never a panic.
//!
//! ## Subsystems and endpoint IDs
//! Endpoint IDs are allocated in ranges, one per subsystem, so that a new
//! endpoint gets the next free ID of its range (the full list is
//! [`ENDPOINT_IDS`]):
//!
//! | IDs   | module          | endpoints                                         |
//! |-------|-----------------|---------------------------------------------------|
//! | 1–9   | [`health`]      | [`Ping`]                                          |
//! | 10–19 | [`kv`]          | [`Read`], [`Replicate`], [`Coordinate`], [`CoordinateFallback`] |
//! | 20–29 | [`hints`]       | [`StoreHint`]                                     |
//! | 30–39 | [`aae`]         | [`AaeHashes`], [`AaeKeys`], [`AaeFetch`], [`AaeRepair`] |
//! | 40–49 | [`membership`]  | [`Gossip`], [`Join`], [`Handoff`], [`ClaimantChange`] |
//! | 50–59 | [`listing`]     | [`ListKeys`], [`ListNamespaces`], [`IndexQuery`]  |
//! | 60–61 | [`reap`]        | [`ReapCheck`], [`Reap`]                           |
//! | 62–69 | [`feed`]        | [`WatchKey`], [`FeedRead`]                        |
//! | 70–79 | [`overview`]    | [`Overview`]                                      |
//!
//! Responses shared by several endpoints are defined once: [`Stored`] in
//! [`kv`], [`Repaired`] in [`aae`], [`Keys`] in [`listing`],
//! [`ClusterStateReply`] in [`membership`].
//!
//! ## Encoding conventions
//! - Objects travel in a storage encoding (versioned on its own) as one
//!   `bytes` field, decoded with `dynkv_vclock::decode_object` (which reads
//!   every object format and checks the DVVSet invariants). They are sent
//!   in object format 1 (`dynkv_vclock::encode_object_v1`), the one every
//!   release reads, although nodes store format 2: a node of the release
//!   before format 2 can still take them during a rolling upgrade. Sending
//!   format 2 needs a protocol version that promises the peer reads it.
//! - Keys, values and other byte strings are `bytes::Bytes` fields, sliced
//!   out of the received frame without a copy.
//! - A required node id is a non-empty string; an optional one is the empty
//!   string when absent (`node_to_wire` / `node_from_wire`).
//! - Merkle hashes and object digests are `fixed64` (uniformly distributed
//!   64-bit values would take 10 bytes as varints).
//! - Integers narrower than protobuf's 32 bits travel as `uint32` and are
//!   narrowed with `try_from`: a value out of range is an error.
//! - An anti-entropy tree shape is one nested, required message
//!   ([`aae::WireShape`]), the same in every request that names one.

use bytes::Bytes;
use dynkv_ring::NodeId;
use dynkv_vclock::{Object, decode_object, encode_object_v1};

use crate::wire::{Endpoint, WireError};

/// The wire struct and [`WireForm`](crate::wire::WireForm) of a message
/// that is one value: a newtype response (`Hashes.0 => WireHashes { .. }`)
/// or a request with one field (`Gossip.state => WireGossip { .. }`). The
/// wire struct has that one field, tag 1, moved in and out unchanged.
macro_rules! one_field_message {
    (
        $(#[$doc:meta])*
        $ty:ident . $value:tt => $wire:ident {
            $(#[doc = $field_doc:literal])*
            #[prost($($prost:tt)*)]
            $field:ident: $field_ty:ty $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, prost::Message)]
        pub struct $wire {
            $(#[doc = $field_doc])*
            #[prost($($prost)*, tag = "1")]
            pub $field: $field_ty,
        }

        impl $crate::wire::WireForm for $ty {
            type Wire = $wire;

            fn to_wire(&self) -> $wire {
                $wire {
                    $field: Clone::clone(&self.$value),
                }
            }

            fn from_wire(w: $wire) -> Result<Self, $crate::wire::WireError> {
                Ok($ty { $value: w.$field })
            }
        }
    };
}

pub mod aae;
pub mod feed;
pub mod health;
pub mod hints;
pub mod kv;
pub mod listing;
pub mod membership;
pub mod overview;
pub mod reap;

pub use aae::{AaeFetch, AaeHashes, AaeKeys, AaeRepair, Hashes, KeyDigests, Objects, Repaired};
pub use feed::{FeedChunk, FeedEntry, FeedRead, WatchKey, WatchReply};
pub use health::{Ping, Pong};
pub use hints::StoreHint;
pub use kv::{
    Coordinate, CoordinateFallback, Quorum, Read, ReadReply, ReplicaReport, Replicate, Stored,
    WriteOutcome, WriteRequest,
};
pub use listing::{IndexEntries, IndexQuery, Keys, ListKeys, ListNamespaces};
pub use membership::{ClaimantChange, ClusterStateReply, Gossip, Handoff, Join};
pub use overview::{NodeSummary, Overview};
pub use reap::{Reap, ReapCheck, ReapStatus, ReapStatuses, Reaped};

/// Every endpoint as `(ID, NAME)`, in ID order. IDs are never reused: an
/// endpoint that is retired keeps its number out of circulation.
pub const ENDPOINT_IDS: &[(u16, &str)] = &[
    (Ping::ID, Ping::NAME),
    (Read::ID, Read::NAME),
    (Replicate::ID, Replicate::NAME),
    (Coordinate::ID, Coordinate::NAME),
    (CoordinateFallback::ID, CoordinateFallback::NAME),
    (StoreHint::ID, StoreHint::NAME),
    (AaeHashes::ID, AaeHashes::NAME),
    (AaeKeys::ID, AaeKeys::NAME),
    (AaeFetch::ID, AaeFetch::NAME),
    (AaeRepair::ID, AaeRepair::NAME),
    (Gossip::ID, Gossip::NAME),
    (Join::ID, Join::NAME),
    (Handoff::ID, Handoff::NAME),
    (ClaimantChange::ID, ClaimantChange::NAME),
    (ListKeys::ID, ListKeys::NAME),
    (ListNamespaces::ID, ListNamespaces::NAME),
    (IndexQuery::ID, IndexQuery::NAME),
    (ReapCheck::ID, ReapCheck::NAME),
    (Reap::ID, Reap::NAME),
    (Overview::ID, Overview::NAME),
    (WatchKey::ID, WatchKey::NAME),
    (FeedRead::ID, FeedRead::NAME),
];

/// One `(key, object)` pair of a batch (anti-entropy repair, handoff).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireItem {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The object in its storage encoding.
    #[prost(bytes = "bytes", tag = "2")]
    pub object: Bytes,
}

/// An object in object format 1 (which every release reads), as a `bytes`
/// field.
pub(crate) fn object_to_wire(object: &Object) -> Bytes {
    Bytes::from(encode_object_v1(object))
}

/// Decodes [`object_to_wire`]; a corrupt object is [`WireError::Invalid`].
pub(crate) fn object_from_wire(bytes: &[u8]) -> Result<Object, WireError> {
    decode_object(bytes).map_err(|e| WireError::Invalid(format!("object: {e}")))
}

/// Encodes a batch of `(key, object)` pairs.
pub(crate) fn items_to_wire(items: &[(Bytes, Object)]) -> Vec<WireItem> {
    items
        .iter()
        .map(|(key, object)| WireItem {
            key: key.clone(),
            object: object_to_wire(object),
        })
        .collect()
}

/// Decodes [`items_to_wire`]; any corrupt object fails the whole batch.
pub(crate) fn items_from_wire(items: Vec<WireItem>) -> Result<Vec<(Bytes, Object)>, WireError> {
    items
        .into_iter()
        .map(|i| Ok((i.key, object_from_wire(&i.object)?)))
        .collect()
}

/// Decodes a node id that must be present (`field` names it in the error).
pub(crate) fn required_node(s: String, field: &str) -> Result<NodeId, WireError> {
    if s.is_empty() {
        return Err(WireError::Invalid(format!("{field}: missing node id")));
    }
    Ok(NodeId::from(s))
}

/// Narrows a `uint32` field to a byte (`field` names it in the error).
pub(crate) fn narrow_u8(v: u32, field: &str) -> Result<u8, WireError> {
    u8::try_from(v).map_err(|_| WireError::Invalid(format!("{field}: {v} does not fit a byte")))
}

#[cfg(test)]
pub(crate) mod testutil {
    use dynkv_vclock::{Content, DvvSet, Meta, Object, VersionVector};

    use crate::wire::Message;

    /// Asserts that `v` decodes from its encoding to itself.
    pub fn round_trip<T: Message + PartialEq + std::fmt::Debug>(v: T) {
        let back = T::decode(v.encode()).expect("decodes");
        assert_eq!(back, v);
    }

    /// An object with two concurrent siblings (one with metadata), a
    /// tombstone history and two actors.
    pub fn object() -> Object {
        let first = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            Content::value("v1", "text/plain", 10),
        );
        let with_meta = Content::value(vec![0u8, 1, 2, 255], "application/octet-stream", 20)
            .with_meta(Meta::from_pairs(vec![
                ("riak.meta.a".into(), "b".into()),
                ("dynkv.idem.k".into(), "7".into()),
                ("x".into(), "y".into()),
            ]));
        let second = DvvSet::update(&VersionVector::new(), &first, "n2", with_meta);
        DvvSet::update(&second.join(), &second, "n1", Content::tombstone(30))
    }

    /// A small object with one value.
    pub fn small_object(v: &str) -> Object {
        DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n3",
            Content::value(v.to_owned(), "t", 1),
        )
    }
}

/// Splits `(key, object)` pairs into batches of at most `budget` object
/// bytes (an object larger than that goes alone), so that a message
/// carrying many objects (anti-entropy repair, ownership handoff) always
/// fits a frame whatever the objects' sizes.
pub fn split_by_bytes(items: Vec<(Bytes, Object)>, budget: usize) -> Vec<Vec<(Bytes, Object)>> {
    let mut out: Vec<Vec<(Bytes, Object)>> = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0;
    for (k, o) in items {
        let n = k.len() + o.byte_size();
        if !cur.is_empty() && size + n > budget {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += n;
        cur.push((k, o));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Class;
    use std::collections::HashSet;

    #[test]
    fn endpoint_ids_are_unique() {
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for &(id, name) in ENDPOINT_IDS {
            assert!(ids.insert(id), "endpoint ID {id} ({name}) is used twice");
            assert!(names.insert(name), "endpoint name {name} is used twice");
        }
    }

    #[test]
    fn batches_split_by_bytes_keep_every_item_in_order() {
        let obj = |n: usize| {
            dynkv_vclock::DvvSet::update(
                &dynkv_vclock::VersionVector::new(),
                &Object::new(),
                "n1",
                dynkv_vclock::Content::value(vec![0u8; n], "t", 1),
            )
        };
        let items: Vec<(Bytes, Object)> = [10, 900, 10, 10, 5000, 10]
            .iter()
            .enumerate()
            .map(|(i, n)| (Bytes::from(format!("k{i}")), obj(*n)))
            .collect();
        let batches = split_by_bytes(items.clone(), 1000);
        assert!(batches.iter().all(|b| !b.is_empty()));
        let flat: Vec<_> = batches.iter().flatten().cloned().collect();
        assert_eq!(flat, items, "nothing lost or reordered");
        for b in &batches {
            let size: usize = b.iter().map(|(k, o)| k.len() + o.byte_size()).sum();
            assert!(
                b.len() == 1 || size <= 1000,
                "{size} bytes in {} items",
                b.len()
            );
        }
        assert!(split_by_bytes(Vec::new(), 10).is_empty());
    }

    #[test]
    fn endpoint_ids_are_in_their_subsystem_range() {
        fn range<E: Endpoint>(r: std::ops::RangeInclusive<u16>) {
            assert!(
                r.contains(&E::ID),
                "{} has ID {} outside {r:?}",
                E::NAME,
                E::ID
            );
        }
        range::<Ping>(1..=9);
        range::<Read>(10..=19);
        range::<Replicate>(10..=19);
        range::<Coordinate>(10..=19);
        range::<CoordinateFallback>(10..=19);
        range::<StoreHint>(20..=29);
        range::<AaeHashes>(30..=39);
        range::<AaeKeys>(30..=39);
        range::<AaeFetch>(30..=39);
        range::<AaeRepair>(30..=39);
        range::<Gossip>(40..=49);
        range::<Join>(40..=49);
        range::<Handoff>(40..=49);
        range::<ClaimantChange>(40..=49);
        range::<ListKeys>(50..=59);
        range::<ListNamespaces>(50..=59);
        range::<IndexQuery>(50..=59);
        range::<ReapCheck>(60..=69);
        range::<Reap>(60..=69);
        range::<WatchKey>(62..=69);
        range::<FeedRead>(62..=69);
        range::<Overview>(70..=79);
        assert_eq!(ENDPOINT_IDS.len(), 22);
    }

    #[test]
    fn bulk_endpoints() {
        assert_eq!(AaeHashes::CLASS, Class::Bulk);
        assert_eq!(Handoff::CLASS, Class::Bulk);
        assert_eq!(ListKeys::CLASS, Class::Bulk);
        assert_eq!(IndexQuery::CLASS, Class::Bulk);
        assert_eq!(ReapCheck::CLASS, Class::Bulk);
        assert_eq!(Reap::CLASS, Class::Bulk);
        assert_eq!(Ping::CLASS, Class::Interactive);
        assert_eq!(Replicate::CLASS, Class::Interactive);
        assert_eq!(Gossip::CLASS, Class::Interactive);
    }

    #[test]
    fn items_with_one_corrupt_object_fail_the_batch() {
        let mut wire = items_to_wire(&[
            (Bytes::from_static(b"a"), testutil::object()),
            (Bytes::from_static(b"b"), testutil::small_object("x")),
        ]);
        wire[1].object = Bytes::from_static(&[1, 200, 200, 200]);
        assert!(matches!(items_from_wire(wire), Err(WireError::Invalid(_))));
    }

    #[test]
    fn helpers_reject_bad_fields() {
        assert!(required_node(String::new(), "owner").is_err());
        assert_eq!(required_node("n1".into(), "owner"), Ok(NodeId::from("n1")));
        assert_eq!(narrow_u8(255, "level"), Ok(255));
        assert!(narrow_u8(256, "level").is_err());
        assert!(object_from_wire(&[]).is_err());
        let o = testutil::object();
        let wire = object_to_wire(&o);
        assert_eq!(wire[0], dynkv_vclock::object::OBJECT_FORMAT_V1);
        assert_eq!(object_from_wire(&wire), Ok(o.clone()));
        let stored = dynkv_vclock::encode_object(&o);
        assert_eq!(object_from_wire(&stored), Ok(o));
    }

    #[test]
    fn item_wire_struct_is_a_message() {
        let w = WireItem {
            key: Bytes::from_static(b"k"),
            object: object_to_wire(&testutil::small_object("v")),
        };
        let bytes = prost::Message::encode_to_vec(&w);
        let back: WireItem = prost::Message::decode(&bytes[..]).unwrap();
        assert_eq!(back, w);
    }
}
