//! Key-value replication (endpoint IDs 10–19): replica reads and writes,
//! and forwarding a client write to a coordinator. Also the quorum spec and
//! the client write the coordinator works from.

use bytes::Bytes;
use dynkv_ring::NodeId;
use dynkv_vclock::{Content, IdempotencyRecord, Link, Meta, Object, VersionVector};
use serde::{Deserialize, Serialize};

use super::{object_from_wire, object_to_wire};
use crate::wire::{Class, Endpoint, WireError, WireForm, node_from_wire, node_to_wire};

// ---------------------------------------------------------------------------
// Quorum

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

/// A majority of `n` replicas (`n / 2 + 1`): the one formula every
/// quorum word `quorum` resolves through.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

impl Quorum {
    /// The number of replies this quorum needs out of `n` replicas, without
    /// a range check (see [`Quorum::required_of`]).
    pub fn required(self, n: usize) -> usize {
        match self {
            Quorum::One => 1,
            Quorum::Majority => majority(n),
            Quorum::All => n,
            Quorum::Count(c) => c as usize,
        }
    }

    /// The number of replies this quorum needs out of `n` replicas, or why
    /// `n` replicas cannot give it: the one range check of R and W.
    pub fn required_of(self, n: usize) -> Result<usize, String> {
        let q = self.required(n);
        if q == 0 || q > n {
            return Err(format!("{self} asks for {q} of {n} replicas"));
        }
        Ok(q)
    }

    /// A quorum word (`one`, `quorum`, `all`, any case) or a count of at
    /// least 1, without checking the count against N: the one parser of
    /// the words (query parameters, config, checker).
    pub fn from_word(s: &str) -> Option<Quorum> {
        match s.trim().to_ascii_lowercase().as_str() {
            "one" => Some(Quorum::One),
            "quorum" => Some(Quorum::Majority),
            "all" => Some(Quorum::All),
            other => match other.parse::<u32>() {
                Ok(c) if c >= 1 => Some(Quorum::Count(c)),
                _ => None,
            },
        }
    }

    /// Parses the query-parameter form; the error says what is allowed.
    pub fn parse(s: &str, n: usize) -> Result<Quorum, String> {
        match Quorum::from_word(s) {
            Some(q) if q.required_of(n).is_ok() => Ok(q),
            _ => Err(format!(
                "must be one, quorum, all or a number from 1 to {n}, got {s:?}"
            )),
        }
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

/// The protobuf form of a [`Quorum`]: a kind and, for
/// [`Quorum::Count`], the count. Kind 0 (a missing field) is invalid, so a
/// sender that forgot the quorum is not silently given one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireQuorum {
    /// 1 one, 2 majority, 3 all, 4 count; never reused.
    #[prost(uint32, tag = "1")]
    pub kind: u32,
    /// The count of [`Quorum::Count`] (ignored for the other kinds).
    #[prost(uint32, tag = "2")]
    pub count: u32,
}

const QUORUM_ONE: u32 = 1;
const QUORUM_MAJORITY: u32 = 2;
const QUORUM_ALL: u32 = 3;
const QUORUM_COUNT: u32 = 4;

impl WireForm for Quorum {
    type Wire = WireQuorum;

    fn to_wire(&self) -> WireQuorum {
        let (kind, count) = match *self {
            Quorum::One => (QUORUM_ONE, 0),
            Quorum::Majority => (QUORUM_MAJORITY, 0),
            Quorum::All => (QUORUM_ALL, 0),
            Quorum::Count(c) => (QUORUM_COUNT, c),
        };
        WireQuorum { kind, count }
    }

    fn from_wire(w: WireQuorum) -> Result<Self, WireError> {
        match w.kind {
            QUORUM_ONE => Ok(Quorum::One),
            QUORUM_MAJORITY => Ok(Quorum::Majority),
            QUORUM_ALL => Ok(Quorum::All),
            QUORUM_COUNT if w.count >= 1 => Ok(Quorum::Count(w.count)),
            QUORUM_COUNT => Err(WireError::Invalid("quorum count 0".into())),
            k => Err(WireError::Invalid(format!("unknown quorum kind {k}"))),
        }
    }
}

// ---------------------------------------------------------------------------
// Content and version vectors (the parts of a client write)

/// One metadata pair of a [`WireContent`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMetaPair {
    /// The metadata name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The protobuf form of an [`IdempotencyRecord`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireIdempotencyRecord {
    /// The client's idempotency key.
    #[prost(string, tag = "1")]
    pub key: String,
    /// When that write was applied, µs since the Unix epoch.
    #[prost(uint64, tag = "2")]
    pub at_micros: u64,
}

/// The protobuf form of a [`Link`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireLink {
    /// The target's bucket (a URL path segment).
    #[prost(string, tag = "1")]
    pub bucket: String,
    /// The target's key (a URL path segment).
    #[prost(string, tag = "2")]
    pub key: String,
    /// The link's tag.
    #[prost(string, tag = "3")]
    pub tag: String,
}

/// The protobuf form of a [`Meta`]: a sibling's typed metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireMeta {
    /// Idempotency records.
    #[prost(message, repeated, tag = "1")]
    pub idempotency: Vec<WireIdempotencyRecord>,
    /// User metadata.
    #[prost(message, repeated, tag = "2")]
    pub user: Vec<WireMetaPair>,
    /// Links, in order.
    #[prost(message, repeated, tag = "3")]
    pub links: Vec<WireLink>,
    /// Index entries.
    #[prost(message, repeated, tag = "4")]
    pub indexes: Vec<WireMetaPair>,
    /// Other pairs.
    #[prost(message, repeated, tag = "5")]
    pub extra: Vec<WireMetaPair>,
}

/// The protobuf form of a [`Content`] (a sibling value or tombstone).
///
/// Metadata travels twice while a cluster may hold nodes of the release
/// before typed metadata: typed (`typed_meta`, what this release reads) and
/// as string pairs (`meta`, what that release reads; read here only when
/// `typed_meta` is absent). Both describe the same [`Meta`]
/// ([`Meta::to_pairs`] / [`Meta::from_pairs`] are lossless), so a later
/// protocol version can stop writing `meta`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireContent {
    /// The opaque value bytes (empty for a tombstone).
    #[prost(bytes = "bytes", tag = "1")]
    pub value: Bytes,
    /// The writer's Content-Type.
    #[prost(string, tag = "2")]
    pub content_type: String,
    /// True for a tombstone.
    #[prost(bool, tag = "3")]
    pub deleted: bool,
    /// Write time in microseconds since the Unix epoch.
    #[prost(uint64, tag = "4")]
    pub modified_micros: u64,
    /// The metadata as sorted string pairs ([`Meta::to_pairs`]).
    #[prost(message, repeated, tag = "5")]
    pub meta: Vec<WireMetaPair>,
    /// The metadata, typed (absent: none, or a sender that only wrote `meta`).
    #[prost(message, optional, tag = "6")]
    pub typed_meta: Option<WireMeta>,
}

fn pair_to_wire((name, value): &(String, String)) -> WireMetaPair {
    WireMetaPair {
        name: name.clone(),
        value: value.clone(),
    }
}

fn pair_from_wire(p: WireMetaPair) -> (String, String) {
    (p.name, p.value)
}

impl WireForm for Meta {
    type Wire = WireMeta;

    fn to_wire(&self) -> WireMeta {
        WireMeta {
            idempotency: self
                .idempotency
                .iter()
                .map(|r| WireIdempotencyRecord {
                    key: r.key.clone(),
                    at_micros: r.at_micros,
                })
                .collect(),
            user: self.user.iter().map(pair_to_wire).collect(),
            links: self
                .links
                .iter()
                .map(|l| WireLink {
                    bucket: l.bucket.clone(),
                    key: l.key.clone(),
                    tag: l.tag.clone(),
                })
                .collect(),
            indexes: self.indexes.iter().map(pair_to_wire).collect(),
            extra: self.extra.iter().map(pair_to_wire).collect(),
        }
    }

    /// Any input is accepted and normalised ([`Meta::normalize`]).
    fn from_wire(w: WireMeta) -> Result<Self, WireError> {
        let meta = Meta {
            idempotency: w
                .idempotency
                .into_iter()
                .map(|r| IdempotencyRecord {
                    key: r.key,
                    at_micros: r.at_micros,
                })
                .collect(),
            user: w.user.into_iter().map(pair_from_wire).collect(),
            links: w
                .links
                .into_iter()
                .map(|l| Link {
                    bucket: l.bucket,
                    key: l.key,
                    tag: l.tag,
                })
                .collect(),
            indexes: w.indexes.into_iter().map(pair_from_wire).collect(),
            extra: w.extra.into_iter().map(pair_from_wire).collect(),
        };
        Ok(meta.normalized())
    }
}

impl WireForm for Content {
    type Wire = WireContent;

    fn to_wire(&self) -> WireContent {
        let (meta, typed_meta) = if self.meta.is_empty() {
            (Vec::new(), None)
        } else {
            let pairs = self.meta.to_pairs();
            (
                pairs.iter().map(pair_to_wire).collect(),
                Some(self.meta.to_wire()),
            )
        };
        WireContent {
            value: self.value.clone(),
            content_type: self.content_type.clone(),
            deleted: self.deleted,
            modified_micros: self.modified_micros,
            meta,
            typed_meta,
        }
    }

    fn from_wire(w: WireContent) -> Result<Self, WireError> {
        let meta = match w.typed_meta {
            Some(typed) => Meta::from_wire(typed)?,
            None => Meta::from_pairs(w.meta.into_iter().map(pair_from_wire).collect()),
        };
        Ok(Content {
            value: w.value,
            content_type: w.content_type,
            deleted: w.deleted,
            modified_micros: w.modified_micros,
            meta,
        })
    }
}

/// One `(actor, counter)` pair: a version vector entry or a dot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireDot {
    /// The actor (a node id).
    #[prost(string, tag = "1")]
    pub actor: String,
    /// Its event counter.
    #[prost(uint64, tag = "2")]
    pub counter: u64,
}

/// The protobuf form of a [`VersionVector`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireVersionVector {
    /// The entries, in actor order.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<WireDot>,
}

impl WireForm for VersionVector {
    type Wire = WireVersionVector;

    fn to_wire(&self) -> WireVersionVector {
        WireVersionVector {
            entries: self
                .entries()
                .iter()
                .map(|(actor, counter)| WireDot {
                    actor: actor.clone(),
                    counter: *counter,
                })
                .collect(),
        }
    }

    /// Any list of pairs is accepted and normalised
    /// ([`VersionVector::from_pairs`]: sorted, duplicates merged, zero
    /// counters dropped).
    fn from_wire(w: WireVersionVector) -> Result<Self, WireError> {
        Ok(VersionVector::from_pairs(
            w.entries.into_iter().map(|d| (d.actor, d.counter)),
        ))
    }
}

// ---------------------------------------------------------------------------
// Client writes

/// A client write as the coordinator needs it; forwarded as is when the
/// receiving node is not a primary of the key ([`Coordinate`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A convergent data type operation (`dynkv_crdt::Update`, encoded):
    /// the coordinating primary applies it with its own actor to the merge
    /// of the states it holds and stores the result as `content`'s value,
    /// superseding them. `None`: an ordinary write of `content`.
    pub datatype_op: Option<Bytes>,
}

/// The protobuf form of a [`WriteRequest`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireWriteRequest {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The value or tombstone (required).
    #[prost(message, optional, tag = "2")]
    pub content: Option<WireContent>,
    /// What the writer had seen (absent: blind write).
    #[prost(message, optional, tag = "3")]
    pub context: Option<WireVersionVector>,
    /// Acknowledgements needed (required).
    #[prost(message, optional, tag = "4")]
    pub w: Option<WireQuorum>,
    /// Count fallback copies toward `w`.
    #[prost(bool, tag = "5")]
    pub sloppy: bool,
    /// Time left, in milliseconds.
    #[prost(uint64, tag = "6")]
    pub timeout_ms: u64,
    /// The client's idempotency key.
    #[prost(string, optional, tag = "7")]
    pub idempotency_key: Option<String>,
    /// The key's replica count, when not the cluster's.
    #[prost(uint32, optional, tag = "8")]
    pub n_val: Option<u32>,
    /// Replace every sibling the coordinator holds.
    #[prost(bool, tag = "9")]
    pub supersede: bool,
    /// A data type operation (absent: an ordinary write, as older nodes
    /// send).
    #[prost(bytes = "bytes", optional, tag = "10")]
    pub datatype_op: Option<Bytes>,
}

impl WireForm for WriteRequest {
    type Wire = WireWriteRequest;

    fn to_wire(&self) -> WireWriteRequest {
        WireWriteRequest {
            key: self.key.clone(),
            content: Some(self.content.to_wire()),
            context: Some(self.context.to_wire()),
            w: Some(self.w.to_wire()),
            sloppy: self.sloppy,
            timeout_ms: self.timeout_ms,
            idempotency_key: self.idempotency_key.clone(),
            n_val: self.n_val,
            supersede: self.supersede,
            datatype_op: self.datatype_op.clone(),
        }
    }

    fn from_wire(w: WireWriteRequest) -> Result<Self, WireError> {
        let content = w
            .content
            .ok_or_else(|| WireError::Invalid("write without content".into()))?;
        let quorum =
            w.w.ok_or_else(|| WireError::Invalid("write without a quorum".into()))?;
        Ok(WriteRequest {
            key: w.key,
            content: Content::from_wire(content)?,
            context: VersionVector::from_wire(w.context.unwrap_or_default())?,
            w: Quorum::from_wire(quorum)?,
            sloppy: w.sloppy,
            timeout_ms: w.timeout_ms,
            idempotency_key: w.idempotency_key,
            n_val: w.n_val,
            supersede: w.supersede,
            datatype_op: w.datatype_op,
        })
    }
}

/// A coordinated write's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// The coordinator's object after the write.
    pub object: Object,
    /// True when the idempotency key showed the write was already applied,
    /// so nothing new was written.
    pub replayed: bool,
    /// The dot `(coordinator, counter)` the new value got (`None` when
    /// replayed): lets a verifier tell which later writes saw this one.
    pub dot: Option<(String, u64)>,
    /// What the coordinator's replicas did for this write, for the
    /// client's `X-Dynkv-Replicas` header (all zero from a node that does
    /// not report it).
    pub replicas: ReplicaReport,
}

/// What the replicas of one client request did before the client was
/// answered: the numbers of the `X-Dynkv-Replicas` header.
///
/// - `asked`: replicas the request was sent to: the coordinator's own
///   copy included, replacements for failed replicas, speculative extra
///   reads, fallbacks taking hints, and replicas asked for a digest only.
/// - `answered`: replicas that answered successfully before the client
///   was answered (for a write: acknowledged, its own copy included).
/// - `repaired`: replicas a read found behind the merged answer, to which
///   read repair sends it (after the answer, so a repair can still fail;
///   late replies and digests may repair more, counted in the metrics).
///   Always 0 for a write.
/// - `sloppy`: fallbacks standing in for unreachable primaries: for a
///   write, hinted copies acknowledged (the coordinator's own when it is
///   itself a fallback); for a read, fallbacks that answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// Replicas asked.
    pub asked: u32,
    /// Replicas that answered in time.
    pub answered: u32,
    /// Replicas sent a read repair.
    pub repaired: u32,
    /// Fallbacks used in place of primaries.
    pub sloppy: u32,
}

impl std::fmt::Display for ReplicaReport {
    /// The header's form: `asked=3 answered=2 repaired=1 sloppy=0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "asked={} answered={} repaired={} sloppy={}",
            self.asked, self.answered, self.repaired, self.sloppy
        )
    }
}

/// The protobuf form of a [`ReplicaReport`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReplicaReport {
    /// Replicas asked.
    #[prost(uint32, tag = "1")]
    pub asked: u32,
    /// Replicas that answered in time.
    #[prost(uint32, tag = "2")]
    pub answered: u32,
    /// Replicas sent a read repair.
    #[prost(uint32, tag = "3")]
    pub repaired: u32,
    /// Fallbacks used.
    #[prost(uint32, tag = "4")]
    pub sloppy: u32,
}

/// The protobuf form of a [`WriteOutcome`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireWriteOutcome {
    /// The object, in its storage encoding.
    #[prost(bytes = "bytes", tag = "1")]
    pub object: Bytes,
    /// The write was a replay.
    #[prost(bool, tag = "2")]
    pub replayed: bool,
    /// The new value's dot.
    #[prost(message, optional, tag = "3")]
    pub dot: Option<WireDot>,
    /// What the replicas did (absent from a node that does not report it).
    #[prost(message, optional, tag = "4")]
    pub replicas: Option<WireReplicaReport>,
}

impl WireForm for WriteOutcome {
    type Wire = WireWriteOutcome;

    fn to_wire(&self) -> WireWriteOutcome {
        WireWriteOutcome {
            object: object_to_wire(&self.object),
            replayed: self.replayed,
            dot: self.dot.as_ref().map(|(actor, counter)| WireDot {
                actor: actor.clone(),
                counter: *counter,
            }),
            replicas: Some(WireReplicaReport {
                asked: self.replicas.asked,
                answered: self.replicas.answered,
                repaired: self.replicas.repaired,
                sloppy: self.replicas.sloppy,
            }),
        }
    }

    fn from_wire(w: WireWriteOutcome) -> Result<Self, WireError> {
        Ok(WriteOutcome {
            object: object_from_wire(&w.object)?,
            replayed: w.replayed,
            dot: w.dot.map(|d| (d.actor, d.counter)),
            replicas: w
                .replicas
                .map(|r| ReplicaReport {
                    asked: r.asked,
                    answered: r.answered,
                    repaired: r.repaired,
                    sloppy: r.sloppy,
                })
                .unwrap_or_default(),
        })
    }
}

// ---------------------------------------------------------------------------
// Endpoints

/// Read the local replica of a key. Answer: [`ReadReply`].
///
/// ## Digest reads (protocol version 2)
/// `digest_only` was added in protocol version 2: the coordinator asks the
/// replicas it only needs to *compare* (not the one whose object it will
/// return) for the object's [`Object::digest`] instead of the object. A
/// version-2 replica may then answer with only [`ReadReply::digest`]; a
/// version-1 replica does not know the field, ignores it (protobuf skips
/// unknown fields) and answers the object, so the asker must accept either
/// form. A version-1 asker never sends the field, which a version-2
/// replica reads as `false`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The key.
    pub key: Bytes,
    /// Set when asking a fallback: also return what it holds as a hint
    /// for this primary (sloppy reads).
    pub hint_for: Option<NodeId>,
    /// Protocol version 2: a digest of the object is enough (see above).
    pub digest_only: bool,
}

/// The protobuf form of a [`Read`]. Tag 3 is the version-2 field.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireRead {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The primary to also return hints for (empty: none).
    #[prost(string, tag = "2")]
    pub hint_for: String,
    /// Version 2: a digest is enough.
    #[prost(bool, tag = "3")]
    pub digest_only: bool,
}

impl WireForm for Read {
    type Wire = WireRead;

    fn to_wire(&self) -> WireRead {
        WireRead {
            key: self.key.clone(),
            hint_for: node_to_wire(&self.hint_for),
            digest_only: self.digest_only,
        }
    }

    fn from_wire(w: WireRead) -> Result<Self, WireError> {
        Ok(Read {
            key: w.key,
            hint_for: node_from_wire(w.hint_for),
            digest_only: w.digest_only,
        })
    }
}

impl Endpoint for Read {
    const ID: u16 = 10;
    const NAME: &'static str = "read";
    const CLASS: Class = Class::Interactive;
    type Response = ReadReply;
}

/// The local replica of a key, or its digest.
///
/// - `object: None, digest: None`: the key is not stored here.
/// - `object: Some(_)`: the object (always so from a version-1 replica,
///   and from a version-2 replica unless `digest_only` was asked); a
///   version-2 replica may add its digest.
/// - `object: None, digest: Some(d)`: a version-2 replica answering a
///   `digest_only` read; `d` is the stored object's [`Object::digest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadReply {
    /// The local replica (`None`: not stored here, or only the digest was
    /// sent).
    pub object: Option<Object>,
    /// Protocol version 2: the object's [`Object::digest`].
    pub digest: Option<u64>,
    /// How long the replica took to read, in microseconds on its own
    /// clock (see [`Stored::service_micros`]); `None` when not reported.
    pub service_micros: Option<u64>,
    /// When the replica took the request (see [`Stored::received_micros`]).
    pub received_micros: Option<u64>,
}

/// The protobuf form of a [`ReadReply`]. Tag 2 is the version-2 field;
/// tag 3 is optional and ignored by the nodes before it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReadReply {
    /// The object, in its storage encoding (absent: none).
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub object: Option<Bytes>,
    /// Version 2: the object's digest.
    #[prost(fixed64, optional, tag = "2")]
    pub digest: Option<u64>,
    /// The replica's service time, µs (absent: not reported).
    #[prost(uint64, optional, tag = "3")]
    pub service_micros: Option<u64>,
    /// The replica's wall clock when it took the request, µs since the
    /// Unix epoch (absent: not reported).
    #[prost(uint64, optional, tag = "4")]
    pub received_micros: Option<u64>,
}

impl WireForm for ReadReply {
    type Wire = WireReadReply;

    fn to_wire(&self) -> WireReadReply {
        WireReadReply {
            object: self.object.as_ref().map(object_to_wire),
            digest: self.digest,
            service_micros: self.service_micros,
            received_micros: self.received_micros,
        }
    }

    fn from_wire(w: WireReadReply) -> Result<Self, WireError> {
        Ok(ReadReply {
            object: w.object.map(|o| object_from_wire(&o)).transpose()?,
            digest: w.digest,
            service_micros: w.service_micros,
            received_micros: w.received_micros,
        })
    }
}

/// Merge this object into the local replica (`sync`). Answer: [`Stored`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replicate {
    /// The key.
    pub key: Bytes,
    /// The coordinator's (or repairer's) state of the key.
    pub object: Object,
}

/// The protobuf form of a [`Replicate`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReplicate {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The object, in its storage encoding.
    #[prost(bytes = "bytes", tag = "2")]
    pub object: Bytes,
}

impl WireForm for Replicate {
    type Wire = WireReplicate;

    fn to_wire(&self) -> WireReplicate {
        WireReplicate {
            key: self.key.clone(),
            object: object_to_wire(&self.object),
        }
    }

    fn from_wire(w: WireReplicate) -> Result<Self, WireError> {
        Ok(Replicate {
            key: w.key,
            object: object_from_wire(&w.object)?,
        })
    }
}

impl Endpoint for Replicate {
    const ID: u16 = 11;
    const NAME: &'static str = "replicate";
    const CLASS: Class = Class::Interactive;
    type Response = Stored;
}

/// The object was merged (or hinted) durably.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// How long the replica took to store it, from taking the request to
    /// answering, in microseconds on its own clock: the coordinator splits
    /// its round trip around it into the one-way latencies of the
    /// staleness model (`dynkv-pbs`). `None` from a node that does not
    /// report it (protobuf reads a missing field as absent).
    pub service_micros: Option<u64>,
    /// When the replica took the request, µs since the Unix epoch on its
    /// wall clock: with synchronised clocks, the coordinator reads the
    /// one-way time of the request from it (`None`: not reported).
    pub received_micros: Option<u64>,
}

/// The protobuf form of [`Stored`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireStored {
    /// The replica's service time, µs (absent: not reported).
    #[prost(uint64, optional, tag = "1")]
    pub service_micros: Option<u64>,
    /// The replica's wall clock when it took the request, µs since the
    /// Unix epoch (absent: not reported).
    #[prost(uint64, optional, tag = "2")]
    pub received_micros: Option<u64>,
}

impl WireForm for Stored {
    type Wire = WireStored;

    fn to_wire(&self) -> WireStored {
        WireStored {
            service_micros: self.service_micros,
            received_micros: self.received_micros,
        }
    }

    fn from_wire(w: WireStored) -> Result<Self, WireError> {
        Ok(Stored {
            service_micros: w.service_micros,
            received_micros: w.received_micros,
        })
    }
}

/// Coordinate this client write (sent by a node outside the key's
/// preference list to a primary). Answer: [`WriteOutcome`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coordinate(pub WriteRequest);

impl WireForm for Coordinate {
    type Wire = WireWriteRequest;

    fn to_wire(&self) -> WireWriteRequest {
        self.0.to_wire()
    }

    fn from_wire(w: WireWriteRequest) -> Result<Self, WireError> {
        WriteRequest::from_wire(w).map(Coordinate)
    }
}

impl Endpoint for Coordinate {
    const ID: u16 = 12;
    const NAME: &'static str = "coordinate";
    const CLASS: Class = Class::Interactive;
    type Response = WriteOutcome;
}

/// Coordinate this sloppy write as a fallback: no primary of the key could
/// be reached, so the receiver numbers it under its own actor, keeps it as
/// a hint and hands it off like any hint (Dynamo's "always writeable").
/// Answer: [`WriteOutcome`]. An endpoint of its own rather than a flag: a
/// node that predates it answers `UnknownEndpoint` instead of storing the
/// value as a primary would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinateFallback(pub WriteRequest);

impl WireForm for CoordinateFallback {
    type Wire = WireWriteRequest;

    fn to_wire(&self) -> WireWriteRequest {
        self.0.to_wire()
    }

    fn from_wire(w: WireWriteRequest) -> Result<Self, WireError> {
        WriteRequest::from_wire(w).map(CoordinateFallback)
    }
}

impl Endpoint for CoordinateFallback {
    const ID: u16 = 13;
    const NAME: &'static str = "coordinate_fallback";
    const CLASS: Class = Class::Interactive;
    type Response = WriteOutcome;
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{self, round_trip};
    use super::*;
    use crate::wire::Message;
    use dynkv_vclock::{Entry, encode_object};
    use proptest::prelude::*;

    fn write_request() -> WriteRequest {
        let content = Content::value("hello", "text/plain", 42).with_meta(Meta::from_pairs(vec![
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("riak.meta.color".into(), "red".into()),
            ("riak.link.00000".into(), "b/k/t".into()),
            ("dynkv.idem.req".into(), "5".into()),
        ]));
        WriteRequest {
            key: Bytes::from_static(b"ns\0key"),
            content,
            context: VersionVector::from_pairs([("n1".to_owned(), 3), ("n2".to_owned(), 1)]),
            w: Quorum::Count(2),
            sloppy: true,
            timeout_ms: 1500,
            idempotency_key: Some("idem-1".into()),
            n_val: Some(2),
            supersede: true,
            datatype_op: None,
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

    #[test]
    fn quorum_display_parses_back() {
        for q in [Quorum::One, Quorum::Majority, Quorum::All, Quorum::Count(3)] {
            assert_eq!(Quorum::parse(&q.to_string(), 5), Ok(q));
        }
    }

    #[test]
    fn quorums_round_trip() {
        for q in [
            Quorum::One,
            Quorum::Majority,
            Quorum::All,
            Quorum::Count(1),
            Quorum::Count(u32::MAX),
        ] {
            round_trip(q);
        }
    }

    #[test]
    fn bad_quorums_are_invalid() {
        for (kind, count) in [(0, 0), (4, 0), (5, 1), (u32::MAX, 3)] {
            let w = WireQuorum { kind, count };
            assert!(
                matches!(Quorum::from_wire(w), Err(WireError::Invalid(_))),
                "kind {kind} count {count}"
            );
        }
    }

    #[test]
    fn content_and_version_vectors_round_trip() {
        round_trip(Content::value("v", "t", 7));
        round_trip(Content::tombstone(9));
        round_trip(write_request().content);
        round_trip(VersionVector::new());
        round_trip(write_request().context);
    }

    #[test]
    fn metadata_travels_typed_and_as_pairs() {
        let content = write_request().content;
        let w = content.to_wire();
        // Both forms, each complete: a node of the release before typed
        // metadata reads the pairs.
        assert_eq!(
            w.meta
                .iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect::<Vec<_>>(),
            content.meta.to_pairs()
        );
        assert_eq!(w.typed_meta.as_ref().unwrap().idempotency.len(), 1);
        assert_eq!(w.typed_meta.as_ref().unwrap().links.len(), 1);
        // What that release sends (pairs only) reads as the same content.
        let old = WireContent {
            typed_meta: None,
            ..w.clone()
        };
        assert_eq!(Content::from_wire(old), Ok(content.clone()));
        // With both, the typed form is the one read.
        let typed_only = WireContent {
            meta: vec![],
            ..w.clone()
        };
        assert_eq!(Content::from_wire(typed_only), Ok(content.clone()));
        // No metadata: neither field.
        let plain = Content::value("v", "t", 1).to_wire();
        assert!(plain.meta.is_empty() && plain.typed_meta.is_none());
        // Typed fields out of place are normalised.
        let mut odd = w.typed_meta.clone().unwrap();
        odd.extra.push(WireMetaPair {
            name: "riak.meta.b".into(),
            value: "1".into(),
        });
        let m = Meta::from_wire(odd).unwrap();
        assert!(m.extra.iter().all(|(n, _)| !n.starts_with("riak.meta.")));
        assert!(m.user.contains(&("b".to_string(), "1".to_string())));
    }

    #[test]
    fn version_vectors_are_normalised_on_decode() {
        let w = WireVersionVector {
            entries: vec![
                WireDot {
                    actor: "b".into(),
                    counter: 1,
                },
                WireDot {
                    actor: "a".into(),
                    counter: 0,
                },
                WireDot {
                    actor: "b".into(),
                    counter: 4,
                },
            ],
        };
        assert_eq!(
            VersionVector::from_wire(w),
            Ok(VersionVector::from_pairs([("b".to_owned(), 4)]))
        );
    }

    #[test]
    fn writes_round_trip() {
        round_trip(write_request());
        round_trip(Coordinate(write_request()));
        let blind = WriteRequest {
            context: VersionVector::new(),
            w: Quorum::Majority,
            idempotency_key: None,
            n_val: None,
            sloppy: false,
            supersede: false,
            datatype_op: None,
            content: Content::tombstone(1),
            ..write_request()
        };
        round_trip(Coordinate(blind));
        let datatype = WriteRequest {
            datatype_op: Some(Bytes::from_static(b"\x01op")),
            ..write_request()
        };
        round_trip(Coordinate(datatype));
        // An older node's write has no operation: an ordinary write.
        let mut older = write_request().to_wire();
        older.datatype_op = None;
        assert_eq!(WriteRequest::from_wire(older).unwrap().datatype_op, None);
        round_trip(WriteOutcome {
            object: testutil::object(),
            replayed: false,
            dot: Some(("n1".into(), 2)),
            replicas: ReplicaReport {
                asked: 3,
                answered: 2,
                repaired: 0,
                sloppy: 1,
            },
        });
        // An older coordinator reports nothing: all zero.
        let mut older = WriteOutcome {
            object: testutil::small_object("x"),
            replayed: false,
            dot: None,
            replicas: ReplicaReport::default(),
        }
        .to_wire();
        older.replicas = None;
        assert_eq!(
            WriteOutcome::from_wire(older).unwrap().replicas,
            ReplicaReport::default()
        );
        assert_eq!(
            ReplicaReport {
                asked: 3,
                answered: 2,
                repaired: 1,
                sloppy: 0
            }
            .to_string(),
            "asked=3 answered=2 repaired=1 sloppy=0"
        );
        round_trip(WriteOutcome {
            object: testutil::small_object("x"),
            replayed: true,
            dot: None,
            replicas: ReplicaReport::default(),
        });
    }

    #[test]
    fn writes_without_required_fields_are_invalid() {
        let mut w = write_request().to_wire();
        w.content = None;
        assert!(matches!(
            WriteRequest::from_wire(w),
            Err(WireError::Invalid(_))
        ));
        let mut w = write_request().to_wire();
        w.w = None;
        assert!(matches!(
            Coordinate::from_wire(w),
            Err(WireError::Invalid(_))
        ));
        // A missing context is a blind write.
        let mut w = write_request().to_wire();
        w.context = None;
        assert!(WriteRequest::from_wire(w).unwrap().context.is_empty());
        // An outcome without an object is invalid.
        assert!(matches!(
            WriteOutcome::decode(Bytes::new()),
            Err(WireError::Invalid(_))
        ));
    }

    #[test]
    fn reads_round_trip() {
        round_trip(Read {
            key: Bytes::from_static(b"k"),
            hint_for: None,
            digest_only: false,
        });
        round_trip(Read {
            key: Bytes::from_static(b"\xff\x00k"),
            hint_for: Some(NodeId::from("n4")),
            digest_only: true,
        });
        let o = testutil::object();
        round_trip(ReadReply {
            object: None,
            digest: None,
            service_micros: None,
            received_micros: None,
        });
        round_trip(ReadReply {
            object: Some(o.clone()),
            digest: None,
            service_micros: None,
            received_micros: None,
        });
        round_trip(ReadReply {
            object: None,
            digest: Some(o.digest()),
            service_micros: None,
            received_micros: None,
        });
        round_trip(ReadReply {
            object: Some(o.clone()),
            digest: Some(o.digest()),
            service_micros: None,
            received_micros: None,
        });
        round_trip(ReadReply {
            object: None,
            digest: Some(0),
            service_micros: None,
            received_micros: None,
        });
    }

    #[test]
    fn replicate_and_stored_round_trip() {
        round_trip(Replicate {
            key: Bytes::from_static(b"k"),
            object: testutil::object(),
        });
        round_trip(Replicate {
            key: Bytes::new(),
            object: Object::new(),
        });
        round_trip(Stored::default());
        round_trip(Stored {
            service_micros: Some(123),
            received_micros: Some(1_700_000_000_000_000),
        });
    }

    #[test]
    fn corrupt_object_in_replicate_is_an_error() {
        let good = Replicate {
            key: Bytes::from_static(b"k"),
            object: testutil::object(),
        }
        .to_wire();
        let bad_objects: Vec<Bytes> = vec![
            Bytes::new(),                               // empty
            Bytes::from_static(&[9, 0, 0]),             // unknown object version
            Bytes::from_static(&[1, 0xff, 0xff, 0xff]), // truncated postcard
            good.object.slice(..good.object.len() - 1), // truncated object
            {
                let mut v = good.object.to_vec();
                v.push(0); // trailing byte
                Bytes::from(v)
            },
        ];
        for object in bad_objects {
            let wire = WireReplicate {
                key: good.key.clone(),
                object,
            };
            let body = Bytes::from(prost::Message::encode_to_vec(&wire));
            assert!(
                matches!(Replicate::decode(body), Err(WireError::Invalid(_))),
                "{wire:?}"
            );
        }
        // Well-formed postcard but a broken DVVSet invariant (entries out
        // of actor order): decode_object's check makes it an error too.
        #[derive(serde::Serialize)]
        struct RawSet {
            entries: Vec<Entry<Content>>,
            anonymous: Vec<Content>,
        }
        let entry = |actor: &str| Entry {
            actor: actor.to_owned(),
            counter: 1,
            values: vec![Content::value("v", "t", 1)],
        };
        let replicate_of = |entries: Vec<Entry<Content>>| {
            let mut object = encode_object(&Object::new());
            object.truncate(1); // the format version byte
            object.extend(
                postcard::to_allocvec(&RawSet {
                    entries,
                    anonymous: vec![],
                })
                .unwrap(),
            );
            let wire = WireReplicate {
                key: good.key.clone(),
                object: Bytes::from(object),
            };
            Bytes::from(prost::Message::encode_to_vec(&wire))
        };
        // In order, the hand-built object is accepted (so the layout is right)...
        assert!(Replicate::decode(replicate_of(vec![entry("a"), entry("b")])).is_ok());
        // ...and out of order it is refused.
        assert!(matches!(
            Replicate::decode(replicate_of(vec![entry("b"), entry("a")])),
            Err(WireError::Invalid(_))
        ));
        // A corrupt object in a read reply is an error too.
        let reply = WireReadReply {
            object: Some(Bytes::from_static(&[1, 0xff])),
            digest: None,
            service_micros: None,
            received_micros: None,
        };
        assert!(matches!(
            ReadReply::decode(Bytes::from(prost::Message::encode_to_vec(&reply))),
            Err(WireError::Invalid(_))
        ));
    }

    #[test]
    fn not_a_protobuf_message_is_malformed() {
        // Field 1 as a length-delimited value longer than the body.
        let body = Bytes::from_static(&[0x0a, 0x7f, 1, 2]);
        assert!(matches!(
            Replicate::decode(body.clone()),
            Err(WireError::Malformed(_))
        ));
        assert!(matches!(Read::decode(body), Err(WireError::Malformed(_))));
    }

    // -----------------------------------------------------------------------
    // Compatibility between protocol versions 1 and 2.

    /// The version-1 schema of `Read`: no `digest_only`.
    #[derive(Clone, PartialEq, prost::Message)]
    struct WireReadV1 {
        #[prost(bytes = "bytes", tag = "1")]
        key: Bytes,
        #[prost(string, tag = "2")]
        hint_for: String,
    }

    /// The version-1 schema of `ReadReply`: no `digest`.
    #[derive(Clone, PartialEq, prost::Message)]
    struct WireReadReplyV1 {
        #[prost(bytes = "bytes", optional, tag = "1")]
        object: Option<Bytes>,
    }

    #[test]
    fn v1_replica_reads_a_v2_read() {
        let v2 = Read {
            key: Bytes::from_static(b"k"),
            hint_for: Some(NodeId::from("n2")),
            digest_only: true,
        };
        let v1 =
            <WireReadV1 as prost::Message>::decode(v2.encode()).expect("unknown field skipped");
        assert_eq!(&v1.key[..], b"k");
        assert_eq!(v1.hint_for, "n2");
    }

    #[test]
    fn v2_replica_reads_a_v1_read() {
        let v1 = WireReadV1 {
            key: Bytes::from_static(b"k"),
            hint_for: String::new(),
        };
        let v2 = Read::decode(Bytes::from(prost::Message::encode_to_vec(&v1))).unwrap();
        assert_eq!(
            v2,
            Read {
                key: Bytes::from_static(b"k"),
                hint_for: None,
                digest_only: false,
            }
        );
    }

    #[test]
    fn v1_coordinator_reads_a_v2_reply() {
        let o = testutil::object();
        let v2 = ReadReply {
            object: Some(o.clone()),
            digest: Some(o.digest()),
            service_micros: None,
            received_micros: None,
        };
        let v1 = <WireReadReplyV1 as prost::Message>::decode(v2.encode())
            .expect("unknown field skipped");
        assert_eq!(object_from_wire(&v1.object.unwrap()), Ok(o));
        // Not stored: v1 sees `None` either way.
        let v2 = ReadReply {
            object: None,
            digest: None,
            service_micros: None,
            received_micros: None,
        };
        let v1 = <WireReadReplyV1 as prost::Message>::decode(v2.encode()).unwrap();
        assert_eq!(v1.object, None);
    }

    #[test]
    fn v2_coordinator_reads_a_v1_reply() {
        let o = testutil::object();
        let v1 = WireReadReplyV1 {
            object: Some(object_to_wire(&o)),
        };
        let v2 = ReadReply::decode(Bytes::from(prost::Message::encode_to_vec(&v1))).unwrap();
        assert_eq!(
            v2,
            ReadReply {
                object: Some(o),
                digest: None,
                service_micros: None,
                received_micros: None,
            }
        );
        let v1 = WireReadReplyV1 { object: None };
        let v2 = ReadReply::decode(Bytes::from(prost::Message::encode_to_vec(&v1))).unwrap();
        assert_eq!(
            v2,
            ReadReply {
                object: None,
                digest: None,
                service_micros: None,
                received_micros: None
            }
        );
    }

    fn bytes_in(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..max)
    }

    proptest! {
        #[test]
        fn decoders_never_panic(raw in bytes_in(512)) {
            let b = Bytes::from(raw);
            let _ = Read::decode(b.clone());
            let _ = ReadReply::decode(b.clone());
            let _ = Replicate::decode(b.clone());
            let _ = Stored::decode(b.clone());
            let _ = Coordinate::decode(b.clone());
            let _ = WriteRequest::decode(b.clone());
            let _ = WriteOutcome::decode(b.clone());
            let _ = Quorum::decode(b.clone());
            let _ = Content::decode(b.clone());
            let _ = VersionVector::decode(b);
        }

        /// Random bytes rarely get past the protobuf layer; damaged valid
        /// messages do, and reach the object decoder.
        #[test]
        fn damaged_messages_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let bodies = [
                Replicate { key: Bytes::from_static(b"k"), object: testutil::object() }.encode(),
                ReadReply { object: Some(testutil::object()), digest: Some(1), service_micros: Some(5), received_micros: Some(9) }.encode(),
                Coordinate(write_request()).encode(),
                WriteOutcome { object: testutil::object(), replayed: false, dot: Some(("n1".into(), 1)), replicas: ReplicaReport::default() }.encode(),
            ];
            for body in bodies {
                let mut v = body.to_vec();
                let i = at.index(v.len());
                v[i] = byte;
                let _ = Replicate::decode(Bytes::from(v.clone()));
                let _ = ReadReply::decode(Bytes::from(v.clone()));
                let _ = Coordinate::decode(Bytes::from(v.clone()));
                let _ = WriteOutcome::decode(Bytes::from(v.clone()));
                v.truncate(cut.index(v.len() + 1));
                let _ = Replicate::decode(Bytes::from(v.clone()));
                let _ = ReadReply::decode(Bytes::from(v.clone()));
                let _ = Coordinate::decode(Bytes::from(v.clone()));
                let _ = WriteOutcome::decode(Bytes::from(v));
            }
        }
    }
}
