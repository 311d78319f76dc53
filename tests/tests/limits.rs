//! Limits of the public listener no client can get past: a client
//! trickling its headers is dropped after `node.header_read_timeout`, and
//! connections past `node.max_connections` are closed at once, while a
//! client that behaves keeps being served and the node's memory stays
//! bounded. Small caps and timeouts keep the tests short. On SIGTERM the
//! listener stops accepting and a request in flight still completes.

use std::time::{Duration, Instant};

use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident memory of process `pid`, KiB.
fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Sends GET /health every 50 ms on one keep-alive connection until `stop`
/// is set; returns (served, failed).
async fn steady_client(
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (u32, Vec<String>) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let (mut served, mut failed) = (0, Vec::new());
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match http.get(format!("{url}/health")).send().await {
            Ok(r) if r.status() == StatusCode::OK => served += 1,
            Ok(r) => failed.push(r.status().to_string()),
            Err(e) => failed.push(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (served, failed)
}

#[tokio::test]
async fn a_client_trickling_headers_is_dropped_after_the_header_timeout_while_others_are_served() {
    let timeout = Duration::from_secs(1);
    let opts = ClusterOptions {
        n_val: 1,
        ..ClusterOptions::default()
    }
    .set("DYNKV__NODE__HEADER_READ_TIMEOUT", "1s");
    let c = Cluster::start(1, opts).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let steady = tokio::spawn(steady_client(c.url(1), stop.clone()));

    let slow = TcpStream::connect(("127.0.0.1", c.nodes[0].port))
        .await
        .unwrap();
    let (mut rd, mut wr) = slow.into_split();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        // A request head that never ends, one byte every 100 ms.
        let head = b"GET /health HTTP/1.1\r\nHost: dynkv\r\nX-Slow: ";
        for &b in head.iter().chain(std::iter::repeat(&b'a')) {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(timeout * 3, rd.read_to_end(&mut answer)).await;
    let elapsed = started.elapsed();
    trickle.abort();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, failed) = steady.await.unwrap();

    assert!(
        closed.is_ok(),
        "the trickling client was still connected after {elapsed:?} (header timeout {timeout:?})"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains(" 200 "),
        "the trickled request was served: {answer}"
    );
    assert!(failed.is_empty(), "steady client failed: {failed:?}");
    assert!(served >= 3, "steady client served {served} times");
}

#[tokio::test]
async fn idle_connections_past_the_cap_are_closed_and_served_clients_are_not_harmed() {
    const CAP: usize = 100;
    const FLOOD: usize = 2_000;
    let opts = ClusterOptions {
        n_val: 1,
        ..ClusterOptions::default()
    }
    .set("DYNKV__NODE__MAX_CONNECTIONS", CAP)
    .set("DYNKV__NODE__HEADER_READ_TIMEOUT", "5s");
    let c = Cluster::start(1, opts).await;
    let pid = c.nodes[0].pid().unwrap();
    let port = c.nodes[0].port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A client already connected before the flood holds its slot.
    let steady = tokio::spawn(steady_client(c.url(1), stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = vm_rss_kib(pid);

    let mut idle = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // Every idle connection ends: past the cap at once, within the cap at
    // the header timeout. None is answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut closed = 0;
    for mut s in idle {
        let mut buf = Vec::new();
        if let Ok(Ok(_)) = tokio::time::timeout_at(deadline, s.read_to_end(&mut buf)).await {
            closed += 1;
        }
        assert!(buf.is_empty() || !String::from_utf8_lossy(&buf).contains(" 200 "));
    }
    let rss_after = vm_rss_kib(pid);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, failed) = steady.await.unwrap();

    assert_eq!(closed, FLOOD, "idle connections left open");
    assert!(failed.is_empty(), "the served client failed: {failed:?}");
    assert!(served >= 5, "the served client was served {served} times");
    let refused = c.metric(1, "dynkv_connections_refused_total", "").await;
    // At most CAP connections were accepted before the first timed out
    // (5 s); connecting 2,000 takes far less, so nearly all the rest were
    // refused at accept.
    assert!(
        refused >= (FLOOD - 2 * CAP) as f64,
        "only {refused} connections refused past the cap of {CAP}"
    );
    // The node still takes new clients once the flood is gone.
    let ok = poll(Duration::from_secs(10), || async {
        c.get(1, "absent", "").await.status == StatusCode::NOT_FOUND
    })
    .await;
    assert!(ok);
    assert!(
        rss_after < rss_before + 64 * 1024,
        "node RSS grew from {rss_before} KiB to {rss_after} KiB under {FLOOD} idle connections"
    );
}

#[tokio::test]
async fn on_sigterm_new_connections_are_refused_and_a_request_in_flight_completes() {
    let opts = ClusterOptions {
        n_val: 1,
        ..ClusterOptions::default()
    };
    let mut c = Cluster::start(1, opts).await;
    let port = c.nodes[0].port;
    let pid = c.nodes[0].pid().unwrap();
    // A write whose body is half sent when the node is told to stop.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(b"PUT /kv/inflight HTTP/1.1\r\nHost: dynkv\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nhello")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let refused = poll(Duration::from_secs(10), || async {
        TcpStream::connect(("127.0.0.1", port)).await.is_err()
    })
    .await;
    assert!(refused, "the stopping node still accepts connections");
    s.write_all(b"world").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer))
        .await
        .expect("the connection is closed after its answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 204"),
        "the request in flight was not completed: {answer}"
    );
    // The write is durable: the node comes back with it.
    c.stop(1);
    c.restart(1).await;
    let g = c.get(1, "inflight", "").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.text(), "helloworld");
}
