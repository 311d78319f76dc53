//! Parsing of the `Authorization` header: `Basic` (RFC 7617, what Riak
//! clients send) and `Bearer` (RFC 6750, dynkv's tokens). Total on any
//! input: every malformed header is an error value, never a panic
//! (property-tested and fuzzed by the `auth_header` target).

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Longest `Authorization` value considered; longer ones are refused
/// unparsed (a password or token never needs more).
pub const MAX_AUTHORIZATION_BYTES: usize = 4096;

/// Standard base64, with or without padding (clients differ).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What a request presents.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password.
    Basic {
        /// The user.
        user: String,
        /// The password, in clear.
        password: String,
    },
    /// A bearer token, as `dynkv admin token create` printed it.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    /// Never prints a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { user, .. } => write!(f, "Basic({user:?}, <password>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<token>)"),
        }
    }
}

/// Why an `Authorization` header was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Longer than [`MAX_AUTHORIZATION_BYTES`].
    #[error("the Authorization header is too long")]
    TooLong,
    /// Neither `Basic` nor `Bearer`.
    #[error("the Authorization scheme must be Basic or Bearer")]
    UnknownScheme,
    /// `Basic` credentials that are not base64.
    #[error("the Basic credentials are not valid base64")]
    BadBase64,
    /// `Basic` credentials that are not UTF-8.
    #[error("the Basic credentials are not valid UTF-8")]
    NotUtf8,
    /// `Basic` credentials without the `user:password` colon.
    #[error("the Basic credentials must be user:password")]
    NoColon,
    /// A bearer token with characters outside RFC 6750's token68.
    #[error("the bearer token is malformed")]
    BadToken,
}

/// Parses an `Authorization` header value. The scheme is case-insensitive
/// and separated from its parameter by one or more spaces.
pub fn parse_authorization(value: &[u8]) -> Result<Credentials, HeaderError> {
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(HeaderError::TooLong);
    }
    let value = trim(value);
    let split = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or(HeaderError::UnknownScheme)?;
    let (scheme, rest) = value.split_at(split);
    let param = trim(rest);
    if scheme.eq_ignore_ascii_case(b"basic") {
        let raw = BASIC.decode(param).map_err(|_| HeaderError::BadBase64)?;
        let text = String::from_utf8(raw).map_err(|_| HeaderError::NotUtf8)?;
        let (user, password) = text.split_once(':').ok_or(HeaderError::NoColon)?;
        Ok(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case(b"bearer") {
        if !is_token68(param) {
            return Err(HeaderError::BadToken);
        }
        // token68 is ASCII.
        Ok(Credentials::Bearer(
            String::from_utf8(param.to_vec()).map_err(|_| HeaderError::BadToken)?,
        ))
    } else {
        Err(HeaderError::UnknownScheme)
    }
}

fn trim(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

/// RFC 7235 token68: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(b: &[u8]) -> bool {
    let body_end = b.iter().rposition(|&c| c != b'=').map_or(0, |i| i + 1);
    body_end > 0
        && b[..body_end]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"-._~+/".contains(&c))
}

/// Encodes Basic credentials (for clients and tests).
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_both_schemes() {
        assert_eq!(
            parse_authorization(basic_header("alice", "s3:cret").as_bytes()),
            Ok(Credentials::Basic {
                user: "alice".into(),
                password: "s3:cret".into()
            })
        );
        assert_eq!(
            parse_authorization(b"bAsIc   YWxpY2U6"),
            Ok(Credentials::Basic {
                user: "alice".into(),
                password: "".into()
            })
        );
        assert_eq!(
            parse_authorization(b"Bearer dkv_abc-DEF_123"),
            Ok(Credentials::Bearer("dkv_abc-DEF_123".into()))
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        assert_eq!(parse_authorization(b""), Err(HeaderError::UnknownScheme));
        assert_eq!(
            parse_authorization(b"Basic"),
            Err(HeaderError::UnknownScheme)
        );
        assert_eq!(
            parse_authorization(b"Digest abc"),
            Err(HeaderError::UnknownScheme)
        );
        assert_eq!(
            parse_authorization(b"Basic !!!"),
            Err(HeaderError::BadBase64)
        );
        assert_eq!(
            parse_authorization(b"Basic YWxpY2U="),
            Err(HeaderError::NoColon)
        );
        assert_eq!(
            parse_authorization(b"Basic //79"),
            Err(HeaderError::NotUtf8)
        );
        assert_eq!(
            parse_authorization(b"Bearer a b"),
            Err(HeaderError::BadToken)
        );
        assert_eq!(
            parse_authorization(b"Bearer ==="),
            Err(HeaderError::BadToken)
        );
        let long = vec![b'a'; MAX_AUTHORIZATION_BYTES + 1];
        assert_eq!(parse_authorization(&long), Err(HeaderError::TooLong));
    }

    #[test]
    fn debug_hides_secrets() {
        let c = parse_authorization(basic_header("bob", "hunter2").as_bytes()).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_authorization(&bytes);
        }

        #[test]
        fn never_panics_after_a_scheme(
            scheme in prop_oneof![Just("Basic "), Just("Bearer "), Just("basic\t ")],
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut v = scheme.as_bytes().to_vec();
            v.extend(bytes);
            let _ = parse_authorization(&v);
        }

        #[test]
        fn basic_round_trips(user in "[^:\\x00]{0,40}", password in "\\PC{0,40}") {
            let parsed = parse_authorization(basic_header(&user, &password).as_bytes());
            prop_assert_eq!(parsed, Ok(Credentials::Basic { user, password }));
        }
    }
}
