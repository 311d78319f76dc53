//! The node's background workers: which run, with what settings, and the
//! four that belong to the node itself (the failure detector, the seed
//! joiner, storage recovery and the periodic WAL sync). The others come
//! from their mechanism crates; all run on one [`Runtime`], which
//! `GET /admin/workers` and `dynkv admin workers` list.

use std::sync::Arc;
use std::time::Duration;

use dynkv_antientropy::{AntiEntropy, AntiEntropyWorker};
use dynkv_membership::{GossipWorker, Membership, TransferWorker};
use dynkv_quorum::handoff::HandoffWorker;
use dynkv_quorum::reaper::ReaperWorker;
use dynkv_quorum::{Coordinator, QuorumMetrics};
use dynkv_rpc::messages::{Ping, Pong};
use dynkv_rpc::retry::Backoff;
use dynkv_runtime::{Context, Runtime, StepResult, Worker, WorkerState};
use dynkv_storage::{Recovery, Store, StoreHealth, StoreState};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::time::Instant;
use tracing::info;

use crate::config::Config;

/// Starts every background worker but the internode listener (started
/// with its socket), and lists those the configuration turns off.
pub fn start(
    rt: &Runtime,
    cfg: &Config,
    coord: &Arc<Coordinator>,
    aae: &Arc<AntiEntropy>,
    membership: &Arc<Membership>,
    storage_metrics: StorageMetrics,
) {
    rt.spawn(GossipWorker(membership.clone()));
    rt.spawn(TransferWorker::new(membership.clone()));
    if cfg.membership.seeds.is_empty() {
        rt.off("seed_join", "membership.seeds is empty");
    } else if membership.state().members.len() > 1 {
        rt.off("seed_join", "this node already knows a cluster");
    } else {
        rt.spawn(SeedJoiner {
            membership: membership.clone(),
            seeds: cfg.membership.seeds.clone(),
            my_addr: cfg.cluster_advertise().to_string(),
            attempt: 0,
        });
    }
    rt.spawn(FailureDetector {
        coord: coord.clone(),
        interval: cfg.failure_detector.ping_interval,
        timeout: cfg.failure_detector.ping_timeout,
    });
    if cfg.handoff.enabled {
        rt.spawn(HandoffWorker::new(coord.clone(), cfg.handoff_config()));
    } else {
        rt.off("handoff", "handoff.enabled = false");
    }
    if cfg.antientropy.enabled {
        rt.spawn(AntiEntropyWorker::new(aae.clone()));
    } else {
        rt.off("antientropy", "antientropy.enabled = false");
    }
    // A write that fails for lack of space (or any I/O error) leaves the
    // store refusing writes; this brings it back once space returns.
    rt.spawn(StorageRecovery {
        store: coord.replica().store().clone(),
        metrics: storage_metrics,
    });
    if cfg.storage.reap_interval.is_zero() {
        rt.off("reaper", "storage.reap_interval = 0: tombstones are kept");
    } else {
        rt.spawn(ReaperWorker::new(coord.clone(), cfg.reaper_config()));
    }
    if cfg.feed.enabled {
        rt.spawn(dynkv_quorum::feed::ChangeLogTrimmer::new(coord.clone()));
    } else {
        rt.off(
            "feed_trim",
            "feed.enabled = false: no change log is written",
        );
    }
    let sync = cfg.storage.sync_interval;
    if cfg.storage.sync_writes {
        rt.off(
            "wal_sync",
            "storage.sync_writes = true: every write is synced",
        );
    } else if sync.is_zero() {
        rt.off("wal_sync", "storage.sync_interval = 0");
    } else {
        info!(
            interval_ms = sync.as_millis() as u64,
            "periodic WAL sync on"
        );
        rt.spawn(WalSync {
            store: coord.replica().store().clone(),
            metrics: coord.metrics().clone(),
            interval: sync,
            next: Instant::now() + sync,
        });
    }
}

/// Pings every peer each interval; outcomes feed the peer table through the
/// coordinator's call path, like request traffic does.
struct FailureDetector {
    coord: Arc<Coordinator>,
    interval: Duration,
    timeout: Duration,
}

impl Worker for FailureDetector {
    fn name(&self) -> String {
        "failure_detector".into()
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        let ring = self.coord.replica().ring();
        let peers: Vec<_> = ring
            .members()
            .iter()
            .filter(|m| *m != self.coord.node_id())
            .collect();
        cx.busy_with(format!("pinging {} peers", peers.len()));
        let (coord, timeout) = (&self.coord, self.timeout);
        let pings = peers
            .iter()
            .map(|peer| async move { (*peer, coord.call_peer(peer, &Ping {}, timeout).await) });
        for (peer, answer) in futures::future::join_all(pings).await {
            match answer {
                Ok(Pong { node, .. }) if node != *peer => cx.error(format!(
                    "a different node answers at this peer's address: expected {peer}, {node} answered"
                )),
                Ok(Pong { clock, .. }) => {
                    // Keeps this node's clock up with its peers' (the
                    // change feed's order, `dynkv_quorum::hlc`).
                    self.coord.feed().clock().observe(clock);
                    cx.count("pongs", 1)
                }
                // A peer that does not answer is what the breaker records.
                Err(_) => cx.count("unanswered", 1),
            }
        }
        let down = peers
            .iter()
            .filter(|p| !self.coord.health().is_up(p))
            .count();
        cx.set("peers_down", down as u64);
        Ok(WorkerState::Idle)
    }
}

/// Joins through the configured seeds on first start, retrying with backoff
/// until one answers; then it is done.
struct SeedJoiner {
    membership: Arc<dynkv_membership::Membership>,
    seeds: Vec<String>,
    my_addr: String,
    attempt: u32,
}

const SEED_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(500),
    max: Duration::from_secs(10),
};

impl Worker for SeedJoiner {
    fn name(&self) -> String {
        "seed_join".into()
    }

    fn interval(&self) -> Duration {
        SEED_BACKOFF.base
    }

    fn first_step(&self) -> WorkerState {
        WorkerState::Busy
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(SEED_BACKOFF.jittered(self.attempt)).await;
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        let mut failures = Vec::new();
        for seed in &self.seeds {
            cx.busy_with(format!("joining through {seed}"));
            match self.membership.join_via(seed, &self.my_addr).await {
                Ok(_) => {
                    info!(%seed, "joined through seed; run `dynkv admin plan` and `dynkv admin commit`");
                    return Ok(WorkerState::Done);
                }
                Err(e) => failures.push(format!("{seed}: {e}")),
            }
        }
        self.attempt += 1;
        Err(format!("join through seed failed: {}", failures.join("; ")))
    }
}

/// The store's health as metrics.
#[derive(Clone, Default)]
pub struct StorageMetrics {
    /// 0 healthy, 1 refusing writes for lack of space, 2 refusing writes
    /// after another I/O error, 3 closed while being reopened.
    state: Gauge,
    /// Reopens that brought the store back.
    reopens: Counter,
}

impl StorageMetrics {
    /// Adds the metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
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
/// database. Keeps `dynkv_storage_state` current and logs the way back; a
/// probe that fails is a worker error (logged at warn, rate limited).
struct StorageRecovery {
    store: Arc<Store>,
    metrics: StorageMetrics,
}

impl Worker for StorageRecovery {
    fn name(&self) -> String {
        "storage_recovery".into()
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        let health = self.store.health();
        self.metrics.show(&health);
        if health.state == StoreState::Healthy {
            return Ok(WorkerState::Idle);
        }
        cx.busy_with(format!(
            "store refusing writes ({}): probing the data directory",
            health.state.name()
        ));
        let s = self.store.clone();
        let outcome = tokio::task::spawn_blocking(move || s.recover()).await;
        self.metrics.show(&self.store.health());
        match outcome {
            Ok(Ok(Recovery::Reopened { took, reconciled })) => {
                self.metrics.reopens.inc();
                cx.count("reopens", 1);
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
                Ok(WorkerState::Idle)
            }
            Ok(Ok(Recovery::NotYet(why))) => Err(format!(
                "storage still refuses writes ({}): the data directory does not take writes yet: {why}",
                health.state.name()
            )),
            Ok(Ok(Recovery::Healthy)) => Ok(WorkerState::Idle),
            Ok(Err(e)) => Err(format!(
                "reopening the database failed; trying again in a second: {e}"
            )),
            Err(e) => Err(format!("the storage recovery task failed: {e}")),
        }
    }
}

/// The periodic WAL fsync (`storage.sync_interval`): bounds what a power
/// cut can take to the last interval of acknowledged writes. Fixed rate: a
/// sync that overruns is followed by the next at once. The fsync runs on a
/// blocking thread, never on the async workers, and writes never wait for
/// it; a failed sync is counted and logged at warn (rate limited).
struct WalSync {
    store: Arc<Store>,
    metrics: Arc<QuorumMetrics>,
    interval: Duration,
    next: Instant,
}

impl Worker for WalSync {
    fn name(&self) -> String {
        "wal_sync".into()
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep_until(self.next).await;
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        let store = self.store.clone();
        let r = tokio::task::spawn_blocking(move || store.sync_wal())
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        self.metrics
            .wal_synced(r.is_ok(), self.store.last_wal_sync());
        self.next = (self.next + self.interval).max(Instant::now());
        match r {
            Ok(()) => {
                cx.count("syncs", 1);
                Ok(WorkerState::Idle)
            }
            Err(e) => {
                cx.count("failed", 1);
                Err(format!(
                    "WAL sync failed: writes acknowledged since the last successful sync would not survive a power cut: {e}"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wal_sync_worker_syncs_at_its_interval_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Arc::new(Store::open(&dynkv_storage::StoreConfig::new(dir.path()), None).unwrap());
        let metrics = Arc::new(QuorumMetrics::default());
        let rt = Runtime::new();
        let interval = Duration::from_millis(10);
        rt.spawn(WalSync {
            store: store.clone(),
            metrics,
            interval,
            next: Instant::now() + interval,
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.wal_sync_stats().0 < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rt.shutdown(Duration::from_secs(5)).await;
        let (ok, failed) = store.wal_sync_stats();
        assert!(ok >= 3, "{ok}");
        assert_eq!(failed, 0);
        assert!(store.last_wal_sync().is_some());
        let w = &rt.workers()[0];
        assert_eq!((w.name.as_str(), w.errors), ("wal_sync", 0));
        assert_eq!(w.counters["syncs"], ok);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(store.wal_sync_stats().0, ok, "no sync after shutdown");
    }
}
