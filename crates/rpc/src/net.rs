//! The internode protocol over TCP: a few long-lived, encrypted,
//! multiplexed connections per peer.
//!
//! ## Connections
//! Each node dials each peer once per [`Class`] (interactive traffic and
//! bulk transfers) and keeps the connection for as long as it works. A
//! connection carries our requests and their answers only; the peer's
//! requests to us travel on the connections it dialled. Many requests are
//! in flight on one connection, each with its id, and answers come back in
//! whatever order the peer finishes them.
//!
//! ## Flow
//! - **Writes are coalesced**: a connection's writer takes every frame that
//!   is ready, seals them into records and sends them in one socket write
//!   (Cassandra's and ScyllaDB's message coalescing).
//! - **In-flight requests are bounded per connection** (a semaphore): past
//!   the bound a caller waits, within its own deadline, for a slot; nothing
//!   queues without bound. The server side reads no further request while
//!   its own bound is reached, so TCP pushes back on the sender.
//! - **Every call has a deadline**, connecting included. A request whose
//!   connection breaks fails at once with [`RpcError::ConnectionLost`]; one
//!   that could not be sent fails with [`RpcError::Unreachable`], so the
//!   caller knows whether the peer may have acted on it.
//! - **Reconnects back off** with capped exponential delays and full
//!   jitter; a call during the backoff fails at once rather than waiting.
//! - **A silent connection is dropped**: when a request times out and the
//!   connection delivered nothing during the whole wait, it is closed, so
//!   a peer that vanished without a reset (a cut cable, a dropped route) is
//!   redialled instead of waited on forever.
//!
//! The failure detector's pings are ordinary requests on the interactive
//! connection, so they see exactly what replica traffic sees.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::{Bytes, BytesMut};
use dynkv_ring::NodeId;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::dispatch::{CallContext, Dispatcher};
use crate::frame::{
    Frame, FrameDecoder, FrameError, MAX_RECORD, RecordDecoder, put_answer, put_request,
    seal_records,
};
use crate::handshake::{self, Hello, SessionCipher};
use crate::metrics::{ConnectionLabels, InternodeMetrics, LinkMetrics, PeerLabels, ReasonLabels};
use crate::retry::Backoff;
use crate::secret::ClusterSecret;
use crate::transport::{AddressBook, RawCall, RawReply, RpcError, Transport};
use crate::wire::{Class, Message, RemoteError};

/// Settings of the internode transport (both sides).
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The cluster secret both ends must hold.
    pub secret: ClusterSecret,
    /// What this node says about itself in handshakes.
    pub hello: Hello,
    /// TCP connect deadline (a dead host is noticed quickly).
    pub connect_timeout: Duration,
    /// Deadline of a handshake, either side.
    pub handshake_timeout: Duration,
    /// Largest frame accepted or sent.
    pub max_frame: usize,
    /// Requests in flight per connection, either side.
    pub max_inflight: usize,
    /// Inbound connections served at once.
    pub max_connections: usize,
    /// Delay between failed reconnects.
    pub reconnect: Backoff,
}

impl NetConfig {
    /// Defaults around a secret and a hello (used by tests).
    pub fn new(secret: ClusterSecret, hello: Hello) -> Self {
        NetConfig {
            secret,
            hello,
            connect_timeout: Duration::from_millis(500),
            handshake_timeout: Duration::from_secs(5),
            max_frame: 64 << 20,
            max_inflight: 1024,
            max_connections: 1024,
            reconnect: Backoff {
                base: Duration::from_millis(25),
                max: Duration::from_secs(1),
            },
        }
    }
}

/// Bound on plaintext gathered into one socket write.
const COALESCE_BYTES: usize = 256 << 10;

type Waiter = oneshot::Sender<Result<RawReply, RpcError>>;

/// One established connection we dialled.
struct Conn {
    addr: String,
    peer: Hello,
    version: u32,
    out: mpsc::Sender<Outgoing>,
    /// `None` once closed: nothing new may wait on a dead connection.
    pending: Mutex<Option<HashMap<u64, Waiter>>>,
    next_id: AtomicU64,
    permits: Arc<Semaphore>,
    /// Milliseconds since `epoch` of the last bytes received.
    last_received: AtomicU64,
    epoch: Instant,
    closed: AtomicBool,
    close_signal: tokio::sync::Notify,
    link: LinkMetrics,
}

impl Conn {
    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_received.store(ms, Ordering::Relaxed);
    }

    fn silent_since(&self, since: Instant) -> bool {
        let last = self.epoch + Duration::from_millis(self.last_received.load(Ordering::Relaxed));
        last < since
    }

    /// Fails every waiting request and refuses new ones.
    fn close(&self, why: &str) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.close_signal.notify_one();
        let waiting = self.pending.lock().take().unwrap_or_default();
        for (_, w) in waiting {
            let _ = w.send(Err(RpcError::ConnectionLost(why.to_string())));
        }
    }

    fn complete(&self, id: u64, answer: RawReply) {
        let waiter = self.pending.lock().as_mut().and_then(|p| p.remove(&id));
        if let Some(w) = waiter {
            let _ = w.send(Ok(answer));
        }
    }

    async fn request(
        self: &Arc<Self>,
        call: RawCall,
        deadline: Instant,
    ) -> Result<RawReply, RpcError> {
        let started = Instant::now();
        // The slot is shared by the caller and the queued frame: it is free
        // again once the caller stopped waiting *and* the frame left the
        // queue, so a writer stuck on a peer that stopped reading makes new
        // callers wait (and time out) instead of queueing without bound.
        // A caller that gives up before its request is queued learns
        // nothing about the peer: it must not close the connection as
        // silent under the requests that hold the slots (they apply that
        // rule at their own deadlines).
        let slot =
            match tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned()).await {
                Ok(Ok(p)) => Arc::new(p),
                Ok(Err(_)) => return Err(RpcError::Unreachable("connection closed".into())),
                Err(_) => return Err(RpcError::Timeout(call.timeout)),
            };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.pending.lock().as_mut() {
            Some(p) => p.insert(id, tx),
            None => return Err(RpcError::Unreachable("connection closed".into())),
        };
        let _forget = Forget { conn: self, id };
        let mut frame = BytesMut::with_capacity(4 + 11 + call.body.len());
        put_request(&mut frame, id, call.endpoint, &call.body);
        let queued = Outgoing {
            frame: frame.freeze(),
            _slot: Some(slot.clone()),
        };
        match tokio::time::timeout_at(deadline, self.out.send(queued)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(RpcError::Unreachable("connection closed".into())),
            Err(_) => return Err(RpcError::Timeout(call.timeout)),
        }
        self.link.inflight.inc();
        let answer = tokio::time::timeout_at(deadline, rx).await;
        self.link.inflight.dec();
        drop(slot);
        match answer {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(RpcError::ConnectionLost("connection closed".into())),
            Err(_) => Err(self.timed_out(&call, started)),
        }
    }

    /// A call that ran out of time: when nothing at all arrived on the
    /// connection meanwhile, the connection is presumed dead and closed so
    /// the next call dials afresh.
    fn timed_out(&self, call: &RawCall, started: Instant) -> RpcError {
        if self.silent_since(started) {
            debug!(peer = %self.peer.node, "closing a silent internode connection");
            self.close("silent connection");
        }
        RpcError::Timeout(call.timeout)
    }
}

/// A frame waiting for the writer, with the in-flight slot it occupies.
struct Outgoing {
    frame: Bytes,
    _slot: Option<Arc<OwnedSemaphorePermit>>,
}

/// Removes a request's waiter when the caller stops waiting (answered,
/// timed out or cancelled), so the table never keeps stale entries.
struct Forget<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.conn.pending.lock().as_mut() {
            p.remove(&self.id);
        }
    }
}

type Dialing = Shared<BoxFuture<'static, Result<Arc<Conn>, RpcError>>>;

#[derive(Default)]
struct DialState {
    /// The dial under way, shared by every caller waiting for it.
    pending: Option<Dialing>,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: String,
    dialled_before: bool,
}

#[derive(Default)]
struct Slot {
    current: ArcSwapOption<Conn>,
    dial: Mutex<DialState>,
}

#[derive(Default)]
struct Links {
    slots: [Slot; 2],
}

struct Inner {
    config: NetConfig,
    book: Arc<AddressBook>,
    links: RwLock<HashMap<NodeId, Arc<Links>>>,
    metrics: Arc<InternodeMetrics>,
}

/// The real [`Transport`]: encrypted, multiplexed TCP connections.
#[derive(Clone)]
pub struct NetTransport {
    inner: Arc<Inner>,
}

/// A peer as the transport sees it, for admin views.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerStatus {
    /// The node id we address it by.
    pub node: String,
    /// The id it gave in its handshake.
    pub says_it_is: String,
    /// Its public API address, from its handshake.
    pub api_addr: String,
    /// The message version agreed.
    pub version: u32,
    /// Open connections (one per class at most).
    pub connections: usize,
}

impl NetTransport {
    /// A transport resolving node ids through `book`.
    pub fn new(config: NetConfig, book: Arc<AddressBook>, metrics: Arc<InternodeMetrics>) -> Self {
        NetTransport {
            inner: Arc::new(Inner {
                config,
                book,
                links: RwLock::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// What the open connections say about each peer.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let links = self.inner.links.read();
        let mut out: Vec<PeerStatus> = links
            .iter()
            .filter_map(|(node, l)| {
                let open: Vec<Arc<Conn>> = l
                    .slots
                    .iter()
                    .filter_map(|s| s.current.load_full())
                    .filter(|c| c.is_open())
                    .collect();
                let c = open.first()?;
                Some(PeerStatus {
                    node: node.to_string(),
                    says_it_is: c.peer.node.clone(),
                    api_addr: c.peer.api_addr.clone(),
                    version: c.version,
                    connections: open.len(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }
}

impl Inner {
    fn links(&self, to: &NodeId) -> Arc<Links> {
        if let Some(l) = self.links.read().get(to) {
            return l.clone();
        }
        self.links.write().entry(to.clone()).or_default().clone()
    }

    /// The open connection to `to` for `class`, dialling one if needed.
    ///
    /// A dial runs as a task of its own, bounded by the connect and
    /// handshake timeouts rather than by the caller's deadline: a caller
    /// with a short deadline (a ping) that gives up does not waste the
    /// handshake, and every caller meanwhile waits on the same dial.
    async fn connection(
        self: &Arc<Self>,
        to: &NodeId,
        class: Class,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Arc<Conn>, RpcError> {
        let addr = self
            .book
            .get(to)
            .ok_or_else(|| RpcError::UnknownNode(to.to_string()))?;
        let links = self.links(to);
        let slot = &links.slots[class.index()];
        let usable = |c: &Arc<Conn>| c.is_open() && c.addr == addr;
        if let Some(c) = slot.current.load_full()
            && usable(&c)
        {
            return Ok(c);
        }
        let dialing = {
            let mut dial = slot.dial.lock();
            if let Some(c) = slot.current.load_full()
                && usable(&c)
            {
                return Ok(c);
            }
            match &dial.pending {
                Some(d) => d.clone(),
                None => {
                    if let Some(at) = dial.retry_at
                        && Instant::now() < at
                    {
                        return Err(RpcError::Unreachable(format!(
                            "reconnecting to {addr} (last attempt: {})",
                            dial.last_error
                        )));
                    }
                    if let Some(c) = slot.current.swap(None) {
                        c.close("replaced");
                    }
                    let d = self
                        .clone()
                        .dial_in_background(to.clone(), addr, class, links.clone());
                    dial.pending = Some(d.clone());
                    d
                }
            }
        };
        match tokio::time::timeout_at(deadline, dialing).await {
            Ok(r) => r,
            Err(_) => Err(RpcError::Timeout(timeout)),
        }
    }

    /// Starts a dial whose outcome lands in the slot whoever waits for it.
    fn dial_in_background(
        self: Arc<Self>,
        to: NodeId,
        addr: String,
        class: Class,
        links: Arc<Links>,
    ) -> Dialing {
        let run = async move {
            let result = self.dial(&to, &addr, class).await;
            let slot = &links.slots[class.index()];
            let mut dial = slot.dial.lock();
            dial.pending = None;
            match &result {
                Ok(conn) => {
                    if dial.dialled_before {
                        self.metrics
                            .reconnects
                            .get_or_create(&PeerLabels {
                                peer: to.to_string(),
                            })
                            .inc();
                    }
                    *dial = DialState {
                        dialled_before: true,
                        ..DialState::default()
                    };
                    slot.current.store(Some(conn.clone()));
                }
                Err(e) => {
                    dial.failures += 1;
                    dial.retry_at =
                        Some(Instant::now() + self.config.reconnect.jittered(dial.failures - 1));
                    dial.last_error = e.to_string();
                }
            }
            result
        };
        let shared = run.boxed().shared();
        tokio::spawn(shared.clone());
        shared
    }

    async fn dial(&self, to: &NodeId, addr: &str, class: Class) -> Result<Arc<Conn>, RpcError> {
        let mut stream =
            match tokio::time::timeout(self.config.connect_timeout, TcpStream::connect(addr)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(RpcError::Unreachable(format!("{addr}: {e}"))),
                Err(_) => {
                    return Err(RpcError::Unreachable(format!(
                        "{addr}: connect timed out after {:?}",
                        self.config.connect_timeout
                    )));
                }
            };
        let _ = stream.set_nodelay(true);
        let session = handshake::initiate(
            &mut stream,
            &self.config.secret,
            self.config.hello.clone(),
            self.config.handshake_timeout,
        )
        .await
        .map_err(|e| {
            self.metrics
                .handshake_failures
                .get_or_create(&ReasonLabels { reason: e.reason() })
                .inc();
            // A peer with another secret hangs up after our first message,
            // but so does one that dies or a link that breaks: only an answer
            // that fails to authenticate proves a wrong secret.
            match e {
                handshake::HandshakeError::BadSecret => RpcError::Unauthorized,
                other => RpcError::Unreachable(format!("{addr}: {other}")),
            }
        })?;
        if session.peer.node != to.as_str() && !to.as_str().starts_with("seed@") {
            warn!(expected = %to, answered = %session.peer.node, %addr, "a different node answers at this peer's address");
        }
        let (rd, wr) = stream.into_split();
        let (tx, rx) = mpsc::channel(self.config.max_inflight.max(1));
        let link = self.metrics.link(to.as_str());
        let conn = Arc::new(Conn {
            addr: addr.to_string(),
            peer: session.peer,
            version: session.version,
            out: tx,
            pending: Mutex::new(Some(HashMap::new())),
            next_id: AtomicU64::new(1),
            permits: Arc::new(Semaphore::new(self.config.max_inflight.max(1))),
            last_received: AtomicU64::new(0),
            epoch: Instant::now(),
            closed: AtomicBool::new(false),
            close_signal: tokio::sync::Notify::new(),
            link: link.clone(),
        });
        conn.touch();
        let gauge = self
            .metrics
            .connections
            .get_or_create(&ConnectionLabels {
                peer: to.to_string(),
                side: "outbound",
            })
            .clone();
        gauge.inc();
        let max_frame = self.config.max_frame;
        let c = conn.clone();
        let cipher = session.cipher;
        let peer = to.clone();
        tokio::spawn(async move {
            let why = tokio::select! {
                r = client_reader(rd, &c, cipher.clone(), max_frame) => r,
                r = writer(wr, rx, cipher, &c.link) => r,
                _ = c.close_signal.notified() => "closed".to_string(),
            };
            debug!(%peer, class = class.name(), reason = %why, "internode connection closed");
            c.close(&why);
            gauge.dec();
        });
        Ok(conn)
    }
}

impl Transport for NetTransport {
    fn send(&self, to: &NodeId, call: RawCall) -> BoxFuture<'static, Result<RawReply, RpcError>> {
        let inner = self.inner.clone();
        let to = to.clone();
        Box::pin(async move {
            let deadline = Instant::now() + call.timeout;
            // Refused here, not by the peer: a frame over its limit would
            // close the connection and fail every request on it.
            if crate::frame::request_len(call.body.len()) > inner.config.max_frame {
                return Err(RpcError::Unreachable(format!(
                    "a {} request of {} bytes exceeds the frame limit of {}",
                    call.name,
                    call.body.len(),
                    inner.config.max_frame
                )));
            }
            let conn = inner
                .connection(&to, call.class, deadline, call.timeout)
                .await?;
            conn.request(call, deadline).await
        })
    }

    fn version(&self, peer: &NodeId) -> Option<u32> {
        let links = self.inner.links.read().get(peer).cloned()?;
        let c = links.slots[Class::Interactive.index()]
            .current
            .load_full()?;
        c.is_open().then_some(c.version)
    }
}

/// Gathers ready frames, seals them and writes them in one go.
async fn writer(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
    cipher: SessionCipher,
    link: &LinkMetrics,
) -> String {
    let mut plain = BytesMut::with_capacity(COALESCE_BYTES);
    let mut wire = Vec::with_capacity(COALESCE_BYTES + MAX_RECORD);
    let mut batch: Vec<Outgoing> = Vec::with_capacity(64);
    let mut nonce = 0u64;
    loop {
        let Some(first) = rx.recv().await else {
            return "no more senders".into();
        };
        // Let the tasks that are ready to send queue their frames first:
        // woken by one sender, this task would otherwise run right after
        // it (a multi-threaded runtime's LIFO slot) and write each frame
        // alone.
        tokio::task::yield_now().await;
        plain.clear();
        plain.extend_from_slice(&first.frame);
        batch.push(first);
        while plain.len() < COALESCE_BYTES {
            match rx.try_recv() {
                Ok(f) => {
                    plain.extend_from_slice(&f.frame);
                    batch.push(f);
                }
                Err(_) => break,
            }
        }
        let frames = batch.len() as u64;
        wire.clear();
        if let Err(e) = seal_records(&cipher, &mut nonce, &plain, &mut wire) {
            return e.to_string();
        }
        if let Err(e) = wr.write_all(&wire).await {
            return format!("write failed: {e}");
        }
        // Written: the frames' in-flight slots are free for new requests.
        batch.clear();
        link.frames_sent.inc_by(frames);
        link.bytes_sent.inc_by(wire.len() as u64);
        link.writes.inc();
    }
}

/// Reads records into frames and hands each to `on_frame`; returns why it stopped.
async fn read_frames(
    mut rd: OwnedReadHalf,
    cipher: SessionCipher,
    max_frame: usize,
    link: &LinkMetrics,
    mut on_frame: impl AsyncFrameSink,
) -> String {
    let mut records = RecordDecoder::new();
    let mut frames = FrameDecoder::new(max_frame);
    loop {
        records.buffer().reserve(MAX_RECORD);
        let n = match rd.read_buf(records.buffer()).await {
            Ok(0) => return "closed by the peer".into(),
            Ok(n) => n,
            Err(e) => return format!("read failed: {e}"),
        };
        link.bytes_received.inc_by(n as u64);
        on_frame.touched();
        if let Err(e) = records.open_into(&cipher, &mut frames) {
            return e.to_string();
        }
        loop {
            match frames.next_frame() {
                Ok(Some(f)) => {
                    link.frames_received.inc();
                    if let Err(why) = on_frame.frame(f).await {
                        return why;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if matches!(e, FrameError::TooLarge { .. }) {
                        link.frame_refusals.inc();
                    }
                    return e.to_string();
                }
            }
        }
    }
}

/// What a reader does with each frame.
trait AsyncFrameSink {
    /// Bytes arrived.
    fn touched(&mut self) {}
    /// One frame; an error closes the connection.
    fn frame(&mut self, f: Frame) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

struct ClientSink<'a>(&'a Conn);

impl AsyncFrameSink for ClientSink<'_> {
    fn touched(&mut self) {
        self.0.touch();
    }

    async fn frame(&mut self, f: Frame) -> Result<(), String> {
        match f {
            Frame::Reply { id, body } => self.0.complete(id, RawReply::Ok(body)),
            Frame::Failure { id, body } => self.0.complete(id, RawReply::Failed(body)),
            Frame::Request { .. } => return Err("a request on a connection we dialled".into()),
        }
        Ok(())
    }
}

async fn client_reader(
    rd: OwnedReadHalf,
    conn: &Conn,
    cipher: SessionCipher,
    max_frame: usize,
) -> String {
    let link = conn.link.clone();
    read_frames(rd, cipher, max_frame, &link, ClientSink(conn)).await
}

/// Serves one inbound connection's requests.
struct ServerSink {
    dispatcher: Arc<Dispatcher>,
    ctx: CallContext,
    permits: Arc<Semaphore>,
    out: mpsc::Sender<Outgoing>,
    max_frame: usize,
}

impl AsyncFrameSink for ServerSink {
    async fn frame(&mut self, f: Frame) -> Result<(), String> {
        let Frame::Request { id, endpoint, body } = f else {
            return Err("an answer on a connection the peer dialled".into());
        };
        // At the bound, stop reading until a request finishes: the peer's
        // sends then wait on TCP, not in a queue here.
        let permit: OwnedSemaphorePermit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| "closed".to_string())?;
        let work = self.dispatcher.dispatch(endpoint, body, self.ctx.clone());
        let out = self.out.clone();
        let max_frame = self.max_frame;
        tokio::spawn(async move {
            let mut answer = work.await;
            // An answer the caller would refuse (closing the connection)
            // becomes an error it can read.
            if let Ok(body) = &answer
                && crate::frame::answer_len(body.len()) > max_frame
            {
                answer = Err(RemoteError::TooLarge {
                    bytes: body.len() as u64,
                    max: max_frame as u64,
                });
            }
            let mut frame = BytesMut::new();
            match answer {
                Ok(body) => put_answer(&mut frame, id, true, &body),
                Err(e) => put_answer(&mut frame, id, false, &e.encode()),
            }
            let _ = out
                .send(Outgoing {
                    frame: frame.freeze(),
                    _slot: Some(Arc::new(permit)),
                })
                .await;
        });
        Ok(())
    }
}

/// Accepts internode connections on `listener` until `shutdown` turns true:
/// each must complete the handshake, then its requests go to `dispatcher`.
/// Runs a [`Listener`] on the current task.
pub async fn serve(
    listener: TcpListener,
    config: NetConfig,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<InternodeMetrics>,
    shutdown: watch::Receiver<bool>,
) {
    dynkv_runtime::drive(
        Listener::new(listener, config, dispatcher, metrics),
        shutdown,
    )
    .await;
}

/// The internode listener as a background worker (`internode_listener` in
/// `/admin/workers`): it waits for a connection, and each step serves one on
/// a task of its own (at most `max_connections` at once; more are closed at
/// once). After a failed accept it pauses 50 ms.
pub struct Listener {
    listener: TcpListener,
    config: Arc<NetConfig>,
    dispatcher: Arc<Dispatcher>,
    metrics: Arc<InternodeMetrics>,
    slots: Arc<Semaphore>,
    accepted: Option<std::io::Result<(TcpStream, std::net::SocketAddr)>>,
}

impl Listener {
    /// A listener serving `dispatcher` on connections to `listener`.
    pub fn new(
        listener: TcpListener,
        config: NetConfig,
        dispatcher: Arc<Dispatcher>,
        metrics: Arc<InternodeMetrics>,
    ) -> Listener {
        Listener {
            listener,
            slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
            config: Arc::new(config),
            dispatcher,
            metrics,
            accepted: None,
        }
    }
}

impl dynkv_runtime::Worker for Listener {
    fn name(&self) -> String {
        "internode_listener".into()
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(50)
    }

    async fn wait_for_work(&mut self) {
        if matches!(self.accepted, Some(Err(_))) {
            tokio::time::sleep(self.interval()).await;
        }
        self.accepted = Some(self.listener.accept().await);
    }

    async fn work(&mut self, cx: &dynkv_runtime::Context) -> dynkv_runtime::StepResult {
        let idle = Ok(dynkv_runtime::WorkerState::Idle);
        let (stream, from) = match self.accepted.take() {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                let why = format!("internode accept failed: {e}");
                self.accepted = Some(Err(e));
                return Err(why);
            }
            None => return idle,
        };
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.metrics.connections_refused.inc();
            cx.count("refused", 1);
            debug!(%from, "internode connection refused at the cap");
            return idle;
        };
        cx.count("accepted", 1);
        let (config, dispatcher, metrics) = (
            self.config.clone(),
            self.dispatcher.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            serve_connection(stream, from, &config, dispatcher, &metrics).await;
            drop(slot);
        });
        cx.set(
            "open",
            (self.config.max_connections.max(1) - self.slots.available_permits()) as u64,
        );
        idle
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    from: std::net::SocketAddr,
    config: &NetConfig,
    dispatcher: Arc<Dispatcher>,
    metrics: &InternodeMetrics,
) {
    let _ = stream.set_nodelay(true);
    let session = match handshake::respond(
        &mut stream,
        &config.secret,
        &config.hello,
        config.handshake_timeout,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            metrics
                .handshake_failures
                .get_or_create(&ReasonLabels { reason: e.reason() })
                .inc();
            info!(%from, error = %e, "internode handshake refused");
            return;
        }
    };
    let peer = session.peer.node.clone();
    let link = metrics.link(&peer);
    let gauge = metrics
        .connections
        .get_or_create(&ConnectionLabels {
            peer: peer.clone(),
            side: "inbound",
        })
        .clone();
    gauge.inc();
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::channel(config.max_inflight.max(1));
    let sink = ServerSink {
        dispatcher,
        ctx: CallContext {
            peer: NodeId::from(peer.as_str()),
            version: session.version,
        },
        permits: Arc::new(Semaphore::new(config.max_inflight.max(1))),
        out: tx,
        max_frame: config.max_frame,
    };
    let cipher = session.cipher;
    let why = tokio::select! {
        r = read_frames(rd, cipher.clone(), config.max_frame, &link, sink) => r,
        r = writer(wr, rx, cipher, &link) => r,
    };
    debug!(%peer, %from, reason = %why, "inbound internode connection closed");
    gauge.dec();
}
