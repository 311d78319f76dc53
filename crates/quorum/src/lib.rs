//! # dynkv-quorum: the coordinator
//!
//! Turns one client request into replica requests and decides when it is
//! done. Every node runs one [`Coordinator`]; any node accepts any request.
//!
//! ## Writes (PUT and DELETE)
//! 1. The key's preference list (N primaries) comes from the ring. A node
//!    outside it *forwards* the write to the first reachable primary
//!    ([`Coordinate`]); a primary coordinates itself.
//! 2. The coordinator applies `update(context, local, own id, value)` to its
//!    own stored object under the key's lock and stores it: its own replica
//!    always holds every dot it issued, so a dot is never reused.
//! 3. It sends the resulting object to the other primaries
//!    ([`Replicate`]), which `sync` it into theirs. A primary the
//!    failure detector holds down, or whose RPC fails, gets its copy
//!    through the next reachable node of the ring walk instead, stored there
//!    as a durable hint ([`StoreHint`]) and handed off later
//!    (*sloppy quorum*, see [`handoff`]).
//! 4. It answers once W replicas acknowledged (its own write included;
//!    hinted copies count only when `sloppy`), or fails with a
//!    [`QuorumError`] saying how many were needed and how many acked when the
//!    deadline passes. Replication that is still in flight continues in the
//!    background: answering early never cancels it.
//!
//! ## Reads
//! The coordinator asks R replicas, this node first when it holds the key
//! and then the fastest, answers with the `sync` of their replies, and asks
//! one more replica when they are slow (speculative retry). Read repair
//! runs in the background, never waited for: see the `read` module.
//!
//! ## Layout
//! - [`Replica`]: this node's copies (store, ring, local reads and writes,
//!   the replica endpoints). Anything that only touches local data uses it
//!   directly; the coordinator calls it in place, never through the
//!   transport, when a target is this node.
//! - [`strategy`]: one quorum call (send to k targets, return at q answers,
//!   replace failures, speculate, let stragglers finish in the background),
//!   used by reads ([`read`]) and by the replication of writes.
//!
//! ## Deletes
//! A DELETE is a write of a tombstone. Tombstones are removed later by the
//! [`reaper`], whose module documentation is the argument that no value
//! comes back and no later write is lost.
//!
//! ## Hooks for namespaced protocols (Riak buckets)
//! - A read or write may name an `n_val` below the cluster's N
//!   ([`Coordinator::placement_n`]): its primaries are then the first
//!   `n_val` nodes of the key's ring walk, and R and W count among them.
//!   Anti-entropy and ownership handoff still work per partition over the
//!   cluster's N replicas, so such a key may later gain copies on the other
//!   replicas of its partition; requests only ever wait for its own.
//! - A write may *supersede* ([`WriteRequest::supersede`]): the coordinator
//!   applies it with the join of its own stored state as context, so it
//!   replaces every sibling that replica holds (Riak's `allow_mult=false`).
//! - A write may carry a convergent data type operation
//!   ([`WriteRequest::datatype_op`], [`datatype`]): the coordinating
//!   primary (never a fallback) applies it with its own actor to the CRDT
//!   merge of every sibling it holds, inside the store's update of the key,
//!   and the result supersedes them all.
//! - [`ListKeys`] and [`ListNamespaces`] scan the local store of one
//!   partition, for key and bucket listings: the keys with a prefix, and
//!   the distinct length-delimited components after a prefix. The store
//!   only knows prefixes and groups; the encoding of a bucket is the
//!   protocol adapter's.
//! - [`IndexQuery`] scans the local secondary index entries of a set of
//!   partitions ([`index`]).
//!
//! ## Concurrency
//! No global lock: the ring and the peer table are atomically swapped
//! snapshots, the store serialises writers per key, and fan-out runs on
//! spawned tasks that report through channels.

pub mod datatype;
pub mod epoch;
pub mod feed;
pub mod handoff;
pub mod hlc;
pub mod idempotency;
pub mod index;
mod local_write;
mod metrics;
pub mod read;
pub mod reaper;
pub mod replica;
#[cfg(test)]
mod sim_nodes;
pub mod strategy;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use bytes::Bytes;
use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::messages::listing::{component_prefix, split_component};
use dynkv_rpc::messages::{
    Coordinate, CoordinateFallback, IndexEntries, IndexQuery, Keys, ListKeys, ListNamespaces, Ping,
    Pong, Quorum, Read, ReadReply, ReplicaReport, Replicate, StoreHint, Stored, WriteOutcome,
    WriteRequest,
};
use dynkv_rpc::{
    CallContext, Dispatcher, Endpoint, Handler, PeerHealth, RemoteError, RpcError, Transport,
};
use dynkv_storage::{KeyRef, Store};
use dynkv_vclock::{DvvSet, Object, VersionVector};
use tracing::{debug, warn};

use strategy::CallPlan;

pub use metrics::QuorumMetrics;
pub use read::SpeculativeRetry;
pub use replica::Replica;

/// Label values of the coordinator's metric families, for callers that read
/// them back (tests, admin views).
pub mod metrics_labels {
    pub use crate::metrics::{ErrorLabels, OpLabels, OutcomeLabels};

    /// The label of a successful read repair.
    pub fn repaired() -> OutcomeLabels {
        OutcomeLabels {
            outcome: "repaired",
        }
    }
}

/// Tunables of the coordinator (all from the node config).
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Replicas per key (cluster-wide N).
    pub n_val: usize,
    /// R when a read does not say.
    pub default_r: Quorum,
    /// W when a write does not say.
    pub default_w: Quorum,
    /// Whole-request deadline when the client gives none.
    pub default_timeout: Duration,
    /// Deadline of one internode call inside a request, so that a dead peer
    /// is given up on (and replaced by a fallback) before the client's
    /// deadline passes.
    pub rpc_timeout: Duration,
    /// Move RocksDB calls off the async workers (set with fsync per write).
    pub blocking_store: bool,
    /// Read repair on or off.
    pub read_repair: bool,
    /// Fraction of reads that also ask the primaries not read in full for
    /// their digest, to repair them (Cassandra's
    /// `dclocal_read_repair_chance`); the replicas read in full are
    /// repaired whenever they disagree.
    pub read_repair_chance: f64,
    /// When a read asks one more replica because its replies are slow.
    pub speculative_retry: SpeculativeRetry,
    /// How long after a read late replies are awaited for read repair.
    pub read_repair_wait: Duration,
    /// Most hints this node keeps; past it, new hints are refused (counted)
    /// and the write relies on the other replicas.
    pub max_hints: u64,
    /// Most bytes this node's hints hold (stored keys and values); a hint
    /// that would take them past it is refused like one past `max_hints`.
    pub max_hint_bytes: u64,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// Read repairs running at once; past it a read is not repaired (a
    /// bulkhead: repair never queues up behind client traffic).
    pub read_repair_concurrency: usize,
    /// Siblings a write may leave (Riak's `max_siblings`); past it the
    /// write is refused before anything is stored.
    pub max_siblings: usize,
    /// Siblings past which a write is logged and counted (Riak's
    /// `warn_siblings`).
    pub warn_siblings: usize,
    /// Largest object (every sibling with its metadata) a write may leave.
    pub max_object_bytes: usize,
    /// Record the latencies of replica writes and reads for the staleness
    /// model (`GET /admin/pbs`, [`dynkv_pbs`]).
    pub pbs_record: bool,
    /// How fast recorded latencies are forgotten: counts halve every
    /// half-life.
    pub pbs_half_life: Duration,
    /// Place the split of a round trip with the replica's wall-clock stamp
    /// (synchronised clocks), or split it in halves.
    pub pbs_clocks: bool,
    /// Watches and the change feed ([`feed`]).
    pub feed: feed::FeedConfig,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            n_val: 3,
            default_r: Quorum::Majority,
            default_w: Quorum::Majority,
            default_timeout: Duration::from_secs(3),
            rpc_timeout: Duration::from_secs(1),
            blocking_store: false,
            read_repair: true,
            read_repair_chance: 0.1,
            speculative_retry: SpeculativeRetry::P99,
            read_repair_wait: Duration::from_secs(2),
            max_hints: 1_000_000,
            max_hint_bytes: 1 << 30,
            idempotency_window: Duration::from_secs(600),
            read_repair_concurrency: 64,
            max_siblings: 100,
            warn_siblings: 25,
            max_object_bytes: 50 << 20,
            pbs_record: true,
            pbs_half_life: Duration::from_secs(60),
            pbs_clocks: true,
            feed: feed::FeedConfig::default(),
        }
    }
}

/// Why a request failed. The API maps each to one status and code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QuorumError {
    /// Fewer replicas answered than the request required (503).
    #[error("{op} needed {needed} replicas but {acked} answered in time{}", detail_suffix(.detail))]
    NotEnough {
        /// "read" or "write".
        op: &'static str,
        /// Replies required.
        needed: usize,
        /// Replies received.
        acked: usize,
        /// What went wrong with the others, per node.
        detail: Vec<(NodeId, String)>,
    },
    /// No node could coordinate the write (503).
    #[error("{0}")]
    Unavailable(String),
    /// No replica that answered in time holds the client's session context
    /// (503): answering would go back in time.
    #[error(
        "{answered} replicas answered but none has caught up with the context of your last read or write; retry later or read at a higher r"
    )]
    Stale {
        /// Replicas that answered.
        answered: usize,
    },
    /// The request is invalid for this cluster (400).
    #[error("{0}")]
    BadRequest(String),
    /// The context names versions of this key no replica issued (400
    /// `bad_context`): forged, or from another cluster.
    #[error("{0}")]
    BadContext(String),
    /// The write would leave more siblings than allowed (409).
    #[error(
        "the write would leave {count} siblings, more than the limit of {max}; resolve them by writing with the context of a read"
    )]
    TooManySiblings {
        /// Siblings the key would hold.
        count: usize,
        /// The limit (`limits.max_siblings`).
        max: usize,
    },
    /// The object would exceed the size limit (413).
    #[error("the object would hold {bytes} bytes with its siblings, more than the limit of {max}")]
    ObjectTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit (`limits.max_object_bytes`).
        max: usize,
    },
    /// The local store failed (500).
    #[error("storage failure: {0}")]
    Storage(String),
    /// A replica's disk is full: its store refuses writes until space is
    /// freed (507 `insufficient_storage`; reads are still served there).
    #[error("{node} has no space left on its data disk: {detail}")]
    InsufficientStorage {
        /// The full node.
        node: NodeId,
        /// What its store said.
        detail: String,
    },
    /// A data type operation's precondition failed at the coordinating
    /// replica (a remove of what is not there, a context this replica has
    /// not caught up with, an operation for another type): nothing was
    /// written (412).
    #[error("{0}")]
    Precondition(String),
}

fn detail_suffix(detail: &[(NodeId, String)]) -> String {
    if detail.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = detail.iter().map(|(n, e)| format!("{n}: {e}")).collect();
    format!(" ({})", parts.join("; "))
}

impl QuorumError {
    /// The machine-readable slug used in error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            QuorumError::NotEnough { .. } => "quorum_not_met",
            QuorumError::Unavailable(_) => "unavailable",
            QuorumError::Stale { .. } => "stale",
            QuorumError::BadRequest(_) => "bad_request",
            QuorumError::BadContext(_) => "bad_context",
            QuorumError::TooManySiblings { .. } => "too_many_siblings",
            QuorumError::ObjectTooLarge { .. } => "object_too_large",
            QuorumError::Storage(_) => "storage_error",
            QuorumError::InsufficientStorage { .. } => "insufficient_storage",
            QuorumError::Precondition(_) => "precondition_failed",
        }
    }

    /// The error a coordinating peer reported, as this node's own.
    fn from_remote(e: RemoteError, op: &'static str) -> QuorumError {
        match e {
            RemoteError::QuorumNotMet {
                needed,
                acked,
                detail,
                ..
            } => QuorumError::NotEnough {
                op,
                needed: needed as usize,
                acked: acked as usize,
                detail,
            },
            RemoteError::BadRequest(m) => QuorumError::BadRequest(m),
            RemoteError::Storage(m) => QuorumError::Storage(m),
            RemoteError::Stale { answered } => QuorumError::Stale {
                answered: answered as usize,
            },
            RemoteError::Unavailable(m) => QuorumError::Unavailable(m),
            RemoteError::BadContext(m) => QuorumError::BadContext(m),
            RemoteError::TooManySiblings { count, max } => QuorumError::TooManySiblings {
                count: count as usize,
                max: max as usize,
            },
            RemoteError::ObjectTooLarge { bytes, max } => QuorumError::ObjectTooLarge {
                bytes: bytes as usize,
                max: max as usize,
            },
            RemoteError::InsufficientStorage { node, message } => {
                QuorumError::InsufficientStorage {
                    node,
                    detail: message,
                }
            }
            RemoteError::Precondition(m) => QuorumError::Precondition(m),
            other => QuorumError::Unavailable(other.to_string()),
        }
    }
}

impl From<QuorumError> for RemoteError {
    fn from(e: QuorumError) -> Self {
        match e {
            QuorumError::NotEnough {
                op,
                needed,
                acked,
                detail,
            } => RemoteError::QuorumNotMet {
                op: op.to_string(),
                needed: needed as u32,
                acked: acked as u32,
                detail,
            },
            QuorumError::Unavailable(m) => RemoteError::Unavailable(m),
            QuorumError::Stale { answered } => RemoteError::Stale {
                answered: answered as u32,
            },
            QuorumError::BadRequest(m) => RemoteError::BadRequest(m),
            QuorumError::Storage(m) => RemoteError::Storage(m),
            QuorumError::BadContext(m) => RemoteError::BadContext(m),
            QuorumError::TooManySiblings { count, max } => RemoteError::TooManySiblings {
                count: count as u64,
                max: max as u64,
            },
            QuorumError::ObjectTooLarge { bytes, max } => RemoteError::ObjectTooLarge {
                bytes: bytes as u64,
                max: max as u64,
            },
            QuorumError::InsufficientStorage { node, detail } => RemoteError::InsufficientStorage {
                node,
                message: detail,
            },
            QuorumError::Precondition(m) => RemoteError::Precondition(m),
        }
    }
}

/// Options of one read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Replies needed (None: the configured default).
    pub r: Option<Quorum>,
    /// Count fallbacks' replies (sloppy) or primaries' only.
    pub sloppy: bool,
    /// Whole-request deadline (None: the configured default).
    pub timeout: Option<Duration>,
    /// Session guarantee: answer only with a state that descends from this
    /// context (the client's last read or write), or fail as stale.
    pub after: Option<VersionVector>,
    /// Replicas of this key when fewer than the cluster's N (a Riak
    /// bucket's `n_val`); `None`: the cluster's N. Must match the writes'.
    pub n_val: Option<usize>,
}

impl ReadOptions {
    /// Sloppy reads with the configured R and deadline.
    pub fn sloppy() -> Self {
        ReadOptions {
            sloppy: true,
            ..Default::default()
        }
    }
}

/// Where a key lives right now.
#[derive(Clone, Debug)]
pub struct Placement {
    /// Ring partition.
    pub partition: u32,
    /// Ring hash of the key.
    pub hash: u64,
    /// The N primaries, in ring order.
    pub primaries: Vec<NodeId>,
    /// The rest of the ring walk: stand-ins for unreachable primaries.
    pub fallbacks: Vec<NodeId>,
}

/// The coordinator of one node. Shared as `Arc<Coordinator>`.
pub struct Coordinator {
    me: NodeId,
    /// This node's copies, served in place when a target is this node.
    replica: Arc<Replica>,
    transport: Arc<dyn Transport>,
    health: Arc<PeerHealth>,
    config: CoordinatorConfig,
    metrics: Arc<QuorumMetrics>,
    repair_slots: Arc<tokio::sync::Semaphore>,
    /// Serialise fallback coordination per key (striped).
    fallback_locks: Vec<tokio::sync::Mutex<()>>,
    /// What the tombstone reaper did (see [`reaper`]).
    reaper_status: std::sync::Mutex<reaper::ReaperStatus>,
    /// Told which peer refused a request as `NotReplica` (see
    /// [`Coordinator::on_ring_mismatch`]).
    ring_mismatch: arc_swap::ArcSwapOption<RingMismatchHook>,
    /// Latencies of replica writes and reads, per peer, for the staleness
    /// model.
    pbs: Arc<dynkv_pbs::Recorder>,
    /// Watches and the change feed ([`feed`]).
    feed: Arc<feed::FeedHub>,
}

/// What a node does when a peer refuses a request because their rings
/// differ: membership pulls the cluster state from that peer at once, so
/// the next request is routed with the ring the peer has.
pub type RingMismatchHook = Box<dyn Fn(&NodeId) + Send + Sync>;

impl Coordinator {
    /// A coordinator for node `me`.
    pub fn new(
        me: NodeId,
        ring: Ring,
        store: Arc<Store>,
        transport: Arc<dyn Transport>,
        health: Arc<PeerHealth>,
        config: CoordinatorConfig,
        metrics: Arc<QuorumMetrics>,
    ) -> Arc<Self> {
        let epoch = epoch::Epoch {
            actor: me.to_string(),
            incarnation: String::new(),
            renewed: None,
            floor: 0,
            fallback_generation: 1,
        };
        Self::with_epoch(me, ring, store, transport, health, config, metrics, &epoch)
    }

    /// A coordinator writing as this run's incarnation ([`epoch::begin`]).
    #[allow(clippy::too_many_arguments)]
    pub fn with_epoch(
        me: NodeId,
        ring: Ring,
        store: Arc<Store>,
        transport: Arc<dyn Transport>,
        health: Arc<PeerHealth>,
        config: CoordinatorConfig,
        metrics: Arc<QuorumMetrics>,
        epoch: &epoch::Epoch,
    ) -> Arc<Self> {
        let feed = Arc::new(feed::FeedHub::new(config.feed.clone()));
        // Every change of a key wakes its watches.
        store.set_change_hook(feed.notifier().clone());
        let replica = Arc::new(Replica::new(
            me.clone(),
            ring,
            store,
            &config,
            metrics.clone(),
            epoch,
        ));
        Arc::new(Coordinator {
            feed,
            repair_slots: Arc::new(tokio::sync::Semaphore::new(
                config.read_repair_concurrency.max(1),
            )),
            fallback_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
            reaper_status: Default::default(),
            ring_mismatch: arc_swap::ArcSwapOption::empty(),
            pbs: Arc::new(dynkv_pbs::Recorder::new(
                config.pbs_half_life,
                config.pbs_record,
            )),
            me,
            replica,
            transport,
            health,
            config,
            metrics,
        })
    }

    /// This node's replica: local reads and writes, no network.
    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.me
    }

    /// Shorthand for [`Replica::actor`].
    pub fn actor(&self) -> &str {
        self.replica.actor()
    }

    /// Shorthand for [`Replica::fallback_actor`].
    pub fn fallback_actor(&self) -> String {
        self.replica.fallback_actor()
    }

    /// Shorthand for [`Replica::floor`].
    pub fn floor(&self) -> u64 {
        self.replica.floor()
    }

    /// Shorthand for [`Replica::ring`].
    pub fn ring(&self) -> Arc<Ring> {
        self.replica.ring()
    }

    /// Shorthand for [`Replica::next_ring`].
    pub fn next_ring(&self) -> Option<Arc<Ring>> {
        self.replica.next_ring()
    }

    /// Shorthand for [`Replica::store`].
    pub fn store(&self) -> &Arc<Store> {
        self.replica.store()
    }

    /// The failure detector's table.
    pub fn health(&self) -> &Arc<PeerHealth> {
        &self.health
    }

    /// The transport to peers.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The coordinator's settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The coordinator's metrics.
    pub fn metrics(&self) -> &Arc<QuorumMetrics> {
        &self.metrics
    }

    /// The latencies recorded for the staleness model (`/admin/pbs`).
    pub fn pbs(&self) -> &Arc<dynkv_pbs::Recorder> {
        &self.pbs
    }

    /// A replica request that started at `started` (monotonic) and `sent`
    /// (wall clock, µs) and was answered with these stamps, for the
    /// staleness model.
    fn exchange(
        &self,
        started: Instant,
        sent: u64,
        service_micros: Option<u64>,
        received_micros: Option<u64>,
    ) -> dynkv_pbs::Exchange {
        dynkv_pbs::Exchange {
            rtt: started.elapsed(),
            service: service_micros.map(Duration::from_micros),
            there: self
                .config
                .pbs_clocks
                .then(|| dynkv_pbs::Exchange::one_way(sent, received_micros))
                .flatten(),
        }
    }

    /// Shorthand for [`Replica::effective_n`].
    pub fn effective_n(&self) -> usize {
        self.replica.effective_n()
    }

    /// Shorthand for [`Replica::placement`].
    pub fn placement(&self, key: &[u8]) -> Placement {
        self.replica.placement(key)
    }

    /// Shorthand for [`Replica::placement_n`].
    pub fn placement_n(&self, key: &[u8], n_val: Option<usize>) -> Placement {
        self.replica.placement_n(key, n_val)
    }

    /// Shorthand for [`Replica::local_view`].
    pub async fn local_view(
        &self,
        key: &[u8],
    ) -> Result<(Option<Object>, Vec<(NodeId, Object)>), QuorumError> {
        self.replica.local_view(key).await
    }

    /// Shorthand for [`Replica::merge`].
    pub async fn replicate_local(&self, key: Bytes, object: Object) -> Result<(), QuorumError> {
        self.replica.merge(key, object).await
    }

    /// Sends one request to a peer, feeding the failure detector.
    async fn call<E: Endpoint>(
        &self,
        to: &NodeId,
        req: &E,
        timeout: Duration,
    ) -> Result<E::Response, RpcError> {
        if self.health.acquire(to).is_err() {
            return Err(RpcError::BreakerOpen);
        }
        // A call dropped before its outcome (its caller stopped waiting)
        // must not leave a half-open breaker waiting for a verdict forever.
        let mut pending = dynkv_rpc::health::PendingCall::new(&self.health, to);
        let started = Instant::now();
        let r = self.transport.call(to, req, timeout).await;
        pending.settled();
        match &r {
            // An answer, even a refusal, shows the peer is alive.
            Ok(_) | Err(RpcError::Remote(_) | RpcError::Protocol(_)) => {
                self.health.record_latency(to, started.elapsed());
                if self.health.record_success(to) {
                    tracing::info!(peer = %to, "peer is up");
                }
            }
            Err(_) => {}
        }
        if let Err(RpcError::Remote(RemoteError::NotReplica { .. })) = &r
            && let Some(hook) = self.ring_mismatch.load().as_deref()
        {
            hook(to);
        }
        if let Err(e) = &r {
            self.metrics
                .internode_errors
                .get_or_create(&metrics::ErrorLabels::new(E::NAME, e))
                .inc();
            if !e.peer_answered() && self.health.record_failure(to) {
                warn!(peer = %to, error = %e, "peer marked down (breaker open)");
            }
        }
        r
    }

    /// Installs what to do when a peer refuses a request because it does
    /// not replicate the key in its rings (the rings differ): the request
    /// fails over like any refused replica, and the hook lets this node
    /// learn the peer's ring before the next one.
    pub fn on_ring_mismatch(&self, hook: RingMismatchHook) {
        self.ring_mismatch.store(Some(Arc::new(hook)));
    }

    /// Sends one request to a peer outside any client request (background
    /// workers), feeding the failure detector like request traffic does.
    pub async fn call_peer<E: Endpoint>(
        &self,
        to: &NodeId,
        req: &E,
        timeout: Duration,
    ) -> Result<E::Response, RpcError> {
        self.call(to, req, timeout).await
    }

    /// Sends `req` to `to`, or serves it in place, without encoding it,
    /// when `to` is this node.
    pub async fn ask<E: Endpoint>(
        self: &Arc<Self>,
        to: &NodeId,
        req: E,
        timeout: Duration,
    ) -> Result<E::Response, RpcError>
    where
        Coordinator: Handler<E>,
    {
        if *to == self.me {
            let ctx = CallContext {
                peer: self.me.clone(),
                version: dynkv_rpc::PROTOCOL_VERSION,
            };
            return Handler::<E>::handle(self.clone(), req, ctx)
                .await
                .map_err(RpcError::Remote);
        }
        self.call(to, &req, timeout).await
    }

    /// Deadline of one internode call given the request's deadline.
    fn rpc_deadline(&self, deadline: Instant) -> Duration {
        deadline
            .saturating_duration_since(Instant::now())
            .min(self.config.rpc_timeout)
    }

    /// [`Coordinator::put`], with what the replicas did (the
    /// `X-Dynkv-Replicas` header) whether the write succeeded or not.
    ///
    /// A write coordinated here reports exactly; one forwarded to a primary
    /// reports what that primary's answer says, and when the primary
    /// answers with a quorum failure, `answered` is the acknowledgements it
    /// counted and `asked` those plus the replicas its failure names.
    pub async fn put_reported(
        self: &Arc<Self>,
        req: WriteRequest,
    ) -> (Result<WriteOutcome, QuorumError>, ReplicaReport) {
        let run = async {
            let r = self.put(req).await;
            let here = WRITE_REPORT.with(|c| c.get());
            let report = match &r {
                Ok(outcome) => outcome.replicas,
                Err(QuorumError::NotEnough { acked, detail, .. })
                    if here == ReplicaReport::default() =>
                {
                    ReplicaReport {
                        asked: (*acked + detail.len()) as u32,
                        answered: *acked as u32,
                        ..Default::default()
                    }
                }
                Err(_) => here,
            };
            (r, report)
        };
        WRITE_REPORT
            .scope(std::cell::Cell::new(ReplicaReport::default()), run)
            .await
    }

    /// A client PUT or DELETE. Returns the coordinator's resulting object
    /// (its context is what the client gets back).
    pub async fn put(self: &Arc<Self>, mut req: WriteRequest) -> Result<WriteOutcome, QuorumError> {
        let (placement, w, deadline) = self.plan_write(&req)?;
        if req.content.modified_micros == 0 {
            req.content.modified_micros = self.feed.clock().now();
        }
        if placement.primaries.contains(&self.me) {
            return self.coordinate(req, placement, w, deadline).await;
        }
        if !req.sloppy {
            return self.forward(req, placement, deadline).await;
        }
        match self.forward(req.clone(), placement.clone(), deadline).await {
            Err(QuorumError::Unavailable(why)) => {
                self.fallback_write(req, placement, w, deadline, why).await
            }
            other => other,
        }
    }

    /// Where a write goes, how many acknowledgements it needs (refusing a
    /// W the key's replica count cannot give) and when its time is up.
    fn plan_write(&self, req: &WriteRequest) -> Result<(Placement, usize, Instant), QuorumError> {
        let deadline = Instant::now() + Duration::from_millis(req.timeout_ms);
        let placement = self.placement_n(&req.key, req.n_val.map(|n| n as usize));
        let n = placement.primaries.len();
        let w = req
            .w
            .required_of(n)
            .map_err(|e| QuorumError::BadRequest(format!("w={e}")))?;
        Ok((placement, w, deadline))
    }

    /// No primary of the key could be reached: the first reachable
    /// fallback in ring order coordinates the write under its own actor and
    /// keeps it as hints (Dynamo's always-writeable sloppy quorum; safe
    /// because a dot is never reissued, see [`epoch`]).
    async fn fallback_write(
        self: &Arc<Self>,
        mut req: WriteRequest,
        placement: Placement,
        w: usize,
        deadline: Instant,
        why: String,
    ) -> Result<WriteOutcome, QuorumError> {
        if req.datatype_op.is_some() {
            // A fallback's actor numbers from the hints it holds, which
            // need not hold its own earlier data type dots: only a primary
            // mints them, from the states it stores.
            return Err(QuorumError::Unavailable(format!(
                "{why}; a data type update needs a primary replica of the key"
            )));
        }
        let order: Vec<NodeId> = placement
            .fallbacks
            .iter()
            .filter(|f| **f == self.me || self.health.is_up(f))
            .cloned()
            .collect();
        let mut tried = Vec::new();
        for f in order {
            if f == self.me {
                return self.coordinate_fallback(req, placement, w, deadline).await;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            req.timeout_ms = left.as_millis() as u64;
            match self.call(&f, &CoordinateFallback(req.clone()), left).await {
                Ok(outcome) => return Ok(outcome),
                // An older node: try the next fallback.
                Err(RpcError::Remote(RemoteError::UnknownEndpoint(_))) => {
                    tried.push((f, "does not coordinate as a fallback".to_string()))
                }
                // Refused before anything was stored: another can take it.
                Err(RpcError::Remote(e @ RemoteError::InsufficientStorage { .. })) => {
                    tried.push((f, e.to_string()))
                }
                Err(RpcError::Remote(e)) => return Err(QuorumError::from_remote(e, "write")),
                Err(e) if e.never_sent() => tried.push((f, e.to_string())),
                Err(e) => {
                    tried.push((f, e.to_string()));
                    return Err(QuorumError::NotEnough {
                        op: "write",
                        needed: w,
                        acked: 0,
                        detail: tried,
                    });
                }
            }
        }
        Err(QuorumError::Unavailable(format!(
            "{why}; no fallback could coordinate it either{}",
            detail_suffix(&tried)
        )))
    }

    /// Coordinates a sloppy write on this node as a fallback: numbers it
    /// from the hints held here for the key (and the counter floor), keeps
    /// it as a hint for every primary, and hints the other primaries'
    /// copies through the other fallbacks too.
    async fn coordinate_fallback(
        self: &Arc<Self>,
        req: WriteRequest,
        placement: Placement,
        w: usize,
        deadline: Instant,
    ) -> Result<WriteOutcome, QuorumError> {
        if placement.primaries.is_empty() {
            return Err(QuorumError::Unavailable("the key has no primary".into()));
        }
        if req.datatype_op.is_some() {
            return Err(QuorumError::Unavailable(
                "a data type update needs a primary replica of the key".into(),
            ));
        }
        // Numbering and storing happen under one lock per key: two
        // fallback writes of a key here must not take the same dot.
        let stripe = (placement.hash as usize) % self.fallback_locks.len();
        let _numbering = self.fallback_locks[stripe].lock().await;
        let (partition, hash) = (placement.partition, placement.hash);
        let (key, primaries) = (req.key.clone(), placement.primaries.clone());
        let held = self
            .replica
            .with_store(move |s| {
                let kr = KeyRef {
                    partition,
                    hash,
                    key: &key,
                };
                let mut held: Option<Object> = s.get(&kr)?;
                for p in &primaries {
                    if let Some(h) = s.get_hint(p.as_str(), &kr)? {
                        held = Some(match held {
                            Some(o) => DvvSet::sync(&o, &h),
                            None => h,
                        });
                    }
                }
                Ok(held)
            })
            .await?;
        let actor = self.fallback_actor();
        let write = local_write::LocalWrite {
            actor: actor.clone(),
            floor: 0,
            context: req.context.clone(),
            content: req.content.clone(),
            idempotency_key: req.idempotency_key.clone(),
            supersede: req.supersede,
            datatype_op: req.datatype_op.clone(),
            window: self.config.idempotency_window,
            max_siblings: self.config.max_siblings,
            max_object_bytes: self.config.max_object_bytes,
        };
        let (next, step) = local_write::apply(held, &write, now_micros());
        let replayed = self.replica.applied(step)?;
        let Some(object) = next else {
            return Err(QuorumError::Storage("the write left no object".into()));
        };
        if !replayed {
            // A hint for every primary, so each gets the write from this
            // node when it returns even if no other fallback took a copy.
            for p in &placement.primaries {
                self.replica
                    .store_hint(StoreHint {
                        owner: p.clone(),
                        key: req.key.clone(),
                        object: object.clone(),
                    })
                    .await
                    .map_err(|e| QuorumError::Unavailable(e.to_string()))?;
            }
            self.metrics.fallback_coordinated.inc();
        }
        drop(_numbering);
        let dot = (!replayed).then(|| (actor.clone(), object.join().get(&actor)));
        let outcome = WriteOutcome {
            object,
            replayed,
            dot,
            replicas: ReplicaReport::default(),
        };
        let others: Vec<NodeId> = placement.primaries[1..].to_vec();
        let spares: Vec<NodeId> = placement
            .fallbacks
            .iter()
            .filter(|f| **f != self.me)
            .cloned()
            .collect();
        // This node's hint counts as one (hinted) copy: fallback writes are sloppy.
        let copy = OwnCopy::Hinted;
        self.replicate_and_wait(req.key, outcome, others, spares, w, true, copy, deadline)
            .await
    }

    /// Sends the write to the first reachable primary.
    async fn forward(
        self: &Arc<Self>,
        mut req: WriteRequest,
        placement: Placement,
        deadline: Instant,
    ) -> Result<WriteOutcome, QuorumError> {
        let mut order = placement.primaries.clone();
        // Primaries believed up first, ring order otherwise.
        order.sort_by_key(|p| !self.health.is_up(p));
        let mut tried = Vec::new();
        for primary in order {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            req.timeout_ms = left.as_millis() as u64;
            self.metrics.forwarded.inc();
            match self.call(&primary, &Coordinate(req.clone()), left).await {
                Ok(outcome) => return Ok(outcome),
                // Refused before anything was stored (a full disk): the next
                // primary can take it.
                Err(RpcError::Remote(e @ RemoteError::InsufficientStorage { .. })) => {
                    tried.push((primary, e.to_string()))
                }
                Err(RpcError::Remote(e)) => return Err(QuorumError::from_remote(e, "write")),
                // The request never arrived: safe to try the next primary.
                Err(e) if e.never_sent() => tried.push((primary, e.to_string())),
                // It may have been applied: do not coordinate it twice.
                Err(e) => {
                    tried.push((primary, e.to_string()));
                    return Err(QuorumError::NotEnough {
                        op: "write",
                        needed: 1,
                        acked: 0,
                        detail: tried,
                    });
                }
            }
        }
        Err(QuorumError::Unavailable(format!(
            "no primary replica of the key could coordinate the write ({})",
            tried
                .iter()
                .map(|(n, e)| format!("{n}: {e}"))
                .collect::<Vec<_>>()
                .join("; ")
        )))
    }

    /// Coordinates a write on this primary.
    async fn coordinate(
        self: &Arc<Self>,
        req: WriteRequest,
        placement: Placement,
        w: usize,
        deadline: Instant,
    ) -> Result<WriteOutcome, QuorumError> {
        #[cfg(feature = "planted-bug-lose-writes")]
        if let Some(lost) = planted_bug::lose(self, &req, &placement) {
            return Ok(lost);
        }
        if req.idempotency_key.is_some() {
            // The first attempt may have been coordinated elsewhere: bring
            // this replica up to date before looking for its record.
            self.pull_from_primaries(&req.key, &placement, deadline)
                .await;
        }
        let write = local_write::LocalWrite {
            actor: self.replica.actor.clone(),
            floor: self.replica.floor(),
            context: req.context.clone(),
            content: req.content.clone(),
            idempotency_key: req.idempotency_key.clone(),
            supersede: req.supersede,
            datatype_op: req.datatype_op.clone(),
            window: self.config.idempotency_window,
            max_siblings: self.config.max_siblings,
            max_object_bytes: self.config.max_object_bytes,
        };
        let (updated, replayed) = self
            .replica
            .coordinate_local(&placement, req.key.clone(), write)
            .await?;
        let Some(object) = updated else {
            return Err(QuorumError::Storage("the write left no object".into()));
        };
        if object.sibling_count() > self.config.warn_siblings {
            self.metrics.sibling_warnings.inc();
            debug!(key = %String::from_utf8_lossy(&req.key), siblings = object.sibling_count(), "key holds many siblings");
        }
        if replayed {
            self.metrics.idempotent_replays.inc();
        } else {
            self.metrics.coordinated.inc();
        }

        let others: Vec<NodeId> = placement
            .primaries
            .iter()
            .filter(|p| **p != self.me)
            .cloned()
            .collect();
        // During an ownership transfer the future replicas get the write
        // too (not counted toward W). One that does not take it gets a hint
        // kept here, which handoff delivers to it (not to the current
        // primaries), so a write made while its partition is streamed to
        // it is never missed by the new replica.
        let incoming = self.replica.incoming_replicas(&placement);
        if !incoming.is_empty() {
            let this = self.clone();
            let req = Replicate {
                key: req.key.clone(),
                object: object.clone(),
            };
            tokio::spawn(async move {
                let sends = incoming
                    .iter()
                    .map(|t| this.call(t, &req, this.config.rpc_timeout));
                let replies = futures::future::join_all(sends).await;
                for (target, reply) in incoming.into_iter().zip(replies) {
                    if let Err(e) = reply {
                        debug!(%target, error = %e, "a future replica missed a write; hinting it");
                        let hint = StoreHint {
                            owner: target.clone(),
                            key: req.key.clone(),
                            object: req.object.clone(),
                        };
                        if let Err(e) = this.replica.store_hint(hint).await {
                            warn!(%target, error = %e, "cannot keep a hint for a future replica; anti-entropy and the transfer will bring it the write");
                        }
                    }
                }
            });
        }
        let outcome = self.outcome(object, replayed);
        let spares = placement.fallbacks;
        let copy = OwnCopy::Primary;
        self.replicate_and_wait(
            req.key, outcome, others, spares, w, req.sloppy, copy, deadline,
        )
        .await
    }

    /// What a coordinated write answers: the object and the dot it got.
    fn outcome(&self, object: Object, replayed: bool) -> WriteOutcome {
        let dot = (!replayed).then(|| {
            let actor = self.replica.actor();
            (actor.to_string(), object.join().get(actor))
        });
        WriteOutcome {
            object,
            replayed,
            dot,
            replicas: ReplicaReport::default(),
        }
    }

    /// Sends a coordinated object to `others` (hinting through `spares` for
    /// the unreachable ones) and answers once `w` copies, this node's own
    /// included, are acknowledged; replication goes on after the answer
    /// (a [`strategy`] call: a failed copy goes to the next spare at once).
    ///
    /// What the replicas did goes into the outcome's
    /// [`WriteOutcome::replicas`] and, failed or not, into the report of
    /// [`Coordinator::put_reported`].
    #[allow(clippy::too_many_arguments)]
    async fn replicate_and_wait(
        self: &Arc<Self>,
        key: Bytes,
        mut outcome: WriteOutcome,
        others: Vec<NodeId>,
        spares: Vec<NodeId>,
        w: usize,
        sloppy: bool,
        own: OwnCopy,
        deadline: Instant,
    ) -> Result<WriteOutcome, QuorumError> {
        let own_hinted = u32::from(own == OwnCopy::Hinted);
        if others.is_empty() {
            outcome.replicas = ReplicaReport {
                asked: 1,
                answered: 1,
                repaired: 0,
                sloppy: own_hinted,
            };
            let _ = WRITE_REPORT.try_with(|c| c.set(outcome.replicas));
            return Ok(outcome);
        }
        let spares: Vec<NodeId> = spares
            .into_iter()
            .filter(|f| self.health.is_up(f))
            .collect();
        let mut plan = HintPlan {
            spares: spares.into_iter(),
        };
        let mut targets = Vec::with_capacity(others.len());
        let mut detail = Vec::new();
        for p in others {
            let primary = CopyTarget {
                node: p,
                owner: None,
            };
            if self.health.is_up(&primary.node) {
                targets.push(primary);
            } else if let Some(hint) = plan.replace(&primary) {
                targets.push(hint);
            } else {
                detail.push((primary.node, "down, and no fallback left".to_string()));
            }
        }
        let call = strategy::RequestStrategy {
            // This node's own copy is the first acknowledgement.
            quorum: w.saturating_sub(1),
            deadline,
            speculative_delay: None,
            straggler_deadline: deadline + self.config.rpc_timeout,
        };
        let this = self.clone();
        let object = outcome.object.clone();
        let send =
            move |t: CopyTarget| -> futures::future::BoxFuture<'static, Result<Stored, RpcError>> {
                let (this, key, object) = (this.clone(), key.clone(), object.clone());
                Box::pin(async move { this.send_copy(t, key, object, deadline).await })
            };
        let out = strategy::try_call_many(
            &call,
            targets,
            plan,
            send,
            |t: &CopyTarget, _: &Stored| t.owner.is_none() || sloppy,
            |_: &[(CopyTarget, Stored)]| true,
            None,
        )
        .await;
        let hinted = out.successes.iter().filter(|(t, _)| t.owner.is_some());
        outcome.replicas = ReplicaReport {
            asked: 1 + out.asked as u32,
            answered: 1 + out.successes.len() as u32,
            repaired: 0,
            sloppy: own_hinted + hinted.count() as u32,
        };
        let _ = WRITE_REPORT.try_with(|c| c.set(outcome.replicas));
        let acked = 1 + out.counted;
        if acked >= w {
            return Ok(outcome);
        }
        for (t, _) in out.successes {
            if let Some(owner) = t.owner.filter(|_| !sloppy) {
                detail.push((owner, format!("only hinted on {} (sloppy=false)", t.node)));
            }
        }
        detail.extend(
            out.failures
                .into_iter()
                .map(|(t, e)| (t.node, e.to_string())),
        );
        self.metrics
            .quorum_failures
            .get_or_create(&metrics::OpLabels { op: "write" })
            .inc();
        Err(QuorumError::NotEnough {
            op: "write",
            needed: w,
            acked,
            detail,
        })
    }

    /// Sends one copy of a write: to a primary ([`Replicate`]), or as a
    /// hint for its owner to a fallback ([`StoreHint`], kept in place when
    /// the fallback is this node).
    async fn send_copy(
        &self,
        target: CopyTarget,
        key: Bytes,
        object: Object,
        deadline: Instant,
    ) -> Result<Stored, RpcError> {
        let Some(owner) = target.owner else {
            let req = Replicate { key, object };
            let (started, sent) = (Instant::now(), now_micros());
            let r = self
                .call(&target.node, &req, self.rpc_deadline(deadline))
                .await;
            if let Ok(stored) = &r {
                let x = self.exchange(started, sent, stored.service_micros, stored.received_micros);
                self.pbs.record_write(target.node.as_str(), x);
            }
            return r;
        };
        let req = StoreHint { owner, key, object };
        let r = if target.node == self.me {
            self.replica.store_hint(req).await.map_err(RpcError::Remote)
        } else {
            self.call(&target.node, &req, self.rpc_deadline(deadline))
                .await
        };
        if r.is_ok() {
            self.metrics.hints_sent.inc();
        }
        r
    }

    /// Merges the other reachable primaries' copies of a key into the local
    /// replica (bounded by one RPC deadline).
    async fn pull_from_primaries(&self, key: &Bytes, placement: &Placement, deadline: Instant) {
        let req = Read {
            key: key.clone(),
            hint_for: None,
            digest_only: false,
        };
        let asks = placement
            .primaries
            .iter()
            .filter(|p| **p != self.me && self.health.is_up(p))
            .map(|p| self.call(p, &req, self.rpc_deadline(deadline)));
        let kr = KeyRef {
            partition: placement.partition,
            hash: placement.hash,
            key,
        };
        for reply in futures::future::join_all(asks).await {
            if let Ok(ReadReply {
                object: Some(o), ..
            }) = reply
                && let Err(e) = self.replica.store.merge(&kr, &o)
            {
                warn!(error = %e, "cannot merge a replica's copy before an idempotent write");
            }
        }
    }

    /// Registers the key-value, hint, listing, reaping and ping endpoints
    /// this coordinator serves.
    pub fn register(self: &Arc<Self>, d: &mut Dispatcher) {
        d.register::<Ping, _>(self.clone())
            .register::<Read, _>(self.replica.clone())
            .register::<Replicate, _>(self.replica.clone())
            .register::<Coordinate, _>(self.clone())
            .register::<CoordinateFallback, _>(self.clone())
            .register::<StoreHint, _>(self.replica.clone())
            .register::<ListKeys, _>(self.clone())
            .register::<ListNamespaces, _>(self.clone())
            .register::<IndexQuery, _>(self.clone())
            .register::<dynkv_rpc::messages::ReapCheck, _>(self.clone())
            .register::<dynkv_rpc::messages::Reap, _>(self.clone())
            .register::<dynkv_rpc::messages::WatchKey, _>(self.clone())
            .register::<dynkv_rpc::messages::FeedRead, _>(self.clone());
    }
}

impl Handler<Ping> for Coordinator {
    async fn handle(self: Arc<Self>, _: Ping, _: CallContext) -> Result<Pong, RemoteError> {
        Ok(Pong {
            node: self.me.clone(),
            clock: self.feed.clock().peek(),
        })
    }
}

impl Handler<Coordinate> for Coordinator {
    async fn handle(
        self: Arc<Self>,
        Coordinate(req): Coordinate,
        _: CallContext,
    ) -> Result<WriteOutcome, RemoteError> {
        self.feed.clock().observe(req.content.modified_micros);
        let (placement, w, deadline) = self.plan_write(&req)?;
        // Coordinate even if this node's ring disagrees: the object is
        // stored here too, so this node's dots are never reused.
        Ok(self.coordinate(req, placement, w, deadline).await?)
    }
}

impl Handler<CoordinateFallback> for Coordinator {
    async fn handle(
        self: Arc<Self>,
        CoordinateFallback(req): CoordinateFallback,
        _: CallContext,
    ) -> Result<WriteOutcome, RemoteError> {
        let (placement, w, deadline) = self.plan_write(&req)?;
        // A primary of the key (by this node's ring) coordinates as one.
        let outcome = if placement.primaries.contains(&self.me) {
            self.coordinate(req, placement, w, deadline).await
        } else {
            self.coordinate_fallback(req, placement, w, deadline).await
        };
        Ok(outcome?)
    }
}

impl Handler<ListKeys> for Coordinator {
    async fn handle(self: Arc<Self>, req: ListKeys, _: CallContext) -> Result<Keys, RemoteError> {
        let store = self.replica.store.clone();
        let scan = tokio::task::spawn_blocking(move || {
            store.scan_keys(
                req.partition,
                &req.prefix,
                req.after.as_deref(),
                req.limit as usize,
            )
        })
        .await;
        listed(scan)
    }
}

impl Handler<ListNamespaces> for Coordinator {
    async fn handle(
        self: Arc<Self>,
        req: ListNamespaces,
        _: CallContext,
    ) -> Result<Keys, RemoteError> {
        let store = self.replica.store.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let prefix = &req.prefix[..];
            let after = req.after.as_deref().map(|c| component_prefix(prefix, c));
            let groups = store.scan_groups(
                req.partition,
                prefix,
                after.as_deref(),
                req.limit as usize,
                |key| split_component(prefix, key).map(|(_, rest)| key.len() - rest.len()),
            )?;
            // Each group is `prefix ‖ len ‖ component`: answer the components.
            Ok(groups
                .iter()
                .filter_map(|g| split_component(prefix, g).map(|(c, _)| c.to_vec()))
                .collect())
        })
        .await;
        listed(scan)
    }
}

impl Handler<IndexQuery> for Coordinator {
    async fn handle(
        self: Arc<Self>,
        req: IndexQuery,
        _: CallContext,
    ) -> Result<IndexEntries, RemoteError> {
        let store = self.replica.store.clone();
        tokio::task::spawn_blocking(move || index::scan(&store, &req))
            .await
            .map_err(|e| RemoteError::Storage(e.to_string()))?
            .map(IndexEntries)
    }
}

/// A deliberate bug, compiled in only with the `planted-bug-lose-writes`
/// feature, that proves the fault-injection checker catches lost writes:
/// every 100th coordinated write is acknowledged but neither stored nor
/// replicated. Never enable it outside that check.
#[cfg(feature = "planted-bug-lose-writes")]
mod planted_bug {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    static WRITES: AtomicU64 = AtomicU64::new(0);

    pub(super) fn lose(c: &Coordinator, req: &WriteRequest, p: &Placement) -> Option<WriteOutcome> {
        if WRITES.fetch_add(1, Ordering::Relaxed) % 100 != 99 {
            return None;
        }
        let kr = KeyRef {
            partition: p.partition,
            hash: p.hash,
            key: &req.key,
        };
        let cur = c.replica.store.get(&kr).ok()?.unwrap_or_default();
        let actor = c.replica.actor();
        let object = DvvSet::update(&req.context, &cur, actor, req.content.clone());
        let counter = object.join().get(actor);
        warn!("planted bug: acknowledging a write without storing it");
        Some(WriteOutcome {
            object,
            replayed: false,
            dot: Some((actor.to_string(), counter)),
            replicas: ReplicaReport::default(),
        })
    }
}

/// The answer to a listing step: the keys, or why the scan failed.
fn listed(
    scan: Result<dynkv_storage::Result<Vec<Vec<u8>>>, tokio::task::JoinError>,
) -> Result<Keys, RemoteError> {
    match scan {
        Ok(Ok(keys)) => Ok(Keys(keys.into_iter().map(Bytes::from).collect())),
        Ok(Err(e)) => Err(RemoteError::Storage(e.to_string())),
        Err(e) => Err(RemoteError::Storage(e.to_string())),
    }
}

tokio::task_local! {
    /// The replica report of the write the current task coordinates,
    /// scoped by [`Coordinator::put_reported`] so that it survives a
    /// failed write (the error types carry no report).
    static WRITE_REPORT: std::cell::Cell<ReplicaReport>;
}

/// What the coordinator's own copy of a write is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OwnCopy {
    /// Stored as a primary's replica.
    Primary,
    /// Kept as hints by a fallback coordinator.
    Hinted,
}

/// One copy of a write: a primary, or a fallback keeping a hint for
/// `owner`.
#[derive(Clone, Debug)]
struct CopyTarget {
    node: NodeId,
    owner: Option<NodeId>,
}

/// Where a write's failed copies go: the next fallback held up, as a hint
/// for the copy's owner. A write asks no extra replica.
struct HintPlan {
    spares: std::vec::IntoIter<NodeId>,
}

impl CallPlan<CopyTarget> for HintPlan {
    fn replace(&mut self, failed: &CopyTarget) -> Option<CopyTarget> {
        let owner = failed.owner.clone().unwrap_or_else(|| failed.node.clone());
        self.spares.next().map(|node| CopyTarget {
            node,
            owner: Some(owner),
        })
    }

    fn extra(&mut self) -> Option<CopyTarget> {
        None
    }
}

/// Microseconds since the Unix epoch, for `Content::modified_micros`.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
