//! # dynkv-rpc: how nodes talk to each other
//!
//! Nodes exchange typed messages over a cluster port of their own: a few
//! long-lived TCP connections per peer, each opened by a handshake in
//! which both ends prove they hold the cluster secret, then encrypted and
//! multiplexed (many requests in flight, answers in any order, frames
//! coalesced per write).
//!
//! ## Layout
//! - [`wire`]: what a message is ([`Endpoint`]: a request naming its
//!   response type), protobuf encoding, [`RemoteError`], message versions.
//! - [`messages`]: every message, one module per subsystem (health, kv,
//!   hints, anti-entropy, membership, listing).
//! - [`transport`]: the object-safe [`Transport`] seam, the typed `call`
//!   on top of it, [`RpcError`] and the [`AddressBook`].
//! - [`dispatch`]: the server half: typed [`Handler`]s behind a
//!   [`Dispatcher`].
//! - [`net`]: the real network ([`NetTransport`] and [`net::serve`]);
//!   [`handshake`] (Noise `NNpsk0`), [`frame`] (records and frames, pure)
//!   and [`secret`] beneath it; [`metrics`] per peer.
//! - [`health`]: the failure detector's table of who is up, run as a
//!   circuit breaker per peer.
//! - [`retry`]: capped exponential backoff with full jitter.
//! - [`sim`]: an in-process [`Transport`] with named faults for unit tests.
//!
//! What a request *does* lives in the subsystems that register handlers
//! (`dynkv-quorum`, `dynkv-antientropy`, `dynkv-membership`).

pub mod dispatch;
pub mod frame;
pub mod handshake;
pub mod health;
pub mod latency;
pub mod messages;
pub mod metrics;
pub mod net;
pub mod retry;
pub mod secret;
pub mod sim;
pub mod transport;
pub mod wire;

pub use dispatch::{CallContext, Dispatcher, Handler};
pub use health::{BreakerMetrics, BreakerState, PeerHealth, PeerView};
pub use latency::LatencyEstimate;
pub use metrics::InternodeMetrics;
pub use net::{NetConfig, NetTransport, PeerStatus};
pub use secret::{ClusterSecret, token_matches};
pub use transport::{AddressBook, RawCall, RawReply, RpcError, Transport};
pub use wire::{Class, Endpoint, Message, PROTOCOL_VERSION, RemoteError, WireError};
