//! The real internode transport over loopback TCP: [`NetTransport`]
//! against [`net::serve`] (or against a hand-made peer), with small test
//! handlers on real endpoints.
//!
//! Each server runs on a runtime of its own, so a test can make it vanish
//! at once (every task, listener and socket of it) as a crashed process
//! would. Every wait is bounded; nothing asserts wall-clock performance.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dynkv_ring::NodeId;
use dynkv_rpc::handshake::{self, Hello, Initiator, accept_first};
use dynkv_rpc::messages::{Ping, Pong, Read, ReadReply};
use dynkv_rpc::metrics::{ConnectionLabels, LinkLabels, PeerLabels, ReasonLabels};
use dynkv_rpc::net;
use dynkv_rpc::retry::Backoff;
use dynkv_rpc::{
    AddressBook, CallContext, ClusterSecret, Dispatcher, Endpoint, Handler, InternodeMetrics,
    NetConfig, NetTransport, PROTOCOL_VERSION, RemoteError, RpcError, Transport,
};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const SERVER: &str = "server";
const CLIENT: &str = "client";
/// A deadline no healthy call on loopback comes near.
const LONG: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Handlers

/// The server's handlers. `Ping` answers its name; `Read` does what its
/// key says (`command:argument`) and answers in `ReadReply::digest`:
/// - `echo:<n>`: answers `n` at once;
/// - `sleep:<ms>:<n>`: answers `n` after `ms` milliseconds;
/// - `block:<n>`: answers `n` once the gate opens;
/// - `size:<bytes>`: answers an object whose value has that many bytes;
/// - `version`: answers the message version agreed with the caller.
struct TestNode {
    name: String,
    /// `Read` requests that reached the handler.
    entered: AtomicUsize,
    gate: watch::Sender<bool>,
}

impl TestNode {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(TestNode {
            name: name.to_owned(),
            entered: AtomicUsize::new(0),
            gate: watch::channel(false).0,
        })
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }
}

fn digest(n: u64) -> ReadReply {
    ReadReply {
        object: None,
        digest: Some(n),
        service_micros: None,
        received_micros: None,
    }
}

fn number(s: &str) -> Result<u64, RemoteError> {
    s.parse()
        .map_err(|_| RemoteError::BadRequest(format!("not a number: {s:?}")))
}

fn object_of(bytes: usize) -> Object {
    DvvSet::update(
        &VersionVector::new(),
        &Object::new(),
        SERVER,
        Content::value(vec![7u8; bytes], "application/octet-stream", 1),
    )
}

impl Handler<Ping> for TestNode {
    async fn handle(
        self: Arc<Self>,
        _request: Ping,
        _ctx: CallContext,
    ) -> Result<Pong, RemoteError> {
        Ok(Pong {
            node: NodeId::from(self.name.as_str()),
            clock: 0,
        })
    }
}

impl Handler<Read> for TestNode {
    async fn handle(
        self: Arc<Self>,
        request: Read,
        ctx: CallContext,
    ) -> Result<ReadReply, RemoteError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let key = String::from_utf8(request.key.to_vec())
            .map_err(|_| RemoteError::BadRequest("key not UTF-8".into()))?;
        let (command, arg) = key.split_once(':').unwrap_or((key.as_str(), ""));
        match command {
            "echo" => Ok(digest(number(arg)?)),
            "sleep" => {
                let (ms, n) = arg
                    .split_once(':')
                    .ok_or_else(|| RemoteError::BadRequest(key.clone()))?;
                tokio::time::sleep(Duration::from_millis(number(ms)?)).await;
                Ok(digest(number(n)?))
            }
            "block" => {
                let mut gate = self.gate.subscribe();
                let _ = gate.wait_for(|open| *open).await;
                Ok(digest(number(arg)?))
            }
            "size" => Ok(ReadReply {
                object: Some(object_of(number(arg)? as usize)),
                digest: None,
                service_micros: None,
                received_micros: None,
            }),
            "version" => Ok(digest(ctx.version.into())),
            _ => Err(RemoteError::BadRequest(key)),
        }
    }
}

fn read(key: impl Into<String>) -> Read {
    Read {
        key: Bytes::from(key.into()),
        hint_for: None,
        digest_only: false,
    }
}

// ---------------------------------------------------------------------------
// Setup

fn secret() -> ClusterSecret {
    ClusterSecret::from_hex(&"42".repeat(32)).unwrap()
}

fn other_secret() -> ClusterSecret {
    ClusterSecret::from_hex(&"24".repeat(32)).unwrap()
}

/// A node's settings: quick reconnects so tests need not wait long.
fn config(node: &str, secret: ClusterSecret, pinned: Option<u32>) -> NetConfig {
    let mut c = NetConfig::new(secret, Hello::new(node, format!("{node}:8080"), pinned));
    c.handshake_timeout = Duration::from_secs(2);
    c.reconnect = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    c
}

/// `net::serve` on a runtime of its own.
struct Server {
    addr: SocketAddr,
    node: Arc<TestNode>,
    metrics: Arc<InternodeMetrics>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Server {
    fn start(config: NetConfig) -> Server {
        Self::start_at("127.0.0.1:0".parse().unwrap(), config)
    }

    /// Serves on `addr` (a port a previous server used is bound again).
    fn start_at(addr: SocketAddr, config: NetConfig) -> Server {
        let listener = std::net::TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let node = TestNode::new(&config.hello.node);
        let mut dispatcher = Dispatcher::new();
        dispatcher
            .register::<Ping, _>(node.clone())
            .register::<Read, _>(node.clone());
        let metrics = Arc::new(InternodeMetrics::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let m = metrics.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            // Never shut down: the server goes away with its runtime.
            let (_keep, shutdown) = watch::channel(false);
            net::serve(listener, config, Arc::new(dispatcher), m, shutdown).await;
        });
        Server {
            addr,
            node,
            metrics,
            runtime: Some(runtime),
        }
    }

    /// Stops everything the server runs at once: its listener, its
    /// connections and its handlers, as if its process died.
    fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client transport that knows the server as [`SERVER`] at `addr`.
struct Client {
    net: NetTransport,
    transport: Arc<dyn Transport>,
    metrics: Arc<InternodeMetrics>,
    peer: NodeId,
}

impl Client {
    fn new(config: NetConfig, addr: SocketAddr) -> Client {
        let peer = NodeId::from(SERVER);
        let book = Arc::new(AddressBook::new([(peer.clone(), addr.to_string())]));
        let metrics = Arc::new(InternodeMetrics::default());
        let net = NetTransport::new(config, book, metrics.clone());
        Client {
            transport: Arc::new(net.clone()),
            net,
            metrics,
            peer,
        }
    }

    fn call<E: Endpoint + Sync>(
        &self,
        request: E,
        timeout: Duration,
    ) -> impl Future<Output = Result<E::Response, RpcError>> + Send + 'static {
        let (transport, peer) = (self.transport.clone(), self.peer.clone());
        async move { transport.call(&peer, &request, timeout).await }
    }

    /// The digest a `Read` answered.
    async fn read(&self, key: impl Into<String>, timeout: Duration) -> Result<u64, RpcError> {
        let reply = self.call(read(key), timeout).await?;
        Ok(reply.digest.expect("a digest answer"))
    }
}

// Metrics, read through the public fields. One statement per family
// access: a family's guard lives to the end of its statement.

fn open_connections(m: &InternodeMetrics, peer: &str, side: &'static str) -> i64 {
    m.connections
        .get_or_create(&ConnectionLabels {
            peer: peer.to_owned(),
            side,
        })
        .get()
}

fn frames(m: &InternodeMetrics, peer: &str, direction: &'static str) -> u64 {
    m.frames
        .get_or_create(&LinkLabels {
            peer: peer.to_owned(),
            direction,
        })
        .get()
}

fn writes(m: &InternodeMetrics, peer: &str) -> u64 {
    m.writes
        .get_or_create(&PeerLabels {
            peer: peer.to_owned(),
        })
        .get()
}

fn reconnects(m: &InternodeMetrics, peer: &str) -> u64 {
    m.reconnects
        .get_or_create(&PeerLabels {
            peer: peer.to_owned(),
        })
        .get()
}

fn handshake_failures(m: &InternodeMetrics, reason: &'static str) -> u64 {
    m.handshake_failures
        .get_or_create(&ReasonLabels { reason })
        .get()
}

/// Waits (at most 5 s) until `cond` holds.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Bounds a future that must finish (a hang fails the test, not CI).
async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

// ---------------------------------------------------------------------------
// 1. Typed calls and version agreement

#[tokio::test]
async fn a_typed_call_round_trips_and_versions_are_agreed() {
    let server = Server::start(config(SERVER, secret(), None));
    let client = Client::new(config(CLIENT, secret(), None), server.addr);
    assert_eq!(client.transport.version(&client.peer), None, "not dialled");

    let pong = client.call(Ping {}, LONG).await.unwrap();
    assert_eq!(pong.node, NodeId::from(SERVER));
    assert_eq!(client.read("echo:77", LONG).await, Ok(77));
    // A refusal comes back as the peer's typed error.
    assert!(matches!(
        client.call(read("nonsense"), LONG).await,
        Err(RpcError::Remote(RemoteError::BadRequest(_)))
    ));
    assert_eq!(
        client.transport.version(&client.peer),
        Some(PROTOCOL_VERSION)
    );
    // The server's handler sees the same version.
    assert_eq!(
        client.read("version", LONG).await,
        Ok(u64::from(PROTOCOL_VERSION))
    );
    let peers = client.net.peers();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].says_it_is, SERVER);
    assert_eq!(peers[0].api_addr, "server:8080");
    assert_eq!(peers[0].version, PROTOCOL_VERSION);
    assert_eq!(open_connections(&client.metrics, SERVER, "outbound"), 1);
    assert_eq!(open_connections(&server.metrics, CLIENT, "inbound"), 1);

    // Either side pinned to version 1: both agree on 1.
    for (client_pin, server_pin) in [(Some(1), None), (None, Some(1))] {
        let server = Server::start(config(SERVER, secret(), server_pin));
        let client = Client::new(config(CLIENT, secret(), client_pin), server.addr);
        assert_eq!(client.read("version", LONG).await, Ok(1));
        assert_eq!(client.transport.version(&client.peer), Some(1));
    }
}

// ---------------------------------------------------------------------------
// 2. Multiplexing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_share_one_connection_and_complete_out_of_order() {
    const N: u64 = 500;
    let server = Server::start(config(SERVER, secret(), None));
    let client = Arc::new(Client::new(config(CLIENT, secret(), None), server.addr));
    let finished = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..N)
        .map(|i| {
            let (client, finished) = (client.clone(), finished.clone());
            // The later the call, the sooner its handler finishes.
            tokio::spawn(async move {
                let r = client.read(format!("sleep:{}:{i}", N - i), LONG).await;
                (r, finished.fetch_add(1, Ordering::SeqCst))
            })
        })
        .collect();
    let mut order = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        let (answer, position) = bounded("a multiplexed call", call).await.unwrap();
        assert_eq!(answer, Ok(i as u64), "call {i} got another call's answer");
        order.push(position);
    }
    assert!(
        order[N as usize - 1] < order[0],
        "the last call (shortest handler) finished before the first"
    );
    assert_eq!(server.node.entered.load(Ordering::SeqCst), N as usize);

    let m = &client.metrics;
    assert_eq!(open_connections(m, SERVER, "outbound"), 1);
    assert_eq!(open_connections(&server.metrics, CLIENT, "inbound"), 1);
    assert_eq!(reconnects(m, SERVER), 0);
    let (sent, received) = (frames(m, SERVER, "sent"), frames(m, SERVER, "received"));
    assert_eq!((sent, received), (N, N));
    let w = writes(m, SERVER);
    assert!(
        w < sent,
        "{sent} frames in {w} writes: ready frames were not coalesced"
    );
}

// ---------------------------------------------------------------------------
// 3. The in-flight bound

#[tokio::test]
async fn past_the_inflight_bound_a_caller_waits_then_times_out() {
    let mut server_config = config(SERVER, secret(), None);
    server_config.max_inflight = 4;
    let server = Server::start(server_config);
    let mut client_config = config(CLIENT, secret(), None);
    client_config.max_inflight = 4;
    let client = Arc::new(Client::new(client_config, server.addr));
    assert_eq!(client.read("echo:0", LONG).await, Ok(0));

    let blocked: Vec<_> = (1..=4)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.read(format!("block:{i}"), LONG).await })
        })
        .collect();
    let node = server.node.clone();
    eventually("four requests are in their handlers", || {
        node.entered.load(Ordering::SeqCst) == 5
    })
    .await;

    // A fifth waits for a slot and gives up at its deadline.
    let short = Duration::from_millis(200);
    assert_eq!(
        bounded("the fifth call", client.read("echo:5", short)).await,
        Err(RpcError::Timeout(short))
    );
    assert_eq!(node.entered.load(Ordering::SeqCst), 5, "never sent");
    // Nothing else broke: the four still wait, on the same connection.
    assert!(blocked.iter().all(|b| !b.is_finished()));
    assert_eq!(open_connections(&client.metrics, SERVER, "outbound"), 1);

    node.open_gate();
    for (i, b) in blocked.into_iter().enumerate() {
        let answer = bounded("a released call", b).await.unwrap();
        assert_eq!(answer, Ok(i as u64 + 1));
    }
    for i in 6..16 {
        assert_eq!(client.read(format!("echo:{i}"), LONG).await, Ok(i));
    }
    assert_eq!(open_connections(&client.metrics, SERVER, "outbound"), 1);
    assert_eq!(reconnects(&client.metrics, SERVER), 0);
}

// ---------------------------------------------------------------------------
// 4. The cluster secret

#[tokio::test]
async fn a_wrong_secret_is_refused() {
    let server = Server::start(config(SERVER, secret(), None));
    let client = Client::new(config(CLIENT, other_secret(), None), server.addr);
    // The server cannot open the first message and hangs up; to the client
    // that is a peer closing the connection mid-handshake (what a crash
    // also looks like), so the call is `Unreachable`, with the likely
    // reason in its text. Only an answer that fails to authenticate
    // proves a wrong secret (see the impostor below).
    match client.call(Ping {}, LONG).await {
        Err(RpcError::Unreachable(why)) => {
            assert!(why.contains("wrong cluster secret"), "{why}")
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let server_metrics = server.metrics.clone();
    eventually("the server counts the bad secret", || {
        handshake_failures(&server_metrics, "bad_secret") == 1
    })
    .await;
    assert_eq!(handshake_failures(&client.metrics, "closed"), 1);
    assert_eq!(open_connections(&server.metrics, CLIENT, "inbound"), 0);
    assert_eq!(server.node.entered.load(Ordering::SeqCst), 0);
    assert!(client.net.peers().is_empty());
}

#[tokio::test]
async fn an_answer_under_another_secret_is_unauthorized() {
    // An impostor that answers the client's first message with a real
    // handshake answer made under another secret.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let impostor = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut first = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut first).await.unwrap();
        let hello = Hello::new("impostor", "x:1", None);
        let (_, theirs) = Initiator::start(&other_secret(), hello.clone());
        let (answer, _) = accept_first(&other_secret(), &hello, &theirs).unwrap();
        let mut out = (answer.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&answer);
        stream.write_all(&out).await.unwrap();
        // Hold the connection until the client drops it.
        let _ = stream.read(&mut [0u8; 1]).await;
    });
    let client = Client::new(config(CLIENT, secret(), None), addr);
    assert_eq!(
        client.call(Ping {}, LONG).await,
        Err(RpcError::Unauthorized)
    );
    assert_eq!(handshake_failures(&client.metrics, "bad_secret"), 1);
    bounded("the impostor", impostor).await.unwrap();
}

// ---------------------------------------------------------------------------
// 5. Frame limits

#[tokio::test]
async fn oversized_answers_and_requests_fail_alone() {
    const LIMIT: usize = 64 << 10;
    let mut server_config = config(SERVER, secret(), None);
    server_config.max_frame = LIMIT;
    let server = Server::start(server_config);
    let mut client_config = config(CLIENT, secret(), None);
    client_config.max_frame = LIMIT;
    let client = Client::new(client_config, server.addr);

    // An answer that fits.
    let fits = client.call(read("size:1000"), LONG).await.unwrap();
    assert_eq!(fits.object, Some(object_of(1000)));

    // One that does not becomes the peer's error, on a live connection.
    match client.call(read(format!("size:{}", 2 * LIMIT)), LONG).await {
        Err(RpcError::Remote(RemoteError::TooLarge { bytes, max })) => {
            assert_eq!(max, LIMIT as u64);
            assert!(bytes > max, "{bytes} bytes");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(client.read("echo:1", LONG).await, Ok(1));
    assert_eq!(
        client.call(Ping {}, LONG).await.unwrap().node.as_str(),
        SERVER
    );

    // A request over our own limit is never sent.
    let sent = frames(&client.metrics, SERVER, "sent");
    let huge = "echo:".to_owned() + &"9".repeat(LIMIT);
    match client.call(read(huge), LONG).await {
        Err(e @ RpcError::Unreachable(_)) => assert!(e.never_sent()),
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert_eq!(frames(&client.metrics, SERVER, "sent"), sent);
    assert_eq!(client.read("echo:2", LONG).await, Ok(2));

    // All of it on the one connection it started with.
    let m = &client.metrics;
    assert_eq!(open_connections(m, SERVER, "outbound"), 1);
    assert_eq!(reconnects(m, SERVER), 0);
    assert_eq!(
        m.frame_refusals
            .get_or_create(&PeerLabels {
                peer: SERVER.into()
            })
            .get(),
        0
    );
    let server_refusals = server
        .metrics
        .frame_refusals
        .get_or_create(&PeerLabels {
            peer: CLIENT.into(),
        })
        .get();
    assert_eq!(server_refusals, 0);
}

// ---------------------------------------------------------------------------
// 6. A server that goes away and comes back

#[tokio::test]
async fn a_vanished_server_fails_calls_fast_and_is_redialled() {
    let mut server = Server::start(config(SERVER, secret(), None));
    let addr = server.addr;
    let client = Arc::new(Client::new(config(CLIENT, secret(), None), addr));
    assert_eq!(client.read("echo:1", LONG).await, Ok(1));

    // A call in flight when the server dies is lost, not left hanging.
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move { client.read("sleep:60000:2", LONG).await })
    };
    let node = server.node.clone();
    eventually("the call reaches its handler", || {
        node.entered.load(Ordering::SeqCst) == 2
    })
    .await;
    server.kill();
    let lost = bounded("the call in flight", in_flight).await.unwrap();
    assert!(matches!(lost, Err(RpcError::ConnectionLost(_))), "{lost:?}");
    let m = client.metrics.clone();
    eventually("the connection is closed", || {
        open_connections(&m, SERVER, "outbound") == 0
    })
    .await;

    // Nobody listens: calls fail at once as not sent.
    for _ in 0..3 {
        let r = bounded("a call to nobody", client.read("echo:3", LONG)).await;
        assert!(matches!(r, Err(RpcError::Unreachable(_))), "{r:?}");
    }
    assert_eq!(client.transport.version(&client.peer), None);

    // A server on the same address again: calls succeed after the backoff.
    let server = Server::start_at(addr, config(SERVER, secret(), None));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match client.read("echo:4", LONG).await {
            Ok(n) => {
                assert_eq!(n, 4);
                break;
            }
            Err(RpcError::Unreachable(_)) => {
                assert!(tokio::time::Instant::now() < deadline, "never redialled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(reconnects(&client.metrics, SERVER), 1);
    assert_eq!(open_connections(&client.metrics, SERVER, "outbound"), 1);
    assert_eq!(server.node.entered.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// 7. A silent peer

#[tokio::test]
async fn a_silent_connection_is_closed_and_redialled() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let silent = {
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                accepted.fetch_add(1, Ordering::SeqCst);
                let hello = Hello::new(SERVER, "server:8080", None);
                handshake::respond(&mut stream, &secret(), &hello, Duration::from_secs(2))
                    .await
                    .unwrap();
                // Then never a byte: the requests sit unread.
                held.push(stream);
            }
        })
    };
    let client = Client::new(config(CLIENT, secret(), None), addr);
    let short = Duration::from_millis(200);
    assert_eq!(
        bounded("a call to a silent peer", client.call(Ping {}, short)).await,
        Err(RpcError::Timeout(short))
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let m = client.metrics.clone();
    eventually("the silent connection is closed", || {
        open_connections(&m, SERVER, "outbound") == 0
    })
    .await;

    // The next call does not wait on the dead connection: it dials anew.
    assert_eq!(
        bounded("the next call", client.call(Ping {}, short)).await,
        Err(RpcError::Timeout(short))
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(reconnects(&client.metrics, SERVER), 1);
    silent.abort();
}
