//! A harness that runs real `dynkv` node processes on loopback ports with
//! temporary data directories, and small HTTP helpers to drive them.
//!
//! The harness binds each node's two listeners itself and hands them to the
//! process at spawn as in systemd socket activation ([`pass_listeners`]),
//! then closes its own copies: no port is ever probed and released, and a
//! killed node's ports refuse connections like a real dead node's.
//!
//! Nodes are configured through a TOML file per node (identity, public and
//! cluster addresses, data dir, members, the cluster secret) plus
//! `DYNKV__...` environment overrides per test (N, timeouts, workers on or
//! off). Every node has two ports: the public HTTP API ([`Node::url`]) and
//! the encrypted internode listener ([`Node::cluster_addr`]), which is what
//! member lists, seeds and link proxies name. Each [`Cluster`] generates its
//! own [`ClusterSecret`]; membership commands over HTTP carry its
//! [`Cluster::admin_token`]. Nothing inside a node is faked: a killed node is
//! a `SIGKILL`ed process, a restarted one reopens its RocksDB.
//!
//! The binary is `$DYNKV_BIN`, or `dynkv` next to the test executable's
//! target directory (built by `cargo build --workspace --bins`), unless a
//! cluster names its own with [`ClusterOptions::binary`] (the fault-injection
//! suite runs other builds, e.g. one with a planted bug).
//!
//! Disk and clock faults ([`Cluster::wipe_disk`], [`Cluster::power_cut`],
//! [`Cluster::disk_full`], [`Cluster::skew_clock`]) need the nodes to run
//! under the fault layer ([`ClusterOptions::with_fault_layer`], see
//! [`faults`]); without it nodes run as plain processes, and only
//! [`Cluster::wipe_disk`] works.

pub mod faults;
pub mod proxy;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use dynkv_rpc::secret::ClusterSecret;
pub use reqwest::StatusCode;

use proxy::LinkProxy;

/// Where the `dynkv` binary is.
pub fn dynkv_bin() -> PathBuf {
    if let Ok(p) = std::env::var("DYNKV_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/dynkv
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("dynkv");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --workspace --bins` first or set DYNKV_BIN",
        bin.display()
    );
    bin
}

/// A listening socket on 127.0.0.1, outside the ephemeral range, held by
/// the harness until it hands it to a node at spawn: no other process can
/// take the port between choosing it and the node using it.
pub fn reserve_port() -> std::net::TcpListener {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Below the kernel's ephemeral range (32768 and up by default): a port
    // from that range can be the local port of any outgoing connection (the
    // nodes open many), and then a restarted node could not bind it again.
    // Each test process starts at its own pseudo-random offset so that
    // parallel test processes rarely try the same ports.
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let seed = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
        let _ = NEXT.compare_exchange(u32::MAX, seed % SPAN, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l;
        }
    }
}

/// The port of a listener from [`reserve_port`].
fn port_of(l: &std::net::TcpListener) -> u16 {
    l.local_addr().expect("bound listener").port()
}

/// Hands `http` and `cluster` to the child `cmd` will spawn as fds 3 and 4,
/// the way systemd socket activation does (`LISTEN_FDS`, `LISTEN_FDNAMES`;
/// no `LISTEN_PID`, which the parent cannot know before the fork). The
/// parent's copies close when `cmd` is dropped.
pub fn pass_listeners(
    cmd: &mut Command,
    http: std::net::TcpListener,
    cluster: std::net::TcpListener,
) {
    pass_listeners_with_pb(cmd, http, cluster, None);
}

/// [`pass_listeners`], plus a Riak PBC listener as fd 5 (named `pb`).
pub fn pass_listeners_with_pb(
    cmd: &mut Command,
    http: std::net::TcpListener,
    cluster: std::net::TcpListener,
    pb: Option<std::net::TcpListener>,
) {
    use command_fds::{CommandFdExt, FdMapping};
    let mut fds = vec![
        FdMapping {
            parent_fd: http.into(),
            child_fd: 3,
        },
        FdMapping {
            parent_fd: cluster.into(),
            child_fd: 4,
        },
    ];
    let names = if let Some(pb) = pb {
        fds.push(FdMapping {
            parent_fd: pb.into(),
            child_fd: 5,
        });
        "http:cluster:pb"
    } else {
        "http:cluster"
    };
    let n = fds.len();
    cmd.fd_mappings(fds).expect("fds 3, 4 and 5 are distinct");
    cmd.env("LISTEN_FDS", n.to_string())
        .env("LISTEN_FDNAMES", names)
        .env_remove("LISTEN_PID");
}

/// One node process.
pub struct Node {
    /// Node id, `n1`...
    pub id: String,
    /// Its public HTTP port (client API, admin, metrics).
    pub port: u16,
    /// Its internode (cluster) port: what peers, seeds and proxies use.
    pub cluster_port: u16,
    /// Its Riak PBC port, when the cluster was started with
    /// [`ClusterOptions::riak_pb`].
    pub pb_port: Option<u16>,
    /// The PBC listener, held from [`reserve_port`] until the first spawn.
    held_pb: Option<std::net::TcpListener>,
    /// `http` or `https`.
    scheme: &'static str,
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    bin: PathBuf,
    child: Option<Child>,
    data_dir: PathBuf,
    faults: Option<faults::NodeFaults>,
    /// Its public and cluster listeners, held from [`reserve_port`] until
    /// the first spawn.
    held: Option<(std::net::TcpListener, std::net::TcpListener)>,
}

impl Node {
    /// Base URL of the public HTTP API.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Its internode address, `127.0.0.1:<cluster port>`: the address to
    /// join through (a seed) and the one its own member entry names.
    pub fn cluster_addr(&self) -> String {
        format!("127.0.0.1:{}", self.cluster_port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("DYNKV_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(f) = &self.faults {
            cmd.envs(f.env());
        }
        // The harness binds both listeners and hands them over, so the ports
        // are never free for someone else in between; on a restart it binds
        // the same ports again (the old process is gone, and the sockets
        // have SO_REUSEADDR, so connections in TIME_WAIT do not block it).
        // A restart with `DYNKV__NODE__LISTEN` set binds the public port on
        // that address instead (e.g. 0.0.0.0, to be reached off loopback).
        let http_host = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "DYNKV__NODE__LISTEN")
            .and_then(|(_, v)| v.rsplit_once(':').map(|(h, _)| h.to_string()))
            .unwrap_or_else(|| "127.0.0.1".to_string());
        let (http, cluster) = self.held.take().unwrap_or_else(|| {
            let bind = |host: &str, port| {
                std::net::TcpListener::bind((host, port))
                    .unwrap_or_else(|e| panic!("{}: cannot bind port {port} again: {e}", self.id))
            };
            (
                bind(&http_host, self.port),
                bind("127.0.0.1", self.cluster_port),
            )
        });
        let pb = self.pb_port.map(|port| {
            self.held_pb.take().unwrap_or_else(|| {
                std::net::TcpListener::bind(("127.0.0.1", port))
                    .unwrap_or_else(|e| panic!("{}: cannot bind port {port} again: {e}", self.id))
            })
        });
        pass_listeners_with_pb(&mut cmd, http, cluster, pb);
        self.child = Some(cmd.spawn().expect("spawn dynkv"));
        // Dropping `cmd` closes the harness's copies: only the node holds
        // the ports now, and they refuse connections once it dies.
    }

    /// The node's log file (stdout and stderr of every run of the process).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its RocksDB directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Its fault files, when the cluster runs under the fault layer.
    pub fn faults(&self) -> Option<&faults::NodeFaults> {
        self.faults.as_ref()
    }

    /// The process id of the current run, if the node was started and not
    /// killed or stopped since (it may have exited on its own).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(c.id().to_string())
                .status();
        }
    }
}

/// Options of a test cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Replicas per key.
    pub n_val: usize,
    /// Extra `DYNKV__SECTION__KEY` settings for every node.
    pub env: Vec<(String, String)>,
    /// Route every internode link through a [`LinkProxy`] (in front of the
    /// target's cluster port) so tests can cut links (`partition`,
    /// `isolate`, `cut`, `heal`).
    pub proxied: bool,
    /// The `dynkv` binary to run; `None` = [`dynkv_bin`].
    pub bin: Option<PathBuf>,
    /// Give every node a Riak PBC listener.
    pub riak_pb: bool,
    /// Run every node under the disk and clock fault layer ([`faults`]).
    pub fault_layer: bool,
    /// PEM of the CA that signed the nodes' certificates, when they serve
    /// HTTPS: node URLs become `https://` and the client trusts it.
    pub tls_ca: Option<Vec<u8>>,
    /// Hold every chunk on every internode link for this long (implies
    /// `proxied`): a slow network.
    pub link_delay: Option<proxy::LinkDelay>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            n_val: 3,
            env: Vec::new(),
            proxied: false,
            bin: None,
            fault_layer: false,
            riak_pb: false,
            tls_ca: None,
            link_delay: None,
        }
    }
}

impl ClusterOptions {
    /// Routes internode traffic through cuttable proxies.
    pub fn proxied(mut self) -> Self {
        self.proxied = true;
        self
    }

    /// Routes internode traffic through proxies that delay every chunk
    /// (see [`proxy::LinkDelay`]).
    pub fn slow_links(mut self, delay: proxy::LinkDelay) -> Self {
        self.proxied = true;
        self.link_delay = Some(delay);
        self
    }

    /// Runs this `dynkv` binary instead of [`dynkv_bin`].
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.bin = Some(path.into());
        self
    }

    /// Runs every node under the disk and clock fault layer (an
    /// `LD_PRELOAD` library built with `cc` on first use), so that
    /// [`Cluster::power_cut`], [`Cluster::disk_full`] and
    /// [`Cluster::skew_clock`] work. Panics at start if it cannot be built.
    pub fn with_fault_layer(mut self) -> Self {
        self.fault_layer = true;
        self
    }

    /// Talks HTTPS to the nodes, trusting the CA in `ca_pem` (the nodes'
    /// `node.tls_cert` and `node.tls_key` are set with [`Self::set`]).
    pub fn tls(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(ca_pem.into());
        self
    }

    /// Every node serves TLS with the certificate and key in these files,
    /// and the test client trusts `ca_pem` ([`Self::tls`]).
    pub fn serve_tls(self, ca_pem: impl Into<Vec<u8>>, cert: &Path, key: &Path) -> Self {
        self.tls(ca_pem)
            .set("DYNKV__NODE__TLS_CERT", cert.display())
            .set("DYNKV__NODE__TLS_KEY", key.display())
    }

    /// Gives every node a Riak PBC listener ([`Node::pb_port`]).
    pub fn riak_pb(mut self) -> Self {
        self.riak_pb = true;
        self
    }

    /// Adds a `DYNKV__...` setting.
    pub fn set(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// A running cluster of real node processes.
pub struct Cluster {
    /// The nodes, `nodes[0]` is `n1`.
    pub nodes: Vec<Node>,
    /// Holds data dirs, configs and logs.
    pub dir: tempfile::TempDir,
    /// HTTP client for tests.
    pub http: reqwest::Client,
    /// Internode link proxies by (from, to), 1-based, when proxied.
    pub links: HashMap<(usize, usize), LinkProxy>,
    /// The secret every node of this cluster shares.
    secret: ClusterSecret,
}

/// Settings every test cluster uses so faults are noticed quickly.
const FAST_DETECTION: &[(&str, &str)] = &[
    ("DYNKV__FAILURE_DETECTOR__PING_INTERVAL_MS", "200"),
    ("DYNKV__FAILURE_DETECTOR__PING_TIMEOUT_MS", "150"),
    ("DYNKV__FAILURE_DETECTOR__FAILURE_THRESHOLD", "1"),
    ("DYNKV__FAILURE_DETECTOR__BREAKER_COOLDOWN_MS", "200"),
    ("DYNKV__QUORUM__RPC_TIMEOUT_MS", "500"),
    ("DYNKV__QUORUM__RPC_CONNECT_TIMEOUT_MS", "200"),
    ("DYNKV__QUORUM__REQUEST_TIMEOUT_MS", "2000"),
    ("DYNKV__HANDOFF__INTERVAL_MS", "200"),
    ("DYNKV__HANDOFF__BACKOFF_BASE_MS", "100"),
    ("DYNKV__HANDOFF__BACKOFF_MAX_MS", "1000"),
];

/// The `node.toml` of a test node.
fn node_toml(
    id: &str,
    port: u16,
    cluster_port: u16,
    data_dir: &Path,
    members: &[String],
    n_val: &str,
    secret: &ClusterSecret,
) -> String {
    let members: Vec<String> = members.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[node]\nid = \"{id}\"\nlisten = \"127.0.0.1:{port}\"\ncluster_listen = \"127.0.0.1:{cluster_port}\"\ndata_dir = \"{}\"\n\n[cluster]\nmembers = [{}]\nn_val = {n_val}\nsecret = \"{}\"\n",
        data_dir.display(),
        members.join(", "),
        secret.to_hex(),
    )
}

impl Cluster {
    /// Starts `k` nodes and waits until each answers `/health`.
    pub async fn start(k: usize, opts: ClusterOptions) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("dynkv-test-")
            .tempdir()
            .unwrap();
        let secret = ClusterSecret::generate();
        // Node i: its public port ports[i], its internode port cluster_ports[i].
        let mut held: Vec<_> = (0..k).map(|_| (reserve_port(), reserve_port())).collect();
        let ports: Vec<u16> = held.iter().map(|(h, _)| port_of(h)).collect();
        let cluster_ports: Vec<u16> = held.iter().map(|(_, c)| port_of(c)).collect();
        let mut links = HashMap::new();
        if opts.proxied {
            for from in 1..=k {
                for to in 1..=k {
                    if from != to {
                        let target = cluster_ports[to - 1];
                        let proxy = LinkProxy::start_delayed(target, opts.link_delay).await;
                        links.insert((from, to), proxy);
                    }
                }
            }
        }
        let bin = opts.bin.clone().unwrap_or_else(dynkv_bin);
        let layer = opts
            .fault_layer
            .then(|| faults::layer_path().unwrap_or_else(|e| panic!("fault layer: {e}")));
        let mut nodes = Vec::new();
        for (i, (port, cluster_port)) in ports.iter().zip(&cluster_ports).enumerate() {
            // Node i+1 reaches node j's cluster port through its own proxy
            // when proxied, directly otherwise.
            let members: Vec<String> = cluster_ports
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let via = links
                        .get(&(i + 1, j + 1))
                        .map_or(*p, |l: &LinkProxy| l.port);
                    format!("n{}@127.0.0.1:{via}", j + 1)
                })
                .collect();
            let id = format!("n{}", i + 1);
            let ndir = dir.path().join(&id);
            std::fs::create_dir_all(&ndir).unwrap();
            let config = ndir.join("node.toml");
            std::fs::write(
                &config,
                node_toml(
                    &id,
                    *port,
                    *cluster_port,
                    &ndir.join("data"),
                    &members,
                    &opts.n_val.to_string(),
                    &secret,
                ),
            )
            .unwrap();
            let mut env: Vec<(String, String)> = FAST_DETECTION
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            env.extend(opts.env.iter().cloned());
            let faults = layer.as_ref().map(|l| {
                faults::NodeFaults::create(l.clone(), &ndir.join("faults"), &ndir.join("data"))
                    .expect("fault files")
            });
            let held_pb = opts.riak_pb.then(reserve_port);
            let mut node = Node {
                id,
                port: *port,
                cluster_port: *cluster_port,
                pb_port: held_pb.as_ref().map(port_of),
                held_pb,
                scheme: if opts.tls_ca.is_some() {
                    "https"
                } else {
                    "http"
                },
                config,
                log: ndir.join("node.log"),
                env,
                bin: bin.clone(),
                child: None,
                data_dir: ndir.join("data"),
                faults,
                held: Some(held.remove(0)),
            };
            node.spawn();
            nodes.push(node);
        }
        let mut http = reqwest::Client::builder().no_proxy();
        if let Some(ca) = &opts.tls_ca {
            let ca = reqwest::Certificate::from_pem(ca).expect("CA certificate PEM");
            http = http.use_rustls_tls().add_root_certificate(ca);
        }
        let http = http.build().unwrap();
        let c = Cluster {
            nodes,
            dir,
            http,
            links,
            secret,
        };
        for i in 1..=k {
            c.wait_healthy(i).await;
        }
        // A node that started before its peers listened has marked them
        // down; tests begin once every node's failure detector agrees
        // everyone is up, as an operator would wait after a cold start.
        for i in 1..=k {
            c.wait_sees_all_up(i).await;
        }
        c
    }

    /// Node `i` (1-based).
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i - 1]
    }

    /// Base URL of node `i` (1-based).
    pub fn url(&self, i: usize) -> String {
        self.nodes[i - 1].url()
    }

    /// The cluster secret every node of this cluster was given.
    pub fn secret(&self) -> &ClusterSecret {
        &self.secret
    }

    /// The token membership commands present in `X-Dynkv-Token`
    /// ([`ClusterSecret::admin_token`] of [`Cluster::secret`]).
    pub fn admin_token(&self) -> String {
        self.secret.admin_token()
    }

    /// Waits (up to 20 s) until node `i` answers `/health`.
    pub async fn wait_healthy(&self, i: usize) {
        let url = format!("{}/health", self.url(i));
        let ok = poll(Duration::from_secs(20), || async {
            matches!(self.http.get(&url).send().await, Ok(r) if r.status().is_success())
        })
        .await;
        assert!(
            ok,
            "node n{i} did not become healthy; log:\n{}",
            self.log_tail(i)
        );
    }

    /// Waits (up to 20 s) until node `i` sees every running member up.
    pub async fn wait_sees_all_up(&self, i: usize) {
        let url = format!("{}/admin/cluster", self.url(i));
        let ok = poll(Duration::from_secs(20), || async {
            let Ok(r) = self.http.get(&url).send().await else {
                return false;
            };
            let v: serde_json::Value = r.json_value().await;
            v["members"]
                .as_array()
                .is_some_and(|m| m.iter().all(|m| m["up"] == true))
        })
        .await;
        assert!(ok, "node n{i} never saw every member up");
    }

    /// `kill -9` node `i`.
    pub fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i - 1];
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Pauses node `i` (SIGSTOP): alive but silent.
    pub fn pause(&self, i: usize) {
        self.nodes[i - 1].signal("STOP");
    }

    /// Resumes a paused node (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.nodes[i - 1].signal("CONT");
    }

    /// Graceful stop (SIGTERM) of node `i`, waiting for it to exit.
    pub fn stop(&mut self, i: usize) {
        let n = &mut self.nodes[i - 1];
        n.signal("TERM");
        if let Some(mut c) = n.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again on its data dir, with extra settings, and waits for health.
    pub async fn restart_with(&mut self, i: usize, extra: &[(&str, &str)]) {
        let n = &mut self.nodes[i - 1];
        assert!(n.child.is_none(), "node n{i} is still running");
        for (k, v) in extra {
            n.env.push((k.to_string(), v.to_string()));
        }
        n.spawn();
        self.wait_healthy(i).await;
    }

    /// Starts node `i` again on its data dir and waits for health.
    pub async fn restart(&mut self, i: usize) {
        self.restart_with(i, &[]).await
    }

    /// Starts node `i` again on its data dir, with the same settings, and
    /// returns at once: a caller that must not panic (a fault injector
    /// running for minutes) polls `/health` itself and decides what a slow
    /// start means. Returns false if the node was still running.
    pub fn spawn_again(&mut self, i: usize) -> bool {
        let n = &mut self.nodes[i - 1];
        if n.child.is_some() {
            return false;
        }
        n.spawn();
        true
    }

    /// Removes node `i`'s data directory (the node must not be running: kill
    /// it first) and forgets its sync points: a lost or replaced disk. The
    /// node keeps its id, addresses and settings.
    pub fn wipe_data(&mut self, i: usize) -> std::io::Result<()> {
        let n = &mut self.nodes[i - 1];
        if n.child.is_some() {
            return Err(std::io::Error::other(format!("n{i} is still running")));
        }
        match std::fs::remove_dir_all(&n.data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if let Some(f) = &n.faults {
            f.reset_manifest()?;
        }
        Ok(())
    }

    /// Loses node `i`'s disk: `kill -9`, remove its data directory, start it
    /// again under the same id and settings, and wait for health.
    pub async fn wipe_disk(&mut self, i: usize) {
        self.kill(i);
        self.wipe_data(i).expect("wipe the data dir");
        self.restart(i).await;
    }

    /// The power cut on a node that is not running (kill it first): every
    /// file under its data dir loses what was written since its last
    /// `fsync`/`fdatasync` (see [`faults::drop_unsynced`]). Needs
    /// [`ClusterOptions::with_fault_layer`].
    pub fn drop_unsynced(
        &mut self,
        i: usize,
        keep: faults::Unsynced,
    ) -> std::io::Result<faults::PowerCutReport> {
        let n = &mut self.nodes[i - 1];
        if n.child.is_some() {
            return Err(std::io::Error::other(format!("n{i} is still running")));
        }
        let f = n.faults.as_ref().ok_or_else(no_fault_layer)?;
        faults::drop_unsynced(f, keep)
    }

    /// A power cut of node `i`: `kill -9`, drop everything it did not
    /// fsync, start it again and wait for health. Returns what was dropped.
    pub async fn power_cut(&mut self, i: usize) -> faults::PowerCutReport {
        self.kill(i);
        let report = self
            .drop_unsynced(i, faults::Unsynced::DropAll)
            .expect("power cut");
        self.restart(i).await;
        report
    }

    /// Fills node `i`'s disk (`on`) or gives the space back: while full,
    /// every write to a file under its data dir fails with `ENOSPC`. Takes
    /// effect at once on a running node and lasts across restarts. Needs
    /// [`ClusterOptions::with_fault_layer`].
    pub fn disk_full(&self, i: usize, on: bool) -> std::io::Result<()> {
        self.nodes[i - 1]
            .faults
            .as_ref()
            .ok_or_else(no_fault_layer)?
            .set_disk_full(on)
    }

    /// Sets node `i`'s wall clock `offset_ms` off the real one (0: back to
    /// true time): at once on a running node (a clock step), and across
    /// restarts. Monotonic clocks are untouched. Needs
    /// [`ClusterOptions::with_fault_layer`].
    pub fn skew_clock(&self, i: usize, offset_ms: i64) -> std::io::Result<()> {
        self.nodes[i - 1]
            .faults
            .as_ref()
            .ok_or_else(no_fault_layer)?
            .set_clock_offset_ms(offset_ms)
    }

    /// Whether node `i` is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i - 1].is_running()
    }

    /// The last lines of node `i`'s log.
    pub fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(&self.nodes[i - 1].log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Cuts every link between nodes of different groups, both ways.
    pub fn partition(&self, groups: &[&[usize]]) {
        for (a, ga) in groups.iter().enumerate() {
            for (b, gb) in groups.iter().enumerate() {
                if a != b {
                    for i in ga.iter() {
                        for j in gb.iter() {
                            self.cut(*i, *j);
                        }
                    }
                }
            }
        }
    }

    /// Cuts node `i` off from every other node, both ways (it still answers clients).
    pub fn isolate(&self, i: usize) {
        // Nodes started later (joiners) have no proxies: only proxied links are cut.
        for j in 1..=self.nodes.len() {
            if j != i && self.links.contains_key(&(i, j)) {
                self.cut(i, j);
                self.cut(j, i);
            }
        }
    }

    /// Cuts the link from node `i` to node `j` only (asymmetric).
    pub fn cut(&self, i: usize, j: usize) {
        self.links
            .get(&(i, j))
            .expect("cluster started with ClusterOptions::proxied")
            .cut();
    }

    /// Heals every link.
    pub fn heal(&self) {
        for l in self.links.values() {
            l.heal();
        }
    }

    /// A key URL on node `i` with query parameters.
    pub fn key_url(&self, i: usize, key: &str, query: &str) -> String {
        let enc = encode_key(key);
        if query.is_empty() {
            format!("{}/kv/{enc}", self.url(i))
        } else {
            format!("{}/kv/{enc}?{query}", self.url(i))
        }
    }

    /// PUT through node `i`.
    pub async fn put(
        &self,
        i: usize,
        key: &str,
        value: &str,
        query: &str,
        context: Option<&str>,
    ) -> Reply {
        let mut req = self
            .http
            .put(self.key_url(i, key, query))
            .header("content-type", "text/plain")
            .body(value.to_string());
        if let Some(c) = context {
            req = req.header("x-dynkv-context", c);
        }
        Reply::from(req.send().await.expect("PUT sent")).await
    }

    /// DELETE through node `i`.
    pub async fn delete(&self, i: usize, key: &str, query: &str, context: Option<&str>) -> Reply {
        let mut req = self.http.delete(self.key_url(i, key, query));
        if let Some(c) = context {
            req = req.header("x-dynkv-context", c);
        }
        Reply::from(req.send().await.expect("DELETE sent")).await
    }

    /// GET through node `i`, asking for the JSON sibling view.
    pub async fn get(&self, i: usize, key: &str, query: &str) -> Reply {
        let req = self
            .http
            .get(self.key_url(i, key, query))
            .header("accept", "application/json");
        Reply::from(req.send().await.expect("GET sent")).await
    }

    /// What node `i` alone stores for `key` (`/admin/local`).
    pub async fn local(&self, i: usize, key: &str) -> serde_json::Value {
        let url = format!("{}/admin/local/{}", self.url(i), encode_key(key));
        let r = self.http.get(url).send().await.expect("local read");
        r.json_value().await
    }

    /// The live values node `i` stores locally for `key`, sorted.
    pub async fn local_values(&self, i: usize, key: &str) -> Vec<String> {
        let v = self.local(i, key).await;
        sibling_values(&v)
    }

    /// `/admin/ring?key=` from node `i`: (preference list, fallbacks) as node numbers.
    pub async fn placement(&self, i: usize, key: &str) -> (Vec<usize>, Vec<usize>) {
        let url = format!("{}/admin/ring?key={}", self.url(i), encode_key(key));
        let v = self.http.get(url).send().await.unwrap().json_value().await;
        let nums = |a: &serde_json::Value| -> Vec<usize> {
            a.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().trim_start_matches('n').parse().unwrap())
                .collect()
        };
        (nums(&v["preference_list"]), nums(&v["fallbacks"]))
    }

    /// The value of a Prometheus counter or gauge on node `i` (summed over labels matching `label_filter`).
    pub async fn metric(&self, i: usize, name: &str, label_filter: &str) -> f64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.url(i)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.starts_with(name)
                    && (l.as_bytes().get(name.len()) == Some(&b' ')
                        || l.as_bytes().get(name.len()) == Some(&b'{'))
            })
            .filter(|l| l.contains(label_filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// A key name (from `prefix-0`, `prefix-1`, ...) whose preference list
    /// satisfies `pred` (as node numbers, primaries first).
    pub async fn find_key<F: Fn(&[usize], &[usize]) -> bool>(
        &self,
        prefix: &str,
        pred: F,
    ) -> String {
        for i in 0..10_000 {
            let key = format!("{prefix}-{i}");
            let (p, f) = self.placement(1, &key).await;
            if pred(&p, &f) {
                return key;
            }
        }
        panic!("no key matches");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 1..=self.nodes.len() {
                eprintln!("----- log of n{i} (tail) -----\n{}", self.log_tail(i));
            }
        }
        for n in &mut self.nodes {
            if let Some(c) = &n.child {
                // Resume first, in case a test paused it.
                let _ = Command::new("kill")
                    .arg("-CONT")
                    .arg(c.id().to_string())
                    .status();
            }
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn no_fault_layer() -> std::io::Error {
    std::io::Error::other(
        "the cluster does not run under the fault layer (ClusterOptions::with_fault_layer)",
    )
}

/// Percent-encodes a key for a path segment.
pub fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A finished HTTP exchange.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// `X-Dynkv-Context`, if any.
    pub context: Option<String>,
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// Body.
    pub body: bytes::Bytes,
    /// `Retry-After`, if any.
    pub retry_after: Option<String>,
    /// `X-Dynkv-Dot` (writes): `actor:counter` of the new version.
    pub dot: Option<String>,
    /// `X-Dynkv-Replicas`: what the replicas did.
    pub replicas: Option<String>,
}

impl Reply {
    /// Reads a whole response.
    pub async fn read(r: reqwest::Response) -> Reply {
        Reply::from(r).await
    }

    async fn from(r: reqwest::Response) -> Reply {
        let h = r.headers();
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (context, content_type, retry_after, dot) = (
            get("x-dynkv-context"),
            get("content-type"),
            get("retry-after"),
            get("x-dynkv-dot"),
        );
        let replicas = get("x-dynkv-replicas");
        Reply {
            replicas,
            status: r.status(),
            context,
            content_type,
            retry_after,
            dot,
            body: r.bytes().await.unwrap_or_default(),
        }
    }

    /// `X-Dynkv-Replicas` as `[asked, answered, repaired, sloppy]`
    /// (panics when the header is missing or malformed).
    pub fn replica_report(&self) -> [u32; 4] {
        let h = self
            .replicas
            .as_deref()
            .unwrap_or_else(|| panic!("no X-Dynkv-Replicas on a {}: {}", self.status, self.text()));
        let mut out = [0u32; 4];
        let names = ["asked", "answered", "repaired", "sloppy"];
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 4, "X-Dynkv-Replicas: {h}");
        for (i, (part, name)) in parts.iter().zip(names).enumerate() {
            let v = part
                .strip_prefix(name)
                .and_then(|p| p.strip_prefix('='))
                .unwrap_or_else(|| panic!("X-Dynkv-Replicas: {h}"));
            out[i] = v
                .parse()
                .unwrap_or_else(|_| panic!("X-Dynkv-Replicas: {h}"));
        }
        out
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Live values: the body of a 200, the non-deleted siblings of a 300, nothing otherwise. Sorted.
    pub fn values(&self) -> Vec<String> {
        match self.status.as_u16() {
            200 => vec![self.text()],
            300 => sibling_values(&self.json()),
            _ => vec![],
        }
    }
}

/// Sorted live values of a sibling JSON view.
pub fn sibling_values(v: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = v["siblings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["deleted"].as_bool() != Some(true))
                .map(|s| s["value"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Reads a response body as JSON (panics with the body if it is not).
pub trait JsonValue {
    /// The body as JSON.
    fn json_value_compat(self) -> impl std::future::Future<Output = serde_json::Value>;
}

impl JsonValue for reqwest::Response {
    async fn json_value_compat(self) -> serde_json::Value {
        self.json_value().await
    }
}

trait JsonValueInner {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValueInner for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        let bytes = self.bytes().await.unwrap();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    }
}

/// Polls `cond` every 50 ms until it holds or `limit` passes. No fixed sleeps.
pub async fn poll<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Live membership helpers.
impl Cluster {
    /// Starts a new node as a cluster of its own (same settings and secret
    /// as `n1`, its own public and cluster ports, no link proxies), ready to
    /// be joined with [`Cluster::admin`]`("join")` through a member's
    /// [`Node::cluster_addr`]. Returns its number.
    pub async fn start_joiner(&mut self) -> usize {
        let i = self.nodes.len() + 1;
        let id = format!("n{i}");
        let (http, cluster) = (reserve_port(), reserve_port());
        let (port, cluster_port) = (port_of(&http), port_of(&cluster));
        let ndir = self.dir.path().join(&id);
        std::fs::create_dir_all(&ndir).unwrap();
        let config = ndir.join("node.toml");
        let n_val = std::fs::read_to_string(&self.nodes[0].config)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("n_val = ").map(str::to_string))
            .unwrap_or_else(|| "3".into());
        std::fs::write(
            &config,
            node_toml(
                &id,
                port,
                cluster_port,
                &ndir.join("data"),
                &[format!("{id}@127.0.0.1:{cluster_port}")],
                &n_val,
                &self.secret,
            ),
        )
        .unwrap();
        let faults = self.nodes[0].faults.as_ref().map(|f| {
            faults::NodeFaults::create(f.layer.clone(), &ndir.join("faults"), &ndir.join("data"))
                .expect("fault files")
        });
        let mut node = Node {
            id,
            port,
            cluster_port,
            pb_port: None,
            held_pb: None,
            scheme: self.nodes[0].scheme,
            config,
            log: ndir.join("node.log"),
            env: self.nodes[0].env.clone(),
            bin: self.nodes[0].bin.clone(),
            child: None,
            data_dir: ndir.join("data"),
            faults,
            held: Some((http, cluster)),
        };
        node.spawn();
        self.nodes.push(node);
        self.wait_healthy(i).await;
        i
    }

    /// Calls a membership endpoint of node `i` (`members`, `plan`,
    /// `transfers`, `bucket-types`: GET; `join`, `leave`, `commit`,
    /// `transfer-limit`, `bucket-types/T/VERB`: POST with `body`, none when
    /// it is null) with the cluster's admin
    /// token. A join's `seed` is a member's [`Node::cluster_addr`].
    pub async fn admin(
        &self,
        i: usize,
        command: &str,
        body: serde_json::Value,
    ) -> (StatusCode, serde_json::Value) {
        let url = format!("{}/admin/{command}", self.url(i));
        let req = match command {
            "members" | "plan" | "transfers" | "bucket-types" => self.http.get(url),
            _ if body.is_null() => self.http.post(url),
            _ => self.http.post(url).json(&body),
        };
        let r = req
            .header("x-dynkv-token", self.admin_token())
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json_value().await)
    }

    /// Waits until node `i` reports no membership change in progress.
    pub async fn wait_transition_done(&self, i: usize, limit: Duration) -> bool {
        poll(limit, || async {
            let (_, v) = self.admin(i, "members", serde_json::Value::Null).await;
            v["transition"].is_null()
        })
        .await
    }

    /// `/admin/members` of each of `nodes`, in that order (a node that does
    /// not answer 200 gives `{"unreachable": <status>}`), so a test can
    /// compare what every node believes.
    pub async fn members_views(&self, nodes: &[usize]) -> Vec<serde_json::Value> {
        let mut views = Vec::with_capacity(nodes.len());
        for &i in nodes {
            let url = format!("{}/admin/members", self.url(i));
            let r = self
                .http
                .get(url)
                .header("x-dynkv-token", self.admin_token())
                .send()
                .await;
            views.push(match r {
                Ok(r) if r.status() == StatusCode::OK => r.json_value().await,
                Ok(r) => serde_json::json!({ "unreachable": r.status().as_u16() }),
                Err(e) => serde_json::json!({ "unreachable": e.to_string() }),
            });
        }
        views
    }

    /// Whether `nodes` agree on the ring: the same version, the same member
    /// ids with the same statuses and `partitions_owned`, and the same
    /// answer to "is a change running". `Ok` carries the common
    /// [`ring_summary`]; `Err` names each node's summary where they differ.
    pub async fn ring_agreed(&self, nodes: &[usize]) -> Result<serde_json::Value, String> {
        let views = self.members_views(nodes).await;
        let summaries: Vec<serde_json::Value> = views.iter().map(ring_summary).collect();
        if summaries.windows(2).all(|w| w[0] == w[1]) {
            Ok(summaries.into_iter().next().unwrap_or_default())
        } else {
            let each: Vec<String> = nodes
                .iter()
                .zip(&summaries)
                .map(|(i, s)| format!("n{i}: {s}"))
                .collect();
            Err(format!(
                "the nodes disagree on the ring:\n{}",
                each.join("\n")
            ))
        }
    }

    /// Polls [`Cluster::ring_agreed`] on `nodes` until they agree with no
    /// change running, or `limit` passes (then the last disagreement).
    pub async fn wait_ring_agreed(
        &self,
        nodes: &[usize],
        limit: Duration,
    ) -> Result<serde_json::Value, String> {
        let deadline = Instant::now() + limit;
        loop {
            let last = self.ring_agreed(nodes).await;
            match last {
                Ok(s) if s["transition"] == false => return Ok(s),
                Ok(s) if Instant::now() >= deadline => {
                    return Err(format!("still changing: {s}"));
                }
                Err(e) if Instant::now() >= deadline => return Err(e),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// What nodes must agree on about the ring, from one `/admin/members`
/// view: `version`, `members` as `[{id, status, partitions_owned}]` in id
/// order, and `transition` (whether a change is running; its progress
/// counts differ from node to node while it runs and are left out).
pub fn ring_summary(view: &serde_json::Value) -> serde_json::Value {
    if !view["unreachable"].is_null() {
        return view.clone();
    }
    let mut members: Vec<serde_json::Value> = view["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    serde_json::json!({
                        "id": m["id"],
                        "status": m["status"],
                        "partitions_owned": m["partitions_owned"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    members.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    serde_json::json!({
        "version": view["version"],
        "members": members,
        "transition": !view["transition"].is_null(),
    })
}

/// The member ids of a [`ring_summary`] (or of a members view), in order.
pub fn member_ids(view: &serde_json::Value) -> Vec<String> {
    view["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
