//! An in-process network with named faults, for unit tests of the
//! coordinator and of the healing mechanisms.
//!
//! Every node registers its [`Dispatcher`]; [`SimNetwork::transport`] gives
//! a node a [`Transport`] whose calls reach the other nodes' handlers
//! directly, still encoded as they would be on a real connection.
//! Faults mirror what real networks do, after TiKV's simulated transport:
//! - [`SimNetwork::partition`] / [`SimNetwork::isolate`] / [`SimNetwork::cut`]:
//!   packets are dropped, so the caller waits out its timeout;
//! - [`SimNetwork::crash`]: the process is gone, calls fail at once
//!   (connection refused);
//! - [`SimNetwork::delay`]: a slow link;
//! - [`SimNetwork::drop_next`]: lose the next few messages on a link.
//!
//! Real partitions between real processes are tested elsewhere; this is the
//! additional, fast and deterministic layer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use dynkv_ring::NodeId;
use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::dispatch::{CallContext, Dispatcher};
use crate::transport::{RawCall, RawReply, RpcError, Transport};
use crate::wire::{Message, PROTOCOL_VERSION};

#[derive(Default)]
struct State {
    handlers: HashMap<NodeId, Arc<Dispatcher>>,
    crashed: HashSet<NodeId>,
    cut: HashSet<(NodeId, NodeId)>,
    delays: HashMap<(NodeId, NodeId), Duration>,
    drops: HashMap<(NodeId, NodeId), u32>,
    delivered: u64,
    delivered_to: HashMap<NodeId, u64>,
}

/// The simulated network shared by every simulated node.
#[derive(Clone, Default)]
pub struct SimNetwork {
    state: Arc<Mutex<State>>,
}

impl SimNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Attaches (or re-attaches after a crash) a node's handlers.
    pub fn register(&self, node: NodeId, handler: Arc<Dispatcher>) {
        let mut s = self.state.lock();
        s.crashed.remove(&node);
        s.handlers.insert(node, handler);
    }

    /// The transport `node` uses to reach the others.
    pub fn transport(&self, node: NodeId) -> SimTransport {
        SimTransport {
            net: self.clone(),
            me: node,
        }
    }

    /// Drops every message between nodes of different groups, both ways.
    pub fn partition(&self, groups: &[&[&str]]) {
        let mut s = self.state.lock();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i == j {
                    continue;
                }
                for x in a.iter() {
                    for y in b.iter() {
                        s.cut.insert((NodeId::from(*x), NodeId::from(*y)));
                    }
                }
            }
        }
    }

    /// Cuts `node` off from every other registered node, both ways.
    pub fn isolate(&self, node: &str) {
        let mut s = self.state.lock();
        let others: Vec<NodeId> = s
            .handlers
            .keys()
            .filter(|n| n.as_str() != node)
            .cloned()
            .collect();
        for o in others {
            s.cut.insert((node.into(), o.clone()));
            s.cut.insert((o, node.into()));
        }
    }

    /// Drops messages from `from` to `to` only (an asymmetric cut).
    pub fn cut(&self, from: &str, to: &str) {
        self.state.lock().cut.insert((from.into(), to.into()));
    }

    /// Delays every message from `from` to `to`.
    pub fn delay(&self, from: &str, to: &str, by: Duration) {
        self.state
            .lock()
            .delays
            .insert((from.into(), to.into()), by);
    }

    /// Loses the next `count` messages from `from` to `to`.
    pub fn drop_next(&self, from: &str, to: &str, count: u32) {
        self.state
            .lock()
            .drops
            .insert((from.into(), to.into()), count);
    }

    /// The node's process is gone: calls to it fail at once.
    pub fn crash(&self, node: &str) {
        self.state.lock().crashed.insert(node.into());
    }

    /// Removes every cut, delay and drop (crashed nodes stay crashed until
    /// they [`register`](SimNetwork::register) again).
    pub fn heal(&self) {
        let mut s = self.state.lock();
        s.cut.clear();
        s.delays.clear();
        s.drops.clear();
    }

    /// Messages delivered so far (to assert that a path was or was not used).
    pub fn delivered(&self) -> u64 {
        self.state.lock().delivered
    }

    /// Messages delivered to `node` so far.
    pub fn delivered_to(&self, node: &str) -> u64 {
        self.state
            .lock()
            .delivered_to
            .get(&NodeId::from(node))
            .copied()
            .unwrap_or(0)
    }
}

/// One node's view of the [`SimNetwork`].
pub struct SimTransport {
    net: SimNetwork,
    me: NodeId,
}

enum Fate {
    Deliver(Arc<Dispatcher>, Duration),
    Lost,
    Refused,
}

impl Transport for SimTransport {
    fn send(&self, to: &NodeId, call: RawCall) -> BoxFuture<'static, Result<RawReply, RpcError>> {
        let timeout = call.timeout;
        let link = (self.me.clone(), to.clone());
        let fate = {
            let mut s = self.net.state.lock();
            if s.crashed.contains(to) || !s.handlers.contains_key(to) {
                Fate::Refused
            } else if s.cut.contains(&link) || s.cut.contains(&(to.clone(), self.me.clone())) {
                // Either direction cut: the request or the reply is lost.
                Fate::Lost
            } else if let Some(n) = s.drops.get_mut(&link).filter(|n| **n > 0) {
                *n -= 1;
                Fate::Lost
            } else {
                s.delivered += 1;
                *s.delivered_to.entry(to.clone()).or_default() += 1;
                let delay = s.delays.get(&link).copied().unwrap_or_default();
                Fate::Deliver(s.handlers[to].clone(), delay)
            }
        };
        let from = self.me.clone();
        let to = to.clone();
        Box::pin(async move {
            match fate {
                Fate::Refused => Err(RpcError::Unreachable(format!("{to}: connection refused"))),
                Fate::Lost => {
                    tokio::time::sleep(timeout).await;
                    Err(RpcError::Timeout(timeout))
                }
                Fate::Deliver(handler, delay) => {
                    let work = async move {
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let ctx = CallContext {
                            peer: from,
                            version: PROTOCOL_VERSION,
                        };
                        // Every message crosses the simulated network as
                        // bytes, exactly as it would cross a real one.
                        match handler.dispatch(call.endpoint, call.body, ctx).await {
                            Ok(body) => RawReply::Ok(body),
                            Err(e) => RawReply::Failed(e.encode()),
                        }
                    };
                    tokio::time::timeout(timeout, work)
                        .await
                        .map_err(|_| RpcError::Timeout(timeout))
                }
            }
        })
    }
}
