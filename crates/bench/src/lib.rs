//! # dynkv-bench: the `dynkv bench` load generator
//!
//! `dynkv bench` drives HTTP load at dynkv nodes (or, for comparison, at a
//! bare server that answers 200 to anything, or at etcd's HTTP/JSON
//! gateway) and reports throughput, latency percentiles and errors, on
//! stderr while it runs and as a summary and a JSON file at the end.
//!
//! ## Design
//! - **Clients.** `--connections C` simulated clients, each a tokio task
//!   owning one keep-alive HTTP/1.1 connection ([`target::Conn`]) to one
//!   target; targets are handed out round-robin over the clients. A client
//!   sends its next request when the previous answer has been read fully
//!   (closed loop), or, with `--rate`, at fixed intervals of its share of
//!   the rate (open loop). In open loop, latency is counted from the time
//!   the request *should* have been sent, so a stalled server is not hidden
//!   by a client that waited for it (no coordinated omission).
//! - **Phases.** Optional `--preload` writes every key once (progress line
//!   on stderr), then `--warmup` runs the load without recording, then the
//!   measured phase runs until `--duration` has passed or `--ops` requests
//!   were sent, whichever comes first. Both bounds always hold: the
//!   duration has a default.
//! - **Writes and siblings.** dynkv keeps concurrent writes to a key as
//!   siblings, so blind writes to a small key space pile them up and the
//!   benchmark would measure ever-growing objects. By default every write
//!   carries the most recent context any client saw for that key (from a
//!   GET, PUT or DELETE answer, kept in a sharded map shared by all
//!   clients), which is how a read-modify-write client behaves. `--blind`
//!   sends no context.
//! - **Measurements.** Each client keeps its own HDR histograms (1 µs to
//!   60 s, 3 significant digits) per operation, merged at the end: the hot
//!   path shares only two relaxed counters for the progress line and the
//!   context map. Failed requests are counted by kind (HTTP status,
//!   timeout, connect, io) and their latency is not recorded.
//! - **CPU.** On a small shared machine throughput alone can mislead, so
//!   the report also says how many cores the machine, the generator, the
//!   server processes named with `--pids`, and everything else used during
//!   the measured phase, and the servers' CPU time per request
//!   ([`cpu`]).
//! - **Scope.** It talks only to the addresses it is given.
//!
//! ## Modules
//! - [`spec`]: durations, the operation mix, key distributions.
//! - [`target`]: requests per target kind, and the connection.
//! - [`stats`]: histograms, the report and its summary.
//! - [`cpu`]: CPU accounting from `/proc`.
//! - [`growth`]: data type growth workloads (`--workload set-growth`,
//!   `map-growth`): the cost of one update as a set or map grows.

pub mod cpu;
pub mod growth;
pub mod spec;
pub mod stats;
pub mod target;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dynkv_client::Context;
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use spec::{Dist, KeySampler, Mix, Op, parse_duration};
use stats::{PreloadResult, Recorder, Report};
use target::{Conn, Failure, RequestBuilder, Sender, TargetKind, parse_target};

/// Options of `dynkv bench`; flattened into the node binary's command line
/// so the generator ships with the store it measures.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Base URLs of the targets, comma-separated; clients are spread over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:7070")]
    pub targets: Vec<String>,
    /// What the targets are: dynkv, bare (answers 200 to anything) or etcd (v3 HTTP/JSON gateway).
    #[arg(long, value_enum, default_value_t = TargetKind::Dynkv)]
    pub target_kind: TargetKind,
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Length of the measured phase (e.g. 20s, 500ms, 2m).
    #[arg(long, short = 'd', default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop the measured phase after this many requests (if the duration has not ended it first).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Load run before the measured phase and not recorded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Operation weights, e.g. get=50,put=50,delete=0.
    #[arg(long, default_value = "get=50,put=50,delete=0", value_parser = Mix::parse)]
    pub mix: Mix,
    /// Bytes per written value.
    #[arg(long, default_value_t = 1024)]
    pub value_size: usize,
    /// Size of the key space: keys are PREFIX-0 .. PREFIX-(keys-1).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Key distribution.
    #[arg(long, value_enum, default_value_t = Dist::Uniform)]
    pub dist: Dist,
    /// Exponent s of the Zipf distribution (P(rank i) ~ 1/i^s).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_exponent: f64,
    /// dynkv read quorum sent as ?r= (one, quorum, all or a number); default: the node's.
    #[arg(long)]
    pub r: Option<String>,
    /// dynkv write quorum sent as ?w=; default: the node's.
    #[arg(long)]
    pub w: Option<String>,
    /// Write without the key's last known context (dynkv then keeps concurrent writes as siblings).
    #[arg(long)]
    pub blind: bool,
    /// How dynkv requests pick a node: round-robin over the targets, or
    /// token-aware to a replica of the key (the client reads the ring from
    /// the targets' `GET /ring`).
    #[arg(long, value_enum, default_value_t = RoutingArg::RoundRobin)]
    pub routing: RoutingArg,
    /// Send an Idempotency-Key with every dynkv write, as the client
    /// library does by default (the coordinator then first reads the key
    /// from the other primaries).
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Write every key once before the warm-up.
    #[arg(long)]
    pub preload: bool,
    /// Open loop: send this many requests per second in total, spread evenly over the clients.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Deadline of one request, including reading the answer.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Key prefix (letters, digits, '-', '_', '.', '~').
    #[arg(long, default_value = "bench")]
    pub key_prefix: String,
    /// Seed of the generator's random choices.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Server process ids whose CPU time (during the measured phase) and
    /// memory are reported, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// A label for the summary and the JSON file.
    #[arg(long)]
    pub label: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// kv (the GET/PUT mix above), or a data type growth run against the
    /// first target: set-growth, map-growth (see [`growth`]).
    #[arg(long, value_enum, default_value_t = growth::Workload::Kv)]
    pub workload: growth::Workload,
    /// Elements (set) or fields (map) a growth run adds.
    #[arg(long, default_value_t = 10_000)]
    pub elements: usize,
    /// Updates per reported block of a growth run.
    #[arg(long, default_value_t = 1_000)]
    pub block: usize,
    /// Bucket type of a growth run (its datatype must be set or map).
    #[arg(long)]
    pub bucket_type: Option<String>,
}

/// `--routing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingArg {
    /// Each request to the next node in turn.
    RoundRobin,
    /// Each request to a live primary of its key (`dynkv-client`'s default).
    Token,
}

/// The latest context seen per key, shared by all clients so that any of
/// them writes over what the key holds instead of beside it.
struct ContextMap {
    shards: Vec<Mutex<HashMap<u64, Context>>>,
}

const CONTEXT_SHARDS: usize = 64;

impl ContextMap {
    fn new() -> Self {
        ContextMap {
            shards: (0..CONTEXT_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
        }
    }
    fn shard(&self, k: u64) -> &Mutex<HashMap<u64, Context>> {
        &self.shards[(k % CONTEXT_SHARDS as u64) as usize]
    }
    fn get(&self, k: u64) -> Option<Context> {
        self.shard(k).lock().get(&k).cloned()
    }
    fn set(&self, k: u64, v: Context) {
        self.shard(k).lock().insert(k, v);
    }
}

/// What every client of a run reads.
struct Plan {
    kind: TargetKind,
    sender: Sender,
    contexts: ContextMap,
    track_contexts: bool,
    sampler: KeySampler,
    mix: Mix,
    prefix: String,
    timeout: Duration,
    keys: u64,
}

impl Plan {
    fn context_for(&self, op: Op, k: u64) -> Option<Context> {
        if self.track_contexts && op != Op::Get {
            self.contexts.get(k)
        } else {
            None
        }
    }

    fn remember(&self, k: u64, ctx: Option<Context>) {
        if self.track_contexts
            && let Some(c) = ctx
        {
            self.contexts.set(k, c);
        }
    }
}

/// Counters the progress line reads.
#[derive(Default)]
struct Progress {
    done: AtomicU64,
    errors: AtomicU64,
    claimed: AtomicU64,
    /// Slowest successful request since the last progress line, µs: shows stalls as they happen.
    max_us: AtomicU64,
    stop: AtomicBool,
}

fn validate(a: &BenchArgs) -> Result<Vec<String>, String> {
    if a.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if a.keys == 0 {
        return Err("--keys must be at least 1".into());
    }
    if a.targets.is_empty() {
        return Err("give at least one --targets URL".into());
    }
    if a.key_prefix.is_empty()
        || !a
            .key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        return Err("--key-prefix may hold only letters, digits, '-', '_', '.', '~'".into());
    }
    if let Some(r) = a.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err("--rate must be a positive number of requests per second".into());
    }
    if a.dist == Dist::Zipf && !(a.zipf_exponent.is_finite() && a.zipf_exponent > 0.0) {
        return Err("--zipf-exponent must be positive".into());
    }
    if a.timeout.is_zero() {
        return Err("--timeout must be above 0".into());
    }
    a.targets.iter().map(|t| parse_target(t)).collect()
}

/// A value of `n` printable bytes, the same for every write: its content
/// does not matter to any target, and one shared buffer costs no copies.
fn make_value(n: usize, seed: u64) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect::<Vec<u8>>()
        .into()
}

fn params_json(a: &BenchArgs) -> serde_json::Value {
    serde_json::json!({
        "targets": a.targets,
        "target_kind": a.target_kind,
        "connections": a.connections,
        "duration_s": a.duration.as_secs_f64(),
        "ops_limit": a.ops,
        "warmup_s": a.warmup.as_secs_f64(),
        "mix": a.mix,
        "value_size": a.value_size,
        "keys": a.keys,
        "dist": a.dist,
        "zipf_exponent": (a.dist == Dist::Zipf).then_some(a.zipf_exponent),
        "r": a.r,
        "w": a.w,
        "blind": a.blind,
        "routing": a.routing,
        "idempotency_keys": a.idempotency_keys,
        "preload": a.preload,
        "rate": a.rate,
        "timeout_s": a.timeout.as_secs_f64(),
        "key_prefix": a.key_prefix,
        "seed": a.seed,
        "pids": a.pids,
    })
}

/// Prints a progress line to stderr about once a second until `stop`.
fn spawn_progress(
    progress: Arc<Progress>,
    what: &'static str,
    total: Option<u64>,
    measure_start: Option<Instant>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let t0 = Instant::now();
        let mut last = 0u64;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if progress.stop.load(Ordering::Relaxed) {
                return;
            }
            let done = progress.done.load(Ordering::Relaxed);
            let errors = progress.errors.load(Ordering::Relaxed);
            let max_ms = progress.max_us.swap(0, Ordering::Relaxed) as f64 / 1000.0;
            let phase = match measure_start {
                Some(m) if Instant::now() < m => "warmup",
                _ => what,
            };
            let of = total.map(|t| format!("/{t}")).unwrap_or_default();
            eprintln!(
                "[{:>6.1}s] {phase:<7} {:>9} ops/s  max {max_ms:>8.1} ms   {done}{of} done, {errors} errors",
                t0.elapsed().as_secs_f64(),
                done - last
            );
            last = done;
        }
    })
}

async fn preload(plan: Arc<Plan>, conns: Vec<Conn>) -> (Vec<Conn>, PreloadResult) {
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let ticker = spawn_progress(progress.clone(), "preload", Some(plan.keys), None);
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (plan, progress, failed, next) =
            (plan.clone(), progress.clone(), failed.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut key = String::new();
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= plan.keys {
                    return conn;
                }
                key.clear();
                let _ = write!(key, "{}-{k}", plan.prefix);
                let mut ok = false;
                for attempt in 0..3 {
                    match plan
                        .sender
                        .send(&mut conn, Op::Put, &key, None, plan.timeout)
                        .await
                    {
                        Ok(a) if plan.sender.builder.is_success(Op::Put, a.status) => {
                            plan.remember(k, a.context);
                            ok = true;
                            break;
                        }
                        _ => {
                            progress.errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        }
                    }
                }
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                progress.done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut conns = Vec::new();
    for t in tasks {
        conns.push(t.await.expect("preload task"));
    }
    progress.stop.store(true, Ordering::Relaxed);
    ticker.abort();
    let res = PreloadResult {
        keys: plan.keys,
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        failed_keys: failed.load(Ordering::Relaxed),
    };
    eprintln!(
        "preload: {} keys in {:.1} s ({:.0} keys/s), {} failed",
        res.keys,
        res.seconds,
        res.keys as f64 / res.seconds.max(1e-9),
        res.failed_keys
    );
    (conns, res)
}

/// The timing of the load phases, shared by every client.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    measure_start: Instant,
    end: Instant,
    ops_limit: Option<u64>,
    /// Open loop: time between two requests of one client.
    interval: Option<Duration>,
}

struct ClientResult {
    rec: Recorder,
    last_done: Option<Instant>,
    /// PBC connections this client opened (HTTP ones are the sender's).
    connects: u64,
}

async fn client(
    id: usize,
    clients: usize,
    mut conn: Conn,
    plan: Arc<Plan>,
    sched: Schedule,
    progress: Arc<Progress>,
    seed: u64,
) -> ClientResult {
    let mut rng = SmallRng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut rec = Recorder::default();
    let mut key = String::new();
    let mut last_done = None;
    // Open-loop clients start staggered over one interval so they do not fire together.
    let mut next = sched
        .interval
        .map(|iv| sched.start + iv.mul_f64(id as f64 / clients as f64));
    loop {
        let now = Instant::now();
        if now >= sched.end {
            break;
        }
        let scheduled = match (&mut next, sched.interval) {
            (Some(n), Some(iv)) => {
                if *n >= sched.end {
                    break;
                }
                if *n > now {
                    tokio::time::sleep_until((*n).into()).await;
                }
                let s = *n;
                *n += iv;
                s
            }
            _ => now,
        };
        let measuring = scheduled >= sched.measure_start;
        if measuring
            && let Some(limit) = sched.ops_limit
            && progress.claimed.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        let op = plan.mix.pick(&mut rng);
        let k = plan.sampler.sample(&mut rng);
        key.clear();
        let _ = write!(key, "{}-{k}", plan.prefix);
        let res = plan
            .sender
            .send(&mut conn, op, &key, plan.context_for(op, k), plan.timeout)
            .await;
        let done = Instant::now();
        let res = match res {
            Ok(a) if plan.sender.builder.is_success(op, a.status) => Ok(a),
            Ok(a) => Err(Failure::Status(a.status.as_u16())),
            Err(f) => Err(f),
        };
        match res {
            Ok(a) => {
                progress.done.fetch_add(1, Ordering::Relaxed);
                let us = done.duration_since(scheduled).as_micros() as u64;
                progress.max_us.fetch_max(us, Ordering::Relaxed);
                if measuring {
                    rec.success(op, a.status.as_u16(), us);
                    last_done = Some(done);
                }
                plan.remember(k, a.context);
            }
            Err(f) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                if measuring {
                    rec.failure(op, &f);
                    last_done = Some(done);
                }
                if f == Failure::Connect {
                    // Do not spin against a port nobody listens on.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    let connects = match conn {
        Conn::Pb { connects, .. } => connects,
        _ => 0,
    };
    ClientResult {
        rec,
        last_done,
        connects,
    }
}

/// The client of the native kinds: no retries (a failure is counted, not
/// hidden), no session contexts on reads, idempotency keys only when
/// asked, the routing asked for. With token-aware routing it reads the
/// ring before the run, and says so when it cannot.
async fn native_client(args: &BenchArgs, addrs: &[String]) -> Result<dynkv_client::Client, String> {
    let routing = match args.routing {
        RoutingArg::RoundRobin => dynkv_client::Routing::RoundRobin,
        RoutingArg::Token => dynkv_client::Routing::TokenAware,
    };
    let client = dynkv_client::Client::builder(addrs.iter().map(String::as_str))
        .routing(routing)
        .retries(0)
        .request_timeout(args.timeout)
        .connect_timeout(args.timeout)
        .session_capacity(0)
        .idempotency_keys(args.idempotency_keys)
        .max_idle_per_node(args.connections)
        .build()
        .map_err(|e| e.to_string())?;
    if routing == dynkv_client::Routing::TokenAware {
        match client.refresh_ring().await {
            Ok(v) => eprintln!(
                "bench: token-aware routing over {} nodes ({} partitions, N={})",
                v.members.len(),
                v.partitions,
                v.n_val
            ),
            Err(e) => eprintln!("bench: no ring view ({e}); requests go round-robin"),
        }
    }
    Ok(client)
}

/// Runs the benchmark described by `args` and returns its report (also
/// written to `--json` when given). Progress goes to stderr.
pub async fn execute(args: BenchArgs) -> Result<Report, String> {
    let addrs = validate(&args)?;
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let kind = args.target_kind;
    let builder = RequestBuilder::new(
        kind,
        make_value(args.value_size, args.seed),
        &args.r,
        &args.w,
    )?;
    let native = if builder.is_native() {
        Some(native_client(&args, &addrs).await?)
    } else {
        None
    };
    let sender = Sender {
        builder,
        client: native,
        transport: dynkv_client::Transport::new(None, args.timeout, args.connections),
    };
    let mut conns: Vec<Conn> = (0..args.connections)
        .map(|i| sender.conn(&addrs[i % addrs.len()]))
        .collect::<Result<_, _>>()?;
    let plan = Arc::new(Plan {
        kind,
        sender,
        contexts: ContextMap::new(),
        track_contexts: kind == TargetKind::Dynkv && !args.blind,
        sampler: KeySampler::new(args.dist, args.keys, args.zipf_exponent),
        mix: args.mix,
        prefix: args.key_prefix.clone(),
        timeout: args.timeout,
        keys: args.keys,
    });
    eprintln!(
        "bench: {} {:?} target(s) {}, {} connections, mix get={} put={} delete={}, {} B values, {} keys ({:?}){}",
        addrs.len(),
        plan.kind,
        args.targets.join(","),
        args.connections,
        args.mix.get,
        args.mix.put,
        args.mix.delete,
        args.value_size,
        args.keys,
        args.dist,
        args.rate
            .map(|r| format!(", open loop at {r} ops/s"))
            .unwrap_or_default()
    );
    let preload_res = if args.preload {
        let (c, res) = preload(plan.clone(), conns).await;
        conns = c;
        Some(res)
    } else {
        None
    };

    let start = Instant::now();
    let measure_start = start + args.warmup;
    let sched = Schedule {
        start,
        measure_start,
        end: measure_start + args.duration,
        ops_limit: args.ops,
        interval: args
            .rate
            .map(|r| Duration::from_secs_f64(args.connections as f64 / r)),
    };
    let progress = Arc::new(Progress::default());
    let ticker = spawn_progress(progress.clone(), "run", None, Some(measure_start));
    let pids = args.pids.clone();
    let cpu_start = tokio::spawn(async move {
        tokio::time::sleep_until(measure_start.into()).await;
        (Instant::now(), cpu::Snapshot::take(&pids))
    });
    let n = conns.len();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            tokio::spawn(client(
                i,
                n,
                conn,
                plan.clone(),
                sched,
                progress.clone(),
                args.seed,
            ))
        })
        .collect();
    let mut rec = Recorder::default();
    let mut last_done: Option<Instant> = None;
    let mut connects = 0;
    for t in tasks {
        let r = t.await.map_err(|e| format!("client task failed: {e}"))?;
        rec.merge(&r.rec);
        last_done = last_done.max(r.last_done);
        connects += r.connects;
    }
    connects += plan.sender.connects();
    let cpu_end = (Instant::now(), cpu::Snapshot::take(&args.pids));
    progress.stop.store(true, Ordering::Relaxed);
    ticker.abort();
    let elapsed_s = last_done
        .map(|l| l.saturating_duration_since(measure_start).as_secs_f64())
        .unwrap_or(0.0);
    let (total, per_op) = rec.results(elapsed_s);
    let cpu = match cpu_start.await {
        Ok((t0, snap0)) if cpu_end.0 > t0 => Some(cpu::usage(
            &snap0,
            &cpu_end.1,
            (cpu_end.0 - t0).as_secs_f64(),
            total.ops,
            &args.pids,
        )),
        _ => None,
    };
    let report = Report {
        label: args.label.clone(),
        params: params_json(&args),
        started_unix_s,
        preload: preload_res,
        elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
        tcp_connects: connects,
        cpu,
        total,
        per_op,
    };
    if let Some(path) = &args.json {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&report).expect("report serializes");
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(report)
}

/// `dynkv bench`: runs, prints the summary on stdout, and exits 0 when at
/// least one request succeeded (1 when none did, 2 on bad options), so
/// scripts notice a run that measured nothing.
pub async fn run(args: BenchArgs) -> ExitCode {
    if args.workload != growth::Workload::Kv {
        return run_growth(args).await;
    }
    match execute(args).await {
        Ok(report) => {
            print!("{}", report.summary());
            if report.total.ops == 0 {
                eprintln!("dynkv bench: no request succeeded");
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("dynkv bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// A data type growth run ([`growth`]).
async fn run_growth(args: BenchArgs) -> ExitCode {
    let addr = match args.targets.first().map(|t| parse_target(t)) {
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            eprintln!("dynkv bench: {e}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("dynkv bench: no target");
            return ExitCode::from(2);
        }
    };
    if args.elements == 0 || args.block == 0 {
        eprintln!("dynkv bench: --elements and --block must be at least 1");
        return ExitCode::from(2);
    }
    let btype = args.bucket_type.clone().unwrap_or_else(|| {
        if args.workload == growth::Workload::MapGrowth {
            "maps".into()
        } else {
            "sets".into()
        }
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let key = format!("{}-{}-{now}", args.key_prefix, args.seed);
    let report = growth::run(
        args.workload,
        &addr,
        &btype,
        &key,
        args.elements,
        args.block,
        args.timeout,
    )
    .await;
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("reports serialise");
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("dynkv bench: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        let mut v = vec!["bench"];
        v.extend_from_slice(extra);
        Cli::try_parse_from(v).unwrap().bench
    }

    #[test]
    fn parses_and_validates() {
        let a = args(&[
            "--targets",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "--mix",
            "get=9,put=1",
            "--duration",
            "3s",
        ]);
        assert_eq!(a.targets.len(), 2);
        assert_eq!(a.duration, Duration::from_secs(3));
        assert_eq!(validate(&a).unwrap(), vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert!(validate(&args(&["--key-prefix", "a/b"])).is_err());
        assert!(validate(&args(&["--connections", "0"])).is_err());
        assert!(validate(&args(&["--rate=-1"])).is_err());
    }

    /// A tiny in-process server that remembers the context it hands out,
    /// so the test can check that writes carry it back.
    async fn serve(
        with_context: bool,
    ) -> (
        String,
        Arc<AtomicU64>,
        Arc<AtomicU64>,
        tokio::task::JoinHandle<()>,
    ) {
        use axum::http::{HeaderMap, StatusCode};
        let puts = Arc::new(AtomicU64::new(0));
        let puts_with_ctx = Arc::new(AtomicU64::new(0));
        let (p, pc) = (puts.clone(), puts_with_ctx.clone());
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method, headers: HeaderMap, _body: axum::body::Bytes| {
                let (p, pc) = (p.clone(), pc.clone());
                async move {
                    if method == axum::http::Method::PUT {
                        p.fetch_add(1, Ordering::Relaxed);
                        if headers.contains_key(target::CONTEXT_HEADER) {
                            pc.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let mut h = HeaderMap::new();
                    if with_context {
                        h.insert(
                            target::CONTEXT_HEADER,
                            axum::http::HeaderValue::from_static("CTX"),
                        );
                    }
                    (StatusCode::OK, h)
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (url, puts, puts_with_ctx, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_against_a_server_and_carries_contexts() {
        let (url, puts, with_ctx, server) = serve(true).await;
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("out/report.json");
        let a = args(&[
            "--targets",
            &url,
            "--connections",
            "4",
            "--duration",
            "10s",
            "--ops",
            "400",
            "--keys",
            "20",
            "--preload",
            "--mix",
            "get=1,put=1",
            "--json",
            json.to_str().unwrap(),
        ]);
        let report = execute(a).await.unwrap();
        server.abort();
        assert_eq!(report.total.errors, 0);
        assert!(report.total.ops >= 400 && report.total.ops < 400 + 4);
        assert_eq!(report.preload.as_ref().unwrap().keys, 20);
        assert_eq!(report.tcp_connects, 4);
        // After the preload every key has a context: no measured write is blind.
        let p = puts.load(Ordering::Relaxed);
        assert!(p > 20);
        assert_eq!(with_ctx.load(Ordering::Relaxed), p - 20);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(v["total"]["errors"], 0);
        assert!(v["per_op"]["get"]["latency_us"]["p99"].as_u64().unwrap() > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_connect_errors_and_honours_the_rate() {
        // Nobody listens on this port once the listener is dropped.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let a = args(&[
            "--targets",
            &format!("http://127.0.0.1:{port}"),
            "--connections",
            "2",
            "--duration",
            "300ms",
        ]);
        let report = execute(a).await.unwrap();
        assert_eq!(report.total.ops, 0);
        assert!(report.total.errors_by_kind["connect"] > 0);

        let (url, _, _, server) = serve(false).await;
        let a = args(&[
            "--targets",
            &url,
            "--connections",
            "2",
            "--duration",
            "1s",
            "--rate",
            "100",
            "--blind",
        ]);
        let report = execute(a).await.unwrap();
        server.abort();
        // 100/s for one second: at most about 100 requests, never thousands.
        assert!(
            (1..=110).contains(&report.total.ops),
            "{}",
            report.total.ops
        );
    }
}
