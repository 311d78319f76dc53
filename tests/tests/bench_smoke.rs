//! `dynkv bench` end to end: the generator, run as the real subcommand
//! against a real node, measures something and sees no errors. It checks
//! that the benchmark works, not how fast anything is.

use dynkv_tests::{Cluster, ClusterOptions, dynkv_bin};

#[tokio::test]
async fn bench_against_one_node_reports_ops_and_no_errors() {
    let c = Cluster::start(1, ClusterOptions::default().set("DYNKV__CLUSTER__N_VAL", 1)).await;
    let json = c.dir.path().join("bench.json");
    let out = tokio::process::Command::new(dynkv_bin())
        .arg("bench")
        .args(["--targets", &c.url(1)])
        .args(["--connections", "4"])
        .args(["--duration", "5s", "--ops", "5000"])
        .args(["--keys", "500", "--preload", "--value-size", "256"])
        .args(["--mix", "get=45,put=45,delete=10"])
        .args(["--label", "smoke"])
        .arg("--json")
        .arg(&json)
        .output()
        .await
        .expect("run dynkv bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dynkv bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(stdout.contains("ops/s"), "no summary:\n{stdout}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("JSON report written"))
            .expect("JSON report parses");
    let total = &report["total"];
    assert!(total["ops"].as_u64().unwrap() > 0, "{report:#}");
    assert!(total["ops"].as_u64().unwrap() <= 5000, "{report:#}");
    assert_eq!(total["errors"], 0, "{report:#}");
    assert_eq!(report["preload"]["keys"], 500);
    assert_eq!(report["preload"]["failed_keys"], 0);
    assert_eq!(report["label"], "smoke");
    for op in ["get", "put", "delete"] {
        let r = &report["per_op"][op];
        assert!(
            r["ops"].as_u64().unwrap() > 0,
            "no {op} measured: {report:#}"
        );
        assert!(r["latency_us"]["p50"].as_u64().unwrap() > 0);
    }
}
