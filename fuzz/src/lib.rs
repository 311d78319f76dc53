//! The checks behind the fuzz targets, shared with the regression test
//! (`crates/chaos/tests/fuzz_regressions.rs`) that replays every input kept
//! under `fuzz/regressions/<target>/`.
//!
//! Each check feeds untrusted bytes to a decoder that faces the network and
//! asserts more than "no panic": what decodes must re-encode and decode to
//! the same thing, and what the decoded value promises (sorted entries, a
//! quorum within 1..=N, frames as a reference model of the layout cuts
//! them, a handshake refused without the secret, an HTTP answer that is
//! never a 500) must hold.

pub mod auth;
pub mod checks;
pub mod http;
pub mod internode;
pub mod riakpb;
