//! Hinted handoff (endpoint IDs 20–29): a fallback keeps writes for an
//! unreachable primary.

use bytes::Bytes;
use dynkv_ring::NodeId;
use dynkv_vclock::Object;

use super::kv::Stored;
use super::{object_from_wire, object_to_wire, required_node};
use crate::wire::{Class, Endpoint, WireError, WireForm};

/// Keep this object durably for `owner`, who is unreachable, and hand it
/// off later. Answer: [`Stored`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreHint {
    /// The primary the object belongs to.
    pub owner: NodeId,
    /// The key.
    pub key: Bytes,
    /// The state to hand off.
    pub object: Object,
}

/// The protobuf form of a [`StoreHint`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireStoreHint {
    /// The primary's node id (required).
    #[prost(string, tag = "1")]
    pub owner: String,
    /// The key.
    #[prost(bytes = "bytes", tag = "2")]
    pub key: Bytes,
    /// The object, in its storage encoding.
    #[prost(bytes = "bytes", tag = "3")]
    pub object: Bytes,
}

impl WireForm for StoreHint {
    type Wire = WireStoreHint;

    fn to_wire(&self) -> WireStoreHint {
        WireStoreHint {
            owner: self.owner.to_string(),
            key: self.key.clone(),
            object: object_to_wire(&self.object),
        }
    }

    fn from_wire(w: WireStoreHint) -> Result<Self, WireError> {
        Ok(StoreHint {
            owner: required_node(w.owner, "store_hint.owner")?,
            key: w.key,
            object: object_from_wire(&w.object)?,
        })
    }
}

impl Endpoint for StoreHint {
    const ID: u16 = 20;
    const NAME: &'static str = "store_hint";
    const CLASS: Class = Class::Interactive;
    type Response = Stored;
}

#[cfg(test)]
mod tests {
    use super::super::testutil;
    use super::*;
    use crate::wire::Message;

    #[test]
    fn round_trips() {
        let hint = StoreHint {
            owner: NodeId::from("n2"),
            key: Bytes::from_static(b"k"),
            object: testutil::object(),
        };
        assert_eq!(StoreHint::decode(hint.encode()), Ok(hint));
    }

    #[test]
    fn missing_owner_or_object_is_invalid() {
        let hint = StoreHint {
            owner: NodeId::from("n2"),
            key: Bytes::from_static(b"k"),
            object: testutil::object(),
        };
        let mut w = hint.to_wire();
        w.owner.clear();
        assert!(matches!(
            StoreHint::from_wire(w),
            Err(WireError::Invalid(_))
        ));
        let mut w = hint.to_wire();
        w.object = Bytes::from_static(&[1, 5]);
        assert!(matches!(
            StoreHint::from_wire(w),
            Err(WireError::Invalid(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = StoreHint::decode(Bytes::from(raw));
        }
    }
}
