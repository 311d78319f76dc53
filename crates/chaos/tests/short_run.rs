//! A short, bounded, seeded fault-injection run for CI: five real nodes,
//! partitions, kill -9 and pauses for a minute, then the full check.
//!
//! Run alone with `cargo nextest run -p dynkv-chaos --test short_run`
//! (after `cargo build --workspace --bins`, which builds the `dynkv` binary
//! the harness starts). On failure the history, report and node logs are
//! kept under the target directory's `tmp/chaos-short-run`.

use std::time::Duration;

use dynkv_chaos::report::render;
use dynkv_chaos::run::{RunConfig, run};
use dynkv_chaos::schedule::FaultMix;
use dynkv_chaos::workload::WorkloadConfig;

/// Fixed so that CI runs the same schedule every time; change it to explore.
const SEED: u64 = 20_261_125;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_partitions_kills_and_pauses_loses_no_acknowledged_write() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos-short-run");
    let _ = std::fs::remove_dir_all(&out);
    let cfg = RunConfig {
        seed: SEED,
        duration: Duration::from_secs(60),
        nodes: 5,
        workload: WorkloadConfig {
            clients: 5,
            max_ops: 20_000,
            ..WorkloadConfig::default()
        },
        convergence_bound: Duration::from_secs(60),
        out_dir: Some(out.clone()),
        verbose: true,
        // Disk and clock faults have their own run (disk_faults.rs): this
        // one keeps the schedule it always had.
        faults: FaultMix::default().without_disk_faults(),
        ..RunConfig::default()
    };
    let result = run(cfg).await.expect("run");
    let r = &result.report;
    let text = render(r);
    println!("{text}");
    // The run really injected faults and really wrote.
    assert!(
        r.faults.get("kill").copied().unwrap_or(0)
            + r.faults.get("pause").copied().unwrap_or(0)
            + r.faults.get("isolate").copied().unwrap_or(0)
            + r.faults.get("partition_random").copied().unwrap_or(0)
            + r.faults.get("partition_majority").copied().unwrap_or(0)
            + r.faults.get("cut_asymmetric").copied().unwrap_or(0)
            >= 3,
        "too few faults injected:\n{text}"
    );
    assert!(r.writes.acknowledged > 500, "too few writes:\n{text}");
    assert_eq!(
        r.writes.lost,
        0,
        "lost writes (history in {}):\n{text}",
        out.display()
    );
    assert!(r.resurrections.is_empty(), "resurrections:\n{text}");
    assert!(
        r.convergence.converged && r.convergence.diverged.is_empty(),
        "no convergence:\n{text}"
    );
    assert!(
        r.passed,
        "checks failed (history in {}):\n{text}",
        out.display()
    );
    let _ = std::fs::remove_dir_all(&out);
}
