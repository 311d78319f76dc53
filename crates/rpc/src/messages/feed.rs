//! Watching keys and following the change feed (endpoint IDs 62–69; 60
//! and 61 are tombstone reaping's).
//!
//! - [`WatchKey`]: a long poll sent by the node holding a client's watch to
//!   each primary of the key: "answer as soon as your copy holds a version
//!   this context has not seen, or after `wait_ms`". The primary waits on
//!   its in-process notifier, never by polling its store.
//! - [`FeedRead`]: one range of a node's change log (entries after a
//!   position, up to a bound, under a key prefix), which the node serving a
//!   feed asks of every member and merges.

use bytes::Bytes;
use dynkv_vclock::{Content, Object, VersionVector};

use super::kv::{WireContent, WireVersionVector};
use super::{object_from_wire, object_to_wire};
use crate::wire::{Class, Endpoint, WireError, WireForm};

/// Wait until this node's copy of `key` holds a version `context` has not
/// seen, at most `wait_ms`. Answer: [`WatchReply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchKey {
    /// The key.
    pub key: Bytes,
    /// What the watcher has seen.
    pub context: VersionVector,
    /// Longest wait, milliseconds (the receiver caps it).
    pub wait_ms: u64,
}

/// The protobuf form of a [`WatchKey`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireWatchKey {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The watcher's context (absent: empty).
    #[prost(message, optional, tag = "2")]
    pub context: Option<WireVersionVector>,
    /// Longest wait, milliseconds.
    #[prost(uint64, tag = "3")]
    pub wait_ms: u64,
}

impl WireForm for WatchKey {
    type Wire = WireWatchKey;

    fn to_wire(&self) -> WireWatchKey {
        WireWatchKey {
            key: self.key.clone(),
            context: Some(self.context.to_wire()),
            wait_ms: self.wait_ms,
        }
    }

    fn from_wire(w: WireWatchKey) -> Result<Self, WireError> {
        Ok(WatchKey {
            key: w.key,
            context: VersionVector::from_wire(w.context.unwrap_or_default())?,
            wait_ms: w.wait_ms,
        })
    }
}

impl Endpoint for WatchKey {
    const ID: u16 = 62;
    const NAME: &'static str = "watch_key";
    // Small frames whose answer a client waits for: never behind bulk
    // transfers. They hold a slot of the connection while they wait, which
    // the per-node watch cap bounds.
    const CLASS: Class = Class::Interactive;
    type Response = WatchReply;
}

/// The answer to a [`WatchKey`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchReply {
    /// This node's copy when it holds a version the context has not seen;
    /// `None` when the wait ended without one.
    pub object: Option<Object>,
}

/// The protobuf form of a [`WatchReply`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireWatchReply {
    /// True when the copy holds an unseen version (then `object` is set).
    #[prost(bool, tag = "1")]
    pub changed: bool,
    /// The copy, in its storage encoding.
    #[prost(bytes = "bytes", tag = "2")]
    pub object: Bytes,
}

impl WireForm for WatchReply {
    type Wire = WireWatchReply;

    fn to_wire(&self) -> WireWatchReply {
        match &self.object {
            Some(o) => WireWatchReply {
                changed: true,
                object: object_to_wire(o),
            },
            None => WireWatchReply::default(),
        }
    }

    fn from_wire(w: WireWatchReply) -> Result<Self, WireError> {
        Ok(WatchReply {
            object: if w.changed {
                Some(object_from_wire(&w.object)?)
            } else {
                None
            },
        })
    }
}

/// One range of a node's change log: the entries after `after` and up to
/// `upto` (positions `(ts µs, h)`) whose key starts with `prefix`, at most
/// `limit`. Answer: [`FeedChunk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRead {
    /// Entries strictly after this position.
    pub after: (u64, u64),
    /// Entries at or before this position.
    pub upto: (u64, u64),
    /// Key prefix (empty: every key).
    pub prefix: Bytes,
    /// Most entries answered.
    pub limit: u32,
}

/// The protobuf form of a [`FeedRead`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireFeedRead {
    /// `after`'s time, µs.
    #[prost(fixed64, tag = "1")]
    pub after_ts: u64,
    /// `after`'s hash.
    #[prost(fixed64, tag = "2")]
    pub after_h: u64,
    /// `upto`'s time, µs.
    #[prost(fixed64, tag = "3")]
    pub upto_ts: u64,
    /// `upto`'s hash.
    #[prost(fixed64, tag = "4")]
    pub upto_h: u64,
    /// Key prefix.
    #[prost(bytes = "bytes", tag = "5")]
    pub prefix: Bytes,
    /// Most entries answered.
    #[prost(uint32, tag = "6")]
    pub limit: u32,
}

impl WireForm for FeedRead {
    type Wire = WireFeedRead;

    fn to_wire(&self) -> WireFeedRead {
        WireFeedRead {
            after_ts: self.after.0,
            after_h: self.after.1,
            upto_ts: self.upto.0,
            upto_h: self.upto.1,
            prefix: self.prefix.clone(),
            limit: self.limit,
        }
    }

    fn from_wire(w: WireFeedRead) -> Result<Self, WireError> {
        Ok(FeedRead {
            after: (w.after_ts, w.after_h),
            upto: (w.upto_ts, w.upto_h),
            prefix: w.prefix,
            limit: w.limit,
        })
    }
}

impl Endpoint for FeedRead {
    const ID: u16 = 63;
    const NAME: &'static str = "feed_read";
    // Batches of values: throughput, not latency.
    const CLASS: Class = Class::Bulk;
    type Response = FeedChunk;
}

/// One logged version, as a change log holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEntry {
    /// Its log position: the write's time (µs) and the hash of key and dot.
    pub position: (u64, u64),
    /// The key.
    pub key: Bytes,
    /// The dot's actor.
    pub actor: String,
    /// The dot's counter.
    pub counter: u64,
    /// The causal context of the state it was logged with.
    pub context: VersionVector,
    /// The value or tombstone.
    pub content: Content,
}

/// The protobuf form of a [`FeedEntry`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireFeedEntry {
    /// Position time, µs.
    #[prost(fixed64, tag = "1")]
    pub ts: u64,
    /// Position hash.
    #[prost(fixed64, tag = "2")]
    pub h: u64,
    /// The key.
    #[prost(bytes = "bytes", tag = "3")]
    pub key: Bytes,
    /// The dot's actor (required).
    #[prost(string, tag = "4")]
    pub actor: String,
    /// The dot's counter.
    #[prost(uint64, tag = "5")]
    pub counter: u64,
    /// The context.
    #[prost(message, optional, tag = "6")]
    pub context: Option<WireVersionVector>,
    /// The version (required).
    #[prost(message, optional, tag = "7")]
    pub content: Option<WireContent>,
}

/// The answer to a [`FeedRead`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedChunk {
    /// The matching entries, in log order.
    pub entries: Vec<FeedEntry>,
    /// The log was read completely up to this position.
    pub reached: (u64, u64),
    /// The log's floor (µs): it may lack entries older than this.
    pub floor: u64,
}

/// The protobuf form of a [`FeedChunk`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireFeedChunk {
    /// The entries.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<WireFeedEntry>,
    /// `reached`'s time.
    #[prost(fixed64, tag = "2")]
    pub reached_ts: u64,
    /// `reached`'s hash.
    #[prost(fixed64, tag = "3")]
    pub reached_h: u64,
    /// The floor.
    #[prost(fixed64, tag = "4")]
    pub floor: u64,
}

impl WireForm for FeedChunk {
    type Wire = WireFeedChunk;

    fn to_wire(&self) -> WireFeedChunk {
        WireFeedChunk {
            entries: self
                .entries
                .iter()
                .map(|e| WireFeedEntry {
                    ts: e.position.0,
                    h: e.position.1,
                    key: e.key.clone(),
                    actor: e.actor.clone(),
                    counter: e.counter,
                    context: Some(e.context.to_wire()),
                    content: Some(e.content.to_wire()),
                })
                .collect(),
            reached_ts: self.reached.0,
            reached_h: self.reached.1,
            floor: self.floor,
        }
    }

    fn from_wire(w: WireFeedChunk) -> Result<Self, WireError> {
        let entries = w
            .entries
            .into_iter()
            .map(|e| {
                if e.actor.is_empty() {
                    return Err(WireError::Invalid("feed_entry.actor: missing".into()));
                }
                let content = e
                    .content
                    .ok_or_else(|| WireError::Invalid("feed_entry.content: missing".into()))?;
                Ok(FeedEntry {
                    position: (e.ts, e.h),
                    key: e.key,
                    actor: e.actor,
                    counter: e.counter,
                    context: VersionVector::from_wire(e.context.unwrap_or_default())?,
                    content: Content::from_wire(content)?,
                })
            })
            .collect::<Result<_, WireError>>()?;
        Ok(FeedChunk {
            entries,
            reached: (w.reached_ts, w.reached_h),
            floor: w.floor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil;
    use super::*;
    use crate::wire::Message;

    #[test]
    fn round_trips() {
        testutil::round_trip(WatchKey {
            key: Bytes::from_static(b"k"),
            context: VersionVector::from_pairs([("n1".to_string(), 3)]),
            wait_ms: 30_000,
        });
        testutil::round_trip(WatchReply { object: None });
        testutil::round_trip(WatchReply {
            object: Some(testutil::object()),
        });
        testutil::round_trip(FeedRead {
            after: (1, 2),
            upto: (3, u64::MAX),
            prefix: Bytes::from_static(b"user/"),
            limit: 100,
        });
        testutil::round_trip(FeedChunk {
            entries: vec![FeedEntry {
                position: (10, 11),
                key: Bytes::from_static(b"user/1"),
                actor: "n1#x".into(),
                counter: 4,
                context: VersionVector::from_pairs([("n1#x".to_string(), 4)]),
                content: Content::value("v", "text/plain", 10),
            }],
            reached: (12, u64::MAX),
            floor: 5,
        });
    }

    #[test]
    fn an_entry_without_actor_or_content_is_invalid() {
        let chunk = FeedChunk {
            entries: vec![FeedEntry {
                position: (1, 1),
                key: Bytes::from_static(b"k"),
                actor: "n1".into(),
                counter: 1,
                context: VersionVector::new(),
                content: Content::tombstone(1),
            }],
            reached: (1, 1),
            floor: 0,
        };
        let mut w = chunk.to_wire();
        w.entries[0].actor.clear();
        assert!(FeedChunk::from_wire(w).is_err());
        let mut w = chunk.to_wire();
        w.entries[0].content = None;
        assert!(FeedChunk::from_wire(w).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = WatchKey::decode(Bytes::from(raw.clone()));
            let _ = WatchReply::decode(Bytes::from(raw.clone()));
            let _ = FeedRead::decode(Bytes::from(raw.clone()));
            let _ = FeedChunk::decode(Bytes::from(raw));
        }
    }
}
