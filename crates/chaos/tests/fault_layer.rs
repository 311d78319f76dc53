//! The disk and clock fault layer of the harness (`tests/faults/dynkv_faults.c`,
//! `dynkv_tests::faults`), first on plain programs (coreutils under the
//! layer, so what it records and drops is exact and independent of dynkv),
//! then on real `dynkv` nodes.
//!
//! `cargo nextest run -p dynkv-chaos --test fault_layer` (the node tests need
//! `cargo build --workspace --bins` first).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dynkv_tests::faults::{self, NodeFaults, Unsynced};
use dynkv_tests::{Cluster, ClusterOptions};

/// A data dir and its fault files in a fresh temporary directory.
fn layer(tmp: &Path) -> NodeFaults {
    let so = faults::layer_path().expect("build the fault layer");
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    NodeFaults::create(so, &tmp.join("faults"), &data).unwrap()
}

/// Runs `script` with `sh` under the layer, `$D` being the data dir.
fn sh(f: &NodeFaults, script: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("D", &f.data_dir)
        .envs(f.env())
        .output()
        .expect("run sh")
}

fn read(f: &NodeFaults, name: &str) -> String {
    String::from_utf8(std::fs::read(f.data_dir.join(name)).unwrap()).unwrap()
}

#[test]
fn a_power_cut_keeps_exactly_what_was_fsynced() {
    let tmp = tempfile::tempdir().unwrap();
    let f = layer(tmp.path());
    let out = sh(
        &f,
        r#"set -e
        printf abc > "$D/a"; sync "$D/a"; printf def >> "$D/a"
        printf xyz > "$D/b"
        printf 123 > "$D/c"; sync -d "$D/c"; mv "$D/c" "$D/c2"; printf 45 >> "$D/c2"
        printf keep > "$D/d"; sync "$D/d"; rm "$D/d"; printf new > "$D/e"
        mkdir "$D/sub"; printf 12345 > "$D/sub/f"; sync "$D/sub/f"; printf 678 >> "$D/sub/f"
        printf synced > "$D/g"; sync "$D/g"
        "#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&f, "a"), "abcdef", "nothing is dropped before the cut");
    let report = faults::drop_unsynced(&f, Unsynced::DropAll).unwrap();
    assert_eq!(
        read(&f, "a"),
        "abc",
        "the tail after the last fsync is gone"
    );
    assert_eq!(read(&f, "b"), "", "a file never synced keeps nothing");
    assert_eq!(
        read(&f, "c2"),
        "123",
        "a sync point follows the file through a rename"
    );
    assert_eq!(
        read(&f, "e"),
        "",
        "a new file does not inherit the sync point of a deleted one"
    );
    assert_eq!(read(&f, "sub/f"), "12345", "subdirectories too");
    assert_eq!(read(&f, "g"), "synced", "a file synced whole loses nothing");
    assert_eq!(report.files, 6);
    assert_eq!(report.bytes_dropped(), 3 + 3 + 2 + 3 + 3);
    let names: Vec<&str> = report.cut.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c2", "e", "sub/f"]);
    // What is left is durable now: a second cut drops nothing.
    let again = faults::drop_unsynced(&f, Unsynced::DropAll).unwrap();
    assert_eq!(again.bytes_dropped(), 0, "{}", again.summary());
    // Writing on after the cut: only the new tail is at risk.
    let out = sh(&f, r#"printf XY >> "$D/a""#);
    assert!(out.status.success());
    faults::drop_unsynced(&f, Unsynced::DropAll).unwrap();
    assert_eq!(read(&f, "a"), "abc");
}

#[test]
fn a_torn_power_cut_keeps_a_prefix_of_the_unsynced_tail() {
    let mut kept = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let tmp = tempfile::tempdir().unwrap();
        let f = layer(tmp.path());
        let out = sh(
            &f,
            r#"printf 0123 > "$D/w"; sync "$D/w"; printf 456789 >> "$D/w""#,
        );
        assert!(out.status.success());
        faults::drop_unsynced(&f, Unsynced::KeepRandomPrefix(seed)).unwrap();
        let w = read(&f, "w");
        assert!(
            "0123456789".starts_with(&w) && w.len() >= 4,
            "seed {seed}: {w:?} is not the synced part plus a prefix of the rest"
        );
        kept.insert(w.len());
    }
    assert!(
        kept.len() > 3,
        "the kept length should vary with the seed: {kept:?}"
    );
}

#[test]
fn a_full_disk_fails_writes_under_the_data_dir_only_until_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let f = layer(tmp.path());
    let outside = tmp.path().join("outside");
    f.set_disk_full(true).unwrap();
    assert_eq!(f.state().unwrap(), (true, 0));
    // (dd calls write(2) itself; stdio inside libc would not be seen.)
    let out = sh(&f, r#"printf x | dd of="$D/a" status=none"#);
    assert!(!out.status.success(), "a write on a full disk succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left on device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&f, "a"), "");
    let out = sh(&f, &format!("printf x > '{}'", outside.display()));
    assert!(
        out.status.success(),
        "a write outside the data dir must go through"
    );
    // fallocate (RocksDB preallocates its WAL this way) fails too.
    let out = sh(&f, r#"fallocate -l 1M "$D/pre""#);
    assert!(!out.status.success(), "fallocate on a full disk succeeded");
    f.set_disk_full(false).unwrap();
    let out = sh(&f, r#"printf x > "$D/a" && fallocate -l 1M "$D/pre""#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(&f, "a"), "x");
}

fn date_under(f: &NodeFaults) -> i64 {
    let out = sh(f, "date +%s");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_skewed_clock_moves_the_wall_clock_both_ways_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let f = layer(tmp.path());
    assert!((date_under(&f) - now_s()).abs() <= 1);
    f.set_clock_offset_ms(3_600_000).unwrap();
    assert!((date_under(&f) - now_s() - 3_600).abs() <= 1);
    f.set_clock_offset_ms(-90_000).unwrap();
    assert!((date_under(&f) - now_s() + 90).abs() <= 1);
    assert_eq!(f.state().unwrap(), (false, -90_000));
    // A timed wait keeps its length: `timeout` counts on the monotonic
    // clock, `sleep` too; the skew must not make them return early or hang.
    let t = std::time::Instant::now();
    let out = sh(&f, "sleep 0.3");
    assert!(out.status.success());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    f.set_clock_offset_ms(0).unwrap();
    assert!((date_under(&f) - now_s()).abs() <= 1);
}

// ---- on real nodes ----

/// A one-node cluster under the layer (N=1, so a read shows exactly what
/// this node kept).
async fn one_node(extra: &[(&str, &str)]) -> Cluster {
    let mut opts = ClusterOptions {
        n_val: 1,
        ..ClusterOptions::default()
    }
    .with_fault_layer();
    for (k, v) in extra {
        opts = opts.set(k, v);
    }
    Cluster::start(1, opts).await
}

async fn write_keys(c: &Cluster, n: usize) {
    for i in 0..n {
        let r = c
            .put(1, &format!("k{i}"), &format!("v{i}"), "w=1", None)
            .await;
        assert!(r.status.is_success(), "put k{i}: {} {}", r.status, r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_synced_writes_a_power_cut_loses_no_acknowledged_write() {
    let mut c = one_node(&[("DYNKV__STORAGE__SYNC_WRITES", "true")]).await;
    write_keys(&c, 40).await;
    let report = c.power_cut(1).await;
    println!("{}", report.summary());
    for i in 0..40 {
        let r = c.get(1, &format!("k{i}"), "r=1").await;
        assert_eq!(r.status.as_u16(), 200, "k{i} lost: {}", report.summary());
        assert_eq!(r.text(), format!("v{i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_synced_writes_a_power_cut_loses_only_a_suffix_of_the_writes() {
    let mut c = one_node(&[]).await;
    write_keys(&c, 40).await;
    let report = c.power_cut(1).await;
    println!("{}", report.summary());
    let mut present = Vec::new();
    for i in 0..40 {
        let r = c.get(1, &format!("k{i}"), "r=1").await;
        match r.status.as_u16() {
            200 => {
                assert_eq!(r.text(), format!("v{i}"), "k{i} came back different");
                present.push(true);
            }
            404 => present.push(false),
            s => panic!("k{i}: {s} {}", r.text()),
        }
    }
    // The WAL is replayed up to the cut: what survives is a prefix.
    let kept = present.iter().take_while(|p| **p).count();
    assert!(
        present[kept..].iter().all(|p| !p),
        "not a prefix: {present:?}"
    );
    println!("kept {kept} of 40 unsynced writes");
    // The node took writes again after the cut.
    write_keys(&c, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_comes_back_under_its_id_and_is_repaired() {
    let mut c = Cluster::start(
        3,
        ClusterOptions::default().set("DYNKV__ANTIENTROPY__EXCHANGE_INTERVAL_MS", "200"),
    )
    .await;
    for i in 0..20 {
        let r = c
            .put(1, &format!("k{i}"), &format!("v{i}"), "w=all", None)
            .await;
        assert!(r.status.is_success(), "{} {}", r.status, r.text());
    }
    c.wipe_disk(2).await;
    let data = c.node(2).data_dir().to_path_buf();
    assert!(data.exists(), "the node made a new data dir");
    // Anti-entropy (and nothing else: no reads) puts every key back on n2.
    let repaired = dynkv_tests::poll(Duration::from_secs(60), || async {
        for i in 0..20 {
            if c.local_values(2, &format!("k{i}")).await != vec![format!("v{i}")] {
                return false;
            }
        }
        true
    })
    .await;
    assert!(repaired, "n2 was not repaired within 60 s");
}

/// The `Date` header of an answer, as Unix seconds (IMF-fixdate).
fn http_date(s: &str) -> i64 {
    // "Tue, 01 Dec 2026 11:12:13 GMT"
    let p: Vec<&str> = s.split([' ', ':']).collect();
    let (d, y): (i64, i64) = (p[1].parse().unwrap(), p[3].parse().unwrap());
    let m = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|x| *x == p[2])
    .unwrap() as i64
        + 1;
    let (hh, mm, ss): (i64, i64, i64) = (
        p[4].parse().unwrap(),
        p[5].parse().unwrap(),
        p[6].parse().unwrap(),
    );
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + hh * 3_600 + mm * 60 + ss
}

async fn node_clock(c: &Cluster) -> i64 {
    let r = c
        .http
        .get(format!("{}/health", c.url(1)))
        .send()
        .await
        .unwrap();
    http_date(r.headers()["date"].to_str().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_node_keeps_serving_with_its_wall_clock_off() {
    let mut c = one_node(&[]).await;
    assert!((node_clock(&c).await - now_s()).abs() <= 2);
    c.skew_clock(1, 45_000).unwrap();
    // hyper caches its Date header for up to a second.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!((node_clock(&c).await - now_s() - 45).abs() <= 2);
    write_keys(&c, 5).await;
    // A step back: hyper keeps its cached Date until its clock passes the
    // cached second again (as it would on a real machine), so look at a
    // fresh process; the offset lasts across restarts.
    c.skew_clock(1, -45_000).unwrap();
    c.kill(1);
    c.restart(1).await;
    assert!((node_clock(&c).await - now_s() + 45).abs() <= 2);
    let r = c.get(1, "k4", "r=1").await;
    assert_eq!(r.text(), "v4");
    c.skew_clock(1, 0).unwrap();
}

/// A full disk: the write answers 507 `insufficient_storage` (the node does
/// not abort in RocksDB, as it did before 2026-12-01: `writable_file_writer.h:312:
/// Assertion 'sync_without_flush_called_' failed`, from its info log), reads
/// are served, later writes are refused at once, and once space is back the
/// node reopens its database within seconds and takes writes again, having
/// lost nothing it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_the_node_recovers_when_space_returns() {
    let mut c = one_node(&[]).await;
    write_keys(&c, 3).await;
    c.disk_full(1, true).unwrap();
    let r = c.put(1, "full", "x", "w=1", None).await;
    println!("PUT on a full disk: {} {}", r.status, r.text());
    assert_eq!(
        r.status.as_u16(),
        507,
        "a full disk should answer 507: {} {}",
        r.status,
        r.text()
    );
    assert_eq!(r.json()["code"], "insufficient_storage", "{}", r.text());
    // Reads still work.
    assert_eq!(c.get(1, "k1", "r=1").await.text(), "v1");
    // Space stays gone for a few recovery rounds: every write is refused at
    // once, a DELETE too, and the node stays up.
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let r = c.put(1, &format!("full{round}"), "x", "w=1", None).await;
        assert_eq!(r.status.as_u16(), 507, "round {round}: {}", r.text());
        assert_eq!(c.get(1, "k2", "r=1").await.text(), "v2");
    }
    let r = c.delete(1, "k0", "w=1", None).await;
    assert_eq!(r.status.as_u16(), 507, "{}", r.text());
    assert!(c.is_running(1), "the node died on a full disk");
    assert_eq!(c.metric(1, "dynkv_storage_state", "").await, 1.0);
    assert!(
        c.metric(1, "dynkv_writes_refused_total", "insufficient_storage")
            .await
            >= 5.0
    );
    c.disk_full(1, false).unwrap();
    let back = dynkv_tests::poll(Duration::from_secs(30), || async {
        c.put(1, "after", "y", "w=1", None)
            .await
            .status
            .is_success()
    })
    .await;
    assert!(
        back,
        "the node did not take writes again within 30 s of space returning"
    );
    assert_eq!(c.get(1, "after", "r=1").await.text(), "y");
    // Nothing acknowledged was lost, nothing refused was stored.
    for i in 0..3 {
        let r = c.get(1, &format!("k{i}"), "r=1").await;
        assert_eq!(r.text(), format!("v{i}"), "k{i} after the reopen");
    }
    for k in ["full", "full0", "full1", "full2"] {
        let r = c.get(1, k, "r=1").await;
        assert_eq!(r.status.as_u16(), 404, "{k} was refused, yet: {}", r.text());
    }
    assert!(c.is_running(1));
    assert_eq!(c.metric(1, "dynkv_storage_reopens_total", "").await, 1.0);
    assert_eq!(c.metric(1, "dynkv_storage_state", "").await, 0.0);
    let log = std::fs::read_to_string(c.node(1).log_path()).unwrap();
    assert!(log.contains("the store refuses writes"), "{log}");
    assert!(log.contains("storage recovered"), "{log}");
    // And it survives a restart (the reopened database is a sound one).
    c.kill(1);
    c.restart(1).await;
    assert_eq!(c.get(1, "after", "r=1").await.text(), "y");
    assert_eq!(c.get(1, "k2", "r=1").await.text(), "v2");
}
