//! Active anti-entropy (endpoint IDs 30–39): replicas compare Merkle trees
//! of a partition level by level, then exchange the keys and objects that
//! differ. All of it travels on the bulk connection.

use bytes::Bytes;
use dynkv_vclock::Object;

use super::{
    WireItem, items_from_wire, items_to_wire, narrow_u8, object_from_wire, object_to_wire,
};
use crate::wire::{Class, Endpoint, WireError, WireForm};

/// Anti-entropy: hashes of one level of a partition's Merkle tree (level 0:
/// the root; 1: the middle level; 2: the leaves), at the given indices (all
/// of them when empty). Answer: [`Hashes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AaeHashes {
    /// The partition.
    pub partition: u32,
    /// The tree shape the asker uses (leaf bits, middle bits): both sides
    /// must agree or the comparison means nothing.
    pub shape: (u8, u8),
    /// Tree level.
    pub level: u8,
    /// Node indices in that level.
    pub indices: Vec<u32>,
}

/// The shape of a Merkle tree (leaf bits, middle bits), as both
/// [`AaeHashes`] and [`AaeKeys`] carry it: required, each part a byte.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireShape {
    /// Leaf bits (a byte).
    #[prost(uint32, tag = "1")]
    pub leaf_bits: u32,
    /// Middle bits (a byte).
    #[prost(uint32, tag = "2")]
    pub middle_bits: u32,
}

fn shape_to_wire((leaf_bits, middle_bits): (u8, u8)) -> Option<WireShape> {
    Some(WireShape {
        leaf_bits: leaf_bits.into(),
        middle_bits: middle_bits.into(),
    })
}

/// Decodes [`shape_to_wire`] (`message` names the request in errors).
fn shape_from_wire(w: Option<WireShape>, message: &str) -> Result<(u8, u8), WireError> {
    let w = w.ok_or_else(|| WireError::Invalid(format!("{message}: missing tree shape")))?;
    Ok((
        narrow_u8(w.leaf_bits, "shape.leaf_bits")?,
        narrow_u8(w.middle_bits, "shape.middle_bits")?,
    ))
}

/// The protobuf form of an [`AaeHashes`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireAaeHashes {
    /// The partition.
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    /// The tree shape (required).
    #[prost(message, optional, tag = "2")]
    pub shape: Option<WireShape>,
    /// Tree level (a byte).
    #[prost(uint32, tag = "3")]
    pub level: u32,
    /// Node indices in that level.
    #[prost(uint32, repeated, tag = "4")]
    pub indices: Vec<u32>,
}

impl WireForm for AaeHashes {
    type Wire = WireAaeHashes;

    fn to_wire(&self) -> WireAaeHashes {
        WireAaeHashes {
            partition: self.partition,
            shape: shape_to_wire(self.shape),
            level: self.level.into(),
            indices: self.indices.clone(),
        }
    }

    fn from_wire(w: WireAaeHashes) -> Result<Self, WireError> {
        Ok(AaeHashes {
            partition: w.partition,
            shape: shape_from_wire(w.shape, "aae_hashes")?,
            level: narrow_u8(w.level, "aae_hashes.level")?,
            indices: w.indices,
        })
    }
}

impl Endpoint for AaeHashes {
    const ID: u16 = 30;
    const NAME: &'static str = "aae_hashes";
    const CLASS: Class = Class::Bulk;
    type Response = Hashes;
}

/// Merkle tree hashes, in the order asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashes(pub Vec<u64>);

one_field_message! {
    /// The protobuf form of [`Hashes`].
    Hashes.0 => WireHashes {
        /// The hashes (fixed width: they are uniformly distributed).
        #[prost(fixed64, repeated)]
        hashes: Vec<u64>,
    }
}

/// Anti-entropy: `(key, digest)` of every key under these leaves. Answer:
/// [`KeyDigests`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AaeKeys {
    /// The partition.
    pub partition: u32,
    /// Tree shape, as in [`AaeHashes`].
    pub shape: (u8, u8),
    /// Leaf indices.
    pub leaves: Vec<u32>,
}

/// The protobuf form of an [`AaeKeys`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireAaeKeys {
    /// The partition.
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    /// The tree shape (required).
    #[prost(message, optional, tag = "2")]
    pub shape: Option<WireShape>,
    /// Leaf indices.
    #[prost(uint32, repeated, tag = "3")]
    pub leaves: Vec<u32>,
}

impl WireForm for AaeKeys {
    type Wire = WireAaeKeys;

    fn to_wire(&self) -> WireAaeKeys {
        WireAaeKeys {
            partition: self.partition,
            shape: shape_to_wire(self.shape),
            leaves: self.leaves.clone(),
        }
    }

    fn from_wire(w: WireAaeKeys) -> Result<Self, WireError> {
        Ok(AaeKeys {
            partition: w.partition,
            shape: shape_from_wire(w.shape, "aae_keys")?,
            leaves: w.leaves,
        })
    }
}

impl Endpoint for AaeKeys {
    const ID: u16 = 31;
    const NAME: &'static str = "aae_keys";
    const CLASS: Class = Class::Bulk;
    type Response = KeyDigests;
}

/// `(key, digest)` pairs in (hash, key) order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDigests(pub Vec<(Bytes, u64)>);

/// One pair of a [`WireKeyDigests`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireKeyDigest {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// Its object's digest.
    #[prost(fixed64, tag = "2")]
    pub digest: u64,
}

/// The protobuf form of [`KeyDigests`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireKeyDigests {
    /// The pairs, in order.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<WireKeyDigest>,
}

impl WireForm for KeyDigests {
    type Wire = WireKeyDigests;

    fn to_wire(&self) -> WireKeyDigests {
        WireKeyDigests {
            items: self
                .0
                .iter()
                .map(|(key, digest)| WireKeyDigest {
                    key: key.clone(),
                    digest: *digest,
                })
                .collect(),
        }
    }

    fn from_wire(w: WireKeyDigests) -> Result<Self, WireError> {
        Ok(KeyDigests(
            w.items.into_iter().map(|i| (i.key, i.digest)).collect(),
        ))
    }
}

/// Anti-entropy: the local objects of these keys. Answer: [`Objects`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AaeFetch {
    /// The keys.
    pub keys: Vec<Bytes>,
}

one_field_message! {
    /// The protobuf form of an [`AaeFetch`].
    AaeFetch.keys => WireAaeFetch {
        /// The keys.
        #[prost(bytes = "bytes", repeated)]
        keys: Vec<Bytes>,
    }
}

impl Endpoint for AaeFetch {
    const ID: u16 = 32;
    const NAME: &'static str = "aae_fetch";
    const CLASS: Class = Class::Bulk;
    type Response = Objects;
}

/// Objects in the order asked (`None`: not stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Objects(pub Vec<Option<Object>>);

/// One possibly absent object of a [`WireObjects`] (a repeated `bytes`
/// field cannot hold an absent value).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMaybeObject {
    /// The object, in its storage encoding (absent: not stored).
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub object: Option<Bytes>,
}

/// The protobuf form of [`Objects`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireObjects {
    /// The objects, in the order asked.
    #[prost(message, repeated, tag = "1")]
    pub objects: Vec<WireMaybeObject>,
}

impl WireForm for Objects {
    type Wire = WireObjects;

    fn to_wire(&self) -> WireObjects {
        WireObjects {
            objects: self
                .0
                .iter()
                .map(|o| WireMaybeObject {
                    object: o.as_ref().map(object_to_wire),
                })
                .collect(),
        }
    }

    fn from_wire(w: WireObjects) -> Result<Self, WireError> {
        let objects = w
            .objects
            .into_iter()
            .map(|m| m.object.map(|o| object_from_wire(&o)).transpose())
            .collect::<Result<_, _>>()?;
        Ok(Objects(objects))
    }
}

/// Anti-entropy: merge these objects (`sync`). Answer: [`Repaired`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AaeRepair {
    /// Key and object pairs.
    pub items: Vec<(Bytes, Object)>,
}

/// The protobuf form of an [`AaeRepair`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireAaeRepair {
    /// Key and object pairs.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<WireItem>,
}

impl WireForm for AaeRepair {
    type Wire = WireAaeRepair;

    fn to_wire(&self) -> WireAaeRepair {
        WireAaeRepair {
            items: items_to_wire(&self.items),
        }
    }

    fn from_wire(w: WireAaeRepair) -> Result<Self, WireError> {
        Ok(AaeRepair {
            items: items_from_wire(w.items)?,
        })
    }
}

impl Endpoint for AaeRepair {
    const ID: u16 = 33;
    const NAME: &'static str = "aae_repair";
    const CLASS: Class = Class::Bulk;
    type Response = Repaired;
}

/// How many of the merged objects changed the local state (the answer to
/// [`AaeRepair`] and to [`crate::messages::Handoff`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repaired(pub u64);

one_field_message! {
    /// The protobuf form of [`Repaired`].
    Repaired.0 => WireRepaired {
        /// Objects that changed the local state.
        #[prost(uint64)]
        changed: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{self, round_trip};
    use super::*;
    use crate::wire::Message;
    use proptest::prelude::*;

    #[test]
    fn requests_round_trip() {
        round_trip(AaeHashes {
            partition: 7,
            shape: (10, 5),
            level: 2,
            indices: vec![0, 3, u32::MAX],
        });
        round_trip(AaeHashes {
            partition: u32::MAX,
            shape: (255, 0),
            level: 0,
            indices: vec![],
        });
        round_trip(AaeKeys {
            partition: 1,
            shape: (8, 4),
            leaves: vec![1, 2, 3],
        });
        round_trip(AaeFetch {
            keys: vec![
                Bytes::from_static(b"a"),
                Bytes::new(),
                Bytes::from_static(b"\xff"),
            ],
        });
        round_trip(AaeRepair {
            items: vec![
                (Bytes::from_static(b"a"), testutil::object()),
                (Bytes::from_static(b"b"), testutil::small_object("b")),
            ],
        });
        round_trip(AaeRepair { items: vec![] });
    }

    #[test]
    fn responses_round_trip() {
        round_trip(Hashes(vec![0, 1, u64::MAX]));
        round_trip(Hashes(vec![]));
        round_trip(KeyDigests(vec![
            (Bytes::from_static(b"a"), 9),
            (Bytes::new(), u64::MAX),
        ]));
        round_trip(Objects(vec![
            Some(testutil::object()),
            None,
            Some(Object::new()),
        ]));
        round_trip(Objects(vec![]));
        round_trip(Repaired(0));
        round_trip(Repaired(u64::MAX));
    }

    #[test]
    fn shapes_are_required_and_must_fit_a_byte() {
        let ok = AaeHashes {
            partition: 1,
            shape: (10, 5),
            level: 1,
            indices: vec![],
        };
        let breaks: [fn(&mut WireAaeHashes); 4] = [
            |w| w.shape.as_mut().unwrap().leaf_bits = 256,
            |w| w.shape.as_mut().unwrap().middle_bits = 1000,
            |w| w.level = u32::MAX,
            |w| w.shape = None,
        ];
        for f in breaks {
            let mut w = ok.to_wire();
            f(&mut w);
            assert!(matches!(
                AaeHashes::from_wire(w),
                Err(WireError::Invalid(_))
            ));
        }
        let mut w = AaeKeys {
            partition: 1,
            shape: (10, 5),
            leaves: vec![],
        }
        .to_wire();
        w.shape.as_mut().unwrap().middle_bits = 300;
        assert!(matches!(
            AaeKeys::from_wire(w.clone()),
            Err(WireError::Invalid(_))
        ));
        w.shape = None;
        assert!(matches!(AaeKeys::from_wire(w), Err(WireError::Invalid(_))));
    }

    #[test]
    fn corrupt_objects_are_invalid() {
        let mut w = AaeRepair {
            items: vec![(Bytes::from_static(b"a"), testutil::object())],
        }
        .to_wire();
        w.items[0].object = Bytes::from_static(&[1]);
        assert!(matches!(
            AaeRepair::from_wire(w),
            Err(WireError::Invalid(_))
        ));
        let mut w = Objects(vec![None, Some(testutil::object())]).to_wire();
        w.objects[1].object = Some(Bytes::new());
        assert!(matches!(Objects::from_wire(w), Err(WireError::Invalid(_))));
    }

    proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            let b = Bytes::from(raw);
            let _ = AaeHashes::decode(b.clone());
            let _ = Hashes::decode(b.clone());
            let _ = AaeKeys::decode(b.clone());
            let _ = KeyDigests::decode(b.clone());
            let _ = AaeFetch::decode(b.clone());
            let _ = Objects::decode(b.clone());
            let _ = AaeRepair::decode(b.clone());
            let _ = Repaired::decode(b);
        }

        #[test]
        fn damaged_batches_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let bodies = [
                AaeRepair { items: vec![(Bytes::from_static(b"a"), testutil::object())] }.encode(),
                Objects(vec![Some(testutil::object()), None]).encode(),
            ];
            for body in bodies {
                let mut v = body.to_vec();
                let i = at.index(v.len());
                v[i] = byte;
                let _ = AaeRepair::decode(Bytes::from(v.clone()));
                let _ = Objects::decode(Bytes::from(v));
            }
        }
    }
}
