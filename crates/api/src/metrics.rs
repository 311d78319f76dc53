//! HTTP-level metrics: requests and latency per operation, refused admin tokens.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a finished request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// get, put, delete, rpc, ...
    pub op: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// get, put, delete, rpc, ...
    pub op: &'static str,
}

/// Labels of a refused authentication or authorisation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// no_credentials, malformed, unknown_user, no_source, bad_password,
    /// bad_token, forbidden, tls_required.
    pub reason: &'static str,
}

/// HTTP metrics of one node.
pub struct HttpMetrics {
    /// Requests by operation and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Latency by operation, seconds.
    pub latency: Family<OpLabels, Histogram>,
    /// Membership commands refused for a missing or wrong admin token.
    pub unauthorized: Counter,
    /// Client requests refused because the node was at its in-flight limit.
    pub overloaded: Counter,
    /// Requests answered 408 because the body did not arrive in time.
    pub body_timeouts: Counter,
    /// Context tokens refused (forged, altered, unsigned or malformed): a
    /// rise means a client forging contexts or holding pre-upgrade tokens.
    pub bad_contexts: Counter,
    /// Writes refused for metadata past a `limits` bound, by limit name.
    pub metadata_refused: Family<LimitLabels, Counter>,
    /// Requests refused by security, by reason.
    pub auth_failures: Family<AuthLabels, Counter>,
    /// Riak PBC requests by message name (`RpbGetReq`, ...).
    pub pb_requests: Family<PbLabels, Counter>,
    /// Summaries this node computed for a dashboard (its own page's or a
    /// peer's `/admin/overview`): what an open page costs, in requests.
    pub overview_summaries: Counter,
    /// The `X-Dynkv-Replicas` reports of `/kv` answers, summed: the header
    /// tells one client about one request; these show the share of
    /// replicas answering in time, read repairs and sloppy writes over time.
    pub replica_reports: Family<ReplicaLabels, Counter>,
}

/// Labels of a replica report count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// get, put or delete.
    pub op: &'static str,
    /// Which number of the report: asked, answered, repaired or sloppy.
    pub replicas: &'static str,
}

/// Labels of a Riak PBC request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PbLabels {
    /// The request's message name from Riak's table (`unknown` for a code
    /// it does not name).
    pub msg: &'static str,
}

/// Labels of a metadata limit refusal.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The `limits` key that was exceeded.
    pub limit: &'static str,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 18))
            }),
            unauthorized: Counter::default(),
            overloaded: Counter::default(),
            body_timeouts: Counter::default(),
            bad_contexts: Counter::default(),
            metadata_refused: Family::default(),
            auth_failures: Family::default(),
            pb_requests: Family::default(),
            overview_summaries: Counter::default(),
            replica_reports: Family::default(),
        }
    }
}

impl HttpMetrics {
    /// Counts one Riak PBC request.
    pub fn pb_request(&self, msg: &'static str) {
        self.pb_requests.get_or_create(&PbLabels { msg }).inc();
    }

    /// Adds one `/kv` answer's replica report to [`Self::replica_reports`].
    pub fn replica_report(&self, op: &'static str, report: &dynkv_rpc::messages::ReplicaReport) {
        for (replicas, n) in [
            ("asked", report.asked),
            ("answered", report.answered),
            ("repaired", report.repaired),
            ("sloppy", report.sloppy),
        ] {
            self.replica_reports
                .get_or_create(&ReplicaLabels { op, replicas })
                .inc_by(u64::from(n));
        }
    }

    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynkv_replica_reports",
            "Replicas per /kv answer as X-Dynkv-Replicas reports them, summed by operation: asked, answered in time, read-repaired, sloppy (fallbacks used)",
            self.replica_reports.clone(),
        );
        registry.register(
            "dynkv_pb_requests",
            "Riak PBC requests by message name",
            self.pb_requests.clone(),
        );
        registry.register(
            "dynkv_overview_summaries",
            "Summaries this node computed for a dashboard (/admin/overview, its own or a peer's)",
            self.overview_summaries.clone(),
        );
        registry.register(
            "dynkv_http_requests",
            "HTTP requests by operation and status",
            self.requests.clone(),
        );
        registry.register(
            "dynkv_http_request_duration_seconds",
            "HTTP request latency by operation",
            self.latency.clone(),
        );
        registry.register(
            "dynkv_overloaded",
            "Client requests refused at the in-flight limit",
            self.overloaded.clone(),
        );
        registry.register(
            "dynkv_body_timeouts",
            "Requests answered 408 because the body did not arrive within limits.body_read_timeout",
            self.body_timeouts.clone(),
        );
        registry.register(
            "dynkv_bad_contexts",
            "Context tokens refused with bad_context: forged, altered, unsigned or malformed",
            self.bad_contexts.clone(),
        );
        registry.register(
            "dynkv_metadata_refused",
            "Writes refused for metadata past a limit, by limit",
            self.metadata_refused.clone(),
        );
        registry.register(
            "dynkv_admin_unauthorized",
            "Membership commands refused for a missing or wrong admin token",
            self.unauthorized.clone(),
        );
        registry.register(
            "dynkv_auth_failures",
            "Requests refused by security (401/403), by reason",
            self.auth_failures.clone(),
        );
    }

    /// Counts one request refused by security.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&AuthLabels { reason })
            .inc();
    }

    /// Counts a write refused for metadata past `limit`.
    pub fn metadata_refused(&self, limit: &'static str) {
        self.metadata_refused
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// Records one finished request.
    pub fn observe(&self, op: &'static str, status: u16, started: std::time::Instant) {
        self.requests
            .get_or_create(&RequestLabels { op, status })
            .inc();
        self.latency
            .get_or_create(&OpLabels { op })
            .observe(started.elapsed().as_secs_f64());
    }
}
