//! # dynkv-client: the native client library
//!
//! An async client for dynkv's public API (`/kv/{key}`) that does for the
//! application what a Dynamo store asks of it: pick a replica, carry
//! contexts, show siblings, retry only what is safe.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dynkv_client::Error> {
//! let client = dynkv_client::Client::builder(["http://127.0.0.1:7071"]).build()?;
//! let cart = client.get("cart").await?;                 // value or siblings, plus a context
//! client.put("cart", "apples", cart.context.as_ref()).await?;
//! // Read, resolve siblings with a function, write back; again on conflict.
//! client
//!     .modify("cart", |siblings| {
//!         let mut items: Vec<String> = siblings
//!             .iter()
//!             .flat_map(|s| String::from_utf8_lossy(&s.value).split(',').map(String::from).collect::<Vec<_>>())
//!             .filter(|i| !i.is_empty())
//!             .collect();
//!         items.push("pears".into());
//!         items.sort();
//!         items.dedup();
//!         items.join(",")
//!     })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! ## Design
//! - **Routing** ([`Routing::TokenAware`], the default). The client reads
//!   the ring from `GET /ring` on any node ([`ring::RingView`]) and sends
//!   each request to the first live primary of its key, falling back in
//!   ring-walk order (the nodes' own fallback order), then to the seed
//!   URLs it was built with. A write then needs no forwarding hop and a
//!   read is coordinated on a replica (Dynamo §6.4: client-driven
//!   coordination lowers latency). [`Routing::RoundRobin`] spreads
//!   requests over the nodes regardless of key, for comparison. The first
//!   request waits for the first ring fetch; afterwards a background task
//!   refreshes the view every `refresh_interval`, and at once (at most
//!   once a second) when a node refuses a connection or the view lacks a
//!   member's address. A node that refused
//!   one is tried last for a while, not dropped. An explicit id→URL map
//!   ([`ClientBuilder::node_url`]) overrides the addresses the ring
//!   advertises (containers map ports differently on the host).
//! - **Contexts and siblings.** [`Client::get`] answers a [`Fetched`]: the
//!   value or every sibling, plus the key's opaque [`Context`];
//!   [`Client::put`] and [`Client::delete`] take it. A write that leaves
//!   siblings returns them. [`Client::modify`] reads, resolves the
//!   siblings with the caller's function, writes with the context, and
//!   repeats while a concurrent writer got in between (the write came back
//!   with siblings), so concurrent `modify` calls lose no update as long as
//!   the function merges what it is given.
//! - **Retries.** Every write carries an `Idempotency-Key` (fresh per
//!   logical write, the same on every attempt of it): the coordinator
//!   recognises a retry of a write it already applied and applies nothing
//!   new (`dynkv_quorum::idempotency`). So a request is retried, on the
//!   next node of its order with capped exponential backoff and full
//!   jitter, when it certainly never reached a node (connection refused)
//!   or when it is a read or a write with its key (connection lost,
//!   timeout, 503 `quorum_not_met`, `stale`, `overloaded`). A write sent
//!   without a key (see [`ClientBuilder::idempotency_keys`]) is not
//!   retried once it may have arrived. Other errors are answered at once.
//! - **Session guarantees** ([`session`]): the client remembers the last
//!   context of each key it read or wrote and sends it with the next read
//!   of the key, which the server answers only from a state that includes
//!   it: read-your-writes and monotonic reads, across nodes.
//! - **Observability.** An [`Observer`] sees every attempt (operation,
//!   node, status, latency); `tracing` logs ring changes and retries. The
//!   `X-Dynkv-Replicas` report is parsed on every answer ([`ReplicaReport`]).
//! - **Transport** ([`transport`]): hyper HTTP/1.1 keep-alive connections
//!   pooled per node, TLS through rustls (a CA file, or the system roots),
//!   HTTP Basic or bearer authentication.

pub mod error;
pub mod ring;
mod session;
pub mod transport;
pub mod types;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{debug, info};

pub use error::Error;
pub use ring::RingView;
pub use transport::{Endpoint, Transport, TransportError};
pub use types::{
    Context, Fetched, Quorum, ReadOptions, ReplicaReport, Sibling, Watched, WriteOptions, Written,
};

use session::Sessions;
use types::SiblingsJson;

/// Header carrying a key's causal context.
pub const CONTEXT_HEADER: HeaderName = HeaderName::from_static("x-dynkv-context");
/// Header naming a write for deduplication of its retries.
pub const IDEMPOTENCY_HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// Header reporting the replicas a request involved.
pub const REPLICAS_HEADER: HeaderName = HeaderName::from_static("x-dynkv-replicas");
/// Header naming the version a write created.
pub const DOT_HEADER: HeaderName = HeaderName::from_static("x-dynkv-dot");
/// Header saying a write was recognised as a retry.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// How requests pick a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Routing {
    /// To a live primary of the key, falling back in ring order.
    #[default]
    TokenAware,
    /// Over every node in turn, whatever the key (a comparison baseline).
    RoundRobin,
    /// Only to the seed URLs, in order (no ring: a node behind a proxy,
    /// or a command that must talk to the node it names).
    Direct,
}

/// Credentials (once the cluster's security is on; see docs/SECURITY.md).
#[derive(Clone)]
pub enum Auth {
    /// HTTP Basic: a user and password.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A bearer token (`dynkv admin token create`).
    Bearer(String),
}

impl Auth {
    fn header(&self) -> Result<HeaderValue, Error> {
        let text = match self {
            Auth::Basic { user, password } => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            Auth::Bearer(t) => format!("Bearer {t}"),
        };
        let mut v = HeaderValue::from_str(&text)
            .map_err(|_| Error::Config("credentials must be visible ASCII".into()))?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// What a request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Get,
    /// A write of a value.
    Put,
    /// A delete.
    Delete,
    /// A watch (a read that waits for a change).
    Watch,
    /// A ring view fetch.
    Ring,
}

impl Op {
    /// `get`, `put`, `delete`, `watch` or `ring`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
            Op::Watch => "watch",
            Op::Ring => "ring",
        }
    }
}

/// One attempt of a request, as an [`Observer`] sees it.
#[derive(Debug)]
pub struct RequestEvent<'a> {
    /// What it was.
    pub op: Op,
    /// Base URL of the node it went to.
    pub node: &'a str,
    /// The answer's status; `None` when no answer came.
    pub status: Option<u16>,
    /// Why no answer came.
    pub error: Option<&'a TransportError>,
    /// From sending to the whole answer (or the failure).
    pub latency: Duration,
    /// 0 for the first attempt.
    pub attempt: u32,
}

/// A metrics hook: called once per attempt, on the request's task, so it
/// should only count (e.g. bump a Prometheus histogram).
pub trait Observer: Send + Sync + 'static {
    /// One attempt finished.
    fn on_request(&self, event: &RequestEvent<'_>);
}

/// Settings of a [`Client`]; see each method for its default.
pub struct ClientBuilder {
    seeds: Vec<String>,
    overrides: HashMap<String, String>,
    routing: Routing,
    auth: Option<Auth>,
    tls_ca: Option<Vec<u8>>,
    retries: u32,
    request_timeout: Duration,
    connect_timeout: Duration,
    backoff_base: Duration,
    backoff_max: Duration,
    refresh_interval: Duration,
    session_capacity: usize,
    idempotency: bool,
    content_type: String,
    modify_attempts: u32,
    observer: Option<Arc<dyn Observer>>,
    max_idle_per_node: usize,
}

impl ClientBuilder {
    /// How requests pick a node (default [`Routing::TokenAware`]).
    pub fn routing(mut self, r: Routing) -> Self {
        self.routing = r;
        self
    }

    /// Reach node `id` at `url` instead of the address the ring advertises.
    pub fn node_url(mut self, id: impl Into<String>, url: impl Into<String>) -> Self {
        self.overrides.insert(id.into(), url.into());
        self
    }

    /// Authenticate every request (default: none).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Trust the CA certificates in this PEM for `https://` nodes (default:
    /// the system's roots).
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca = Some(pem.into());
        self
    }

    /// Retries after the first attempt, where safe (default 3).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Longest wait for one attempt's whole answer when the request sets no
    /// server timeout (default 5 s; with one, that plus a second).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Longest wait for a connection (default 1 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// Backoff between retries: full jitter over `base * 2^attempt`, capped
    /// at `max` (default 50 ms and 2 s).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// How often the ring view is refreshed (default 10 s).
    pub fn refresh_interval(mut self, t: Duration) -> Self {
        self.refresh_interval = t;
        self
    }

    /// Keys whose last context is remembered for session guarantees
    /// (default 100 000; 0 turns them off: reads then carry no context
    /// unless given one).
    pub fn session_capacity(mut self, n: usize) -> Self {
        self.session_capacity = n;
        self
    }

    /// Send an `Idempotency-Key` with every write (default true). Without
    /// it a write is not retried once it may have arrived, and the server
    /// does not look for an earlier attempt (one internode round less).
    pub fn idempotency_keys(mut self, on: bool) -> Self {
        self.idempotency = on;
        self
    }

    /// Content-Type of written values unless a write says otherwise
    /// (default `application/octet-stream`).
    pub fn content_type(mut self, ct: impl Into<String>) -> Self {
        self.content_type = ct.into();
        self
    }

    /// Read-resolve-write rounds [`Client::modify`] makes before giving up
    /// (default 10).
    pub fn modify_attempts(mut self, n: u32) -> Self {
        self.modify_attempts = n.max(1);
        self
    }

    /// A metrics hook called for every attempt.
    pub fn observer(mut self, o: Arc<dyn Observer>) -> Self {
        self.observer = Some(o);
        self
    }

    /// Idle connections kept per node (default 64).
    pub fn max_idle_per_node(mut self, n: usize) -> Self {
        self.max_idle_per_node = n;
        self
    }

    /// The client. Makes no request; the first request fetches the ring.
    /// Inside a tokio runtime it also starts the background ring refresh
    /// (which ends when the last clone of the client is dropped).
    pub fn build(self) -> Result<Client, Error> {
        if self.seeds.is_empty() {
            return Err(Error::Config("give at least one node URL".into()));
        }
        let needs_tls = self.seeds.iter().any(|s| s.starts_with("https://"))
            || self.overrides.values().any(|s| s.starts_with("https://"))
            || self.tls_ca.is_some();
        let tls = if needs_tls {
            Some(transport::tls_config(self.tls_ca.as_deref()).map_err(Error::Config)?)
        } else {
            None
        };
        let transport = Transport::new(tls, self.connect_timeout, self.max_idle_per_node);
        let seeds = self
            .seeds
            .iter()
            .map(|s| transport.endpoint(s).map_err(Error::Config))
            .collect::<Result<Vec<_>, _>>()?;
        for url in self.overrides.values() {
            transport.endpoint(url).map_err(Error::Config)?;
        }
        let auth = self.auth.as_ref().map(Auth::header).transpose()?;
        let content_type = HeaderValue::from_str(&self.content_type)
            .map_err(|_| Error::Config("the content type must be visible ASCII".into()))?;
        let inner = Arc::new(Inner {
            transport,
            seeds,
            overrides: self.overrides,
            routing: self.routing,
            auth,
            retries: self.retries,
            request_timeout: self.request_timeout,
            backoff_base: self.backoff_base,
            backoff_max: self.backoff_max,
            refresh_interval: self.refresh_interval,
            idempotency: self.idempotency,
            content_type,
            modify_attempts: self.modify_attempts,
            observer: self.observer,
            table: RwLock::new(None),
            initial: tokio::sync::OnceCell::new(),
            poke: Arc::new(tokio::sync::Notify::new()),
            last_refresh: Mutex::new(None),
            rr: AtomicUsize::new(0),
            sessions: Sessions::new(self.session_capacity),
        });
        if inner.routing != Routing::Direct && tokio::runtime::Handle::try_current().is_ok() {
            spawn_refresher(Arc::downgrade(&inner), inner.poke.clone());
        }
        Ok(Client { inner })
    }
}

/// The ring view with an endpoint per member.
struct Table {
    view: Arc<RingView>,
    endpoints: Vec<Option<Arc<Endpoint>>>,
}

struct Inner {
    transport: Transport,
    seeds: Vec<Arc<Endpoint>>,
    overrides: HashMap<String, String>,
    routing: Routing,
    auth: Option<HeaderValue>,
    retries: u32,
    request_timeout: Duration,
    backoff_base: Duration,
    backoff_max: Duration,
    refresh_interval: Duration,
    idempotency: bool,
    content_type: HeaderValue,
    modify_attempts: u32,
    observer: Option<Arc<dyn Observer>>,
    table: RwLock<Option<Arc<Table>>>,
    initial: tokio::sync::OnceCell<()>,
    poke: Arc<tokio::sync::Notify>,
    last_refresh: Mutex<Option<Instant>>,
    rr: AtomicUsize,
    sessions: Sessions,
}

/// Least time between two ring refreshes asked for by failures.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);

/// How long a node that refused a connection is tried last.
const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// Refreshes the ring every `refresh_interval`, and soon after a failure
/// pokes it; holds only a weak reference between refreshes.
fn spawn_refresher(weak: Weak<Inner>, poke: Arc<tokio::sync::Notify>) {
    tokio::spawn(async move {
        loop {
            let interval = match weak.upgrade() {
                Some(i) => i.refresh_interval,
                None => return,
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = poke.notified() => {}
            }
            let since = match weak.upgrade() {
                Some(i) => i
                    .last_refresh
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .map(|t| t.elapsed()),
                None => return,
            };
            if let Some(since) = since.filter(|s| *s < MIN_REFRESH_GAP) {
                tokio::time::sleep(MIN_REFRESH_GAP - since).await;
            }
            let Some(inner) = weak.upgrade() else { return };
            if let Err(e) = (Client { inner }).refresh_ring().await {
                debug!(error = %e, "ring refresh failed; keeping the last view");
            }
        }
    });
}

/// A dynkv client. Cheap to clone (clones share connections, the ring view
/// and session contexts).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Path-segment encoding of a key: everything but unreserved characters.
const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn key_path(key: &str, query: &str) -> String {
    use std::fmt::Write as _;
    let mut p = String::with_capacity(4 + key.len() + query.len());
    p.push_str("/kv/");
    let _ = write!(p, "{}", percent_encoding::utf8_percent_encode(key, KEY_SET));
    p.push_str(query);
    p
}

fn idempotency_key() -> HeaderValue {
    let v = format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    HeaderValue::from_str(&v).expect("hex is a valid header value")
}

fn header_str(resp: &Response<Bytes>, name: &HeaderName) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn context_of(resp: &Response<Bytes>) -> Option<Context> {
    resp.headers()
        .get(&CONTEXT_HEADER)
        .filter(|v| !v.is_empty())
        .cloned()
        .map(Context)
}

fn replicas_of(resp: &Response<Bytes>) -> Option<ReplicaReport> {
    resp.headers()
        .get(&REPLICAS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ReplicaReport::parse)
}

/// An error answer as [`Error::Http`], from its JSON body when it has one.
fn http_error(node: &str, resp: &Response<Bytes>) -> Error {
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap_or_default();
    let message = body["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(resp.body()).trim().to_string());
    Error::Http {
        node: node.to_string(),
        status: resp.status().as_u16(),
        code: body["code"].as_str().unwrap_or_default().to_string(),
        message,
    }
}

fn is_json(resp: &Response<Bytes>) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn siblings_of(node: &str, resp: &Response<Bytes>) -> Result<Vec<Sibling>, Error> {
    let j: SiblingsJson = serde_json::from_slice(resp.body()).map_err(|e| Error::Protocol {
        node: node.to_string(),
        detail: format!("sibling JSON: {e}"),
    })?;
    j.siblings
        .into_iter()
        .map(|s| s.into_sibling())
        .collect::<Result<_, _>>()
        .map_err(|detail| Error::Protocol {
            node: node.to_string(),
            detail,
        })
}

/// A read's answer as a [`Fetched`].
fn fetched(node: &str, resp: Response<Bytes>) -> Result<Fetched, Error> {
    let status = resp.status();
    let siblings = match status {
        StatusCode::OK => vec![Sibling {
            content_type: header_str(&resp, &CONTENT_TYPE).unwrap_or_default(),
            value: resp.body().clone(),
            deleted: false,
        }],
        StatusCode::MULTIPLE_CHOICES => siblings_of(node, &resp)?,
        StatusCode::NOT_FOUND => Vec::new(),
        _ => return Err(http_error(node, &resp)),
    };
    Ok(Fetched {
        status,
        siblings,
        context: context_of(&resp),
        node: node.to_string(),
        replicas: replicas_of(&resp),
    })
}

/// Backoff before retry `attempt` (0-based): full jitter over the capped
/// exponential, from a draw in `[0, 1)`.
pub fn backoff_delay(base: Duration, max: Duration, attempt: u32, draw: f64) -> Duration {
    let cap = base
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(max);
    cap.mul_f64(draw.clamp(0.0, 1.0))
}

impl Client {
    /// A builder for a client that first asks the nodes at `seeds` (base
    /// URLs, e.g. `http://127.0.0.1:7071`) for the ring.
    pub fn builder<I, S>(seeds: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            seeds: seeds.into_iter().map(Into::into).collect(),
            overrides: HashMap::new(),
            routing: Routing::default(),
            auth: None,
            tls_ca: None,
            retries: 3,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            refresh_interval: Duration::from_secs(10),
            session_capacity: 100_000,
            idempotency: true,
            content_type: "application/octet-stream".into(),
            modify_attempts: 10,
            observer: None,
            max_idle_per_node: 64,
        }
    }

    /// The connections (for requests outside the key-value API, e.g. an
    /// operator's admin calls, and for connection counts).
    pub fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The ring view in use, once one was fetched.
    pub fn ring(&self) -> Option<Arc<RingView>> {
        self.table().map(|t| t.view.clone())
    }

    fn table(&self) -> Option<Arc<Table>> {
        self.inner
            .table
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fetches the ring view now and routes by it from then on. It asks
    /// the seeds first (the nodes the application named), then the members
    /// believed up, then the rest; a node that refused a connection lately
    /// goes last.
    pub async fn refresh_ring(&self) -> Result<Arc<RingView>, Error> {
        *self
            .inner
            .last_refresh
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        let mut candidates: Vec<Arc<Endpoint>> = Vec::new();
        let mut later: Vec<Arc<Endpoint>> = Vec::new();
        let mut add = |ep: &Arc<Endpoint>, up: bool| {
            if candidates
                .iter()
                .chain(later.iter())
                .any(|c| Arc::ptr_eq(c, ep))
            {
                return;
            }
            if up && !ep.is_suspected() {
                candidates.push(ep.clone());
            } else {
                later.push(ep.clone());
            }
        };
        for s in &self.inner.seeds {
            add(s, true);
        }
        if let Some(t) = self.table() {
            for (i, ep) in t.endpoints.iter().enumerate() {
                if let Some(ep) = ep {
                    add(ep, t.view.members[i].up);
                }
            }
        }
        candidates.extend(later);
        let mut last = Error::Config("no node to ask for the ring".into());
        for ep in candidates {
            let req = self.request(Method::GET, "/ring").body(Full::default());
            let req = req.map_err(|e| Error::Config(e.to_string()))?;
            let started = Instant::now();
            let res = self
                .inner
                .transport
                .send(&ep, req, self.inner.request_timeout)
                .await;
            self.observe(Op::Ring, &ep, &res, started, 0);
            match res {
                Ok(resp) if resp.status() == StatusCode::OK => match RingView::parse(resp.body()) {
                    Ok(view) => return Ok(self.install(view)),
                    Err(e) => {
                        last = Error::Protocol {
                            node: ep.url().to_string(),
                            detail: e.to_string(),
                        }
                    }
                },
                Ok(resp) => last = http_error(ep.url(), &resp),
                Err(e) => {
                    if e.never_sent() {
                        ep.suspect(SUSPECT_FOR);
                    }
                    last = e.into();
                }
            }
        }
        Err(last)
    }

    fn install(&self, view: RingView) -> Arc<RingView> {
        let endpoints = view
            .members
            .iter()
            .map(|m| {
                let url = self.inner.overrides.get(&m.id).or(m.url.as_ref())?;
                self.inner
                    .transport
                    .endpoint(url)
                    .inspect_err(|e| debug!(node = %m.id, error = %e, "unusable member URL"))
                    .ok()
            })
            .collect();
        // A member whose address the answering node has not heard yet (it
        // learns them from internode handshakes, just after a start) is
        // asked about again soon rather than at the next interval.
        if view
            .members
            .iter()
            .any(|m| m.url.is_none() && !self.inner.overrides.contains_key(&m.id))
        {
            self.inner.poke.notify_one();
        }
        let view = Arc::new(view);
        let table = Arc::new(Table {
            view: view.clone(),
            endpoints,
        });
        let mut slot = self.inner.table.write().unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_none_or(|t| t.view.differs(&view)) {
            info!(
                from = %view.node,
                epoch = view.epoch,
                version = view.version,
                members = view.members.len(),
                "ring view updated"
            );
        }
        *slot = Some(table);
        view
    }

    /// The first request waits for one ring fetch (it may fail: requests
    /// then go to the seeds until a refresh succeeds).
    async fn ensure_ring(&self) {
        if self.inner.routing == Routing::Direct {
            return;
        }
        self.inner
            .initial
            .get_or_init(|| async {
                if let Err(e) = self.refresh_ring().await {
                    debug!(error = %e, "no ring view yet; sending to the seed nodes");
                }
            })
            .await;
    }

    /// The nodes to try for `key`, best first.
    fn route(&self, key: &str) -> Vec<Arc<Endpoint>> {
        let mut out: Vec<Arc<Endpoint>> = Vec::with_capacity(8);
        let mut later: Vec<Arc<Endpoint>> = Vec::new();
        let table = match self.inner.routing {
            Routing::Direct => None,
            _ => self.table(),
        };
        let mut place = |t: &Table, i: usize| {
            if let Some(ep) = &t.endpoints[i] {
                if t.view.members[i].up && !ep.is_suspected() {
                    out.push(ep.clone());
                } else {
                    later.push(ep.clone());
                }
            }
        };
        match (&table, self.inner.routing) {
            (Some(t), Routing::TokenAware) => {
                for i in t.view.walk(key.as_bytes()) {
                    place(t, i as usize);
                }
            }
            (Some(t), _) => {
                let n = t.endpoints.len();
                let start = self.inner.rr.fetch_add(1, Ordering::Relaxed);
                for k in 0..n {
                    place(t, (start + k) % n);
                }
            }
            (None, _) => {}
        }
        out.append(&mut later);
        let seeds = &self.inner.seeds;
        // Without a ring view (none fetched yet, or the targets serve none)
        // requests are spread over the seeds; direct ones try them in order.
        let start = if out.is_empty() && self.inner.routing != Routing::Direct {
            self.inner.rr.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        for k in 0..seeds.len() {
            let s = &seeds[(start + k) % seeds.len()];
            if !out.iter().any(|e| Arc::ptr_eq(e, s)) {
                out.push(s.clone());
            }
        }
        out
    }

    /// A request builder with the client's credentials.
    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(a) = &self.inner.auth {
            b = b.header(AUTHORIZATION, a.clone());
        }
        b
    }

    fn observe(
        &self,
        op: Op,
        ep: &Endpoint,
        res: &Result<Response<Bytes>, TransportError>,
        started: Instant,
        attempt: u32,
    ) {
        if let Some(o) = &self.inner.observer {
            let (status, error) = match res {
                Ok(r) => (Some(r.status().as_u16()), None),
                Err(e) => (None, Some(e)),
            };
            o.on_request(&RequestEvent {
                op,
                node: ep.url(),
                status,
                error,
                latency: started.elapsed(),
                attempt,
            });
        }
    }

    /// Sends a request built by `build` for each attempt to the nodes of
    /// `key`'s order, retrying where safe (see the crate docs). `safe`:
    /// the request may be repeated even if an earlier attempt arrived.
    async fn execute<F>(
        &self,
        op: Op,
        key: &str,
        safe: bool,
        timeout: Duration,
        build: F,
    ) -> Result<(Response<Bytes>, Arc<Endpoint>), Error>
    where
        F: Fn() -> Result<Request<Full<Bytes>>, Error>,
    {
        self.ensure_ring().await;
        let order = self.route(key);
        if order.is_empty() {
            return Err(Error::Config("no node to send the request to".into()));
        }
        let mut last_error: Option<Error> = None;
        let mut wait: Option<Duration> = None;
        for attempt in 0..=self.inner.retries {
            if let Some(w) = wait.take() {
                tokio::time::sleep(w).await;
            }
            let ep = &order[attempt as usize % order.len()];
            let started = Instant::now();
            let res = self.inner.transport.send(ep, build()?, timeout).await;
            self.observe(op, ep, &res, started, attempt);
            let more = attempt < self.inner.retries;
            let backoff = || {
                backoff_delay(
                    self.inner.backoff_base,
                    self.inner.backoff_max,
                    attempt,
                    rand::random::<f64>(),
                )
            };
            match res {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_status = status == StatusCode::SERVICE_UNAVAILABLE
                        || status == StatusCode::REQUEST_TIMEOUT;
                    if !(retry_status && safe && more) {
                        return Ok((resp, ep.clone()));
                    }
                    let e = http_error(ep.url(), &resp);
                    debug!(op = op.as_str(), node = ep.url(), error = %e, "retrying");
                    let after = resp
                        .headers()
                        .get(hyper::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s).min(self.inner.backoff_max));
                    wait = Some(after.unwrap_or_else(backoff));
                    last_error = Some(e);
                }
                Err(e) => {
                    if matches!(e, TransportError::Connect(_)) {
                        ep.suspect(SUSPECT_FOR);
                        self.inner.poke.notify_one();
                    }
                    if !(more && (safe || e.never_sent())) {
                        return Err(e.into());
                    }
                    debug!(op = op.as_str(), node = ep.url(), error = %e, "retrying");
                    // A refused connection: the next node at once.
                    wait = (!e.never_sent()).then(backoff);
                    last_error = Some(e.into());
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Config("no attempt made".into())))
    }

    fn check_key(key: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::Config("the key is empty".into()));
        }
        Ok(())
    }

    /// Reads `key` (the server's default R).
    pub async fn get(&self, key: &str) -> Result<Fetched, Error> {
        self.get_with(key, &ReadOptions::default()).await
    }

    /// Reads `key` with per-request settings. The read carries the key's
    /// last context this client saw (or `opts.after`), so it sees at least
    /// that state.
    pub async fn get_with(&self, key: &str, opts: &ReadOptions) -> Result<Fetched, Error> {
        Self::check_key(key)?;
        let path = key_path(
            key,
            &types::query(opts.r.map(|r| ("r", r)), opts.sloppy, opts.timeout),
        );
        let after = opts.after.clone().or_else(|| self.inner.sessions.get(key));
        let timeout = self.attempt_timeout(opts.timeout);
        let (resp, ep) = self
            .execute(Op::Get, key, true, timeout, || {
                let mut b = self
                    .request(Method::GET, &path)
                    .header(ACCEPT, "application/json");
                if let Some(c) = &after {
                    b = b.header(CONTEXT_HEADER, c.0.clone());
                }
                b.body(Full::default())
                    .map_err(|e| Error::Config(e.to_string()))
            })
            .await?;
        let f = fetched(ep.url(), resp)?;
        if let Some(c) = &f.context {
            self.inner.sessions.put(key, c);
        }
        Ok(f)
    }

    /// Waits until `key` holds a version `context` has not seen, for at most
    /// `timeout` (`GET /kv/{key}?watch=true`). Without a context the server
    /// answers at once, like a read.
    pub async fn watch(
        &self,
        key: &str,
        context: Option<&Context>,
        timeout: Duration,
    ) -> Result<Watched, Error> {
        Self::check_key(key)?;
        let path = key_path(
            key,
            &format!("?watch=true&timeout_ms={}", timeout.as_millis().max(1)),
        );
        let attempt_timeout = timeout + self.inner.request_timeout;
        let (resp, ep) = self
            .execute(Op::Watch, key, true, attempt_timeout, || {
                let mut b = self
                    .request(Method::GET, &path)
                    .header(ACCEPT, "application/json");
                if let Some(c) = context {
                    b = b.header(CONTEXT_HEADER, c.0.clone());
                }
                b.body(Full::default())
                    .map_err(|e| Error::Config(e.to_string()))
            })
            .await?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(Watched::Unchanged);
        }
        // An answer whose context is the one sent holds nothing new (a
        // node that answers the watch as a plain read does this).
        if context.is_some_and(|c| resp.headers().get(&CONTEXT_HEADER) == Some(&c.0)) {
            return Ok(Watched::Unchanged);
        }
        let f = fetched(ep.url(), resp)?;
        if let Some(c) = &f.context {
            self.inner.sessions.put(key, c);
        }
        Ok(Watched::Changed(f))
    }

    /// Writes `value` to `key`; `context` from the read this write follows
    /// (`None`: a blind write, kept beside any concurrent version).
    pub async fn put(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        context: Option<&Context>,
    ) -> Result<Written, Error> {
        self.put_with(key, value, context, &WriteOptions::default())
            .await
    }

    /// [`Client::put`] with per-request settings.
    pub async fn put_with(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        context: Option<&Context>,
        opts: &WriteOptions,
    ) -> Result<Written, Error> {
        let ct = match &opts.content_type {
            Some(ct) => HeaderValue::from_str(ct)
                .map_err(|_| Error::Config("the content type must be visible ASCII".into()))?,
            None => self.inner.content_type.clone(),
        };
        self.write(Op::Put, key, value.into(), Some(ct), context, opts)
            .await
    }

    /// Deletes `key` (a tombstone write); `context` from the read it follows.
    pub async fn delete(&self, key: &str, context: Option<&Context>) -> Result<Written, Error> {
        self.delete_with(key, context, &WriteOptions::default())
            .await
    }

    /// [`Client::delete`] with per-request settings.
    pub async fn delete_with(
        &self,
        key: &str,
        context: Option<&Context>,
        opts: &WriteOptions,
    ) -> Result<Written, Error> {
        self.write(Op::Delete, key, Bytes::new(), None, context, opts)
            .await
    }

    async fn write(
        &self,
        op: Op,
        key: &str,
        value: Bytes,
        content_type: Option<HeaderValue>,
        context: Option<&Context>,
        opts: &WriteOptions,
    ) -> Result<Written, Error> {
        Self::check_key(key)?;
        let path = key_path(
            key,
            &types::query(opts.w.map(|w| ("w", w)), opts.sloppy, opts.timeout),
        );
        let idem = self.inner.idempotency.then(idempotency_key);
        let method = if op == Op::Delete {
            Method::DELETE
        } else {
            Method::PUT
        };
        let timeout = self.attempt_timeout(opts.timeout);
        let (resp, ep) = self
            .execute(op, key, idem.is_some(), timeout, || {
                let mut b = self.request(method.clone(), &path);
                if let Some(ct) = &content_type {
                    b = b.header(CONTENT_TYPE, ct.clone());
                }
                if let Some(c) = context {
                    b = b.header(CONTEXT_HEADER, c.0.clone());
                }
                if let Some(k) = &idem {
                    b = b.header(IDEMPOTENCY_HEADER, k.clone());
                }
                b.body(Full::new(value.clone()))
                    .map_err(|e| Error::Config(e.to_string()))
            })
            .await?;
        let node = ep.url();
        let siblings = match resp.status() {
            StatusCode::NO_CONTENT => Vec::new(),
            StatusCode::OK if is_json(&resp) => siblings_of(node, &resp)?,
            s if s.is_success() => Vec::new(),
            _ => return Err(http_error(node, &resp)),
        };
        let written = Written {
            status: resp.status(),
            context: context_of(&resp),
            siblings,
            replayed: resp.headers().contains_key(&REPLAYED_HEADER),
            dot: header_str(&resp, &DOT_HEADER),
            node: node.to_string(),
            replicas: replicas_of(&resp),
        };
        if let Some(c) = &written.context {
            self.inner.sessions.put(key, c);
        }
        Ok(written)
    }

    /// Read-modify-write: reads `key`, calls `resolve` with its live
    /// versions (none when absent, several when there are siblings) and
    /// writes what it returns with the read's context. When the write comes
    /// back with siblings, a concurrent writer got in between: it reads and
    /// resolves again (after a jittered pause), up to the client's
    /// `modify_attempts`. `resolve` must merge what it is given (a union,
    /// a sum, the newest by a timestamp inside the value...) for no update
    /// to be lost.
    pub async fn modify<F, V>(&self, key: &str, mut resolve: F) -> Result<Written, Error>
    where
        F: FnMut(&[Sibling]) -> V,
        V: Into<Bytes>,
    {
        let attempts = self.inner.modify_attempts;
        for attempt in 0..attempts {
            let read = self.get(key).await?;
            let live: Vec<Sibling> = read.live().cloned().collect();
            let value = resolve(&live).into();
            let written = self.put(key, value, read.context.as_ref()).await?;
            if written.siblings.len() <= 1 {
                return Ok(written);
            }
            debug!(
                key,
                attempt,
                siblings = written.siblings.len(),
                "modify met a concurrent write; resolving again"
            );
            tokio::time::sleep(backoff_delay(
                self.inner.backoff_base,
                self.inner.backoff_max,
                attempt,
                rand::random::<f64>(),
            ))
            .await;
        }
        Err(Error::Conflict {
            key: key.to_string(),
            attempts,
        })
    }

    /// Sends a request outside the key-value API (an admin route) to the
    /// node at `url`, once, with the client's credentials unless it carries
    /// its own `Authorization`.
    pub async fn send_to(
        &self,
        url: &str,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, Error> {
        let ep = self.inner.transport.endpoint(url).map_err(Error::Config)?;
        if let Some(a) = &self.inner.auth
            && !req.headers().contains_key(AUTHORIZATION)
        {
            req.headers_mut().insert(AUTHORIZATION, a.clone());
        }
        Ok(self
            .inner
            .transport
            .send(&ep, req, self.inner.request_timeout)
            .await?)
    }

    fn attempt_timeout(&self, server: Option<Duration>) -> Duration {
        server.map_or(self.inner.request_timeout, |t| t + Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_as_one_path_segment() {
        assert_eq!(key_path("a b/c", ""), "/kv/a%20b%2Fc");
        assert_eq!(key_path("k-1_.~", "?r=one"), "/kv/k-1_.~?r=one");
        assert_eq!(key_path("é", ""), "/kv/%C3%A9");
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let (b, m) = (Duration::from_millis(50), Duration::from_secs(2));
        assert_eq!(backoff_delay(b, m, 0, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(b, m, 0, 1.0), b);
        assert_eq!(backoff_delay(b, m, 2, 0.5), Duration::from_millis(100));
        assert_eq!(backoff_delay(b, m, 30, 1.0), m);
    }
}
