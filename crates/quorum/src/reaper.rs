//! Tombstone reaping: Riak's `delete_mode`, made safe.
//!
//! A DELETE writes a tombstone, so that a replica that missed the delete
//! cannot bring the value back: the tombstone's clock covers it. Kept
//! forever, tombstones make a delete-heavy workload grow without bound.
//! This worker removes a tombstone once no copy of the key anywhere in the
//! cluster can be anything other than that tombstone, and makes sure that
//! a write after the removal is numbered above every dot the tombstone
//! carried.
//!
//! # The protocol
//!
//! One node drives each key: the *first primary* of the key's partition
//! (`ring.preference_list(p, N)[0]`), so two drivers never race over a
//! key. Every `storage.reap_interval`, a pass walks the partitions this
//! node drives (none while a membership change is under way) and picks the
//! objects whose siblings are all tombstones and whose newest tombstone is
//! older than `storage.tombstone_grace` (by its `modified_micros`). For
//! each batch of them:
//!
//! 1. **Check** ([`ReapCheck`], to *every member* of the cluster, the
//!    driver included): each node first raises its counter floor to the
//!    counter its own current actor has in each tombstone's clock, persisted
//!    (see [`crate::epoch`]), then answers, per key, the digest of the
//!    object it stores (if any) and whether it keeps a hint for the key for
//!    any owner.
//! 2. **Decide** ([`decide`]): a key is *confirmed* when every member
//!    answered, every primary holds an object with exactly the driver's
//!    digest (the identical tombstone), any other member that stores the
//!    key holds the identical tombstone too, and no member keeps a hint for
//!    it.
//! 3. **Settle** ([`settled`]): a key is reaped only when it was confirmed
//!    with the same digest by two checks at least `storage.reap_settle`
//!    apart (on the driver's monotonic clock; the first check of a later
//!    pass usually). The driver remembers its confirmed keys between passes
//!    (at most [`ReaperConfig::max_pending`]).
//! 4. **Reap** ([`Reap`], to every primary and to any other member that
//!    answered the identical tombstone): each node raises its floor to its
//!    own actor's counter in the object (persisted), then removes the key
//!    only if its object still has exactly that digest and is all
//!    tombstones (compare-and-delete under the key's lock,
//!    `Store::update`). The removal updates the digest index and the
//!    Merkle trees in the same step, like any write.
//!
//! # Why this is safe
//!
//! Call the tombstone `T`, with clock `C`. Two things could go wrong after
//! reaping: a value `T` deleted comes back (a *resurrection*), or a write
//! after reaping gets a dot `C` already covers and is dropped by a replica
//! that still holds `T` (a *lost write*).
//!
//! **No value comes back.** A value `V` that `T` deleted can only come back
//! from a copy of `V` merged into a node that no longer holds `T`; merged
//! into `T` it changes nothing (`sync(T, V) = T`). At a confirmation every
//! member answered: the primaries and every other node storing the key
//! hold exactly `T`, and nobody keeps a hint. So at that moment a copy of
//! `V` without `T` exists only inside a message in flight (a replication,
//! a read repair, an anti-entropy repair, a hint delivery, an ownership
//! transfer). Nodes that are not members are not asked, and do not matter:
//! a node leaves only after its data moved, and a new node joins empty.
//! - A message in flight at the first confirmation is applied within its
//!   deadline (every internode call has one, far below the settle), so
//!   before the second confirmation; it is applied to a node that still
//!   holds `T` (nothing is removed before the second confirmation), where
//!   it changes nothing, or stored as a hint, which the second confirmation
//!   sees, so nothing is reaped.
//! - A message created after the first confirmation is read from a state
//!   that holds `T` (every copy was `T`), so it carries `T` or a descendant
//!   of it, never `V` alone; a hint being delivered is deleted only once
//!   its owner applied it.
//!
//! At worst a primary misses the [`Reap`] (its call failed, or it took a
//! new write meanwhile, so its digest differs): it keeps `T` (or the new
//! write), and anti-entropy or read repair copy that back to the replicas
//! that removed the key. That is `T`, not a value, and the next pass reaps
//! it again; a new write is simply replicated, as it should be. Read repair
//! and anti-entropy only ever send the `sync` of what replicas hold, so
//! once every copy is `T` or nothing they can only send `T`.
//!
//! The residual assumption is about time, and it is the reason for the
//! settle: an internode message is applied within `storage.reap_settle`
//! (60 s by default) of being sent, or never. Requests carry deadlines of at
//! most a few seconds, but a receiver does not drop an expired request, so
//! a process that stalls for longer than the settle with such a message
//! queued, and answers both checks around it, would break it.
//!
//! **No write after reaping is lost.** A coordinator numbers a write with
//! its own actor `a`, above its stored counter for the key, and above its
//! counter floor when it holds no live value of `a` for the key
//! (`DvvSet::update_above`). Every member raised its floor to `C[a]` before
//! answering the first check, and nothing is removed before that: so after
//! reaping, a coordinator that holds nothing of the key numbers its write
//! above `C[a]`; one that holds `T` again (brought back) numbers above `T`.
//! A coordinator that was not a member then (it joined later), or that
//! took a new incarnation since, writes as an actor `C` does not mention.
//! A write numbered *before* the floor was raised was stored by its
//! coordinator first (a primary in its own object, a fallback as hints), so
//! the checks see a different digest or a hint and nothing is reaped.
//! Writes coordinated as a fallback use the node's fallback actor
//! (`Coordinator::fallback_actor`), which is retired before any hint
//! holding its dots is deleted: while such a hint exists the key is not
//! reaped, and once it is gone that actor never writes again, so `C` can
//! hold no dot a fallback will reissue. Any
//! replica that still holds `T` therefore keeps the new write: its dot is
//! not covered by `C`. (The merge may leave one of `T`'s tombstones as a
//! sibling of the new value, a 300 that the next write with a context
//! resolves.) A client that kept the context of a read from before the
//! reap may use it: it is accepted up to the floor, clamped to what the
//! replicas hold (`local_write`), and the write gets a fresh dot.
//!
//! **Why hints are checked.** A hint is a copy of the key held for a
//! primary by another node, possibly written while the primary was down
//! and before the delete. Delivered after reaping, it would put `V` back
//! on the primary with nothing to cover it. So a key with a hint anywhere
//! is not reaped (`dynkv_reap_skipped_total{reason="hinted"}`) until the
//! hint is delivered (merged into `T`) or expires (expired hints are
//! dropped undelivered, never delivered late).
//!
//! **What the grace covers.** Safety does not rest on the grace (it rests
//! on the checks and the settle, on the driver's monotonic clock), so a
//! skewed clock on the node that wrote the tombstone only moves the moment
//! reaping starts. The grace keeps the tombstone, and its context, visible
//! for a while: requests in flight around the delete finish against it,
//! lagging replicas get it through the normal paths (handoff, read repair)
//! instead of blocking reaping, a retried DELETE with the same
//! `Idempotency-Key` within `quorum.idempotency_window` (also 10 minutes)
//! finds its record, and a reader sees "deleted" with a context rather than
//! "never written" for the grace at least.
//!
//! **A node down.** Every member must answer both checks, because any node
//! may hold a hint for any key. While one is down or unreachable (or runs
//! a version that does not know [`ReapCheck`], during a rolling upgrade),
//! nothing is reaped (`reason="primary_down"` or `"member_down"`). A
//! primary that was down during the delete still holds the value when it
//! returns: its digest differs (`reason="differs"`) until anti-entropy,
//! read repair or hinted handoff gives it the tombstone, and only then can
//! the key be reaped.
//!
//! # Cost
//! A pass reads every object of the partitions this node drives (about
//! 1/nodes of its data) to find the tombstones among them; an index of
//! tombstones kept by the store would make it follow the tombstones
//! instead. Checks are batched ([`ReaperConfig::batch`] keys per message,
//! on the bulk connection) and one floor write per batch and node.
//!
//! # Disk space
//! A reaped key is a RocksDB delete; its space comes back when RocksDB
//! compacts the files that hold it (`Store::compact` forces it, `dynkv
//! admin compact`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynkv_ring::NodeId;
use dynkv_rpc::messages::{Reap, ReapCheck, ReapStatus, ReapStatuses, Reaped};
use dynkv_rpc::{CallContext, Handler, RemoteError};
use dynkv_runtime::{Context, StepResult, Worker, WorkerState};
use dynkv_storage::KeyRef;
use dynkv_vclock::Object;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::{Coordinator, now_micros};

/// Settings of the reaper (`storage.tombstone_grace`,
/// `storage.reap_interval`, `storage.reap_settle`).
#[derive(Clone, Debug)]
pub struct ReaperConfig {
    /// Pause between passes.
    pub interval: Duration,
    /// Age (from the newest tombstone's write time) before a key is
    /// considered.
    pub grace: Duration,
    /// Least time between the two confirmations of a key.
    pub settle: Duration,
    /// Keys per check and reap message.
    pub batch: usize,
    /// Deadline of one check or reap call.
    pub timeout: Duration,
    /// Most confirmed keys remembered between passes; past it, keys are
    /// confirmed again in a later pass.
    pub max_pending: usize,
}

impl Default for ReaperConfig {
    fn default() -> Self {
        ReaperConfig {
            interval: Duration::from_secs(30),
            grace: Duration::from_secs(600),
            settle: Duration::from_secs(60),
            batch: 512,
            timeout: Duration::from_secs(5),
            max_pending: 1_000_000,
        }
    }
}

/// Why a tombstone past its grace was not reaped (the `reason` label of
/// `dynkv_reap_skipped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A primary did not answer the check.
    PrimaryDown,
    /// Another member did not answer (it may hold a hint).
    MemberDown,
    /// Some node keeps a hint for the key.
    Hinted,
    /// A primary holds something else than the driver's tombstone (or
    /// nothing), or another member stores another version.
    Differs,
    /// Confirmed once; waiting for the second confirmation.
    Settling,
    /// The newest tombstone is younger than the grace.
    Young,
}

impl Skip {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Skip::PrimaryDown => "primary_down",
            Skip::MemberDown => "member_down",
            Skip::Hinted => "hinted",
            Skip::Differs => "differs",
            Skip::Settling => "settling",
            Skip::Young => "young",
        }
    }
}

/// One member's answer about one key, as [`decide`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct MemberAnswer {
    /// The member is a primary of the key.
    pub primary: bool,
    /// What it answered (`None`: no answer).
    pub status: Option<ReapStatus>,
}

/// The write time of the newest tombstone of an all-tombstone object (0
/// when it has no sibling at all).
pub fn deleted_at(object: &Object) -> u64 {
    object
        .values()
        .iter()
        .map(|c| c.modified_micros)
        .max()
        .unwrap_or(0)
}

/// Whether a tombstone may be reaped, from the driver's digest of it, the
/// write time of its newest tombstone, the time now and every member's
/// answer (the driver's own included). Pure.
pub fn decide(
    digest: u64,
    deleted_at_micros: u64,
    now_micros: u64,
    grace: Duration,
    answers: &[MemberAnswer],
) -> Result<(), Skip> {
    let grace = grace.as_micros().min(u64::MAX as u128) as u64;
    if now_micros.saturating_sub(deleted_at_micros) < grace || deleted_at_micros > now_micros {
        return Err(Skip::Young);
    }
    if answers.iter().any(|a| a.primary && a.status.is_none()) {
        return Err(Skip::PrimaryDown);
    }
    if answers.iter().any(|a| a.status.is_none()) {
        return Err(Skip::MemberDown);
    }
    let statuses = || {
        answers
            .iter()
            .filter_map(|a| a.status.map(|s| (a.primary, s)))
    };
    if statuses().any(|(_, s)| s.hinted) {
        return Err(Skip::Hinted);
    }
    let differs = statuses().any(|(primary, s)| match s.digest {
        Some(d) => d != digest,
        None => primary,
    });
    if differs {
        return Err(Skip::Differs);
    }
    if !answers.iter().any(|a| a.primary) {
        // No primary at all: nothing to compare with.
        return Err(Skip::PrimaryDown);
    }
    Ok(())
}

/// Whether a key confirmed now with `digest` had been confirmed with the
/// same digest at least `settle` ago (`first`: the earlier confirmation,
/// digest and time). Pure.
pub fn settled(first: Option<(u64, Instant)>, digest: u64, now: Instant, settle: Duration) -> bool {
    if settle.is_zero() {
        return true;
    }
    matches!(first, Some((d, t)) if d == digest && now.saturating_duration_since(t) >= settle)
}

/// What one pass did, for `/admin/reaper`.
#[derive(Clone, Debug, Default)]
pub struct PassReport {
    /// Unix ms at which it started.
    pub started_unix_ms: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// Partitions this node drove.
    pub partitions: u32,
    /// Objects read.
    pub scanned: u64,
    /// Of those, all-tombstone objects past the grace.
    pub candidates: u64,
    /// Keys sent to the replicas for removal.
    pub reaped_keys: u64,
    /// Copies removed, summed over the nodes that answered the reap.
    pub removed_copies: u64,
    /// Candidates not reaped, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Why the pass stopped early or did nothing, if it did.
    pub note: Option<String>,
}

/// The reaper's state as the status view shows it.
#[derive(Clone, Debug, Default)]
pub struct ReaperStatus {
    /// Passes run since start.
    pub passes: u64,
    /// Keys this node drove to removal since start.
    pub reaped_keys: u64,
    /// The last pass.
    pub last: Option<PassReport>,
    /// Confirmed keys waiting for their second confirmation.
    pub pending: usize,
}

/// Confirmed keys remembered between passes: digest and first confirmation.
#[derive(Default)]
pub struct ReaperMemory {
    confirmed: HashMap<Bytes, (u64, Instant)>,
}

impl ReaperMemory {
    /// Confirmed keys waiting for their second confirmation.
    pub fn pending(&self) -> usize {
        self.confirmed.len()
    }
}

/// The reaper worker (`reaper` in `/admin/workers`): a [`pass`] every
/// [`ReaperConfig::interval`], remembering confirmed keys between passes;
/// its status also feeds `/admin/reaper`.
pub struct ReaperWorker {
    coord: Arc<Coordinator>,
    config: ReaperConfig,
    memory: ReaperMemory,
}

impl ReaperWorker {
    /// The worker that reaps this node's tombstones.
    pub fn new(coord: Arc<Coordinator>, config: ReaperConfig) -> ReaperWorker {
        ReaperWorker {
            coord,
            config,
            memory: ReaperMemory::default(),
        }
    }
}

impl Worker for ReaperWorker {
    fn name(&self) -> String {
        "reaper".into()
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        cx.busy_with("reaping pass");
        // A pass stopped half-way is harmless: every step is idempotent and
        // nothing is removed before it was confirmed twice.
        let report = tokio::select! {
            r = pass(&self.coord, &self.config, &mut self.memory) => r,
            _ = cx.stopped() => return Ok(WorkerState::Idle),
        };
        if report.reaped_keys > 0 {
            info!(
                reaped = report.reaped_keys,
                copies = report.removed_copies,
                candidates = report.candidates,
                skipped = ?report.skipped,
                "reaped tombstones"
            );
        }
        cx.count("reaped_keys", report.reaped_keys);
        cx.set("pending_confirmations", self.memory.pending() as u64);
        let mut st = self
            .coord
            .reaper_status
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        st.passes += 1;
        st.reaped_keys += report.reaped_keys;
        st.pending = self.memory.pending();
        st.last = Some(report);
        Ok(WorkerState::Idle)
    }
}

/// One pass over the partitions this node drives.
pub async fn pass(
    coord: &Arc<Coordinator>,
    config: &ReaperConfig,
    memory: &mut ReaperMemory,
) -> PassReport {
    let started = Instant::now();
    let mut report = PassReport {
        started_unix_ms: now_micros() / 1000,
        ..Default::default()
    };
    let mut next = HashMap::new();
    if !coord.replica().ring_settled() {
        report.note =
            Some("a membership change is under way or not yet cleaned up on every node".into());
        memory.confirmed.clear();
        return report;
    }
    let ring = coord.ring();
    let n = coord.effective_n();
    let scan_limit = config.batch.max(1) * 4;
    'partitions: for partition in 0..ring.partitions() {
        let primaries: Vec<NodeId> = ring
            .preference_list(partition, n)
            .into_iter()
            .cloned()
            .collect();
        if primaries.first() != Some(coord.node_id()) {
            continue;
        }
        report.partitions += 1;
        let mut after: Option<Vec<u8>> = None;
        let mut pending: Vec<(Bytes, Object)> = Vec::new();
        loop {
            let store = coord.store().clone();
            let from = after.clone();
            let scanned = tokio::task::spawn_blocking(move || {
                store.scan_partition(partition, from.as_deref(), scan_limit)
            })
            .await;
            let batch = match scanned {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    report.note = Some(format!("scan of partition {partition} failed: {e}"));
                    break 'partitions;
                }
                Err(e) => {
                    report.note = Some(format!("scan of partition {partition} failed: {e}"));
                    break 'partitions;
                }
            };
            let exhausted = batch.len() < scan_limit;
            after = batch.last().map(|(k, _)| k.clone());
            let cutoff = now_micros().saturating_sub(config.grace.as_micros() as u64);
            for (key, object) in batch {
                report.scanned += 1;
                if object.is_deleted() && deleted_at(&object) <= cutoff {
                    report.candidates += 1;
                    pending.push((Bytes::from(key), object));
                }
            }
            while pending.len() >= config.batch.max(1) || (exhausted && !pending.is_empty()) {
                let take = pending.len().min(config.batch.max(1));
                let chunk: Vec<(Bytes, Object)> = pending.drain(..take).collect();
                if !coord.replica().ring_settled() {
                    report.note = Some("a membership change is under way".into());
                    break 'partitions;
                }
                check_and_reap(
                    coord,
                    config,
                    &primaries,
                    chunk,
                    memory,
                    &mut next,
                    &mut report,
                )
                .await;
            }
            if exhausted {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    // Keys not confirmed again in this pass are forgotten.
    memory.confirmed = next;
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

/// Checks one batch with every member and reaps what may go.
async fn check_and_reap(
    coord: &Arc<Coordinator>,
    config: &ReaperConfig,
    primaries: &[NodeId],
    batch: Vec<(Bytes, Object)>,
    memory: &ReaperMemory,
    next: &mut HashMap<Bytes, (u64, Instant)>,
    report: &mut PassReport,
) {
    let members: Vec<NodeId> = coord.ring().members().to_vec();
    let check = ReapCheck {
        items: batch.iter().map(|(k, o)| (k.clone(), o.join())).collect(),
    };
    let expected = batch.len();
    let asks = members.iter().map(|m| {
        let req = check.clone();
        async move {
            match coord.ask(m, req, config.timeout).await {
                Ok(ReapStatuses(s)) if s.len() == expected => Some(s),
                Ok(_) => {
                    warn!(peer = %m, "a reap check answer has the wrong length");
                    None
                }
                Err(e) => {
                    debug!(peer = %m, error = %e, "reap check failed");
                    None
                }
            }
        }
    });
    let answers: Vec<Option<Vec<ReapStatus>>> = futures::future::join_all(asks).await;
    let now = Instant::now();
    let now_us = now_micros();
    let mut reap: Vec<(Bytes, u64)> = Vec::new();
    let mut also: Vec<NodeId> = Vec::new();
    for (i, (key, object)) in batch.iter().enumerate() {
        let digest = object.digest();
        let per_member: Vec<MemberAnswer> = members
            .iter()
            .zip(&answers)
            .map(|(m, a)| MemberAnswer {
                primary: primaries.contains(m),
                status: a.as_ref().map(|s| s[i]),
            })
            .collect();
        let skip = match decide(
            digest,
            deleted_at(object),
            now_us,
            config.grace,
            &per_member,
        ) {
            Ok(())
                if settled(
                    memory.confirmed.get(key).copied(),
                    digest,
                    now,
                    config.settle,
                ) =>
            {
                reap.push((key.clone(), digest));
                for (m, a) in members.iter().zip(&per_member) {
                    let holds = a.status.is_some_and(|s| s.digest == Some(digest));
                    if !a.primary && holds && !also.contains(m) {
                        also.push(m.clone());
                    }
                }
                continue;
            }
            Ok(()) => {
                let first = match memory.confirmed.get(key) {
                    Some(&(d, t)) if d == digest => t,
                    _ => now,
                };
                if next.len() < config.max_pending {
                    next.insert(key.clone(), (digest, first));
                }
                Skip::Settling
            }
            Err(skip) => skip,
        };
        *report.skipped.entry(skip.label()).or_default() += 1;
        coord
            .metrics()
            .reap_skipped
            .get_or_create(&crate::metrics::ReasonLabels {
                reason: skip.label(),
            })
            .inc();
    }
    if reap.is_empty() {
        return;
    }
    let targets: Vec<NodeId> = primaries.iter().cloned().chain(also).collect();
    let req = Reap { items: reap };
    let sends = targets.iter().map(|t| {
        let req = req.clone();
        async move { (t, coord.ask(t, req, config.timeout).await) }
    });
    for (t, r) in futures::future::join_all(sends).await {
        match r {
            Ok(Reaped { count }) => report.removed_copies += count,
            // The tombstone stays there; anti-entropy copies it back and a
            // later pass reaps it again.
            Err(e) => debug!(peer = %t, error = %e, "reap failed"),
        }
    }
    report.reaped_keys += req.items.len() as u64;
}

impl Coordinator {
    /// The reaper's status: passes, the last one, keys waiting.
    pub fn reaper_status(&self) -> ReaperStatus {
        self.reaper_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Raises the floor on the blocking pool (it fsyncs).
    async fn raise_floor_blocking(self: &Arc<Self>, counter: u64) -> Result<(), RemoteError> {
        if counter <= self.replica.floor() {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.replica.raise_floor(counter))
            .await
            .map_err(|e| RemoteError::Storage(e.to_string()))?
            .map_err(|e| {
                self.metrics.storage_errors.inc();
                RemoteError::Storage(e.to_string())
            })
    }
}

impl Handler<ReapCheck> for Coordinator {
    async fn handle(
        self: Arc<Self>,
        req: ReapCheck,
        _: CallContext,
    ) -> Result<ReapStatuses, RemoteError> {
        // First the floor: from now on no write of this node's actor is
        // numbered at or below a dot these tombstones carry.
        let top = req
            .items
            .iter()
            .map(|(_, clock)| clock.get(self.replica.actor()))
            .max()
            .unwrap_or(0);
        self.raise_floor_blocking(top).await?;
        let placed: Vec<(u32, u64, Bytes)> = req
            .items
            .into_iter()
            .map(|(key, _)| {
                let kr = self.replica.key_ref(&key);
                (kr.partition, kr.hash, key)
            })
            .collect();
        let store = self.replica.store.clone();
        let statuses = tokio::task::spawn_blocking(move || {
            let owners = store.hint_owners()?;
            placed
                .iter()
                .map(|(partition, hash, key)| {
                    let kr = KeyRef {
                        partition: *partition,
                        hash: *hash,
                        key,
                    };
                    let digest = store.get(&kr)?.map(|o| o.digest());
                    let mut hinted = false;
                    for o in &owners {
                        if store.has_hint(o, &kr)? {
                            hinted = true;
                            break;
                        }
                    }
                    Ok(ReapStatus { digest, hinted })
                })
                .collect::<dynkv_storage::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| RemoteError::Storage(e.to_string()))?
        .map_err(|e| {
            self.metrics.storage_errors.inc();
            RemoteError::Storage(e.to_string())
        })?;
        Ok(ReapStatuses(statuses))
    }
}

impl Handler<Reap> for Coordinator {
    async fn handle(self: Arc<Self>, req: Reap, _: CallContext) -> Result<Reaped, RemoteError> {
        let placed: Vec<(u32, u64, Bytes, u64)> = req
            .items
            .into_iter()
            .map(|(key, digest)| {
                let kr = self.replica.key_ref(&key);
                (kr.partition, kr.hash, key, digest)
            })
            .collect();
        // The floor first, over the objects that are still the ones checked.
        let store = self.replica.store.clone();
        let (actor, items) = (self.replica.actor.clone(), placed);
        let (items, top) = tokio::task::spawn_blocking(move || {
            let mut top = 0;
            for (partition, hash, key, digest) in &items {
                let kr = KeyRef {
                    partition: *partition,
                    hash: *hash,
                    key,
                };
                if let Some(o) = store.get(&kr)?
                    && o.digest() == *digest
                {
                    top = top.max(o.join().get(&actor));
                }
            }
            Ok::<_, dynkv_storage::StoreError>((items, top))
        })
        .await
        .map_err(|e| RemoteError::Storage(e.to_string()))?
        .map_err(|e| RemoteError::Storage(e.to_string()))?;
        self.raise_floor_blocking(top).await?;
        let this = self.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let floor = this.replica.floor();
            let mut removed = 0u64;
            for (partition, hash, key, digest) in &items {
                let kr = KeyRef {
                    partition: *partition,
                    hash: *hash,
                    key,
                };
                // Compare-and-delete: only the very tombstone checked, and
                // only if its dots of this actor are under the floor.
                let u = this.replica.store.update(&kr, |cur| match cur {
                    Some(o)
                        if o.digest() == *digest
                            && o.is_deleted()
                            && o.join().get(this.replica.actor()) <= floor =>
                    {
                        None
                    }
                    other => other,
                })?;
                if u.changed && u.object.is_none() {
                    removed += 1;
                }
            }
            Ok::<_, dynkv_storage::StoreError>(removed)
        })
        .await
        .map_err(|e| RemoteError::Storage(e.to_string()))?
        .map_err(|e| {
            self.metrics.storage_errors.inc();
            RemoteError::Storage(e.to_string())
        })?;
        self.metrics.tombstones_reaped.inc_by(removed);
        Ok(Reaped { count: removed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(digest: u64) -> Option<ReapStatus> {
        Some(ReapStatus {
            digest: Some(digest),
            hinted: false,
        })
    }

    fn primary(status: Option<ReapStatus>) -> MemberAnswer {
        MemberAnswer {
            primary: true,
            status,
        }
    }

    fn other(status: Option<ReapStatus>) -> MemberAnswer {
        MemberAnswer {
            primary: false,
            status,
        }
    }

    const NONE: Option<ReapStatus> = Some(ReapStatus {
        digest: None,
        hinted: false,
    });
    const GRACE: Duration = Duration::from_secs(600);
    const NOW: u64 = 10_000_000_000;
    const OLD: u64 = NOW - 601_000_000;

    #[test]
    fn every_primary_holding_the_same_tombstone_and_no_hint_is_reapable() {
        let a = [primary(ok(7)), primary(ok(7)), primary(ok(7)), other(NONE)];
        assert_eq!(decide(7, OLD, NOW, GRACE, &a), Ok(()));
        // A non-primary holding the identical tombstone does not block.
        let a = [primary(ok(7)), primary(ok(7)), other(ok(7))];
        assert_eq!(decide(7, OLD, NOW, GRACE, &a), Ok(()));
    }

    #[test]
    fn a_young_tombstone_waits_for_the_grace() {
        let a = [primary(ok(7)), primary(ok(7))];
        assert_eq!(
            decide(7, NOW - 599_000_000, NOW, GRACE, &a),
            Err(Skip::Young)
        );
        assert_eq!(decide(7, NOW - 600_000_000, NOW, GRACE, &a), Ok(()));
        // A tombstone from the future (a fast clock) is young.
        assert_eq!(
            decide(7, NOW + 1, NOW, Duration::ZERO, &a),
            Err(Skip::Young)
        );
    }

    #[test]
    fn a_silent_member_blocks_reaping() {
        let a = [primary(ok(7)), primary(None), other(NONE)];
        assert_eq!(decide(7, OLD, NOW, GRACE, &a), Err(Skip::PrimaryDown));
        let a = [primary(ok(7)), primary(ok(7)), other(None)];
        assert_eq!(decide(7, OLD, NOW, GRACE, &a), Err(Skip::MemberDown));
        // A primary down outranks a hint elsewhere.
        let hinted = Some(ReapStatus {
            digest: None,
            hinted: true,
        });
        let a = [primary(None), other(hinted)];
        assert_eq!(decide(7, OLD, NOW, GRACE, &a), Err(Skip::PrimaryDown));
    }

    #[test]
    fn a_hint_anywhere_blocks_reaping() {
        for who in [true, false] {
            let hinted = Some(ReapStatus {
                digest: if who { Some(7) } else { None },
                hinted: true,
            });
            let a = [
                primary(ok(7)),
                MemberAnswer {
                    primary: who,
                    status: hinted,
                },
                other(NONE),
            ];
            assert_eq!(decide(7, OLD, NOW, GRACE, &a), Err(Skip::Hinted));
        }
    }

    #[test]
    fn a_primary_without_the_identical_tombstone_blocks_reaping() {
        // Another version (the value, a newer write, another tombstone).
        let a = [primary(ok(7)), primary(ok(8))];
        assert_eq!(decide(7, OLD, NOW, GRACE, &a), Err(Skip::Differs));
        // Nothing at all: it may have missed the delete and the write.
        let a = [primary(ok(7)), primary(NONE)];
        assert_eq!(decide(7, OLD, NOW, GRACE, &a), Err(Skip::Differs));
        // Another member storing another version (a former owner).
        let a = [primary(ok(7)), primary(ok(7)), other(ok(9))];
        assert_eq!(decide(7, OLD, NOW, GRACE, &a), Err(Skip::Differs));
        // No primary answered at all (cannot happen for a driver, which
        // is one, but must not reap).
        assert_eq!(
            decide(7, OLD, NOW, GRACE, &[other(ok(7))]),
            Err(Skip::PrimaryDown)
        );
        assert_eq!(decide(7, OLD, NOW, GRACE, &[]), Err(Skip::PrimaryDown));
    }

    #[test]
    fn a_key_is_settled_after_two_confirmations_of_the_same_tombstone() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(60);
        assert!(
            !settled(None, 7, t0, settle),
            "one confirmation is not enough"
        );
        assert!(!settled(
            Some((7, t0)),
            7,
            t0 + Duration::from_secs(59),
            settle
        ));
        assert!(settled(Some((7, t0)), 7, t0 + settle, settle));
        assert!(
            !settled(Some((6, t0)), 7, t0 + settle * 2, settle),
            "the tombstone changed between the confirmations"
        );
        assert!(settled(None, 7, t0, Duration::ZERO), "no settle asked");
    }

    /// The whole protocol over a simulated network of three nodes (N=3:
    /// each is a primary of every key), each with its own RocksDB.
    mod protocol {
        use super::*;
        use crate::sim_nodes::{SimNodes as Nodes, dispatcher};
        use crate::{CoordinatorConfig, ReadOptions};
        use dynkv_rpc::messages::{Quorum, StoreHint, WriteRequest};
        use dynkv_vclock::{Content, DvvSet, VersionVector};

        impl Nodes {
            fn node(&self, i: usize) -> &Arc<Coordinator> {
                &self.nodes[i - 1]
            }

            /// The node that drives `key` (the first primary), 1-based.
            fn driver(&self, key: &str) -> usize {
                let p = self.nodes[0].placement(key.as_bytes());
                p.primaries[0].as_str()[1..].parse().unwrap()
            }

            async fn write(&self, i: usize, key: &str, content: Content) -> Object {
                self.write_after(i, key, content, VersionVector::new())
                    .await
            }

            async fn write_after(
                &self,
                i: usize,
                key: &str,
                content: Content,
                context: VersionVector,
            ) -> Object {
                let req = WriteRequest {
                    key: Bytes::from(key.to_string()),
                    content,
                    context,
                    w: Quorum::All,
                    sloppy: false,
                    timeout_ms: 2000,
                    idempotency_key: None,
                    n_val: None,
                    supersede: false,
                    datatype_op: None,
                };
                self.node(i).put(req).await.unwrap().object
            }

            async fn local(&self, i: usize, key: &str) -> Option<Object> {
                self.node(i).local_view(key.as_bytes()).await.unwrap().0
            }

            async fn read_all(&self, i: usize, key: &str) -> Vec<String> {
                let opts = ReadOptions {
                    r: Some(Quorum::All),
                    ..ReadOptions::default()
                };
                let o = self
                    .node(i)
                    .get(Bytes::from(key.to_string()), opts)
                    .await
                    .unwrap();
                let mut v: Vec<String> = o
                    .iter()
                    .flat_map(|o| o.live_values())
                    .map(|c| String::from_utf8(c.value.to_vec()).unwrap())
                    .collect();
                v.sort();
                v
            }

            fn crash(&self, i: usize) {
                self.net.crash(&format!("n{i}"));
                for c in &self.nodes {
                    c.health().record_failure(&NodeId::from(format!("n{i}")));
                }
            }

            fn restart(&self, i: usize) {
                self.net
                    .register(NodeId::from(format!("n{i}")), dispatcher(self.node(i)));
                for c in &self.nodes {
                    c.health().record_success(&NodeId::from(format!("n{i}")));
                }
            }
        }

        fn now_config() -> ReaperConfig {
            ReaperConfig {
                grace: Duration::ZERO,
                settle: Duration::ZERO,
                ..ReaperConfig::default()
            }
        }

        fn value(v: &str) -> Content {
            Content::value(v.to_string(), "text/plain", 0)
        }

        async fn reap_pass(
            nodes: &Nodes,
            key: &str,
            config: &ReaperConfig,
            memory: &mut ReaperMemory,
        ) -> PassReport {
            pass(nodes.node(nodes.driver(key)), config, memory).await
        }

        #[tokio::test]
        async fn a_tombstone_on_every_primary_is_reaped_and_later_writes_are_never_lost() {
            let nodes = Nodes::start(CoordinatorConfig::default());
            let key = "gone";
            let v1 = nodes.write(1, key, value("v1")).await;
            // A delete of v1, and concurrent blind deletes through the other
            // nodes: the tombstone carries a dot of each node's actor.
            nodes
                .write_after(1, key, Content::tombstone(0), v1.join())
                .await;
            for i in 2..=3 {
                nodes.write(i, key, Content::tombstone(0)).await;
            }
            let tomb = nodes.local(1, key).await.unwrap();
            assert!(tomb.is_deleted());
            for i in 1..=3 {
                assert_eq!(nodes.local(i, key).await.as_ref(), Some(&tomb));
                assert!(tomb.join().get(nodes.node(i).actor()) >= 1);
            }
            let report = reap_pass(&nodes, key, &now_config(), &mut ReaperMemory::default()).await;
            assert_eq!(report.reaped_keys, 1, "{report:?}");
            assert_eq!(report.removed_copies, 3, "{report:?}");
            for i in 1..=3 {
                assert_eq!(nodes.local(i, key).await, None, "n{i} still holds the key");
                let floor = nodes.node(i).floor();
                assert!(
                    floor >= tomb.join().get(nodes.node(i).actor()),
                    "n{i} floor {floor}"
                );
                assert_eq!(nodes.node(i).metrics().tombstones_reaped.get(), 1);
            }
            // n1 missed the reap: anti-entropy brings the tombstone back
            // there. Writes through n2 and n3, which hold nothing, must be
            // numbered above the tombstone's dots, or n1 drops them.
            nodes
                .node(1)
                .replicate_local(Bytes::from_static(b"gone"), tomb.clone())
                .await
                .unwrap();
            let w2 = nodes.write(2, key, value("after-2")).await;
            let w3 = nodes.write(3, key, value("after-3")).await;
            for (i, w) in [(2, &w2), (3, &w3)] {
                let a = nodes.node(i).actor();
                assert!(
                    w.join().get(a) > tomb.join().get(a),
                    "n{i} reused a dot of the tombstone"
                );
            }
            for i in 1..=3 {
                assert_eq!(nodes.read_all(i, key).await, vec!["after-2", "after-3"]);
            }
            // The tombstone's sibling left on n1 is no value.
            let on1 = nodes.local(1, key).await.unwrap();
            assert_eq!(on1.live_values().len(), 2);
        }

        #[tokio::test]
        async fn a_primary_down_blocks_reaping_until_it_holds_the_tombstone() {
            let nodes = Nodes::start(CoordinatorConfig::default());
            let key = (0..100)
                .map(|i| format!("k{i}"))
                .find(|k| nodes.driver(k) == 1)
                .unwrap();
            nodes.write(1, &key, value("old")).await;
            nodes.crash(3);
            // The delete reaches n1 and n2 only.
            let req = WriteRequest {
                key: Bytes::from(key.clone()),
                content: Content::tombstone(0),
                context: nodes.local(1, &key).await.unwrap().join(),
                w: Quorum::Count(2),
                sloppy: false,
                timeout_ms: 1000,
                idempotency_key: None,
                n_val: None,
                supersede: false,
                datatype_op: None,
            };
            nodes.node(1).put(req).await.unwrap();
            let config = now_config();
            let mut memory = ReaperMemory::default();
            let r = reap_pass(&nodes, &key, &config, &mut memory).await;
            assert_eq!(r.reaped_keys, 0);
            assert_eq!(r.skipped.get("primary_down"), Some(&1), "{r:?}");
            assert!(nodes.local(1, &key).await.is_some());
            // Back, still holding the value: it differs.
            nodes.restart(3);
            let r = reap_pass(&nodes, &key, &config, &mut memory).await;
            assert_eq!(r.skipped.get("differs"), Some(&1), "{r:?}");
            assert_eq!(
                nodes.read_all(3, &key).await,
                Vec::<String>::new(),
                "read repair"
            );
            // Read repair gives n3 the tombstone (in the background: the
            // read answers first).
            let held_by_n1 = nodes.local(1, &key).await;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while nodes.local(3, &key).await != held_by_n1 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "n3 was never repaired"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Now it goes.
            let r = reap_pass(&nodes, &key, &config, &mut memory).await;
            assert_eq!(r.reaped_keys, 1, "{r:?}");
            for i in 1..=3 {
                assert_eq!(nodes.local(i, &key).await, None);
            }
            assert_eq!(nodes.read_all(2, &key).await, Vec::<String>::new());
            let skipped = |reason| {
                nodes
                    .node(1)
                    .metrics()
                    .reap_skipped
                    .get_or_create(&crate::metrics::ReasonLabels { reason })
                    .get()
            };
            assert_eq!((skipped("primary_down"), skipped("differs")), (1, 1));
        }

        #[tokio::test]
        async fn a_hint_anywhere_blocks_reaping() {
            let nodes = Nodes::start(CoordinatorConfig::default());
            let key = "hinted";
            nodes.write(1, key, Content::tombstone(0)).await;
            let d = nodes.driver(key);
            let holder = if d == 3 { 2 } else { 3 };
            // A stale value kept as a hint on a node for another.
            let stale = DvvSet::update(
                &VersionVector::new(),
                &Object::new(),
                "old#x",
                value("stale"),
            );
            let owner = NodeId::from(format!("n{d}"));
            nodes
                .node(d)
                .call_peer(
                    &NodeId::from(format!("n{holder}")),
                    &StoreHint {
                        owner,
                        key: Bytes::from_static(b"hinted"),
                        object: stale,
                    },
                    Duration::from_secs(1),
                )
                .await
                .unwrap();
            let mut memory = ReaperMemory::default();
            let r = reap_pass(&nodes, key, &now_config(), &mut memory).await;
            assert_eq!(r.skipped.get("hinted"), Some(&1), "{r:?}");
            assert!(nodes.local(d, key).await.is_some());
            // Handoff delivers it (merged into the tombstone, the value
            // survives as a sibling) and drops the hint: then the key holds
            // a value and is no longer a candidate.
            let h = crate::handoff::HandoffConfig::default();
            crate::handoff::pass(nodes.node(holder), &h, &mut Default::default())
                .await
                .unwrap();
            let r = reap_pass(&nodes, key, &now_config(), &mut memory).await;
            assert_eq!((r.candidates, r.reaped_keys), (0, 0), "{r:?}");
        }

        #[tokio::test]
        async fn reaping_waits_for_a_second_confirmation_after_the_settle() {
            let nodes = Nodes::start(CoordinatorConfig::default());
            let key = "settle";
            nodes.write(2, key, Content::tombstone(0)).await;
            let config = ReaperConfig {
                settle: Duration::from_millis(150),
                ..now_config()
            };
            let mut memory = ReaperMemory::default();
            let r = reap_pass(&nodes, key, &config, &mut memory).await;
            assert_eq!((r.reaped_keys, r.skipped.get("settling")), (0, Some(&1)));
            assert_eq!(memory.pending(), 1);
            let r = reap_pass(&nodes, key, &config, &mut memory).await;
            assert_eq!(r.reaped_keys, 0, "too early");
            tokio::time::sleep(Duration::from_millis(200)).await;
            // The tombstone changes (a new delete): confirmed afresh.
            nodes.write(3, key, Content::tombstone(0)).await;
            let r = reap_pass(&nodes, key, &config, &mut memory).await;
            assert_eq!(r.reaped_keys, 0, "a changed tombstone is confirmed again");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = reap_pass(&nodes, key, &config, &mut memory).await;
            assert_eq!(r.reaped_keys, 1, "{r:?}");
            assert_eq!(memory.pending(), 0);
            // A grace not yet passed: not even a candidate.
            nodes.write(1, "young", Content::tombstone(0)).await;
            let young = ReaperConfig {
                grace: Duration::from_secs(60),
                ..now_config()
            };
            let r = reap_pass(&nodes, "young", &young, &mut memory).await;
            assert_eq!(r.candidates, 0);
        }
    }

    #[test]
    fn deleted_at_is_the_newest_tombstone() {
        use dynkv_vclock::{Content, DvvSet, VersionVector};
        let a = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1#a",
            Content::tombstone(5),
        );
        let b = DvvSet::update(&VersionVector::new(), &a, "n2#b", Content::tombstone(9));
        assert!(b.is_deleted());
        assert_eq!(deleted_at(&b), 9);
        assert_eq!(deleted_at(&Object::new()), 0);
    }
}
