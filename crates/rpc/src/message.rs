//! Internode messages and their wire encoding.
//!
//! One request enum, one response enum: each request kind has a declared
//! response variant, and a reply of another variant is an explicit
//! [`crate::RpcError::Unexpected`], never silently ignored.
//!
//! ## Encoding
//! Messages travel as `version byte || postcard(message)`. postcard was
//! chosen over bincode and JSON (see `examples/encoding_bench.rs`, figures in
//! the README): varint integers make clocks and lengths small, it is a
//! well-kept serde format with no schema step, and its decoder is total
//! (errors, never panics) on hostile bytes. The version byte lets a future
//! node refuse or translate old frames instead of misreading them.

use bytes::Bytes;
use dynkv_ring::NodeId;
use dynkv_vclock::{Content, Object, VersionVector};
use serde::{Deserialize, Serialize};

/// First byte of every frame in this layout.
pub const WIRE_FORMAT_V1: u8 = 1;

/// How many replicas must answer: Riak's `one | quorum | all | <n>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quorum {
    /// One replica.
    One,
    /// A majority: `n / 2 + 1`.
    Majority,
    /// Every replica.
    All,
    /// An explicit count `1..=n`.
    Count(u32),
}

impl Quorum {
    /// The number of replies this quorum needs out of `n` replicas.
    pub fn required(self, n: usize) -> usize {
        match self {
            Quorum::One => 1,
            Quorum::Majority => n / 2 + 1,
            Quorum::All => n,
            Quorum::Count(c) => c as usize,
        }
    }

    /// Parses the query-parameter form; the error says what is allowed.
    pub fn parse(s: &str, n: usize) -> Result<Quorum, String> {
        let q = match s.to_ascii_lowercase().as_str() {
            "one" => Quorum::One,
            "quorum" => Quorum::Majority,
            "all" => Quorum::All,
            other => match other.parse::<u32>() {
                Ok(c) if c >= 1 && (c as usize) <= n => Quorum::Count(c),
                _ => {
                    return Err(format!(
                        "must be one, quorum, all or a number from 1 to {n}, got {s:?}"
                    ));
                }
            },
        };
        Ok(q)
    }
}

impl std::fmt::Display for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Majority => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::Count(c) => write!(f, "{c}"),
        }
    }
}

/// A client write as the coordinator needs it; forwarded as is when the
/// receiving node is not a primary of the key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteRequest {
    /// The key.
    pub key: Bytes,
    /// The value or tombstone to write.
    pub content: Content,
    /// What the writer had seen (empty: blind write).
    pub context: VersionVector,
    /// Acknowledgements needed.
    pub w: Quorum,
    /// Count fallback (hinted) copies toward `w`.
    pub sloppy: bool,
    /// Time left for the whole write, in milliseconds.
    pub timeout_ms: u64,
    /// The client's `Idempotency-Key`: the write is applied at most once
    /// per key and idempotency key within the configured window.
    pub idempotency_key: Option<String>,
    /// Replicas of this key when fewer than the cluster's N (a Riak
    /// bucket's `n_val`): the first `n_val` nodes of the ring walk are its
    /// primaries. `None`: the cluster's N.
    pub n_val: Option<u32>,
    /// Replace every sibling the coordinator's replica holds, as if the
    /// context had seen them all (Riak buckets with `allow_mult=false` or
    /// `last_write_wins`): repeated writes then never pile up siblings.
    pub supersede: bool,
}

/// A coordinated write's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// The coordinator's object after the write.
    pub object: Object,
    /// True when the idempotency key showed the write was already applied,
    /// so nothing new was written.
    pub replayed: bool,
    /// The dot `(coordinator, counter)` the new value got (`None` when
    /// replayed): lets a verifier tell which later writes saw this one.
    pub dot: Option<(String, u64)>,
}

/// What one node asks another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    /// Liveness probe of the failure detector. Answer: [`Response::Pong`].
    Ping,
    /// Read the local replica of a key. Answer: [`Response::Object`].
    Get {
        /// The key.
        key: Bytes,
        /// Set when asking a fallback: also return what it holds as a hint
        /// for this primary (sloppy reads).
        hint_for: Option<NodeId>,
    },
    /// Merge this object into the local replica (`sync`). Answer: [`Response::Stored`].
    Replicate {
        /// The key.
        key: Bytes,
        /// The coordinator's (or repairer's) state of the key.
        object: Object,
    },
    /// Keep this object durably for `owner`, who is unreachable, and hand it
    /// off later. Answer: [`Response::Stored`].
    StoreHint {
        /// The primary the object belongs to.
        owner: NodeId,
        /// The key.
        key: Bytes,
        /// The state to hand off.
        object: Object,
    },
    /// Coordinate this client write (sent by a node outside the key's
    /// preference list to a primary). Answer: [`Response::Written`].
    Coordinate(WriteRequest),
    /// Anti-entropy: hashes of one level of a partition's Merkle tree
    /// (level 0: the root; 1: the middle level; 2: the leaves), at the given
    /// indices (all of them when empty). Answer: [`Response::Hashes`].
    AaeHashes {
        /// The partition.
        partition: u32,
        /// The tree shape the asker uses (leaf bits, middle bits): both
        /// sides must agree or the comparison means nothing.
        shape: (u8, u8),
        /// Tree level.
        level: u8,
        /// Node indices in that level.
        indices: Vec<u32>,
    },
    /// Anti-entropy: `(key, digest)` of every key under these leaves.
    /// Answer: [`Response::KeyDigests`].
    AaeKeys {
        /// The partition.
        partition: u32,
        /// Tree shape, as in [`Request::AaeHashes`].
        shape: (u8, u8),
        /// Leaf indices.
        leaves: Vec<u32>,
    },
    /// Anti-entropy: the local objects of these keys. Answer: [`Response::Objects`].
    AaeFetch {
        /// The keys.
        keys: Vec<Bytes>,
    },
    /// Anti-entropy: merge these objects (`sync`). Answer: [`Response::Repaired`].
    AaeRepair {
        /// Key and object pairs.
        items: Vec<(Bytes, Object)>,
    },
    /// Membership gossip: the sender's cluster state (encoded by
    /// `dynkv-membership`). Answer: [`Response::State`] with the merge.
    Gossip {
        /// The encoded cluster state.
        state: Bytes,
    },
    /// A new node asks a member to stage it as joining. Answer:
    /// [`Response::State`] with the cluster state that includes it.
    Join {
        /// The joining node's id.
        node: NodeId,
        /// The address the cluster should use for it.
        addr: String,
        /// The joiner's ring partition count (must match the cluster's).
        partitions: u32,
    },
    /// Ownership handoff: objects of a partition streamed to its new
    /// replica, which merges them (`sync`). Answer: [`Response::Repaired`].
    Handoff {
        /// The partition being transferred.
        partition: u32,
        /// Key and object pairs.
        items: Vec<(Bytes, Object)>,
    },
    /// Key listing: up to `limit` keys of the local replica of a partition
    /// that start with `prefix`, after `after`, in key order, leaving out
    /// keys that are only tombstones. Answer: [`Response::Keys`] (fewer
    /// than `limit`: the partition is exhausted).
    ListKeys {
        /// The partition.
        partition: u32,
        /// Only keys starting with these bytes (a namespace's prefix).
        prefix: Bytes,
        /// Resume after this key (exclusive).
        after: Option<Bytes>,
        /// Most keys in the answer.
        limit: u32,
    },
    /// Namespace listing: up to `limit` distinct namespaces (see
    /// `dynkv_storage::namespace`) with a live key in the local replica of a
    /// partition, after `after`. Answer: [`Response::Keys`].
    ListNamespaces {
        /// The partition.
        partition: u32,
        /// Resume after this namespace (exclusive).
        after: Option<Bytes>,
        /// Most namespaces in the answer.
        limit: u32,
    },
}

impl Request {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Get { .. } => "get",
            Request::Replicate { .. } => "replicate",
            Request::StoreHint { .. } => "store_hint",
            Request::Coordinate(_) => "coordinate",
            Request::AaeHashes { .. } => "aae_hashes",
            Request::AaeKeys { .. } => "aae_keys",
            Request::AaeFetch { .. } => "aae_fetch",
            Request::AaeRepair { .. } => "aae_repair",
            Request::Gossip { .. } => "gossip",
            Request::Join { .. } => "join",
            Request::Handoff { .. } => "handoff",
            Request::ListKeys { .. } => "list_keys",
            Request::ListNamespaces { .. } => "list_namespaces",
        }
    }

    /// True for membership messages (served by the membership service).
    pub fn is_membership(&self) -> bool {
        matches!(
            self,
            Request::Gossip { .. } | Request::Join { .. } | Request::Handoff { .. }
        )
    }

    /// True for anti-entropy messages (served by the anti-entropy service).
    pub fn is_anti_entropy(&self) -> bool {
        matches!(
            self,
            Request::AaeHashes { .. }
                | Request::AaeKeys { .. }
                | Request::AaeFetch { .. }
                | Request::AaeRepair { .. }
        )
    }

    /// True when every object carried keeps the DVVSet invariants; frames
    /// from the network are checked before anything reaches a store.
    pub fn is_well_formed(&self) -> bool {
        match self {
            Request::Replicate { object, .. } | Request::StoreHint { object, .. } => {
                object.is_well_formed()
            }
            Request::AaeRepair { items } | Request::Handoff { items, .. } => {
                items.iter().all(|(_, o)| o.is_well_formed())
            }
            _ => true,
        }
    }
}

/// Why a remote node could not do what was asked (it answered, but no).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct RemoteFailure {
    /// Machine-readable slug, as in the public API's error bodies.
    pub code: String,
    /// A sentence for humans.
    pub message: String,
    /// For quorum failures: replies needed.
    pub needed: usize,
    /// For quorum failures: replies received.
    pub acked: usize,
}

/// What a node answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    /// The node is alive; its id, so a misconfigured address is noticed.
    Pong {
        /// Who answered.
        node: NodeId,
    },
    /// The local replica of a key (`None`: not stored here).
    Object(Option<Object>),
    /// The object was merged (or hinted) durably.
    Stored,
    /// The coordinated write met its quorum.
    Written(WriteOutcome),
    /// Merkle tree hashes, in the order asked.
    Hashes(Vec<u64>),
    /// `(key, digest)` pairs in (hash, key) order.
    KeyDigests(Vec<(Bytes, u64)>),
    /// Objects in the order asked (`None`: not stored).
    Objects(Vec<Option<Object>>),
    /// How many of the merged objects changed the local state.
    Repaired(u64),
    /// An encoded cluster state (membership).
    State(Bytes),
    /// The request was understood but failed.
    Failed(RemoteFailure),
    /// Keys or namespaces of a listing step, in order.
    Keys(Vec<Bytes>),
}

/// A frame that could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Empty body.
    #[error("empty frame")]
    Empty,
    /// Another wire version.
    #[error("unknown wire format version {0}")]
    UnknownVersion(u8),
    /// Not a message.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Encodes a message as a versioned frame.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(WIRE_FORMAT_V1);
    postcard::to_io(msg, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Decodes a versioned frame; total on arbitrary input.
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, WireError> {
    let (&v, body) = frame.split_first().ok_or(WireError::Empty)?;
    if v != WIRE_FORMAT_V1 {
        return Err(WireError::UnknownVersion(v));
    }
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynkv_vclock::DvvSet;

    #[test]
    fn frames_round_trip() {
        let object: Object = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            Content::value("v", "t", 1),
        );
        let req = Request::Replicate {
            key: Bytes::from_static(b"k"),
            object: object.clone(),
        };
        match decode::<Request>(&encode(&req)).unwrap() {
            Request::Replicate { key, object: o } => {
                assert_eq!(&key[..], b"k");
                assert_eq!(o, object);
            }
            other => panic!("wrong variant {other:?}"),
        }
    }

    #[test]
    fn quorum_parsing() {
        assert_eq!(Quorum::parse("quorum", 3), Ok(Quorum::Majority));
        assert_eq!(Quorum::parse("ALL", 3), Ok(Quorum::All));
        assert_eq!(Quorum::parse("2", 3), Ok(Quorum::Count(2)));
        assert!(Quorum::parse("0", 3).is_err());
        assert!(Quorum::parse("4", 3).is_err());
        assert!(Quorum::parse("banana", 3).is_err());
        assert_eq!(Quorum::Majority.required(3), 2);
        assert_eq!(Quorum::Majority.required(5), 3);
        assert_eq!(Quorum::Majority.required(1), 1);
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode::<Request>(&raw);
            let _ = decode::<Response>(&raw);
            let mut v = vec![WIRE_FORMAT_V1];
            v.extend_from_slice(&raw);
            let _ = decode::<Request>(&v);
            let _ = decode::<Response>(&v);
        }
    }
}
