//! Test support shared by the crate's unit tests: nodes n1..n3 over a
//! simulated network, each a coordinator on its own RocksDB, as every
//! protocol test (handoff, reaping) needs them.

use std::sync::Arc;

use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::sim::SimNetwork;
use dynkv_rpc::{Dispatcher, PeerHealth};
use dynkv_storage::{Store, StoreConfig};

use crate::{Coordinator, CoordinatorConfig, QuorumMetrics};

/// Nodes n1..n3 (N=3 on 16 partitions: each is a primary of every key).
pub(crate) struct SimNodes {
    pub(crate) net: SimNetwork,
    pub(crate) nodes: Vec<Arc<Coordinator>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl SimNodes {
    /// Starts the three nodes with `config`, each registered on the network.
    pub(crate) fn start(config: CoordinatorConfig) -> SimNodes {
        let ids: Vec<NodeId> = (1..=3).map(|i| NodeId::from(format!("n{i}"))).collect();
        let ring = Ring::new(ids.clone(), 16).unwrap();
        let net = SimNetwork::new();
        let (mut nodes, mut dirs) = (Vec::new(), Vec::new());
        for id in &ids {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Store::open(&StoreConfig::new(dir.path()), None).unwrap());
            let c = Coordinator::new(
                id.clone(),
                ring.clone(),
                store,
                Arc::new(net.transport(id.clone())),
                Arc::new(PeerHealth::new(id.clone(), ids.clone(), 1)),
                config.clone(),
                Arc::new(QuorumMetrics::default()),
            );
            net.register(id.clone(), dispatcher(&c));
            nodes.push(c);
            dirs.push(dir);
        }
        SimNodes {
            net,
            nodes,
            _dirs: dirs,
        }
    }
}

/// What a node serves on the simulated network: its coordinator's handlers
/// (also how a test brings a crashed node back).
pub(crate) fn dispatcher(c: &Arc<Coordinator>) -> Arc<Dispatcher> {
    let mut d = Dispatcher::new();
    c.register(&mut d);
    Arc::new(d)
}
