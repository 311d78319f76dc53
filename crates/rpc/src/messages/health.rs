//! Health (endpoint IDs 1–9): the failure detector's probe.

use dynkv_ring::NodeId;

use super::required_node;
use crate::wire::{Class, Endpoint, WireError, WireForm};

/// Liveness probe of the failure detector. Answer: [`Pong`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {}

/// The protobuf form of [`Ping`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePing {}

impl WireForm for Ping {
    type Wire = WirePing;

    fn to_wire(&self) -> WirePing {
        WirePing {}
    }

    fn from_wire(_: WirePing) -> Result<Self, WireError> {
        Ok(Ping {})
    }
}

impl Endpoint for Ping {
    const ID: u16 = 1;
    const NAME: &'static str = "ping";
    const CLASS: Class = Class::Interactive;
    type Response = Pong;
}

/// The node is alive; its id, so a misconfigured address is noticed, and
/// its hybrid logical clock, which the pinging node catches up with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pong {
    /// Who answered.
    pub node: NodeId,
    /// Its clock, Unix µs (0 from nodes of releases before it was sent).
    pub clock: u64,
}

/// The protobuf form of [`Pong`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WirePong {
    /// The answering node's id (required).
    #[prost(string, tag = "1")]
    pub node: String,
    /// The answering node's hybrid logical clock, Unix µs.
    #[prost(fixed64, tag = "2")]
    pub clock: u64,
}

impl WireForm for Pong {
    type Wire = WirePong;

    fn to_wire(&self) -> WirePong {
        WirePong {
            node: self.node.to_string(),
            clock: self.clock,
        }
    }

    fn from_wire(w: WirePong) -> Result<Self, WireError> {
        Ok(Pong {
            node: required_node(w.node, "pong.node")?,
            clock: w.clock,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    use bytes::Bytes;

    #[test]
    fn round_trips() {
        assert_eq!(Ping::decode(Ping {}.encode()), Ok(Ping {}));
        let pong = Pong {
            node: NodeId::from("n1"),
            clock: 7,
        };
        assert_eq!(Pong::decode(pong.encode()), Ok(pong));
    }

    #[test]
    fn pong_without_node_is_invalid() {
        assert!(matches!(
            Pong::decode(Bytes::new()),
            Err(WireError::Invalid(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = Ping::decode(Bytes::from(raw.clone()));
            let _ = Pong::decode(Bytes::from(raw));
        }
    }
}
