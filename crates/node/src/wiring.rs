//! Building a node from its [`Config`]: each mechanism's config type made
//! once from the typed sections, the metrics registry, and the pieces
//! (store, incarnation, transport, coordinator, anti-entropy, membership,
//! dispatcher) that `serve` then runs.

use std::sync::Arc;
use std::time::Duration;

use dynkv_antientropy::{AaeMetrics, AntiEntropy, AntiEntropyConfig, TreeSet};
use dynkv_api::{AppState, ContextKey, HttpMetrics, Limits};
use dynkv_membership::{Membership, MembershipConfig};
use dynkv_quorum::epoch::Epoch;
use dynkv_quorum::handoff::HandoffConfig;
use dynkv_quorum::reaper::ReaperConfig;
use dynkv_quorum::{Coordinator, CoordinatorConfig, QuorumMetrics};
use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::handshake::Hello;
use dynkv_rpc::retry::Backoff;
use dynkv_rpc::{
    AddressBook, BreakerMetrics, ClusterSecret, Dispatcher, InternodeMetrics, NetConfig,
    NetTransport, PeerHealth,
};
use dynkv_runtime::Runtime;
use dynkv_storage::{Store, StoreConfig};
use prometheus_client::registry::Registry;
use tracing::info;

use crate::config::Config;
use crate::views::{self, MembershipAdminView};
use crate::workers::StorageMetrics;

type Error = Box<dyn std::error::Error>;

impl Config {
    /// RocksDB settings.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            path: self.node.data_dir.clone(),
            sync_writes: self.storage.sync_writes,
            block_cache_bytes: self.storage.block_cache_bytes(),
            write_buffer_bytes: self.storage.write_buffer_mb << 20,
            background_bytes_per_sec: self.storage.background_mb_per_sec << 20,
            key_hash: dynkv_ring::key_hash,
            object_cache_bytes: self.storage.object_cache_mb << 20,
            deferred_merges: self.storage.deferred_merges,
            index_scope: dynkv_api::riak::namespace::scope_len,
            change_log: self.feed.enabled,
            // Retention plus a quarter and one memtable's worth: the files
            // FIFO drops are then only ones the trim emptied.
            change_log_disk_bytes: (self.feed.retention_mb << 20) / 4 * 5
                + (self.storage.write_buffer_mb << 20) as u64
                + (64 << 20),
        }
    }

    /// The internode transport's settings.
    pub fn net_config(&self, secret: ClusterSecret) -> NetConfig {
        NetConfig {
            secret,
            hello: Hello::new(
                &self.node.id,
                self.advertise(),
                self.pinned_protocol_version(),
            ),
            connect_timeout: self.quorum.rpc_connect_timeout,
            handshake_timeout: self.internode.handshake_timeout,
            max_frame: self.limits.max_rpc_bytes,
            max_inflight: self.internode.max_inflight_per_peer,
            max_connections: self.internode.max_connections,
            reconnect: Backoff {
                base: Duration::from_millis(25),
                max: self.internode.reconnect_backoff_max,
            },
        }
    }

    /// The coordinator's settings.
    pub fn coordinator_config(&self) -> CoordinatorConfig {
        CoordinatorConfig {
            n_val: self.cluster.n_val,
            default_r: self.quorum.r,
            default_w: self.quorum.w,
            default_timeout: self.quorum.request_timeout,
            rpc_timeout: self.quorum.rpc_timeout,
            blocking_store: self.storage.sync_writes,
            read_repair: self.read_repair.enabled,
            read_repair_chance: self.read_repair.chance,
            speculative_retry: self.quorum.speculative_retry,
            read_repair_wait: self.read_repair.wait,
            max_hints: self.handoff.max_hints,
            max_hint_bytes: self.handoff.max_hint_bytes,
            idempotency_window: self.quorum.idempotency_window,
            read_repair_concurrency: self.read_repair.concurrency,
            max_siblings: self.limits.max_siblings,
            warn_siblings: self.limits.warn_siblings,
            max_object_bytes: self.limits.max_object_bytes,
            pbs_record: self.pbs.record,
            pbs_half_life: self.pbs.half_life,
            pbs_clocks: self.pbs.clocks,
            feed: self.feed_config(),
        }
    }

    /// Watches' and the change feed's settings.
    pub fn feed_config(&self) -> dynkv_quorum::feed::FeedConfig {
        let f = &self.feed;
        dynkv_quorum::feed::FeedConfig {
            enabled: f.enabled,
            settle: f.settle,
            poll_interval: f.poll_interval,
            max_waiting: f.max_waiting,
            default_wait: f.default_wait,
            max_wait: f.max_wait,
            batch: f.batch,
            tolerate_silent: usize::try_from(f.tolerate_silent).ok(),
            retention: f.retention,
            retention_bytes: f.retention_mb << 20,
            trim_interval: f.trim_interval,
        }
    }

    /// Anti-entropy's settings.
    pub fn antientropy_config(&self) -> AntiEntropyConfig {
        let a = &self.antientropy;
        AntiEntropyConfig {
            enabled: a.enabled,
            exchange_interval: a.exchange_interval,
            concurrency: a.concurrency,
            keys_per_batch: a.keys_per_batch,
            batch_pause: a.batch_pause,
            rebuild_interval: a.rebuild_interval,
            rpc_timeout: self.quorum.rpc_timeout,
            max_message_bytes: self.limits.max_rpc_bytes / 2,
        }
    }

    /// Membership's settings.
    pub fn membership_config(&self) -> MembershipConfig {
        let m = &self.membership;
        MembershipConfig {
            n_val: self.cluster.n_val,
            gossip_interval: m.gossip_interval,
            transfer_batch: m.transfer_batch,
            transfer_pause: m.transfer_pause,
            transfer_concurrency: m.transfer_concurrency,
            cleanup_grace: m.cleanup_grace,
            rpc_timeout: self.quorum.request_timeout,
            max_message_bytes: self.limits.max_rpc_bytes / 2,
        }
    }

    /// The handoff worker's settings.
    pub fn handoff_config(&self) -> HandoffConfig {
        let h = &self.handoff;
        HandoffConfig {
            interval: h.interval,
            batch: h.batch,
            concurrency: h.concurrency,
            backoff_base: h.backoff_base,
            backoff_max: h.backoff_max,
            hint_window: h.hint_window,
        }
    }

    /// The tombstone reaper's settings.
    pub fn reaper_config(&self) -> ReaperConfig {
        let s = &self.storage;
        ReaperConfig {
            interval: s.reap_interval,
            grace: s.tombstone_grace,
            settle: s.reap_settle,
            batch: s.reap_batch,
            timeout: self.quorum.request_timeout.max(Duration::from_secs(5)),
            ..ReaperConfig::default()
        }
    }

    /// The public API's limits.
    pub fn api_limits(&self) -> Limits {
        Limits {
            max_key_bytes: self.limits.max_key_bytes,
            max_value_bytes: self.limits.max_value_bytes,
            max_timeout_ms: self.limits.max_timeout.as_millis() as u64,
            max_inflight: self.limits.max_inflight_requests,
            body_read_timeout: self.limits.body_read_timeout,
            max_content_type_bytes: self.limits.max_content_type_bytes,
            max_meta_entries: self.limits.max_meta_entries,
            max_meta_bytes: self.limits.max_meta_bytes,
            max_index_entries: self.limits.max_index_entries,
            max_links: self.limits.max_links,
        }
    }
}

/// Every metric family of the node, registered once.
pub struct Metrics {
    /// What `/metrics` renders.
    pub registry: Registry,
    /// The internode transport's.
    pub internode: Arc<InternodeMetrics>,
    /// The coordinator's.
    pub quorum: Arc<QuorumMetrics>,
    /// The circuit breakers'.
    pub breakers: Arc<BreakerMetrics>,
    /// The HTTP layer's.
    pub http: Arc<HttpMetrics>,
    /// Anti-entropy's.
    pub aae: Arc<AaeMetrics>,
    /// The store's health.
    pub storage: StorageMetrics,
    /// The public listener's connections.
    pub listener: Arc<crate::listener::ListenerMetrics>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            internode: Arc::default(),
            quorum: Arc::default(),
            breakers: Arc::default(),
            http: Arc::default(),
            aae: Arc::default(),
            storage: StorageMetrics::default(),
            listener: Arc::default(),
        };
        let r = &mut m.registry;
        m.internode.register(r);
        m.quorum.register(r);
        m.breakers.register(r);
        m.http.register(r);
        m.aae.register(r);
        m.storage.register(r);
        m.listener.register(r);
        m
    }
}

/// A node's pieces, assembled and not yet running.
pub struct Node {
    /// The local store.
    pub store: Arc<Store>,
    /// This run's incarnation.
    pub epoch: Epoch,
    /// The coordinator.
    pub coord: Arc<Coordinator>,
    /// Anti-entropy.
    pub aae: Arc<AntiEntropy>,
    /// Live membership.
    pub membership: Arc<Membership>,
    /// The internode client.
    pub transport: NetTransport,
    /// Its settings, for the listener.
    pub net: NetConfig,
    /// What the internode listener serves: every subsystem's endpoints;
    /// `serve` adds the overview endpoint, which needs the API's state.
    pub dispatcher: Dispatcher,
    /// Node addresses.
    pub book: Arc<AddressBook>,
    /// The metrics.
    pub metrics: Metrics,
    /// The key client context tokens are signed with.
    pub context_key: ContextKey,
}

impl Node {
    /// Opens the store, takes this run's incarnation and builds every
    /// piece (nothing listens or runs yet).
    pub fn assemble(cfg: &Config, secret: &ClusterSecret) -> Result<Node, Error> {
        let me = NodeId::from(cfg.node.id.as_str());
        let members: Vec<(NodeId, String)> = cfg
            .members()
            .into_iter()
            .map(|m| (NodeId::from(m.id.as_str()), m.addr))
            .collect();
        let ids: Vec<NodeId> = members.iter().map(|(id, _)| id.clone()).collect();
        let ring = Ring::new(ids.clone(), cfg.cluster.partitions)?;

        std::fs::create_dir_all(&cfg.node.data_dir)?;
        let context_key = context_key(cfg, secret)?;
        let trees = Arc::new(TreeSet::new(cfg.cluster.partitions));
        let store = Arc::new(Store::open(&cfg.store_config(), Some(trees.clone()))?);
        info!(data_dir = %cfg.node.data_dir.display(), hints = store.hint_count(), "storage open");
        // Before anything is served: this run's incarnation (a new one if
        // the stored counters may be incomplete), fsynced.
        let epoch = dynkv_quorum::epoch::begin(
            &store,
            &me,
            cfg.storage.sync_writes,
            cfg.node.new_incarnation,
        )?;
        match epoch.renewed {
            Some(why) => info!(actor = %epoch.actor, reason = why, "new incarnation"),
            None => {
                info!(actor = %epoch.actor, floor = epoch.floor, "incarnation kept (clean shutdown)")
            }
        }

        let book = Arc::new(AddressBook::new(members.iter().cloned()));
        let mut metrics = Metrics::new();
        let fd = &cfg.failure_detector;
        let health = PeerHealth::new(me.clone(), ids, fd.failure_threshold)
            .with_cooldown(fd.breaker_cooldown)
            .with_metrics(metrics.breakers.clone());
        let net = cfg.net_config(secret.clone());
        let transport = NetTransport::new(net.clone(), book.clone(), metrics.internode.clone());
        let coord = Coordinator::with_epoch(
            me,
            ring,
            store.clone(),
            Arc::new(transport.clone()),
            Arc::new(health),
            cfg.coordinator_config(),
            metrics.quorum.clone(),
            &epoch,
        );
        coord.feed().metrics().register(&mut metrics.registry);
        let aae = AntiEntropy::new(
            coord.clone(),
            trees,
            cfg.antientropy_config(),
            metrics.aae.clone(),
        );
        let membership = Membership::start(
            coord.clone(),
            book.clone(),
            cfg.membership_config(),
            &members,
        )?;
        let mut dispatcher = Dispatcher::new();
        coord.register(&mut dispatcher);
        aae.register(&mut dispatcher);
        membership.register(&mut dispatcher);
        Ok(Node {
            store,
            epoch,
            coord,
            aae,
            membership,
            transport,
            net,
            dispatcher,
            book,
            metrics,
            context_key,
        })
    }

    /// The public API's state (the node's views included); takes the
    /// registry, which the API renders from then on.
    pub fn app_state(
        &mut self,
        cfg: &Config,
        secret: &ClusterSecret,
        runtime: &Arc<Runtime>,
    ) -> AppState {
        let views =
            views::admin_views(cfg, &self.coord, &self.aae, self.transport.clone(), runtime);
        AppState {
            coord: self.coord.clone(),
            membership: Some(Arc::new(MembershipAdminView {
                membership: self.membership.clone(),
                addr: cfg.cluster_advertise().to_string(),
            })),
            views: Arc::new(views),
            book: self.book.clone(),
            limits: cfg.api_limits(),
            admin_token: secret.admin_token().into(),
            metrics: self.metrics.http.clone(),
            registry: Arc::new(std::mem::take(&mut self.metrics.registry)),
            inflight: Arc::new(tokio::sync::Semaphore::new(
                cfg.limits.max_inflight_requests,
            )),
            context_key: self.context_key.clone(),
            security: Arc::new(dynkv_api::http::auth::SecurityGate::new(
                crate::config::is_loopback(&cfg.node.listen),
            )),
            riak: Default::default(),
            overview: Default::default(),
            directory: Some(Arc::new(views::PublicDirectory::new(
                cfg,
                self.transport.clone(),
            ))),
        }
    }
}

/// File in the data directory holding the context-signing secret of a
/// node that runs without a configured cluster secret.
const LOCAL_CONTEXT_SECRET: &str = "context.secret";

/// The key context tokens are signed with: derived from the cluster
/// secret, so every node accepts every node's tokens. A lone loopback node
/// without a configured secret runs with a throwaway one, yet its clients'
/// tokens must outlive a restart: its context key comes from a secret kept
/// in its data directory (written once, readable by its owner only).
fn context_key(cfg: &Config, secret: &ClusterSecret) -> Result<ContextKey, Error> {
    if cfg.configured_secret()?.is_some() {
        return Ok(ContextKey::new(secret.context_key()));
    }
    let path = cfg.node.data_dir.join(LOCAL_CONTEXT_SECRET);
    let local = match std::fs::read_to_string(&path) {
        Ok(hex) => ClusterSecret::from_hex(&hex).map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fresh = ClusterSecret::generate();
            write_private(&path, &fresh.to_hex())?;
            fresh
        }
        Err(e) => return Err(format!("{}: {e}", path.display()).into()),
    };
    Ok(ContextKey::new(local.context_key()))
}

/// Writes a secret file only its owner can read.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
