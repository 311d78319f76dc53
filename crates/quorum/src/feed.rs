//! Watching a key and following the change feed.
//!
//! ## Watching one key
//! [`Coordinator::watch`] answers as soon as the key holds a version the
//! watcher's context has not seen (a dot `(a, n)` with `n` above the
//! context's counter for `a`), or says the wait ended. It reads the key
//! as any read does; when nothing is new it sends [`WatchKey`] to every
//! primary of the key (this node in place when it is one) and waits for the
//! first that holds something new. A primary waits on its [`KeyNotifier`],
//! which the store tells of every change of a key ([`ChangeHook`]): a
//! coordinated write, a replicated one, a hint handed off, a read repair or
//! an anti-entropy repair. Nobody polls a store. The primary answers with
//! its copy, which the watching node merges with a fresh read, so the
//! answer always holds the new version even when the quorum read raced
//! ahead of replication. A primary that does not answer (down, partitioned)
//! is simply not waited for; when none can be asked the watch re-reads
//! after a pause ([`RETRY_PAUSE`]) until its time is up.
//!
//! Long polls hold an internode slot while they wait; the watching node
//! caps its waits ([`FeedConfig::max_waiting`], shared with feed requests,
//! [`FeedHub::try_wait`]) and they take no client admission permit.
//!
//! ## The change feed
//! Every node logs, in the object's write batch, each version new to it
//! (`dynkv_storage::changelog`), keyed by `(ts, h)`: the time the write was
//! taken (`modified_micros`, set once by the node the client wrote to) and
//! a hash of key and dot. The key of an entry is the same on every node, so
//! the logs of all nodes are subsets of one totally ordered sequence and a
//! cursor is a position `(ts, h)` in it: "every entry at or before it was
//! delivered". [`Coordinator::feed_read`] asks **every member** for its
//! entries after the cursor ([`FeedRead`]), up to a bound `settle` behind
//! now, and delivers the sorted union: an entry several nodes hold is one
//! entry (deduplication by dot is equality of keys).
//!
//! Why nothing is missed, and when the feed waits instead:
//! - An acknowledged write was stored, and its version logged, by at least
//!   W distinct nodes (the coordinator, replicas, or fallbacks holding it
//!   as a hint: hints are logged too) before it was acknowledged, hence
//!   within its request deadline of being stamped. Stamps come from each
//!   node's hybrid logical clock ([`crate::hlc`]), which stays within about
//!   a ping interval of the fastest clock it hears from.
//! - Each node reads its log only up to its **horizon**
//!   ([`FeedHub::horizon`]): `settle` ([`FeedConfig::settle`], at least
//!   the write timeout plus a ping interval) behind its clock, and never
//!   advancing faster than real time even when the clock jumps. The feed
//!   goes up to the smallest horizon of the nodes that answered. A stamp
//!   the feed passes was therefore taken at least about `settle` of real
//!   time earlier, by a node whose clock lagged the answering ones by at
//!   most a ping interval: its write has been logged by all of its W
//!   loggers, or was never acknowledged.
//! - The feed advances only when at most `tolerate` members
//!   ([`FeedConfig::tolerate_silent`], by default `quorum(N) - 1`) are
//!   silent or have trimmed past the cursor: any W ≥ tolerate + 1 of the
//!   loggers include one it heard. Otherwise it answers 503 (nodes
//!   silent) and the consumer retries, on this node or another.
//! - A node's log lacks what is older than its floor (trimmed, or before
//!   its data directory existed). When more than `tolerate` nodes have a
//!   floor past the cursor, the cursor has expired: 410 with the oldest
//!   cursor that can be served, never a silent gap.
//! - Per key, versions come in `ts` order, which is causal order when the
//!   nodes' clocks agree to within the time between two writes of a key.
//!
//! Writes with `w=1` are covered only when `tolerate` is 0.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dynkv_ring::NodeId;
use dynkv_rpc::messages::{FeedChunk, FeedEntry, FeedRead, WatchKey, WatchReply};
use dynkv_rpc::{CallContext, Handler, RemoteError};
use dynkv_runtime::{Context, StepResult, Worker, WorkerState};
use dynkv_storage::{ChangeHook, KeyRef};
use dynkv_vclock::{DvvSet, Object, VersionVector};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::hlc::Hlc;
use crate::{Coordinator, QuorumError, ReadOptions};

pub use dynkv_storage::Position;

/// Number of notifier stripes: watches of keys sharing one are woken
/// together and re-check (cheap); bounded memory whatever the key count.
const NOTIFY_STRIPES: usize = 1024;

/// Pause before a watch re-reads when no primary could be asked.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Extra time given to a watch call beyond its wait, for the answer to
/// travel.
const WATCH_CALL_MARGIN: Duration = Duration::from_secs(2);

/// Entries a node reads from its log per [`FeedRead`], per entry asked.
const SCAN_BUDGET_FACTOR: usize = 20;

/// Settings of watches and the feed (the node's `[feed]` section).
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// The change log is written and `/feed` served.
    pub enabled: bool,
    /// How far behind now the feed reads: at least the longest write
    /// deadline, so every log an acknowledged write reached holds it.
    pub settle: Duration,
    /// How often a waiting feed request asks the logs again.
    pub poll_interval: Duration,
    /// Watches and feed requests waiting at once on this node; more are
    /// refused (503 `too_many_watches`).
    pub max_waiting: usize,
    /// A watch's or long poll's wait when the client names none.
    pub default_wait: Duration,
    /// Longest wait a client may ask for.
    pub max_wait: Duration,
    /// Most events per feed answer.
    pub batch: usize,
    /// Members that may be silent (or trimmed past the cursor) while the
    /// feed still advances; `None`: `quorum(N) - 1`.
    pub tolerate_silent: Option<usize>,
    /// Entries older than this are trimmed.
    pub retention: Duration,
    /// Bytes the log may hold; the oldest entries past it are trimmed.
    pub retention_bytes: u64,
    /// How often the log is trimmed.
    pub trim_interval: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            enabled: true,
            settle: Duration::from_secs(5),
            poll_interval: Duration::from_millis(200),
            max_waiting: 256,
            default_wait: Duration::from_secs(30),
            max_wait: Duration::from_secs(300),
            batch: 1000,
            tolerate_silent: None,
            retention: Duration::from_secs(7 * 24 * 3600),
            retention_bytes: 1 << 30,
            trim_interval: Duration::from_secs(10),
        }
    }
}

/// Metrics of watches and the feed.
#[derive(Default)]
pub struct FeedMetrics {
    /// Watches waiting now.
    pub watches_active: Gauge,
    /// Feed requests and streams open now.
    pub feeds_active: Gauge,
    /// Waits refused at the cap.
    pub waits_refused: Counter,
    /// Events a feed answered (each once per answer).
    pub events_served: Counter,
    /// Bytes in this node's change log.
    pub log_bytes: Gauge,
    /// Change log entries trimmed.
    pub trimmed: Counter,
}

impl FeedMetrics {
    /// Registers every family.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "dynkv_watches_active",
            "Watches of a key waiting on this node",
            self.watches_active.clone(),
        );
        r.register(
            "dynkv_feeds_active",
            "Change feed requests and streams open on this node",
            self.feeds_active.clone(),
        );
        r.register(
            "dynkv_waits_refused",
            "Watches and feed requests refused at feed.max_waiting",
            self.waits_refused.clone(),
        );
        r.register(
            "dynkv_feed_events_served",
            "Change feed events answered to clients",
            self.events_served.clone(),
        );
        r.register(
            "dynkv_feed_log_bytes",
            "Bytes held by this node's change log",
            self.log_bytes.clone(),
        );
        r.register(
            "dynkv_feed_trimmed_entries",
            "Change log entries trimmed by retention",
            self.trimmed.clone(),
        );
    }
}

/// Wakes the watches of a key when the store changes it.
pub struct KeyNotifier {
    stripes: Box<[Notify]>,
}

impl Default for KeyNotifier {
    fn default() -> Self {
        KeyNotifier {
            stripes: (0..NOTIFY_STRIPES).map(|_| Notify::new()).collect(),
        }
    }
}

impl KeyNotifier {
    /// The notifier a watch of the key with this hash waits on.
    pub fn stripe(&self, hash: u64) -> &Notify {
        &self.stripes[(hash as usize) % NOTIFY_STRIPES]
    }
}

impl ChangeHook for KeyNotifier {
    fn changed(&self, key: &KeyRef<'_>) {
        self.stripe(key.hash).notify_waiters();
    }
}

/// What a wait holds: one of [`FeedConfig::max_waiting`], and its gauge.
pub struct WaitSlot {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Drop for WaitSlot {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Watches and the feed on one node: settings, notifier, cap, metrics,
/// and the clocks.
pub struct FeedHub {
    config: FeedConfig,
    notifier: Arc<KeyNotifier>,
    slots: Arc<Semaphore>,
    metrics: Arc<FeedMetrics>,
    /// The node's hybrid logical clock (what writes are stamped with).
    clock: Hlc,
    /// The feed clock's last reading and when it was taken.
    horizon: std::sync::Mutex<Option<(u64, std::time::Instant)>>,
}

impl FeedHub {
    /// A hub with `config`.
    pub fn new(config: FeedConfig) -> Self {
        FeedHub {
            slots: Arc::new(Semaphore::new(config.max_waiting.max(1))),
            config,
            notifier: Arc::default(),
            metrics: Arc::default(),
            clock: Hlc::default(),
            horizon: std::sync::Mutex::new(None),
        }
    }

    /// The node's hybrid logical clock.
    pub fn clock(&self) -> &Hlc {
        &self.clock
    }

    /// How far this node's log may be read ("the feed clock", µs): `settle`
    /// behind the hybrid clock, and never advancing faster than real time,
    /// however far the hybrid clock jumps. See the module documentation.
    pub fn horizon(&self) -> u64 {
        let target = self
            .clock
            .peek()
            .saturating_sub(self.config.settle.as_micros() as u64);
        let now = std::time::Instant::now();
        let mut h = self.horizon.lock().unwrap_or_else(|p| p.into_inner());
        let next = match *h {
            None => target,
            Some((last, at)) => {
                let elapsed = now.saturating_duration_since(at).as_micros() as u64;
                target.min(last.saturating_add(elapsed)).max(last)
            }
        };
        *h = Some((next, now));
        next
    }

    /// The settings.
    pub fn config(&self) -> &FeedConfig {
        &self.config
    }

    /// The notifier the store tells of changes.
    pub fn notifier(&self) -> &Arc<KeyNotifier> {
        &self.notifier
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<FeedMetrics> {
        &self.metrics
    }

    /// A slot for a watch (`feed: false`) or a feed request, or `None` at
    /// the cap (counted).
    pub fn try_wait(&self, feed: bool) -> Option<WaitSlot> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let gauge = if feed {
                    self.metrics.feeds_active.clone()
                } else {
                    self.metrics.watches_active.clone()
                };
                gauge.inc();
                Some(WaitSlot {
                    _permit: permit,
                    gauge,
                })
            }
            Err(_) => {
                self.metrics.waits_refused.inc();
                None
            }
        }
    }

    /// Members that may be silent while the feed advances, for `n` replicas.
    pub fn tolerate(&self, n: usize) -> usize {
        self.config.tolerate_silent.unwrap_or(n / 2)
    }
}

/// True when `object` holds a version `seen` does not cover.
pub fn has_unseen(object: Option<&Object>, seen: &VersionVector) -> bool {
    object.is_some_and(|o| !seen.descends(&o.join()))
}

/// One feed answer.
#[derive(Clone, Debug)]
pub struct FeedBatch {
    /// The events, in log order, each once.
    pub entries: Vec<FeedEntry>,
    /// Where the next request starts.
    pub cursor: Position,
}

/// Why a feed request could not be served.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FeedError {
    /// The cursor is older than what enough logs keep (410).
    #[error(
        "the cursor is older than the change logs keep (retention); resume from the oldest valid cursor, knowing that changes in between are not in the feed"
    )]
    Expired {
        /// The oldest position that can be served.
        oldest: Position,
    },
    /// Too many members are silent to know that nothing would be missed (503).
    #[error(
        "{silent} of {members} nodes did not answer and at most {tolerate} may be silent for the feed to miss nothing; retry shortly ({detail})"
    )]
    Unavailable {
        /// Members that did not answer or cannot serve the cursor.
        silent: usize,
        /// Members asked.
        members: usize,
        /// How many may be.
        tolerate: usize,
        /// Per node, why.
        detail: String,
    },
    /// This node does not serve the feed (`feed.enabled = false`).
    #[error("the change feed is off on this node (feed.enabled = false)")]
    Disabled,
}

fn pos(p: (u64, u64)) -> Position {
    Position { ts: p.0, h: p.1 }
}

fn wire(p: Position) -> (u64, u64) {
    (p.ts, p.h)
}

impl Coordinator {
    /// Watches and the feed on this node.
    pub fn feed(&self) -> &Arc<FeedHub> {
        &self.feed
    }

    /// Waits until `key` holds a version `seen` has not (then answers the
    /// read, merged with the copy of the primary that had it), or `wait`
    /// passes (`Ok(None)`). See the module documentation.
    pub async fn watch(
        self: &Arc<Self>,
        key: Bytes,
        seen: VersionVector,
        opts: ReadOptions,
        wait: Duration,
    ) -> Result<Option<Option<Object>>, QuorumError> {
        let deadline = Instant::now() + wait;
        loop {
            let read = self.get(key.clone(), opts.clone()).await?;
            if has_unseen(read.as_ref(), &seen) {
                return Ok(Some(read));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let started = Instant::now();
            if let Some(copy) = self.wait_at_primaries(&key, &seen, left).await {
                let merged = match read {
                    Some(r) => DvvSet::sync(&r, &copy),
                    None => copy,
                };
                return Ok(Some(Some(merged)));
            }
            // Every primary answered at once without news (or could not be
            // asked): pause before reading again rather than spin.
            if started.elapsed() < RETRY_PAUSE {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(RETRY_PAUSE)).await;
            }
        }
    }

    /// Asks every primary of `key` to wait for a version `seen` lacks; the
    /// first copy that has one, or `None` once all answered without.
    async fn wait_at_primaries(
        self: &Arc<Self>,
        key: &Bytes,
        seen: &VersionVector,
        wait: Duration,
    ) -> Option<Object> {
        let placement = self.placement(key);
        let req = WatchKey {
            key: key.clone(),
            context: seen.clone(),
            wait_ms: wait.as_millis() as u64,
        };
        let mut calls = FuturesUnordered::new();
        for p in placement.primaries {
            let req = req.clone();
            let me = self.clone();
            if p == self.me {
                calls.push(Box::pin(async move {
                    let ctx = CallContext {
                        peer: me.me.clone(),
                        version: dynkv_rpc::PROTOCOL_VERSION,
                    };
                    Handler::<WatchKey>::handle(me, req, ctx).await.ok()
                })
                    as futures::future::BoxFuture<'static, Option<WatchReply>>);
            } else if self.health.is_up(&p) {
                // Not through the breaker: a long poll must not be the probe
                // a half-open breaker waits on for its verdict.
                calls.push(Box::pin(async move {
                    me.transport
                        .call(&p, &req, wait + WATCH_CALL_MARGIN)
                        .await
                        .ok()
                }));
            }
        }
        while let Some(answer) = calls.next().await {
            if let Some(WatchReply { object: Some(o) }) = answer {
                return Some(o);
            }
        }
        None
    }

    /// One feed answer: the entries after `after` (`None`: the oldest
    /// position every log can serve) under `prefix`, at most `limit`. See
    /// the module documentation for why nothing is missed or repeated.
    pub async fn feed_read(
        self: &Arc<Self>,
        after: Option<Position>,
        prefix: Bytes,
        limit: usize,
    ) -> Result<FeedBatch, FeedError> {
        if !self.feed.config.enabled {
            return Err(FeedError::Disabled);
        }
        match after {
            Some(a) => self.feed_read_from(a, prefix, limit).await,
            None => match self
                .feed_read_from(Position::default(), prefix.clone(), limit)
                .await
            {
                Err(FeedError::Expired { oldest }) => {
                    self.feed_read_from(oldest, prefix, limit).await
                }
                other => other,
            },
        }
    }

    async fn feed_read_from(
        self: &Arc<Self>,
        after: Position,
        prefix: Bytes,
        limit: usize,
    ) -> Result<FeedBatch, FeedError> {
        let limit = limit.clamp(1, self.feed.config.batch.max(1));
        let upto = Position::end_of(self.feed.horizon()).max(after);
        let members: Vec<NodeId> = self.ring().members().to_vec();
        let req = FeedRead {
            after: wire(after),
            upto: wire(upto),
            prefix,
            limit: limit as u32,
        };
        let timeout = self.config.default_timeout;
        let asks = members.iter().map(|m| {
            let req = req.clone();
            let me = self.clone();
            let m = m.clone();
            async move {
                let r = if me.me == m || me.health.is_up(&m) {
                    me.ask(&m, req, timeout).await.map_err(|e| e.to_string())
                } else {
                    Err("down (failure detector)".to_string())
                };
                (m, r)
            }
        });
        let answers = futures::future::join_all(asks).await;
        let tolerate = self.feed.tolerate(self.config.n_val).min(members.len() - 1);
        let mut chunks: Vec<(NodeId, FeedChunk)> = Vec::new();
        let mut silent: Vec<String> = Vec::new();
        for (m, r) in answers {
            match r {
                Ok(c) => chunks.push((m, c)),
                Err(e) => silent.push(format!("{m}: {e}")),
            }
        }
        // A log whose floor is past the cursor may lack entries after it.
        let serves = |c: &FeedChunk| c.floor <= after.ts.saturating_add(1);
        let stale: Vec<&(NodeId, FeedChunk)> = chunks.iter().filter(|(_, c)| !serves(c)).collect();
        if stale.len() > tolerate {
            let mut floors: Vec<u64> = chunks.iter().map(|(_, c)| c.floor).collect();
            floors.sort_unstable_by(|a, b| b.cmp(a));
            let floor = floors[tolerate];
            return Err(FeedError::Expired {
                oldest: Position::end_of(floor.saturating_sub(1)),
            });
        }
        if silent.len() + stale.len() > tolerate {
            for (m, c) in &stale {
                silent.push(format!(
                    "{m}: its log starts after the cursor ({} µs)",
                    c.floor
                ));
            }
            return Err(FeedError::Unavailable {
                silent: silent.len(),
                members: members.len(),
                tolerate,
                detail: silent.join("; "),
            });
        }
        let reached = chunks
            .iter()
            .filter(|(_, c)| serves(c))
            .map(|(_, c)| pos(c.reached))
            .min()
            .unwrap_or(after)
            .max(after);
        let mut merged: BTreeMap<(Position, Bytes), FeedEntry> = BTreeMap::new();
        for (_, c) in chunks {
            for e in c.entries {
                let p = pos(e.position);
                if p > after && p <= reached {
                    merged.entry((p, e.key.clone())).or_insert(e);
                }
            }
        }
        let mut cursor = reached;
        let mut entries: Vec<FeedEntry> = Vec::with_capacity(merged.len().min(limit));
        for ((p, _), e) in merged {
            if entries.len() >= limit {
                break;
            }
            cursor = p;
            entries.push(e);
        }
        if entries.len() < limit {
            cursor = reached;
        }
        self.feed.metrics.events_served.inc_by(entries.len() as u64);
        Ok(FeedBatch { entries, cursor })
    }
}

impl Handler<WatchKey> for Coordinator {
    /// Waits on this node's notifier until its copy holds a version the
    /// context has not seen, or the wait (capped) passes.
    async fn handle(
        self: Arc<Self>,
        req: WatchKey,
        _: CallContext,
    ) -> Result<WatchReply, RemoteError> {
        let wait = Duration::from_millis(req.wait_ms).min(self.feed.config.max_wait);
        let deadline = Instant::now() + wait;
        let hash = self.replica.key_ref(&req.key).hash;
        let notifier = self.feed.notifier.clone();
        loop {
            let mut notified = pin!(notifier.stripe(hash).notified());
            // Registered before the read: a change between the read and the
            // wait still wakes it.
            notified.as_mut().enable();
            let local = self
                .replica
                .read(req.key.clone(), None)
                .await
                .map_err(RemoteError::from)?;
            if has_unseen(local.as_ref(), &req.context) {
                return Ok(WatchReply { object: local });
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(WatchReply { object: None }),
            }
        }
    }
}

impl Handler<FeedRead> for Coordinator {
    /// One range of this node's change log.
    async fn handle(
        self: Arc<Self>,
        req: FeedRead,
        _: CallContext,
    ) -> Result<FeedChunk, RemoteError> {
        let limit = (req.limit as usize).clamp(1, self.feed.config.batch.max(1));
        let budget = limit.saturating_mul(SCAN_BUDGET_FACTOR).max(10_000);
        // No further than this node's own horizon: a node whose clock is
        // ahead never lets the feed pass what the others still stamp.
        let own = Position::end_of(self.feed.horizon());
        let (after, upto, prefix) = (pos(req.after), pos(req.upto).min(own), req.prefix);
        let scan = self
            .replica
            .with_store(move |s| s.scan_changes(after, upto, &prefix, limit, budget))
            .await
            .map_err(RemoteError::from)?;
        Ok(FeedChunk {
            entries: scan
                .changes
                .into_iter()
                .map(|c| FeedEntry {
                    position: wire(c.position),
                    key: c.key,
                    actor: c.actor,
                    counter: c.counter,
                    context: c.context,
                    content: c.content,
                })
                .collect(),
            reached: wire(scan.reached),
            floor: scan.floor,
        })
    }
}

/// Trims this node's change log to its retention (age and bytes) every
/// `feed.trim_interval`; listed in `/admin/workers` as `feed_trim`.
pub struct ChangeLogTrimmer {
    coord: Arc<Coordinator>,
}

impl ChangeLogTrimmer {
    /// The trimmer of `coord`'s store.
    pub fn new(coord: Arc<Coordinator>) -> Self {
        ChangeLogTrimmer { coord }
    }
}

impl Worker for ChangeLogTrimmer {
    fn name(&self) -> String {
        "feed_trim".into()
    }

    fn interval(&self) -> Duration {
        self.coord.feed.config.trim_interval
    }

    async fn work(&mut self, cx: &Context) -> StepResult {
        let hub = self.coord.feed.clone();
        let (age, bytes) = (hub.config.retention, hub.config.retention_bytes);
        let store = self.coord.store().clone();
        let trimmed = tokio::task::spawn_blocking(move || store.trim_changes(age, bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let (log_bytes, _) = self.coord.store().change_log_stats();
        hub.metrics.log_bytes.set(log_bytes as i64);
        hub.metrics.trimmed.inc_by(trimmed.entries);
        cx.count("trimmed", trimmed.entries);
        cx.set("log_bytes", log_bytes);
        cx.set("floor_unix_ms", trimmed.floor / 1000);
        Ok(WorkerState::Idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynkv_vclock::Content;

    #[test]
    fn unseen_versions_are_dots_above_the_context() {
        let a = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            Content::value("a", "t", 1),
        );
        assert!(has_unseen(Some(&a), &VersionVector::new()));
        assert!(!has_unseen(Some(&a), &a.join()));
        assert!(!has_unseen(None, &VersionVector::new()));
        let b = DvvSet::update(&a.join(), &a, "n2", Content::tombstone(2));
        assert!(has_unseen(Some(&b), &a.join()));
        // A context ahead of the copy (another replica's newer state) is
        // not news.
        assert!(!has_unseen(Some(&a), &b.join()));
    }

    #[tokio::test]
    async fn the_wait_cap_refuses_past_max_waiting_and_frees_on_drop() {
        let hub = FeedHub::new(FeedConfig {
            max_waiting: 2,
            ..FeedConfig::default()
        });
        let a = hub.try_wait(false).unwrap();
        let _b = hub.try_wait(true).unwrap();
        assert!(hub.try_wait(false).is_none());
        assert_eq!(hub.metrics.waits_refused.get(), 1);
        assert_eq!(hub.metrics.watches_active.get(), 1);
        drop(a);
        assert_eq!(hub.metrics.watches_active.get(), 0);
        assert!(hub.try_wait(false).is_some());
        assert_eq!(hub.tolerate(3), 1);
        assert_eq!(hub.tolerate(5), 2);
    }

    #[tokio::test]
    async fn a_change_wakes_a_registered_waiter() {
        let n = KeyNotifier::default();
        let mut w = pin!(n.stripe(7).notified());
        w.as_mut().enable();
        n.changed(&KeyRef {
            partition: 0,
            hash: 7,
            key: b"k",
        });
        tokio::time::timeout(Duration::from_secs(1), w)
            .await
            .expect("woken");
    }
}
