//! What every internode message is: a typed request that names its typed
//! response, encoded as protobuf.
//!
//! ## Why protobuf
//! A cluster is upgraded node by node, so two versions of a message must be
//! able to meet: protobuf ignores fields it does not know and fills fields
//! it did not receive with their defaults, which is exactly the forward and
//! backward compatibility a rolling upgrade needs. postcard (the previous
//! format) is denser but has no notion of an optional or unknown field.
//! The schemas are hand-written `prost` structs (the `Wire*` types of
//! [`crate::messages`]), their field numbers fixed forever; each domain
//! message converts to and from its wire struct ([`WireForm`]), so call
//! sites deal in `Object`s and `NodeId`s, never in bytes.
//!
//! Objects travel in a storage encoding (versioned on its own), as one
//! `bytes` field: a replica decodes what it would have read from disk. It
//! is object format 1 (`dynkv_vclock::encode_object_v1`), which every
//! release reads (see [`crate::messages`]).
//!
//! ## What the types guarantee
//! [`Endpoint::Response`] ties each request to its answer: a caller of
//! `call::<Replicate>` gets a `Stored` or an error, and a mismatch is a
//! compile error. Failures a peer reports come back as a [`RemoteError`]
//! variant with its own fields, never a string to match.

use bytes::Bytes;
use dynkv_ring::NodeId;

/// The highest message version this build speaks. Peers agree on
/// `min(theirs, ours)` in the handshake (as riak_core's capability
/// negotiation does), and a node can be pinned lower for a rolling upgrade.
///
/// - 1: the first set of typed messages.
/// - 2: reads may ask for a digest instead of the object
///   ([`crate::messages::Read::digest_only`]).
pub const PROTOCOL_VERSION: u32 = 2;
/// The lowest message version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Which connection to a peer a message travels on. Bulk transfers
/// (ownership handoff, anti-entropy, listings) have their own connection so
/// a 64 MiB batch never queues a replica write or a ping behind it (the
/// reason Cassandra splits urgent, small and large messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Client request traffic, pings and gossip.
    Interactive,
    /// Large, throughput-bound transfers.
    Bulk,
}

impl Class {
    /// Both classes, in index order.
    pub const ALL: [Class; 2] = [Class::Interactive, Class::Bulk];

    /// A dense index, for per-class tables.
    pub fn index(self) -> usize {
        match self {
            Class::Interactive => 0,
            Class::Bulk => 1,
        }
    }

    /// The name used in metrics.
    pub fn name(self) -> &'static str {
        match self {
            Class::Interactive => "interactive",
            Class::Bulk => "bulk",
        }
    }
}

/// A message body that could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not a protobuf message of the expected type.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Decoded, but a field breaks a rule (a corrupt object, a bad id).
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> Self {
        WireError::Malformed(e.to_string())
    }
}

/// A value that travels between nodes.
pub trait Message: Sized + Send + 'static {
    /// The protobuf encoding.
    fn encode(&self) -> Bytes;
    /// Decodes [`Message::encode`]'s output; total on arbitrary input.
    fn decode(body: Bytes) -> Result<Self, WireError>;
}

/// A domain message with a protobuf twin: implementing this is all it takes
/// to be a [`Message`].
pub trait WireForm: Sized + Send + 'static {
    /// The protobuf struct (field numbers are the schema).
    type Wire: prost::Message + Default;
    /// The wire struct of this value.
    fn to_wire(&self) -> Self::Wire;
    /// The value of a decoded wire struct, checked.
    fn from_wire(wire: Self::Wire) -> Result<Self, WireError>;
}

impl<T: WireForm> Message for T {
    fn encode(&self) -> Bytes {
        Bytes::from(prost::Message::encode_to_vec(&self.to_wire()))
    }

    fn decode(body: Bytes) -> Result<Self, WireError> {
        let wire = <T::Wire as prost::Message>::decode(body)?;
        T::from_wire(wire)
    }
}

/// A request one node sends another.
pub trait Endpoint: Message {
    /// The number naming this request on the wire; never reused.
    const ID: u16;
    /// A short name for logs and metrics.
    const NAME: &'static str;
    /// The connection it travels on.
    const CLASS: Class = Class::Interactive;
    /// What a successful call answers.
    type Response: Message;
}

/// Why a peer that received a request could not do it. Each variant carries
/// what a caller needs to act on it; the message texts are for humans.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// A coordinated request missed its quorum.
    #[error("{op} needed {needed} replicas but {acked} answered in time{}", detail_suffix(.detail))]
    QuorumNotMet {
        /// "read" or "write".
        op: String,
        /// Replies required.
        needed: u32,
        /// Replies received.
        acked: u32,
        /// What went wrong with the other replicas, per node.
        detail: Vec<(NodeId, String)>,
    },
    /// No node could coordinate the request.
    #[error("{0}")]
    Unavailable(String),
    /// No replica that answered holds the client's session context.
    #[error("{answered} replicas answered but none has caught up with the session context")]
    Stale {
        /// Replicas that answered.
        answered: u32,
    },
    /// The request is invalid for the receiving node.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The peer's store failed.
    #[error("storage failure on the peer: {0}")]
    Storage(String),
    /// The peer keeps its maximum of hints and refuses more.
    #[error("{node} holds its maximum of {max} hints")]
    HintsFull {
        /// The refusing node.
        node: NodeId,
        /// Its limit.
        max: u64,
    },
    /// The peer's hints hold its maximum of bytes; it refuses more.
    #[error("{node} holds its maximum of {max} bytes of hints")]
    HintBytesFull {
        /// The refusing node.
        node: NodeId,
        /// Its limit in bytes.
        max: u64,
    },
    /// Anti-entropy trees of different shapes cannot be compared.
    #[error("tree shape {theirs:?} differs from the peer's {ours:?}")]
    ShapeMismatch {
        /// The peer's shape (leaf bits, middle bits).
        ours: (u8, u8),
        /// The shape the request named.
        theirs: (u8, u8),
    },
    /// A membership change was refused (the reason says why).
    #[error("membership change refused: {0}")]
    Refused(String),
    /// The peer does not serve this endpoint (an older node).
    #[error("the peer does not serve endpoint {0}")]
    UnknownEndpoint(u16),
    /// The peer is shedding load.
    #[error("the peer is overloaded")]
    Overloaded,
    /// The write's context names versions no replica issued.
    #[error("bad context: {0}")]
    BadContext(String),
    /// The peer does not replicate the key in its rings: the sender routed
    /// with a ring the peer has moved past (or not reached yet), so the
    /// request goes elsewhere instead of leaving a copy no read will find.
    #[error("{node} does not replicate this key in its ring (rings differ; retry once they agree)")]
    NotReplica {
        /// The refusing node.
        node: NodeId,
    },
    /// The write would leave too many siblings.
    #[error("the write would leave {count} siblings (limit {max})")]
    TooManySiblings {
        /// Siblings.
        count: u64,
        /// Limit.
        max: u64,
    },
    /// The write would leave too large an object.
    #[error("the object would hold {bytes} bytes (limit {max})")]
    ObjectTooLarge {
        /// Size.
        bytes: u64,
        /// Limit.
        max: u64,
    },
    /// The peer's disk is full: its store refuses writes until space is
    /// freed (reads are still served there).
    #[error("{node} has no space left on its data disk: {message}")]
    InsufficientStorage {
        /// The full node.
        node: NodeId,
        /// What its store said.
        message: String,
    },
    /// The answer would exceed the frame limit.
    #[error("the answer of {bytes} bytes exceeds the frame limit of {max}")]
    TooLarge {
        /// Size of the answer's body.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// A data type operation's precondition failed at the coordinator
    /// (riak_dt's `{precondition, ...}`): nothing was written.
    #[error("{0}")]
    Precondition(String),
    /// An error code this build does not know (a newer peer).
    #[error("remote error {code}: {message}")]
    Other {
        /// The peer's code.
        code: u32,
        /// The peer's sentence.
        message: String,
    },
}

fn detail_suffix(detail: &[(NodeId, String)]) -> String {
    if detail.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = detail.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    format!(" ({})", parts.join("; "))
}

/// The protobuf form of a [`RemoteError`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireRemoteError {
    /// Which variant (see `RemoteError::code`).
    #[prost(uint32, tag = "1")]
    pub code: u32,
    /// The human sentence (or the variant's one string).
    #[prost(string, tag = "2")]
    pub message: String,
    /// Quorum counts, hint limits, tree shapes.
    #[prost(uint64, tag = "3")]
    pub a: u64,
    /// Quorum counts, tree shapes.
    #[prost(uint64, tag = "4")]
    pub b: u64,
    /// Per-node detail.
    #[prost(message, repeated, tag = "5")]
    pub detail: Vec<WireNodeDetail>,
    /// A node id (hints full).
    #[prost(string, tag = "6")]
    pub node: String,
}

/// One node's part of a [`RemoteError`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireNodeDetail {
    /// The node.
    #[prost(string, tag = "1")]
    pub node: String,
    /// What happened there.
    #[prost(string, tag = "2")]
    pub reason: String,
}

impl RemoteError {
    /// The wire code of each variant; never reused.
    fn code(&self) -> u32 {
        match self {
            RemoteError::QuorumNotMet { .. } => 1,
            RemoteError::Unavailable(_) => 2,
            RemoteError::Stale { .. } => 3,
            RemoteError::BadRequest(_) => 4,
            RemoteError::Storage(_) => 5,
            RemoteError::HintsFull { .. } => 6,
            RemoteError::ShapeMismatch { .. } => 7,
            RemoteError::Refused(_) => 8,
            RemoteError::UnknownEndpoint(_) => 9,
            RemoteError::Overloaded => 10,
            RemoteError::TooLarge { .. } => 11,
            RemoteError::BadContext(_) => 12,
            RemoteError::TooManySiblings { .. } => 13,
            RemoteError::ObjectTooLarge { .. } => 14,
            RemoteError::HintBytesFull { .. } => 15,
            RemoteError::InsufficientStorage { .. } => 16,
            RemoteError::NotReplica { .. } => 17,
            RemoteError::Precondition(_) => 18,
            RemoteError::Other { code, .. } => *code,
        }
    }
}

fn shape_pack(s: (u8, u8)) -> u64 {
    ((s.0 as u64) << 8) | s.1 as u64
}

fn shape_unpack(v: u64) -> (u8, u8) {
    ((v >> 8) as u8, v as u8)
}

impl WireForm for RemoteError {
    type Wire = WireRemoteError;

    fn to_wire(&self) -> WireRemoteError {
        let mut w = WireRemoteError {
            code: self.code(),
            message: self.to_string(),
            ..Default::default()
        };
        match self {
            RemoteError::QuorumNotMet {
                op,
                needed,
                acked,
                detail,
            } => {
                w.message = op.clone();
                w.a = *needed as u64;
                w.b = *acked as u64;
                w.detail = detail
                    .iter()
                    .map(|(n, r)| WireNodeDetail {
                        node: n.to_string(),
                        reason: r.clone(),
                    })
                    .collect();
            }
            RemoteError::Unavailable(s)
            | RemoteError::BadRequest(s)
            | RemoteError::Storage(s)
            | RemoteError::Refused(s)
            | RemoteError::BadContext(s)
            | RemoteError::Precondition(s) => w.message = s.clone(),
            RemoteError::TooManySiblings { count: a, max: b }
            | RemoteError::ObjectTooLarge { bytes: a, max: b } => {
                w.a = *a;
                w.b = *b;
            }
            RemoteError::Stale { answered } => w.a = *answered as u64,
            RemoteError::HintsFull { node, max } | RemoteError::HintBytesFull { node, max } => {
                w.node = node.to_string();
                w.a = *max;
            }
            RemoteError::InsufficientStorage { node, message } => {
                w.node = node.to_string();
                w.message = message.clone();
            }
            RemoteError::ShapeMismatch { ours, theirs } => {
                w.a = shape_pack(*ours);
                w.b = shape_pack(*theirs);
            }
            RemoteError::UnknownEndpoint(id) => w.a = *id as u64,
            RemoteError::NotReplica { node } => w.node = node.to_string(),
            RemoteError::Overloaded => {}
            RemoteError::TooLarge { bytes, max } => {
                w.a = *bytes;
                w.b = *max;
            }
            RemoteError::Other { message, .. } => w.message = message.clone(),
        }
        w
    }

    fn from_wire(w: WireRemoteError) -> Result<Self, WireError> {
        let count = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Ok(match w.code {
            1 => RemoteError::QuorumNotMet {
                op: w.message,
                needed: count(w.a),
                acked: count(w.b),
                detail: w
                    .detail
                    .into_iter()
                    .map(|d| (NodeId::from(d.node), d.reason))
                    .collect(),
            },
            2 => RemoteError::Unavailable(w.message),
            3 => RemoteError::Stale {
                answered: count(w.a),
            },
            4 => RemoteError::BadRequest(w.message),
            5 => RemoteError::Storage(w.message),
            6 => RemoteError::HintsFull {
                node: NodeId::from(w.node),
                max: w.a,
            },
            7 => RemoteError::ShapeMismatch {
                ours: shape_unpack(w.a),
                theirs: shape_unpack(w.b),
            },
            8 => RemoteError::Refused(w.message),
            9 => RemoteError::UnknownEndpoint(u16::try_from(w.a).unwrap_or(u16::MAX)),
            10 => RemoteError::Overloaded,
            11 => RemoteError::TooLarge {
                bytes: w.a,
                max: w.b,
            },
            12 => RemoteError::BadContext(w.message),
            13 => RemoteError::TooManySiblings {
                count: w.a,
                max: w.b,
            },
            14 => RemoteError::ObjectTooLarge {
                bytes: w.a,
                max: w.b,
            },
            15 => RemoteError::HintBytesFull {
                node: NodeId::from(w.node),
                max: w.a,
            },
            16 => RemoteError::InsufficientStorage {
                node: NodeId::from(w.node),
                message: w.message,
            },
            17 => RemoteError::NotReplica {
                node: NodeId::from(w.node),
            },
            18 => RemoteError::Precondition(w.message),
            code => RemoteError::Other {
                code,
                message: w.message,
            },
        })
    }
}

/// Encodes an optional node id: protobuf has no `None` for strings, and no
/// node id is empty.
pub(crate) fn node_to_wire(n: &Option<NodeId>) -> String {
    n.as_ref().map(|n| n.to_string()).unwrap_or_default()
}

/// Decodes [`node_to_wire`].
pub(crate) fn node_from_wire(s: String) -> Option<NodeId> {
    (!s.is_empty()).then(|| NodeId::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_errors_round_trip() {
        let all = [
            RemoteError::QuorumNotMet {
                op: "write".into(),
                needed: 3,
                acked: 1,
                detail: vec![(NodeId::from("n2"), "timeout".into())],
            },
            RemoteError::Unavailable("no primary".into()),
            RemoteError::Stale { answered: 2 },
            RemoteError::BadRequest("w=4".into()),
            RemoteError::Storage("disk".into()),
            RemoteError::HintsFull {
                node: NodeId::from("n4"),
                max: 10,
            },
            RemoteError::HintBytesFull {
                node: NodeId::from("n4"),
                max: 1 << 30,
            },
            RemoteError::ShapeMismatch {
                ours: (10, 5),
                theirs: (8, 4),
            },
            RemoteError::Refused("in progress".into()),
            RemoteError::UnknownEndpoint(77),
            RemoteError::Overloaded,
            RemoteError::TooLarge { bytes: 9, max: 8 },
            RemoteError::BadContext("forged".into()),
            RemoteError::TooManySiblings {
                count: 101,
                max: 100,
            },
            RemoteError::ObjectTooLarge { bytes: 9, max: 8 },
            RemoteError::InsufficientStorage {
                node: NodeId::from("n2"),
                message: "IO error: No space left on device".into(),
            },
            RemoteError::NotReplica {
                node: NodeId::from("n3"),
            },
            RemoteError::Precondition("{precondition,{not_present,x}}".into()),
            RemoteError::Other {
                code: 999,
                message: "new".into(),
            },
        ];
        for e in all {
            assert_eq!(RemoteError::decode(e.encode()).unwrap(), e);
        }
    }
}
