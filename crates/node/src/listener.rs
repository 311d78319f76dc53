//! The public listener: its own accept loop on hyper, so that the node
//! decides what a connection may cost before any request is read.
//!
//! - **Connection cap** (`node.max_connections`): a connection accepted
//!   past it is closed at once and counted in
//!   `dynkv_connections_refused_total`; `dynkv_connections_open` shows the
//!   rest. The loop keeps accepting, so the kernel's backlog never fills
//!   with connections nobody will serve.
//! - **Header read timeout** (`node.header_read_timeout`, hyper's own): the
//!   clock starts when hyper begins waiting for a request's head, so it
//!   drops a client trickling its headers (slowloris) and bounds how long a
//!   keep-alive connection may sit idle between requests. A TLS handshake
//!   gets the same time.
//! - **Idle timeout** (`node.idle_timeout`): a connection where no byte
//!   moves either way for that long, while no request of it is being
//!   handled, is closed: a client that stops reading its answers or stalls
//!   mid-request cannot hold its buffers forever.
//! - **TLS** ([`crate::tls`]) when `node.tls_cert` is set; SIGHUP reloads
//!   the certificate.
//!
//! Graceful shutdown: on the signal the loop stops accepting, idle
//! connections are closed, and requests in flight finish (for at most
//! [`SHUTDOWN_GRACE`]). TCP_NODELAY is set on every connection.
//!
//! Both listening sockets may also be handed over by the parent process,
//! as in systemd socket activation ([`Inherited`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tracing::{debug, info, warn};

use crate::config::NodeSection;
use crate::tls::{Stream, Tls};

/// How long shutdown waits for requests in flight before closing their
/// connections.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Metrics of the public listener.
#[derive(Default)]
pub struct ListenerMetrics {
    /// Connections being served.
    pub open: Gauge,
    /// Connections closed at accept because the cap was reached.
    pub refused: Counter,
    /// TLS handshakes that failed or timed out.
    pub tls_failures: Counter,
}

impl ListenerMetrics {
    /// Adds every metric to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "dynkv_connections_open",
            "Connections the public listener is serving",
            self.open.clone(),
        );
        registry.register(
            "dynkv_connections_refused",
            "Connections closed at accept because node.max_connections was reached",
            self.refused.clone(),
        );
        registry.register(
            "dynkv_tls_handshake_failures",
            "TLS handshakes on the public listener that failed or timed out",
            self.tls_failures.clone(),
        );
    }
}

/// What bounds one connection, from `[node]`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Deadline of a request's head (and of a TLS handshake).
    pub header_read_timeout: Duration,
    /// Longest silence on a connection with no request in progress.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits configured in `[node]`.
    pub fn from_config(node: &NodeSection) -> Limits {
        Limits {
            max_connections: node.max_connections,
            header_read_timeout: node.header_read_timeout,
            idle_timeout: node.idle_timeout,
        }
    }
}

/// The next connection on `listener` within the budget of `permits` (one
/// over it is closed at once and counted as refused), with TCP_NODELAY
/// set. Cancel-safe: it may lose a race in `select!` between connections.
pub(crate) async fn admit(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    metrics: &ListenerMetrics,
    what: &str,
) -> (
    TcpStream,
    std::net::SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory: back off rather than spin.
                warn!(error = %e, listener = what, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.refused.inc();
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            // Small answers must not wait for Nagle's algorithm (with
            // delayed ACKs that stalls a keep-alive connection for tens of ms).
            warn!(error = %e, "cannot set TCP_NODELAY");
        }
        return (tcp, peer, permit);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    metrics: Arc<ListenerMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer, permit) = tokio::select! {
            _ = &mut shutdown => break,
            a = admit(&listener, &permits, &metrics, "HTTP") => a,
        };
        let (router, http, tls, metrics) =
            (router.clone(), http.clone(), tls.clone(), metrics.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            metrics.open.inc();
            let is_tls = tls.is_some();
            let stream = match tls {
                None => Some(Stream::Plain(tcp)),
                Some(tls) => {
                    match tokio::time::timeout(limits.header_read_timeout, tls.accept(tcp)).await {
                        Ok(Ok(s)) => Some(s),
                        Ok(Err(e)) => {
                            debug!(error = %e, "TLS handshake failed");
                            metrics.tls_failures.inc();
                            None
                        }
                        Err(_) => {
                            debug!("TLS handshake timed out");
                            metrics.tls_failures.inc();
                            None
                        }
                    }
                }
            };
            if let Some(stream) = stream {
                let busy = Arc::new(AtomicUsize::new(0));
                let io = IdleTimeout::new(stream, limits.idle_timeout, busy.clone());
                let conn = http.serve_connection(
                    TokioIo::new(io),
                    Handler {
                        router,
                        busy,
                        peer,
                        tls: is_tls,
                    },
                );
                if let Err(e) = watcher.watch(conn).await {
                    debug!(error = %e, "connection ended");
                }
            }
            metrics.open.dec();
            drop(permit);
        });
    }
    drop(listener);
    info!("public listener closed; waiting for requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still in flight after {SHUTDOWN_GRACE:?}; closing them");
    }
}

/// Reloads the certificate on every SIGHUP; a pair that cannot be loaded
/// keeps the previous one.
pub async fn reload_on_sighup(tls: Arc<Tls>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP: the TLS certificate will not be reloaded");
        return;
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => info!(engine = tls.engine(), "TLS certificate reloaded"),
            Err(e) => warn!(error = %e, "TLS certificate not reloaded; keeping the previous one"),
        }
    }
}

/// The per-connection hyper service: the router, counting the requests in
/// progress so the idle timeout leaves a slow handler alone.
#[derive(Clone)]
struct Handler {
    router: axum::Router,
    busy: Arc<AtomicUsize>,
    /// The client's address, for the security layer's sources.
    peer: SocketAddr,
    /// Whether the connection is TLS: credentials are refused in clear
    /// from anywhere but loopback.
    tls: bool,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Handler {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        if self.tls {
            req.extensions_mut().insert(dynkv_api::http::auth::Tls);
        }
        let mut router = self.router.clone();
        let busy = BusyGuard::new(self.busy.clone());
        Box::pin(async move {
            let r = tower::Service::call(&mut router, req).await;
            drop(busy);
            r
        })
    }
}

/// Marks one request in progress for as long as it lives.
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn new(busy: Arc<AtomicUsize>) -> BusyGuard {
        busy.fetch_add(1, Ordering::Relaxed);
        BusyGuard(busy)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An I/O stream that fails with `TimedOut` once nothing was read or
/// written for `idle` while no request is being handled.
struct IdleTimeout<T> {
    inner: T,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    busy: Arc<AtomicUsize>,
}

impl<T> IdleTimeout<T> {
    fn new(inner: T, idle: Duration, busy: Arc<AtomicUsize>) -> Self {
        let now = Instant::now();
        IdleTimeout {
            inner,
            idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            busy,
        }
    }

    /// Called when the inner stream is not ready: `Err` once idle too long.
    /// The timer is moved lazily, only when it fires, so that traffic costs
    /// no timer updates.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            if self.busy.load(Ordering::Relaxed) > 0 {
                self.last = now;
            }
            let deadline = self.last + self.idle;
            if deadline <= now {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle past node.idle_timeout",
                ));
            }
            self.timer.as_mut().reset(deadline);
        }
        Ok(())
    }

    fn progress<R>(&mut self, cx: &mut Context<'_>, p: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match p {
            Poll::Ready(r) => {
                self.last = Instant::now();
                Poll::Ready(r)
            }
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.progress(cx, p)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Listening sockets handed over by the parent process, as in systemd
/// socket activation: `LISTEN_FDS` descriptors from fd 3, named by
/// `LISTEN_FDNAMES` (`http` for the public API, `cluster` for the
/// internode listener, `pb` for Riak's PBC listener; without names, the
/// first two in that order). `LISTEN_PID`, when
/// set, must be this process. A listener not handed over is bound from the
/// configured address.
pub struct Inherited {
    http: Option<std::net::TcpListener>,
    cluster: Option<std::net::TcpListener>,
    pb: Option<std::net::TcpListener>,
}

impl Inherited {
    /// Takes the sockets from the environment. Call it before any thread
    /// starts: it removes the `LISTEN_*` variables, as the protocol asks.
    pub fn from_env() -> io::Result<Inherited> {
        let names = std::env::var("LISTEN_FDNAMES").ok();
        let mut fds = listenfd::ListenFd::from_env();
        let names: Vec<String> = match names {
            Some(n) => n.split(':').map(str::to_string).collect(),
            None => ["http", "cluster"].map(str::to_string).to_vec(),
        };
        let mut inherited = Inherited {
            http: None,
            cluster: None,
            pb: None,
        };
        for idx in 0..fds.len() {
            let listener = fds.take_tcp_listener(idx)?;
            match (names.get(idx).map(String::as_str), listener) {
                (Some("http"), Some(l)) => inherited.http = Some(l),
                (Some("cluster"), Some(l)) => inherited.cluster = Some(l),
                (Some("pb"), Some(l)) => inherited.pb = Some(l),
                (name, _) => {
                    return Err(io::Error::other(format!(
                        "inherited descriptor {} is named {name:?}; expected a TCP listener named http, cluster or pb",
                        idx + 3
                    )));
                }
            }
        }
        Ok(inherited)
    }

    /// The public listener: inherited, or bound on `addr`.
    pub async fn http(&mut self, addr: &str) -> io::Result<TcpListener> {
        take_or_bind(self.http.take(), addr).await
    }

    /// The Riak PBC listener: inherited, or bound on `addr` when it is not
    /// empty; `None`: PBC is off.
    pub async fn pb(&mut self, addr: &str) -> io::Result<Option<TcpListener>> {
        match self.pb.take() {
            Some(l) => take_or_bind(Some(l), addr).await.map(Some),
            None if addr.is_empty() => Ok(None),
            None => TcpListener::bind(addr).await.map(Some),
        }
    }

    /// The internode listener: inherited, or bound on `addr`.
    pub async fn cluster(&mut self, addr: &str) -> io::Result<TcpListener> {
        take_or_bind(self.cluster.take(), addr).await
    }
}

async fn take_or_bind(l: Option<std::net::TcpListener>, addr: &str) -> io::Result<TcpListener> {
    match l {
        Some(l) => {
            l.set_nonblocking(true)?;
            info!(addr = %l.local_addr()?, "listening on a socket handed over by the parent");
            TcpListener::from_std(l)
        }
        None => TcpListener::bind(addr).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_silent_stream_times_out_but_not_while_a_request_is_handled() {
        let (a, _b) = tokio::io::duplex(64);
        let busy = Arc::new(AtomicUsize::new(0));
        let mut io = IdleTimeout::new(a, Duration::from_millis(50), busy.clone());
        let mut buf = [0u8; 8];
        // A request in progress: silence is fine, however long.
        let guard = BusyGuard::new(busy.clone());
        let r = tokio::time::timeout(Duration::from_millis(300), io.read(&mut buf)).await;
        assert!(
            r.is_err(),
            "a connection with a request in progress timed out"
        );
        drop(guard);
        let r = io.read(&mut buf).await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}
