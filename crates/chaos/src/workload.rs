//! The clients: concurrent, seeded, and logging everything.
//!
//! Each client loops over random operations on a small hot key set (where
//! concurrent writes and siblings happen) and a larger cold one (where
//! deletes can cover a key's whole history, so resurrections can be
//! checked), through a random node, at random R/W and `sloppy`:
//!
//! - read-modify-write: a GET, then a PUT or DELETE with the context it
//!   returned (the write replaces exactly what the read showed);
//! - a write with the context the client's own previous write of the key
//!   returned (as a client that remembers its last context does);
//! - blind PUTs and DELETEs (no context: concurrent with everything);
//! - plain reads.
//!
//! Every value written is unique (`c<client>-<seq>`), so the checker can
//! tell which write each final sibling came from. Nothing is retried: a
//! retry without an idempotency key is a new write, and the history should
//! show what the store did with the first one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{Op, OpKind, Outcome, Record, Recorder};

/// What the clients do.
#[derive(Clone, Debug)]
pub struct WorkloadConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Hot keys, `hot-0`...: most operations go there.
    pub hot_keys: usize,
    /// Cold keys, `cold-0`...
    pub cold_keys: usize,
    /// Fraction of operations on hot keys.
    pub hot_fraction: f64,
    /// Pause between a client's operations (keeps a 2-core machine from
    /// being saturated, which would turn every request into a timeout).
    pub think_ms: u64,
    /// `timeout_ms` sent with every request.
    pub timeout_ms: u64,
    /// Stop after this many operations in all (a bound for CI).
    pub max_ops: u64,
    /// Replicas per key, to choose `r`/`w` numbers in range.
    pub n_val: usize,
    /// Smallest W a write asks for: a smaller pick becomes `quorum` (2
    /// when nodes may lose their data; reads keep any R).
    pub min_w: usize,
    /// Each client starts a key *lifecycle* this often (0: never): a fresh
    /// key only it writes, a few writes each with the previous answer's
    /// context, then a read and a delete with the read's context. Such a
    /// delete covers every value the key ever had, so the key must stay
    /// deleted whatever the faults did: the resurrection check.
    pub lifecycle_every_ms: u64,
    /// With reaping on, every other lifecycle goes back to one of the
    /// client's lifecycle keys deleted at least this long ago (each key
    /// once; 0: never), so that keys are written again after their
    /// tombstone was reaped: blind half the time, else with the context
    /// of the client's last answer from before the delete. A run with
    /// reaping on sets it (when 0) to grace + settle + two passes.
    pub revisit_after_ms: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 6,
            hot_keys: 6,
            cold_keys: 120,
            hot_fraction: 0.6,
            think_ms: 10,
            timeout_ms: 2_000,
            max_ops: u64::MAX,
            n_val: 3,
            min_w: 1,
            lifecycle_every_ms: 3_000,
            revisit_after_ms: 0,
        }
    }
}

/// Shared by the clients of one run.
pub struct Workload {
    /// Settings.
    pub config: WorkloadConfig,
    /// Base URLs of the nodes, `urls[0]` is `n1`.
    pub urls: Vec<String>,
    /// Where operations go.
    pub recorder: Arc<Recorder>,
    /// When the run started (timestamps are relative to it).
    pub t0: Instant,
    /// Set to stop the clients.
    pub stop: AtomicBool,
    /// Operations started so far, all clients.
    pub started: AtomicU64,
    /// Seed of the run.
    pub seed: u64,
    http: reqwest::Client,
}

impl Workload {
    /// Clients for a cluster whose nodes answer at `urls`.
    pub fn new(
        config: WorkloadConfig,
        urls: Vec<String>,
        recorder: Arc<Recorder>,
        t0: Instant,
        seed: u64,
    ) -> Arc<Workload> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(config.timeout_ms + 1_500))
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        Arc::new(Workload {
            config,
            urls,
            recorder,
            t0,
            stop: AtomicBool::new(false),
            started: AtomicU64::new(0),
            seed,
            http,
        })
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    /// Runs client `id` until [`Workload::stop`] is set or the operation
    /// budget is spent.
    pub async fn client(self: Arc<Self>, id: u32) {
        let mut c = Client {
            w: self.clone(),
            id,
            seq: 0,
            rng: StdRng::seed_from_u64(
                self.seed
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                    .wrapping_add(u64::from(id) + 1),
            ),
            last: HashMap::new(),
            lifecycles: 0,
            runs: 0,
            revisits: 0,
            deleted: VecDeque::new(),
        };
        let every = self.config.lifecycle_every_ms;
        // Clients start their lifecycles at staggered times.
        let mut next_lifecycle = (every > 0).then(|| {
            Duration::from_millis(every * (u64::from(id) + 1) / (self.config.clients as u64 + 1))
        });
        while !self.stop.load(Ordering::Relaxed) {
            if self.started.fetch_add(1, Ordering::Relaxed) >= self.config.max_ops {
                break;
            }
            match next_lifecycle {
                Some(at) if self.t0.elapsed() >= at => {
                    next_lifecycle = Some(at + Duration::from_millis(every));
                    c.lifecycle().await;
                }
                _ => c.step().await,
            }
            if self.config.think_ms > 0 {
                let jitter = c.rng.random_range(0..=self.config.think_ms);
                tokio::time::sleep(Duration::from_millis(self.config.think_ms / 2 + jitter)).await;
            }
        }
    }
}

/// What a response showed, kept to send its context with a later write.
#[derive(Clone, Debug)]
struct Seen {
    context: String,
    values: Vec<String>,
}

struct Client {
    w: Arc<Workload>,
    id: u32,
    seq: u64,
    rng: StdRng,
    /// The context (and values) of this client's last answer per key.
    last: HashMap<String, Seen>,
    /// Lifecycle keys started so far.
    lifecycles: u64,
    /// Lifecycles run so far (fresh keys and revisits).
    runs: u64,
    /// Lifecycles that went back to a deleted key.
    revisits: u64,
    /// Fresh lifecycle keys whose delete was sent, and when, oldest first:
    /// the ones a revisit may take.
    deleted: VecDeque<(String, Instant)>,
}

/// Parameters of one request.
struct Params {
    node: usize,
    quorum: String,
    sloppy: bool,
}

impl Client {
    fn pick_key(&mut self) -> String {
        let cfg = &self.w.config;
        if cfg.cold_keys == 0 || (cfg.hot_keys > 0 && self.rng.random_bool(cfg.hot_fraction)) {
            format!("hot-{}", self.rng.random_range(0..cfg.hot_keys.max(1)))
        } else {
            format!("cold-{}", self.rng.random_range(0..cfg.cold_keys))
        }
    }

    fn pick_params(&mut self) -> Params {
        let n = self.w.config.n_val.max(1);
        let quorum = match self.rng.random_range(0..10) {
            0..=1 => "one".to_string(),
            2..=5 => "quorum".to_string(),
            6..=7 => "all".to_string(),
            _ => self.rng.random_range(1..=n).to_string(),
        };
        Params {
            node: self.rng.random_range(1..=self.w.urls.len()),
            quorum,
            sloppy: self.rng.random_bool(0.6),
        }
    }

    async fn step(&mut self) {
        let key = self.pick_key();
        match self.rng.random_range(0..100) {
            // Read-modify-write: the common, well-behaved client.
            0..=39 => {
                let p = self.pick_params();
                if let Some(seen) = self.get(&key, &p).await {
                    let p = self.pick_params();
                    self.put(&key, &p, Some(seen)).await;
                }
            }
            // Read, then delete what was read.
            40..=49 => {
                let p = self.pick_params();
                if let Some(seen) = self.get(&key, &p).await {
                    let p = self.pick_params();
                    self.delete(&key, &p, Some(seen)).await;
                }
            }
            // Write again with the context of one's own last answer.
            50..=59 => {
                let p = self.pick_params();
                let seen = self.last.get(&key).cloned();
                self.put(&key, &p, seen).await;
            }
            60..=71 => {
                let p = self.pick_params();
                self.put(&key, &p, None).await;
            }
            72..=76 => {
                let p = self.pick_params();
                self.delete(&key, &p, None).await;
            }
            _ => {
                let p = self.pick_params();
                self.get(&key, &p).await;
            }
        }
    }

    /// Writes a fresh key a few times, each write with the context of the
    /// previous answer, then reads it and deletes what the read showed.
    /// Stops at the first write that is not acknowledged: the delete would
    /// not be known to cover it. With `revisit_after_ms`, every other
    /// lifecycle does the same on a key deleted that long ago instead (the
    /// same random draws either way).
    async fn lifecycle(&mut self) {
        self.runs += 1;
        let after = Duration::from_millis(self.w.config.revisit_after_ms);
        let revisit = self.w.config.revisit_after_ms > 0
            && self.runs.is_multiple_of(2)
            && self
                .deleted
                .front()
                .is_some_and(|(_, at)| at.elapsed() >= after);
        let (key, mut seen) = match revisit.then(|| self.deleted.pop_front()).flatten() {
            Some((key, _)) => {
                self.revisits += 1;
                // A write after the reap: blind, or with a context from
                // before it (which the node accepts, clamped).
                let old = if self.revisits.is_multiple_of(2) {
                    self.last.get(&key).cloned()
                } else {
                    None
                };
                (key, old)
            }
            None => {
                self.lifecycles += 1;
                (format!("life-c{}-{}", self.id, self.lifecycles), None)
            }
        };
        let writes = self.rng.random_range(1..=3);
        for _ in 0..writes {
            let p = self.pick_params();
            self.put(&key, &p, seen.take()).await;
            match self.last.get(&key) {
                Some(s) => seen = Some(s.clone()),
                None => return,
            }
        }
        let p = self.pick_params();
        if let Some(read) = self.get(&key, &p).await {
            let p = self.pick_params();
            self.delete(&key, &p, Some(read)).await;
            if !revisit {
                self.deleted.push_back((key, Instant::now()));
            }
        }
    }

    fn new_op(&mut self, kind: OpKind, key: &str, p: &Params) -> Op {
        self.seq += 1;
        Op {
            client: self.id,
            seq: self.seq,
            kind: Some(kind),
            key: key.to_string(),
            node: p.node,
            sloppy: p.sloppy,
            timeout_ms: self.w.config.timeout_ms,
            ..Op::default()
        }
    }

    fn url(&self, key: &str, p: &Params, param: &str) -> String {
        format!(
            "{}/kv/{}?{param}={}&sloppy={}&timeout_ms={}",
            self.w.urls[p.node - 1],
            dynkv_tests::encode_key(key),
            p.quorum,
            p.sloppy,
            self.w.config.timeout_ms
        )
    }

    /// A GET; returns what a later write may send back.
    async fn get(&mut self, key: &str, p: &Params) -> Option<Seen> {
        let mut op = self.new_op(OpKind::Get, key, p);
        op.r = Some(p.quorum.clone());
        let req = self
            .w
            .http
            .get(self.url(key, p, "r"))
            .header("accept", "application/json");
        op.start_us = self.w.now_us();
        let res = req.send().await;
        let seen = match res {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let context = header(&resp, "x-dynkv-context");
                let body = resp.bytes().await;
                op.end_us = self.w.now_us();
                op.status = Some(status);
                op.context = context.clone();
                match (status, body) {
                    (200, Ok(b)) => {
                        op.outcome = Some(Outcome::Ok);
                        op.values = vec![String::from_utf8_lossy(&b).into_owned()];
                    }
                    (300, Ok(b)) => {
                        op.outcome = Some(Outcome::Ok);
                        (op.values, op.tombstones) = siblings(&b);
                    }
                    (404, Ok(_)) => op.outcome = Some(Outcome::Ok),
                    (_, Ok(b)) => {
                        op.outcome = Some(Outcome::Fail);
                        op.error = Some(error_code(&b));
                    }
                    (_, Err(e)) => {
                        op.outcome = Some(Outcome::Fail);
                        op.error = Some(format!("body: {e}"));
                    }
                }
                match (op.outcome, context) {
                    (Some(Outcome::Ok), Some(context)) => Some(Seen {
                        context,
                        values: op.values.clone(),
                    }),
                    _ => None,
                }
            }
            Err(e) => {
                op.end_us = self.w.now_us();
                record_transport_failure(&mut op, &e);
                None
            }
        };
        if let Some(s) = &seen {
            self.last.insert(key.to_string(), s.clone());
        }
        self.w.recorder.record(Record::Op(op));
        seen
    }

    /// The parameters of a write: `p` with W raised to `quorum` when it
    /// asks for fewer than [`WorkloadConfig::min_w`] acknowledgements
    /// (no random draw, so the seed's stream is the same).
    fn for_write(&self, p: &Params) -> Params {
        let n = self.w.config.n_val.max(1);
        let w = crate::check::quorum_count(&p.quorum, n).unwrap_or(n);
        Params {
            node: p.node,
            quorum: if w < self.w.config.min_w {
                "quorum".to_string()
            } else {
                p.quorum.clone()
            },
            sloppy: p.sloppy,
        }
    }

    async fn put(&mut self, key: &str, p: &Params, ctx: Option<Seen>) {
        let p = &self.for_write(p);
        let mut op = self.new_op(OpKind::Put, key, p);
        let value = format!("c{}-{}", self.id, op.seq);
        op.value = Some(value.clone());
        let req = self
            .w
            .http
            .put(self.url(key, p, "w"))
            .header("content-type", "text/plain")
            .body(value);
        self.write(op, p, req, ctx).await
    }

    async fn delete(&mut self, key: &str, p: &Params, ctx: Option<Seen>) {
        let p = &self.for_write(p);
        let op = self.new_op(OpKind::Delete, key, p);
        let req = self.w.http.delete(self.url(key, p, "w"));
        self.write(op, p, req, ctx).await
    }

    async fn write(
        &mut self,
        mut op: Op,
        p: &Params,
        mut req: reqwest::RequestBuilder,
        ctx: Option<Seen>,
    ) {
        op.w = Some(p.quorum.clone());
        if let Some(seen) = ctx {
            req = req.header("x-dynkv-context", &seen.context);
            op.context_sent = Some(seen.context);
            op.supersedes = seen.values;
        }
        op.start_us = self.w.now_us();
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                op.context = header(&resp, "x-dynkv-context");
                op.dot = header(&resp, "x-dynkv-dot");
                let body = resp.bytes().await.unwrap_or_default();
                op.end_us = self.w.now_us();
                op.status = Some(status);
                op.outcome = Some(match status {
                    200 | 204 => Outcome::Ok,
                    503 if error_code(&body) == "overloaded" => Outcome::Fail,
                    400..=499 => Outcome::Fail,
                    _ => Outcome::Unknown,
                });
                if status == 200 {
                    (op.values, op.tombstones) = siblings(&body);
                } else if status == 204
                    && let Some(v) = &op.value
                {
                    op.values = vec![v.clone()];
                }
                if op.outcome != Some(Outcome::Ok) {
                    op.error = Some(error_code(&body));
                }
            }
            Err(e) => {
                op.end_us = self.w.now_us();
                record_transport_failure(&mut op, &e);
            }
        }
        match (&op.outcome, &op.context) {
            (Some(Outcome::Ok), Some(c)) => {
                self.last.insert(
                    op.key.clone(),
                    Seen {
                        context: c.clone(),
                        values: op.values.clone(),
                    },
                );
            }
            // What the client knew may be out of date now.
            _ => {
                self.last.remove(&op.key);
            }
        }
        self.w.recorder.record(Record::Op(op));
    }
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Live values (sorted) and tombstone count of a sibling JSON body.
pub fn siblings(body: &[u8]) -> (Vec<String>, usize) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (Vec::new(), 0);
    };
    let mut values = Vec::new();
    let mut tombstones = 0;
    for s in v["siblings"].as_array().into_iter().flatten() {
        if s["deleted"].as_bool() == Some(true) {
            tombstones += 1;
        } else {
            values.push(s["value"].as_str().unwrap_or_default().to_string());
        }
    }
    values.sort();
    (values, tombstones)
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned())
}

/// Records a request that got no HTTP answer. Refused before anything was
/// sent: certainly not applied (failed); otherwise it may have been applied
/// (unknown).
fn record_transport_failure(op: &mut Op, e: &reqwest::Error) {
    op.outcome = Some(if e.is_connect() {
        Outcome::Fail
    } else {
        Outcome::Unknown
    });
    op.error = Some(transport_error(e));
}

fn transport_error(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        format!("transport: {e}")
    }
}
