//! A stored data type: one of the top-level types a bucket can hold, with
//! its versioned storage codec.
//!
//! The state is the value of an ordinary object (content type
//! [`CONTENT_TYPE`]), so replication, hinted handoff, read repair and
//! anti-entropy carry it like any other value. The encoding is one version
//! byte ([`FORMAT_VERSION`]) followed by the postcard encoding of
//! [`DataType`]; an unknown version is refused rather than misread.

use serde::{Deserialize, Serialize};

use crate::{Convergent, Counter, GSet, Hll, Map, OrSet, VersionVector};

/// The content type of a stored data type's object.
pub const CONTENT_TYPE: &str = "application/vnd.dynkv.crdt";

/// The version byte of the storage encoding.
pub const FORMAT_VERSION: u8 = 1;

/// Which top-level data type a bucket holds (Riak's `datatype` property).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// `counter`
    Counter,
    /// `set`
    Set,
    /// `gset`
    GSet,
    /// `map`
    Map,
    /// `hll`
    Hll,
}

impl Kind {
    /// Riak's name of the type (`datatype` property, `"type"` in JSON).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Set => "set",
            Kind::GSet => "gset",
            Kind::Map => "map",
            Kind::Hll => "hll",
        }
    }

    /// The kind Riak names `name`, if it is a top-level type.
    pub fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "counter" => Kind::Counter,
            "set" => Kind::Set,
            "gset" => Kind::GSet,
            "map" => Kind::Map,
            "hll" => Kind::Hll,
            _ => return None,
        })
    }
}

/// The state of one stored data type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataType {
    /// A PN-counter.
    Counter(Counter),
    /// An observed-remove set.
    Set(OrSet),
    /// A grow-only set.
    GSet(GSet),
    /// A map of typed fields.
    Map(Map),
    /// A HyperLogLog sketch.
    Hll(Hll),
}

/// Why stored bytes are not a data type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No bytes at all.
    #[error("empty data type value")]
    Empty,
    /// A format this build does not know.
    #[error("unknown data type format version {0}")]
    Version(u8),
    /// The bytes do not decode.
    #[error("malformed data type value: {0}")]
    Malformed(String),
}

impl DataType {
    /// The empty state of `kind` (`hll_precision` for a sketch).
    pub fn new(kind: Kind, hll_precision: u8) -> Result<DataType, crate::InvalidPrecision> {
        Ok(match kind {
            Kind::Counter => DataType::Counter(Counter::new()),
            Kind::Set => DataType::Set(OrSet::new()),
            Kind::GSet => DataType::GSet(GSet::new()),
            Kind::Map => DataType::Map(Map::new()),
            Kind::Hll => DataType::Hll(Hll::new(hll_precision)?),
        })
    }

    /// Which type this is.
    pub fn kind(&self) -> Kind {
        match self {
            DataType::Counter(_) => Kind::Counter,
            DataType::Set(_) => Kind::Set,
            DataType::GSet(_) => Kind::GSet,
            DataType::Map(_) => Kind::Map,
            DataType::Hll(_) => Kind::Hll,
        }
    }

    /// The causal context a client needs for removes (empty for the types
    /// without removes).
    pub fn context(&self) -> VersionVector {
        match self {
            DataType::Set(s) => s.context(),
            DataType::Map(m) => m.context(),
            _ => VersionVector::new(),
        }
    }

    /// The storage encoding: version byte, then postcard.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT_VERSION];
        out.extend(postcard::to_stdvec(self).expect("data types always serialise"));
        out
    }

    /// Decodes [`DataType::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<DataType, DecodeError> {
        match bytes.split_first() {
            None => Err(DecodeError::Empty),
            Some((&FORMAT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))
            }
            Some((&v, _)) => Err(DecodeError::Version(v)),
        }
    }
}

impl Convergent for DataType {
    /// Merges states of the same type; a state of another type is ignored
    /// (a bucket holds one type, so it can only come from a foreign write).
    fn merge(&mut self, other: &Self) {
        match (self, other) {
            (DataType::Counter(a), DataType::Counter(b)) => a.merge(b),
            (DataType::Set(a), DataType::Set(b)) => a.merge(b),
            (DataType::GSet(a), DataType::GSet(b)) => a.merge(b),
            (DataType::Map(a), DataType::Map(b)) => a.merge(b),
            (DataType::Hll(a), DataType::Hll(b)) => a.merge(b),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_through_the_codec() {
        for kind in [Kind::Counter, Kind::Set, Kind::GSet, Kind::Map, Kind::Hll] {
            let mut d = DataType::new(kind, 10).unwrap();
            match &mut d {
                DataType::Counter(c) => c.increment("a", 3),
                DataType::Set(s) => s.add("a", "x"),
                DataType::GSet(s) => s.add("x"),
                DataType::Map(m) => m.update("a", "f", crate::FieldType::Flag, |v| {
                    if let crate::Value::Flag(f) = v {
                        f.enable("a")
                    }
                }),
                DataType::Hll(h) => h.add(b"x"),
            }
            let bytes = d.encode();
            assert_eq!(bytes[0], FORMAT_VERSION);
            assert_eq!(DataType::decode(&bytes).unwrap(), d);
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn bad_bytes_are_refused_not_misread() {
        assert_eq!(DataType::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(DataType::decode(&[9, 0]), Err(DecodeError::Version(9)));
        assert!(matches!(
            DataType::decode(&[FORMAT_VERSION, 200, 1]),
            Err(DecodeError::Malformed(_))
        ));
    }
}
