//! # dynkv-security: who may do what, as a pure value
//!
//! dynkv's access control follows Riak's `riak_core_security`, so that Riak
//! clients authenticate unchanged and operators find the words they know
//! (`riak-admin security add-user`, `add-source`, `grant`, ...). This crate
//! holds the rules and decides; it does no I/O: the node keeps the state in
//! its gossiped cluster state, and the HTTP layer asks it.
//!
//! ## Layout
//! - [`perm`]: the permissions ([`Permission`]: `riak_kv.get`, `riak_kv.put`,
//!   `riak_kv.delete`, `riak_kv.list_keys`, `riak_kv.index`, `riak_kv.list_buckets`,
//!   `riak_core.get_bucket`, `riak_core.set_bucket`, and `dynkv.admin`) and
//!   where they are granted ([`Scope`]: `any`, a bucket type, or a bucket
//!   type and bucket).
//! - [`state`]: the [`SecurityState`] (enabled flag, users with argon2
//!   password hashes, sources, grants, bearer tokens kept as SHA-256
//!   hashes), the [`Command`]s that change it, and the decisions:
//!   which source matches a peer, whether a user holds a permission.
//! - [`credentials`]: parsing of `Authorization: Basic` and `Bearer`
//!   headers.
//! - [`password`]: argon2id hashing and verification (PHC strings) and
//!   bearer token encoding.
//!
//! ## The model, as in Riak
//! A request is **authenticated** by a user name and a credential, checked
//! by the **source** that matches the user and the peer address: a source
//! is (user or `all`, CIDR, method), the method `password` (the argon2 hash
//! must verify) or `trust` (no password needed). The most specific CIDR
//! wins; at equal prefix length a source naming the user beats one for
//! `all`. A peer whose address is unknown matches only `/0` sources. A
//! bearer token stands for its user's password; the user still needs a
//! matching source, so network restrictions hold for tokens too.
//!
//! A request is then **authorised** when the user (or `all`) holds the
//! route's permission on `any`, on the request's bucket type, or on its
//! bucket type and bucket.
//!
//! ## Converging without a leader
//! Every node may change the state (an admin request reaches any node), and
//! gossip spreads it. Each entry (a user, a source, a grant of one
//! permission, a token, the enabled flag) is a last-writer-wins register
//! stamped with (counter, node): a change takes a counter above every
//! counter the node has seen, so a change made after seeing another
//! supersedes it, and concurrent changes resolve the same way everywhere.
//! Removals are tombstones. Merging is the entry-wise maximum, hence
//! commutative, associative and idempotent (property-tested), and every
//! node converges on the same state whatever the gossip order.

pub mod credentials;
pub mod password;
pub mod perm;
pub mod state;

pub use credentials::{Credentials, HeaderError, parse_authorization};
pub use password::{hash_password, new_token, token_hash, verify_password};
pub use perm::{Permission, Scope};
pub use state::{ALL, Command, CommandError, Denied, Method, SecurityState, Stamp};
