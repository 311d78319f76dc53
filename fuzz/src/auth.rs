//! The `Authorization` header parser (`Basic` and `Bearer`), which every
//! request reaches before anything else once security is on.

use dynkv_security::credentials::{MAX_AUTHORIZATION_BYTES, basic_header};
use dynkv_security::{Credentials, parse_authorization};

/// Any bytes as an `Authorization` value: parsing never panics, refuses
/// what is too long, and what parses as Basic re-encodes to credentials
/// that parse the same.
pub fn auth_header(data: &[u8]) {
    let Ok(c) = parse_authorization(data) else {
        return;
    };
    assert!(
        data.len() <= MAX_AUTHORIZATION_BYTES,
        "an over-long header parsed"
    );
    match &c {
        Credentials::Basic { user, password } => {
            assert!(!user.contains(':'), "the user name ends at the first colon");
            let again = parse_authorization(basic_header(user, password).as_bytes())
                .expect("re-encoded Basic credentials parse");
            assert!(again == c, "Basic round trip");
        }
        Credentials::Bearer(t) => {
            assert!(!t.is_empty() && t.is_ascii(), "a bearer token is token68");
            let again = parse_authorization(format!("Bearer {t}").as_bytes())
                .expect("a parsed token parses again");
            assert!(again == c, "Bearer round trip");
        }
    }
}
