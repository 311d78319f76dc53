//! Prometheus metrics of the coordinator, hinted handoff, read repair, the
//! tombstone reaper and the periodic WAL sync of the node's store.

use dynkv_rpc::RpcError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

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

/// Labels naming why something was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// e.g. "count", "bytes".
    pub reason: &'static str,
}

/// Labels naming the role of the node that coordinated a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabels {
    /// "primary" (a primary replica of the key) or "other".
    pub role: &'static str,
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
    /// Reads this node coordinated, by whether it is a primary replica of
    /// the key: what shows a client routes its reads to replicas (a read
    /// coordinated elsewhere costs every replica an extra network hop).
    pub reads_coordinated: Family<RoleLabels, Counter>,
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
    /// Hints refused because the hint store was full (either bound; the
    /// sum of `hints_refused`, kept for existing dashboards).
    pub hints_dropped: Counter,
    /// Hints refused, by the bound that refused them: "count"
    /// (`handoff.max_hints`) or "bytes" (`handoff.max_hint_bytes`).
    pub hints_refused: Family<ReasonLabels, Counter>,
    /// Hints dropped undelivered because they outlived the hint window.
    pub hints_expired: Counter,
    /// Hints handed off to their owner.
    pub hints_delivered: Counter,
    /// Hints currently held.
    pub hints_pending: Gauge,
    /// Bytes held by hints (stored keys and values, before compression).
    pub hint_bytes: Gauge,
    /// Periodic WAL syncs, by outcome ("ok" or "failed").
    pub wal_syncs: Family<OutcomeLabels, Counter>,
    /// Unix time at which the last successful WAL sync started: writes
    /// acknowledged before it survive a power loss.
    pub wal_last_sync: Gauge<f64, AtomicU64>,
    /// Local store failures.
    pub storage_errors: Counter,
    /// Writes refused before anything was stored, by error code
    /// (`bad_context`, `too_many_siblings`, `object_too_large`).
    pub writes_refused: Family<OutcomeLabels, Counter>,
    /// Writes that left more siblings than `limits.warn_siblings`.
    pub sibling_warnings: Counter,
    /// Writes this node coordinated as a fallback, every primary away.
    pub fallback_coordinated: Counter,
    /// Tombstones this node removed (reaped) from its store.
    pub tombstones_reaped: Counter,
    /// Tombstones past their grace this node drove but did not reap, by
    /// reason (`primary_down`, `member_down`, `hinted`, `differs`,
    /// `settling`, `young`).
    pub reap_skipped: Family<ReasonLabels, Counter>,
}

impl Default for QuorumMetrics {
    fn default() -> Self {
        QuorumMetrics {
            quorum_failures: Family::default(),
            coordinated: Counter::default(),
            forwarded: Counter::default(),
            reads_coordinated: Family::default(),
            idempotent_replays: Counter::default(),
            stale_reads: Counter::default(),
            internode_errors: Family::default(),
            siblings: Histogram::new([1.0, 2.0, 3.0, 5.0, 10.0, 100.0]),
            read_repairs: Family::default(),
            hints_sent: Counter::default(),
            hints_stored: Counter::default(),
            hints_dropped: Counter::default(),
            hints_refused: Family::default(),
            hints_expired: Counter::default(),
            hints_delivered: Counter::default(),
            hints_pending: Gauge::default(),
            hint_bytes: Gauge::default(),
            wal_syncs: Family::default(),
            wal_last_sync: Gauge::default(),
            storage_errors: Counter::default(),
            writes_refused: Family::default(),
            sibling_warnings: Counter::default(),
            fallback_coordinated: Counter::default(),
            tombstones_reaped: Counter::default(),
            reap_skipped: Family::default(),
        }
    }
}

impl QuorumMetrics {
    /// Counts a hint refused by `reason` ("count" or "bytes").
    pub fn hint_refused(&self, reason: &'static str) {
        self.hints_dropped.inc();
        self.hints_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records one WAL sync: its outcome and, when it succeeded, `synced`
    /// (the store's last successful sync).
    pub fn wal_synced(&self, ok: bool, synced: Option<std::time::SystemTime>) {
        let outcome = if ok { "ok" } else { "failed" };
        self.wal_syncs
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(t) = synced.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()) {
            self.wal_last_sync.set(t.as_secs_f64());
        }
    }

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
            "dynkv_reads_coordinated",
            "Reads this node coordinated, by whether it is a primary replica of the key",
            self.reads_coordinated.clone(),
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
            "Hints refused: hint store full (either bound; the sum of dynkv_hints_refused_total)",
            self.hints_dropped.clone(),
        );
        registry.register(
            "dynkv_hints_refused",
            "Hints refused, by the bound reached: count (handoff.max_hints) or bytes (handoff.max_hint_bytes)",
            self.hints_refused.clone(),
        );
        registry.register(
            "dynkv_hints_expired",
            "Hints dropped undelivered after handoff.hint_window (anti-entropy repairs those keys)",
            self.hints_expired.clone(),
        );
        registry.register(
            "dynkv_hint_bytes",
            "Bytes held by this node's hints (keys and values, before compression)",
            self.hint_bytes.clone(),
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
            "dynkv_wal_syncs",
            "Periodic WAL syncs (storage.sync_interval), by outcome",
            self.wal_syncs.clone(),
        );
        registry.register(
            "dynkv_wal_last_sync_timestamp_seconds",
            "Unix time the last successful WAL sync started (writes acknowledged before it survive power loss)",
            self.wal_last_sync.clone(),
        );
        registry.register(
            "dynkv_storage_errors",
            "Local storage failures",
            self.storage_errors.clone(),
        );
        registry.register(
            "dynkv_writes_refused",
            "Writes refused before anything was stored, by error code",
            self.writes_refused.clone(),
        );
        registry.register(
            "dynkv_sibling_warnings",
            "Writes that left more siblings than limits.warn_siblings",
            self.sibling_warnings.clone(),
        );
        registry.register(
            "dynkv_writes_fallback_coordinated",
            "Writes coordinated by this node as a fallback, every primary away",
            self.fallback_coordinated.clone(),
        );
        registry.register(
            "dynkv_tombstones_reaped",
            "Tombstones removed from this node's store by the reaper",
            self.tombstones_reaped.clone(),
        );
        registry.register(
            "dynkv_reap_skipped",
            "Tombstones past storage.tombstone_grace this node drove but did not reap, by reason",
            self.reap_skipped.clone(),
        );
    }
}
