//! The [`Transport`] seam: the only way the coordinator and the background
//! workers reach a peer.
//!
//! The trait is object-safe and untyped (an endpoint id and bytes), so the
//! same code runs over the real network ([`crate::net::NetTransport`]) and
//! the in-process fault-injecting [`crate::sim::SimNetwork`]; callers use
//! the typed [`call`](dyn Transport::call), which encodes the request,
//! decodes the response its endpoint names, and turns a peer's refusal
//! into [`RpcError::Remote`].

use std::collections::HashMap;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use dynkv_ring::NodeId;
use futures::future::BoxFuture;

use crate::wire::{Class, Endpoint, Message, RemoteError};

/// Why a call did not produce a response.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RpcError {
    /// No address is known for the node.
    #[error("no address known for node {0}")]
    UnknownNode(String),
    /// Not sent: no connection could be opened (or the last attempt failed
    /// and the reconnect backoff has not passed). Safe to try elsewhere.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// Sent, then the connection broke before the answer: the peer may or
    /// may not have acted on it.
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    /// No answer within the deadline: down, partitioned or overloaded.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer did not accept our cluster secret.
    #[error("the peer refused the handshake (different cluster secret?)")]
    Unauthorized,
    /// The peer answered bytes that do not decode.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// Not sent: the peer's circuit breaker is open.
    #[error("not sent: circuit breaker open")]
    BreakerOpen,
    /// The peer received the request and refused it.
    #[error("{0}")]
    Remote(RemoteError),
}

impl RpcError {
    /// True when the peer answered (a refusal or bytes we could not
    /// decode), so the failure detector should count it alive. A peer that
    /// refuses our handshake is not: nothing can be sent to it.
    pub fn peer_answered(&self) -> bool {
        matches!(self, RpcError::Protocol(_) | RpcError::Remote(_))
    }

    /// True when the request certainly never reached the peer, so it is
    /// safe to send it to another node instead.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            RpcError::UnknownNode(_)
                | RpcError::Unreachable(_)
                | RpcError::BreakerOpen
                | RpcError::Unauthorized
        )
    }

    /// A metric label for the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            RpcError::UnknownNode(_) => "unknown_node",
            RpcError::Unreachable(_) => "unreachable",
            RpcError::ConnectionLost(_) => "connection_lost",
            RpcError::Timeout(_) => "timeout",
            RpcError::Unauthorized => "unauthorized",
            RpcError::Protocol(_) => "protocol",
            RpcError::BreakerOpen => "breaker_open",
            RpcError::Remote(_) => "remote",
        }
    }
}

/// One encoded request.
#[derive(Clone, Debug)]
pub struct RawCall {
    /// [`Endpoint::ID`].
    pub endpoint: u16,
    /// [`Endpoint::NAME`].
    pub name: &'static str,
    /// [`Endpoint::CLASS`].
    pub class: Class,
    /// The encoded request.
    pub body: Bytes,
    /// Deadline of the whole call (connecting included).
    pub timeout: Duration,
}

/// One encoded answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawReply {
    /// The encoded response.
    Ok(Bytes),
    /// An encoded [`RemoteError`].
    Failed(Bytes),
}

/// Sends requests to peers.
pub trait Transport: Send + Sync + 'static {
    /// Sends one encoded request and waits for its answer, at most
    /// `call.timeout`.
    fn send(&self, to: &NodeId, call: RawCall) -> BoxFuture<'static, Result<RawReply, RpcError>>;

    /// The message version agreed with `peer` on its open connection, if
    /// any: a caller asks for fields of a newer version only when the peer
    /// speaks it.
    fn version(&self, peer: &NodeId) -> Option<u32> {
        let _ = peer;
        None
    }
}

impl dyn Transport {
    /// Sends a typed request and decodes the response its endpoint names.
    pub async fn call<E: Endpoint>(
        &self,
        to: &NodeId,
        request: &E,
        timeout: Duration,
    ) -> Result<E::Response, RpcError> {
        let call = RawCall {
            endpoint: E::ID,
            name: E::NAME,
            class: E::CLASS,
            body: request.encode(),
            timeout,
        };
        decode_reply::<E>(self.send(to, call).await?)
    }
}

/// Decodes a raw answer to an `E` request.
pub fn decode_reply<E: Endpoint>(reply: RawReply) -> Result<E::Response, RpcError> {
    match reply {
        RawReply::Ok(body) => E::Response::decode(body)
            .map_err(|e| RpcError::Protocol(format!("{} answer: {e}", E::NAME))),
        RawReply::Failed(body) => match RemoteError::decode(body) {
            Ok(e) => Err(RpcError::Remote(e)),
            Err(e) => Err(RpcError::Protocol(format!("{} failure: {e}", E::NAME))),
        },
    }
}

/// Node id → internode `host:port`, swapped atomically when membership
/// changes so the request path never takes a lock to find an address.
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
