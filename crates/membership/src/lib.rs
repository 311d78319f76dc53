//! # dynkv-membership: live membership and ownership handoff
//!
//! Nodes join and leave a running cluster, as in Dynamo and riak_core.
//!
//! ## Pieces
//! - [`state`]: the versioned [`ClusterState`] (members and statuses, the
//!   current ring, the next ring while a change runs, finished transfers),
//!   with pure transitions: stage a join or leave, plan, commit, finish.
//! - [`Membership`]: one node's holder of that state. It persists every new
//!   state in the store (a restarted node comes back with what it knew),
//!   installs its rings in the coordinator and its addresses in the address
//!   book, gossips it (every `gossip_interval` with a random member, merged
//!   by version), serves `Join` and `Handoff` requests, and runs the
//!   ownership transfers. Its two loops are background workers of
//!   `dynkv-runtime`: [`GossipWorker`] and [`TransferWorker`].
//! - The security rules (`dynkv-security`) live in the same state, so
//!   they persist and converge the same way; [`Membership::security`] is
//!   the copy every request reads without a lock, and
//!   [`Membership::change_security`] applies an operator's change and
//!   spreads it at once.
//!
//! ## Ownership handoff
//! When a change is committed, every partition whose replica set changes
//! must reach its new replicas. For each such (partition, target), a
//! current replica (preferring one that is leaving that partition, else the
//! first one this node believes up) streams the partition's objects in key
//! order, in paced batches of `transfer_batch`, and the target `sync`s them.
//! The source persists its cursor after each acknowledged batch, so a
//! transfer resumes where it stopped after a crash of either side. Two
//! sources streaming the same partition (when nodes disagree about who is
//! up) is harmless: merging is idempotent.
//!
//! **During the transfer** requests keep using the current ring, whose
//! replicas hold everything; writes are also sent to the future replicas
//! (the coordinator's `next_ring`), so a key written after the stream passed
//! it is not missed. When every transfer is done the state switches to the
//! next ring; only then, after `cleanup_grace`, does a node drop the
//! partitions it no longer replicates: an old owner never drops data before
//! its new owner acknowledged the whole partition.

pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use dynkv_quorum::Coordinator;
use dynkv_ring::NodeId;
use dynkv_rpc::messages::{ClusterStateReply, Gossip, Handoff, Join, Repaired};
use dynkv_rpc::retry::Backoff;
use dynkv_rpc::{AddressBook, CallContext, Dispatcher, Handler, RemoteError, RpcError};
use dynkv_runtime::{Context, StepResult, Worker, WorkerState};
use dynkv_storage::KeyRef;
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use state::{ChangeError, ClusterState, Member, MemberStatus, Transfer};

use dynkv_security::SecurityState;

/// Meta key of the persisted cluster state.
const META_STATE: &str = "cluster_state";

/// Tunables of membership (from the node config).
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// Replicas per key.
    pub n_val: usize,
    /// Pause between gossip rounds.
    pub gossip_interval: Duration,
    /// Objects per handoff message.
    pub transfer_batch: usize,
    /// Pause between handoff batches (client traffic keeps priority).
    pub transfer_pause: Duration,
    /// Transfers run at once by this node.
    pub transfer_concurrency: usize,
    /// Wait after a ring switch before dropping partitions no longer replicated.
    pub cleanup_grace: Duration,
    /// Deadline of one membership message.
    pub rpc_timeout: Duration,
    /// Most object bytes in one handoff message.
    pub max_message_bytes: usize,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            n_val: 3,
            gossip_interval: Duration::from_secs(1),
            transfer_batch: 256,
            transfer_pause: Duration::from_millis(5),
            transfer_concurrency: 2,
            cleanup_grace: Duration::from_secs(5),
            rpc_timeout: Duration::from_secs(5),
            max_message_bytes: 32 << 20,
        }
    }
}

/// Progress of one outbound transfer, for `/admin/cluster`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TransferProgress {
    /// Objects sent and acknowledged.
    pub objects: u64,
    /// Whether the target acknowledged the whole partition.
    pub done: bool,
    /// Last error, if the transfer is retrying.
    pub error: Option<String>,
}

/// One node's membership.
pub struct Membership {
    coord: Arc<Coordinator>,
    book: Arc<AddressBook>,
    config: MembershipConfig,
    state: ArcSwap<ClusterState>,
    /// The security part of `state`, shared so requests read it without a copy.
    security: ArcSwap<SecurityState>,
    /// Serialises read-modify-write of the state (rare: gossip and admin).
    change: Mutex<()>,
    transfers: Mutex<BTreeMap<(u32, NodeId), TransferProgress>>,
    switched_at: Mutex<Option<Instant>>,
}

impl Membership {
    /// Loads the persisted state, or starts from the static member list.
    pub fn start(
        coord: Arc<Coordinator>,
        book: Arc<AddressBook>,
        config: MembershipConfig,
        static_members: &[(NodeId, String)],
    ) -> Result<Arc<Self>, String> {
        let partitions = coord.replica().ring().partitions();
        let stored = coord
            .store()
            .get_meta(META_STATE)
            .map_err(|e| e.to_string())?;
        let state = match stored {
            Some(bytes) => {
                let s = ClusterState::decode(&bytes)?;
                info!(
                    version = s.version.0,
                    members = s.members.len(),
                    "cluster state restored"
                );
                s
            }
            None => ClusterState::initial(static_members, partitions).map_err(|e| e.to_string())?,
        };
        let m = Arc::new(Membership {
            coord,
            book,
            config,
            security: ArcSwap::from_pointee(state.security.clone()),
            state: ArcSwap::from_pointee(state.clone()),
            change: Mutex::new(()),
            transfers: Mutex::new(BTreeMap::new()),
            switched_at: Mutex::new(None),
        });
        m.apply(&state);
        Ok(m)
    }

    /// The current state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.load_full()
    }

    fn me(&self) -> &NodeId {
        self.coord.node_id()
    }

    /// Pushes a state into the coordinator and the address book.
    fn apply(&self, s: &ClusterState) {
        for (id, m) in &s.members {
            if id != self.me() && self.book.get(id).as_deref() != Some(m.addr.as_str()) {
                self.book.insert(id.clone(), m.addr.clone());
            }
        }
        if *self.coord.replica().ring() != s.ring {
            self.coord.replica().set_ring(s.ring.clone());
        }
        if self.coord.replica().next_ring().as_deref() != s.next.as_ref() {
            self.coord.replica().set_next_ring(s.next.clone());
        }
    }

    /// Replaces the state with `f(current)` if that changes it; persists and applies it.
    fn update<F>(&self, f: F) -> Result<Arc<ClusterState>, ChangeError>
    where
        F: FnOnce(&ClusterState) -> Result<ClusterState, ChangeError>,
    {
        let _g = self.change.lock();
        let cur = self.state.load_full();
        let next = f(&cur)?;
        if next != *cur {
            if let Err(e) = self
                .coord
                .replica()
                .store()
                .put_meta(META_STATE, &next.encode())
            {
                warn!(error = %e, "cannot persist the cluster state");
            }
            let switched = next.ring != cur.ring;
            if next.security != cur.security {
                self.security.store(Arc::new(next.security.clone()));
            }
            self.apply(&next);
            self.state.store(Arc::new(next));
            if switched {
                info!(
                    version = self.state.load().version.0,
                    members = self.state.load().ring.members().len(),
                    "ring switched"
                );
                *self.switched_at.lock() = Some(Instant::now());
                self.transfers.lock().clear();
            }
        }
        Ok(self.state.load_full())
    }

    fn merge_in(&self, other: &ClusterState) {
        if other.ring.partitions() != self.state.load().ring.partitions() {
            warn!("ignoring gossip with another partition count");
            return;
        }
        let _ = self.update(|cur| Ok(cur.merge(other)));
    }

    /// Registers the membership endpoints this node serves: `Gossip`,
    /// `Join` and `Handoff`.
    pub fn register(self: &Arc<Self>, d: &mut Dispatcher) {
        d.register::<Gossip, _>(self.clone())
            .register::<Join, _>(self.clone())
            .register::<Handoff, _>(self.clone());
    }

    /// Asks the member at `seed` to stage this node as joining, and adopts
    /// the cluster's state.
    pub async fn join_via(&self, seed: &str, my_addr: &str) -> Result<Arc<ClusterState>, String> {
        let seed_id = NodeId::from(format!("seed@{seed}"));
        self.book.insert(seed_id.clone(), seed.to_string());
        let req = Join {
            node: self.me().clone(),
            addr: my_addr.to_string(),
            partitions: self.state().ring.partitions(),
        };
        let ClusterStateReply(bytes) = self
            .coord
            .transport()
            .call(&seed_id, &req, self.config.rpc_timeout)
            .await
            .map_err(|e| match e {
                RpcError::Remote(refusal) => refusal.to_string(),
                e => format!("cannot reach {seed}: {e}"),
            })?;
        let theirs = ClusterState::decode(&bytes)?;
        // The cluster's state replaces this node's own (it held no data).
        let adopted = self
            .update(|_| Ok(theirs.clone()))
            .map_err(|e| e.to_string())?;
        info!(%seed, version = adopted.version.0, "joined; waiting for commit");
        Ok(adopted)
    }

    /// Stages `node` (default: this node) to leave.
    pub fn stage_leave(&self, node: Option<NodeId>) -> Result<Arc<ClusterState>, ChangeError> {
        let me = self.me().clone();
        let node = node.unwrap_or_else(|| me.clone());
        self.update(|s| s.stage_leave(&me, &node))
    }

    /// Commits the staged changes.
    pub fn commit(&self) -> Result<Arc<ClusterState>, ChangeError> {
        let me = self.me().clone();
        let s = self.update(|s| s.commit(&me))?;
        info!(
            version = s.version.0,
            transfers = s.required_transfers(self.config.n_val).len(),
            "membership change committed"
        );
        Ok(s)
    }

    /// The security rules in force on this node.
    pub fn security(&self) -> Arc<SecurityState> {
        self.security.load_full()
    }

    /// Applies an operator's security change here (persisted like every
    /// state change), then gossips it to every member at once so it takes
    /// effect cluster-wide without waiting for the next gossip round.
    pub async fn change_security(
        &self,
        cmd: &dynkv_security::Command,
    ) -> Result<Arc<SecurityState>, ChangeError> {
        let me = self.me().clone();
        self.update(|s| s.change_security(&me, cmd))?;
        info!(
            version = self.security().version(),
            "security rules changed"
        );
        self.gossip_all().await;
        Ok(self.security())
    }

    /// Gossips with one peer (or `to`), merging its answer.
    pub async fn gossip_with(&self, to: &NodeId) -> Result<(), String> {
        let req = Gossip {
            state: Bytes::from(self.state().encode()),
        };
        let ClusterStateReply(bytes) = self
            .coord
            .call_peer(to, &req, self.config.rpc_timeout)
            .await
            .map_err(|e| e.to_string())?;
        let theirs = ClusterState::decode(&bytes)?;
        self.merge_in(&theirs);
        Ok(())
    }

    /// Every member but this node.
    fn peers(&self) -> Vec<NodeId> {
        self.state()
            .members
            .keys()
            .filter(|m| *m != self.me())
            .cloned()
            .collect()
    }

    /// Gossips with every member at once (after a change, to spread it fast).
    pub async fn gossip_all(&self) {
        let peers = self.peers();
        let rounds = peers.iter().map(|p| self.gossip_with(p));
        futures::future::join_all(rounds).await;
    }

    /// One gossip round: with one random member. `Ok(None)` when there is
    /// no other member.
    async fn gossip_round(&self) -> Result<Option<NodeId>, String> {
        let peers = self.peers();
        if peers.is_empty() {
            return Ok(None);
        }
        let peer = &peers[rand::random_range(0..peers.len())];
        match self.gossip_with(peer).await {
            Ok(()) => Ok(Some(peer.clone())),
            Err(e) => {
                debug!(%peer, error = %e, "gossip failed");
                Err(format!("gossip with {peer} failed: {e}"))
            }
        }
    }

    /// One step of the transfer loop: runs this node's share of the
    /// transfers of the current transition, finishes the transition when
    /// all are done, and drops partitions no longer replicated after a
    /// switch.
    async fn transfer_step(
        &self,
        failures: &mut BTreeMap<(u32, NodeId), (u32, Instant)>,
        cx: &Context,
    ) {
        let state = self.state();
        if state.next.is_none() {
            self.maybe_cleanup().await;
            return;
        }
        let mine: Vec<Transfer> = state
            .pending_transfers(self.config.n_val)
            .into_iter()
            .filter(|t| self.is_designated_source(t))
            .filter(|t| {
                failures
                    .get(&(t.partition, t.target.clone()))
                    .is_none_or(|(_, at)| *at <= Instant::now())
            })
            .take(self.config.transfer_concurrency.max(1))
            .collect();
        if !mine.is_empty() {
            let names: Vec<String> = mine
                .iter()
                .map(|t| format!("partition {} to {}", t.partition, t.target))
                .collect();
            cx.busy_with(format!("streaming {}", names.join(", ")));
        }
        let this = &self;
        let st = &state;
        let runs = mine
            .iter()
            .map(|t| async move { (t.clone(), this.transfer(st, t).await) });
        for (t, result) in futures::future::join_all(runs).await {
            let id = (t.partition, t.target.clone());
            match result {
                Ok(objects) => {
                    failures.remove(&id);
                    let _ = self.update(|s| Ok(s.record_done(t.partition, &t.target)));
                    cx.count("partitions_handed_off", 1);
                    cx.count("objects_sent", objects);
                    info!(partition = t.partition, target = %t.target, objects, "partition handed off");
                }
                Err(e) => {
                    let n = failures.get(&id).map_or(0, |f| f.0) + 1;
                    let delay = Backoff {
                        base: Duration::from_millis(200),
                        max: Duration::from_secs(10),
                    }
                    .jittered(n);
                    failures.insert(id.clone(), (n, Instant::now() + delay));
                    self.transfers.lock().entry(id).or_default().error = Some(e.clone());
                    debug!(partition = t.partition, target = %t.target, error = %e, "handoff failed; will resume");
                    cx.error(format!(
                        "handoff of partition {} to {} failed (will resume): {e}",
                        t.partition, t.target
                    ));
                }
            }
        }
        let me = self.me().clone();
        let n_val = self.config.n_val;
        if self.state().pending_transfers(n_val).is_empty()
            && let Ok(s) = self.update(|s| Ok(s.finish(&me, n_val).unwrap_or_else(|| s.clone())))
            && s.next.is_none()
        {
            self.gossip_all().await;
        } else if !mine.is_empty() {
            // Spread progress quickly.
            self.gossip_all().await;
        }
    }

    /// Whether this node should stream `t`: the first of its sources this node believes up.
    fn is_designated_source(&self, t: &Transfer) -> bool {
        t.sources
            .iter()
            .find(|s| self.coord.health().is_up(s))
            .is_some_and(|s| s == self.me())
    }

    /// Names the transfer's persisted cursor after the target ring, so a
    /// resumed transfer of the same transition finds it.
    fn cursor_key(state: &ClusterState, t: &Transfer) -> String {
        let transition = state.next.as_ref().map_or(0, |r| {
            let bytes = postcard::to_allocvec(r).unwrap_or_default();
            xxhash_rust::xxh3::xxh3_64(&bytes)
        });
        format!("handoff.{transition:016x}.{}.{}", t.partition, t.target)
    }

    /// Streams one partition to its new replica, from the persisted cursor.
    async fn transfer(&self, state: &ClusterState, t: &Transfer) -> Result<u64, String> {
        let store = self.coord.replica().store().clone();
        let cursor_key = Self::cursor_key(state, t);
        let mut cursor: Option<Vec<u8>> = store.get_meta(&cursor_key).map_err(|e| e.to_string())?;
        if cursor.as_deref() == Some(b"\xffdone") {
            return Ok(0);
        }
        let id = (t.partition, t.target.clone());
        self.transfers.lock().entry(id.clone()).or_default();
        let mut sent = 0;
        loop {
            let (s2, after, batch, p) = (
                store.clone(),
                cursor.clone(),
                self.config.transfer_batch,
                t.partition,
            );
            let items =
                tokio::task::spawn_blocking(move || s2.scan_partition(p, after.as_deref(), batch))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            if items.is_empty() {
                break;
            }
            let last = items.last().map(|(k, _)| k.clone());
            let count = items.len() as u64;
            let items: Vec<_> = items
                .into_iter()
                .map(|(k, o)| (Bytes::from(k), o))
                .collect();
            // Large objects: as many messages as the frame limit needs.
            for items in dynkv_rpc::messages::split_by_bytes(items, self.config.max_message_bytes) {
                let req = Handoff {
                    partition: t.partition,
                    items,
                };
                let Repaired(_) = self
                    .coord
                    .call_peer(&t.target, &req, self.config.rpc_timeout)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            cursor = last;
            if let Some(c) = &cursor {
                store.put_meta(&cursor_key, c).map_err(|e| e.to_string())?;
            }
            sent += count;
            {
                let mut tr = self.transfers.lock();
                let p = tr.entry(id.clone()).or_default();
                p.objects += count;
                p.error = None;
            }
            if !self.config.transfer_pause.is_zero() {
                tokio::time::sleep(self.config.transfer_pause).await;
            }
        }
        store
            .put_meta(&cursor_key, b"\xffdone")
            .map_err(|e| e.to_string())?;
        self.transfers.lock().entry(id).or_default().done = true;
        Ok(sent)
    }

    /// After a ring switch and its grace period, drops the partitions this
    /// node no longer replicates. A pass that fails is tried again after
    /// another grace period, until one completes.
    async fn maybe_cleanup(&self) {
        let due = self
            .switched_at
            .lock()
            .is_some_and(|at| at.elapsed() >= self.config.cleanup_grace);
        if !due {
            return;
        }
        *self.switched_at.lock() = None;
        let ring = self.coord.replica().ring();
        let n = self.coord.replica().effective_n();
        let keep: std::collections::BTreeSet<u32> = ring
            .partitions_replicated_by(self.me(), n)
            .into_iter()
            .collect();
        let store = self.coord.replica().store().clone();
        let partitions = ring.partitions();
        let r = tokio::task::spawn_blocking(move || {
            let mut dropped = 0u64;
            for p in (0..partitions).filter(|p| !keep.contains(p)) {
                loop {
                    let batch = store.scan_partition(p, None, 512)?;
                    if batch.is_empty() {
                        break;
                    }
                    for (k, _) in batch {
                        let hash = dynkv_ring::key_hash(&k);
                        store.remove(&KeyRef {
                            partition: p,
                            hash,
                            key: &k,
                        })?;
                        dropped += 1;
                    }
                }
            }
            Ok::<u64, dynkv_storage::StoreError>(dropped)
        })
        .await;
        match r {
            Ok(Ok(n)) if n > 0 => {
                info!(objects = n, "dropped partitions no longer replicated here")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => self.cleanup_failed(&e.to_string()),
            Err(e) => self.cleanup_failed(&e.to_string()),
        }
    }

    /// Schedules another cleanup pass after a failed one.
    fn cleanup_failed(&self, error: &str) {
        warn!(error, retry_in = ?self.config.cleanup_grace, "cleanup after a ring switch failed; will retry");
        let mut at = self.switched_at.lock();
        if at.is_none() {
            *at = Some(Instant::now());
        }
    }

    /// The members view (`/admin/members`).
    pub fn members_view(&self) -> serde_json::Value {
        let s = self.state();
        let n = self.config.n_val;
        json!({
            "version": s.version.0,
            "members": s.members.iter().map(|(id, m)| json!({
                "id": id,
                "addr": m.addr,
                "status": m.status,
                "partitions_owned": s.ring.partitions_owned_by(id).len(),
                "partitions_owned_next": s.next.as_ref().map(|r| r.partitions_owned_by(id).len()),
            })).collect::<Vec<_>>(),
            "transition": s.next.as_ref().map(|_| json!({
                "transfers_total": s.required_transfers(n).len(),
                "transfers_pending": s.pending_transfers(n).len(),
            })),
        })
    }

    /// The plan view (`/admin/plan`).
    pub fn plan_view(&self) -> Result<serde_json::Value, ChangeError> {
        let s = self.state();
        let moves = s.planned_moves()?;
        let next = s.plan()?;
        let staged: Vec<_> = s
            .members
            .iter()
            .filter(|(_, m)| m.status != MemberStatus::Valid)
            .map(|(id, m)| json!({"id": id, "status": m.status}))
            .collect();
        Ok(json!({
            "staged": staged,
            "in_progress": s.next.is_some(),
            "moves": moves.iter().map(|m| json!({"partition": m.partition, "from": m.from, "to": m.to})).collect::<Vec<_>>(),
            "partitions_moving": moves.len(),
            "partitions": s.ring.partitions(),
            "owned_after": next.members().iter().map(|m| (m.to_string(), json!(next.partitions_owned_by(m).len()))).collect::<serde_json::Map<_, _>>(),
        }))
    }

    /// Outbound transfers of this node (`/admin/cluster`).
    pub fn transfers_view(&self) -> serde_json::Value {
        let tr = self.transfers.lock();
        json!(tr.iter().map(|((p, t), prog)| json!({"partition": p, "to": t, "objects": prog.objects, "done": prog.done, "error": prog.error})).collect::<Vec<_>>())
    }
}

impl Handler<Gossip> for Membership {
    async fn handle(
        self: Arc<Self>,
        req: Gossip,
        _: CallContext,
    ) -> Result<ClusterStateReply, RemoteError> {
        let theirs = ClusterState::decode(&req.state).map_err(RemoteError::Refused)?;
        self.merge_in(&theirs);
        Ok(ClusterStateReply(Bytes::from(self.state().encode())))
    }
}

impl Handler<Join> for Membership {
    async fn handle(
        self: Arc<Self>,
        req: Join,
        _: CallContext,
    ) -> Result<ClusterStateReply, RemoteError> {
        let Join {
            node,
            addr,
            partitions,
        } = req;
        let me = self.me().clone();
        let s = self
            .update(|s| s.stage_join(&me, &node, &addr, partitions))
            .map_err(|e| RemoteError::Refused(e.to_string()))?;
        info!(%node, %addr, "staged a join");
        Ok(ClusterStateReply(Bytes::from(s.encode())))
    }
}

impl Handler<Handoff> for Membership {
    async fn handle(
        self: Arc<Self>,
        req: Handoff,
        _: CallContext,
    ) -> Result<Repaired, RemoteError> {
        let Handoff { partition, items } = req;
        let ring = self.coord.replica().ring();
        let store = self.coord.replica().store().clone();
        let merged = tokio::task::spawn_blocking(move || {
            let mut n = 0;
            for (k, o) in &items {
                let hash = dynkv_ring::key_hash(k);
                let kr = KeyRef {
                    partition: ring.partition_of_hash(hash),
                    hash,
                    key: k,
                };
                if store.merge(&kr, o)?.changed {
                    n += 1;
                }
            }
            Ok::<u64, dynkv_storage::StoreError>(n)
        })
        .await
        .map_err(|e| RemoteError::Storage(e.to_string()))?
        .map_err(|e| RemoteError::Storage(e.to_string()))?;
        debug!(partition, merged, "handoff batch received");
        Ok(Repaired(merged))
    }
}

/// The gossip loop (`gossip` in `/admin/workers`): the cluster state with
/// one random member every `gossip_interval`.
pub struct GossipWorker(pub Arc<Membership>);

impl Worker for GossipWorker {
    fn name(&self) -> String {
        "gossip".into()
    }

    fn interval(&self) -> Duration {
        self.0.config.gossip_interval
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        cx.busy_with("gossiping the cluster state");
        if self.0.gossip_round().await?.is_some() {
            cx.count("rounds", 1);
        }
        cx.set("state_version", self.0.state().version.0);
        Ok(WorkerState::Idle)
    }
}

/// The ownership-handoff loop (`transfers` in `/admin/workers`): every
/// 200 ms, streams this node's share of the partitions that change owner,
/// retries a failed transfer with backoff, finishes the transition and
/// drops what this node no longer replicates.
pub struct TransferWorker {
    membership: Arc<Membership>,
    failures: BTreeMap<(u32, NodeId), (u32, Instant)>,
}

impl TransferWorker {
    /// The transfer loop of `membership`.
    pub fn new(membership: Arc<Membership>) -> TransferWorker {
        TransferWorker {
            membership,
            failures: BTreeMap::new(),
        }
    }
}

impl Worker for TransferWorker {
    fn name(&self) -> String {
        "transfers".into()
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(200)
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        self.membership.transfer_step(&mut self.failures, cx).await;
        Ok(WorkerState::Idle)
    }
}
