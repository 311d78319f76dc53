//! Hinted handoff: deliver the hints this node holds to their owners.
//!
//! A fallback that stood in for an unreachable primary keeps the object as a
//! durable hint (RocksDB `hints` family, so it survives restarts of either
//! side). This background worker walks the hints in bounded batches; for
//! each owner the failure detector reports up, it sends the hinted object
//! ([`Replicate`], which the owner `sync`s into its replica) and
//! deletes the hint only after the owner acknowledged it, and only if the
//! hint did not change meanwhile. An owner that fails is retried with
//! capped exponential backoff and full jitter, so a flapping node is not
//! hammered and many fallbacks do not retry in lockstep.
//!
//! A hint whose owner has since left the ring is delivered to the key's
//! current primaries instead, so it is never stranded.
//!
//! ## Bounds
//! Hints are bounded three ways. A fallback refuses a new hint past
//! `max_hints` hints or `max_hint_bytes` bytes ([`crate::CoordinatorConfig`];
//! counted in `dynkv_hints_refused_total{reason}`). And a hint older than
//! [`HandoffConfig::hint_window`] (Cassandra's `max_hint_window`, 3 hours by
//! default) is dropped undelivered by the next pass, whether or not its owner
//! is back (counted in `dynkv_hints_expired_total`): the keys it held are
//! left to anti-entropy, which compares every replica with the others and
//! heals them whatever their age. An expired hint is never delivered late:
//! the tombstone reaper ([`crate::reaper`]) leaves a key alone while any
//! node keeps a hint for it, and relies on that. A hint's age is that of the
//! oldest write it holds (merges keep its creation time).
//!
//! Unlike Cassandra, a fallback keeps storing new hints for an owner that
//! has been down longer than the window: each new hint still lives for a
//! full window, so an owner that comes back after a long outage gets the
//! last window's writes by handoff and only older ones through anti-entropy,
//! and writes never lose availability because an outage grew long. The
//! count and byte bounds cap what such an outage can hold.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use dynkv_ring::NodeId;
use dynkv_rpc::messages::Replicate;
use dynkv_rpc::retry::Backoff;
use dynkv_runtime::{Context, StepResult, Worker, WorkerState};
use dynkv_storage::{Hint, KeyRef};
use futures::StreamExt;
use tracing::{debug, info, warn};

use crate::Coordinator;

/// Settings of the handoff worker.
#[derive(Clone, Debug)]
pub struct HandoffConfig {
    /// Pause between passes over the hints.
    pub interval: Duration,
    /// Hints read from the store per batch.
    pub batch: usize,
    /// Deliveries in flight at once (a bulkhead for client traffic).
    pub concurrency: usize,
    /// First retry delay after an owner failed.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Age past which a hint is dropped undelivered and its key left to
    /// anti-entropy (`Duration::ZERO`: hints never expire).
    pub hint_window: Duration,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        HandoffConfig {
            interval: Duration::from_secs(1),
            batch: 256,
            concurrency: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            hint_window: Duration::from_secs(3 * 3600),
        }
    }
}

#[derive(Default)]
struct OwnerBackoff {
    failures: u32,
    retry_at: Option<Instant>,
}

/// Per-owner retry state kept between passes.
#[derive(Default)]
pub struct HandoffState {
    owners: HashMap<NodeId, OwnerBackoff>,
}

/// The handoff worker (`handoff` in `/admin/workers`): a [`pass`] every
/// [`HandoffConfig::interval`], with the per-owner retry state kept between
/// passes.
pub struct HandoffWorker {
    coord: Arc<Coordinator>,
    config: HandoffConfig,
    state: HandoffState,
}

impl HandoffWorker {
    /// The worker for this coordinator's hints.
    pub fn new(coord: Arc<Coordinator>, config: HandoffConfig) -> HandoffWorker {
        HandoffWorker {
            coord,
            config,
            state: HandoffState::default(),
        }
    }
}

impl Worker for HandoffWorker {
    fn name(&self) -> String {
        "handoff".into()
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        let pending = self.coord.replica().store().hint_count();
        cx.set("pending", pending);
        if pending > 0 {
            cx.busy_with(format!("delivering {pending} hints"));
        }
        let delivered = pass(&self.coord, &self.config, &mut self.state)
            .await
            .map_err(|e| format!("hinted handoff pass failed: {e}"))?;
        cx.count("delivered", delivered);
        cx.set("pending", self.coord.replica().store().hint_count());
        Ok(WorkerState::Idle)
    }
}

/// One pass over every hint. Returns how many were delivered.
pub async fn pass(
    coord: &Arc<Coordinator>,
    config: &HandoffConfig,
    state: &mut HandoffState,
) -> Result<u64, String> {
    let backoff = &mut state.owners;
    let store = coord.replica().store().clone();
    coord.metrics().hints_pending.set(store.hint_count() as i64);
    coord.metrics().hint_bytes.set(store.hint_bytes() as i64);
    if store.hint_count() == 0 {
        return Ok(0);
    }
    // Hints created at or before this instant have outlived the window.
    let expiry = (!config.hint_window.is_zero())
        .then(|| SystemTime::now().checked_sub(config.hint_window))
        .flatten();
    let mut cursor: Option<(String, u32, Vec<u8>)> = None;
    let mut delivered = 0;
    let mut expired = 0;
    loop {
        let batch = store
            .hints(
                None,
                cursor
                    .as_ref()
                    .map(|(o, p, k)| (o.as_str(), *p, k.as_slice())),
                config.batch,
            )
            .map_err(|e| e.to_string())?;
        let Some(last) = batch.last() else { break };
        cursor = Some((last.owner.clone(), last.partition, last.key.clone()));
        let (old, batch): (Vec<Hint>, Vec<Hint>) = batch
            .into_iter()
            .partition(|h| expiry.is_some_and(|cutoff| h.created <= cutoff));
        if let Some(cutoff) = expiry {
            for h in old {
                // As on delivery: retire the fallback actor first.
                if let Err(e) = coord.replica().retire_fallback_actor(&h.object) {
                    warn!(error = %e, "cannot persist the fallback generation; keeping an expired hint");
                    continue;
                }
                let kr = KeyRef {
                    partition: h.partition,
                    hash: dynkv_ring::key_hash(&h.key),
                    key: &h.key,
                };
                match store.remove_hint_created_before(&h.owner, &kr, cutoff) {
                    Ok(true) => {
                        expired += 1;
                        coord.metrics().hints_expired.inc();
                    }
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, owner = %h.owner, "cannot drop an expired hint"),
                }
            }
        }
        let now = Instant::now();
        let ready: Vec<Hint> = batch
            .into_iter()
            .filter(|h| {
                let owner = NodeId::from(h.owner.as_str());
                let gone = !coord.replica().is_replica_of(&owner, &h.key);
                (gone || coord.health().is_up(&owner))
                    && backoff
                        .get(&owner)
                        .and_then(|b| b.retry_at)
                        .is_none_or(|t| t <= now)
            })
            .collect();
        let results: Vec<(NodeId, bool)> = futures::stream::iter(ready)
            .map(|h| deliver(coord, h))
            .buffer_unordered(config.concurrency.max(1))
            .collect()
            .await;
        for (owner, ok) in results {
            let b = backoff.entry(owner.clone()).or_default();
            if ok {
                delivered += 1;
                b.failures = 0;
                b.retry_at = None;
            } else {
                b.failures += 1;
                let delay = Backoff {
                    base: config.backoff_base,
                    max: config.backoff_max,
                }
                .jittered(b.failures);
                b.retry_at = Some(Instant::now() + delay);
                debug!(%owner, ?delay, "handoff failed; backing off");
            }
        }
    }
    coord.metrics().hints_pending.set(store.hint_count() as i64);
    coord.metrics().hint_bytes.set(store.hint_bytes() as i64);
    if delivered > 0 {
        info!(delivered, pending = store.hint_count(), "hinted handoff");
    }
    if expired > 0 {
        info!(
            expired,
            window = ?config.hint_window,
            pending = store.hint_count(),
            "dropped hints older than the hint window; anti-entropy repairs their keys"
        );
    }
    Ok(delivered)
}

/// Sends one hint to its owner; deletes it once acknowledged and unchanged.
async fn deliver(coord: &Arc<Coordinator>, hint: Hint) -> (NodeId, bool) {
    let owner = NodeId::from(hint.owner.as_str());
    let digest = hint.object.digest();
    let req = Replicate {
        key: hint.key.clone().into(),
        object: hint.object,
    };
    // An owner that no longer replicates the key (it left, or the key's
    // partition moved away from it) would keep the copy where no read
    // looks: the hint goes to the key's current primaries instead. A future
    // replica (in the ring a running change moves to) gets its own hints.
    let targets: Vec<NodeId> = if coord.replica().is_replica_of(&owner, &hint.key) {
        vec![owner.clone()]
    } else {
        coord.placement(&hint.key).primaries
    };
    let sends = targets
        .iter()
        .filter(|t| *t != coord.node_id())
        .map(|t| coord.call_peer(t, &req, coord.config().rpc_timeout));
    let mut all_stored = !targets.is_empty();
    for r in futures::future::join_all(sends).await {
        all_stored &= r.is_ok();
    }
    if targets.contains(coord.node_id()) {
        let kr = KeyRef {
            partition: hint.partition,
            hash: dynkv_ring::key_hash(&hint.key),
            key: &hint.key,
        };
        all_stored &= coord.replica().store().merge(&kr, &req.object).is_ok();
    }
    // A hint may hold the only local copy of dots this node issued as a
    // fallback coordinator: retire that actor before the hint goes, so a
    // later fallback write here never claims to have seen their values.
    if all_stored && let Err(e) = coord.replica().retire_fallback_actor(&req.object) {
        warn!(error = %e, "cannot persist the fallback generation; keeping the hint");
        return (owner, false);
    }
    let ok = all_stored && {
        let kr = KeyRef {
            partition: hint.partition,
            hash: dynkv_ring::key_hash(&hint.key),
            key: &hint.key,
        };
        match coord
            .store()
            .remove_hint_if_unchanged(&hint.owner, &kr, digest)
        {
            Ok(removed) => {
                if removed {
                    coord.metrics().hints_delivered.inc();
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "cannot delete delivered hint");
                false
            }
        }
    };
    (owner, ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CoordinatorConfig;
    use crate::metrics::ReasonLabels;
    use crate::sim_nodes::{SimNodes as Nodes, dispatcher};
    use dynkv_rpc::messages::StoreHint;
    use dynkv_rpc::{RemoteError, RpcError};
    use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

    impl Nodes {
        /// n3 goes down, and n1 (the fallback) knows it.
        fn crash_n3(&self) {
            self.net.crash("n3");
            self.nodes[0].health().record_failure(&NodeId::from("n3"));
            assert!(!self.nodes[0].health().is_up(&NodeId::from("n3")));
        }

        /// n3 is back, and n1 knows it.
        fn restart_n3(&self) {
            self.net
                .register(NodeId::from("n3"), dispatcher(&self.nodes[2]));
            self.nodes[0].health().record_success(&NodeId::from("n3"));
        }

        /// n2 asks n1 to keep `value` as a hint for n3, over the network.
        async fn hint(&self, key: &str, value: &str) -> Result<(), RpcError> {
            let req = StoreHint {
                owner: NodeId::from("n3"),
                key: key.as_bytes().to_vec().into(),
                object: obj(value),
            };
            self.nodes[1]
                .call_peer(&NodeId::from("n1"), &req, Duration::from_secs(1))
                .await
                .map(|_| ())
        }

        fn fallback(&self) -> &Arc<Coordinator> {
            &self.nodes[0]
        }
    }

    /// A blind write of `value` by an actor of its own, so that two
    /// writes are always concurrent siblings.
    fn obj(value: &str) -> Object {
        static ACTORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let actor = format!(
            "w{}",
            ACTORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            actor.as_str(),
            Content::value(value.to_string(), "text/plain", 0),
        )
    }

    fn handoff_config(window: Duration) -> HandoffConfig {
        HandoffConfig {
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
            hint_window: window,
            ..HandoffConfig::default()
        }
    }

    fn refused(c: &Coordinator, reason: &'static str) -> u64 {
        c.metrics()
            .hints_refused
            .get_or_create(&ReasonLabels { reason })
            .get()
    }

    /// What n3 holds for `key` in its own replica.
    async fn on_n3(nodes: &Nodes, key: &str) -> Vec<String> {
        let (own, _) = nodes.nodes[2].local_view(key.as_bytes()).await.unwrap();
        own.iter()
            .flat_map(|o| o.live_values())
            .map(|c| String::from_utf8(c.value.to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn hints_older_than_the_window_are_dropped_and_counted() {
        let nodes = Nodes::start(CoordinatorConfig::default());
        let f = nodes.fallback().clone();
        let config = handoff_config(Duration::from_millis(300));
        let mut state = HandoffState::default();
        nodes.crash_n3();
        nodes.hint("old-1", "a").await.unwrap();
        nodes.hint("old-2", "b").await.unwrap();
        assert_eq!(f.store().hint_count(), 2);
        // Inside the window an undeliverable hint is kept.
        assert_eq!(pass(&f, &config, &mut state).await.unwrap(), 0);
        assert_eq!(f.store().hint_count(), 2);
        assert_eq!(f.metrics().hints_expired.get(), 0);

        tokio::time::sleep(Duration::from_millis(350)).await;
        // A hint created now is inside the window; a later write merged
        // into an old hint does not make it young again.
        nodes.hint("young", "c").await.unwrap();
        nodes.hint("old-2", "b2").await.unwrap();
        // The owner is back, but expired hints are dropped, not delivered.
        nodes.restart_n3();
        assert_eq!(pass(&f, &config, &mut state).await.unwrap(), 1);
        assert_eq!(f.metrics().hints_expired.get(), 2);
        assert_eq!(f.metrics().hints_delivered.get(), 1);
        assert_eq!(f.store().hint_count(), 0);
        assert_eq!(f.store().hint_bytes(), 0);
        assert_eq!(f.metrics().hints_pending.get(), 0);
        assert_eq!(f.metrics().hint_bytes.get(), 0);
        assert_eq!(on_n3(&nodes, "young").await, vec!["c"]);
        assert!(on_n3(&nodes, "old-1").await.is_empty());
        assert!(on_n3(&nodes, "old-2").await.is_empty());
    }

    #[tokio::test]
    async fn hints_for_an_owner_down_longer_than_the_window_are_still_stored() {
        let nodes = Nodes::start(CoordinatorConfig::default());
        let f = nodes.fallback().clone();
        let config = handoff_config(Duration::from_millis(200));
        let mut state = HandoffState::default();
        nodes.crash_n3();
        nodes.hint("early", "a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        // n3 has now been down longer than the window: the old hint goes,
        // a new one is still taken and lives for a whole window.
        nodes.hint("late", "b").await.unwrap();
        pass(&f, &config, &mut state).await.unwrap();
        assert_eq!(f.metrics().hints_expired.get(), 1);
        assert_eq!(f.store().hint_count(), 1);
        nodes.restart_n3();
        assert_eq!(pass(&f, &config, &mut state).await.unwrap(), 1);
        assert_eq!(on_n3(&nodes, "late").await, vec!["b"]);
        assert!(on_n3(&nodes, "early").await.is_empty());
    }

    #[tokio::test]
    async fn a_zero_window_never_expires_hints() {
        let nodes = Nodes::start(CoordinatorConfig::default());
        let f = nodes.fallback().clone();
        nodes.crash_n3();
        nodes.hint("k", "a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        pass(
            &f,
            &handoff_config(Duration::ZERO),
            &mut HandoffState::default(),
        )
        .await
        .unwrap();
        assert_eq!(f.store().hint_count(), 1);
        assert_eq!(f.metrics().hints_expired.get(), 0);
    }

    #[tokio::test]
    async fn a_hint_past_the_byte_bound_is_refused_and_counted() {
        let nodes = Nodes::start(CoordinatorConfig {
            max_hint_bytes: 200,
            ..CoordinatorConfig::default()
        });
        let f = nodes.fallback().clone();
        nodes.crash_n3();
        nodes.hint("small", "v").await.unwrap();
        let held = f.store().hint_bytes();
        assert!(held > 0 && held < 200, "{held}");
        assert_eq!(f.metrics().hint_bytes.get(), held as i64);
        let big = "x".repeat(300);
        match nodes.hint("big", &big).await {
            Err(RpcError::Remote(RemoteError::HintBytesFull { node, max })) => {
                assert_eq!((node.as_str(), max), ("n1", 200));
            }
            other => panic!("expected HintBytesFull, got {other:?}"),
        }
        assert_eq!(refused(&f, "bytes"), 1);
        assert_eq!(refused(&f, "count"), 0);
        assert_eq!(f.metrics().hints_dropped.get(), 1);
        assert_eq!((f.store().hint_count(), f.store().hint_bytes()), (1, held));
        // What fits is still taken.
        nodes
            .hint("small", "w")
            .await
            .unwrap_or_else(|e| panic!("a small merge within the bound was refused: {e}"));
        assert_eq!(f.store().hint_count(), 1);
    }

    #[tokio::test]
    async fn a_new_hint_past_the_count_bound_is_refused_and_counted() {
        let nodes = Nodes::start(CoordinatorConfig {
            max_hints: 1,
            ..CoordinatorConfig::default()
        });
        let f = nodes.fallback().clone();
        nodes.crash_n3();
        nodes.hint("one", "v").await.unwrap();
        match nodes.hint("two", "v").await {
            Err(RpcError::Remote(RemoteError::HintsFull { max: 1, .. })) => {}
            other => panic!("expected HintsFull, got {other:?}"),
        }
        // More for a key already hinted is a merge, not a new hint.
        nodes.hint("one", "w").await.unwrap();
        assert_eq!(refused(&f, "count"), 1);
        assert_eq!(refused(&f, "bytes"), 0);
        assert_eq!(f.store().hint_count(), 1);
    }
}
