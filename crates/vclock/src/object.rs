//! What dynkv stores per key: a DVVSet of [`Content`] siblings, with a
//! versioned binary encoding (used on disk and on the wire) and a canonical
//! digest (used by anti-entropy to compare replicas without shipping them).
//!
//! ## Formats
//! An encoded object is a format byte and the postcard encoding of the
//! DVVSet. [`OBJECT_FORMAT_V2`] (what [`encode_object`] writes) stores each
//! sibling's metadata typed ([`Meta`]); [`OBJECT_FORMAT_V1`] stored it as
//! name→value string pairs. [`decode_object`] reads both, and a V1 object
//! decodes to exactly the typed object its V2 encoding holds
//! ([`Meta::from_pairs`] is lossless). Internode messages carry objects in
//! V1 ([`encode_object_v1`]) so that nodes of older releases read them
//! during a rolling upgrade.
//!
//! ## Digest
//! [`DvvSet::digest`] hashes each sibling's metadata in its pair form
//! ([`Meta::to_pairs`]), exactly as before typed metadata: a sibling has
//! the same digest on every node, whatever release or format it came from,
//! so converged replicas compare equal in a mixed cluster.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::dvvset::DvvSet;
use crate::meta::Meta;

/// The state of one key: every live sibling and their causal history.
pub type Object = DvvSet<Content>;

/// Leading byte of an [`Object`] encoded with metadata as string pairs
/// (still read, and written for peers: [`encode_object_v1`]).
pub const OBJECT_FORMAT_V1: u8 = 1;

/// Leading byte of an [`Object`] encoded with typed metadata: what
/// [`encode_object`] writes. Bump it when the layout changes and keep a
/// decoder for each older version.
pub const OBJECT_FORMAT_V2: u8 = 2;

/// One sibling: a value or a tombstone, with the metadata a client gets back.
///
/// Its serde form is its object format 2 layout: never reorder the fields.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Content {
    /// The opaque value bytes (empty for a tombstone).
    pub value: Bytes,
    /// The Content-Type the writer sent, returned on reads.
    pub content_type: String,
    /// True for a DELETE's tombstone: a sibling that says "no value".
    pub deleted: bool,
    /// Wall-clock time of the coordinator's write in microseconds since the
    /// Unix epoch: for Last-Modified, last-write-wins resolution and
    /// tombstone grace periods; never for causality.
    pub modified_micros: u64,
    /// Idempotency records and protocol metadata (user metadata, links,
    /// index entries) kept with the value; canonical (see [`Meta`]).
    pub meta: Meta,
}

/// A [`Content`] as object format 1 lays it out, for decoding.
#[derive(Deserialize)]
struct ContentV1 {
    value: Bytes,
    content_type: String,
    deleted: bool,
    modified_micros: u64,
    meta: Vec<(String, String)>,
}

impl From<ContentV1> for Content {
    fn from(c: ContentV1) -> Content {
        Content {
            value: c.value,
            content_type: c.content_type,
            deleted: c.deleted,
            modified_micros: c.modified_micros,
            meta: Meta::from_pairs(c.meta),
        }
    }
}

/// A [`Content`] as object format 1 lays it out, for encoding.
#[derive(Serialize)]
struct ContentV1Ref<'a> {
    value: &'a Bytes,
    content_type: &'a str,
    deleted: bool,
    modified_micros: u64,
    meta: Vec<(String, String)>,
}

impl<'a> From<&'a Content> for ContentV1Ref<'a> {
    fn from(c: &'a Content) -> Self {
        ContentV1Ref {
            value: &c.value,
            content_type: &c.content_type,
            deleted: c.deleted,
            modified_micros: c.modified_micros,
            meta: c.meta.to_pairs(),
        }
    }
}

impl Content {
    /// A live value.
    pub fn value(
        value: impl Into<Bytes>,
        content_type: impl Into<String>,
        modified_micros: u64,
    ) -> Self {
        Content {
            value: value.into(),
            content_type: content_type.into(),
            deleted: false,
            modified_micros,
            meta: Meta::default(),
        }
    }

    /// A tombstone: DELETE is a write of this, so it is versioned like any value.
    pub fn tombstone(modified_micros: u64) -> Self {
        Content {
            value: Bytes::new(),
            content_type: String::new(),
            deleted: true,
            modified_micros,
            meta: Meta::default(),
        }
    }

    /// This content with `meta` (normalized).
    pub fn with_meta(mut self, meta: Meta) -> Self {
        self.meta = meta.normalized();
        self
    }

    fn hash_into(&self, h: &mut Xxh3) {
        h.update(&(self.value.len() as u64).to_le_bytes());
        h.update(&self.value);
        h.update(&(self.content_type.len() as u64).to_le_bytes());
        h.update(self.content_type.as_bytes());
        h.update(&[self.deleted as u8]);
        h.update(&self.modified_micros.to_le_bytes());
        h.update(&(self.meta.pair_count() as u64).to_le_bytes());
        if self.meta.is_empty() {
            return;
        }
        for (k, v) in &self.meta.to_pairs() {
            h.update(&(k.len() as u64).to_le_bytes());
            h.update(k.as_bytes());
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v.as_bytes());
        }
    }
}

/// Why stored or received object bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectDecodeError {
    /// No bytes at all.
    #[error("empty object encoding")]
    Empty,
    /// Written by a newer dynkv (or garbage).
    #[error("unknown object format version {0}")]
    UnknownVersion(u8),
    /// The bytes do not describe an object.
    #[error("corrupt object encoding: {0}")]
    Corrupt(String),
}

/// Encodes an object in [`OBJECT_FORMAT_V2`], with its format byte.
pub fn encode_object(object: &Object) -> Vec<u8> {
    let mut out = vec![OBJECT_FORMAT_V2];
    postcard::to_io(object, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Appends to `out` the encoding of the one-sibling object holding
/// `version` (the bytes `encode_object(&Object::from_value(version.clone()))`
/// gives) without copying the version first: the change log stores one
/// version per entry on every write, and the copy was a measurable part of
/// its cost.
pub fn encode_version_into(version: &Content, out: &mut Vec<u8>) {
    out.reserve(1 + version.value.len() + version.content_type.len() + 24);
    out.push(OBJECT_FORMAT_V2);
    postcard::to_io(&DvvSet::from_value(version), out).expect("writing to a Vec cannot fail");
}

/// Encodes an object in [`OBJECT_FORMAT_V1`] (metadata as string pairs),
/// which every release reads: the form objects travel in between nodes.
pub fn encode_object_v1(object: &Object) -> Vec<u8> {
    let v1: DvvSet<ContentV1Ref<'_>> = object.convert(ContentV1Ref::from);
    let mut out = vec![OBJECT_FORMAT_V1];
    postcard::to_io(&v1, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Decodes [`encode_object`]'s or [`encode_object_v1`]'s output; any other
/// input is an error, never a panic.
pub fn decode_object(bytes: &[u8]) -> Result<Object, ObjectDecodeError> {
    let (&version, body) = bytes.split_first().ok_or(ObjectDecodeError::Empty)?;
    let object = match version {
        OBJECT_FORMAT_V2 => take_all::<Object>(body)?,
        OBJECT_FORMAT_V1 => take_all::<DvvSet<ContentV1>>(body)?.convert_into(Content::from),
        _ => return Err(ObjectDecodeError::UnknownVersion(version)),
    };
    if !object.is_well_formed() {
        return Err(ObjectDecodeError::Corrupt("entries out of order".into()));
    }
    Ok(object)
}

/// The one value postcard encodes in `body`, with nothing after it.
fn take_all<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ObjectDecodeError> {
    let (value, rest): (T, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| ObjectDecodeError::Corrupt(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ObjectDecodeError::Corrupt(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}

impl DvvSet<Content> {
    /// A 64-bit digest of the causal state and values, equal on two replicas
    /// exactly when they hold the same object (anonymous values are hashed
    /// order-independently). Anti-entropy compares these instead of objects.
    pub fn digest(&self) -> u64 {
        let mut h = Xxh3::new();
        for e in self.entries() {
            h.update(&(e.actor.len() as u64).to_le_bytes());
            h.update(e.actor.as_bytes());
            h.update(&e.counter.to_le_bytes());
            h.update(&(e.values.len() as u64).to_le_bytes());
            for v in &e.values {
                v.hash_into(&mut h);
            }
        }
        let mut anon: Vec<u64> = self
            .anonymous()
            .iter()
            .map(|v| {
                let mut hv = Xxh3::new();
                v.hash_into(&mut hv);
                hv.digest()
            })
            .collect();
        anon.sort_unstable();
        for a in anon {
            h.update(&a.to_le_bytes());
        }
        h.digest()
    }

    /// True when every sibling is a tombstone (or there is none): the key
    /// reads as not found, but its context must still be returned.
    pub fn is_deleted(&self) -> bool {
        self.values().iter().all(|c| c.deleted)
    }

    /// About how many bytes the object holds: every sibling's value,
    /// content type and metadata, and the clock. What the object-size cap
    /// is checked against (cheaper than encoding it).
    pub fn byte_size(&self) -> usize {
        let content = |c: &Content| c.value.len() + c.content_type.len() + 16 + c.meta.pair_bytes();
        self.entries()
            .iter()
            .map(|e| e.actor.len() + 10 + e.values.iter().map(content).sum::<usize>())
            .sum::<usize>()
            + self.anonymous().iter().map(content).sum::<usize>()
    }

    /// The live (non-tombstone) siblings.
    pub fn live_values(&self) -> Vec<&Content> {
        self.values().into_iter().filter(|c| !c.deleted).collect()
    }
}

impl<V: Clone + PartialEq> DvvSet<V> {
    /// Entries sorted by actor with no duplicates and values no more than the
    /// counter: what every operation preserves; checked on decode so that a
    /// corrupt input cannot break the merge invariants.
    pub fn is_well_formed(&self) -> bool {
        self.entries().windows(2).all(|w| w[0].actor < w[1].actor)
            && self
                .entries()
                .iter()
                .all(|e| e.counter >= 1 && e.values.len() as u64 <= e.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VersionVector;
    use crate::meta::{IdempotencyRecord, Link};

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Written by the release before typed metadata (object format 1):
    /// a value of `n1` with every kind of metadata, and a concurrent
    /// tombstone of `n2`.
    const V1_OBJECT: &str = "0102026e3101010276310a746578742f706c61696e00c0843d091064796e6b762e6964656d2e7265712d3110313730303030303030303030303030301064796e6b762e6964656d2e7265712d321031373030303030303030303030303031147269616b2e696e6465782e6669656c645f62696e0178147269616b2e696e6465782e6669656c645f696e740131147269616b2e696e6465782e6669656c645f696e7401330f7269616b2e6c696e6b2e3030303030106f746865722f6b253246312f6e6578740f7269616b2e6c696e6b2e30303030310b6f6c642f6b322f707265760f7269616b2e6d6574612e636f6c6f72037265640a7a7a2e756e6b6e6f776e046b657074026e32010100000180897a0000";
    /// Its digest, and its value's alone (the Riak vtag), by that release.
    const V1_DIGEST: u64 = 7081870525223272948;
    const V1_SIBLING_DIGEST: u64 = 803521763626575570;
    /// A value with odd pairs that have no typed place, by that release.
    const V1_ODD: &str = "010001017701740007030c64796e6b762e6964656d2e78022b350f7269616b2e6c696e6b2e303030303105612f622f630b7269616b2e6c696e6b2e3703612f62";
    const V1_ODD_DIGEST: u64 = 17853036348152681746;
    /// A value without metadata, by that release.
    const V1_PLAIN: &str = "0100010170186170706c69636174696f6e2f6f637465742d73747265616d000500";
    const V1_PLAIN_DIGEST: u64 = 14455544930660866554;

    fn typed_value() -> Content {
        Content::value("v1", "text/plain", 1_000_000).with_meta(Meta {
            idempotency: vec![
                IdempotencyRecord {
                    key: "req-1".into(),
                    at_micros: 1_700_000_000_000_000,
                },
                IdempotencyRecord {
                    key: "req-2".into(),
                    at_micros: 1_700_000_000_000_001,
                },
            ],
            user: pairs(&[("color", "red")]),
            links: vec![
                Link {
                    bucket: "other".into(),
                    key: "k%2F1".into(),
                    tag: "next".into(),
                },
                Link {
                    bucket: "old".into(),
                    key: "k2".into(),
                    tag: "prev".into(),
                },
            ],
            indexes: pairs(&[("field_bin", "x"), ("field_int", "1"), ("field_int", "3")]),
            extra: pairs(&[("zz.unknown", "kept")]),
        })
    }

    #[test]
    fn a_version_encoded_in_place_is_its_one_sibling_object() {
        for version in [
            typed_value(),
            Content::tombstone(2_000_000),
            Content::value("", "", 0),
        ] {
            let mut out = b"head".to_vec();
            encode_version_into(&version, &mut out);
            assert_eq!(&out[..4], b"head");
            assert_eq!(
                out[4..],
                encode_object(&Object::from_value(version.clone()))[..]
            );
        }
    }

    fn typed_object() -> Object {
        let o = DvvSet::update(&VersionVector::new(), &Object::new(), "n1", typed_value());
        DvvSet::update(
            &VersionVector::new(),
            &o,
            "n2",
            Content::tombstone(2_000_000),
        )
    }

    #[test]
    fn v1_objects_decode_into_the_typed_form_with_their_old_digest() {
        let o = decode_object(&unhex(V1_OBJECT)).unwrap();
        assert_eq!(o, typed_object());
        assert_eq!(o.values()[0].meta, typed_value().meta);
        assert_eq!(o.digest(), V1_DIGEST);
        assert_eq!(typed_object().digest(), V1_DIGEST);
        assert_eq!(
            Object::from_value(typed_value()).digest(),
            V1_SIBLING_DIGEST
        );
        // Re-encoded in format 1 it is the very same bytes; in format 2 it
        // decodes to the same object with the same digest.
        assert_eq!(encode_object_v1(&o), unhex(V1_OBJECT));
        let v2 = encode_object(&o);
        assert_eq!(v2[0], OBJECT_FORMAT_V2);
        assert!(v2.len() < unhex(V1_OBJECT).len());
        let back = decode_object(&v2).unwrap();
        assert_eq!(back, o);
        assert_eq!(back.digest(), V1_DIGEST);

        let odd = decode_object(&unhex(V1_ODD)).unwrap();
        let m = &odd.values()[0].meta;
        assert!(m.idempotency.is_empty() && m.links.is_empty());
        assert_eq!(m.extra.len(), 3);
        assert_eq!(odd.digest(), V1_ODD_DIGEST);
        assert_eq!(decode_object(&encode_object(&odd)).unwrap(), odd);
        assert_eq!(encode_object_v1(&odd), unhex(V1_ODD));

        let plain = decode_object(&unhex(V1_PLAIN)).unwrap();
        assert!(plain.values()[0].meta.is_empty());
        assert_eq!(plain.digest(), V1_PLAIN_DIGEST);
        assert_eq!(encode_object_v1(&plain), unhex(V1_PLAIN));
    }

    #[test]
    fn format_2_layout_is_fixed() {
        let o = Object::from_value(Content::value("v", "t", 3).with_meta(Meta {
            idempotency: vec![IdempotencyRecord {
                key: "k".into(),
                at_micros: 300,
            }],
            user: pairs(&[("a", "b")]),
            links: vec![Link {
                bucket: "b".into(),
                key: "k".into(),
                tag: "t".into(),
            }],
            indexes: pairs(&[("f_bin", "x")]),
            extra: pairs(&[("z", "y")]),
        }));
        let bytes = encode_object(&o);
        assert_eq!(
            bytes,
            [
                2, // format
                0, // no entries
                1, // one anonymous value
                1, b'v', 1, b't', 0, 3, // value, content type, deleted, time
                5, // five items
                0, 1, b'k', 0xac, 0x02, // idempotency "k" at 300
                1, 1, b'a', 1, b'b', // user a = b
                2, 1, b'b', 1, b'k', 1, b't', // link b/k/t
                3, 5, b'f', b'_', b'b', b'i', b'n', 1, b'x', // index f_bin = x
                4, 1, b'z', 1, b'y', // extra z = y
            ]
        );
        assert_eq!(decode_object(&bytes).unwrap(), o);
    }

    #[test]
    fn format_2_decoding_normalizes() {
        // Written out of pair order, with a user pair among the extras.
        let mut c = Content::value("v", "t", 3);
        c.meta.user = pairs(&[("b", "1"), ("a", "1")]);
        c.meta.extra = pairs(&[("riak.meta.c", "1")]);
        let o = Object::from_value(c.clone());
        let back = decode_object(&encode_object(&o)).unwrap();
        assert_eq!(
            back.values()[0].meta.user,
            pairs(&[("a", "1"), ("b", "1"), ("c", "1")])
        );
        assert!(back.values()[0].meta.extra.is_empty());
        assert_eq!(back.digest(), o.digest());
        assert_eq!(back.byte_size(), o.byte_size());
    }

    #[test]
    fn unknown_formats_are_refused() {
        assert_eq!(
            decode_object(&[3, 0, 0]),
            Err(ObjectDecodeError::UnknownVersion(3))
        );
        let mut v1 = unhex(V1_PLAIN);
        v1.push(0);
        assert!(decode_object(&v1).is_err());
    }

    /// How the release before typed metadata encoded a sibling.
    #[derive(Clone, PartialEq, Serialize)]
    struct OldContent {
        value: Bytes,
        content_type: String,
        deleted: bool,
        modified_micros: u64,
        meta: Vec<(String, String)>,
    }

    fn old_encoding(o: &DvvSet<OldContent>) -> Vec<u8> {
        let mut out = vec![OBJECT_FORMAT_V1];
        postcard::to_io(o, &mut out).unwrap();
        out
    }

    /// The digest the release before typed metadata computed.
    fn old_digest(o: &DvvSet<OldContent>) -> u64 {
        let hash = |c: &OldContent, h: &mut Xxh3| {
            h.update(&(c.value.len() as u64).to_le_bytes());
            h.update(&c.value);
            h.update(&(c.content_type.len() as u64).to_le_bytes());
            h.update(c.content_type.as_bytes());
            h.update(&[c.deleted as u8]);
            h.update(&c.modified_micros.to_le_bytes());
            h.update(&(c.meta.len() as u64).to_le_bytes());
            for (k, v) in &c.meta {
                h.update(&(k.len() as u64).to_le_bytes());
                h.update(k.as_bytes());
                h.update(&(v.len() as u64).to_le_bytes());
                h.update(v.as_bytes());
            }
        };
        let mut h = Xxh3::new();
        for e in o.entries() {
            h.update(&(e.actor.len() as u64).to_le_bytes());
            h.update(e.actor.as_bytes());
            h.update(&e.counter.to_le_bytes());
            h.update(&(e.values.len() as u64).to_le_bytes());
            for v in &e.values {
                hash(v, &mut h);
            }
        }
        let mut anon: Vec<u64> = o
            .anonymous()
            .iter()
            .map(|v| {
                let mut hv = Xxh3::new();
                hash(v, &mut hv);
                hv.digest()
            })
            .collect();
        anon.sort_unstable();
        for a in anon {
            h.update(&a.to_le_bytes());
        }
        h.digest()
    }

    fn arb_pair() -> impl proptest::strategy::Strategy<Value = (String, String)> {
        use proptest::prelude::*;
        let name = prop_oneof![
            "[a-c]{0,3}".prop_map(|s| format!("dynkv.idem.{s}")),
            "[a-c]{0,3}".prop_map(|s| format!("riak.meta.{s}")),
            "[a-c_]{0,5}".prop_map(|s| format!("riak.index.{s}")),
            (0u32..4).prop_map(|i| format!("riak.link.{i:05}")),
            "[0-9]{0,6}".prop_map(|s| format!("riak.link.{s}")),
            "[a-z.]{0,12}",
        ];
        let value = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            "[+0-9]{0,4}",
            "[a-c/%]{0,8}",
        ];
        (name, value)
    }

    proptest::proptest! {
        #[test]
        fn any_v1_object_keeps_its_digest_in_both_formats(
            metas in proptest::collection::vec(
                proptest::collection::vec(arb_pair(), 0..8), 1..4)
        ) {
            let mut old: DvvSet<OldContent> = DvvSet::new();
            for (i, mut meta) in metas.into_iter().enumerate() {
                // Every release wrote its pairs sorted.
                meta.sort();
                let c = OldContent {
                    value: Bytes::from(vec![i as u8]),
                    content_type: "t".into(),
                    deleted: false,
                    modified_micros: i as u64,
                    meta,
                };
                let actor = format!("n{}", i % 2);
                old = DvvSet::update(&VersionVector::new(), &old, &actor, c);
            }
            let from_v1 = decode_object(&old_encoding(&old)).unwrap();
            proptest::prop_assert_eq!(from_v1.digest(), old_digest(&old));
            proptest::prop_assert_eq!(encode_object_v1(&from_v1), old_encoding(&old));
            let from_v2 = decode_object(&encode_object(&from_v1)).unwrap();
            proptest::prop_assert_eq!(&from_v2, &from_v1);
            proptest::prop_assert_eq!(from_v2.digest(), old_digest(&old));
            for (a, b) in from_v2.values().into_iter().zip(from_v1.values()) {
                proptest::prop_assert_eq!(&a.meta, &b.meta);
                let pairs = a.meta.to_pairs();
                let bytes: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
                proptest::prop_assert_eq!(a.meta.pair_bytes(), bytes);
                proptest::prop_assert_eq!(a.meta.clone().normalized(), a.meta.clone());
            }
        }
    }
}
