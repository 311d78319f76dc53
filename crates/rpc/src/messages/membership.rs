//! Membership (endpoint IDs 40–49): gossip of the cluster state, joining,
//! and ownership handoff when partitions move.

use bytes::Bytes;
use dynkv_ring::NodeId;
use dynkv_vclock::Object;

use super::aae::Repaired;
use super::{WireItem, items_from_wire, items_to_wire, required_node};
use crate::wire::{Class, Endpoint, WireError, WireForm};

/// Membership gossip: the sender's cluster state (encoded by
/// `dynkv-membership`). Answer: [`ClusterStateReply`] with the merge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gossip {
    /// The encoded cluster state.
    pub state: Bytes,
}

one_field_message! {
    /// The protobuf form of a [`Gossip`].
    Gossip.state => WireGossip {
        /// The encoded cluster state (opaque here).
        #[prost(bytes = "bytes")]
        state: Bytes,
    }
}

impl Endpoint for Gossip {
    const ID: u16 = 40;
    const NAME: &'static str = "gossip";
    const CLASS: Class = Class::Interactive;
    type Response = ClusterStateReply;
}

/// An encoded cluster state (membership): the answer to [`Gossip`] (the
/// merge) and to [`Join`] (the state that includes the joiner).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStateReply(pub Bytes);

one_field_message! {
    /// The protobuf form of a [`ClusterStateReply`].
    ClusterStateReply.0 => WireClusterState {
        /// The encoded cluster state (opaque here).
        #[prost(bytes = "bytes")]
        state: Bytes,
    }
}

/// A new node asks a member to stage it as joining. Answer:
/// [`ClusterStateReply`] with the cluster state that includes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    /// The joining node's id.
    pub node: NodeId,
    /// The address the cluster should use for it.
    pub addr: String,
    /// The joiner's ring partition count (must match the cluster's).
    pub partitions: u32,
}

/// The protobuf form of a [`Join`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireJoin {
    /// The joiner's node id (required).
    #[prost(string, tag = "1")]
    pub node: String,
    /// Its address.
    #[prost(string, tag = "2")]
    pub addr: String,
    /// Its partition count.
    #[prost(uint32, tag = "3")]
    pub partitions: u32,
}

impl WireForm for Join {
    type Wire = WireJoin;

    fn to_wire(&self) -> WireJoin {
        WireJoin {
            node: self.node.to_string(),
            addr: self.addr.clone(),
            partitions: self.partitions,
        }
    }

    fn from_wire(w: WireJoin) -> Result<Self, WireError> {
        Ok(Join {
            node: required_node(w.node, "join.node")?,
            addr: w.addr,
            partitions: w.partitions,
        })
    }
}

impl Endpoint for Join {
    const ID: u16 = 41;
    const NAME: &'static str = "join";
    const CLASS: Class = Class::Interactive;
    type Response = ClusterStateReply;
}

/// Ownership handoff: objects of a partition streamed to its new replica,
/// which merges them (`sync`). Answer: [`Repaired`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// The partition being transferred.
    pub partition: u32,
    /// Key and object pairs.
    pub items: Vec<(Bytes, Object)>,
}

/// The protobuf form of a [`Handoff`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHandoff {
    /// The partition.
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    /// Key and object pairs.
    #[prost(message, repeated, tag = "2")]
    pub items: Vec<WireItem>,
}

impl WireForm for Handoff {
    type Wire = WireHandoff;

    fn to_wire(&self) -> WireHandoff {
        WireHandoff {
            partition: self.partition,
            items: items_to_wire(&self.items),
        }
    }

    fn from_wire(w: WireHandoff) -> Result<Self, WireError> {
        Ok(Handoff {
            partition: w.partition,
            items: items_from_wire(w.items)?,
        })
    }
}

impl Endpoint for Handoff {
    const ID: u16 = 42;
    const NAME: &'static str = "handoff";
    const CLASS: Class = Class::Bulk;
    type Response = Repaired;
}

/// A membership change sent to the claimant, the one node that makes
/// them, so every change is applied in one order (see `dynkv-membership`).
/// Answer: [`ClusterStateReply`] with the claimant's state after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimantChange {
    /// Stage a node's join (as asked of a seed by [`Join`]).
    Join(Join),
    /// Stage a member's leave.
    Leave {
        /// The member.
        node: NodeId,
    },
    /// Commit the staged changes.
    Commit,
}

/// The protobuf form of a [`ClaimantChange`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireClaimantChange {
    /// 1 join, 2 leave, 3 commit.
    #[prost(uint32, tag = "1")]
    pub op: u32,
    /// The joining or leaving node.
    #[prost(string, tag = "2")]
    pub node: String,
    /// A joiner's address.
    #[prost(string, tag = "3")]
    pub addr: String,
    /// A joiner's partition count.
    #[prost(uint32, tag = "4")]
    pub partitions: u32,
}

impl WireForm for ClaimantChange {
    type Wire = WireClaimantChange;

    fn to_wire(&self) -> WireClaimantChange {
        match self {
            ClaimantChange::Join(j) => WireClaimantChange {
                op: 1,
                node: j.node.to_string(),
                addr: j.addr.clone(),
                partitions: j.partitions,
            },
            ClaimantChange::Leave { node } => WireClaimantChange {
                op: 2,
                node: node.to_string(),
                ..Default::default()
            },
            ClaimantChange::Commit => WireClaimantChange {
                op: 3,
                ..Default::default()
            },
        }
    }

    fn from_wire(w: WireClaimantChange) -> Result<Self, WireError> {
        Ok(match w.op {
            1 => ClaimantChange::Join(Join {
                node: required_node(w.node, "change.node")?,
                addr: w.addr,
                partitions: w.partitions,
            }),
            2 => ClaimantChange::Leave {
                node: required_node(w.node, "change.node")?,
            },
            3 => ClaimantChange::Commit,
            op => {
                return Err(WireError::Invalid(format!(
                    "unknown membership change {op}"
                )));
            }
        })
    }
}

impl Endpoint for ClaimantChange {
    const ID: u16 = 43;
    const NAME: &'static str = "claimant_change";
    const CLASS: Class = Class::Interactive;
    type Response = ClusterStateReply;
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{self, round_trip};
    use super::*;
    use crate::wire::Message;

    #[test]
    fn round_trips() {
        round_trip(Gossip {
            state: Bytes::from_static(b"\x01state"),
        });
        round_trip(Gossip {
            state: Bytes::new(),
        });
        round_trip(ClusterStateReply(Bytes::from_static(b"\x01merged")));
        round_trip(Join {
            node: NodeId::from("n5"),
            addr: "10.0.0.5:7000".into(),
            partitions: 64,
        });
        round_trip(ClaimantChange::Join(Join {
            node: NodeId::from("n5"),
            addr: "10.0.0.5:7000".into(),
            partitions: 64,
        }));
        round_trip(ClaimantChange::Leave {
            node: NodeId::from("n2"),
        });
        round_trip(ClaimantChange::Commit);
        round_trip(Handoff {
            partition: 3,
            items: vec![
                (Bytes::from_static(b"a"), testutil::object()),
                (Bytes::from_static(b"b"), testutil::small_object("b")),
            ],
        });
        round_trip(Handoff {
            partition: 0,
            items: vec![],
        });
        round_trip(Repaired(2));
    }

    #[test]
    fn invalid_fields() {
        let mut w = Join {
            node: NodeId::from("n5"),
            addr: "a".into(),
            partitions: 8,
        }
        .to_wire();
        w.node.clear();
        assert!(matches!(Join::from_wire(w), Err(WireError::Invalid(_))));
        let mut w = Handoff {
            partition: 1,
            items: vec![(Bytes::from_static(b"a"), testutil::object())],
        }
        .to_wire();
        w.items[0].object = Bytes::from_static(&[2, 0]);
        assert!(matches!(Handoff::from_wire(w), Err(WireError::Invalid(_))));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let b = Bytes::from(raw);
            let _ = Gossip::decode(b.clone());
            let _ = ClusterStateReply::decode(b.clone());
            let _ = Join::decode(b.clone());
            let _ = Handoff::decode(b.clone());
            let _ = Repaired::decode(b);
        }
    }
}
