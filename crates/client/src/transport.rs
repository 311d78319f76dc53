//! The wire: HTTP/1.1 keep-alive connections to each node, pooled, over
//! plain TCP or TLS.
//!
//! Each [`Endpoint`] (one node's base URL) keeps a stack of idle
//! connections. A request takes one (or opens one), sends, reads the whole
//! answer, and puts the connection back: a connection carries one request
//! at a time (HTTP/1.1 without pipelining), so concurrency comes from
//! holding several. Nothing here retries: the caller decides, and to
//! decide it needs to know whether a request may have reached the server,
//! which [`TransportError`] says.
//!
//! This is hyper's low-level connection API rather than a pooled
//! high-level client: the pool is a mutex-guarded `Vec` per node, a request
//! allocates its URI and header map and nothing else on the way out, and a
//! load generator built on it measures the server, not the client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// How an exchange failed, and so whether the request may have been applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made (refused, unreachable, TLS handshake
    /// failed, connect timeout): the request was never sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The connection failed before the request was written: never sent.
    #[error("connection closed before the request was sent: {0}")]
    NotSent(String),
    /// The connection broke after the request was (perhaps) sent: the
    /// server may have applied it.
    #[error("connection lost during the exchange: {0}")]
    Io(String),
    /// No whole answer within the deadline: the server may have applied it.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl TransportError {
    /// True when the request certainly did not reach the server, so
    /// retrying it cannot apply it twice.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            TransportError::Connect(_) | TransportError::NotSent(_)
        )
    }
}

/// One node's base URL and its idle connections.
pub struct Endpoint {
    url: String,
    addr: String,
    host: HeaderValue,
    tls_name: Option<ServerName<'static>>,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
    /// Until when (ms on [`clock_ms`]) the client avoids this node after a
    /// failed connection: it is tried last, not skipped.
    suspect_until: AtomicU64,
}

/// Milliseconds since the first call in this process (a monotonic clock).
fn clock_ms() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Endpoint {
    /// The base URL, e.g. `http://127.0.0.1:7071`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `Host` header value for this endpoint.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    fn parse(url: &str) -> Result<Endpoint, String> {
        let full = if url.contains("://") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let uri: hyper::Uri = full.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "bad URL {url:?}: only http:// and https:// are spoken"
                ));
            }
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(format!("bad URL {url:?}: a node URL has no path or query"));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("bad URL {url:?}: no host"))?;
        if auth.as_str().contains('@') {
            return Err(format!(
                "bad URL {url:?}: give credentials as options, not in the URL"
            ));
        }
        let host = auth.host();
        let port = auth.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = format!("{host}:{port}");
        let tls_name = if tls {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            Some(
                ServerName::try_from(bare.to_string())
                    .map_err(|e| format!("bad URL {url:?}: {e}"))?,
            )
        } else {
            None
        };
        let scheme = if tls { "https" } else { "http" };
        Ok(Endpoint {
            url: format!("{scheme}://{addr}"),
            host: HeaderValue::from_str(&addr).map_err(|e| format!("bad URL {url:?}: {e}"))?,
            addr,
            tls_name,
            idle: Mutex::new(Vec::new()),
            suspect_until: AtomicU64::new(0),
        })
    }

    /// Avoid this node for `period` (it refused a connection).
    pub fn suspect(&self, period: Duration) {
        self.suspect_until
            .store(clock_ms() + period.as_millis() as u64, Ordering::Relaxed);
    }

    /// Whether this node failed a connection recently.
    pub fn is_suspected(&self) -> bool {
        let until = self.suspect_until.load(Ordering::Relaxed);
        until != 0 && clock_ms() < until
    }

    /// Forgets a suspicion (a connection succeeded).
    fn trusted(&self) {
        if self.suspect_until.load(Ordering::Relaxed) != 0 {
            self.suspect_until.store(0, Ordering::Relaxed);
        }
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }
}

/// Connections to every node a client talks to.
pub struct Transport {
    tls: Option<tokio_rustls::TlsConnector>,
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
    connects: AtomicU64,
    connect_timeout: Duration,
    max_idle: usize,
}

/// An HTTP/1.1 connection over `stream` (plain or TLS), driven by a task
/// of its own.
async fn http1<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

impl Transport {
    /// A transport that opens connections within `connect_timeout` and
    /// keeps at most `max_idle` idle connections per node; `tls` is used
    /// for `https://` endpoints.
    pub fn new(
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        max_idle: usize,
    ) -> Transport {
        Transport {
            tls: tls.map(tokio_rustls::TlsConnector::from),
            endpoints: RwLock::new(HashMap::new()),
            connects: AtomicU64::new(0),
            connect_timeout,
            max_idle,
        }
    }

    /// The endpoint of a base URL (`http://host:port`, `https://...`, or
    /// `host:port`), created on first use and shared afterwards.
    /// Two spellings of one URL (`host:port`, `http://host:port/`) share
    /// one endpoint and its connections.
    pub fn endpoint(&self, url: &str) -> Result<Arc<Endpoint>, String> {
        let e = Endpoint::parse(url)?;
        if let Some(e) = self
            .endpoints
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&e.url)
        {
            return Ok(e.clone());
        }
        if e.tls_name.is_some() && self.tls.is_none() {
            return Err(format!("{url}: https:// needs TLS settings"));
        }
        let mut all = self.endpoints.write().unwrap_or_else(|p| p.into_inner());
        Ok(all
            .entry(e.url.clone())
            .or_insert_with(|| Arc::new(e))
            .clone())
    }

    /// Connections opened so far (1 per node means every request reused one).
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    async fn connect(&self, ep: &Endpoint) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let connect = async {
            let stream = TcpStream::connect(&ep.addr)
                .await
                .map_err(|e| TransportError::Connect(format!("{}: {e}", ep.url)))?;
            let _ = stream.set_nodelay(true);
            let sender = match (&ep.tls_name, &self.tls) {
                (Some(name), Some(tls)) => {
                    let stream = tls
                        .connect(name.clone(), stream)
                        .await
                        .map_err(|e| TransportError::Connect(format!("{}: TLS: {e}", ep.url)))?;
                    http1(stream).await
                }
                _ => http1(stream).await,
            };
            sender.map_err(|e| TransportError::Connect(format!("{}: {e}", ep.url)))
        };
        let sender = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| {
                TransportError::Connect(format!(
                    "{}: no connection within {:?}",
                    ep.url, self.connect_timeout
                ))
            })??;
        self.connects.fetch_add(1, Ordering::Relaxed);
        ep.trusted();
        Ok(sender)
    }

    /// An idle connection that is still open, or a new one.
    async fn checkout(&self, ep: &Endpoint) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        while let Some(mut s) = ep.take_idle() {
            if !s.is_closed() && s.ready().await.is_ok() {
                return Ok(s);
            }
        }
        self.connect(ep).await
    }

    fn checkin(&self, ep: &Endpoint, s: SendRequest<Full<Bytes>>) {
        if s.is_closed() {
            return;
        }
        let mut idle = ep.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(s);
        }
    }

    /// Sends `req` to `ep` and reads the whole answer within `timeout`
    /// (connecting included). The request's URI is a path (`/kv/k?w=2`);
    /// `Host` is added when missing. A connection that failed or timed out
    /// is dropped, never reused.
    pub async fn send(
        &self,
        ep: &Endpoint,
        mut req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response<Bytes>, TransportError> {
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, ep.host.clone());
        }
        let exchange = async {
            let mut sender = self.checkout(ep).await?;
            let resp = match sender.try_send_request(req).await {
                Ok(r) => r,
                Err(mut e) => {
                    let sent = e.take_message().is_none();
                    let why = format!("{}: {}", ep.url, e.into_error());
                    return Err(if sent {
                        TransportError::Io(why)
                    } else {
                        TransportError::NotSent(why)
                    });
                }
            };
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| TransportError::Io(format!("{}: {e}", ep.url)))?
                .to_bytes();
            self.checkin(ep, sender);
            Ok(Response::from_parts(parts, body))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout(timeout)),
        }
    }
}

/// TLS settings trusting the CA certificates in `ca_pem` (PEM, one or
/// more), or the system's roots when `None`.
pub fn tls_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("CA certificate: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
            if roots.is_empty() {
                return Err("no certificate in the CA file".into());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_base_urls_only() {
        let e = Endpoint::parse("http://127.0.0.1:7071/").unwrap();
        assert_eq!(e.url(), "http://127.0.0.1:7071");
        assert_eq!(e.addr, "127.0.0.1:7071");
        assert!(e.tls_name.is_none());
        assert_eq!(
            Endpoint::parse("localhost:7").unwrap().url(),
            "http://localhost:7"
        );
        assert_eq!(Endpoint::parse("http://x").unwrap().addr, "x:80");
        let t = Endpoint::parse("https://[::1]:7443").unwrap();
        assert_eq!(t.addr, "[::1]:7443");
        assert!(t.tls_name.is_some());
        for bad in [
            "ftp://x:1",
            "http://x:1/kv",
            "http://x:1/?a=b",
            "http://u:p@x:1",
            "http://",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
