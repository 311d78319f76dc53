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
//! ## One order of changes
//! Joins, leaves and commits are made by the claimant
//! ([`ClusterState::claimant`]); any node takes the operator's request and
//! forwards it ([`ClaimantChange`]), so concurrent requests are applied one
//! at a time and a second commit is refused while the first runs. See
//! [`state`] for why, and for the epoch that keeps a stale node from
//! rolling a committed ring back.
//!
//! ## Ownership handoff
//! When a change is committed, every partition whose replica set changes
//! must reach its new replicas. For each such (partition, target), **every
//! current replica** streams its copy of the partition in key order, in
//! paced batches of `transfer_batch`, and the target `sync`s them: a write
//! acknowledged by any of them reaches the new owner. A transfer is
//! complete when every source that is up has streamed (at least one must).
//! A source persists its cursor after each acknowledged batch, so a
//! transfer resumes where it stopped after a crash of either side; merging
//! is idempotent, so overlapping streams are harmless. At most
//! `transfer_limit` streams run at once on a node (changeable at run time,
//! as Riak's `transfer-limit`).
//!
//! **During the transfer** requests keep using the current ring, whose
//! replicas hold everything; writes are also sent to the future replicas
//! (the coordinator's `next_ring`; one that misses a write gets a hint), so
//! a key written after the stream passed it is not missed. A leaving node
//! hands its hints to members that stay before the change finishes. When
//! every transfer is complete the state switches to the next ring. A
//! replica refuses requests for keys it does not replicate in its rings,
//! so a node still routing with the old ring leaves no copy behind. Only
//! once every member has installed the new ring, and after
//! `cleanup_grace`, does a former owner hand what it still holds of the
//! partitions it lost to their owners and drop it; the pass is retried
//! until it completes, and tombstones are reaped only after every member
//! has done it (an old copy handed on after its tombstone was reaped would
//! bring the key back).

pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use dynkv_quorum::Coordinator;
use dynkv_ring::NodeId;
use dynkv_rpc::messages::{
    ClaimantChange, ClusterStateReply, Gossip, Handoff, Join, Repaired, StoreHint, Stored,
};
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

/// Progress of one outbound transfer, for `/admin/transfers`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TransferProgress {
    /// Objects sent and acknowledged.
    pub objects: u64,
    /// Whether the target acknowledged the whole partition.
    pub done: bool,
    /// Last error, if the transfer is retrying.
    pub error: Option<String>,
    /// When this node started streaming it (for the rate).
    #[serde(skip)]
    pub started: Option<Instant>,
    /// When it last sent a batch or finished.
    #[serde(skip)]
    pub last: Option<Instant>,
}

impl TransferProgress {
    /// Objects per second since the stream started.
    fn rate(&self) -> f64 {
        match (self.started, self.last) {
            (Some(a), Some(b)) if b > a => self.objects as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }
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
    /// Streams this node runs at once (`transfer_limit`; 0 pauses them).
    transfer_limit: AtomicUsize,
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
        let limit = config.transfer_concurrency;
        let m = Arc::new(Membership {
            coord,
            book,
            config,
            security: ArcSwap::from_pointee(state.security.clone()),
            state: ArcSwap::from_pointee(state.clone()),
            change: Mutex::new(()),
            transfers: Mutex::new(BTreeMap::new()),
            // A restarted node that has not cleaned up after the last
            // change does it a grace period after it starts.
            switched_at: Mutex::new(Some(Instant::now())),
            transfer_limit: AtomicUsize::new(limit),
        });
        m.apply(&state);
        // Records that this node runs the state's epoch.
        let _ = m.update(|s| Ok(s.clone()));
        m.learn_rings_from_refusals();
        Ok(m)
    }

    /// When a peer refuses a request because their rings differ, gossips
    /// with it at once (one such exchange at a time), so this node routes
    /// the next requests with the newer ring instead of waiting for a
    /// gossip round. A peer whose ring is older learns ours the same way.
    fn learn_rings_from_refusals(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let busy = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.coord.on_ring_mismatch(Box::new(move |peer| {
            let Some(m) = weak.upgrade() else { return };
            if busy.swap(true, Ordering::AcqRel) {
                return;
            }
            let (peer, busy) = (peer.clone(), busy.clone());
            tokio::spawn(async move {
                if let Err(e) = m.gossip_with(&peer).await {
                    debug!(%peer, error = %e, "gossip after a ring mismatch failed");
                }
                busy.store(false, Ordering::Release);
            });
        }));
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
        self.coord.replica().set_ring_settled(s.settled());
    }

    /// Replaces the state with `f(current)` if that changes it; persists and applies it.
    fn update<F>(&self, f: F) -> Result<Arc<ClusterState>, ChangeError>
    where
        F: FnOnce(&ClusterState) -> Result<ClusterState, ChangeError>,
    {
        let _g = self.change.lock();
        let cur = self.state.load_full();
        let mut next = f(&cur)?;
        if next.members.contains_key(self.me()) && !next.applied.contains(self.me()) {
            // `apply` below installs its rings before anyone can read this.
            next = next.record_applied(self.me());
        }
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
    /// `Join`, `ClaimantChange` and `Handoff`.
    pub fn register(self: &Arc<Self>, d: &mut Dispatcher) {
        d.register::<Gossip, _>(self.clone())
            .register::<Join, _>(self.clone())
            .register::<ClaimantChange, _>(self.clone())
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

    /// Stages `node` (default: this node) to leave, through the claimant.
    pub async fn stage_leave(
        &self,
        node: Option<NodeId>,
    ) -> Result<Arc<ClusterState>, ChangeError> {
        let node = node.unwrap_or_else(|| self.me().clone());
        self.change(ClaimantChange::Leave { node }).await
    }

    /// Commits the staged changes, through the claimant.
    pub async fn commit(&self) -> Result<Arc<ClusterState>, ChangeError> {
        let s = self.change(ClaimantChange::Commit).await?;
        info!(
            version = s.version.0,
            epoch = s.epoch,
            transfers = s.required_transfers(self.config.n_val).len(),
            "membership change committed"
        );
        Ok(s)
    }

    /// Makes `change` here if this node is the claimant, else asks the
    /// claimant and adopts its answer; either way spreads the result.
    async fn change(&self, change: ClaimantChange) -> Result<Arc<ClusterState>, ChangeError> {
        let claimant = self.state().claimant().clone();
        if claimant == *self.me() {
            let s = self.change_as_claimant(&change).await?;
            self.gossip_all().await;
            return Ok(s);
        }
        let reply = self
            .coord
            .call_peer(&claimant, &change, self.config.rpc_timeout)
            .await;
        match reply {
            Ok(ClusterStateReply(bytes)) => {
                let theirs = ClusterState::decode(&bytes).map_err(ChangeError::Claimant)?;
                self.merge_in(&theirs);
                Ok(self.state())
            }
            Err(RpcError::Remote(RemoteError::Refused(why))) => Err(ChangeError::Claimant(why)),
            Err(e) => Err(ChangeError::Claimant(format!(
                "the claimant {claimant} (the node that makes membership changes) cannot be reached: {e}; retry when it is back"
            ))),
        }
    }

    /// Applies `change` as the claimant (refused if this node is not it).
    /// Before a commit it learns what the members know: a claimant restored
    /// from an old disk then sees the newer epoch and refuses.
    async fn change_as_claimant(
        &self,
        change: &ClaimantChange,
    ) -> Result<Arc<ClusterState>, ChangeError> {
        if *change == ClaimantChange::Commit {
            self.gossip_all().await;
        }
        let me = self.me().clone();
        let s = self.update(|s| {
            let claimant = s.claimant();
            if *claimant != me {
                return Err(ChangeError::NotClaimant(claimant.clone()));
            }
            match change {
                ClaimantChange::Join(j) => s.stage_join(&me, &j.node, &j.addr, j.partitions),
                ClaimantChange::Leave { node } => s.stage_leave(&me, node),
                ClaimantChange::Commit => s.commit(&me),
            }
        })?;
        info!(
            ?change,
            version = s.version.0,
            epoch = s.epoch,
            "membership change made as claimant"
        );
        Ok(s)
    }

    /// The number of streams this node runs at once.
    pub fn transfer_limit(&self) -> usize {
        self.transfer_limit.load(Ordering::Relaxed)
    }

    /// Changes [`Membership::transfer_limit`] at run time (0 pauses this
    /// node's outbound transfers; running batches finish).
    pub fn set_transfer_limit(&self, limit: usize) {
        self.transfer_limit.store(limit, Ordering::Relaxed);
        info!(limit, "transfer limit changed");
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

    /// The bucket types the cluster agrees on, as this node knows them.
    pub fn bucket_types(&self) -> dynkv_btypes::BucketTypes {
        self.state().bucket_types.clone()
    }

    /// One bucket type (read on requests to typed buckets: no copy of the
    /// others).
    pub fn bucket_type(&self, name: &str) -> Option<dynkv_btypes::TypeEntry> {
        self.state().bucket_types.get(name).cloned()
    }

    /// Applies an operator's bucket-type change here, then gossips it to
    /// every member at once (as [`Membership::change_security`]).
    pub async fn change_bucket_type(
        &self,
        cmd: &dynkv_btypes::TypeCommand,
    ) -> Result<dynkv_btypes::BucketTypes, ChangeError> {
        let me = self.me().clone();
        self.update(|s| s.change_bucket_type(&me, cmd))?;
        info!(bucket_type = cmd.name(), "bucket types changed");
        self.gossip_all().await;
        Ok(self.bucket_types())
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
    /// streams of the current transition (at most the transfer limit),
    /// hands a leaving node's hints over, marks complete the transfers
    /// every up source has streamed, finishes the transition when all are,
    /// and cleans up after a switch.
    async fn transfer_step(
        &self,
        failures: &mut BTreeMap<(u32, NodeId), (u32, Instant)>,
        cx: &Context,
    ) {
        let state = self.state();
        if state.next.is_none() {
            self.maybe_cleanup(cx).await;
            return;
        }
        let me = self.me().clone();
        let n_val = self.config.n_val;
        let mine: Vec<Transfer> = self
            .my_streams(&state)
            .into_iter()
            .filter(|t| {
                failures
                    .get(&(t.partition, t.target.clone()))
                    .is_none_or(|(_, at)| *at <= Instant::now())
            })
            .take(self.transfer_limit())
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
        let mut progressed = false;
        for (t, result) in futures::future::join_all(runs).await {
            let id = (t.partition, t.target.clone());
            match result {
                Ok(objects) => {
                    failures.remove(&id);
                    let _ = self.update(|s| Ok(s.record_streamed(t.partition, &t.target, &me)));
                    progressed = true;
                    cx.count("partitions_handed_off", 1);
                    cx.count("objects_sent", objects);
                    info!(partition = t.partition, target = %t.target, objects, "partition streamed");
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
        progressed |= self.maybe_hand_over_hints(cx).await;
        let is_up = |n: &NodeId| self.believes_up(n);
        let before = self.state();
        let _ = self.update(|s| {
            let s = s.record_complete(n_val, is_up);
            Ok(s.finish(&me, n_val, is_up).unwrap_or(s))
        });
        let after = self.state();
        if after.next.is_none() {
            info!(epoch = after.epoch, "membership change finished");
        }
        if progressed || after.done != before.done || after.next.is_none() {
            // Spread progress quickly.
            self.gossip_all().await;
        }
    }

    /// Whether this node takes `n` to be up: itself always, a peer as the
    /// failure detector says. What decides a transfer complete, a leaver's
    /// hints owed, and where a leaver's hints go.
    fn believes_up(&self, n: &NodeId) -> bool {
        n == self.me() || self.coord.health().is_up(n)
    }

    /// The streams of the running transition this node still owes: it is
    /// a current replica of the partition and has not streamed it yet.
    fn my_streams(&self, state: &ClusterState) -> Vec<Transfer> {
        let me = self.me();
        state
            .pending_transfers(self.config.n_val)
            .into_iter()
            .filter(|t| t.sources.contains(me) && !state.has_streamed(t, me))
            .collect()
    }

    /// A leaving node, once its streams are done, hands every hint it
    /// holds to a member that stays (which delivers it to its owner
    /// later), then records that it owes none. True when it recorded so.
    async fn maybe_hand_over_hints(&self, cx: &Context) -> bool {
        let state = self.state();
        let me = self.me().clone();
        let leaving = state
            .members
            .get(&me)
            .is_some_and(|m| m.status == MemberStatus::Leaving);
        if !leaving || state.hints_handed.contains(&me) || !self.my_streams(&state).is_empty() {
            return false;
        }
        let Some(next) = state.next.clone() else {
            return false;
        };
        let store = self.coord.replica().store().clone();
        let mut cursor: Option<(String, u32, Vec<u8>)> = None;
        let mut handed = 0u64;
        loop {
            let batch = match store.hints(
                None,
                cursor
                    .as_ref()
                    .map(|(o, p, k)| (o.as_str(), *p, k.as_slice())),
                256,
            ) {
                Ok(b) => b,
                Err(e) => {
                    cx.error(format!("cannot read hints to hand over: {e}"));
                    return false;
                }
            };
            let Some(last) = batch.last() else { break };
            cursor = Some((last.owner.clone(), last.partition, last.key.clone()));
            for h in batch {
                let owner = NodeId::from(h.owner.as_str());
                // A member that stays, is up and is not the owner keeps it.
                let keepers: Vec<&NodeId> = next
                    .members()
                    .iter()
                    .filter(|m| **m != me && **m != owner && self.believes_up(m))
                    .collect();
                let Some(keeper) = keepers
                    .get(dynkv_ring::key_hash(&h.key) as usize % keepers.len().max(1))
                    .copied()
                else {
                    cx.error("no member that stays is up to take the hints".to_string());
                    return false;
                };
                let digest = h.object.digest();
                let req = StoreHint {
                    owner: owner.clone(),
                    key: Bytes::from(h.key.clone()),
                    object: h.object,
                };
                let sent: Result<Stored, _> = self
                    .coord
                    .call_peer(keeper, &req, self.config.rpc_timeout)
                    .await;
                if let Err(e) = sent {
                    cx.error(format!(
                        "handing a hint for {owner} to {keeper} failed: {e}"
                    ));
                    return false;
                }
                if let Err(e) = self.coord.replica().retire_fallback_actor(&req.object) {
                    warn!(error = %e, "cannot persist the fallback generation; keeping the hint");
                    return false;
                }
                let kr = KeyRef {
                    partition: h.partition,
                    hash: dynkv_ring::key_hash(&h.key),
                    key: &h.key,
                };
                if let Err(e) = store.remove_hint_if_unchanged(&h.owner, &kr, digest) {
                    warn!(error = %e, "cannot drop a handed-over hint");
                    return false;
                }
                handed += 1;
            }
        }
        if store.hint_count() > 0 {
            // Some changed while being handed over: the next step retries.
            return false;
        }
        if handed > 0 {
            info!(hints = handed, "handed hints over before leaving");
        }
        cx.count("hints_handed_over", handed);
        let _ = self.update(|s| Ok(s.record_hints_handed(&me)));
        true
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
        self.transfers
            .lock()
            .entry(id.clone())
            .or_default()
            .started
            .get_or_insert_with(Instant::now);
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
                p.last = Some(Instant::now());
            }
            if !self.config.transfer_pause.is_zero() {
                tokio::time::sleep(self.config.transfer_pause).await;
            }
        }
        store
            .put_meta(&cursor_key, b"\xffdone")
            .map_err(|e| e.to_string())?;
        let mut tr = self.transfers.lock();
        let p = tr.entry(id).or_default();
        p.done = true;
        p.last = Some(Instant::now());
        Ok(sent)
    }

    /// After a ring switch, once every member has installed the new ring
    /// and after the grace period: hands what this node still holds of
    /// the partitions it no longer replicates to their owners, drops it,
    /// and records the cleanup in the state. A pass that fails is tried
    /// again after another grace period, until one completes.
    async fn maybe_cleanup(&self, cx: &Context) {
        let state = self.state();
        let me = self.me().clone();
        if state.next.is_some() || state.cleaned.contains(&me) || !state.applied_everywhere() {
            return;
        }
        let due = self
            .switched_at
            .lock()
            .is_none_or(|at| at.elapsed() >= self.config.cleanup_grace);
        if !due {
            return;
        }
        cx.busy_with("handing on and dropping partitions no longer replicated here");
        match self.clean_up(&state).await {
            Ok(dropped) => {
                if dropped > 0 {
                    info!(
                        objects = dropped,
                        "handed on and dropped partitions no longer replicated here"
                    );
                }
                cx.count("objects_handed_on", dropped);
                let _ = self.update(|s| {
                    Ok(if s.epoch == state.epoch {
                        s.record_cleaned(&me)
                    } else {
                        s.clone()
                    })
                });
                self.gossip_all().await;
            }
            Err(e) => {
                cx.error(format!(
                    "cleanup after a ring switch failed (will retry): {e}"
                ));
                self.cleanup_failed(&e);
            }
        }
    }

    /// One cleanup pass: every object of a partition `state`'s ring does
    /// not give this node is merged into the partition's replicas (they
    /// may have missed it: written by a node still on the old ring, or
    /// hinted here), then removed here. Returns how many were handed on.
    async fn clean_up(&self, state: &ClusterState) -> Result<u64, String> {
        let ring = &state.ring;
        let n = self.coord.replica().effective_n();
        let me = self.me();
        let keep: std::collections::BTreeSet<u32> =
            ring.partitions_replicated_by(me, n).into_iter().collect();
        let store = self.coord.replica().store().clone();
        let mut handed = 0u64;
        for p in (0..ring.partitions()).filter(|p| !keep.contains(p)) {
            let owners: Vec<NodeId> = ring
                .preference_list(p, n)
                .into_iter()
                .filter(|o| *o != me)
                .cloned()
                .collect();
            loop {
                let s2 = store.clone();
                let batch = tokio::task::spawn_blocking(move || s2.scan_partition(p, None, 256))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                if batch.is_empty() {
                    break;
                }
                let items: Vec<_> = batch
                    .iter()
                    .map(|(k, o)| (Bytes::from(k.clone()), o.clone()))
                    .collect();
                for owner in &owners {
                    for items in dynkv_rpc::messages::split_by_bytes(
                        items.clone(),
                        self.config.max_message_bytes,
                    ) {
                        let req = Handoff {
                            partition: p,
                            items,
                        };
                        let Repaired(_) = self
                            .coord
                            .call_peer(owner, &req, self.config.rpc_timeout)
                            .await
                            .map_err(|e| format!("handing partition {p} on to {owner}: {e}"))?;
                    }
                }
                let s2 = store.clone();
                handed += tokio::task::spawn_blocking(move || {
                    for (k, _) in &batch {
                        s2.remove(&KeyRef {
                            partition: p,
                            hash: dynkv_ring::key_hash(k),
                            key: k,
                        })?;
                    }
                    Ok::<u64, dynkv_storage::StoreError>(batch.len() as u64)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            }
        }
        Ok(handed)
    }

    /// Schedules another cleanup pass after a failed one.
    fn cleanup_failed(&self, error: &str) {
        warn!(error, retry_in = ?self.config.cleanup_grace, "cleanup after a ring switch failed; will retry");
        *self.switched_at.lock() = Some(Instant::now());
    }

    /// The members view (`/admin/members`).
    pub fn members_view(&self) -> serde_json::Value {
        let s = self.state();
        let n = self.config.n_val;
        json!({
            "version": s.version.0,
            "epoch": s.epoch,
            "claimant": s.claimant(),
            "settled": s.settled(),
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

    /// The transfers view (`/admin/transfers`, `dynkv admin transfers`,
    /// as `riak-admin transfers`): every transfer of the running change
    /// with the sources that streamed it and, when it waits, on what; this
    /// node's outbound streams with their progress and rate; the transfer
    /// limit; and the cleanup after the last change.
    pub fn transfers_view(&self) -> serde_json::Value {
        let s = self.state();
        let me = self.me();
        let is_up = |n: &NodeId| self.believes_up(n);
        let local = self.transfers.lock().clone();
        let pending = s.pending_transfers(self.config.n_val).len();
        let rows: Vec<serde_json::Value> = s
            .required_transfers(self.config.n_val)
            .into_iter()
            .map(|t| {
                let key = (t.partition, t.target.clone());
                let complete = s.done.contains(&key);
                let streamed: Vec<&NodeId> = t
                    .sources
                    .iter()
                    .filter(|src| s.has_streamed(&t, src))
                    .collect();
                let waiting: Vec<&NodeId> = t
                    .sources
                    .iter()
                    .filter(|src| !streamed.contains(src) && is_up(src))
                    .collect();
                let mine = local.get(&key);
                let blocker = if complete {
                    None
                } else if !is_up(&t.target) {
                    Some(format!("the target {} is down", t.target))
                } else if streamed.is_empty() && waiting.is_empty() {
                    Some("every source is down".to_string())
                } else if let Some(e) = mine.and_then(|m| m.error.clone()) {
                    Some(e)
                } else if t.sources.contains(me)
                    && !streamed.contains(&me)
                    && mine.is_none_or(|m| m.started.is_none())
                {
                    Some("waiting for a transfer slot here".to_string())
                } else {
                    None
                };
                json!({
                    "partition": t.partition,
                    "target": t.target,
                    "sources": t.sources,
                    "streamed_by": streamed,
                    "waiting_for": waiting,
                    "complete": complete,
                    "objects_sent_here": mine.map(|m| m.objects),
                    "rate_per_s_here": mine.map(|m| (m.rate() * 10.0).round() / 10.0),
                    "blocker": blocker,
                })
            })
            .collect();
        json!({
            "node": me,
            "epoch": s.epoch,
            "in_progress": s.next.is_some(),
            "transfer_limit": self.transfer_limit(),
            "transfers_total": rows.len(),
            "transfers_pending": pending,
            "transfers": rows,
            "hints_owed_by": s.leavers_owing_hints(is_up),
            "cleanup": {
                "applied": s.applied,
                "cleaned": s.cleaned,
                "settled": s.settled(),
            },
        })
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
        let s = self
            .change(ClaimantChange::Join(Join {
                node: node.clone(),
                addr: addr.clone(),
                partitions,
            }))
            .await
            .map_err(|e| RemoteError::Refused(e.to_string()))?;
        info!(%node, %addr, "staged a join");
        Ok(ClusterStateReply(Bytes::from(s.encode())))
    }
}

impl Handler<ClaimantChange> for Membership {
    async fn handle(
        self: Arc<Self>,
        req: ClaimantChange,
        _: CallContext,
    ) -> Result<ClusterStateReply, RemoteError> {
        let s = self
            .change_as_claimant(&req)
            .await
            .map_err(|e| RemoteError::Refused(e.to_string()))?;
        // Spread it without holding up the answer.
        let m = self.clone();
        tokio::spawn(async move { m.gossip_all().await });
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
