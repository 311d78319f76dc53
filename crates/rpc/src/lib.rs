//! # dynkv-rpc: how nodes talk to each other
//!
//! Nodes exchange typed messages ([`Request`] / [`Response`]) encoded as
//! versioned postcard frames, over HTTP/1.1 POSTs to `/rpc` on the node's
//! listener, authenticated by the cluster token header.
//!
//! ## Layout
//! - [`message`]: the message types, the quorum spec they carry, and the
//!   wire encoding (why postcard: see the module doc).
//! - [`transport`]: the [`Transport`] trait the coordinator is written
//!   against, the HTTP/1.1 [`HttpTransport`] (pooled keep-alive
//!   connections, separate connect and request deadlines), the
//!   [`AddressBook`], and constant-time token checking.
//! - [`health`]: the failure detector's table of who is up, run as a
//!   circuit breaker per peer.
//! - [`retry`]: capped exponential backoff with full jitter.
//! - [`sim`]: an in-process [`Transport`] with named faults for unit tests.
//!
//! The server half (the axum route that decodes frames and dispatches them)
//! lives in `dynkv-api`; what a request *does* lives in `dynkv-quorum`.

pub mod health;
pub mod message;
pub mod retry;
pub mod sim;
pub mod transport;

pub use health::{BreakerMetrics, BreakerState, PeerHealth, PeerView};
pub use message::{
    Quorum, RemoteFailure, Request, Response, WireError, WriteOutcome, WriteRequest, decode, encode,
};
pub use transport::{
    AddressBook, HttpTransport, HttpTransportConfig, RPC_CONTENT_TYPE, RPC_PATH, RpcError, Service,
    ServiceRouter, TOKEN_HEADER, Transport, token_matches,
};
