//! One run, end to end: start a proxied cluster of real `dynkv` processes,
//! let the clients and the nemesis loose for the fault phase, heal
//! everything, wait for the replicas to converge, read every key back from
//! every node, and check the history.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use dynkv_tests::{Cluster, ClusterOptions};
use futures::StreamExt;

use crate::check::{Report, check};
use crate::feed::FeedConsumer;
use crate::history::{
    Action, FinalKey, FinalState, History, ObjectView, ReapSettings, Record, Recorder, RunInfo,
};
use crate::nemesis::Nemesis;
use crate::schedule::{FaultMix, generate};
use crate::workload::{Workload, WorkloadConfig, siblings};

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Seed of the schedule and the clients' choices.
    pub seed: u64,
    /// Length of the fault phase.
    pub duration: Duration,
    /// Nodes.
    pub nodes: usize,
    /// Replicas per key.
    pub n_val: usize,
    /// The clients.
    pub workload: WorkloadConfig,
    /// The faults.
    pub faults: FaultMix,
    /// How long replicas may take to converge after healing.
    pub convergence_bound: Duration,
    /// The `dynkv` binary (`None`: the harness's default).
    pub binary: Option<PathBuf>,
    /// Where to write `history.jsonl`, `report.json` and the node logs
    /// (`None`: keep the history in memory only).
    pub out_dir: Option<PathBuf>,
    /// Extra `DYNKV__...` settings for every node (they override the
    /// reaping settings below; the history records the result).
    pub env: Vec<(String, String)>,
    /// Tombstone reaping on the nodes (`None`: off, `reap_interval_ms = 0`).
    /// On by default with a short grace ([`ReapSettings::CHAOS`]), so that
    /// keys deleted during the run are reaped and the checker sees it.
    pub reap: Option<ReapSettings>,
    /// Print progress to stderr.
    pub verbose: bool,
    /// Follow the change feed for the whole run and check it
    /// ([`crate::feed`]).
    pub feed: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            seed: 1,
            duration: Duration::from_secs(60),
            nodes: 5,
            n_val: 3,
            workload: WorkloadConfig::default(),
            faults: FaultMix::default(),
            convergence_bound: Duration::from_secs(120),
            binary: None,
            out_dir: None,
            env: Vec::new(),
            reap: Some(ReapSettings::CHAOS),
            verbose: false,
            feed: true,
        }
    }
}

/// Node settings of a chaos cluster on top of the harness's fast failure
/// detection: anti-entropy exchanges often enough that a 5-node cluster
/// compares every partition pair within seconds rather than a minute, so
/// that what handoff and read repair miss is healed within the bound; and
/// ownership transfers slowed (one object a batch, a pause between
/// batches) so that a membership change's handoff lasts long enough for a
/// fault to land during it (a join's handoff, from many sources, takes
/// seconds; a leave's, mostly from the leaving node, tens of seconds).
pub const CHAOS_NODE_SETTINGS: &[(&str, &str)] = &[
    ("DYNKV__ANTIENTROPY__EXCHANGE_INTERVAL_MS", "200"),
    ("DYNKV__ANTIENTROPY__CONCURRENCY", "4"),
    ("DYNKV__LIMITS__MAX_INFLIGHT_REQUESTS", "4096"),
    ("DYNKV__MEMBERSHIP__TRANSFER_BATCH", "1"),
    ("DYNKV__MEMBERSHIP__TRANSFER_PAUSE", "400ms"),
];

/// The node settings of `reap` (reaping off: `reap_interval_ms = 0`).
pub fn reap_node_settings(reap: Option<ReapSettings>) -> Vec<(&'static str, String)> {
    match reap {
        Some(r) => vec![
            ("DYNKV__STORAGE__TOMBSTONE_GRACE_MS", r.grace_ms.to_string()),
            ("DYNKV__STORAGE__REAP_SETTLE_MS", r.settle_ms.to_string()),
            (
                "DYNKV__STORAGE__REAP_INTERVAL_MS",
                r.interval_ms.to_string(),
            ),
        ],
        None => vec![("DYNKV__STORAGE__REAP_INTERVAL_MS", "0".to_string())],
    }
}

/// The reaping the nodes get from `reap` with `env` (extra node settings,
/// applied after it) on top: what the history records. Settings `env`
/// leaves out keep the node's defaults (10 min grace, 1 min settle, 30 s
/// interval) when `reap` is off.
pub fn effective_reap(
    reap: Option<ReapSettings>,
    env: &[(String, String)],
) -> Option<ReapSettings> {
    let mut r = reap.unwrap_or(ReapSettings {
        grace_ms: 600_000,
        settle_ms: 60_000,
        interval_ms: 0,
    });
    for (k, v) in env {
        let Ok(v) = v.trim().parse::<u64>() else {
            continue;
        };
        match k.as_str() {
            "DYNKV__STORAGE__TOMBSTONE_GRACE_MS" => r.grace_ms = v,
            "DYNKV__STORAGE__REAP_SETTLE_MS" => r.settle_ms = v,
            "DYNKV__STORAGE__REAP_INTERVAL_MS" => r.interval_ms = v,
            _ => {}
        }
    }
    (r.interval_ms > 0).then_some(r)
}

/// Longest the feed consumer may follow after the clients stop, beyond the
/// run's own bounds.
const FEED_DRAIN_BOUND: Duration = Duration::from_secs(60);

/// What a run produced.
pub struct RunResult {
    /// The history (also written to `out_dir/history.jsonl`).
    pub history: History,
    /// The checker's report.
    pub report: Report,
}

macro_rules! say {
    ($cfg:expr, $($arg:tt)*) => {
        if $cfg.verbose {
            eprintln!("[chaos] {}", format!($($arg)*));
        }
    };
}

/// Runs the whole thing. Panics only if the cluster cannot be started.
pub async fn run(cfg: RunConfig) -> std::io::Result<RunResult> {
    if let Some(d) = &cfg.out_dir {
        std::fs::create_dir_all(d)?;
    }
    let history_path = cfg.out_dir.as_ref().map(|d| d.join("history.jsonl"));
    let recorder = Arc::new(Recorder::new(history_path.as_deref())?);

    let mut opts = ClusterOptions {
        n_val: cfg.n_val,
        ..ClusterOptions::default()
    }
    .proxied();
    for (k, v) in CHAOS_NODE_SETTINGS {
        opts = opts.set(k, v);
    }
    for (k, v) in reap_node_settings(cfg.reap) {
        opts = opts.set(k, &v);
    }
    let reap = effective_reap(cfg.reap, &cfg.env);
    for (k, v) in &cfg.env {
        opts = opts.set(k, v);
    }
    if let Some(b) = &cfg.binary {
        opts = opts.binary(b.clone());
    }
    if cfg.faults.needs_fault_layer() {
        opts = opts.with_fault_layer();
    }
    // A write acknowledged by one replica alone cannot be expected to
    // survive that replica's disk: with data-losing faults, W >= 2.
    let mut wl_cfg = cfg.workload.clone();
    wl_cfg.n_val = cfg.n_val;
    if cfg.faults.loses_data() {
        wl_cfg.min_w = wl_cfg.min_w.max(2);
    }
    // With reaping, lifecycle keys are written again once their tombstone
    // can have been reaped (unless the caller chose otherwise).
    if let Some(r) = reap
        && wl_cfg.revisit_after_ms == 0
    {
        wl_cfg.revisit_after_ms = r.grace_ms + r.settle_ms + 2 * r.interval_ms;
    }
    let binary = cfg
        .binary
        .clone()
        .unwrap_or_else(dynkv_tests::dynkv_bin)
        .display()
        .to_string();
    say!(cfg, "starting {} nodes of {binary}", cfg.nodes);
    let mut cluster = Cluster::start(cfg.nodes, opts).await;
    let t0 = Instant::now();
    recorder.record(Record::Run(RunInfo {
        seed: cfg.seed,
        nodes: cfg.nodes,
        n_val: cfg.n_val,
        duration_s: cfg.duration.as_secs(),
        clients: cfg.workload.clients,
        hot_keys: cfg.workload.hot_keys,
        cold_keys: cfg.workload.cold_keys,
        binary,
        min_w: wl_cfg.min_w,
        fault_layer: cfg.faults.needs_fault_layer(),
        reap,
    }));

    let steps = generate(
        cfg.seed,
        cfg.duration.as_millis() as u64,
        cfg.nodes,
        &cfg.faults,
    );
    say!(
        cfg,
        "seed {}: {} nemesis steps over {:?}",
        cfg.seed,
        steps.len(),
        cfg.duration
    );
    let urls: Vec<String> = (1..=cfg.nodes).map(|i| cluster.url(i)).collect();
    let workload = Workload::new(wl_cfg, urls.clone(), recorder.clone(), t0, cfg.seed);
    let clients: Vec<_> = (0..cfg.workload.clients)
        .map(|id| tokio::spawn(workload.clone().client(id as u32)))
        .collect();
    // The feed consumer, from the start to well after the end (bounded).
    let consumer = cfg.feed.then(|| {
        let c = FeedConsumer::new(urls.clone(), recorder.clone(), t0);
        let drain = c.drain_until.clone();
        let bound = Instant::now() + cfg.duration + cfg.convergence_bound * 3 + FEED_DRAIN_BOUND;
        (drain, tokio::spawn(c.run(bound)))
    });

    // A tombstone written by a node whose clock was ahead carries a time
    // in the future: its grace ends that much later.
    let max_ahead_ms = steps
        .iter()
        .filter_map(|s| match s.action {
            Action::ClockSkew { offset_ms, .. } => u64::try_from(offset_ms).ok(),
            _ => None,
        })
        .max()
        .unwrap_or(0);

    // The fault phase.
    let healed_us;
    let clients_done;
    let rings;
    {
        let mut nemesis = Nemesis::new(&mut cluster, &recorder, t0);
        let deadline = tokio::time::Instant::from(t0 + cfg.duration);
        nemesis
            .run(&steps, tokio::time::sleep_until(deadline))
            .await;
        tokio::time::sleep_until(deadline).await;
        workload.stop.store(true, Ordering::Relaxed);
        say!(cfg, "fault phase over; healing");
        nemesis.apply(&Action::HealAll).await;
        healed_us = t0.elapsed().as_micros() as u64;
        // Clients finish their last operation (bounded by their timeout).
        for c in clients {
            let _ = c.await;
        }
        clients_done = Instant::now();
        if let Some((drain, _)) = &consumer {
            // Every acknowledged write was stamped before now, by a clock
            // at most `max_ahead_ms` ahead of this one (plus a margin for
            // the clocks' catching up with each other).
            drain.store(
                crate::feed::unix_micros() + (max_ahead_ms + 2_000) * 1_000,
                Ordering::Release,
            );
        }
        if !nemesis.wait_all_see_all_up(Duration::from_secs(30)).await {
            say!(cfg, "some node still sees a peer down after 30 s");
        }
        rings = nemesis.ring_views(Duration::from_secs(30)).await;
        say!(
            cfg,
            "ring views of {} nodes; agreed: {}",
            rings.len(),
            crate::nemesis::rings_agree(&rings)
        );
    }
    recorder.flush();
    let ops = workload.started.load(Ordering::Relaxed);
    say!(cfg, "{ops} client steps; waiting for convergence");

    // Which keys to look at, and where they live.
    let keys: Vec<String> = {
        let h = recorder.history();
        let mut k: Vec<String> = h.ops.iter().map(|o| o.key.clone()).collect();
        k.sort();
        k.dedup();
        k
    };
    let reader = FinalReader::new(&cluster, cfg.nodes);
    let placement = reader.placements(&keys).await;
    let started = Instant::now();
    let mut converged = false;
    let mut convergence_ms = None;
    let mut local = BTreeMap::new();
    let mut polls = 0;
    while started.elapsed() < cfg.convergence_bound {
        polls += 1;
        local = reader.local_views(&keys).await;
        if all_converged(&local, &placement) {
            converged = true;
            convergence_ms =
                Some((t0.elapsed().as_micros() as u64).saturating_sub(healed_us) / 1000);
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    say!(
        cfg,
        "converged: {converged} ({:?} ms after healing, poll {polls}); reading every key at R=all",
        convergence_ms
    );
    let mut snapshot_ms = None;
    let reads = match reap {
        None => reader.reads_all(&keys).await,
        Some(r) => {
            // Every tombstone of the run may be reaped once its grace (plus
            // any clock ahead) has passed, two checks a settle apart have
            // agreed, and a pass has removed it; a replica that missed the
            // removal gets the tombstone back and the next pass removes it
            // again. Wait that long after the last operation, then take a
            // snapshot on which the replicas agree and that the R=all reads
            // do not straddle (the local views are the same before and
            // after them).
            let ready = clients_done
                + Duration::from_millis(
                    r.grace_ms + max_ahead_ms + r.settle_ms + 2 * r.interval_ms,
                );
            say!(
                cfg,
                "reaping on: waiting {:?} more for the last tombstones to be reaped",
                ready.saturating_duration_since(Instant::now())
            );
            tokio::time::sleep_until(ready.into()).await;
            let bound = Instant::now() + cfg.convergence_bound;
            let mut tries = 0;
            loop {
                tries += 1;
                loop {
                    local = reader.local_views(&keys).await;
                    if all_converged(&local, &placement) || Instant::now() >= bound {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                let reads = reader.reads_all(&keys).await;
                let after = reader.local_views(&keys).await;
                if after == local || Instant::now() >= bound {
                    say!(cfg, "final snapshot after {tries} tries");
                    snapshot_ms =
                        Some((t0.elapsed().as_micros() as u64).saturating_sub(healed_us) / 1000);
                    break reads;
                }
            }
        }
    };
    let mut final_keys = BTreeMap::new();
    for k in &keys {
        final_keys.insert(
            k.clone(),
            FinalKey {
                primaries: placement.get(k).cloned().unwrap_or_default(),
                replicas: local.remove(k).unwrap_or_default(),
                reads: reads.get(k).cloned().unwrap_or_default(),
            },
        );
    }
    recorder.record(Record::Final(FinalState {
        healed_us,
        converged,
        convergence_ms,
        convergence_bound_ms: cfg.convergence_bound.as_millis() as u64,
        polls,
        snapshot_ms,
        keys: final_keys,
        rings,
    }));
    recorder.flush();

    if let Some((_, task)) = consumer {
        say!(cfg, "waiting for the feed consumer to catch up");
        match task.await {
            Ok(s) => say!(
                cfg,
                "feed consumer: {} events, {} requests, {} switches, caught up: {}",
                s.events,
                s.polls,
                s.switches,
                s.drained
            ),
            Err(e) => say!(cfg, "feed consumer failed: {e}"),
        }
        recorder.flush();
    }
    let history = recorder.history();
    let report = check(&history);
    if let Some(d) = &cfg.out_dir {
        std::fs::write(
            d.join("report.json"),
            serde_json::to_vec_pretty(&report).expect("serialisable"),
        )?;
        for i in 1..=cluster.nodes.len() {
            let _ = std::fs::copy(cluster.node(i).log_path(), d.join(format!("n{i}.log")));
        }
    }
    drop(cluster);
    Ok(RunResult { history, report })
}

fn all_converged(
    local: &BTreeMap<String, Vec<ObjectView>>,
    placement: &BTreeMap<String, Vec<usize>>,
) -> bool {
    local.iter().all(|(k, copies)| {
        if copies.iter().any(|c| c.hints > 0 || c.status != 200) {
            return false;
        }
        let Some(prim) = placement.get(k) else {
            return false;
        };
        let mut p = copies.iter().filter(|c| prim.contains(&c.node));
        match p.next() {
            Some(first) => p.all(|c| c.same_object(first)),
            None => false,
        }
    })
}

/// Reads the final state over HTTP, a bounded number of requests at once.
struct FinalReader {
    urls: Vec<String>,
    http: reqwest::Client,
}

const PARALLEL: usize = 16;

impl FinalReader {
    fn new(cluster: &Cluster, nodes: usize) -> Self {
        FinalReader {
            urls: (1..=nodes).map(|i| cluster.url(i)).collect(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    async fn json(&self, url: String) -> Option<(u16, Option<String>, Vec<u8>)> {
        let r = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .ok()?;
        let status = r.status().as_u16();
        let ctx = r
            .headers()
            .get("x-dynkv-context")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.bytes().await.ok()?;
        Some((status, ctx, body.to_vec()))
    }

    async fn placements(&self, keys: &[String]) -> BTreeMap<String, Vec<usize>> {
        futures::stream::iter(keys.iter().cloned())
            .map(|k| async move {
                let url = format!(
                    "{}/admin/ring?key={}",
                    self.urls[0],
                    dynkv_tests::encode_key(&k)
                );
                for _ in 0..5 {
                    if let Some((200, _, b)) = self.json(url.clone()).await
                        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b)
                    {
                        let p = v["preference_list"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|n| n.as_str()?.trim_start_matches('n').parse().ok())
                            .collect();
                        return (k, p);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                (k, Vec::new())
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await
    }

    /// `/admin/local/{key}` on every node, for every key.
    async fn local_views(&self, keys: &[String]) -> BTreeMap<String, Vec<ObjectView>> {
        let jobs = keys
            .iter()
            .flat_map(|k| (1..=self.urls.len()).map(move |i| (k.clone(), i)));
        let views: Vec<(String, ObjectView)> = futures::stream::iter(jobs)
            .map(|(k, i)| async move {
                let url = format!(
                    "{}/admin/local/{}",
                    self.urls[i - 1],
                    dynkv_tests::encode_key(&k)
                );
                let view = match self.json(url).await {
                    Some((status, _, b)) => {
                        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                        let (values, tombstones) = siblings(&b);
                        ObjectView {
                            node: i,
                            status,
                            found: v["found"].as_bool().unwrap_or(false),
                            context: v["context"].as_str().map(str::to_string),
                            values,
                            tombstones,
                            hints: v["hints"].as_array().map_or(0, Vec::len),
                        }
                    }
                    None => ObjectView {
                        node: i,
                        status: 0,
                        ..ObjectView::default()
                    },
                };
                (k, view)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        by_key(views)
    }

    /// `GET ?r=all&sloppy=false` through every node, for every key (a few
    /// tries each: a read may race the last repairs).
    async fn reads_all(&self, keys: &[String]) -> BTreeMap<String, Vec<ObjectView>> {
        let jobs = keys
            .iter()
            .flat_map(|k| (1..=self.urls.len()).map(move |i| (k.clone(), i)));
        let views: Vec<(String, ObjectView)> = futures::stream::iter(jobs)
            .map(|(k, i)| async move {
                let url = format!(
                    "{}/kv/{}?r=all&sloppy=false&timeout_ms=5000",
                    self.urls[i - 1],
                    dynkv_tests::encode_key(&k)
                );
                let mut view = ObjectView {
                    node: i,
                    ..ObjectView::default()
                };
                for attempt in 0..5 {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    let Some((status, ctx, b)) = self.json(url.clone()).await else {
                        continue;
                    };
                    view.status = status;
                    view.context = ctx;
                    (view.values, view.tombstones) = match status {
                        200 => (vec![String::from_utf8_lossy(&b).into_owned()], 0),
                        300 => siblings(&b),
                        _ => (Vec::new(), 0),
                    };
                    if matches!(status, 200 | 300 | 404) {
                        break;
                    }
                }
                (k, view)
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        by_key(views)
    }
}

/// Groups per-node views by key, each key's views in node order.
fn by_key(views: Vec<(String, ObjectView)>) -> BTreeMap<String, Vec<ObjectView>> {
    let mut out: BTreeMap<String, Vec<ObjectView>> = BTreeMap::new();
    for (k, v) in views {
        out.entry(k).or_default().push(v);
    }
    for v in out.values_mut() {
        v.sort_by_key(|c| c.node);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_records_the_reaping_the_nodes_got() {
        let short = Some(ReapSettings::CHAOS);
        assert_eq!(effective_reap(short, &[]), short);
        assert_eq!(effective_reap(None, &[]), None);
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        // --node-env overrides come last.
        assert_eq!(
            effective_reap(short, &env("DYNKV__STORAGE__TOMBSTONE_GRACE_MS", "9000")),
            Some(ReapSettings {
                grace_ms: 9_000,
                ..ReapSettings::CHAOS
            })
        );
        assert_eq!(
            effective_reap(short, &env("DYNKV__STORAGE__REAP_INTERVAL_MS", "0")),
            None
        );
        // Reaping off, turned on by hand: the node's defaults for the rest.
        assert_eq!(
            effective_reap(None, &env("DYNKV__STORAGE__REAP_INTERVAL_MS", "500")),
            Some(ReapSettings {
                grace_ms: 600_000,
                settle_ms: 60_000,
                interval_ms: 500,
            })
        );
        assert_eq!(
            reap_node_settings(None),
            vec![("DYNKV__STORAGE__REAP_INTERVAL_MS", "0".to_string())]
        );
    }
}
