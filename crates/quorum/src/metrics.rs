//! Prometheus metrics of the coordinator, hinted handoff and read repair.

use dynkv_rpc::RpcError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming an operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// "read" or "write".
    pub op: &'static str,
}

/// Labels naming an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// e.g. "repaired", "failed".
    pub outcome: &'static str,
}

/// Labels of an internode failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Request kind.
    pub request: &'static str,
    /// Failure kind.
    pub kind: &'static str,
}

impl ErrorLabels {
    pub(crate) fn new(request: &'static str, e: &RpcError) -> Self {
        let kind = e.kind();
        ErrorLabels { request, kind }
    }
}

/// Counters and histograms of one node's coordinator.
pub struct QuorumMetrics {
    /// Requests that did not reach R or W.
    pub quorum_failures: Family<OpLabels, Counter>,
    /// Writes this node coordinated.
    pub coordinated: Counter,
    /// Writes forwarded to a primary.
    pub forwarded: Counter,
    /// Writes recognised by their idempotency key as already applied.
    pub idempotent_replays: Counter,
    /// Reads refused because no replica held the session context in time.
    pub stale_reads: Counter,
    /// Internode call failures by request and kind.
    pub internode_errors: Family<ErrorLabels, Counter>,
    /// Sibling count of each successful read.
    pub siblings: Histogram,
    /// Read repairs sent, by outcome.
    pub read_repairs: Family<OutcomeLabels, Counter>,
    /// Hinted copies this node sent to fallbacks.
    pub hints_sent: Counter,
    /// Hints this node stored for others.
    pub hints_stored: Counter,
    /// Hints refused because the hint store was full.
    pub hints_dropped: Counter,
    /// Hints handed off to their owner.
    pub hints_delivered: Counter,
    /// Hints currently held.
    pub hints_pending: Gauge,
    /// Local store failures.
    pub storage_errors: Counter,
}

impl Default for QuorumMetrics {
    fn default() -> Self {
        QuorumMetrics {
            quorum_failures: Family::default(),
            coordinated: Counter::default(),
            forwarded: Counter::default(),
            idempotent_replays: Counter::default(),
            stale_reads: Counter::default(),
            internode_errors: Family::default(),
            siblings: Histogram::new([1.0, 2.0, 3.0, 5.0, 10.0, 100.0]),
            read_repairs: Family::default(),
            hints_sent: Counter::default(),
            hints_stored: Counter::default(),
            hints_dropped: Counter::default(),
            hints_delivered: Counter::default(),
            hints_pending: Gauge::default(),
            storage_errors: Counter::default(),
        }
    }
}

impl QuorumMetrics {
    /// Adds every metric to `registry` under the `dynkv_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynkv_quorum_failures",
            "Requests that did not reach R or W",
            self.quorum_failures.clone(),
        );
        registry.register(
            "dynkv_writes_coordinated",
            "Writes this node coordinated",
            self.coordinated.clone(),
        );
        registry.register(
            "dynkv_writes_forwarded",
            "Writes forwarded to a primary",
            self.forwarded.clone(),
        );
        registry.register(
            "dynkv_idempotent_replays",
            "Writes recognised as retries by their idempotency key",
            self.idempotent_replays.clone(),
        );
        registry.register(
            "dynkv_stale_reads",
            "Reads refused: no replica caught up with the session context",
            self.stale_reads.clone(),
        );
        registry.register(
            "dynkv_internode_errors",
            "Failed internode calls",
            self.internode_errors.clone(),
        );
        registry.register(
            "dynkv_read_siblings",
            "Siblings per successful read",
            self.siblings.clone(),
        );
        registry.register(
            "dynkv_read_repairs",
            "Read repairs sent, by outcome",
            self.read_repairs.clone(),
        );
        registry.register(
            "dynkv_hints_sent",
            "Hinted copies sent to fallbacks",
            self.hints_sent.clone(),
        );
        registry.register(
            "dynkv_hints_stored",
            "Hints stored for unreachable owners",
            self.hints_stored.clone(),
        );
        registry.register(
            "dynkv_hints_dropped",
            "Hints refused: hint store full",
            self.hints_dropped.clone(),
        );
        registry.register(
            "dynkv_hints_delivered",
            "Hints handed off to their owner",
            self.hints_delivered.clone(),
        );
        registry.register(
            "dynkv_hints_pending",
            "Hints held by this node",
            self.hints_pending.clone(),
        );
        registry.register(
            "dynkv_storage_errors",
            "Local storage failures",
            self.storage_errors.clone(),
        );
    }
}
