//! What this node believes about each peer: the failure detector's table,
//! run as one circuit breaker per peer.
//!
//! Fed by two sources, as the design asks: periodic pings (the node's
//! failure-detector loop) and the outcome of every real RPC. Each peer's
//! breaker is:
//! - **closed** (up): calls go through; `failure_threshold` consecutive
//!   failures open it;
//! - **open** (down): calls fail at once ([`PeerHealth::acquire`] refuses),
//!   so the coordinator moves to a fallback immediately instead of waiting
//!   out a timeout;
//! - **half-open**: once `cooldown` has passed, exactly one call (a ping or
//!   a request) is let through as a probe; its success closes the breaker,
//!   its failure opens it again for another cooldown.
//!
//! The coordinator reads [`PeerHealth::is_up`] on every request, so the
//! table is an atomically swapped map of atomics: no lock on the request path.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use dynkv_ring::NodeId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::latency::{LatencyEstimate, LatencyHistogram};

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Up: calls go through.
    Closed,
    /// Down: calls fail fast until the cooldown has passed.
    Open,
    /// One probe call is deciding.
    HalfOpen,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Name used in metrics labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Default)]
struct PeerState {
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    opened_at_ms: AtomicU64,
    probe_in_flight: AtomicBool,
    last_ok_ms: AtomicU64,
    transitions: AtomicU64,
    latency: parking_lot::Mutex<LatencyHistogram>,
}

/// One peer as shown by `/admin/cluster`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PeerView {
    /// The peer.
    pub id: NodeId,
    /// Whether requests are sent to it (its breaker is closed).
    pub up: bool,
    /// Its breaker.
    pub breaker: BreakerState,
    /// Failures since its last success.
    pub consecutive_failures: u32,
    /// Unix milliseconds of its last successful exchange (0: never).
    pub last_ok_ms: u64,
    /// How many times its breaker changed state.
    pub transitions: u64,
}

/// Labels of a peer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// Peer id.
    pub peer: String,
}

/// Labels of a breaker transition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// Peer id.
    pub peer: String,
    /// The state entered.
    pub to: &'static str,
}

/// Breaker metrics.
#[derive(Default)]
pub struct BreakerMetrics {
    /// 0 closed, 1 open, 2 half-open, per peer.
    pub state: Family<PeerLabels, Gauge>,
    /// Transitions per peer and state entered.
    pub transitions: Family<TransitionLabels, Counter>,
    /// Calls refused at once because a breaker was open.
    pub fail_fast: Family<PeerLabels, Counter>,
}

impl BreakerMetrics {
    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynkv_breaker_state",
            "Circuit breaker per peer: 0 closed, 1 open, 2 half-open",
            self.state.clone(),
        );
        registry.register(
            "dynkv_breaker_transitions",
            "Circuit breaker transitions by peer and state entered",
            self.transitions.clone(),
        );
        registry.register(
            "dynkv_breaker_fail_fast",
            "Calls refused at once by an open breaker",
            self.fail_fast.clone(),
        );
    }
}

/// Why a call was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerOpen;

/// The up/down table: a circuit breaker per peer.
pub struct PeerHealth {
    me: NodeId,
    failure_threshold: u32,
    cooldown: Duration,
    peers: ArcSwap<HashMap<NodeId, Arc<PeerState>>>,
    metrics: Arc<BreakerMetrics>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl PeerHealth {
    /// A table for `me` and these peers, all presumed up, with a one-second cooldown.
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
            cooldown: Duration::from_secs(1),
            peers: ArcSwap::from_pointee(map),
            metrics: Arc::new(BreakerMetrics::default()),
        }
    }

    /// Sets how long an open breaker refuses calls before one probe.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// Reports into these metrics.
    pub fn with_metrics(mut self, metrics: Arc<BreakerMetrics>) -> Self {
        self.metrics = metrics;
        self
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

    fn set(&self, node: &NodeId, s: &PeerState, to: BreakerState) {
        let from = s.state.swap(to as u8, Ordering::AcqRel);
        if from != to as u8 {
            s.transitions.fetch_add(1, Ordering::Relaxed);
            let peer = node.to_string();
            self.metrics
                .state
                .get_or_create(&PeerLabels { peer: peer.clone() })
                .set(to as i64);
            self.metrics
                .transitions
                .get_or_create(&TransitionLabels {
                    peer,
                    to: to.as_str(),
                })
                .inc();
        }
    }

    /// Whether to route requests to `node`: its breaker is closed (this
    /// node itself is always up).
    pub fn is_up(&self, node: &NodeId) -> bool {
        *node == self.me
            || self.peers.load().get(node).is_none_or(|s| {
                BreakerState::from_u8(s.state.load(Ordering::Acquire)) == BreakerState::Closed
            })
    }

    /// The breaker state of `node`.
    pub fn breaker(&self, node: &NodeId) -> BreakerState {
        self.peers
            .load()
            .get(node)
            .map_or(BreakerState::Closed, |s| {
                BreakerState::from_u8(s.state.load(Ordering::Acquire))
            })
    }

    /// Asks to call `node`: always allowed while closed; refused while open
    /// within the cooldown; after it, one caller becomes the half-open probe.
    pub fn acquire(&self, node: &NodeId) -> Result<(), BreakerOpen> {
        let Some(s) = self.state(node) else {
            return Ok(());
        };
        match BreakerState::from_u8(s.state.load(Ordering::Acquire)) {
            BreakerState::Closed => Ok(()),
            BreakerState::Open => {
                let elapsed = now_ms().saturating_sub(s.opened_at_ms.load(Ordering::Acquire));
                if elapsed >= self.cooldown.as_millis() as u64
                    && !s.probe_in_flight.swap(true, Ordering::AcqRel)
                {
                    self.set(node, &s, BreakerState::HalfOpen);
                    Ok(())
                } else {
                    self.metrics
                        .fail_fast
                        .get_or_create(&PeerLabels {
                            peer: node.to_string(),
                        })
                        .inc();
                    Err(BreakerOpen)
                }
            }
            BreakerState::HalfOpen => {
                self.metrics
                    .fail_fast
                    .get_or_create(&PeerLabels {
                        peer: node.to_string(),
                    })
                    .inc();
                Err(BreakerOpen)
            }
        }
    }

    /// A call let through by [`PeerHealth::acquire`] ended without an
    /// outcome (it was cancelled): if it was the half-open probe, the
    /// breaker goes back to open with its cooldown already over, so the
    /// next call probes instead of the peer staying half-open forever.
    pub fn abandon(&self, node: &NodeId) {
        let Some(s) = self.state(node) else {
            return;
        };
        if BreakerState::from_u8(s.state.load(Ordering::Acquire)) == BreakerState::HalfOpen {
            s.probe_in_flight.store(false, Ordering::Release);
            self.set(node, &s, BreakerState::Open);
        }
    }

    /// A request or ping got an answer. Returns true if the peer came back up.
    pub fn record_success(&self, node: &NodeId) -> bool {
        let Some(s) = self.state(node) else {
            return false;
        };
        s.consecutive_failures.store(0, Ordering::Relaxed);
        s.last_ok_ms.store(now_ms(), Ordering::Relaxed);
        s.probe_in_flight.store(false, Ordering::Release);
        let was = BreakerState::from_u8(s.state.load(Ordering::Acquire));
        self.set(node, &s, BreakerState::Closed);
        was != BreakerState::Closed
    }

    /// A request or ping failed to reach `node`. Returns true if its breaker
    /// just opened.
    pub fn record_failure(&self, node: &NodeId) -> bool {
        let Some(s) = self.state(node) else {
            return false;
        };
        let n = s.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let was = BreakerState::from_u8(s.state.load(Ordering::Acquire));
        let open = match was {
            BreakerState::Closed => n >= self.failure_threshold,
            BreakerState::HalfOpen | BreakerState::Open => true,
        };
        if open {
            s.opened_at_ms.store(now_ms(), Ordering::Release);
            s.probe_in_flight.store(false, Ordering::Release);
            self.set(node, &s, BreakerState::Open);
        }
        open && was == BreakerState::Closed
    }

    /// Records how long an answered call to `node` took, for
    /// [`PeerHealth::latency`] (this node itself is not tracked).
    pub fn record_latency(&self, node: &NodeId, took: Duration) {
        if let Some(s) = self.state(node) {
            s.latency.lock().record(took);
        }
    }

    /// `node`'s recent call latency (mean and p99), or `None` if no call
    /// to it has been timed yet (or it is this node): the coordinator asks
    /// the fastest replicas first and times speculative reads by it.
    pub fn latency(&self, node: &NodeId) -> Option<LatencyEstimate> {
        self.peers.load().get(node)?.latency.lock().estimate()
    }

    /// Every peer's state, sorted by id.
    pub fn snapshot(&self) -> Vec<PeerView> {
        let mut v: Vec<PeerView> = self
            .peers
            .load()
            .iter()
            .map(|(id, s)| {
                let breaker = BreakerState::from_u8(s.state.load(Ordering::Acquire));
                PeerView {
                    id: id.clone(),
                    up: breaker == BreakerState::Closed,
                    breaker,
                    consecutive_failures: s.consecutive_failures.load(Ordering::Relaxed),
                    last_ok_ms: s.last_ok_ms.load(Ordering::Relaxed),
                    transitions: s.transitions.load(Ordering::Relaxed),
                }
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// A call in flight to a peer: unless [`PendingCall::settled`] is called,
/// dropping it tells the breaker the call was abandoned
/// ([`PeerHealth::abandon`]).
pub struct PendingCall<'a> {
    health: &'a PeerHealth,
    node: &'a NodeId,
    settled: bool,
}

impl<'a> PendingCall<'a> {
    /// Starts watching a call to `node`.
    pub fn new(health: &'a PeerHealth, node: &'a NodeId) -> Self {
        PendingCall {
            health,
            node,
            settled: false,
        }
    }

    /// The call ended; its outcome is recorded by the caller.
    pub fn settled(&mut self) {
        self.settled = true;
    }
}

impl Drop for PendingCall<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.health.abandon(self.node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_kept_per_peer_and_not_for_this_node() {
        let h = PeerHealth::new("n1".into(), ["n1".into(), "n2".into(), "n3".into()], 2);
        let (me, n2, n3): (NodeId, NodeId, NodeId) = ("n1".into(), "n2".into(), "n3".into());
        assert_eq!(h.latency(&n2), None, "nothing timed yet");
        for _ in 0..10 {
            h.record_latency(&n2, Duration::from_millis(2));
            h.record_latency(&n3, Duration::from_millis(40));
            h.record_latency(&me, Duration::from_millis(1));
        }
        let (fast, slow) = (h.latency(&n2).unwrap(), h.latency(&n3).unwrap());
        assert!(fast.mean < slow.mean);
        assert!(fast.p99 < slow.p99);
        assert_eq!(h.latency(&me), None);
    }

    #[test]
    fn closed_open_half_open_closed() {
        let h = PeerHealth::new("n1".into(), ["n1".into(), "n2".into()], 2)
            .with_cooldown(Duration::from_millis(50));
        let n2: NodeId = "n2".into();
        assert!(h.is_up(&n2));
        assert!(h.acquire(&n2).is_ok());
        assert!(!h.record_failure(&n2));
        assert!(h.is_up(&n2), "one failure is below the threshold");
        assert!(h.record_failure(&n2));
        assert_eq!(h.breaker(&n2), BreakerState::Open);
        assert!(!h.is_up(&n2));
        assert_eq!(h.acquire(&n2), Err(BreakerOpen), "open: fail fast");
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            h.acquire(&n2).is_ok(),
            "after the cooldown one probe goes through"
        );
        assert_eq!(h.breaker(&n2), BreakerState::HalfOpen);
        assert_eq!(h.acquire(&n2), Err(BreakerOpen), "only one probe at a time");
        // The probe fails: open again for another cooldown.
        h.record_failure(&n2);
        assert_eq!(h.breaker(&n2), BreakerState::Open);
        assert_eq!(h.acquire(&n2), Err(BreakerOpen));
        std::thread::sleep(Duration::from_millis(60));
        assert!(h.acquire(&n2).is_ok());
        assert!(h.record_success(&n2), "the probe succeeds: closed");
        assert_eq!(h.breaker(&n2), BreakerState::Closed);
        assert!(h.is_up(&n2));
        assert!(h.is_up(&"n1".into()));
        assert_eq!(h.snapshot()[0].transitions, 5);
        // Unknown peers are learnt on first contact.
        h.record_failure(&"n9".into());
        assert_eq!(h.snapshot().len(), 2);
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_call_probe() {
        let h =
            PeerHealth::new("n1".into(), ["n2".into()], 1).with_cooldown(Duration::from_millis(20));
        let n2: NodeId = "n2".into();
        h.record_failure(&n2);
        std::thread::sleep(Duration::from_millis(30));
        {
            assert!(h.acquire(&n2).is_ok());
            let _call = PendingCall::new(&h, &n2);
            assert_eq!(h.breaker(&n2), BreakerState::HalfOpen);
            // Dropped without an outcome: its caller gave up.
        }
        assert_eq!(h.breaker(&n2), BreakerState::Open);
        assert!(h.acquire(&n2).is_ok(), "the next call is the probe at once");
        let mut call = PendingCall::new(&h, &n2);
        call.settled();
        drop(call);
        assert_eq!(
            h.breaker(&n2),
            BreakerState::HalfOpen,
            "a settled call leaves the verdict to its caller"
        );
        assert!(h.record_success(&n2));
    }
}
