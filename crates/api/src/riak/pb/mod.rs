//! Riak's protocol buffers API (PBC): request handlers over the same cores
//! as the HTTP adapter. Each handler takes a decoded request and answers
//! the response message or a [`RiakError`](super::RiakError).
//!
//! - [`index`]: `RpbIndexReq` (2i), streamed or whole.
//! - [`datatypes`]: `DtFetchReq` / `DtUpdateReq`.
//! - [`security`]: the connection's `RpbStartTls` / `RpbAuthReq` gate and
//!   the permission each request needs.

pub mod datatypes;
pub mod index;
pub mod security;

use crate::http::params::Params;

/// Riak's special quorum values in a `uint32` field.
const RW_ONE: u32 = u32::MAX - 1;
const RW_QUORUM: u32 = u32::MAX - 2;
const RW_ALL: u32 = u32::MAX - 3;
const RW_DEFAULT: u32 = u32::MAX - 4;

/// A quorum field as the HTTP parameter spells it (`one`, `quorum`,
/// `all`, `default` or a count), so both transports read it alike.
pub fn quorum(v: u32) -> String {
    match v {
        RW_ONE => "one".into(),
        RW_QUORUM => "quorum".into(),
        RW_ALL => "all".into(),
        RW_DEFAULT => "default".into(),
        n => n.to_string(),
    }
}

/// The request options that are set, as the parameters the shared cores
/// read (their values are numbers and words: nothing to escape).
pub fn params(pairs: &[(&str, Option<String>)]) -> Params {
    let qs: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    Params::parse(&qs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_fields_read_as_the_http_words() {
        assert_eq!(quorum(u32::MAX - 2), "quorum");
        assert_eq!(quorum(u32::MAX - 1), "one");
        assert_eq!(quorum(u32::MAX - 3), "all");
        assert_eq!(quorum(u32::MAX - 4), "default");
        assert_eq!(quorum(2), "2");
        let p = params(&[
            ("r", Some("2".into())),
            ("pr", None),
            ("timeout", Some("50".into())),
        ]);
        assert_eq!(
            (p.get("r"), p.get("pr"), p.get("timeout")),
            (Some("2"), None, Some("50"))
        );
    }
}
