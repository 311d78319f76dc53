//! A short seeded run with only disk and clock faults: a wiped disk, a
//! power cut, a full disk and skewed clocks, one at a time, on five real
//! nodes under the harness's fault layer, then the full check (W >= 2 for
//! every write, since nodes lose data).
//!
//! `cargo build --workspace --bins && cargo nextest run -p dynkv-chaos --test disk_faults`
//!
//! On failure the history, report and node logs stay under the target
//! directory's `tmp/chaos-disk-faults`; `dynkv-chaos --check
//! <dir>/history.jsonl` re-checks it.

use std::time::Duration;

use dynkv_chaos::report::render;
use dynkv_chaos::run::{RunConfig, run};
use dynkv_chaos::schedule::{FaultMix, generate};
use dynkv_chaos::workload::WorkloadConfig;

/// Its 60 s schedule holds every kind: wipe_disk at 5 s, clock_skew at 16 s
/// and 23 s, disk_full at 32 s, power_cut at 44 s.
const SEED: u64 = 20_261_127;

fn mix() -> FaultMix {
    FaultMix {
        network: false,
        kill: false,
        pause: false,
        membership: false,
        disk_share: 1.0,
        ..FaultMix::default()
    }
}

#[test]
fn the_seed_schedules_every_disk_and_clock_fault() {
    let names: Vec<&str> = generate(SEED, 60_000, 5, &mix())
        .iter()
        .map(|s| s.action.name())
        .collect();
    for kind in ["wipe_disk", "disk_full", "clock_skew"] {
        assert!(names.contains(&kind), "{kind} missing from {names:?}");
    }
    assert!(
        names.contains(&"power_cut") || names.contains(&"power_cut_torn"),
        "no power cut in {names:?}"
    );
}

/// The full node answers writes 507 while its disk is full
/// (`disk_full_answers`), stays up, and takes writes again once space is
/// back; nothing acknowledged is lost and nothing deleted comes back through
/// the wipe and the power cut (docs/CHAOS.md, "Disk and clock faults").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_lost_disks_power_cuts_full_disks_and_skewed_clocks_loses_no_acknowledged_write()
 {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("chaos-disk-faults");
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
        faults: mix(),
        convergence_bound: Duration::from_secs(60),
        out_dir: Some(out.clone()),
        verbose: true,
        ..RunConfig::default()
    };
    let result = run(cfg).await.expect("run");
    let r = &result.report;
    let text = render(r);
    println!("{text}");
    let done = |k: &str| r.faults.get(k).copied().unwrap_or(0);
    assert!(done("wipe_disk") >= 1, "no wipe:\n{text}");
    assert!(
        done("power_cut") + done("power_cut_torn") >= 1,
        "no power cut:\n{text}"
    );
    assert!(done("disk_full") >= 1, "no full disk:\n{text}");
    assert!(done("clock_skew") >= 1, "no skewed clock:\n{text}");
    assert_eq!(
        r.faults_failed, 0,
        "some fault could not be carried out:\n{text}"
    );
    assert_eq!(r.min_w, 2, "writes must ask W >= 2 when nodes lose data");
    assert!(r.writes.acknowledged > 500, "too few writes:\n{text}");
    assert!(
        !r.disk_full_answers.is_empty(),
        "no client went through the full node:\n{text}"
    );
    let answered = |status: &str| -> u64 {
        r.disk_full_answers
            .iter()
            .filter(|(k, _)| k.ends_with(&format!(" {status}")))
            .map(|(_, n)| n)
            .sum()
    };
    assert!(
        answered("507") > 0,
        "no write was refused with 507 by the full node:\n{text}"
    );
    assert_eq!(
        answered("500"),
        0,
        "a full disk is a 507, not a 500:\n{text}"
    );
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
