//! Listing (endpoint IDs 50–59): paged listings of the keys and namespaces
//! of a partition's local replica, on the bulk connection.

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

/// Namespace listing: up to `limit` distinct namespaces (see
/// `dynkv_storage::namespace`) with a live key in the local replica of a
/// partition, after `after`. Answer: [`Keys`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListNamespaces {
    /// The partition.
    pub partition: u32,
    /// Resume after this namespace (exclusive).
    pub after: Option<Bytes>,
    /// Most namespaces in the answer.
    pub limit: u32,
}

/// The protobuf form of a [`ListNamespaces`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireListNamespaces {
    /// The partition.
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    /// Resume after this namespace (absent: from the start).
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub after: Option<Bytes>,
    /// Most namespaces in the answer.
    #[prost(uint32, tag = "3")]
    pub limit: u32,
}

impl WireForm for ListNamespaces {
    type Wire = WireListNamespaces;

    fn to_wire(&self) -> WireListNamespaces {
        WireListNamespaces {
            partition: self.partition,
            after: self.after.clone(),
            limit: self.limit,
        }
    }

    fn from_wire(w: WireListNamespaces) -> Result<Self, WireError> {
        Ok(ListNamespaces {
            partition: w.partition,
            after: w.after,
            limit: w.limit,
        })
    }
}

impl Endpoint for ListNamespaces {
    const ID: u16 = 51;
    const NAME: &'static str = "list_namespaces";
    const CLASS: Class = Class::Bulk;
    type Response = Keys;
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
            after: Some(Bytes::from_static(b"ns")),
            limit: 10,
        });
        round_trip(ListNamespaces {
            partition: 2,
            after: None,
            limit: 10,
        });
        round_trip(Keys(vec![Bytes::from_static(b"a"), Bytes::new()]));
        round_trip(Keys(vec![]));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let b = Bytes::from(raw);
            let _ = ListKeys::decode(b.clone());
            let _ = ListNamespaces::decode(b.clone());
            let _ = Keys::decode(b);
        }
    }
}
