//! Tombstone reaping (endpoint IDs 60–69): the driver of a partition asks
//! every member whether a batch of tombstones may go, then tells the
//! replicas to remove them. Both travel on the bulk connection. The safety
//! argument is in `dynkv_quorum::reaper`.

use bytes::Bytes;
use dynkv_vclock::VersionVector;

use super::kv::WireVersionVector;
use crate::wire::{Class, Endpoint, WireError, WireForm};

/// Reaping, step 1, sent to every member: for each `(key, clock)` (the
/// driver's tombstone and its causal context), first raise this node's
/// counter floor to the counter its own actor has in the clock (persisted),
/// then say what this node holds for the key. Answer: [`ReapStatuses`], one
/// per item, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReapCheck {
    /// The keys and the clocks of the tombstones the driver holds.
    pub items: Vec<(Bytes, VersionVector)>,
}

/// One item of a [`WireReapCheck`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReapCheckItem {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The tombstone's clock (absent: empty).
    #[prost(message, optional, tag = "2")]
    pub clock: Option<WireVersionVector>,
}

/// The protobuf form of a [`ReapCheck`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReapCheck {
    /// The items, in order.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<WireReapCheckItem>,
}

impl WireForm for ReapCheck {
    type Wire = WireReapCheck;

    fn to_wire(&self) -> WireReapCheck {
        WireReapCheck {
            items: self
                .items
                .iter()
                .map(|(key, clock)| WireReapCheckItem {
                    key: key.clone(),
                    clock: Some(clock.to_wire()),
                })
                .collect(),
        }
    }

    fn from_wire(w: WireReapCheck) -> Result<Self, WireError> {
        let items = w
            .items
            .into_iter()
            .map(|i| {
                Ok((
                    i.key,
                    VersionVector::from_wire(i.clock.unwrap_or_default())?,
                ))
            })
            .collect::<Result<_, WireError>>()?;
        Ok(ReapCheck { items })
    }
}

impl Endpoint for ReapCheck {
    const ID: u16 = 60;
    const NAME: &'static str = "reap_check";
    const CLASS: Class = Class::Bulk;
    type Response = ReapStatuses;
}

/// What one node holds for one key of a [`ReapCheck`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReapStatus {
    /// The digest of the object it stores for the key (`None`: no object).
    pub digest: Option<u64>,
    /// It keeps a hint for the key, for any owner.
    pub hinted: bool,
}

/// The protobuf form of a [`ReapStatus`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReapStatus {
    /// The object's digest (absent: no object).
    #[prost(fixed64, optional, tag = "1")]
    pub digest: Option<u64>,
    /// A hint for the key is held.
    #[prost(bool, tag = "2")]
    pub hinted: bool,
}

/// The answer to a [`ReapCheck`]: one status per item, in the order asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReapStatuses(pub Vec<ReapStatus>);

/// The protobuf form of [`ReapStatuses`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReapStatuses {
    /// The statuses, in the order of the request's items.
    #[prost(message, repeated, tag = "1")]
    pub statuses: Vec<WireReapStatus>,
}

impl WireForm for ReapStatuses {
    type Wire = WireReapStatuses;

    fn to_wire(&self) -> WireReapStatuses {
        WireReapStatuses {
            statuses: self
                .0
                .iter()
                .map(|s| WireReapStatus {
                    digest: s.digest,
                    hinted: s.hinted,
                })
                .collect(),
        }
    }

    fn from_wire(w: WireReapStatuses) -> Result<Self, WireError> {
        Ok(ReapStatuses(
            w.statuses
                .into_iter()
                .map(|s| ReapStatus {
                    digest: s.digest,
                    hinted: s.hinted,
                })
                .collect(),
        ))
    }
}

/// Reaping, step 2, sent to the replicas: remove each key whose stored
/// object still has exactly this digest (compare-and-delete under the key's
/// lock), after raising this node's counter floor to its actor's counter in
/// the object (persisted). Answer: [`Reaped`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reap {
    /// The keys and the digests of the tombstones to remove.
    pub items: Vec<(Bytes, u64)>,
}

/// One item of a [`WireReap`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReapItem {
    /// The key.
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    /// The digest the stored object must still have.
    #[prost(fixed64, tag = "2")]
    pub digest: u64,
}

/// The protobuf form of a [`Reap`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireReap {
    /// The items.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<WireReapItem>,
}

impl WireForm for Reap {
    type Wire = WireReap;

    fn to_wire(&self) -> WireReap {
        WireReap {
            items: self
                .items
                .iter()
                .map(|(key, digest)| WireReapItem {
                    key: key.clone(),
                    digest: *digest,
                })
                .collect(),
        }
    }

    fn from_wire(w: WireReap) -> Result<Self, WireError> {
        Ok(Reap {
            items: w.items.into_iter().map(|i| (i.key, i.digest)).collect(),
        })
    }
}

impl Endpoint for Reap {
    const ID: u16 = 61;
    const NAME: &'static str = "reap";
    const CLASS: Class = Class::Bulk;
    type Response = Reaped;
}

/// How many keys a [`Reap`] removed on the answering node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaped {
    /// Keys removed.
    pub count: u64,
}

one_field_message! {
    /// The protobuf form of [`Reaped`].
    Reaped.count => WireReaped {
        /// Keys removed.
        #[prost(uint64)]
        count: u64,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::round_trip;
    use super::*;
    use crate::wire::Message;

    #[test]
    fn round_trips() {
        round_trip(ReapCheck {
            items: vec![
                (
                    Bytes::from_static(b"k1"),
                    VersionVector::from_pairs([("n1#a".to_string(), 3), ("n2#b".to_string(), 1)]),
                ),
                (Bytes::from_static(b"k2"), VersionVector::new()),
            ],
        });
        round_trip(ReapCheck { items: vec![] });
        round_trip(ReapStatuses(vec![
            ReapStatus {
                digest: Some(0),
                hinted: false,
            },
            ReapStatus {
                digest: None,
                hinted: true,
            },
            ReapStatus {
                digest: Some(u64::MAX),
                hinted: true,
            },
        ]));
        round_trip(Reap {
            items: vec![(Bytes::from_static(b"k"), 42), (Bytes::new(), 0)],
        });
        round_trip(Reaped { count: 7 });
        round_trip(Reaped { count: 0 });
    }

    #[test]
    fn a_zero_digest_is_not_a_missing_one() {
        let s = ReapStatuses(vec![ReapStatus {
            digest: Some(0),
            hinted: false,
        }]);
        let back = ReapStatuses::decode(s.encode()).unwrap();
        assert_eq!(back.0[0].digest, Some(0));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let b = Bytes::from(raw);
            let _ = ReapCheck::decode(b.clone());
            let _ = ReapStatuses::decode(b.clone());
            let _ = Reap::decode(b.clone());
            let _ = Reaped::decode(b);
        }
    }
}
