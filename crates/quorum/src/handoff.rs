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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use dynkv_ring::NodeId;
use dynkv_rpc::messages::Replicate;
use dynkv_rpc::retry::Backoff;
use dynkv_storage::{Hint, KeyRef};
use futures::StreamExt;
use tokio::sync::watch;
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
}

impl Default for HandoffConfig {
    fn default() -> Self {
        HandoffConfig {
            interval: Duration::from_secs(1),
            batch: 256,
            concurrency: 8,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
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

/// Runs passes until `shutdown` turns true.
pub async fn run(
    coord: Arc<Coordinator>,
    config: HandoffConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = HandoffState::default();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.interval) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = pass(&coord, &config, &mut state).await {
            warn!(error = %e, "hinted handoff pass failed");
        }
    }
}

/// One pass over every hint. Returns how many were delivered.
pub async fn pass(
    coord: &Arc<Coordinator>,
    config: &HandoffConfig,
    state: &mut HandoffState,
) -> Result<u64, String> {
    let backoff = &mut state.owners;
    let store = coord.store().clone();
    coord.metrics().hints_pending.set(store.hint_count() as i64);
    if store.hint_count() == 0 {
        return Ok(0);
    }
    let mut cursor: Option<(String, u32, Vec<u8>)> = None;
    let mut delivered = 0;
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
        let now = Instant::now();
        let ready: Vec<Hint> = batch
            .into_iter()
            .filter(|h| {
                let owner = NodeId::from(h.owner.as_str());
                let gone = !coord.ring().contains(&owner);
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
    if delivered > 0 {
        info!(delivered, pending = store.hint_count(), "hinted handoff");
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
    // An owner that has left the ring no longer replicates the key: the
    // hint goes to the key's current primaries instead.
    let targets: Vec<NodeId> = if coord.ring().contains(&owner) {
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
        all_stored &= coord.store().merge(&kr, &req.object).is_ok();
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
