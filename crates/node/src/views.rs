//! What the node publishes under `/admin/...` beyond the API crate's own
//! routes: `/admin/workers`, `/admin/aae`, `/admin/reaper`,
//! `/admin/internode`, and the membership commands; and the directory of
//! members' public addresses that `GET /ring` publishes.

use std::sync::Arc;
use std::time::Duration;

use dynkv_antientropy::AntiEntropy;
use dynkv_api::{AdminView, MembershipAdmin};
use dynkv_membership::Membership;
use dynkv_quorum::Coordinator;
use dynkv_ring::NodeId;
use dynkv_rpc::NetTransport;
use dynkv_runtime::Runtime;
use futures::future::BoxFuture;

use crate::config::Config;

/// The named views, in the order `/admin/{name}` looks them up.
pub fn admin_views(
    cfg: &Config,
    coord: &Arc<Coordinator>,
    aae: &Arc<AntiEntropy>,
    transport: NetTransport,
    runtime: &Arc<Runtime>,
) -> Vec<(&'static str, Arc<dyn AdminView>)> {
    vec![
        ("aae", Arc::new(AaeView(aae.clone()))),
        (
            "reaper",
            Arc::new(ReaperView {
                coord: coord.clone(),
                interval: cfg.storage.reap_interval,
                grace: cfg.storage.tombstone_grace,
                settle: cfg.storage.reap_settle,
            }),
        ),
        ("internode", Arc::new(InternodeView(transport))),
        (
            "workers",
            Arc::new(WorkersView {
                node: coord.node_id().to_string(),
                runtime: runtime.clone(),
            }),
        ),
    ]
}

/// `/admin/workers`: every background worker of this node with its state
/// (idle, busy and with what, throttled, done, stopped, off, failed), steps
/// run, errors, the last error, the last step and its counters.
struct WorkersView {
    node: String,
    runtime: Arc<Runtime>,
}

impl AdminView for WorkersView {
    fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "node": self.node,
            "workers": self.runtime.workers(),
        })
    }
}

/// `/admin/internode`: what the handshakes told about each peer.
struct InternodeView(NetTransport);

impl AdminView for InternodeView {
    fn view(&self) -> serde_json::Value {
        serde_json::json!({ "peers": self.0.peers() })
    }
}

/// Members' public addresses for `GET /ring`: this node's own from its
/// config, its peers' from what their internode handshakes said
/// (`Hello::api_addr`, their `node.advertise`). A peer's address is
/// remembered once heard, so a member that is down now keeps the URL it
/// had: a client still knows where to find it when it returns.
pub struct PublicDirectory {
    me: String,
    scheme: &'static str,
    my_addr: String,
    transport: NetTransport,
    heard: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl PublicDirectory {
    /// The directory of a node advertising `cfg.advertise()`; URLs are
    /// `https://` when the public listener serves TLS (every node of a
    /// cluster is configured alike).
    pub fn new(cfg: &Config, transport: NetTransport) -> Self {
        PublicDirectory {
            me: cfg.node.id.clone(),
            scheme: if cfg.node.tls_cert.is_empty() {
                "http"
            } else {
                "https"
            },
            my_addr: cfg.advertise().to_string(),
            transport,
            heard: Default::default(),
        }
    }
}

impl dynkv_api::Directory for PublicDirectory {
    fn public_urls(&self) -> std::collections::HashMap<String, String> {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        for p in self.transport.peers() {
            if !p.api_addr.is_empty() {
                heard.insert(p.node, p.api_addr);
            }
        }
        heard.insert(self.me.clone(), self.my_addr.clone());
        heard
            .iter()
            .map(|(id, addr)| (id.clone(), format!("{}://{addr}", self.scheme)))
            .collect()
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
    interval: Duration,
    grace: Duration,
    settle: Duration,
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
        let ms = |d: Duration| d.as_millis() as u64;
        serde_json::json!({
            "node": self.coord.node_id(),
            "enabled": !self.interval.is_zero(),
            "interval_ms": ms(self.interval),
            "tombstone_grace_ms": ms(self.grace),
            "settle_ms": ms(self.settle),
            "counter_floor": self.coord.floor(),
            "passes": st.passes,
            "reaped_keys": st.reaped_keys,
            "tombstones_reaped_here": self.coord.metrics().tombstones_reaped.get(),
            "pending_confirmations": st.pending,
            "last_pass": last,
        })
    }
}

/// The membership commands of `/admin/...`, over this node's [`Membership`].
pub struct MembershipAdminView {
    /// This node's membership.
    pub membership: Arc<Membership>,
    /// Its cluster address, which joins announce.
    pub addr: String,
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

    fn leave(&self, node: Option<String>) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        let m = self.membership.clone();
        Box::pin(async move {
            m.stage_leave(node.map(NodeId::from))
                .await
                .map_err(|e| e.to_string())?;
            Ok(m.members_view())
        })
    }

    fn commit(&self) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        let m = self.membership.clone();
        Box::pin(async move {
            m.commit().await.map_err(|e| e.to_string())?;
            Ok(m.members_view())
        })
    }

    fn transfers(&self) -> serde_json::Value {
        self.membership.transfers_view()
    }

    fn set_transfer_limit(&self, limit: usize) {
        self.membership.set_transfer_limit(limit);
    }

    fn security(&self) -> Arc<dynkv_security::SecurityState> {
        self.membership.security()
    }

    fn change_security(
        &self,
        cmd: dynkv_security::Command,
    ) -> BoxFuture<'static, Result<Arc<dynkv_security::SecurityState>, String>> {
        let m = self.membership.clone();
        Box::pin(async move { m.change_security(&cmd).await.map_err(|e| e.to_string()) })
    }

    fn bucket_type(&self, name: &str) -> Option<dynkv_btypes::TypeEntry> {
        self.membership.bucket_type(name)
    }

    fn bucket_types(&self) -> dynkv_btypes::BucketTypes {
        self.membership.bucket_types()
    }

    fn change_bucket_type(
        &self,
        cmd: dynkv_btypes::TypeCommand,
    ) -> BoxFuture<'static, Result<dynkv_btypes::BucketTypes, String>> {
        let m = self.membership.clone();
        Box::pin(async move { m.change_bucket_type(&cmd).await.map_err(|e| e.to_string()) })
    }
}
