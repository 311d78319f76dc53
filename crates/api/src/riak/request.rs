//! What a Riak request says, in Riak's vocabulary: the bucket and key it
//! names ([`Target`]), its `X-Riak-Vclock`, and its timeout. Paths are
//! decoded as Riak decodes them; everything else is read through the HTTP
//! core ([`crate::http`]) and refused in Riak's words ([`RiakError`]).

use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use dynkv_vclock::context::MAX_CONTEXT_TOKEN_LEN;
use dynkv_vclock::{
    ContextError, ContextKey, VersionVector, context_payload, decode_context_payload,
};

use dynkv_btypes::DEFAULT_TYPE;

use super::{RiakError, namespace};
use crate::AppState;
use crate::http::codec::{quote_plus, unquote_plus};
use crate::http::input::check_name;
use crate::http::params::Params;

/// Which bucket (and key) a request names, decoded from the raw path.
#[derive(Clone, Debug)]
pub struct Target {
    /// Bucket name bytes.
    pub bucket: Vec<u8>,
    /// Key bytes, when the path has one.
    pub key: Option<Vec<u8>>,
    /// True when addressed as `/types/{t}/...` (answers use that form).
    pub typed: bool,
    /// The bucket type when it is not `default` (checked to exist and be
    /// active when the path was read).
    pub btype: Option<String>,
}

impl Target {
    /// Decodes the path parameters the way Riak does (`+` is a space, then
    /// percent-decoding; keys may be any bytes) and checks the bucket type:
    /// `default`, or an active type of the cluster's.
    /// A target named by raw bytes (as PBC names it): `btype` `None` or
    /// `default` is the default type; the names are checked as a path's are.
    pub fn new(
        state: &AppState,
        btype: Option<&[u8]>,
        bucket: &[u8],
        key: Option<&[u8]>,
    ) -> Result<Target, RiakError> {
        let mut t = Target::of_type(state, btype)?;
        t.bucket = bucket.to_vec();
        t.key = key.map(<[u8]>::to_vec);
        let max = state.limits.max_key_bytes;
        check_name("bucket name", &t.bucket, max)?;
        if let Some(k) = &t.key {
            check_name("key name", k, max)?;
        }
        Ok(t)
    }

    /// A bucket type alone (for listing its buckets, reading its
    /// properties): `None` or `default` is the default type.
    pub fn of_type(state: &AppState, btype: Option<&[u8]>) -> Result<Target, RiakError> {
        let mut t = Target {
            bucket: Vec::new(),
            key: None,
            typed: btype.is_some(),
            btype: None,
        };
        if let Some(name) = btype
            && name != DEFAULT_TYPE.as_bytes()
        {
            t.btype = Some(active_type(state, name)?);
        }
        Ok(t)
    }

    fn from_path(state: &AppState, params: &RawPathParams) -> Result<Target, RiakError> {
        let mut t = Target {
            bucket: Vec::new(),
            key: None,
            typed: false,
            btype: None,
        };
        let mut bucket = None;
        for (name, raw) in params.iter() {
            let value = unquote_plus(raw);
            match name {
                "type" => {
                    t.typed = true;
                    if value != DEFAULT_TYPE.as_bytes() {
                        t.btype = Some(active_type(state, &value)?);
                    }
                }
                "bucket" => bucket = Some(value),
                "key" => t.key = Some(value),
                _ => {}
            }
        }
        let max = state.limits.max_key_bytes;
        for (what, v) in [
            ("bucket name", bucket.as_ref()),
            ("key name", t.key.as_ref()),
        ] {
            if let Some(v) = v {
                check_name(what, v, max)?;
            }
        }
        t.bucket = bucket.unwrap_or_default();
        Ok(t)
    }

    /// What every internal key of this bucket type starts with.
    pub fn type_base(&self) -> Vec<u8> {
        namespace::base(self.btype.as_deref().map(str::as_bytes))
    }

    /// What every internal key of this bucket starts with.
    pub fn bucket_prefix(&self) -> Vec<u8> {
        namespace::prefix_in(&self.type_base(), &self.bucket)
    }

    /// The internal key of this bucket and key.
    pub fn internal_key(&self) -> Vec<u8> {
        namespace::key_in(
            &self.type_base(),
            &self.bucket,
            self.key.as_deref().unwrap_or_default(),
        )
    }

    /// The bucket type's name as a path shows it.
    pub fn type_name(&self) -> &str {
        self.btype.as_deref().unwrap_or(DEFAULT_TYPE)
    }

    /// The path of this bucket's key `key`, in the form the request used.
    pub fn key_path(&self, key: &[u8]) -> String {
        let prefix = if self.typed {
            format!("/types/{}", quote_plus(self.type_name().as_bytes()))
        } else {
            String::new()
        };
        format!(
            "{prefix}/buckets/{}/keys/{}",
            quote_plus(&self.bucket),
            quote_plus(key)
        )
    }
}

/// The name of an existing, active bucket type, or Riak's 404.
fn active_type(state: &AppState, name: &[u8]) -> Result<String, RiakError> {
    let unknown = || {
        RiakError::new(
            StatusCode::NOT_FOUND,
            format!("Unknown bucket type: {}", String::from_utf8_lossy(name)),
        )
    };
    let name = std::str::from_utf8(name).map_err(|_| unknown())?;
    let entry = state
        .membership
        .as_ref()
        .and_then(|m| m.bucket_type(name))
        .ok_or_else(unknown)?;
    if !entry.active {
        return Err(RiakError::new(
            StatusCode::NOT_FOUND,
            format!("Bucket type {name} is not active"),
        ));
    }
    Ok(name.to_string())
}

/// The target of the path, or Riak's answer why there is none.
impl FromRequestParts<AppState> for Target {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Target, Response> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Target::from_path(state, &params).map_err(IntoResponse::into_response)
    }
}

/// `timeout` (milliseconds), or the node's default; longer than
/// `limits.max_timeout_ms` is cut to it.
pub fn timeout(state: &AppState, q: &Params) -> Result<Duration, RiakError> {
    Ok(q.millis_capped("timeout", state.limits.max_timeout_ms)?
        .map_or(state.coord.config().default_timeout, Duration::from_millis))
}

/// When a listing must end: the client's `timeout`, else a minute (capped
/// by `limits.max_timeout_ms`).
pub fn listing_deadline(state: &AppState, q: &Params) -> Result<Instant, RiakError> {
    let t = match q.get("timeout") {
        None => Duration::from_millis(state.limits.max_timeout_ms.min(60_000)),
        Some(_) => timeout(state, q)?,
    };
    Ok(Instant::now() + t)
}

/// Base64 in either alphabet's padding habits: `X-Riak-Vclock` comes back
/// as clients re-encode it.
const PADDED_OR_NOT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, PADDED_OR_NOT);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, PADDED_OR_NOT);

/// The `X-Riak-Vclock` header value of a context: our signed token's bytes
/// in the standard base64 alphabet with padding (what Riak clients decode).
pub fn vclock_header(vv: &VersionVector, key: &ContextKey) -> HeaderValue {
    HeaderValue::from_str(&STANDARD.encode(context_payload(vv, key)))
        .expect("base64 is a valid header value")
}

/// Decodes and verifies an `X-Riak-Vclock` header (standard or URL-safe
/// base64, padded or not). `None`: absent or empty. A refusal is a 400
/// whose plain-text body starts with the code `bad_context`.
pub fn parse_vclock(
    headers: &HeaderMap,
    key: &ContextKey,
) -> Result<Option<VersionVector>, RiakError> {
    let Some(v) = headers.get("x-riak-vclock") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| {
            RiakError::bad_request("bad_context: Invalid X-Riak-Vclock header: not ASCII")
        })?
        .trim();
    if s.is_empty() {
        return Ok(None);
    }
    decode_vclock(s, key).map(Some).map_err(|e| {
        RiakError::bad_request(format!("bad_context: Invalid X-Riak-Vclock header: {e}"))
    })
}

/// Decodes and verifies a context in `X-Riak-Vclock`'s form (also a data
/// type's `"context"`).
pub fn decode_vclock(s: &str, key: &ContextKey) -> Result<VersionVector, ContextError> {
    if s.len() > MAX_CONTEXT_TOKEN_LEN {
        Err(ContextError::TooLong(s.len()))
    } else {
        STANDARD_ANY_PAD
            .decode(s)
            .or_else(|_| URL_SAFE_ANY_PAD.decode(s))
            .map_err(|_| ContextError::NotBase64)
            .and_then(|payload| decode_context_payload(&payload, key))
    }
}

#[cfg(test)]
mod tests {
    use dynkv_vclock::encode_context;

    use super::*;

    #[test]
    fn vclock_headers_use_the_standard_alphabet_and_read_both() {
        let key = ContextKey::new([4; 32]);
        let vv = VersionVector::from_pairs([("n1".to_string(), 300), ("n2".to_string(), 7)]);
        let h = vclock_header(&vv, &key);
        let s = h.to_str().unwrap();
        assert_eq!(s.len() % 4, 0);
        assert!(!s.contains('-') && !s.contains('_'));
        let mut headers = HeaderMap::new();
        headers.insert("x-riak-vclock", h.clone());
        assert_eq!(parse_vclock(&headers, &key).unwrap(), Some(vv.clone()));
        headers.insert(
            "x-riak-vclock",
            HeaderValue::from_str(s.trim_end_matches('=')).unwrap(),
        );
        assert_eq!(parse_vclock(&headers, &key).unwrap(), Some(vv.clone()));
        headers.insert(
            "x-riak-vclock",
            HeaderValue::from_str(&encode_context(&vv, &key)).unwrap(),
        );
        assert_eq!(parse_vclock(&headers, &key).unwrap(), Some(vv.clone()));
        let other = vclock_header(&vv, &ContextKey::new([5; 32]));
        for bad in ["!!", "not base64!", other.to_str().unwrap()] {
            headers.insert("x-riak-vclock", HeaderValue::from_str(bad).unwrap());
            let e = parse_vclock(&headers, &key).unwrap_err();
            assert!(e.body.starts_with("bad_context"), "{bad}: {}", e.body);
        }
        headers.insert("x-riak-vclock", HeaderValue::from_static(" "));
        assert_eq!(parse_vclock(&headers, &key).unwrap(), None);
    }

    #[test]
    fn the_token_and_the_vclock_carry_the_same_bytes() {
        let key = ContextKey::new([4; 32]);
        let vv = VersionVector::from_pairs([("n1".to_string(), 3)]);
        let riak = vclock_header(&vv, &key);
        let token = encode_context(&vv, &key);
        let standard: String = token
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        assert_eq!(riak.to_str().unwrap().trim_end_matches('='), standard);
    }
}
