//! Listing (endpoint IDs 50–59): paged listings of the keys, and of the
//! distinct key components (namespaces such as Riak's buckets), of a
//! partition's local replica, and secondary index queries over a set of
//! partitions of one replica, on the bulk connection.

use bytes::Bytes;

use crate::wire::{Class, Endpoint, WireError, WireForm};

/// Key listing: up to `limit` keys of the local replica of a partition that
/// start with `prefix`, after `after`, in key order, leaving out keys that
/// are only tombstones. Answer: [`Keys`] (fewer than `limit`: the partition
/// is exhausted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListKeys {
    /// The partition.
    pub partition: u32,
    /// Only keys starting with these bytes (a namespace's prefix).
    pub prefix: Bytes,
    /// Resume after this key (exclusive).
    pub after: Option<Bytes>,
    /// Most keys in the answer.
    pub limit: u32,
}

/// The protobuf form of a [`ListKeys`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireListKeys {
    /// The partition.
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    /// The key prefix.
    #[prost(bytes = "bytes", tag = "2")]
    pub prefix: Bytes,
    /// Resume after this key (absent: from the start; present and empty:
    /// after the empty key).
    #[prost(bytes = "bytes", optional, tag = "3")]
    pub after: Option<Bytes>,
    /// Most keys in the answer.
    #[prost(uint32, tag = "4")]
    pub limit: u32,
}

impl WireForm for ListKeys {
    type Wire = WireListKeys;

    fn to_wire(&self) -> WireListKeys {
        WireListKeys {
            partition: self.partition,
            prefix: self.prefix.clone(),
            after: self.after.clone(),
            limit: self.limit,
        }
    }

    fn from_wire(w: WireListKeys) -> Result<Self, WireError> {
        Ok(ListKeys {
            partition: w.partition,
            prefix: w.prefix,
            after: w.after,
            limit: w.limit,
        })
    }
}

impl Endpoint for ListKeys {
    const ID: u16 = 50;
    const NAME: &'static str = "list_keys";
    const CLASS: Class = Class::Bulk;
    type Response = Keys;
}

/// Component listing: up to `limit` distinct first components after
/// `prefix` ([`split_component`]) of keys with a live sibling in the local
/// replica of a partition, after the component `after`, in key order.
/// Answer: [`Keys`], the components. Protocols that group keys by a
/// length-delimited component (Riak's buckets) list their groups with it:
/// the scan seeks past each component it finds, so its cost follows the
/// number of components, not of keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListNamespaces {
    /// The partition.
    pub partition: u32,
    /// The bytes every listed key starts with, before its component.
    pub prefix: Bytes,
    /// Resume after this component (exclusive).
    pub after: Option<Bytes>,
    /// Most components in the answer.
    pub limit: u32,
}

/// The `prefix` of a [`ListNamespaces`] that has none: nodes of releases
/// before the field listed the components after `0xFF` (Riak's buckets),
/// and still do whatever prefix they are sent.
pub const LEGACY_COMPONENT_PREFIX: &[u8] = &[0xFF];

/// The protobuf form of a [`ListNamespaces`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireListNamespaces {
    /// The partition.
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    /// Resume after this component (absent: from the start).
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub after: Option<Bytes>,
    /// Most components in the answer.
    #[prost(uint32, tag = "3")]
    pub limit: u32,
    /// The key prefix (absent: [`LEGACY_COMPONENT_PREFIX`]).
    #[prost(bytes = "bytes", optional, tag = "4")]
    pub prefix: Option<Bytes>,
}

impl WireForm for ListNamespaces {
    type Wire = WireListNamespaces;

    fn to_wire(&self) -> WireListNamespaces {
        WireListNamespaces {
            partition: self.partition,
            after: self.after.clone(),
            limit: self.limit,
            prefix: Some(self.prefix.clone()),
        }
    }

    fn from_wire(w: WireListNamespaces) -> Result<Self, WireError> {
        Ok(ListNamespaces {
            partition: w.partition,
            prefix: w
                .prefix
                .unwrap_or_else(|| Bytes::from_static(LEGACY_COMPONENT_PREFIX)),
            after: w.after,
            limit: w.limit,
        })
    }
}

/// `prefix ‖ len(component) ‖ component`, the length as protobuf's length
/// delimiter (unsigned LEB128): the bytes every key whose first component
/// after `prefix` is `component` starts with. The length keeps the keys of
/// one component contiguous in key order (`ab` never interleaves with
/// `abc`).
pub fn component_prefix(prefix: &[u8], component: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        prefix.len() + prost::length_delimiter_len(component.len()) + component.len(),
    );
    out.extend_from_slice(prefix);
    prost::encode_length_delimiter(component.len(), &mut out).expect("a Vec grows as needed");
    out.extend_from_slice(component);
    out
}

/// Splits a key into its first component after `prefix` and the rest
/// ([`component_prefix`]); `None` when the key does not start with `prefix`
/// or its component is not well formed.
pub fn split_component<'a>(prefix: &[u8], key: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    let mut rest = key.strip_prefix(prefix)?;
    let len = prost::decode_length_delimiter(&mut rest).ok()?;
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

impl Endpoint for ListNamespaces {
    const ID: u16 = 51;
    const NAME: &'static str = "list_namespaces";
    const CLASS: Class = Class::Bulk;
    type Response = Keys;
}

/// Secondary index query: up to `limit` entries `(term, key)` of the local
/// replica in the given partitions, whose key starts with `scope` and whose
/// term of `field` is in `from..=to`, in (term, key) order, strictly after
/// `after`. Answer: [`IndexEntries`] (fewer than `limit`: every partition
/// is exhausted). Keys are whole stored keys (`scope ‖ name`).
///
/// Two fields name no stored index but the keys themselves, as Riak's do:
/// [`BUCKET_FIELD`] (every live key of the scope; terms are empty) and
/// [`KEY_FIELD`] (live keys whose name is in `from..=to`; the term is the
/// name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexQuery {
    /// The partitions to scan (each must be one this replica holds).
    pub partitions: Vec<u32>,
    /// The key prefix every answered key has (a bucket's namespace).
    pub scope: Bytes,
    /// The index field (`*_int`, `*_bin`, [`BUCKET_FIELD`], [`KEY_FIELD`]).
    pub field: String,
    /// Least term (inclusive), as a client writes it.
    pub from: Bytes,
    /// Greatest term (inclusive).
    pub to: Bytes,
    /// Resume strictly after this `(term, key)`.
    pub after: Option<(Bytes, Bytes)>,
    /// Only terms this regular expression matches (unanchored).
    pub term_regex: Option<String>,
    /// Most entries in the answer.
    pub limit: u32,
}

/// The field of an [`IndexQuery`] over every live key of its scope.
pub const BUCKET_FIELD: &str = "$bucket";
/// The field of an [`IndexQuery`] over the names of the keys of its scope.
pub const KEY_FIELD: &str = "$key";

/// A `(term, key)` pair on the wire.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireIndexEntry {
    /// The term.
    #[prost(bytes = "bytes", tag = "1")]
    pub term: Bytes,
    /// The key.
    #[prost(bytes = "bytes", tag = "2")]
    pub key: Bytes,
}

/// The protobuf form of an [`IndexQuery`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireIndexQuery {
    /// The partitions.
    #[prost(uint32, repeated, tag = "1")]
    pub partitions: Vec<u32>,
    /// The key prefix.
    #[prost(bytes = "bytes", tag = "2")]
    pub scope: Bytes,
    /// The field.
    #[prost(string, tag = "3")]
    pub field: String,
    /// Least term.
    #[prost(bytes = "bytes", tag = "4")]
    pub from: Bytes,
    /// Greatest term.
    #[prost(bytes = "bytes", tag = "5")]
    pub to: Bytes,
    /// Resume after this position (absent: from the start).
    #[prost(message, optional, tag = "6")]
    pub after: Option<WireIndexEntry>,
    /// Term filter (absent: none).
    #[prost(string, optional, tag = "7")]
    pub term_regex: Option<String>,
    /// Most entries.
    #[prost(uint32, tag = "8")]
    pub limit: u32,
}

impl WireForm for IndexQuery {
    type Wire = WireIndexQuery;

    fn to_wire(&self) -> WireIndexQuery {
        WireIndexQuery {
            partitions: self.partitions.clone(),
            scope: self.scope.clone(),
            field: self.field.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            after: self
                .after
                .clone()
                .map(|(term, key)| WireIndexEntry { term, key }),
            term_regex: self.term_regex.clone(),
            limit: self.limit,
        }
    }

    fn from_wire(w: WireIndexQuery) -> Result<Self, WireError> {
        Ok(IndexQuery {
            partitions: w.partitions,
            scope: w.scope,
            field: w.field,
            from: w.from,
            to: w.to,
            after: w.after.map(|e| (e.term, e.key)),
            term_regex: w.term_regex,
            limit: w.limit,
        })
    }
}

impl Endpoint for IndexQuery {
    const ID: u16 = 52;
    const NAME: &'static str = "index_query";
    const CLASS: Class = Class::Bulk;
    type Response = IndexEntries;
}

/// The `(term, key)` entries of an [`IndexQuery`], in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntries(pub Vec<(Bytes, Bytes)>);

/// The protobuf form of [`IndexEntries`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireIndexEntries {
    /// The entries, in order.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<WireIndexEntry>,
}

impl WireForm for IndexEntries {
    type Wire = WireIndexEntries;

    fn to_wire(&self) -> WireIndexEntries {
        WireIndexEntries {
            entries: self
                .0
                .iter()
                .map(|(term, key)| WireIndexEntry {
                    term: term.clone(),
                    key: key.clone(),
                })
                .collect(),
        }
    }

    fn from_wire(w: WireIndexEntries) -> Result<Self, WireError> {
        Ok(IndexEntries(
            w.entries.into_iter().map(|e| (e.term, e.key)).collect(),
        ))
    }
}

/// Keys or namespaces of a listing step, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys(pub Vec<Bytes>);

one_field_message! {
    /// The protobuf form of [`Keys`].
    Keys.0 => WireKeys {
        /// The keys or namespaces, in order.
        #[prost(bytes = "bytes", repeated)]
        keys: Vec<Bytes>,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::round_trip;
    use super::*;
    use crate::wire::Message;

    #[test]
    fn round_trips() {
        round_trip(ListKeys {
            partition: 9,
            prefix: Bytes::from_static(b"ns\0"),
            after: Some(Bytes::from_static(b"ns\0k1")),
            limit: 1000,
        });
        // An empty `after` is not the same as no `after`.
        round_trip(ListKeys {
            partition: 0,
            prefix: Bytes::new(),
            after: Some(Bytes::new()),
            limit: 0,
        });
        round_trip(ListKeys {
            partition: u32::MAX,
            prefix: Bytes::new(),
            after: None,
            limit: u32::MAX,
        });
        round_trip(ListNamespaces {
            partition: 2,
            prefix: Bytes::from_static(&[0xff]),
            after: Some(Bytes::from_static(b"ns")),
            limit: 10,
        });
        round_trip(ListNamespaces {
            partition: 2,
            prefix: Bytes::new(),
            after: None,
            limit: 10,
        });
        round_trip(IndexQuery {
            partitions: vec![0, 7, u32::MAX],
            scope: Bytes::from_static(b"\xff\x01b"),
            field: "f_int".into(),
            from: Bytes::from_static(b"-10"),
            to: Bytes::from_static(b"0"),
            after: Some((Bytes::from_static(b"-3"), Bytes::from_static(b"\xff\x01bk"))),
            term_regex: Some(".*l2".into()),
            limit: 2,
        });
        round_trip(IndexQuery {
            partitions: vec![],
            scope: Bytes::new(),
            field: String::new(),
            from: Bytes::new(),
            to: Bytes::new(),
            after: None,
            term_regex: None,
            limit: 0,
        });
        round_trip(IndexEntries(vec![(
            Bytes::from_static(b"t"),
            Bytes::from_static(b"k"),
        )]));
        round_trip(IndexEntries(vec![]));
        round_trip(Keys(vec![Bytes::from_static(b"a"), Bytes::new()]));
        round_trip(Keys(vec![]));
    }

    #[test]
    fn a_listing_without_a_prefix_lists_the_legacy_one() {
        let old = WireListNamespaces {
            partition: 3,
            after: None,
            limit: 5,
            prefix: None,
        };
        let body = Bytes::from(prost::Message::encode_to_vec(&old));
        assert_eq!(
            ListNamespaces::decode(body).unwrap().prefix,
            Bytes::from_static(&[0xff])
        );
    }

    #[test]
    fn components_are_length_delimited() {
        let p = component_prefix(b"P", b"ab");
        assert_eq!(p, b"P\x02ab");
        let mut key = p.clone();
        key.extend_from_slice(b"rest");
        assert_eq!(
            split_component(b"P", &key),
            Some((&b"ab"[..], &b"rest"[..]))
        );
        assert_eq!(split_component(b"Q", &key), None);
        assert_eq!(split_component(b"P", b"P\x05ab"), None);
        assert_eq!(split_component(b"P", b"P\x80"), None);
        // 300 is two bytes, 0xAC 0x02.
        assert_eq!(&component_prefix(b"", &[7; 300])[..2], &[0xac, 0x02]);
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let b = Bytes::from(raw);
            let _ = ListKeys::decode(b.clone());
            let _ = ListNamespaces::decode(b.clone());
            let _ = IndexQuery::decode(b.clone());
            let _ = IndexEntries::decode(b.clone());
            let _ = Keys::decode(b);
        }
    }
}
