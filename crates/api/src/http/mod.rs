//! The HTTP core both client APIs use: `/kv` ([`crate::kv`]) and the Riak
//! API ([`crate::riak`]) are adapters that translate their protocol's
//! requests and answers, over the same pieces:
//!
//! - [`auth`]: authentication and authorisation (when security is on);
//! - [`admit`]: the in-flight bulkhead;
//! - [`observe`]: the tower layer that counts and times every operation
//!   (`dynkv_http_requests_total{op,status}`,
//!   `dynkv_http_request_duration_seconds{op}`);
//! - [`params`]: the query string decoded once, read as typed values;
//! - [`input`]: key and body validation;
//! - [`siblings`]: one sibling renderer, framed as JSON or `multipart/mixed`;
//! - [`codec`]: URL components, HTTP dates, media types, entity tags and
//!   base62 identifiers, over well-kept crates.
//!
//! Every refusal here is a protocol-neutral value ([`params::ParamError`],
//! [`input::NameError`], [`input::BodyError`]); each protocol maps it to
//! its own answer in one place (`/kv`: [`crate::ApiError`], JSON; Riak:
//! [`crate::riak::RiakError`], plain text).

pub mod admit;
pub mod auth;
pub mod codec;
pub mod input;
pub mod observe;
pub mod params;
pub mod siblings;
