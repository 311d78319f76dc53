//! The small codecs of HTTP both protocols speak, each a thin wrapper over
//! a well-kept crate: URL components as Riak clients quote them
//! (`percent-encoding`), RFC 1123 dates (`httpdate`), media types
//! (`mime`), entity-tag lists, and base62 identifiers (`base62`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};

/// What Python's `quote_plus` (which Riak clients use) leaves as it is:
/// ASCII letters and digits and `_.-~`; everything else is `%XX`, except
/// the space, which [`quote_plus`] writes as `+`.
const QUOTED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// Encodes bytes as a URL component the way Riak clients do (Python's
/// `quote_plus`): letters, digits and `_.-~` stay, a space is `+`, every
/// other byte is `%XX` (upper-case hex).
pub fn quote_plus(b: &[u8]) -> String {
    percent_encode(b, QUOTED)
        .map(|chunk| if chunk == "%20" { "+" } else { chunk })
        .collect()
}

/// Decodes a URL component as Riak (mochiweb) does: `+` is a space, then
/// `%XX` is a byte; a malformed escape is kept literally.
pub fn unquote_plus(s: &str) -> Vec<u8> {
    let spaced = s.replace('+', " ");
    percent_decode(spaced.as_bytes()).collect()
}

/// Latest second an HTTP date can show (the end of year 9999).
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// Formats seconds since the Unix epoch as an RFC 1123 date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`); later than year 9999 reads as its
/// last second.
pub fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs.min(LAST_HTTP_DATE)))
}

/// Parses an HTTP date into seconds since the Unix epoch (`None` for
/// anything else: a conditional header we cannot read is ignored, as HTTP
/// says).
pub fn parse_http_date(s: &str) -> Option<u64> {
    let t: SystemTime = httpdate::parse_http_date(s).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Whether an `If-Match` / `If-None-Match` value names `tag`: `*`, or a
/// comma-separated list of entity tags, strong (`"t"`) or weak (`W/"t"`),
/// compared weakly; bare tokens are accepted as the tag itself.
pub fn etag_matches(list: &str, tag: &str) -> bool {
    list.split(',').map(str::trim).any(|e| {
        e == "*" || {
            let opaque = e.strip_prefix("W/").unwrap_or(e);
            opaque.strip_prefix('"').and_then(|o| o.strip_suffix('"')) == Some(tag) || opaque == tag
        }
    })
}

/// Reads a `Content-Type` as it is stored: the media type and its
/// `charset` when it has one (`type/subtype; charset=cs`), spelled as the
/// client spelled them (`mime` checks the syntax but lower-cases what it
/// reads); `None` when it is not a media type.
pub fn media_type_and_charset(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let m: mime::Mime = raw.parse().ok()?;
    if m.subtype().as_str().is_empty() {
        return None;
    }
    let mut parts = raw.split(';').map(str::trim);
    let media = parts.next()?;
    if m.get_param(mime::CHARSET).is_none() {
        return Some(media.to_string());
    }
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"'))
        .filter(|v| !v.is_empty());
    Some(match charset {
        Some(cs) => format!("{media}; charset={cs}"),
        None => media.to_string(),
    })
}

/// `v` in base62 (`0-9A-Za-z`), 11 digits wide: how Riak-style vtags name
/// a 64-bit digest.
pub fn base62_u64(v: u64) -> String {
    format!("{:0>11}", base62::encode_fmt(v))
}

/// A random identifier of 22 base62 digits (128 bits), like Riak's
/// `unique_id_62`: server-chosen keys and multipart boundaries.
pub fn random_id() -> String {
    format!("{:0>22}", base62::encode_fmt(rand::random::<u128>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_components_round_trip_like_riak() {
        assert_eq!(unquote_plus("a+b%20c%2Fd"), b"a b c/d");
        assert_eq!(unquote_plus("f%C3%B8%C3%B8"), "føø".as_bytes());
        assert_eq!(unquote_plus("100%"), b"100%");
        assert_eq!(unquote_plus("%zz%4"), b"%zz%4");
        assert_eq!(unquote_plus("%2B+"), b"+ ");
        assert_eq!(quote_plus("a b/ø".as_bytes()), "a+b%2F%C3%B8");
        assert_eq!(
            quote_plus(b"Az09_.-~*'()!%+"),
            "Az09_.-~%2A%27%28%29%21%25%2B"
        );
        assert_eq!(quote_plus(b"\x00\xff "), "%00%FF+");
        for s in ["plain", "with space", "s/l/a/s/h", "ünï", "%+&=", "%20"] {
            assert_eq!(unquote_plus(&quote_plus(s.as_bytes())), s.as_bytes());
        }
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date(" Sun, 06 Nov 1994 08:49:37 GMT "),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("garbage"), None);
        assert_eq!(
            parse_http_date("Sun, 06 Nov 99999999999999999 08:49:37 GMT"),
            None
        );
        assert_eq!(parse_http_date("Sun, 06 Nov -5 08:49:37 GMT"), None);
        let mut t = 0u64;
        while t < 8_000_000_000 {
            assert_eq!(parse_http_date(&http_date(t)), Some(t), "{t}");
            t += 86_400 * 37 + 3_599;
        }
    }

    #[test]
    fn entity_tag_lists() {
        assert!(etag_matches("*", "abc"));
        assert!(etag_matches("\"abc\"", "abc"));
        assert!(etag_matches("W/\"abc\"", "abc"));
        assert!(etag_matches("\"x\", \"abc\"", "abc"));
        assert!(etag_matches("abc", "abc"));
        assert!(!etag_matches("\"abcd\"", "abc"));
        assert!(!etag_matches("\"x\", W/\"y\"", "abc"));
        assert!(!etag_matches("", "abc"));
    }

    #[test]
    fn media_types_keep_the_charset_only() {
        assert_eq!(
            media_type_and_charset("application/json; charset=\"UTF-8\"; q=1").as_deref(),
            Some("application/json; charset=UTF-8")
        );
        assert_eq!(
            media_type_and_charset("Text/Plain;CharSet=Latin1").as_deref(),
            Some("Text/Plain; charset=Latin1")
        );
        assert_eq!(
            media_type_and_charset("text/plain").as_deref(),
            Some("text/plain")
        );
        assert_eq!(
            media_type_and_charset("image/svg+xml; x=y").as_deref(),
            Some("image/svg+xml")
        );
        for bad in ["nonsense", "a/", "/b", "a/b/c", ""] {
            assert_eq!(media_type_and_charset(bad), None, "{bad}");
        }
    }

    #[test]
    fn base62_identifiers() {
        assert_eq!(base62_u64(0), "00000000000");
        assert_eq!(base62_u64(61), "0000000000z");
        assert_eq!(base62_u64(u64::MAX), "LygHa16AHYF");
        let id = random_id();
        assert_eq!(id.len(), 22);
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(id, random_id());
    }
}
