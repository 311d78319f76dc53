//! Replication, quorums, siblings, forwarding and crash recovery across
//! real `dynkv` processes, driven over their public HTTP API.

use std::time::Duration;

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};

#[tokio::test]
async fn quorum_write_is_readable_at_quorum_from_every_node() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let r = c.put(1, "greeting", "hello", "w=quorum", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(r.context.is_some());
    for i in 1..=3 {
        let g = c.get(i, "greeting", "r=quorum").await;
        assert_eq!(g.status, StatusCode::OK, "node {i}: {}", g.text());
        assert_eq!(g.text(), "hello");
        assert_eq!(g.content_type.as_deref(), Some("text/plain"));
        assert!(g.context.is_some());
    }
}

#[tokio::test]
async fn concurrent_writes_through_two_nodes_become_siblings_and_a_context_resolves_them() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let (a, b) = tokio::join!(
        c.put(1, "cart", "apples", "", None),
        c.put(2, "cart", "pears", "", None)
    );
    assert!(a.status.is_success() && b.status.is_success());
    let g = c.get(3, "cart", "r=all").await;
    assert_eq!(g.status, StatusCode::MULTIPLE_CHOICES, "{}", g.text());
    assert_eq!(g.values(), vec!["apples", "pears"]);
    // The multipart form carries both too.
    let mp = c
        .http
        .get(c.key_url(1, "cart", "r=all"))
        .send()
        .await
        .unwrap();
    assert_eq!(mp.status(), StatusCode::MULTIPLE_CHOICES);
    let ct = mp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("multipart/mixed; boundary="), "{ct}");
    let body = mp.text().await.unwrap();
    assert!(body.contains("apples") && body.contains("pears"));
    // Resolve with the context of the 300.
    let ctx = g.json()["context"].as_str().unwrap().to_string();
    let r = c.put(3, "cart", "apples+pears", "w=all", Some(&ctx)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for i in 1..=3 {
        let g = c.get(i, "cart", "r=all").await;
        assert_eq!(g.status, StatusCode::OK, "{}", g.text());
        assert_eq!(g.text(), "apples+pears");
        assert_eq!(c.local_values(i, "cart").await, vec!["apples+pears"]);
    }
}

#[tokio::test]
async fn delete_with_context_is_404_everywhere_and_a_stale_write_survives_as_sibling() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let w = c.put(1, "doomed", "v1", "w=all", None).await;
    let stale_ctx = w.context.clone().unwrap();
    let g = c.get(2, "doomed", "r=all").await;
    let d = c.delete(2, "doomed", "w=all", g.context.as_deref()).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text());
    for i in 1..=3 {
        let g = c.get(i, "doomed", "r=all").await;
        assert_eq!(g.status, StatusCode::NOT_FOUND, "{}", g.text());
        assert!(
            g.context.is_some(),
            "404 of a deleted key carries its context"
        );
        assert_eq!(g.json()["code"], "not_found");
    }
    // A writer that only saw v1 writes concurrently with the delete.
    let late = c.put(3, "doomed", "late", "w=all", Some(&stale_ctx)).await;
    assert!(late.status.is_success());
    let g = c.get(1, "doomed", "r=all").await;
    assert_eq!(g.status, StatusCode::MULTIPLE_CHOICES, "{}", g.text());
    let sib = g.json();
    let sibs = sib["siblings"].as_array().unwrap();
    assert_eq!(sibs.len(), 2);
    assert!(sibs.iter().any(|s| s["deleted"] == true));
    assert_eq!(g.values(), vec!["late"]);
}

#[tokio::test]
async fn a_write_through_a_node_outside_the_preference_list_is_forwarded() {
    let c = Cluster::start(5, ClusterOptions::default()).await;
    let key = c.find_key("fwd", |p, _| !p.contains(&5)).await;
    let r = c.put(5, &key, "via-n5", "w=all", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(c.metric(5, "dynkv_writes_forwarded_total", "").await, 1.0);
    let (primaries, _) = c.placement(1, &key).await;
    for p in primaries {
        assert_eq!(
            c.local_values(p, &key).await,
            vec!["via-n5"],
            "primary n{p}"
        );
    }
    assert!(c.local_values(5, &key).await.is_empty(), "n5 keeps no copy");
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_write() {
    let mut c = Cluster::start(
        3,
        ClusterOptions::default().set("DYNKV__READ_REPAIR__ENABLED", "false"),
    )
    .await;
    let mut acked = Vec::new();
    for i in 0..40 {
        let key = format!("before-{i}");
        let r = c.put(1 + i % 3, &key, &format!("v{i}"), "w=2", None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        acked.push((key, format!("v{i}")));
    }
    // n3 holds every key (N=3 on 3 nodes) once replication, which W=2 did
    // not wait for, reached it.
    for (k, v) in &acked {
        let held = poll(Duration::from_secs(10), || async {
            c.local_values(3, k).await == vec![v.clone()]
        })
        .await;
        assert!(held, "n3 never received {k}");
    }
    c.kill(3);
    for i in 0..40 {
        let key = format!("during-{i}");
        let r = c.put(1 + i % 2, &key, &format!("d{i}"), "w=2", None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
        acked.push((key, format!("d{i}")));
    }
    c.restart(3).await;
    c.wait_sees_all_up(1).await;
    c.wait_sees_all_up(2).await;
    // The restarted node's own data survived the kill.
    for (k, v) in acked.iter().filter(|(k, _)| k.starts_with("before")) {
        assert_eq!(c.local_values(3, k).await, vec![v.clone()], "n3 lost {k}");
    }
    // Every acknowledged write is readable from every node.
    for (k, v) in &acked {
        for i in 1..=3 {
            let g = c.get(i, k, "r=2").await;
            assert_eq!(g.status, StatusCode::OK, "{k} via n{i}: {}", g.text());
            assert_eq!(g.text(), *v);
        }
    }
}

#[tokio::test]
async fn with_two_of_three_replicas_dead_all_fails_and_one_succeeds() {
    let mut c = Cluster::start(3, ClusterOptions::default()).await;
    c.put(1, "k", "v0", "w=all", None).await;
    c.kill(2);
    c.kill(3);
    let w = c.put(1, "k", "v1", "w=all&timeout_ms=1500", None).await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{}", w.text());
    let body = w.json();
    assert_eq!(body["code"], "quorum_not_met");
    assert_eq!(body["needed"], 3);
    assert_eq!(body["acked"], 1);
    assert!(body["error"].as_str().unwrap().contains("needed 3"));
    let r = c.get(1, "k", "r=all&timeout_ms=1500").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["needed"], 3);
    let one = c.put(1, "k", "v2", "w=one", None).await;
    assert!(one.status.is_success(), "{}", one.text());
    let g = c.get(1, "k", "r=one").await;
    assert!(g.values().contains(&"v2".to_string()), "{:?}", g.values());
}

#[tokio::test]
async fn bad_input_gets_a_json_error_and_never_hurts_the_node() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let long_key = "k".repeat(1025);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.http.put(c.key_url(1, &long_key, "")).body("v"),
            414,
            "key_too_long",
        ),
        (c.http.get(format!("{}/kv/", c.url(1))), 400, "empty_key"),
        (
            c.http
                .put(c.key_url(1, "big", ""))
                .body(vec![b'x'; (1 << 20) + 1]),
            413,
            "value_too_large",
        ),
        (
            c.http
                .put(c.key_url(1, "k", ""))
                .header("x-dynkv-context", "!!garbage!!")
                .body("v"),
            400,
            "bad_context",
        ),
        (
            c.http
                .put(c.key_url(1, "k", ""))
                .header("x-dynkv-context", "AQIDBAUGBwgJ")
                .body("v"),
            400,
            "bad_context",
        ),
        (c.http.get(c.key_url(1, "k", "r=0")), 400, "bad_parameter"),
        (c.http.get(c.key_url(1, "k", "r=9")), 400, "bad_parameter"),
        (
            c.http.put(c.key_url(1, "k", "w=banana")).body("v"),
            400,
            "bad_parameter",
        ),
        (
            c.http.put(c.key_url(1, "k", "sloppy=maybe")).body("v"),
            400,
            "bad_parameter",
        ),
        (
            c.http.get(c.key_url(1, "k", "timeout_ms=0")),
            400,
            "bad_parameter",
        ),
        (
            c.http.post(c.key_url(1, "k", "")).body("v"),
            405,
            "method_not_allowed",
        ),
        (
            c.http.get(format!("{}/admin/%ee", c.url(1))),
            400,
            "bad_path",
        ),
        (
            c.http.get(format!("{}/admin/ring?key=%ff", c.url(1))),
            400,
            "bad_key",
        ),
        (
            c.http.get(format!("{}/admin/ring", c.url(1))),
            400,
            "bad_parameter",
        ),
        (
            c.http.get(format!("{}/no/such/route", c.url(1))),
            404,
            "not_found",
        ),
        // Internode traffic has its own listener: the public one serves no /rpc.
        (
            c.http.post(format!("{}/rpc", c.url(1))).body(vec![1, 0]),
            404,
            "not_found",
        ),
        // Membership commands need the admin token derived from the secret:
        // not a wrong one, not none, not the secret itself.
        (
            c.http
                .post(format!("{}/admin/join", c.url(1)))
                .header("x-dynkv-token", "wrong")
                .body(vec![1, 0]),
            401,
            "unauthorized",
        ),
        (
            c.http
                .post(format!("{}/admin/join", c.url(1)))
                .body(vec![1, 0]),
            401,
            "unauthorized",
        ),
        (
            c.http
                .get(format!("{}/admin/members", c.url(1)))
                .header("x-dynkv-token", c.secret().to_hex()),
            401,
            "unauthorized",
        ),
        (
            c.http
                .post(format!("{}/admin/join", c.url(1)))
                .header("x-dynkv-token", c.admin_token())
                .body(vec![1, 200, 7]),
            400,
            "bad_body",
        ),
    ];
    for (req, status, code) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    assert_eq!(c.metric(1, "dynkv_admin_unauthorized_total", "").await, 3.0);
    // The node is fine and nothing was written by the refused requests.
    assert_eq!(c.get(1, "k", "").await.status, StatusCode::NOT_FOUND);
    let ok = c.put(1, "k", "fine", "", None).await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
}

/// `dynkv` with no arguments serves the README's defaults: the public API
/// on 127.0.0.1:7070, the internode listener on 127.0.0.1:7170, data in
/// `./dynkv-data`.
///
/// The node runs in a network namespace of its own (`unshare -rn`, its
/// loopback brought up with `ip`), so the test checks the real default
/// ports without depending on 7070 and 7170 being free on the machine, and
/// cannot disturb anything else listening there. The checks run inside the
/// namespace too (curl, bash's /dev/tcp) and print what they saw; the test
/// asserts on that. Overriding the ports instead would leave the very
/// defaults under test unchecked. Where unprivileged namespaces are not
/// allowed, the test fails with the reason rather than passing vacuously.
#[tokio::test]
async fn serve_with_no_arguments_runs_a_single_node_on_ports_7070_and_7170() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        ip link set lo up || { echo "no-loopback"; exit 0; }
        "$DYNKV" >node.log 2>&1 &
        pid=$!
        for _ in $(seq 300); do
            curl -sf http://127.0.0.1:7070/health >/dev/null && break
            sleep 0.1
        done
        echo "health=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7070/health)"
        if (exec 3<>/dev/tcp/127.0.0.1/7170) 2>/dev/null; then echo cluster=open; else echo cluster=closed; fi
        echo "put=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary world http://127.0.0.1:7070/kv/hello)"
        echo "get=$(curl -s http://127.0.0.1:7070/kv/hello)"
        kill -TERM $pid
        wait $pid
        echo "exit=$?"
    "#;
    let out = std::process::Command::new("unshare")
        .args(["-rn", "bash", "-c", script])
        .current_dir(dir.path())
        .env("DYNKV", dynkv_tests::dynkv_bin())
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        out.status.success() && !lines.contains(&"no-loopback"),
        "cannot run a network namespace here (unshare -rn, ip): {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "health=200",
        "cluster=open",
        "put=204",
        "get=world",
        "exit=0",
    ] {
        assert!(
            lines.contains(&want),
            "expected {want}; got:\n{stdout}\nnode log:\n{log}"
        );
    }
    assert!(
        dir.path().join("dynkv-data").is_dir(),
        "data lives in ./dynkv-data"
    );
}

/// `GET /admin/workers` (and `dynkv admin workers`) lists every background
/// loop of the node with its state; the old `_ms` keys still configure them.
#[tokio::test]
async fn admin_workers_lists_every_background_worker_with_its_state() {
    let opts = ClusterOptions {
        env: vec![
            // The previous release's key, and the new one.
            ("DYNKV__HANDOFF__INTERVAL_MS".into(), "200".into()),
            ("DYNKV__MEMBERSHIP__GOSSIP_INTERVAL".into(), "300ms".into()),
        ],
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start(3, opts).await;
    let workers = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["workers"].as_array().cloned().unwrap_or_default()
    };
    let urls: Vec<String> = (1..=3).map(|i| c.url(i)).collect();
    let http = c.http.clone();
    let fetch = |i: usize| {
        let url = format!("{}/admin/workers", urls[i - 1]);
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let expected = [
        "internode_listener",
        "gossip",
        "transfers",
        "seed_join",
        "failure_detector",
        "handoff",
        "antientropy",
        "storage_recovery",
        "reaper",
        "feed_trim",
        "wal_sync",
    ];
    let periodic = [
        "gossip",
        "transfers",
        "failure_detector",
        "handoff",
        "antientropy",
        "storage_recovery",
        "wal_sync",
        "internode_listener",
    ];
    // Every periodic worker has run a step within a few seconds.
    let ran = poll(Duration::from_secs(15), || async {
        let v = fetch(1).await;
        workers(&v)
            .iter()
            .filter(|w| periodic.contains(&w["name"].as_str().unwrap_or("")))
            .all(|w| w["runs"].as_u64() > Some(0))
    })
    .await;
    let v = fetch(1).await;
    assert!(ran, "{v:#}");
    assert_eq!(v["node"], "n1");
    let list = workers(&v);
    let names: Vec<&str> = list.iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, expected, "{v:#}");
    let by_name = |n: &str| list.iter().find(|w| w["name"] == n).unwrap().clone();
    for w in &list {
        let state = w["state"].as_str().unwrap();
        assert!(
            ["idle", "busy", "throttled", "done", "off"].contains(&state),
            "{w}"
        );
        assert!(w["errors"].is_u64() && w["counters"].is_object(), "{w}");
    }
    assert_eq!(by_name("seed_join")["state"], "off", "no seeds configured");
    assert!(
        by_name("seed_join")["note"]
            .as_str()
            .unwrap()
            .contains("membership.seeds")
    );
    assert_eq!(
        by_name("reaper")["state"],
        "idle",
        "its first pass is 30 s away"
    );
    assert_eq!(
        by_name("handoff")["interval_ms"],
        200,
        "from HANDOFF__INTERVAL_MS"
    );
    assert_eq!(by_name("gossip")["interval_ms"], 300);
    assert!(by_name("internode_listener")["counters"]["accepted"].as_u64() >= Some(2));
    assert!(by_name("wal_sync")["counters"]["syncs"].as_u64() > Some(0));
    assert!(by_name("antientropy")["last_run"]["ok"].as_bool().is_some());
    // The old key is named in a warning with the new one.
    let log = std::fs::read_to_string(c.node(1).log_path()).unwrap();
    assert!(
        log.contains("handoff.interval_ms") && log.contains("use handoff.interval instead"),
        "{log}"
    );

    // A peer that stops answering shows up as errors of the gossip worker.
    c.kill(3);
    let seen = poll(Duration::from_secs(20), || async {
        let g = workers(&fetch(1).await)
            .into_iter()
            .find(|w| w["name"] == "gossip")
            .unwrap();
        g["errors"].as_u64() > Some(0)
            && g["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("n3"))
    })
    .await;
    assert!(seen, "{:#}", fetch(1).await);

    // The command-line view of the same list.
    let out = std::process::Command::new(dynkv_tests::dynkv_bin())
        .args(["admin", "workers", "--node", &c.url(2)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("node n2"), "{text}");
    for name in expected {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }

    // Piped into a reader that has already gone (`dynkv admin workers |
    // head -0`), it ends as other Unix tools do, by SIGPIPE, not a panic.
    let mut child = std::process::Command::new(dynkv_tests::dynkv_bin())
        .args(["admin", "workers", "--node", &c.url(2)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(13), "{out:?}");
}
