//! Secrets at rest: passwords as argon2id PHC strings (the `argon2` crate,
//! RustCrypto), bearer tokens as SHA-256 digests. Neither is ever stored in
//! clear. The caller supplies randomness (salts, token bytes), which keeps
//! this crate free of I/O and deterministic under test.

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use base64::Engine;
use sha2::{Digest, Sha256};

/// Prefix of every bearer token, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "dkv_";

/// Hashes `password` with argon2id (the crate's default parameters:
/// 19 MiB, 2 passes, as OWASP recommends) and a 16-byte `salt` the caller
/// drew at random; returns the PHC string.
pub fn hash_password(password: &str, salt: [u8; 16]) -> String {
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt length");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string()
}

/// Whether `password` matches the PHC string `phc` (constant time in the
/// comparison; slow by design). A malformed PHC string matches nothing.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A bearer token made of 32 random bytes the caller drew.
pub fn new_token(random: [u8; 32]) -> String {
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
    )
}

/// The stored form of a token: hex SHA-256. Tokens carry 256 random bits,
/// so a fast hash is enough (no dictionary to guess from).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let phc = hash_password("correct horse", [7; 16]);
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password(&phc, "correct horse"));
        assert!(!verify_password(&phc, "correct horse "));
        assert!(!verify_password("not a phc string", "x"));
        assert_ne!(phc, hash_password("correct horse", [8; 16]), "salted");
    }

    #[test]
    fn tokens_look_like_tokens() {
        let t = new_token([1; 32]);
        assert!(t.starts_with(TOKEN_PREFIX));
        assert!(crate::parse_authorization(format!("Bearer {t}").as_bytes()).is_ok());
        assert_eq!(token_hash(&t).len(), 64);
        assert_ne!(token_hash(&t), token_hash(&new_token([2; 32])));
    }
}
