//! What dynkv stores per key: a DVVSet of [`Content`] siblings, with a
//! versioned binary encoding (used on disk and on the wire) and a canonical
//! digest (used by anti-entropy to compare replicas without shipping them).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::dvvset::DvvSet;

/// The state of one key: every live sibling and their causal history.
pub type Object = DvvSet<Content>;

/// Leading byte of every encoded [`Object`]; bump it when the layout changes
/// and keep a decoder for each older version.
pub const OBJECT_FORMAT_V1: u8 = 1;

/// One sibling: a value or a tombstone, with the metadata a client gets back.
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
    /// Extra metadata kept with the value (sorted `name`→`value` pairs), so
    /// that protocols such as Riak's can round-trip user metadata, links and
    /// index entries without a format change.
    pub meta: Vec<(String, String)>,
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
            meta: Vec::new(),
        }
    }

    /// A tombstone: DELETE is a write of this, so it is versioned like any value.
    pub fn tombstone(modified_micros: u64) -> Self {
        Content {
            value: Bytes::new(),
            content_type: String::new(),
            deleted: true,
            modified_micros,
            meta: Vec::new(),
        }
    }

    fn hash_into(&self, h: &mut Xxh3) {
        h.update(&(self.value.len() as u64).to_le_bytes());
        h.update(&self.value);
        h.update(&(self.content_type.len() as u64).to_le_bytes());
        h.update(self.content_type.as_bytes());
        h.update(&[self.deleted as u8]);
        h.update(&self.modified_micros.to_le_bytes());
        h.update(&(self.meta.len() as u64).to_le_bytes());
        for (k, v) in &self.meta {
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

/// Encodes an object with its format version byte.
pub fn encode_object(object: &Object) -> Vec<u8> {
    let mut out = vec![OBJECT_FORMAT_V1];
    postcard::to_io(object, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Decodes [`encode_object`]'s output; any other input is an error, never a panic.
pub fn decode_object(bytes: &[u8]) -> Result<Object, ObjectDecodeError> {
    let (&version, body) = bytes.split_first().ok_or(ObjectDecodeError::Empty)?;
    if version != OBJECT_FORMAT_V1 {
        return Err(ObjectDecodeError::UnknownVersion(version));
    }
    let (object, rest): (Object, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| ObjectDecodeError::Corrupt(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ObjectDecodeError::Corrupt(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    if !object.is_well_formed() {
        return Err(ObjectDecodeError::Corrupt("entries out of order".into()));
    }
    Ok(object)
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
        let content = |c: &Content| {
            c.value.len()
                + c.content_type.len()
                + 16
                + c.meta.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        };
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
