//! # dynkv-antientropy: Merkle-tree anti-entropy
//!
//! Read repair heals only keys that are read, and a hint is lost if its
//! fallback dies. Active anti-entropy heals everything else, as Riak's AAE
//! and Cassandra's repair do: replicas of a partition compare Merkle trees
//! of their data and exchange only the keys that differ.
//!
//! ## Design
//! - [`merkle`]: the pure tree (root, middle level, leaves over contiguous
//!   key-hash ranges) and the comparison helpers.
//! - [`trees`]: one tree per partition, in memory, kept current from the
//!   write path by marking leaves dirty (the storage's write listener);
//!   dirty leaves are recomputed from the storage's digest index just before
//!   a comparison. Trees are rebuilt from the digest index at start-up and
//!   invalidated periodically (`rebuild_interval`) against silent drift.
//! - [`AntiEntropy`]: the exchange, and [`AntiEntropyWorker`] its
//!   scheduler (a background worker of `dynkv-runtime`). Every
//!   `exchange_interval` the node takes the next (partition, peer) pairs in
//!   round-robin order over the partitions it replicates and the other
//!   replicas of each, at most `concurrency` at once, and for each:
//!   1. compares roots (one message); equal roots end the exchange;
//!   2. compares the middle level, then only the leaves under differing
//!      middle nodes (batched per level);
//!   3. lists `(key, digest)` under differing leaves on both sides and
//!      computes the differing keys;
//!   4. fetches the peer's objects for those keys in batches, `sync`s each
//!      with the local one, stores the merge locally if it is new here and
//!      sends it back if it is new there, so both sides are repaired; a
//!      pause between batches keeps client traffic first.
//!
//!   The peer answers through the `AaeHashes`, `AaeKeys`, `AaeFetch` and
//!   `AaeRepair` handlers that [`AntiEntropy::register`] installs on the
//!   node's dispatcher.
//!
//!   The messages and bytes of an exchange grow with the number of
//!   differing keys (and the log of the keys stored), not with the number
//!   of keys stored: see `examples/aae_cost.rs` and `docs/ANTI_ENTROPY.md`.
//!
//! Siblings and tombstones need no special case: `sync` keeps concurrent
//! siblings and lets a tombstone win over the older values it covers.

pub mod merkle;
mod metrics;
pub mod trees;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dynkv_quorum::Coordinator;
use dynkv_ring::NodeId;
use dynkv_rpc::messages::{
    AaeFetch, AaeHashes, AaeKeys, AaeRepair, Hashes, KeyDigests, Objects, Repaired,
};
use dynkv_rpc::{CallContext, Dispatcher, Endpoint, Handler, RemoteError};
use dynkv_runtime::{Context, StepResult, Worker, WorkerState};
use dynkv_storage::KeyRef;
use dynkv_vclock::{DvvSet, Object};
use parking_lot::Mutex;
use serde::Serialize;
use tracing::{debug, info};

pub use metrics::AaeMetrics;
pub use trees::{RefreshStats, TreeSet};

use crate::merkle::{diff_keys, differing};

/// Tunables of anti-entropy (from the node config).
#[derive(Clone, Debug)]
pub struct AntiEntropyConfig {
    /// Run exchanges at all.
    pub enabled: bool,
    /// Pause between rounds of exchanges.
    pub exchange_interval: Duration,
    /// Exchanges run at once per round.
    pub concurrency: usize,
    /// Keys fetched and repaired per message.
    pub keys_per_batch: usize,
    /// Pause between repair batches, so client traffic keeps priority.
    pub batch_pause: Duration,
    /// Rebuild every tree from the digest index this often.
    pub rebuild_interval: Duration,
    /// Deadline of one exchange message.
    pub rpc_timeout: Duration,
    /// Most object bytes in one repair message (objects may be large:
    /// a batch of them must still fit an internode frame).
    pub max_message_bytes: usize,
}

impl Default for AntiEntropyConfig {
    fn default() -> Self {
        AntiEntropyConfig {
            enabled: true,
            exchange_interval: Duration::from_secs(1),
            concurrency: 1,
            keys_per_batch: 256,
            batch_pause: Duration::from_millis(10),
            rebuild_interval: Duration::from_secs(3600),
            rpc_timeout: Duration::from_secs(5),
            max_message_bytes: 32 << 20,
        }
    }
}

/// What one exchange did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExchangeStats {
    /// Messages sent to the peer.
    pub messages: u64,
    /// Tree hashes received from the peer.
    pub hashes: u64,
    /// Keys whose digests were compared (under differing leaves, both sides).
    pub keys_compared: u64,
    /// Keys found different.
    pub keys_differing: u64,
    /// Keys whose local state changed.
    pub repaired_here: u64,
    /// Keys whose state changed on the peer.
    pub repaired_there: u64,
    /// Bytes of requests sent.
    pub bytes_sent: u64,
}

/// Per-partition status for `/admin/aae`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PartitionStatus {
    /// Exchanges completed.
    pub exchanges: u64,
    /// Unix ms of the last completed exchange.
    pub last_exchange_ms: u64,
    /// The peer of the last exchange.
    pub last_peer: String,
    /// Stats of the last exchange.
    pub last: ExchangeStats,
    /// Keys repaired here over all exchanges.
    pub repaired_here_total: u64,
}

/// Anti-entropy of one node: serves peers' exchange requests and runs its own.
pub struct AntiEntropy {
    coord: Arc<Coordinator>,
    trees: Arc<TreeSet>,
    config: AntiEntropyConfig,
    metrics: Arc<AaeMetrics>,
    status: Mutex<BTreeMap<u32, PartitionStatus>>,
    cursor: AtomicUsize,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl AntiEntropy {
    /// Anti-entropy over `coord`'s store; `trees` must be the store's write listener.
    pub fn new(
        coord: Arc<Coordinator>,
        trees: Arc<TreeSet>,
        config: AntiEntropyConfig,
        metrics: Arc<AaeMetrics>,
    ) -> Arc<Self> {
        Arc::new(AntiEntropy {
            coord,
            trees,
            config,
            metrics,
            status: Mutex::new(BTreeMap::new()),
            cursor: AtomicUsize::new(0),
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<AaeMetrics> {
        &self.metrics
    }

    fn shape_tag(&self) -> (u8, u8) {
        let s = self.trees.shape();
        (s.leaf_bits, s.mid_bits)
    }

    /// Runs a blocking store job off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&TreeSet, &dynkv_storage::Store) -> dynkv_storage::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let trees = self.trees.clone();
        let store = self.coord.replica().store().clone();
        tokio::task::spawn_blocking(move || f(&trees, &store))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Rebuilds every tree from the store; returns the stats and the time taken.
    pub async fn rebuild(&self) -> Result<(RefreshStats, Duration), String> {
        let started = Instant::now();
        let stats = self.blocking(|t, s| t.rebuild_all(s)).await?;
        Ok((stats, started.elapsed()))
    }

    /// Refuses a request made with another tree shape (comparing such
    /// trees would mean nothing).
    fn check_shape(&self, theirs: (u8, u8)) -> Result<(), RemoteError> {
        let ours = self.shape_tag();
        if theirs == ours {
            Ok(())
        } else {
            Err(RemoteError::ShapeMismatch { ours, theirs })
        }
    }

    /// Registers the anti-entropy endpoints this node serves.
    pub fn register(self: &Arc<Self>, d: &mut Dispatcher) {
        d.register::<AaeHashes, _>(self.clone())
            .register::<AaeKeys, _>(self.clone())
            .register::<AaeFetch, _>(self.clone())
            .register::<AaeRepair, _>(self.clone());
    }

    /// Merges objects into the local store; returns how many changed it.
    async fn merge_local(&self, items: Vec<(Bytes, Object)>) -> Result<u64, String> {
        let ring = self.coord.replica().ring();
        let changed = self
            .blocking(move |_, s| {
                let mut n = 0;
                for (k, o) in &items {
                    if s.merge(&key_ref(&ring, k), o)?.changed {
                        n += 1;
                    }
                }
                Ok(n)
            })
            .await?;
        self.metrics.keys_repaired.inc_by(changed);
        Ok(changed)
    }

    /// Sends one exchange message, counting it and its bytes.
    async fn ask<E: Endpoint>(
        &self,
        peer: &NodeId,
        req: &E,
        stats: &mut ExchangeStats,
    ) -> Result<E::Response, String> {
        self.ask_typed(peer, req, stats)
            .await
            .map_err(|e| format!("{peer}: {e}"))
    }

    async fn ask_typed<E: Endpoint>(
        &self,
        peer: &NodeId,
        req: &E,
        stats: &mut ExchangeStats,
    ) -> Result<E::Response, dynkv_rpc::RpcError> {
        stats.messages += 1;
        stats.bytes_sent += req.encode().len() as u64;
        self.coord
            .call_peer(peer, req, self.config.rpc_timeout)
            .await
    }

    /// The peer's objects of `keys`. An answer too large for one frame
    /// (large objects) is asked again in halves, down to one key a message.
    async fn fetch(
        &self,
        peer: &NodeId,
        keys: &[Bytes],
        stats: &mut ExchangeStats,
    ) -> Result<Vec<Option<Object>>, String> {
        let mut out = Vec::with_capacity(keys.len());
        let mut pending: Vec<&[Bytes]> = vec![keys];
        while let Some(part) = pending.pop() {
            let req = AaeFetch {
                keys: part.to_vec(),
            };
            match self.ask_typed(peer, &req, stats).await {
                Ok(Objects(fetched)) if fetched.len() == part.len() => out.extend(fetched),
                Ok(Objects(fetched)) => {
                    return Err(format!(
                        "{peer}: {} objects answered for {} keys asked",
                        fetched.len(),
                        part.len()
                    ));
                }
                Err(dynkv_rpc::RpcError::Remote(RemoteError::TooLarge { .. }))
                    if part.len() > 1 =>
                {
                    let (a, b) = part.split_at(part.len() / 2);
                    // Popped last first: `a` is fetched before `b`.
                    pending.push(b);
                    pending.push(a);
                }
                Err(e) => return Err(format!("{peer}: {e}")),
            }
        }
        Ok(out)
    }

    async fn peer_hashes(
        &self,
        peer: &NodeId,
        partition: u32,
        level: u8,
        indices: Vec<u32>,
        stats: &mut ExchangeStats,
    ) -> Result<Vec<u64>, String> {
        let want = indices.len();
        let req = AaeHashes {
            partition,
            shape: self.shape_tag(),
            level,
            indices,
        };
        let Hashes(h) = self.ask(peer, &req, stats).await?;
        if want != 0 && h.len() != want {
            return Err(format!(
                "{peer}: {} hashes answered for {want} asked",
                h.len()
            ));
        }
        stats.hashes += h.len() as u64;
        Ok(h)
    }

    /// Compares and repairs one partition with one peer.
    pub async fn exchange(&self, partition: u32, peer: &NodeId) -> Result<ExchangeStats, String> {
        let mut stats = ExchangeStats::default();
        self.blocking(move |t, s| t.refresh(s, partition)).await?;

        // 1. Roots.
        let theirs = self
            .peer_hashes(peer, partition, 0, vec![], &mut stats)
            .await?;
        let mine = self.trees.hashes(partition, 0, &[]);
        if mine == theirs {
            return Ok(stats);
        }
        // 2. Middle level, then the leaves under differing middle nodes.
        let theirs = self
            .peer_hashes(peer, partition, 1, vec![], &mut stats)
            .await?;
        let mine = self.trees.hashes(partition, 1, &[]);
        let mids = differing(&[], &mine, &theirs);
        let leaf_idx: Vec<u32> = mids
            .iter()
            .flat_map(|m| self.trees.children_of(*m))
            .collect();
        let mut leaves = Vec::new();
        for chunk in leaf_idx.chunks(4096) {
            let theirs = self
                .peer_hashes(peer, partition, 2, chunk.to_vec(), &mut stats)
                .await?;
            let mine = self.trees.hashes(partition, 2, chunk);
            leaves.extend(differing(chunk, &mine, &theirs));
        }
        // 3. Keys under differing leaves.
        let mut keys = Vec::new();
        for chunk in leaves.chunks(256) {
            let req = AaeKeys {
                partition,
                shape: self.shape_tag(),
                leaves: chunk.to_vec(),
            };
            let KeyDigests(mut theirs) = self.ask(peer, &req, &mut stats).await?;
            let chunk = chunk.to_vec();
            let mut mine: Vec<(Bytes, u64)> = self
                .blocking(move |t, s| t.keys_under(s, partition, &chunk))
                .await?
                .into_iter()
                .map(|(k, d)| (Bytes::from(k), d))
                .collect();
            stats.keys_compared += (mine.len() + theirs.len()) as u64;
            mine.sort();
            theirs.sort();
            keys.extend(diff_keys(&mine, &theirs));
        }
        stats.keys_differing = keys.len() as u64;
        // 4. Repair both sides, batch by batch.
        for (i, batch) in keys.chunks(self.config.keys_per_batch.max(1)).enumerate() {
            if i > 0 && !self.config.batch_pause.is_zero() {
                tokio::time::sleep(self.config.batch_pause).await;
            }
            let fetched = self.fetch(peer, batch, &mut stats).await?;
            let ring = self.coord.replica().ring();
            let batch_keys = batch.to_vec();
            let mine: Vec<Option<Object>> = self
                .blocking(move |_, s| {
                    batch_keys
                        .iter()
                        .map(|k| s.get(&key_ref(&ring, k)))
                        .collect()
                })
                .await?;
            let mut here = Vec::new();
            let mut there = Vec::new();
            for ((key, theirs), mine) in batch.iter().zip(fetched).zip(mine) {
                let merged = match (&mine, &theirs) {
                    (Some(a), Some(b)) => DvvSet::sync(a, b),
                    (Some(a), None) => a.clone(),
                    (None, Some(b)) => b.clone(),
                    (None, None) => continue,
                };
                let digest = merged.digest();
                if mine.as_ref().map(|o| o.digest()) != Some(digest) {
                    here.push((key.clone(), merged.clone()));
                }
                if theirs.as_ref().map(|o| o.digest()) != Some(digest) {
                    there.push((key.clone(), merged));
                }
            }
            if !here.is_empty() {
                stats.repaired_here += self.merge_local(here).await?;
            }
            for items in dynkv_rpc::messages::split_by_bytes(there, self.config.max_message_bytes) {
                let n = items.len() as u64;
                let req = AaeRepair { items };
                let Repaired(changed) = self.ask(peer, &req, &mut stats).await?;
                stats.repaired_there += changed;
                self.metrics.keys_sent.inc_by(n);
            }
        }
        Ok(stats)
    }

    /// The (partition, peer) pairs this node exchanges: every partition it
    /// replicates, with every other replica the failure detector holds up.
    pub fn pairs(&self) -> Vec<(u32, NodeId)> {
        let ring = self.coord.replica().ring();
        let me = self.coord.node_id();
        let n = self.coord.replica().effective_n();
        let mut out = Vec::new();
        for p in ring.partitions_replicated_by(me, n) {
            for peer in ring.preference_list(p, n) {
                if peer != me && self.coord.health().is_up(peer) {
                    out.push((p, peer.clone()));
                }
            }
        }
        out
    }

    /// The pairs of the next round: the next `concurrency` (partition,
    /// peer) pairs in round-robin order (advances the cursor).
    pub fn next_round(&self) -> Vec<(u32, NodeId)> {
        let pairs = self.pairs();
        if pairs.is_empty() {
            return Vec::new();
        }
        let take = self.config.concurrency.max(1).min(pairs.len());
        let start = self.cursor.fetch_add(take, Ordering::Relaxed);
        (0..take)
            .map(|i| pairs[(start + i) % pairs.len()].clone())
            .collect()
    }

    /// Runs the exchanges of one round at once and records each.
    pub async fn exchange_all(&self, batch: &[(u32, NodeId)]) -> RoundReport {
        let runs = batch.iter().map(|(p, peer)| async move {
            let started = Instant::now();
            let r = self.exchange(*p, peer).await;
            self.record(*p, peer, r, started.elapsed())
        });
        let mut report = RoundReport {
            exchanges: batch.len(),
            ..RoundReport::default()
        };
        for r in futures::future::join_all(runs).await {
            match r {
                Ok(repaired) => report.repaired_here += repaired,
                Err(e) => report.failed.push(e),
            }
        }
        report
    }

    /// Runs one round: the next `concurrency` pairs, at once.
    pub async fn round(&self) -> RoundReport {
        let batch = self.next_round();
        self.exchange_all(&batch).await
    }

    fn record(
        &self,
        partition: u32,
        peer: &NodeId,
        result: Result<ExchangeStats, String>,
        took: Duration,
    ) -> Result<u64, String> {
        match result {
            Ok(stats) => {
                self.metrics
                    .exchanges
                    .get_or_create(&metrics::OutcomeLabels { outcome: "ok" })
                    .inc();
                self.metrics.keys_compared.inc_by(stats.keys_compared);
                self.metrics.bytes_sent.inc_by(stats.bytes_sent);
                self.metrics.hashes.inc_by(stats.hashes);
                self.metrics.duration.observe(took.as_secs_f64());
                if stats.repaired_here + stats.repaired_there > 0 {
                    info!(partition, %peer, here = stats.repaired_here, there = stats.repaired_there, ?took, "anti-entropy repaired keys");
                } else {
                    debug!(partition, %peer, ?took, "anti-entropy exchange: in sync");
                }
                let mut st = self.status.lock();
                let s = st.entry(partition).or_default();
                s.exchanges += 1;
                s.last_exchange_ms = now_ms();
                s.last_peer = peer.to_string();
                s.repaired_here_total += stats.repaired_here;
                let repaired = stats.repaired_here;
                s.last = stats;
                Ok(repaired)
            }
            Err(e) => {
                self.metrics
                    .exchanges
                    .get_or_create(&metrics::OutcomeLabels { outcome: "failed" })
                    .inc();
                debug!(partition, %peer, error = %e, "anti-entropy exchange failed");
                Err(format!(
                    "anti-entropy exchange of partition {partition} with {peer} failed: {e}"
                ))
            }
        }
    }

    /// Status per partition, for `/admin/aae`.
    pub fn status(&self) -> serde_json::Value {
        let st = self.status.lock();
        serde_json::json!({
            "node": self.coord.node_id(),
            "enabled": self.config.enabled,
            "tree": { "leaves": self.trees.shape().leaves(), "middle": self.trees.shape().mids() },
            "exchanges_ok": self.metrics.exchanges.get_or_create(&metrics::OutcomeLabels { outcome: "ok" }).get(),
            "keys_repaired": self.metrics.keys_repaired.get(),
            "partitions": st.iter().map(|(p, s)| (p.to_string(), serde_json::to_value(s).unwrap_or_default())).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// What one round of exchanges did.
#[derive(Clone, Debug, Default)]
pub struct RoundReport {
    /// Exchanges run.
    pub exchanges: usize,
    /// Keys repaired on this node.
    pub repaired_here: u64,
    /// Why the exchanges that failed did.
    pub failed: Vec<String>,
}

/// The anti-entropy scheduler (`antientropy` in `/admin/workers`): builds
/// the trees at once, then runs a round every `exchange_interval` and
/// invalidates every tree every `rebuild_interval`.
pub struct AntiEntropyWorker {
    aae: Arc<AntiEntropy>,
    last_rebuild: Option<Instant>,
}

impl AntiEntropyWorker {
    /// The worker of this node's anti-entropy.
    pub fn new(aae: Arc<AntiEntropy>) -> AntiEntropyWorker {
        AntiEntropyWorker {
            aae,
            last_rebuild: None,
        }
    }
}

impl Worker for AntiEntropyWorker {
    fn name(&self) -> String {
        "antientropy".into()
    }

    fn interval(&self) -> Duration {
        self.aae.config.exchange_interval
    }

    fn first_step(&self) -> WorkerState {
        WorkerState::Busy
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        let aae = &self.aae;
        let Some(last_rebuild) = self.last_rebuild else {
            cx.busy_with("building the Merkle trees");
            self.last_rebuild = Some(Instant::now());
            let (stats, took) = aae
                .rebuild()
                .await
                .map_err(|e| format!("anti-entropy tree build failed: {e}"))?;
            info!(keys = stats.keys, ?took, "anti-entropy trees built");
            return Ok(WorkerState::Idle);
        };
        if last_rebuild.elapsed() >= aae.config.rebuild_interval {
            for p in 0..aae.coord.replica().ring().partitions() {
                aae.trees.invalidate(p);
            }
            self.last_rebuild = Some(Instant::now());
            cx.count("rebuilds", 1);
            info!("anti-entropy trees invalidated for a periodic rebuild");
        }
        let batch = aae.next_round();
        if batch.is_empty() {
            return Ok(WorkerState::Idle);
        }
        let names: Vec<String> = batch
            .iter()
            .map(|(p, peer)| format!("partition {p} with {peer}"))
            .collect();
        cx.busy_with(format!("exchanging {}", names.join(", ")));
        let report = aae.exchange_all(&batch).await;
        cx.count("exchanges", report.exchanges as u64);
        cx.count("exchanges_failed", report.failed.len() as u64);
        cx.count("keys_repaired_here", report.repaired_here);
        for e in report.failed {
            cx.error(e);
        }
        Ok(WorkerState::Idle)
    }
}

fn key_ref<'a>(ring: &dynkv_ring::Ring, key: &'a [u8]) -> KeyRef<'a> {
    let hash = dynkv_ring::key_hash(key);
    KeyRef {
        partition: ring.partition_of_hash(hash),
        hash,
        key,
    }
}

impl Handler<AaeHashes> for AntiEntropy {
    async fn handle(
        self: Arc<Self>,
        req: AaeHashes,
        _: CallContext,
    ) -> Result<Hashes, RemoteError> {
        self.check_shape(req.shape)?;
        let AaeHashes {
            partition,
            level,
            indices,
            ..
        } = req;
        self.blocking(move |t, s| {
            t.refresh(s, partition)?;
            Ok(t.hashes(partition, level, &indices))
        })
        .await
        .map(Hashes)
        .map_err(RemoteError::Storage)
    }
}

impl Handler<AaeKeys> for AntiEntropy {
    async fn handle(
        self: Arc<Self>,
        req: AaeKeys,
        _: CallContext,
    ) -> Result<KeyDigests, RemoteError> {
        self.check_shape(req.shape)?;
        let AaeKeys {
            partition, leaves, ..
        } = req;
        let items = self
            .blocking(move |t, s| t.keys_under(s, partition, &leaves))
            .await
            .map_err(RemoteError::Storage)?;
        Ok(KeyDigests(
            items
                .into_iter()
                .map(|(k, d)| (Bytes::from(k), d))
                .collect(),
        ))
    }
}

impl Handler<AaeFetch> for AntiEntropy {
    async fn handle(
        self: Arc<Self>,
        req: AaeFetch,
        _: CallContext,
    ) -> Result<Objects, RemoteError> {
        let ring = self.coord.replica().ring();
        let AaeFetch { keys } = req;
        self.blocking(move |_, s| {
            keys.iter()
                .map(|k| s.get(&key_ref(&ring, k)))
                .collect::<dynkv_storage::Result<Vec<_>>>()
        })
        .await
        .map(Objects)
        .map_err(RemoteError::Storage)
    }
}

impl Handler<AaeRepair> for AntiEntropy {
    async fn handle(
        self: Arc<Self>,
        req: AaeRepair,
        _: CallContext,
    ) -> Result<Repaired, RemoteError> {
        self.merge_local(req.items)
            .await
            .map(Repaired)
            .map_err(RemoteError::Storage)
    }
}
