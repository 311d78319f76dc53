//! Keys and bodies, checked once for both protocols: a name (a native key,
//! a Riak bucket or key) is 1 to `limits.max_key_bytes` bytes; a body is
//! at most `limits.max_value_bytes` (larger ones are refused before they
//! are buffered, by the routers' body limit). Each protocol words the
//! refusal in its own way.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

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
