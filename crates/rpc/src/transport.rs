//! The [`Transport`] seam and its HTTP implementation.
//!
//! The coordinator only ever talks to peers through [`Transport::call`], so
//! the same coordinator code runs across real processes ([`HttpTransport`])
//! and in-process over the fault-injecting [`crate::sim::SimNetwork`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use dynkv_ring::NodeId;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::message::{Request, Response, WireError, decode, encode};

/// Header carrying the cluster secret on every internode request.
pub const TOKEN_HEADER: &str = "x-dynkv-token";
/// Path of the internode endpoint.
pub const RPC_PATH: &str = "/rpc";
/// Media type of internode frames.
pub const RPC_CONTENT_TYPE: &str = "application/x-dynkv-rpc";

/// Why a call did not produce a response.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// No address is known for the node.
    #[error("no address known for node {0}")]
    UnknownNode(String),
    /// Could not connect or the connection broke: the peer is likely down.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// No answer within the deadline: down, partitioned or overloaded.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer refused our cluster token.
    #[error("peer refused the cluster token")]
    Unauthorized,
    /// The peer answered something that is not a valid frame.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// The peer answered a different response kind than the request declares.
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
    /// Not sent: the peer's circuit breaker is open.
    #[error("not sent: circuit breaker open")]
    BreakerOpen,
}

impl RpcError {
    /// True when the failure says nothing about the peer being alive
    /// (it answered), so the failure detector should not mark it down.
    pub fn peer_answered(&self) -> bool {
        matches!(
            self,
            RpcError::Unauthorized | RpcError::Protocol(_) | RpcError::Unexpected(_)
        )
    }
}

impl From<WireError> for RpcError {
    fn from(e: WireError) -> Self {
        RpcError::Protocol(e.to_string())
    }
}

/// Sends one request to one peer and waits for its response, at most `timeout`.
pub trait Transport: Send + Sync + 'static {
    /// Encodes before returning, so the future owns everything it needs.
    fn call(
        &self,
        to: &NodeId,
        request: &Request,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Response, RpcError>>;
}

/// The server side of the internode protocol: answers one request. The
/// HTTP route and the simulated network both deliver requests through it.
pub trait Service: Send + Sync + 'static {
    /// Handles one request.
    fn handle(&self, request: Request) -> BoxFuture<'static, Response>;
}

/// Picks the requests a service serves.
pub type RequestFilter = fn(&Request) -> bool;

/// Dispatches requests to the service that serves their kind: a node
/// composes its key-value, anti-entropy and membership services this way.
pub struct ServiceRouter {
    routes: Vec<(RequestFilter, Arc<dyn Service>)>,
    default: Arc<dyn Service>,
}

impl ServiceRouter {
    /// A router sending everything to `default`.
    pub fn new(default: Arc<dyn Service>) -> Self {
        ServiceRouter {
            routes: Vec::new(),
            default,
        }
    }

    /// Sends the requests `matches` accepts to `service`.
    pub fn route(mut self, matches: RequestFilter, service: Arc<dyn Service>) -> Self {
        self.routes.push((matches, service));
        self
    }
}

impl Service for ServiceRouter {
    fn handle(&self, request: Request) -> BoxFuture<'static, Response> {
        match self.routes.iter().find(|(m, _)| m(&request)) {
            Some((_, s)) => s.handle(request),
            None => self.default.handle(request),
        }
    }
}

/// Node id → `host:port`, swapped atomically when membership changes so the
/// request path never takes a lock to find an address.
#[derive(Default)]
pub struct AddressBook {
    addrs: ArcSwap<HashMap<NodeId, String>>,
}

impl AddressBook {
    /// A book with these entries.
    pub fn new(entries: impl IntoIterator<Item = (NodeId, String)>) -> Self {
        AddressBook {
            addrs: ArcSwap::from_pointee(entries.into_iter().collect()),
        }
    }

    /// The address of a node.
    pub fn get(&self, node: &NodeId) -> Option<String> {
        self.addrs.load().get(node).cloned()
    }

    /// Adds or changes one entry.
    pub fn insert(&self, node: NodeId, addr: String) {
        self.addrs.rcu(|m| {
            let mut m = HashMap::clone(m);
            m.insert(node.clone(), addr.clone());
            m
        });
    }

    /// Every entry.
    pub fn all(&self) -> Vec<(NodeId, String)> {
        let mut v: Vec<_> = self
            .addrs
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort();
        v
    }
}

/// Settings of the internode HTTP client.
#[derive(Clone, Debug)]
pub struct HttpTransportConfig {
    /// The cluster secret sent with every request.
    pub cluster_token: String,
    /// TCP connect deadline, separate from the request deadline so a dead
    /// host is noticed quickly.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per peer.
    pub pool_max_idle_per_host: usize,
}

/// [`Transport`] over HTTP/1.1 with pooled keep-alive connections.
///
/// Built on hyper's pooled client directly rather than a high-level client:
/// an internode call is on the path of every replicated request, and the
/// URL parsing, redirect and header machinery of a general-purpose client
/// cost more than the call itself needs.
pub struct HttpTransport {
    client: Client<HttpConnector, Full<Bytes>>,
    book: Arc<AddressBook>,
    token: HeaderValue,
}

impl HttpTransport {
    /// A transport that resolves node ids through `book`.
    pub fn new(config: &HttpTransportConfig, book: Arc<AddressBook>) -> Result<Self, RpcError> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .build(connector);
        let token = HeaderValue::from_str(&config.cluster_token)
            .map_err(|_| RpcError::Protocol("the cluster token is not a valid header".into()))?;
        Ok(HttpTransport {
            client,
            book,
            token,
        })
    }
}

impl Transport for HttpTransport {
    fn call(
        &self,
        to: &NodeId,
        request: &Request,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Response, RpcError>> {
        let Some(addr) = self.book.get(to) else {
            let err = RpcError::UnknownNode(to.to_string());
            return Box::pin(async move { Err(err) });
        };
        let uri = match Uri::try_from(format!("http://{addr}{RPC_PATH}")) {
            Ok(u) => u,
            Err(e) => {
                let err = RpcError::Unreachable(format!("bad address {addr}: {e}"));
                return Box::pin(async move { Err(err) });
            }
        };
        let mut req = hyper::Request::new(Full::new(Bytes::from(encode(request))));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(TOKEN_HEADER, self.token.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(RPC_CONTENT_TYPE));
        let sent = self.client.request(req);
        Box::pin(async move {
            let exchange = async {
                let resp = sent
                    .await
                    .map_err(|e| RpcError::Unreachable(error_chain(&e)))?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED {
                    return Err(RpcError::Unauthorized);
                }
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| RpcError::Unreachable(error_chain(&e)))?
                    .to_bytes();
                if !status.is_success() {
                    return Err(RpcError::Protocol(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    )));
                }
                Ok(decode::<Response>(&bytes)?)
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or(Err(RpcError::Timeout(timeout)))
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Compares a presented cluster token with the configured one in constant
/// time, so the comparison leaks nothing about the secret through timing.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
}
