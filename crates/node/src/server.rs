//! `dynkv serve`: wires storage, ring, transport, coordinator, background
//! workers, the internode listener and the public HTTP listener together,
//! and shuts them down in order.

use std::sync::Arc;
use std::time::Duration;

use dynkv_antientropy::{AaeMetrics, AntiEntropy, AntiEntropyConfig, TreeSet};
use dynkv_api::{AdminView, AppState, HttpMetrics, Limits, MembershipAdmin};
use dynkv_membership::{Membership, MembershipConfig};
use dynkv_quorum::handoff::{self, HandoffConfig};
use dynkv_quorum::reaper;
use dynkv_quorum::{Coordinator, CoordinatorConfig, QuorumMetrics};
use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::handshake::Hello;
use dynkv_rpc::messages::{Ping, Pong};
use dynkv_rpc::retry::Backoff;
use dynkv_rpc::{
    AddressBook, BreakerMetrics, Dispatcher, InternodeMetrics, NetConfig, NetTransport, PeerHealth,
};
use dynkv_storage::{Recovery, Store, StoreConfig, StoreHealth, StoreState};
use futures::future::BoxFuture;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::Config;

/// Runs a node until SIGTERM or Ctrl-C.
pub async fn serve(cfg: Config) -> Result<(), Box<dyn std::error::Error>> {
    let me = NodeId::from(cfg.node.id.as_str());
    let secret = cfg.secret()?;
    if !crate::config::is_loopback(&cfg.node.listen) {
        warn!(listen = %cfg.node.listen, "the public API listens off loopback without TLS or authentication: anyone who reaches it can read and write every key");
    }
    let members = cfg.members()?;
    let ids: Vec<NodeId> = members
        .iter()
        .map(|m| NodeId::from(m.id.as_str()))
        .collect();
    let ring = Ring::new(ids.clone(), cfg.cluster.partitions)?;

    std::fs::create_dir_all(&cfg.node.data_dir)?;
    let store_cfg = StoreConfig {
        path: cfg.node.data_dir.clone(),
        sync_writes: cfg.storage.sync_writes,
        block_cache_bytes: cfg.storage.block_cache_mb << 20,
        write_buffer_bytes: cfg.storage.write_buffer_mb << 20,
        background_bytes_per_sec: cfg.storage.background_mb_per_sec << 20,
    };
    let trees = Arc::new(TreeSet::new(cfg.cluster.partitions));
    let store = Arc::new(Store::open(&store_cfg, Some(trees.clone()))?);
    info!(data_dir = %cfg.node.data_dir.display(), hints = store.hint_count(), "storage open");
    // Before anything is served: this run's incarnation (a new one if the
    // stored counters may be incomplete), fsynced.
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

    let book = Arc::new(AddressBook::new(
        members
            .iter()
            .map(|m| (NodeId::from(m.id.as_str()), m.addr.clone())),
    ));
    let breaker_metrics = Arc::new(BreakerMetrics::default());
    let health = Arc::new(
        PeerHealth::new(
            me.clone(),
            ids.clone(),
            cfg.failure_detector.failure_threshold,
        )
        .with_cooldown(Config::ms(cfg.failure_detector.breaker_cooldown_ms))
        .with_metrics(breaker_metrics.clone()),
    );
    let net_config = NetConfig {
        secret: secret.clone(),
        hello: Hello::new(me.as_str(), cfg.advertise(), cfg.pinned_protocol_version()),
        connect_timeout: Config::ms(cfg.quorum.rpc_connect_timeout_ms),
        handshake_timeout: Config::ms(cfg.internode.handshake_timeout_ms),
        max_frame: cfg.limits.max_rpc_bytes,
        max_inflight: cfg.internode.max_inflight_per_peer,
        max_connections: cfg.internode.max_connections,
        reconnect: Backoff {
            base: Duration::from_millis(25),
            max: Config::ms(cfg.internode.reconnect_backoff_max_ms),
        },
    };
    let internode_metrics = Arc::new(InternodeMetrics::default());
    let transport = NetTransport::new(net_config.clone(), book.clone(), internode_metrics.clone());

    let mut registry = Registry::default();
    internode_metrics.register(&mut registry);
    let quorum_metrics = Arc::new(QuorumMetrics::default());
    quorum_metrics.register(&mut registry);
    breaker_metrics.register(&mut registry);
    let http_metrics = Arc::new(HttpMetrics::default());
    http_metrics.register(&mut registry);
    let aae_metrics = Arc::new(AaeMetrics::default());
    aae_metrics.register(&mut registry);
    let storage_metrics = StorageMetrics::default();
    storage_metrics.register(&mut registry);

    let coord = Coordinator::with_epoch(
        me.clone(),
        ring,
        store.clone(),
        Arc::new(transport.clone()),
        health,
        CoordinatorConfig {
            n_val: cfg.cluster.n_val,
            default_r: cfg.default_r(),
            default_w: cfg.default_w(),
            default_timeout: Config::ms(cfg.quorum.request_timeout_ms),
            rpc_timeout: Config::ms(cfg.quorum.rpc_timeout_ms),
            blocking_store: cfg.storage.sync_writes,
            read_repair: cfg.read_repair.enabled,
            read_repair_chance: cfg.read_repair.chance,
            read_repair_wait: Config::ms(cfg.read_repair.wait_ms),
            max_hints: cfg.handoff.max_hints,
            max_hint_bytes: cfg.handoff.max_hint_bytes,
            idempotency_window: Duration::from_secs(cfg.quorum.idempotency_window_s),
            read_repair_concurrency: cfg.read_repair.concurrency,
            max_siblings: cfg.limits.max_siblings,
            warn_siblings: cfg.limits.warn_siblings,
            max_object_bytes: cfg.limits.max_object_bytes,
        },
        quorum_metrics,
        &epoch,
    );

    let aae = AntiEntropy::new(
        coord.clone(),
        trees,
        AntiEntropyConfig {
            enabled: cfg.antientropy.enabled,
            exchange_interval: Config::ms(cfg.antientropy.exchange_interval_ms),
            concurrency: cfg.antientropy.concurrency,
            keys_per_batch: cfg.antientropy.keys_per_batch,
            batch_pause: Config::ms(cfg.antientropy.batch_pause_ms),
            rebuild_interval: Duration::from_secs(cfg.antientropy.rebuild_interval_s),
            rpc_timeout: Config::ms(cfg.quorum.rpc_timeout_ms),
            max_message_bytes: cfg.limits.max_rpc_bytes / 2,
        },
        aae_metrics,
    );

    let static_members: Vec<(NodeId, String)> = members
        .iter()
        .map(|m| (NodeId::from(m.id.as_str()), m.addr.clone()))
        .collect();
    let membership = Membership::start(
        coord.clone(),
        book.clone(),
        MembershipConfig {
            n_val: cfg.cluster.n_val,
            gossip_interval: Config::ms(cfg.membership.gossip_interval_ms),
            transfer_batch: cfg.membership.transfer_batch,
            transfer_pause: Config::ms(cfg.membership.transfer_pause_ms),
            transfer_concurrency: cfg.membership.transfer_concurrency,
            cleanup_grace: Config::ms(cfg.membership.cleanup_grace_ms),
            rpc_timeout: Config::ms(cfg.quorum.request_timeout_ms),
            max_message_bytes: cfg.limits.max_rpc_bytes / 2,
        },
        &static_members,
    )?;

    let mut dispatcher = Dispatcher::new();
    coord.register(&mut dispatcher);
    aae.register(&mut dispatcher);
    membership.register(&mut dispatcher);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut workers = Vec::new();
    let cluster_listener = tokio::net::TcpListener::bind(&cfg.node.cluster_listen).await?;
    workers.push(tokio::spawn(dynkv_rpc::net::serve(
        cluster_listener,
        net_config,
        Arc::new(dispatcher),
        internode_metrics,
        shutdown_rx.clone(),
    )));
    workers.push(tokio::spawn(
        membership.clone().run_gossip(shutdown_rx.clone()),
    ));
    workers.push(tokio::spawn(
        membership.clone().run_transfers(shutdown_rx.clone()),
    ));
    if !cfg.membership.seeds.is_empty() && membership.state().members.len() == 1 {
        workers.push(tokio::spawn(join_seeds(
            membership.clone(),
            cfg.membership.seeds.clone(),
            cfg.cluster_advertise().to_string(),
            shutdown_rx.clone(),
        )));
    }

    workers.push(tokio::spawn(failure_detector(
        coord.clone(),
        cfg.clone(),
        shutdown_rx.clone(),
    )));
    if cfg.handoff.enabled {
        let hc = HandoffConfig {
            interval: Config::ms(cfg.handoff.interval_ms),
            batch: cfg.handoff.batch,
            concurrency: cfg.handoff.concurrency,
            backoff_base: Config::ms(cfg.handoff.backoff_base_ms),
            backoff_max: Config::ms(cfg.handoff.backoff_max_ms),
            hint_window: Config::ms(cfg.handoff.hint_window_ms),
        };
        workers.push(tokio::spawn(handoff::run(
            coord.clone(),
            hc,
            shutdown_rx.clone(),
        )));
    }

    if cfg.antientropy.enabled {
        workers.push(tokio::spawn(aae.clone().run(shutdown_rx.clone())));
    }

    // A write that fails for lack of space (or any I/O error) leaves the
    // store refusing writes; this brings it back once space returns.
    workers.push(tokio::spawn(storage_recovery(
        store.clone(),
        storage_metrics,
        shutdown_rx.clone(),
    )));

    if cfg.storage.reap_interval_ms > 0 {
        let rc = reaper::ReaperConfig {
            interval: Config::ms(cfg.storage.reap_interval_ms),
            grace: Config::ms(cfg.storage.tombstone_grace_ms),
            settle: Config::ms(cfg.storage.reap_settle_ms),
            batch: cfg.storage.reap_batch,
            timeout: Config::ms(cfg.quorum.request_timeout_ms).max(Duration::from_secs(5)),
            ..reaper::ReaperConfig::default()
        };
        workers.push(tokio::spawn(reaper::run(
            coord.clone(),
            rc,
            shutdown_rx.clone(),
        )));
    }

    // The periodic WAL fsync (storage.sync_interval_ms): bounds what a power
    // cut can take to the last interval of acknowledged writes. It runs on a
    // thread of its own (an fsync blocks) and stops with the other workers.
    if cfg.storage.sync_interval_ms > 0 && !cfg.storage.sync_writes {
        let metrics = coord.metrics().clone();
        let synced = store.clone();
        let mut failing = 0u64;
        let syncer = store.start_wal_sync(Config::ms(cfg.storage.sync_interval_ms), move |r| {
            metrics.wal_synced(r.is_ok(), synced.last_wal_sync());
            match r {
                Ok(()) => failing = 0,
                Err(e) => {
                    // Every failure is counted; the log gets the first of a
                    // run and every 100th after it.
                    if failing.is_multiple_of(100) {
                        warn!(error = %e, consecutive = failing + 1, "WAL sync failed: writes acknowledged since the last successful sync would not survive a power cut");
                    }
                    failing += 1;
                }
            }
        });
        info!(
            interval_ms = cfg.storage.sync_interval_ms,
            "periodic WAL sync on"
        );
        let mut shutdown = shutdown_rx.clone();
        workers.push(tokio::spawn(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
            let _ = tokio::task::spawn_blocking(move || syncer.stop()).await;
        }));
    }

    let state = AppState {
        coord: coord.clone(),
        membership: Some(Arc::new(MembershipAdminView {
            membership: membership.clone(),
            addr: cfg.cluster_advertise().to_string(),
        })),
        views: Arc::new(vec![
            ("aae", Arc::new(AaeView(aae.clone())) as Arc<dyn AdminView>),
            (
                "reaper",
                Arc::new(ReaperView {
                    coord: coord.clone(),
                    interval_ms: cfg.storage.reap_interval_ms,
                    grace_ms: cfg.storage.tombstone_grace_ms,
                    settle_ms: cfg.storage.reap_settle_ms,
                }) as Arc<dyn AdminView>,
            ),
            (
                "internode",
                Arc::new(InternodeView(transport)) as Arc<dyn AdminView>,
            ),
        ]),
        book,
        limits: Limits {
            max_key_bytes: cfg.limits.max_key_bytes,
            max_value_bytes: cfg.limits.max_value_bytes,
            max_timeout_ms: cfg.limits.max_timeout_ms,
            max_inflight: cfg.limits.max_inflight_requests,
        },
        admin_token: secret.admin_token().into(),
        metrics: http_metrics,
        registry: Arc::new(registry),
        inflight: Arc::new(tokio::sync::Semaphore::new(
            cfg.limits.max_inflight_requests,
        )),
    };
    // TCP_NODELAY: small HTTP answers must not wait for Nagle's algorithm
    // (with delayed ACKs that stalls a keep-alive connection for tens of ms).
    let listener = axum::serve::ListenerExt::tap_io(
        tokio::net::TcpListener::bind(&cfg.node.listen).await?,
        |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                warn!(error = %e, "cannot set TCP_NODELAY");
            }
        },
    );
    info!(node = %me, listen = %cfg.node.listen, cluster_listen = %cfg.node.cluster_listen, members = ids.len(), n_val = cfg.cluster.n_val, "dynkv node ready");
    axum::serve(listener, dynkv_api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;

    info!("shutting down");
    let _ = shutdown_tx.send(true);
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    store.flush()?;
    drop(coord);
    // Only now is every acknowledged write on disk: the next start may keep
    // this incarnation.
    dynkv_quorum::epoch::end(&store, &epoch)?;
    info!("storage flushed; bye");
    Ok(())
}

/// The store's health as metrics.
#[derive(Clone, Default)]
struct StorageMetrics {
    /// 0 healthy, 1 refusing writes for lack of space, 2 refusing writes
    /// after another I/O error, 3 closed while being reopened.
    state: Gauge,
    /// Reopens that brought the store back.
    reopens: Counter,
}

impl StorageMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynkv_storage_state",
            "Local store: 0 healthy, 1 refusing writes (no space left), 2 refusing writes (I/O error), 3 reopening",
            self.state.clone(),
        );
        registry.register(
            "dynkv_storage_reopens",
            "Times the local store was reopened to take writes again after a failed write",
            self.reopens.clone(),
        );
    }

    fn show(&self, health: &StoreHealth) {
        self.state.set(match (health.reopening, health.state) {
            (true, _) => 3,
            (false, StoreState::Healthy) => 0,
            (false, StoreState::NoSpace) => 1,
            (false, StoreState::Failed) => 2,
        });
    }
}

/// While the store refuses writes (its disk filled up, or another write
/// failed), asks it once a second to recover: [`Store::recover`] probes
/// whether the data directory takes writes again and then reopens the
/// database. Keeps `dynkv_storage_state` current and logs the way back.
async fn storage_recovery(
    store: Arc<Store>,
    metrics: StorageMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last_note: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let health = store.health();
        metrics.show(&health);
        if health.state == StoreState::Healthy {
            continue;
        }
        let s = store.clone();
        match tokio::task::spawn_blocking(move || s.recover()).await {
            Ok(Ok(Recovery::Reopened { took, reconciled })) => {
                metrics.reopens.inc();
                let refused_s = health
                    .since
                    .and_then(|t| t.elapsed().ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                info!(
                    took_ms = took.as_millis() as u64,
                    refused_writes_for_s = refused_s,
                    reconciled,
                    "storage recovered: the database was reopened and takes writes again"
                );
                last_note = None;
            }
            Ok(Ok(Recovery::NotYet(why))) => {
                // The first probe that fails, then one line every 30 s.
                if last_note.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
                    warn!(
                        state = health.state.name(),
                        probe = %why,
                        "storage still refuses writes: the data directory does not take writes yet"
                    );
                    last_note = Some(std::time::Instant::now());
                }
            }
            Ok(Ok(Recovery::Healthy)) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "reopening the database failed; trying again in a second")
            }
            Err(e) => warn!(error = %e, "the storage recovery task failed"),
        }
        metrics.show(&store.health());
    }
}

/// Pings every peer each interval; outcomes feed the peer table through the
/// coordinator's call path, like request traffic does.
async fn failure_detector(
    coord: Arc<Coordinator>,
    cfg: Config,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = Config::ms(cfg.failure_detector.ping_interval_ms);
    let timeout = Config::ms(cfg.failure_detector.ping_timeout_ms);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let ring = coord.ring();
        let pings = ring.members().iter().filter(|m| *m != coord.node_id()).map(|peer| {
            let coord = coord.clone();
            async move {
                match coord.call_peer(peer, &Ping {}, timeout).await {
                    Ok(Pong { node }) if node != *peer => {
                        warn!(expected = %peer, answered = %node, "a different node answers at this peer's address");
                    }
                    _ => {}
                }
            }
        });
        futures::future::join_all(pings).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// `/admin/internode`: what the handshakes told about each peer.
struct InternodeView(NetTransport);

impl AdminView for InternodeView {
    fn view(&self) -> serde_json::Value {
        serde_json::json!({ "peers": self.0.peers() })
    }
}

/// `/admin/aae`.
struct AaeView(Arc<AntiEntropy>);

impl AdminView for AaeView {
    fn view(&self) -> serde_json::Value {
        self.0.status()
    }
}

/// `/admin/reaper`: the tombstone reaper's settings and its last pass.
struct ReaperView {
    coord: Arc<Coordinator>,
    interval_ms: u64,
    grace_ms: u64,
    settle_ms: u64,
}

impl AdminView for ReaperView {
    fn view(&self) -> serde_json::Value {
        let st = self.coord.reaper_status();
        let last = st.last.map(|p| {
            serde_json::json!({
                "started_unix_ms": p.started_unix_ms,
                "duration_ms": p.duration_ms,
                "partitions_driven": p.partitions,
                "scanned": p.scanned,
                "candidates": p.candidates,
                "reaped_keys": p.reaped_keys,
                "removed_copies": p.removed_copies,
                "skipped": p.skipped,
                "note": p.note,
            })
        });
        serde_json::json!({
            "node": self.coord.node_id(),
            "enabled": self.interval_ms > 0,
            "interval_ms": self.interval_ms,
            "tombstone_grace_ms": self.grace_ms,
            "settle_ms": self.settle_ms,
            "counter_floor": self.coord.floor(),
            "passes": st.passes,
            "reaped_keys": st.reaped_keys,
            "tombstones_reaped_here": self.coord.metrics().tombstones_reaped.get(),
            "pending_confirmations": st.pending,
            "last_pass": last,
        })
    }
}

/// Joins through the configured seeds on first start, retrying with backoff
/// until one answers.
async fn join_seeds(
    membership: Arc<Membership>,
    seeds: Vec<String>,
    my_addr: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let backoff = Backoff {
        base: Duration::from_millis(500),
        max: Duration::from_secs(10),
    };
    for attempt in 0.. {
        for seed in &seeds {
            match membership.join_via(seed, &my_addr).await {
                Ok(_) => {
                    info!(%seed, "joined through seed; run `dynkv admin plan` and `dynkv admin commit`");
                    return;
                }
                Err(e) => warn!(%seed, error = %e, "join through seed failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.jittered(attempt)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The membership commands of `/admin/...`, over this node's [`Membership`].
struct MembershipAdminView {
    membership: Arc<Membership>,
    addr: String,
}

impl MembershipAdmin for MembershipAdminView {
    fn members(&self) -> serde_json::Value {
        self.membership.members_view()
    }

    fn plan(&self) -> Result<serde_json::Value, String> {
        self.membership.plan_view().map_err(|e| e.to_string())
    }

    fn join(&self, seed: String) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        let m = self.membership.clone();
        let addr = self.addr.clone();
        Box::pin(async move {
            m.join_via(&seed, &addr).await?;
            Ok(m.members_view())
        })
    }

    fn leave(&self, node: Option<String>) -> Result<serde_json::Value, String> {
        self.membership
            .stage_leave(node.map(NodeId::from))
            .map_err(|e| e.to_string())?;
        Ok(self.membership.members_view())
    }

    fn commit(&self) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        let m = self.membership.clone();
        Box::pin(async move {
            m.commit().map_err(|e| e.to_string())?;
            m.gossip_all().await;
            Ok(m.members_view())
        })
    }

    fn transfers(&self) -> serde_json::Value {
        self.membership.transfers_view()
    }
}
