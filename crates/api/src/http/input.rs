//! Keys and bodies, checked once for both protocols: a name (a native key,
//! a Riak bucket or key) is 1 to `limits.max_key_bytes` bytes; a body is
//! at most `limits.max_value_bytes` (larger ones are refused before they
//! are buffered, by the routers' body limit). Each protocol words the
//! refusal in its own way.
//!
//! What a write stores beside its value is bounded too ([`check_metadata`]):
//! the `Content-Type`, user metadata, index entries and links are kept with
//! every sibling on every replica, so without a bound one request could
//! make each of them carry kilobytes of headers for good.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use dynkv_vclock::Meta;

use crate::Limits;

/// A write whose metadata passes one of the `limits` bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the write carries {got} {what}, more than the {max} allowed (limits.{limit})")]
pub struct MetadataError {
    /// The `limits` key that was passed.
    pub limit: &'static str,
    /// What was counted, in words.
    pub what: &'static str,
    /// The bound.
    pub max: usize,
    /// What the write carries.
    pub got: usize,
}

/// Checks a write's `Content-Type` (`content_type` bytes) and metadata
/// against the limits; the first bound passed is the error.
pub fn check_metadata(
    limits: &Limits,
    content_type: &str,
    meta: &Meta,
) -> Result<(), MetadataError> {
    let meta_bytes: usize = meta.user.iter().map(|(n, v)| n.len() + v.len()).sum();
    let checks = [
        (
            "max_content_type_bytes",
            "bytes of Content-Type",
            limits.max_content_type_bytes,
            content_type.len(),
        ),
        (
            "max_meta_entries",
            "user metadata entries",
            limits.max_meta_entries,
            meta.user.len(),
        ),
        (
            "max_meta_bytes",
            "bytes of user metadata",
            limits.max_meta_bytes,
            meta_bytes,
        ),
        (
            "max_index_entries",
            "index entries",
            limits.max_index_entries,
            meta.indexes.len(),
        ),
        ("max_links", "links", limits.max_links, meta.links.len()),
    ];
    match checks.into_iter().find(|(_, _, max, got)| got > max) {
        Some((limit, what, max, got)) => Err(MetadataError {
            limit,
            what,
            max,
            got,
        }),
        None => Ok(()),
    }
}

/// A name that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty (`what`: `key`, `bucket name`, ...).
    #[error("the {what} is empty")]
    Empty { what: &'static str },
    /// Longer than the `max` bytes allowed.
    #[error("the {what} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

impl NameError {
    /// 400 for an empty name, 414 for a long one.
    pub fn status(&self) -> StatusCode {
        match self {
            NameError::Empty { .. } => StatusCode::BAD_REQUEST,
            NameError::TooLong { .. } => StatusCode::URI_TOO_LONG,
        }
    }
}

/// Checks that `name` (a `what`) is 1 to `max` bytes long.
pub fn check_name(what: &'static str, name: &[u8], max: usize) -> Result<(), NameError> {
    match name.len() {
        0 => Err(NameError::Empty { what }),
        len if len > max => Err(NameError::TooLong { what, len, max }),
        _ => Ok(()),
    }
}

/// A request body that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Larger than the `limit` bytes allowed.
    #[error("the body is larger than the {limit} bytes allowed")]
    TooLarge { limit: usize },
    /// Could not be read.
    #[error("cannot read the request body: {0}")]
    Unreadable(String),
}

impl BodyError {
    /// 413 for a body too large, 400 for one that cannot be read.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Unreadable(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// The body of a request, or why it cannot be used (`limit`: the router's
/// body limit, for the error).
pub fn body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, BodyError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BodyError::TooLarge { limit }
        } else {
            BodyError::Unreadable(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_sentences() {
        let empty = NameError::Empty {
            what: "bucket name",
        };
        assert_eq!(empty.to_string(), "the bucket name is empty");
        assert_eq!(empty.status(), StatusCode::BAD_REQUEST);
        let long = check_name("key", b"kkkk", 3).unwrap_err();
        assert_eq!(
            long.to_string(),
            "the key is 4 bytes long; at most 3 are allowed"
        );
        assert_eq!(long.status(), StatusCode::URI_TOO_LONG);
        let big = BodyError::TooLarge { limit: 9 };
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let bad = BodyError::Unreadable("reset".into());
        assert_eq!(bad.to_string(), "cannot read the request body: reset");
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn metadata_is_bounded() {
        let limits = Limits {
            max_content_type_bytes: 10,
            max_meta_entries: 2,
            max_meta_bytes: 8,
            max_index_entries: 1,
            max_links: 1,
            ..Limits::default()
        };
        let mut m = Meta::default();
        assert_eq!(check_metadata(&limits, "text/plain", &m), Ok(()));
        let e = check_metadata(&limits, "text/plain;x", &m).unwrap_err();
        assert_eq!((e.limit, e.got), ("max_content_type_bytes", 12));
        m.user = vec![("a".into(), "1".into()); 3];
        assert_eq!(
            check_metadata(&limits, "", &m).unwrap_err().limit,
            "max_meta_entries"
        );
        m.user = vec![("abcd".into(), "12345".into())];
        assert_eq!(
            check_metadata(&limits, "", &m).unwrap_err().limit,
            "max_meta_bytes"
        );
        m.user.clear();
        m.indexes = vec![("f_bin".into(), "x".into()); 2];
        let e = check_metadata(&limits, "", &m).unwrap_err();
        assert_eq!(e.limit, "max_index_entries");
        assert!(e.to_string().contains("limits.max_index_entries"), "{e}");
    }

    #[test]
    fn names_are_one_to_max_bytes() {
        assert_eq!(check_name("key", b"k", 3), Ok(()));
        assert_eq!(check_name("key", b"kkk", 3), Ok(()));
        assert_eq!(
            check_name("bucket", b"", 3),
            Err(NameError::Empty { what: "bucket" })
        );
        assert_eq!(
            check_name("key", b"kkkk", 3),
            Err(NameError::TooLong {
                what: "key",
                len: 4,
                max: 3
            })
        );
    }
}
