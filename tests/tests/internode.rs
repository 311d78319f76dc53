//! The internode protocol across real processes: what crosses the wire is
//! encrypted, a client without the cluster secret is refused, and nodes
//! speaking different message versions keep serving together.

use std::process::{Command, Stdio};
use std::time::Duration;

use dynkv_rpc::ClusterSecret;
use dynkv_rpc::handshake::{self, HandshakeError, Hello};
use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A running `tcpdump` writing what it sees on loopback to a file.
struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
    /// What tcpdump printed on stderr, gathered by a reader thread.
    stderr: std::thread::JoinHandle<String>,
}

impl Capture {
    /// Starts tcpdump and returns once it says it is listening, so no
    /// packet sent afterwards is missed however slow the machine is.
    fn start(file: std::path::PathBuf, ports: &[u16]) -> Capture {
        use std::io::BufRead;
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg(&filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (Debian's tcpdump package; scripts/install-deps.sh installs it)");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = ready_tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("tcpdump did not start listening within 30 s");
        Capture {
            child,
            file,
            stderr,
        }
    }

    /// The capture file as written so far (`-U` writes every packet as it
    /// comes).
    fn so_far(&self) -> Vec<u8> {
        std::fs::read(&self.file).unwrap_or_default()
    }

    /// Stops the capture and returns the bytes of the capture file.
    fn finish(self) -> Vec<u8> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let mut child = self.child;
        child.wait().unwrap();
        let stderr = self.stderr.join().unwrap();
        assert!(
            stderr.contains("packets captured"),
            "tcpdump did not capture: {stderr}"
        );
        std::fs::read(&self.file).unwrap()
    }
}

#[tokio::test]
async fn nothing_readable_crosses_the_cluster_ports() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let cluster_ports: Vec<u16> = (1..=3).map(|i| c.node(i).cluster_port).collect();
    let public_ports: Vec<u16> = (1..=3).map(|i| c.node(i).port).collect();
    let internode = Capture::start(c.dir.path().join("internode.pcap"), &cluster_ports);
    let public = Capture::start(c.dir.path().join("public.pcap"), &public_ports);

    let value = format!("unique-value-{}", std::process::id());
    let w = c.put(1, "capture-me", &value, "w=all", None).await;
    assert_eq!(w.status, StatusCode::NO_CONTENT, "{}", w.text());
    let r = c.get(2, "capture-me", "r=all").await;
    assert_eq!(r.text(), value);
    // Wait until the client's cleartext HTTP with the value is on file, so
    // the replication that preceded it has been captured too.
    let seen = poll(Duration::from_secs(20), || async {
        contains(&public.so_far(), value.as_bytes())
    })
    .await;
    assert!(seen, "the public capture should hold the value");

    let internode = internode.finish();
    let public = public.finish();
    // The capture works: the client's cleartext HTTP carries the value.
    assert!(
        contains(&public, value.as_bytes()),
        "the public capture should hold the value ({} bytes)",
        public.len()
    );
    // Replication happened over the cluster ports (3 replicas at w=all)...
    assert!(
        internode.len() > 2_000,
        "expected internode traffic in the capture, got {} bytes",
        internode.len()
    );
    // ...and none of it is readable.
    assert!(
        !contains(&internode, value.as_bytes()),
        "the value crossed a cluster port in clear"
    );
    let secret = c.secret();
    assert!(!contains(&internode, secret.to_hex().as_bytes()));
    assert!(!contains(&internode, &secret.handshake_key()));
    assert!(!contains(&internode, c.admin_token().as_bytes()));
    assert!(
        !contains(&internode, b"capture-me"),
        "keys are encrypted too"
    );
}

async fn handshake_failures(c: &Cluster) -> f64 {
    c.metric(1, "dynkv_internode_handshake_failures_total", "")
        .await
}

#[tokio::test]
async fn a_client_without_the_secret_is_refused_and_harms_nothing() {
    let c = Cluster::start(3, ClusterOptions::default()).await;
    let target = c.node(1).cluster_addr();
    let pid = c.node(1).pid().expect("n1 runs");
    let before = handshake_failures(&c).await;

    // 1. The right protocol with the wrong secret: refused at the first message.
    let mut s = TcpStream::connect(&target).await.unwrap();
    let wrong = ClusterSecret::generate();
    let r = handshake::initiate(
        &mut s,
        &wrong,
        Hello::new("intruder", "", None),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.err(), Some(HandshakeError::Closed), "the node hangs up");

    // 2. Garbage, and a claimed handshake message of maximal size followed
    //    by junk: the node reads at most the handshake's bytes and hangs up.
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        [vec![0x04, 0x00], vec![7u8; 1024]].concat(),
    ] {
        let mut s = TcpStream::connect(&target).await.unwrap();
        let _ = s.write_all(&junk).await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "expected the node to close the connection, got {read:?}"
        );
    }
    assert!(
        poll(Duration::from_secs(5), || async {
            handshake_failures(&c).await >= before + 3.0
        })
        .await,
        "handshake failures are counted"
    );

    // 3. Many clients claiming large first messages and never finishing:
    //    the node's memory stays bounded and its peers keep working.
    let rss_before = rss_kib(pid);
    let mut idle = Vec::new();
    for _ in 0..200 {
        if let Ok(mut s) = TcpStream::connect(&target).await {
            let _ = s.write_all(&[0x04, 0x00, 1, 2, 3]).await;
            idle.push(s);
        }
    }
    let w = c.put(1, "still-works", "v", "w=all", None).await;
    assert_eq!(w.status, StatusCode::NO_CONTENT, "{}", w.text());
    let r = c.get(3, "still-works", "r=all").await;
    assert_eq!(r.text(), "v");
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "200 half-open handshakes grew n1 by {grown} KiB"
    );
    drop(idle);
}

#[tokio::test]
async fn a_node_on_the_previous_message_version_keeps_serving() {
    let mut c = Cluster::start(3, ClusterOptions::default()).await;
    // n3 runs pinned to message version 1, as a node not yet upgraded.
    c.stop(3);
    c.restart_with(3, &[("DYNKV__CLUSTER__PROTOCOL_VERSION", "1")])
        .await;
    c.wait_sees_all_up(3).await;
    for i in 1..=3 {
        c.wait_sees_all_up(i).await;
    }
    let versions = |c: &Cluster, i: usize| {
        let url = format!("{}/admin/internode", c.url(i));
        let http = c.http.clone();
        async move {
            let v: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
            v["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["node"].as_str().unwrap().to_string(),
                        p["version"].as_u64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    // Writes and reads through every node, each needing every replica.
    for round in 0..5 {
        for i in 1..=3 {
            let key = format!("mixed-{round}-{i}");
            let w = c.put(i, &key, &key, "w=all", None).await;
            assert_eq!(w.status, StatusCode::NO_CONTENT, "{}", w.text());
            for j in 1..=3 {
                let r = c.get(j, &key, "r=all").await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text());
                assert_eq!(r.text(), key);
            }
        }
    }
    // The versions each pair agreed on: 1 with n3, 2 between the others.
    let n1 = versions(&c, 1).await;
    assert!(n1.contains(&("n3".to_string(), 1)), "{n1:?}");
    assert!(n1.contains(&("n2".to_string(), 2)), "{n1:?}");
    let n3 = versions(&c, 3).await;
    assert!(n3.iter().all(|(_, v)| *v == 1), "{n3:?}");
    assert_eq!(n3.len(), 2, "{n3:?}");
}
