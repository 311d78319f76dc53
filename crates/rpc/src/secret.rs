//! The cluster secret: the one credential every node of a cluster shares.
//!
//! It never crosses the wire. The internode handshake proves both ends hold
//! it through a key derived from it ([`ClusterSecret::handshake_key`]), and
//! membership commands over HTTP carry a token derived from it
//! ([`ClusterSecret::admin_token`]), so a captured token cannot open an
//! internode connection. Client context tokens are signed with a third
//! derived key ([`ClusterSecret::context_key`]), so every node accepts the
//! tokens any node issued. As Garage's `rpc_secret`, it is at least 32 random
//! bytes, written as hex.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Fewest bytes a secret may have.
pub const MIN_SECRET_BYTES: usize = 32;

/// A cluster secret (kept out of `Debug` output and logs).
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Vec<u8>);

/// Why a secret was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    /// Not hex.
    #[error("the cluster secret must be hex (as `dynkv admin secret` prints it)")]
    NotHex,
    /// Too short to resist guessing.
    #[error(
        "the cluster secret has {0} bytes; it needs at least {MIN_SECRET_BYTES} (64 hex digits)"
    )]
    TooShort(usize),
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret(<{} bytes>)", self.0.len())
    }
}

impl ClusterSecret {
    /// Parses the hex form (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> Result<Self, SecretError> {
        let bytes = hex::decode(s.trim()).map_err(|_| SecretError::NotHex)?;
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(ClusterSecret(bytes))
    }

    /// A new random secret of 32 bytes from the operating system's RNG.
    pub fn generate() -> Self {
        let mut b = vec![0u8; MIN_SECRET_BYTES];
        rand::fill(&mut b[..]);
        ClusterSecret(b)
    }

    /// An ephemeral secret for a single node on loopback that has none: it
    /// can talk to no one, which is all such a node needs.
    pub fn ephemeral() -> Self {
        Self::generate()
    }

    /// The hex form, for `dynkv admin secret` and config files.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label);
        mac.finalize().into_bytes().into()
    }

    /// The pre-shared key of the internode handshake (Noise's psk).
    pub fn handshake_key(&self) -> [u8; 32] {
        self.derive(b"dynkv internode handshake psk v1")
    }

    /// The token membership commands present over HTTP (`X-Dynkv-Token`).
    /// Derived one way from the secret: whoever sees it can run membership
    /// commands on the public listener, but cannot join the internode mesh.
    pub fn admin_token(&self) -> String {
        hex::encode(self.derive(b"dynkv admin token v1"))
    }

    /// The key client context tokens are signed with: the same on every
    /// node of the cluster and across restarts, and unrelated to the other
    /// derived keys (a distinct label), so a token's MAC says nothing
    /// about the handshake key or the admin token.
    pub fn context_key(&self) -> [u8; 32] {
        self.derive(b"dynkv client context mac v1")
    }
}

/// Compares a presented token with the expected one in constant time, so
/// the comparison leaks nothing about the secret through timing.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    presented.len() == expected.len() && bool::from(presented.ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_derive() {
        assert_eq!(ClusterSecret::from_hex("zz"), Err(SecretError::NotHex));
        assert_eq!(
            ClusterSecret::from_hex(&"ab".repeat(31)),
            Err(SecretError::TooShort(31))
        );
        let s = ClusterSecret::generate();
        let again = ClusterSecret::from_hex(&format!(" {}\n", s.to_hex())).unwrap();
        assert_eq!(s, again);
        assert_eq!(s.admin_token(), again.admin_token());
        assert_ne!(
            s.handshake_key().to_vec(),
            hex::decode(s.admin_token()).unwrap()
        );
        assert_eq!(s.context_key(), again.context_key());
        assert_ne!(s.context_key(), s.handshake_key());
        assert_ne!(
            s.context_key().to_vec(),
            hex::decode(s.admin_token()).unwrap()
        );
        assert_ne!(s, ClusterSecret::generate());
        assert!(!format!("{s:?}").contains(&s.to_hex()));
    }
}
