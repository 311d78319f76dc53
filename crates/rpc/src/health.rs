//! What this node believes about each peer: up or down.
//!
//! Fed by two sources, as the design asks: periodic pings (the node's
//! failure detector loop) and the outcome of every real RPC. A peer is
//! marked down after `failure_threshold` consecutive failures and up again
//! on the first success. The coordinator reads [`PeerHealth::is_up`] on every
//! request, so the table is an atomically swapped map of atomics: no lock on
//! the request path.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use dynkv_ring::NodeId;
use serde::Serialize;

#[derive(Default)]
struct PeerState {
    down: AtomicBool,
    consecutive_failures: AtomicU32,
    last_ok_ms: AtomicU64,
    last_failure_ms: AtomicU64,
    transitions: AtomicU64,
}

/// One peer as shown by `/admin/cluster`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PeerView {
    /// The peer.
    pub id: NodeId,
    /// Whether requests are sent to it.
    pub up: bool,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Unix milliseconds of its last successful exchange (0: never).
    pub last_ok_ms: u64,
    /// How many times it flipped between up and down.
    pub transitions: u64,
}

/// The up/down table.
pub struct PeerHealth {
    me: NodeId,
    failure_threshold: u32,
    peers: ArcSwap<HashMap<NodeId, Arc<PeerState>>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PeerHealth {
    /// A table for `me` and these peers, all presumed up.
    pub fn new(
        me: NodeId,
        peers: impl IntoIterator<Item = NodeId>,
        failure_threshold: u32,
    ) -> Self {
        let map = peers
            .into_iter()
            .filter(|p| *p != me)
            .map(|p| (p, Arc::new(PeerState::default())))
            .collect();
        PeerHealth {
            me,
            failure_threshold: failure_threshold.max(1),
            peers: ArcSwap::from_pointee(map),
        }
    }

    fn state(&self, node: &NodeId) -> Option<Arc<PeerState>> {
        if let Some(s) = self.peers.load().get(node) {
            return Some(s.clone());
        }
        if *node == self.me {
            return None;
        }
        // A peer learnt later (membership change): add it.
        let state = Arc::new(PeerState::default());
        self.peers.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.entry(node.clone()).or_insert_with(|| state.clone());
            m
        });
        self.peers.load().get(node).cloned()
    }

    /// Whether to send requests to `node` (this node itself is always up).
    pub fn is_up(&self, node: &NodeId) -> bool {
        *node == self.me
            || self
                .peers
                .load()
                .get(node)
                .is_none_or(|s| !s.down.load(Ordering::Relaxed))
    }

    /// A request or ping got an answer. Returns true if the peer came back up.
    pub fn record_success(&self, node: &NodeId) -> bool {
        let Some(s) = self.state(node) else {
            return false;
        };
        s.consecutive_failures.store(0, Ordering::Relaxed);
        s.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        let was_down = s.down.swap(false, Ordering::Relaxed);
        if was_down {
            s.transitions.fetch_add(1, Ordering::Relaxed);
        }
        was_down
    }

    /// A request or ping failed to reach `node`. Returns true if it was
    /// just marked down.
    pub fn record_failure(&self, node: &NodeId) -> bool {
        let Some(s) = self.state(node) else {
            return false;
        };
        s.last_failure_ms.store(now_ms(), Ordering::Relaxed);
        let n = s.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.failure_threshold && !s.down.swap(true, Ordering::Relaxed) {
            s.transitions.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Every peer's state, sorted by id.
    pub fn snapshot(&self) -> Vec<PeerView> {
        let mut v: Vec<PeerView> = self
            .peers
            .load()
            .iter()
            .map(|(id, s)| PeerView {
                id: id.clone(),
                up: !s.down.load(Ordering::Relaxed),
                consecutive_failures: s.consecutive_failures.load(Ordering::Relaxed),
                last_ok_ms: s.last_ok_ms.load(Ordering::Relaxed),
                transitions: s.transitions.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_recovery() {
        let h = PeerHealth::new("n1".into(), ["n1".into(), "n2".into()], 2);
        let n2: NodeId = "n2".into();
        assert!(h.is_up(&n2));
        assert!(!h.record_failure(&n2));
        assert!(h.is_up(&n2));
        assert!(h.record_failure(&n2));
        assert!(!h.is_up(&n2));
        assert!(h.record_success(&n2));
        assert!(h.is_up(&n2));
        assert!(h.is_up(&"n1".into()));
        assert_eq!(h.snapshot().len(), 1);
        // Unknown peers are learnt on first contact.
        h.record_failure(&"n9".into());
        assert_eq!(h.snapshot().len(), 2);
    }
}
