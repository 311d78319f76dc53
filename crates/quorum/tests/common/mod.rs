//! In-process clusters of coordinators over the fault-injecting SimNetwork,
//! shared by the quorum crate's integration tests.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use dynkv_quorum::{Coordinator, CoordinatorConfig, QuorumMetrics};
use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::sim::SimNetwork;
use dynkv_rpc::{Dispatcher, PeerHealth};
use dynkv_storage::{Store, StoreConfig};

/// `k` coordinators `n1..nk` on a 16-partition ring, each with its own
/// RocksDB in a temp dir, talking over one simulated network.
pub struct Cluster {
    /// The network, for injecting faults (not every test does).
    #[allow(dead_code)]
    pub net: SimNetwork,
    pub nodes: Vec<Arc<Coordinator>>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Test deadlines: short RPC timeouts so faults show quickly.
pub fn test_config() -> CoordinatorConfig {
    CoordinatorConfig {
        rpc_timeout: Duration::from_millis(300),
        default_timeout: Duration::from_secs(2),
        ..CoordinatorConfig::default()
    }
}

/// The dispatcher a simulated node serves: its coordinator's endpoints.
pub fn dispatcher(c: &Arc<Coordinator>) -> Arc<Dispatcher> {
    let mut d = Dispatcher::new();
    c.register(&mut d);
    Arc::new(d)
}

/// Starts `k` nodes, each coordinating with `config`.
pub fn cluster_with(k: usize, config: CoordinatorConfig) -> Cluster {
    cluster_with_stores(k, config, |_| {})
}

/// Starts `k` nodes, each coordinating with `config`, their stores opened
/// with the default settings as `store` changes them.
pub fn cluster_with_stores(
    k: usize,
    config: CoordinatorConfig,
    store: impl Fn(&mut StoreConfig),
) -> Cluster {
    let ids: Vec<NodeId> = (1..=k).map(|i| NodeId::from(format!("n{i}"))).collect();
    let ring = Ring::new(ids.clone(), 16).unwrap();
    let net = SimNetwork::new();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for id in &ids {
        let dir = tempfile::tempdir().unwrap();
        let mut store_config = StoreConfig::new(dir.path());
        store(&mut store_config);
        let store = Arc::new(Store::open(&store_config, None).unwrap());
        let health = Arc::new(PeerHealth::new(id.clone(), ids.clone(), 1));
        let c = Coordinator::new(
            id.clone(),
            ring.clone(),
            store,
            Arc::new(net.transport(id.clone())),
            health,
            config.clone(),
            Arc::new(QuorumMetrics::default()),
        );
        net.register(id.clone(), dispatcher(&c));
        nodes.push(c);
        dirs.push(dir);
    }
    Cluster {
        net,
        nodes,
        _dirs: dirs,
    }
}

/// A client write of `value` over context `ctx`.
pub fn write(
    key: &bytes::Bytes,
    value: &str,
    ctx: dynkv_vclock::VersionVector,
    w: dynkv_rpc::messages::Quorum,
    sloppy: bool,
) -> dynkv_rpc::messages::WriteRequest {
    dynkv_rpc::messages::WriteRequest {
        key: key.clone(),
        content: dynkv_vclock::Content::value(value.to_string(), "text/plain", 0),
        context: ctx,
        w,
        sloppy,
        timeout_ms: 1500,
        idempotency_key: None,
        n_val: None,
        supersede: false,
        datatype_op: None,
    }
}

/// The live values of a read, sorted.
pub fn values(o: &Option<dynkv_vclock::Object>) -> Vec<String> {
    let mut v: Vec<String> = o
        .iter()
        .flat_map(|o| o.live_values())
        .map(|c| String::from_utf8(c.value.to_vec()).unwrap())
        .collect();
    v.sort();
    v
}

/// Read options asking `r` replicas within a second.
pub fn read_opts(r: dynkv_rpc::messages::Quorum, sloppy: bool) -> dynkv_quorum::ReadOptions {
    dynkv_quorum::ReadOptions {
        r: Some(r),
        sloppy,
        timeout: Some(std::time::Duration::from_secs(1)),
        after: None,
        n_val: None,
    }
}
