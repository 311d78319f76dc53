//! The opaque context token a client carries between a read and a write.
//!
//! It is the reader's [`VersionVector`], encoded as
//! `base64url(version byte || postcard(pairs))` without padding. Clients must
//! treat it as opaque; the version byte lets the server change the layout
//! later while still accepting old tokens.
//!
//! Tokens come from the network, so decoding is total: anything malformed,
//! truncated, oversized or of an unknown version is an error, never a panic.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::dvvset::VersionVector;

/// Leading byte of a version-1 token payload.
pub const CONTEXT_FORMAT_V1: u8 = 1;

/// Longest token accepted, in characters. A vector has one entry per
/// coordinating node, so real tokens are far shorter; the cap stops a client
/// from making the server decode megabytes.
pub const MAX_CONTEXT_TOKEN_LEN: usize = 8 * 1024;

/// Longest actor id accepted inside a token.
pub const MAX_ACTOR_LEN: usize = 255;

/// Why a context token was refused. Each maps to a 400 with this sentence.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    /// Longer than [`MAX_CONTEXT_TOKEN_LEN`].
    #[error("context token is {0} characters long, more than the {MAX_CONTEXT_TOKEN_LEN} allowed")]
    TooLong(usize),
    /// Not base64url.
    #[error("context token is not base64url")]
    NotBase64,
    /// Decodes to nothing.
    #[error("context token is empty")]
    Empty,
    /// Written by a newer server or forged.
    #[error("context token has unknown format version {0}")]
    UnknownVersion(u8),
    /// Truncated or otherwise not a version vector.
    #[error("context token is corrupt")]
    Corrupt,
    /// Holds an absurd actor id.
    #[error("context token names an actor longer than {MAX_ACTOR_LEN} bytes")]
    ActorTooLong,
}

/// Encodes a version vector as an opaque token.
pub fn encode_context(vv: &VersionVector) -> String {
    URL_SAFE_NO_PAD.encode(context_payload(vv))
}

/// The bytes a token encodes: a version byte and the vector. Protocols
/// that carry the token in another alphabet (Riak's `X-Riak-Vclock` is
/// standard base64) encode these.
pub fn context_payload(vv: &VersionVector) -> Vec<u8> {
    let mut payload = vec![CONTEXT_FORMAT_V1];
    postcard::to_io(vv.entries(), &mut payload).expect("writing to a Vec cannot fail");
    payload
}

/// Decodes a token made by [`encode_context`].
pub fn decode_context(token: &str) -> Result<VersionVector, ContextError> {
    let token = token.trim();
    if token.len() > MAX_CONTEXT_TOKEN_LEN {
        return Err(ContextError::TooLong(token.len()));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| ContextError::NotBase64)?;
    decode_context_payload(&payload)
}

/// Decodes the bytes of a token ([`context_payload`]).
pub fn decode_context_payload(payload: &[u8]) -> Result<VersionVector, ContextError> {
    let (&version, body) = payload.split_first().ok_or(ContextError::Empty)?;
    if version != CONTEXT_FORMAT_V1 {
        return Err(ContextError::UnknownVersion(version));
    }
    let (pairs, rest): (Vec<(String, u64)>, &[u8]) =
        postcard::take_from_bytes(body).map_err(|_| ContextError::Corrupt)?;
    if !rest.is_empty() {
        return Err(ContextError::Corrupt);
    }
    if pairs.iter().any(|(a, _)| a.len() > MAX_ACTOR_LEN) {
        return Err(ContextError::ActorTooLong);
    }
    Ok(VersionVector::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let vv = VersionVector::from_pairs([("n1".to_string(), 3), ("n2".to_string(), 7)]);
        assert_eq!(decode_context(&encode_context(&vv)).unwrap(), vv);
        let empty = VersionVector::new();
        assert_eq!(decode_context(&encode_context(&empty)).unwrap(), empty);
    }

    #[test]
    fn rejects_bad_tokens() {
        assert_eq!(decode_context("!!!"), Err(ContextError::NotBase64));
        assert_eq!(decode_context(""), Err(ContextError::Empty));
        assert_eq!(decode_context("Ag"), Err(ContextError::UnknownVersion(2)));
        let good = encode_context(&VersionVector::from_pairs([("n1".to_string(), 300)]));
        let truncated = &good[..good.len() - 2];
        assert!(decode_context(truncated).is_err());
        let long = "A".repeat(MAX_CONTEXT_TOKEN_LEN + 1);
        assert!(matches!(
            decode_context(&long),
            Err(ContextError::TooLong(_))
        ));
        let mut trailing = vec![CONTEXT_FORMAT_V1];
        postcard::to_io(&Vec::<(String, u64)>::new(), &mut trailing).unwrap();
        trailing.push(9);
        assert_eq!(
            decode_context(&URL_SAFE_NO_PAD.encode(trailing)),
            Err(ContextError::Corrupt)
        );
    }
}
