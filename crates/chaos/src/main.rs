//! `dynkv-chaos`: run a seeded fault-injection schedule against a cluster of
//! real `dynkv` processes and check the history (see the library docs), or
//! re-check a saved history with `--check`.
//!
//! Exit status: 0 when every check passed, 1 when one failed, 2 on a usage
//! or I/O error.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use dynkv_chaos::history::ReapSettings;
use dynkv_chaos::report::render;
use dynkv_chaos::run::{RunConfig, run};
use dynkv_chaos::schedule::FaultMix;
use dynkv_chaos::workload::WorkloadConfig;
use dynkv_chaos::{History, check};

#[derive(Parser, Debug)]
#[command(
    name = "dynkv-chaos",
    about = "Fault injection (partitions, kill -9, pauses, lost disks, power cuts, full disks, clock skew) against real dynkv processes, with a history checker"
)]
struct Args {
    /// Seed of the fault schedule and of the clients' choices (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Length of the fault phase: seconds, or with a unit (`90s`, `3m`).
    #[arg(long, default_value = "60", value_parser = parse_duration)]
    duration: Duration,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Replicas per key (N).
    #[arg(long, default_value_t = 3)]
    n_val: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 6)]
    clients: usize,
    /// Hot keys (most operations; siblings happen here).
    #[arg(long, default_value_t = 6)]
    hot_keys: usize,
    /// Cold keys (rarely written; resurrections are checked here).
    #[arg(long, default_value_t = 120)]
    cold_keys: usize,
    /// Pause between a client's operations, ms.
    #[arg(long, default_value_t = 10)]
    think_ms: u64,
    /// timeout_ms of every request.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// Stop the clients after this many operations in all.
    #[arg(long)]
    max_ops: Option<u64>,
    /// How long replicas may take to converge after healing: seconds or with a unit.
    #[arg(long, default_value = "120", value_parser = parse_duration)]
    convergence_bound: Duration,
    /// No partitions or cuts.
    #[arg(long)]
    no_partitions: bool,
    /// No kill -9.
    #[arg(long)]
    no_kills: bool,
    /// No SIGSTOP.
    #[arg(long)]
    no_pauses: bool,
    /// No disk or clock faults at all (wipe, power cut, disk full, clock skew).
    #[arg(long)]
    no_disk_faults: bool,
    /// No lost disks (kill, wipe the data dir, restart empty under the same id).
    #[arg(long)]
    no_wipe: bool,
    /// No power cuts (kill, drop what was not fsynced, restart).
    #[arg(long)]
    no_power_cut: bool,
    /// No full disks.
    #[arg(long)]
    no_disk_full: bool,
    /// No skewed wall clocks.
    #[arg(long)]
    no_clock_skew: bool,
    /// No live membership changes (a sixth node joining and leaving).
    #[arg(long)]
    no_membership: bool,
    /// Tombstone grace of the nodes (storage.tombstone_grace_ms): keys
    /// deleted during the run are reaped during it, and the checker
    /// accepts what reaping removes (docs/CHAOS.md).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    reap_grace: Duration,
    /// Least time between the two checks that confirm a key for reaping
    /// (storage.reap_settle_ms).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    reap_settle: Duration,
    /// Pause between reaping passes (storage.reap_interval_ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    reap_interval: Duration,
    /// No tombstone reaping (storage.reap_interval_ms = 0): every
    /// acknowledged delete must keep its tombstone.
    #[arg(long, conflicts_with_all = ["reap_grace", "reap_settle", "reap_interval"])]
    no_reap: bool,
    /// No change feed consumer (and so no feed check).
    #[arg(long)]
    no_feed: bool,
    /// The dynkv binary (default: $DYNKV_BIN, else `dynkv` next to this program).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Directory for history.jsonl, report.json and node logs (default: target/chaos/seed-<S>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the report (the figures) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Extra node setting for every node, `DYNKV__SECTION__KEY=value` (repeatable).
    #[arg(long = "node-env", value_name = "KEY=VALUE")]
    node_env: Vec<String>,
    /// Do not run anything: check this saved history.jsonl and print the report.
    #[arg(long, value_name = "HISTORY")]
    check: Option<PathBuf>,
    /// Less progress output.
    #[arg(long)]
    quiet: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(m) = s.strip_suffix("ms") {
        (m, 1)
    } else if let Some(m) = s.strip_suffix('s') {
        (m, 1_000)
    } else if let Some(m) = s.strip_suffix('m') {
        (m, 60_000)
    } else {
        (s, 1_000)
    };
    num.trim()
        .parse::<u64>()
        .map(|n| Duration::from_millis(n * mult))
        .map_err(|_| format!("not a duration: {s:?} (e.g. 90, 90s, 3m, 500ms)"))
}

fn default_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DYNKV_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let sibling = exe.parent()?.join("dynkv");
    sibling.exists().then_some(sibling)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    std::process::exit(match main_inner(args).await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("dynkv-chaos: {e}");
            2
        }
    });
}

async fn main_inner(args: Args) -> Result<bool, String> {
    let report = if let Some(path) = &args.check {
        let h = History::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
        check(&h)
    } else {
        let seed = args.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("target/chaos/seed-{seed}")));
        let mut env = Vec::new();
        for kv in &args.node_env {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--node-env wants KEY=VALUE, got {kv:?}"))?;
            env.push((k.to_string(), v.to_string()));
        }
        let binary = args.bin.clone().or_else(default_binary);
        let cfg = RunConfig {
            seed,
            duration: args.duration,
            nodes: args.nodes,
            n_val: args.n_val,
            workload: WorkloadConfig {
                clients: args.clients,
                hot_keys: args.hot_keys,
                cold_keys: args.cold_keys,
                think_ms: args.think_ms,
                timeout_ms: args.timeout_ms,
                max_ops: args.max_ops.unwrap_or(u64::MAX),
                ..WorkloadConfig::default()
            },
            faults: FaultMix {
                network: !args.no_partitions,
                kill: !args.no_kills,
                pause: !args.no_pauses,
                membership: !args.no_membership,
                wipe: !(args.no_disk_faults || args.no_wipe),
                power_cut: !(args.no_disk_faults || args.no_power_cut),
                disk_full: !(args.no_disk_faults || args.no_disk_full),
                clock_skew: !(args.no_disk_faults || args.no_clock_skew),
                ..FaultMix::default()
            },
            convergence_bound: args.convergence_bound,
            binary,
            out_dir: Some(out.clone()),
            env,
            reap: (!args.no_reap && !args.reap_interval.is_zero()).then_some(ReapSettings {
                grace_ms: args.reap_grace.as_millis() as u64,
                settle_ms: args.reap_settle.as_millis() as u64,
                interval_ms: args.reap_interval.as_millis() as u64,
            }),
            verbose: !args.quiet,
            feed: !args.no_feed,
        };
        eprintln!(
            "dynkv-chaos: seed {seed}, {} nodes, {:?} of faults, {}; history in {}",
            cfg.nodes,
            cfg.duration,
            match cfg.reap {
                Some(r) => format!(
                    "reaping after {} ms (settle {} ms, passes every {} ms)",
                    r.grace_ms, r.settle_ms, r.interval_ms
                ),
                None => "no reaping".to_string(),
            },
            out.join("history.jsonl").display()
        );
        run(cfg)
            .await
            .map_err(|e| format!("run failed: {e}"))?
            .report
    };
    print!("{}", render(&report));
    if let Some(j) = &args.json {
        std::fs::write(j, serde_json::to_vec_pretty(&report).expect("serialisable"))
            .map_err(|e| format!("{}: {e}", j.display()))?;
    }
    Ok(report.passed)
}
