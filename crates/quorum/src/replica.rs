//! This node's replica: the local store seen through the ring, with
//! everything a node does to its own copies and nothing that talks to a
//! peer.
//!
//! The [`Coordinator`](crate::Coordinator) holds one and calls it in place
//! whenever a request's target is this node (no encoding, no transport);
//! anti-entropy, membership, hinted handoff and the reaper use it for local
//! reads and writes without going through the coordinator. It also serves
//! the replica endpoints peers call: [`Read`] (full or digest-only),
//! [`Replicate`] and [`StoreHint`].
//!
//! It owns this incarnation's write identity (see [`epoch`](crate::epoch)):
//! the actor, its counter floor and the fallback actor's generation,
//! because they number versions stored here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use dynkv_ring::{NodeId, Ring};
use dynkv_rpc::messages::{Read, ReadReply, Replicate, StoreHint, Stored};
use dynkv_rpc::{CallContext, Handler, RemoteError};
use dynkv_storage::{KeyRef, Store};
use dynkv_vclock::{DvvSet, Object};

use crate::{
    CoordinatorConfig, Placement, QuorumError, QuorumMetrics, epoch, local_write, metrics,
};

/// This node's copies of keys, placed by the current ring. Shared as
/// `Arc<Replica>`.
pub struct Replica {
    pub(crate) me: NodeId,
    ring: ArcSwap<Ring>,
    next_ring: ArcSwapOption<Ring>,
    /// See [`Replica::ring_settled`].
    ring_settled: AtomicBool,
    pub(crate) store: Arc<Store>,
    pub(crate) metrics: Arc<QuorumMetrics>,
    /// Replicas per key, cluster-wide.
    n_val: usize,
    /// Run store calls on the blocking pool (fsync per write).
    blocking_store: bool,
    /// Most hints kept here.
    max_hints: u64,
    /// Most bytes of hints kept here.
    max_hint_bytes: u64,
    /// This incarnation's actor.
    pub(crate) actor: String,
    /// Dots of `actor` up to here may exist without being stored here.
    floor: AtomicU64,
    /// Generation of the actor used for fallback coordination.
    fallback_generation: AtomicU64,
}

/// A key with its ring coordinates, owned so it can move into a store job.
pub(crate) struct PlacedKey {
    partition: u32,
    hash: u64,
    key: Bytes,
}

impl PlacedKey {
    fn key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            partition: self.partition,
            hash: self.hash,
            key: &self.key,
        }
    }
}

impl Replica {
    /// The replica of node `me` on `store`, writing as `epoch`'s actor.
    pub fn new(
        me: NodeId,
        ring: Ring,
        store: Arc<Store>,
        config: &CoordinatorConfig,
        metrics: Arc<QuorumMetrics>,
        epoch: &epoch::Epoch,
    ) -> Self {
        Replica {
            me,
            ring: ArcSwap::from_pointee(ring),
            next_ring: ArcSwapOption::empty(),
            ring_settled: AtomicBool::new(true),
            store,
            metrics,
            n_val: config.n_val,
            blocking_store: config.blocking_store,
            max_hints: config.max_hints,
            max_hint_bytes: config.max_hint_bytes,
            actor: epoch.actor.clone(),
            floor: AtomicU64::new(epoch.floor),
            fallback_generation: AtomicU64::new(epoch.fallback_generation),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.me
    }

    /// The local store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The actor of the writes this node coordinates (`<id>#<incarnation>`).
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The actor of writes this node coordinates as a fallback:
    /// `<actor>~<generation>`. A fallback numbers a key's versions from the
    /// hints it holds for the key; once such a hint is handed off and
    /// deleted, the live values of its dots are no longer here, and a
    /// later write numbered after them would claim to have seen them and
    /// overwrite them on merge. So a hint holding dots of the current
    /// fallback actor is deleted only after the generation moves on
    /// ([`Replica::retire_fallback_actor`]): later fallback writes are a
    /// new actor, concurrent with the old values (Riak retires a fallback
    /// vnode's actor the same way, by its epoch).
    pub fn fallback_actor(&self) -> String {
        let g = self.fallback_generation.load(Ordering::Acquire);
        format!("{}~{g}", self.actor)
    }

    /// Moves fallback coordination to a new actor (persisted first) if
    /// `object` holds dots of the current one: call it before deleting a
    /// hint (delivered or expired).
    pub fn retire_fallback_actor(&self, object: &Object) -> dynkv_storage::Result<()> {
        let current = self.fallback_actor();
        if object.join().get(&current) == 0 {
            return Ok(());
        }
        let next = self.fallback_generation.load(Ordering::Acquire) + 1;
        epoch::save_fallback_generation(&self.store, next)?;
        self.fallback_generation.fetch_max(next, Ordering::AcqRel);
        Ok(())
    }

    /// The counter floor of this node's actor.
    pub fn floor(&self) -> u64 {
        self.floor.load(Ordering::Acquire)
    }

    /// Raises the counter floor to `counter` (persisted first): call it
    /// before deleting the last local copy of dots of this actor that hold
    /// only tombstones (a reaped key), so a later write is numbered above
    /// them and supersedes them on a replica that has not reaped yet.
    pub fn raise_floor(&self, counter: u64) -> dynkv_storage::Result<()> {
        let mut cur = self.floor.load(Ordering::Acquire);
        while counter > cur {
            epoch::save_floor(&self.store, counter)?;
            match self
                .floor
                .compare_exchange(cur, counter, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        // A racing lower raise may have persisted after a higher one.
        let now = self.floor.load(Ordering::Acquire);
        if now > counter {
            epoch::save_floor(&self.store, now)?;
        }
        Ok(())
    }

    /// The current ring.
    pub fn ring(&self) -> Arc<Ring> {
        self.ring.load_full()
    }

    /// Installs a new ring (membership change).
    pub fn set_ring(&self, ring: Ring) {
        self.ring.store(Arc::new(ring));
    }

    /// Installs (or clears) the ring a membership change is moving to.
    /// While set, writes are also sent to the key's future replicas, so
    /// that nothing written during an ownership transfer is missed.
    pub fn set_next_ring(&self, next: Option<Ring>) {
        self.next_ring.store(next.map(Arc::new));
    }

    /// The ring a membership change is moving to, if any.
    pub fn next_ring(&self) -> Option<Arc<Ring>> {
        self.next_ring.load_full()
    }

    /// Future replicas of a key that are not current ones (empty when no
    /// membership change is under way).
    pub fn incoming_replicas(&self, placement: &Placement) -> Vec<NodeId> {
        let Some(next) = self.next_ring.load_full() else {
            return Vec::new();
        };
        let n = self.n_in(&next);
        next.preference_list(placement.partition, n)
            .into_iter()
            .filter(|t| !placement.primaries.contains(t) && **t != self.me)
            .cloned()
            .collect()
    }

    /// Tells the reaper whether every node has cleaned up after the last
    /// ring change (see [`Replica::ring_settled`]).
    pub fn set_ring_settled(&self, settled: bool) {
        self.ring_settled.store(settled, Ordering::Relaxed);
    }

    /// Whether no ring change runs and every node has handed on and
    /// dropped its former copies: until then a reaped tombstone could be
    /// undone by an old copy still on its way (true without membership).
    pub fn ring_settled(&self) -> bool {
        self.ring_settled.load(Ordering::Relaxed) && self.next_ring.load().is_none()
    }

    /// Whether `node` replicates `key` in the ring requests use or in the
    /// one a running change moves to (with the cluster's N, so a namespace
    /// kept on fewer replicas is covered too).
    pub fn is_replica_of(&self, node: &NodeId, key: &[u8]) -> bool {
        let hash = dynkv_ring::key_hash(key);
        let in_ring = |ring: &Ring| {
            ring.preference_list(ring.partition_of_hash(hash), self.n_in(ring))
                .contains(&node)
        };
        in_ring(&self.ring.load()) || self.next_ring.load().as_deref().is_some_and(in_ring)
    }

    /// Refuses a request for a key this node does not replicate in its
    /// rings: the sender routed with another ring (stale, or ahead of this
    /// node's), and serving it would leave a copy where no read or
    /// anti-entropy exchange looks, or answer a read from a former copy.
    fn check_replica(&self, key: &[u8]) -> Result<(), RemoteError> {
        if self.is_replica_of(&self.me, key) {
            Ok(())
        } else {
            Err(RemoteError::NotReplica {
                node: self.me.clone(),
            })
        }
    }

    /// Replicas per key with the current membership: N, or fewer while the
    /// cluster has fewer than N nodes.
    pub fn effective_n(&self) -> usize {
        self.n_in(&self.ring.load())
    }

    /// Replicas per key in `ring`: N, or fewer while it has fewer members.
    fn n_in(&self, ring: &Ring) -> usize {
        self.n_val.min(ring.members().len()).max(1)
    }

    /// The key's partition, hash, primaries and fallbacks.
    pub fn placement(&self, key: &[u8]) -> Placement {
        self.placement_n(key, None)
    }

    /// [`Replica::placement`] for a key kept on `n_val` replicas when
    /// that is fewer than the cluster's N (per-namespace replication, as
    /// Riak's bucket `n_val`): the first `n_val` nodes of the same ring walk
    /// are its primaries and the rest are fallbacks.
    pub fn placement_n(&self, key: &[u8], n_val: Option<usize>) -> Placement {
        let ring = self.ring.load();
        let hash = dynkv_ring::key_hash(key);
        let partition = ring.partition_of_hash(hash);
        let walk = ring.walk(partition);
        let n = n_val
            .map_or(self.n_val, |n| n.clamp(1, self.n_val))
            .min(walk.len());
        Placement {
            partition,
            hash,
            primaries: walk[..n].iter().map(|n| (*n).clone()).collect(),
            fallbacks: walk[n..].iter().map(|n| (*n).clone()).collect(),
        }
    }

    /// A key with its partition and hash under the current ring.
    pub fn key_ref<'a>(&self, key: &'a [u8]) -> KeyRef<'a> {
        let hash = dynkv_ring::key_hash(key);
        KeyRef {
            partition: self.ring.load().partition_of_hash(hash),
            hash,
            key,
        }
    }

    /// A key with its ring coordinates, owned so it can move into a store job.
    pub(crate) fn placed(&self, key: Bytes) -> PlacedKey {
        let kr = self.key_ref(&key);
        PlacedKey {
            partition: kr.partition,
            hash: kr.hash,
            key,
        }
    }

    /// Runs a store call inline, or on the blocking pool when every write
    /// fsyncs (so a disk flush never stalls an async worker). A full disk
    /// becomes [`QuorumError::InsufficientStorage`] naming this node
    /// (counted in `dynkv_writes_refused{outcome="insufficient_storage"}`),
    /// a store being reopened [`QuorumError::Unavailable`], anything else
    /// [`QuorumError::Storage`].
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, QuorumError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> dynkv_storage::Result<T> + Send + 'static,
    {
        let r = if self.blocking_store {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || f(&store))
                .await
                .map_err(|e| QuorumError::Storage(e.to_string()))?
        } else {
            f(&self.store)
        };
        r.map_err(|e| match e {
            dynkv_storage::StoreError::NoSpace(detail) => {
                self.metrics
                    .writes_refused
                    .get_or_create(&metrics::OutcomeLabels {
                        outcome: "insufficient_storage",
                    })
                    .inc();
                QuorumError::InsufficientStorage {
                    node: self.me.clone(),
                    detail,
                }
            }
            dynkv_storage::StoreError::Unavailable(why) => {
                self.metrics.storage_errors.inc();
                QuorumError::Unavailable(format!("{}: storage unavailable: {why}", self.me))
            }
            e => {
                self.metrics.storage_errors.inc();
                QuorumError::Storage(e.to_string())
            }
        })
    }

    /// What this node stores for a key, without asking anyone: its own
    /// replica and every hint it keeps for it.
    pub async fn local_view(
        &self,
        key: &[u8],
    ) -> Result<(Option<Object>, Vec<(NodeId, Object)>), QuorumError> {
        let kr = self.key_ref(key);
        let (partition, hash, key) = (kr.partition, kr.hash, key.to_vec());
        let owners: Vec<NodeId> = self.ring.load().members().to_vec();
        self.with_store(move |s| {
            let kr = KeyRef {
                partition,
                hash,
                key: &key,
            };
            let own = s.get(&kr)?;
            let mut hints = Vec::new();
            for o in owners {
                if let Some(h) = s.get_hint(o.as_str(), &kr)? {
                    hints.push((o, h));
                }
            }
            Ok((own, hints))
        })
        .await
    }

    /// This node's copy of a key, merged with what it keeps as a hint for
    /// `hint_for` (a fallback answering a sloppy read in place of that
    /// primary).
    pub async fn read(
        &self,
        key: Bytes,
        hint_for: Option<NodeId>,
    ) -> Result<Option<Object>, QuorumError> {
        let key = self.placed(key);
        self.with_store(move |s| {
            let kr = key.key_ref();
            let own = s.get(&kr)?;
            let hint = match &hint_for {
                Some(owner) => s.get_hint(owner.as_str(), &kr)?,
                None => None,
            };
            Ok(match (own, hint) {
                (Some(a), Some(b)) => Some(DvvSet::sync(&a, &b)),
                (a, b) => a.or(b),
            })
        })
        .await
    }

    /// The digest ([`Object::digest`]) of what [`Replica::read`] returns:
    /// what a digest read compares instead of the object.
    pub async fn read_digest(
        &self,
        key: Bytes,
        hint_for: Option<NodeId>,
    ) -> Result<Option<u64>, QuorumError> {
        Ok(self.read(key, hint_for).await?.map(|o| o.digest()))
    }

    /// Merges an object into this node's copy (`sync`).
    pub async fn merge(&self, key: Bytes, object: Object) -> Result<(), QuorumError> {
        let key = self.placed(key);
        self.with_store(move |s| s.merge(&key.key_ref(), &object))
            .await
            .map(|_| ())
    }

    /// The replica step of a write another node coordinated (see
    /// [`Store::merge_replicated`]): nobody needs the merged object back.
    pub async fn merge_replicated(&self, key: Bytes, object: Object) -> Result<(), QuorumError> {
        let key = self.placed(key);
        self.with_store(move |s| s.merge_replicated(&key.key_ref(), &object))
            .await
    }

    /// The hint this node keeps for `owner` of a key, if any.
    pub async fn get_hint(&self, owner: NodeId, key: Bytes) -> Result<Option<Object>, QuorumError> {
        let key = self.placed(key);
        self.with_store(move |s| s.get_hint(owner.as_str(), &key.key_ref()))
            .await
    }

    /// Applies a coordinated write to this node's copy under the key's
    /// lock (the write numbered by this node's actor above its floor).
    /// Returns the stored object and whether the write was a replay of an
    /// earlier attempt; a refusal is counted by its code.
    pub(crate) async fn coordinate_local(
        &self,
        placement: &Placement,
        key: Bytes,
        write: local_write::LocalWrite,
    ) -> Result<(Option<Object>, bool), QuorumError> {
        let (partition, hash) = (placement.partition, placement.hash);
        let (updated, step) = self
            .with_store(move |s| {
                let kr = KeyRef {
                    partition,
                    hash,
                    key: &key,
                };
                let mut step = None;
                let u = s.update(&kr, |cur| {
                    let (next, st) = local_write::apply(cur, &write, crate::now_micros());
                    step = Some(st);
                    next
                })?;
                Ok((u, step.expect("the update ran")))
            })
            .await?;
        let replayed = self.applied(step)?;
        Ok((updated.object, replayed))
    }

    /// Whether a local write step replayed an earlier attempt; a refusal
    /// is counted by its code and returned.
    pub(crate) fn applied(&self, step: local_write::Step) -> Result<bool, QuorumError> {
        match step {
            local_write::Step::Applied { replayed } => Ok(replayed),
            local_write::Step::Refused(e) => {
                self.metrics
                    .writes_refused
                    .get_or_create(&metrics::OutcomeLabels { outcome: e.code() })
                    .inc();
                Err(e)
            }
        }
    }

    /// Keeps an object durably for an unreachable owner, unless the hint
    /// store is full: past `max_hints` hints or `max_hint_bytes` bytes (the
    /// write then counts this copy as failed and relies on the other
    /// replicas, and anti-entropy later). Hints are stored for an owner
    /// however long it has been down; each expires `handoff.hint_window`
    /// after its creation (see [`handoff`](crate::handoff)).
    pub async fn store_hint(&self, req: StoreHint) -> Result<Stored, RemoteError> {
        use dynkv_storage::{HintBound, HintLimits, HintPut};
        let limits = HintLimits {
            max_hints: self.max_hints,
            max_bytes: self.max_hint_bytes,
        };
        let StoreHint { owner, key, object } = req;
        let key = self.placed(key);
        let put = self
            .with_store(move |s| {
                s.put_hint_bounded(owner.as_str(), &key.key_ref(), &object, limits)
            })
            .await?;
        self.metrics.hint_bytes.set(self.store.hint_bytes() as i64);
        match put {
            HintPut::Created => {
                self.metrics.hints_stored.inc();
            }
            HintPut::Merged => {}
            HintPut::Refused(HintBound::Count) => {
                self.metrics.hint_refused("count");
                return Err(RemoteError::HintsFull {
                    node: self.me.clone(),
                    max: self.max_hints,
                });
            }
            HintPut::Refused(HintBound::Bytes) => {
                self.metrics.hint_refused("bytes");
                return Err(RemoteError::HintBytesFull {
                    node: self.me.clone(),
                    max: self.max_hint_bytes,
                });
            }
        }
        Ok(Stored::default())
    }
}

impl Handler<Read> for Replica {
    async fn handle(
        self: Arc<Self>,
        req: Read,
        ctx: CallContext,
    ) -> Result<ReadReply, RemoteError> {
        let started = std::time::Instant::now();
        let received = crate::now_micros();
        if req.hint_for.is_none() {
            self.check_replica(&req.key)?;
        }
        // Digests are a version-2 answer: an older peer gets the object.
        if req.digest_only && ctx.version >= 2 {
            return Ok(ReadReply {
                digest: self.read_digest(req.key, req.hint_for).await?,
                object: None,
                service_micros: Some(micros_since(started)),
                received_micros: Some(received),
            });
        }
        Ok(ReadReply {
            object: self.read(req.key, req.hint_for).await?,
            digest: None,
            service_micros: Some(micros_since(started)),
            received_micros: Some(received),
        })
    }
}

impl Handler<Replicate> for Replica {
    async fn handle(
        self: Arc<Self>,
        req: Replicate,
        _: CallContext,
    ) -> Result<Stored, RemoteError> {
        let started = std::time::Instant::now();
        let received = crate::now_micros();
        self.check_replica(&req.key)?;
        self.merge_replicated(req.key, req.object).await?;
        Ok(Stored {
            service_micros: Some(micros_since(started)),
            received_micros: Some(received),
        })
    }
}

/// Microseconds since `started`: a replica's service time, reported on
/// its answers for the staleness model (`dynkv-pbs`).
fn micros_since(started: std::time::Instant) -> u64 {
    started.elapsed().as_micros().min(u64::MAX as u128) as u64
}

impl Handler<StoreHint> for Replica {
    async fn handle(
        self: Arc<Self>,
        req: StoreHint,
        _: CallContext,
    ) -> Result<Stored, RemoteError> {
        self.store_hint(req).await
    }
}
