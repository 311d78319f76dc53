//! Overview (endpoint IDs 70–79): what one node tells another about its own
//! traffic and healing, for the dashboard (`/ui`) and `/admin/overview`.
//!
//! A browser usually reaches one node only (the others are cross-origin,
//! or not published at all in the docker cluster), so the node it reaches
//! asks every member for a [`NodeSummary`] and shows them side by side.
//! The summary is small (a few hundred bytes: a dozen numbers per
//! operation, one entry per partition the node exchanged) and plain data
//! with no invariant beyond a named node, so its protobuf struct is the
//! domain type itself; it also serialises to the JSON the admin route
//! answers. New figures are new fields: an older peer leaves them at zero,
//! and a peer too old to serve [`Overview`] answers
//! `RemoteError::UnknownEndpoint`, which the caller shows as "no summary".

use serde::Serialize;

use crate::wire::{Class, Endpoint, WireError, WireForm};

/// Asks a node for its [`NodeSummary`]. Answer: [`NodeSummary`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overview {}

/// The protobuf form of [`Overview`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireOverview {}

impl WireForm for Overview {
    type Wire = WireOverview;

    fn to_wire(&self) -> WireOverview {
        WireOverview {}
    }

    fn from_wire(_: WireOverview) -> Result<Self, WireError> {
        Ok(Overview {})
    }
}

impl Endpoint for Overview {
    const ID: u16 = 70;
    const NAME: &'static str = "overview";
    const CLASS: Class = Class::Interactive;
    type Response = NodeSummary;
}

/// One node's traffic, load and healing, as it measures them itself.
///
/// Rates and percentiles cover the last `window_ms` (recent traffic, not
/// the node's lifetime); the healing figures (read repairs, anti-entropy,
/// siblings) are totals since the node started, as its metrics count them.
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct NodeSummary {
    /// The node (required).
    #[prost(string, tag = "1")]
    pub node: String,
    /// Milliseconds since the node process started.
    #[prost(uint64, tag = "2")]
    pub uptime_ms: u64,
    /// The span, in milliseconds, that `ops` rates and percentiles cover.
    #[prost(uint64, tag = "3")]
    pub window_ms: u64,
    /// Client operations (`get`, `put`, `riak_get`, ...) served by this
    /// node, those with any request since it started.
    #[prost(message, repeated, tag = "4")]
    pub ops: Vec<OpSummary>,
    /// Client requests being served now (permits of the bulkhead taken).
    #[prost(uint64, tag = "5")]
    pub inflight: u64,
    /// The bulkhead's size (`limits.max_inflight_requests`).
    #[prost(uint64, tag = "6")]
    pub inflight_capacity: u64,
    /// Client requests refused at the bulkhead since the start.
    #[prost(uint64, tag = "7")]
    pub overloaded: u64,
    /// Hints this node holds, per owner they wait for.
    #[prost(message, repeated, tag = "8")]
    pub hints: Vec<HintCount>,
    /// Read repairs this node sent, per outcome (`repaired`, `failed`, ...).
    #[prost(message, repeated, tag = "9")]
    pub read_repairs: Vec<Count>,
    /// Anti-entropy exchanges this node completed.
    #[prost(uint64, tag = "10")]
    pub aae_exchanges: u64,
    /// Keys anti-entropy repaired on this node.
    #[prost(uint64, tag = "11")]
    pub aae_keys_repaired: u64,
    /// The last exchange of each partition this node exchanged.
    #[prost(message, repeated, tag = "12")]
    pub aae_partitions: Vec<AaeProgress>,
    /// Sibling counts of the reads this node coordinated: one entry per
    /// histogram bucket, counts not cumulative.
    #[prost(message, repeated, tag = "13")]
    pub siblings: Vec<Bucket>,
    /// Reads and writes that missed their R or W, per operation.
    #[prost(message, repeated, tag = "14")]
    pub quorum_failures: Vec<Count>,
}

/// One client operation over the summary's window.
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct OpSummary {
    /// The operation (the `op` label of `dynkv_http_requests_total`).
    #[prost(string, tag = "1")]
    pub op: String,
    /// Requests answered in the window.
    #[prost(uint64, tag = "2")]
    pub requests: u64,
    /// Requests per second over the window.
    #[prost(double, tag = "3")]
    pub rate: f64,
    /// Answers with a 5xx status in the window (quorum not met,
    /// overloaded, storage errors).
    #[prost(uint64, tag = "4")]
    pub errors: u64,
    /// Answers with a 4xx status in the window (bad input, not found,
    /// refused by security).
    #[prost(uint64, tag = "5")]
    pub client_errors: u64,
    /// Median latency in the window, milliseconds (0 without requests).
    #[prost(double, tag = "6")]
    pub p50_ms: f64,
    /// 99th percentile latency in the window, milliseconds.
    #[prost(double, tag = "7")]
    pub p99_ms: f64,
}

/// Hints held for one owner.
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct HintCount {
    /// The node the hints wait for.
    #[prost(string, tag = "1")]
    pub owner: String,
    /// How many.
    #[prost(uint64, tag = "2")]
    pub count: u64,
}

/// A labelled counter.
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct Count {
    /// The label (an outcome, an operation).
    #[prost(string, tag = "1")]
    pub label: String,
    /// Its value.
    #[prost(uint64, tag = "2")]
    pub count: u64,
}

/// The last anti-entropy exchange of one partition.
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct AaeProgress {
    /// The partition.
    #[prost(uint32, tag = "1")]
    pub partition: u32,
    /// Exchanges of it completed.
    #[prost(uint64, tag = "2")]
    pub exchanges: u64,
    /// Unix milliseconds of the last one.
    #[prost(uint64, tag = "3")]
    pub last_exchange_unix_ms: u64,
    /// The peer of the last one.
    #[prost(string, tag = "4")]
    pub last_peer: String,
    /// Keys repaired here in this partition over all its exchanges.
    #[prost(uint64, tag = "5")]
    pub keys_repaired: u64,
}

/// One histogram bucket: observations above the previous bound and at most
/// `le` (`le` is infinite for the last).
#[derive(Clone, PartialEq, Serialize, prost::Message)]
pub struct Bucket {
    /// Upper bound, inclusive.
    #[prost(double, tag = "1")]
    #[serde(serialize_with = "finite_or_null")]
    pub le: f64,
    /// Observations in the bucket.
    #[prost(uint64, tag = "2")]
    pub count: u64,
}

/// JSON has no infinity: the open last bucket's bound is `null`.
fn finite_or_null<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

impl WireForm for NodeSummary {
    type Wire = NodeSummary;

    fn to_wire(&self) -> NodeSummary {
        self.clone()
    }

    fn from_wire(w: NodeSummary) -> Result<Self, WireError> {
        if w.node.is_empty() {
            return Err(WireError::Invalid(
                "node_summary.node: missing node id".into(),
            ));
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;
    use bytes::Bytes;

    fn summary() -> NodeSummary {
        NodeSummary {
            node: "n2".into(),
            uptime_ms: 12_000,
            window_ms: 10_000,
            ops: vec![OpSummary {
                op: "get".into(),
                requests: 100,
                rate: 10.0,
                errors: 1,
                client_errors: 2,
                p50_ms: 0.8,
                p99_ms: 6.4,
            }],
            inflight: 3,
            inflight_capacity: 1024,
            overloaded: 0,
            hints: vec![HintCount {
                owner: "n3".into(),
                count: 7,
            }],
            read_repairs: vec![Count {
                label: "repaired".into(),
                count: 4,
            }],
            aae_exchanges: 9,
            aae_keys_repaired: 5,
            aae_partitions: vec![AaeProgress {
                partition: 12,
                exchanges: 2,
                last_exchange_unix_ms: 1_700_000_000_000,
                last_peer: "n1".into(),
                keys_repaired: 5,
            }],
            siblings: vec![
                Bucket { le: 1.0, count: 90 },
                Bucket {
                    le: f64::INFINITY,
                    count: 1,
                },
            ],
            quorum_failures: vec![],
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(Overview::decode(Overview {}.encode()), Ok(Overview {}));
        let s = summary();
        assert_eq!(NodeSummary::decode(s.encode()), Ok(s));
    }

    #[test]
    fn a_summary_names_its_node() {
        assert!(matches!(
            NodeSummary::decode(Bytes::new()),
            Err(WireError::Invalid(_))
        ));
    }

    #[test]
    fn json_has_no_infinity() {
        let v = serde_json::to_value(summary()).unwrap();
        assert_eq!(v["siblings"][1]["le"], serde_json::Value::Null);
        assert_eq!(v["siblings"][0]["le"], 1.0);
        assert_eq!(v["ops"][0]["p99_ms"], 6.4);
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = Overview::decode(Bytes::from(raw.clone()));
            let _ = NodeSummary::decode(Bytes::from(raw));
        }
    }
}
