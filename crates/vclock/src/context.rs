//! The opaque context token a client carries between a read and a write.
//!
//! It is the reader's [`VersionVector`], signed by the cluster and encoded
//! as `base64url(version byte || postcard(pairs) || mac)` without padding,
//! where `mac` is the first [`CONTEXT_MAC_LEN`] bytes of
//! HMAC-SHA256 over the version byte and the vector, under a
//! [`ContextKey`] every node of a cluster derives from the cluster secret.
//! Clients must treat it as opaque; the version byte lets the server change
//! the layout later.
//!
//! Why signed: a context is merged into the stored clock by the write it
//! comes with, so a client able to forge one could plant any counters and
//! any number of made-up actor ids in a key's history for good. With the
//! MAC only the cluster can mint tokens: a forged, altered or truncated
//! token is refused before anything is decoded from it, and the tag is
//! compared in constant time. Version-1 tokens (unsigned, from earlier
//! releases) are refused with a sentence saying to read the key again.
//!
//! Tokens come from the network, so decoding is total: anything malformed,
//! truncated, oversized, unsigned or of an unknown version is an error,
//! never a panic. This module does no I/O: the key is passed in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::dvvset::VersionVector;

/// Leading byte of a version-1 token payload: unsigned, no longer accepted.
pub const CONTEXT_FORMAT_V1: u8 = 1;

/// Leading byte of a version-2 token payload: the vector and a MAC.
pub const CONTEXT_FORMAT_V2: u8 = 2;

/// Bytes of the MAC a token carries (HMAC-SHA256 truncated; 128 bits is
/// beyond any online guessing).
pub const CONTEXT_MAC_LEN: usize = 16;

/// Longest token accepted, in characters. A vector has one entry per
/// coordinating node, so real tokens are far shorter; the cap stops a client
/// from making the server decode megabytes.
pub const MAX_CONTEXT_TOKEN_LEN: usize = 8 * 1024;

/// Longest actor id accepted inside a token.
pub const MAX_ACTOR_LEN: usize = 255;

/// The key context tokens are signed with. Every node of a cluster holds
/// the same one (derived from the cluster secret), so a token issued by
/// one node is accepted by all, across restarts. Kept out of `Debug`.
#[derive(Clone)]
pub struct ContextKey([u8; 32]);

impl ContextKey {
    /// Wraps 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        ContextKey(bytes)
    }

    /// A key for another kind of token, derived from this one, so that a
    /// token of one kind (an object's context, a data type's) is refused
    /// as the other although the cluster signed both.
    pub fn derive(&self, purpose: &str) -> ContextKey {
        let tag = self.mac(purpose.as_bytes()).finalize().into_bytes();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&tag);
        ContextKey(bytes)
    }

    fn mac(&self, signed: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(signed);
        mac
    }
}

impl std::fmt::Debug for ContextKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextKey(<secret>)")
    }
}

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
    /// An unsigned token of an earlier release.
    #[error(
        "context token is unsigned: context tokens are now signed by the cluster, so read the key again and use the new context"
    )]
    Unsigned,
    /// Written by a newer server or forged.
    #[error("context token has unknown format version {0}")]
    UnknownVersion(u8),
    /// The MAC does not match: not issued by this cluster, or altered.
    #[error("context token was not issued by this cluster or was altered")]
    BadSignature,
    /// Truncated or otherwise not a version vector.
    #[error("context token is corrupt")]
    Corrupt,
    /// Holds an absurd actor id.
    #[error("context token names an actor longer than {MAX_ACTOR_LEN} bytes")]
    ActorTooLong,
}

/// Encodes a version vector as an opaque token signed with `key`.
pub fn encode_context(vv: &VersionVector, key: &ContextKey) -> String {
    URL_SAFE_NO_PAD.encode(context_payload(vv, key))
}

/// The bytes a token encodes: a version byte, the vector and the MAC.
/// Protocols that carry the token in another alphabet (Riak's
/// `X-Riak-Vclock` is standard base64) encode these.
pub fn context_payload(vv: &VersionVector, key: &ContextKey) -> Vec<u8> {
    let mut payload = vec![CONTEXT_FORMAT_V2];
    postcard::to_io(vv.entries(), &mut payload).expect("writing to a Vec cannot fail");
    let tag = key.mac(&payload).finalize().into_bytes();
    payload.extend_from_slice(&tag[..CONTEXT_MAC_LEN]);
    payload
}

/// Decodes and verifies a token made by [`encode_context`].
pub fn decode_context(token: &str, key: &ContextKey) -> Result<VersionVector, ContextError> {
    decode_context_payload(&token_bytes(token)?, key)
}

/// Decodes and verifies the bytes of a token ([`context_payload`]): the
/// MAC is checked (in constant time) before the vector is parsed.
pub fn decode_context_payload(
    payload: &[u8],
    key: &ContextKey,
) -> Result<VersionVector, ContextError> {
    let body = signed_part(payload)?;
    let (signed, tag) = payload.split_at(payload.len() - CONTEXT_MAC_LEN);
    key.mac(signed)
        .verify_truncated_left(tag)
        .map_err(|_| ContextError::BadSignature)?;
    parse_vector(body)
}

/// Reads the vector of a token **without verifying its MAC**. Only for
/// observers that hold no key and act on nothing (the history checker
/// reading the tokens a cluster answered); a server never uses it.
pub fn inspect_context(token: &str) -> Result<VersionVector, ContextError> {
    let payload = token_bytes(token)?;
    parse_vector(signed_part(&payload)?)
}

/// The payload bytes of a token string, length-capped.
fn token_bytes(token: &str) -> Result<Vec<u8>, ContextError> {
    let token = token.trim();
    if token.len() > MAX_CONTEXT_TOKEN_LEN {
        return Err(ContextError::TooLong(token.len()));
    }
    URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| ContextError::NotBase64)
}

/// The postcard body of a version-2 payload (between the version byte and
/// the MAC).
fn signed_part(payload: &[u8]) -> Result<&[u8], ContextError> {
    let (&version, rest) = payload.split_first().ok_or(ContextError::Empty)?;
    match version {
        CONTEXT_FORMAT_V2 => {}
        CONTEXT_FORMAT_V1 => return Err(ContextError::Unsigned),
        v => return Err(ContextError::UnknownVersion(v)),
    }
    if rest.len() < CONTEXT_MAC_LEN {
        return Err(ContextError::Corrupt);
    }
    Ok(&rest[..rest.len() - CONTEXT_MAC_LEN])
}

fn parse_vector(body: &[u8]) -> Result<VersionVector, ContextError> {
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

    fn key() -> ContextKey {
        ContextKey::new([7; 32])
    }

    #[test]
    fn derived_keys_separate_kinds_of_tokens() {
        let vv = VersionVector::from_pairs([("n1".to_string(), 3)]);
        let dt = key().derive("data type");
        let token = encode_context(&vv, &dt);
        assert_eq!(decode_context(&token, &dt).unwrap(), vv);
        assert_eq!(
            decode_context(&token, &key()),
            Err(ContextError::BadSignature)
        );
        let object = encode_context(&vv, &key());
        assert_eq!(
            decode_context(&object, &dt),
            Err(ContextError::BadSignature)
        );
        // Deterministic: every node derives the same key.
        let again = encode_context(&vv, &key().derive("data type"));
        assert_eq!(again, token);
    }

    #[test]
    fn round_trip() {
        let vv = VersionVector::from_pairs([("n1".to_string(), 3), ("n2".to_string(), 7)]);
        assert_eq!(
            decode_context(&encode_context(&vv, &key()), &key()).unwrap(),
            vv
        );
        assert_eq!(inspect_context(&encode_context(&vv, &key())).unwrap(), vv);
        let empty = VersionVector::new();
        assert_eq!(
            decode_context(&encode_context(&empty, &key()), &key()).unwrap(),
            empty
        );
    }

    #[test]
    fn rejects_bad_tokens() {
        let k = key();
        assert_eq!(decode_context("!!!", &k), Err(ContextError::NotBase64));
        assert_eq!(decode_context("", &k), Err(ContextError::Empty));
        assert_eq!(
            decode_context("Aw", &k),
            Err(ContextError::UnknownVersion(3))
        );
        assert_eq!(decode_context("Ag", &k), Err(ContextError::Corrupt));
        let vv = VersionVector::from_pairs([("n1".to_string(), 300)]);
        let good = encode_context(&vv, &k);
        let truncated = &good[..good.len() - 2];
        assert!(decode_context(truncated, &k).is_err());
        let long = "A".repeat(MAX_CONTEXT_TOKEN_LEN + 1);
        assert!(matches!(
            decode_context(&long, &k),
            Err(ContextError::TooLong(_))
        ));
        // Another cluster's token.
        let other = encode_context(&vv, &ContextKey::new([8; 32]));
        assert_eq!(decode_context(&other, &k), Err(ContextError::BadSignature));
        // An unsigned token of the earlier format.
        let mut v1 = vec![CONTEXT_FORMAT_V1];
        postcard::to_io(vv.entries(), &mut v1).unwrap();
        let v1 = URL_SAFE_NO_PAD.encode(v1);
        assert_eq!(decode_context(&v1, &k), Err(ContextError::Unsigned));
        assert!(
            ContextError::Unsigned
                .to_string()
                .contains("read the key again")
        );
        // Trailing bytes inside a correctly signed payload.
        let mut trailing = vec![CONTEXT_FORMAT_V2];
        postcard::to_io(&Vec::<(String, u64)>::new(), &mut trailing).unwrap();
        trailing.push(9);
        let tag = k.mac(&trailing).finalize().into_bytes();
        trailing.extend_from_slice(&tag[..CONTEXT_MAC_LEN]);
        assert_eq!(
            decode_context(&URL_SAFE_NO_PAD.encode(trailing), &k),
            Err(ContextError::Corrupt)
        );
        assert!(!format!("{k:?}").contains('7'));
    }
}
