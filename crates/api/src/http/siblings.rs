//! How siblings are shown, for both protocols: one renderer, framed as the
//! protocol asks. `/kv` shows them as JSON (`Accept: application/json`) or
//! `multipart/mixed`; the Riak API as `multipart/mixed` with its own part
//! headers. Also what both need to know about a sibling: the Content-Type
//! it is shown with, and which one is the newest (last-write-wins).

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynkv_vclock::{Content, ContextKey, Object, encode_context};
use serde::Serialize;

use super::codec::random_id;

/// The Content-Type of a value stored without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The Content-Type a sibling is shown with.
pub fn content_type(c: &Content) -> &str {
    if c.content_type.is_empty() {
        DEFAULT_CONTENT_TYPE
    } else {
        &c.content_type
    }
}

/// The newest sibling by timestamp, ties broken by content digest so that
/// every node picks the same one: how buckets without siblings, and
/// bucket properties, resolve concurrent versions.
pub fn newest(o: &Object) -> Option<&Content> {
    o.values()
        .into_iter()
        .max_by_key(|c| (c.modified_micros, Object::from_value((*c).clone()).digest()))
}

/// One sibling in the JSON shape of DESIGN.md §4.
#[derive(Serialize)]
pub struct SiblingJson {
    /// The value, as UTF-8 text when it is valid UTF-8, else base64.
    pub value: String,
    /// "utf8" or "base64".
    pub encoding: &'static str,
    /// The stored Content-Type.
    pub content_type: String,
    /// True for a tombstone.
    pub deleted: bool,
}

impl From<&Content> for SiblingJson {
    fn from(c: &Content) -> Self {
        let (value, encoding) = match std::str::from_utf8(&c.value) {
            Ok(s) => (s.to_string(), "utf8"),
            Err(_) => (STANDARD.encode(&c.value), "base64"),
        };
        SiblingJson {
            value,
            encoding,
            content_type: c.content_type.clone(),
            deleted: c.deleted,
        }
    }
}

/// `{"context", "siblings": [...]}`.
#[derive(Serialize)]
pub struct SiblingsJson {
    /// Opaque context token.
    pub context: String,
    /// Every sibling, tombstones included.
    pub siblings: Vec<SiblingJson>,
}

impl SiblingsJson {
    /// The JSON view of an object (`None`: nothing stored), its context
    /// signed with `key`.
    pub fn of(object: Option<&Object>, key: &ContextKey) -> Self {
        Self::shown(object, &object.map(|o| o.values()).unwrap_or_default(), key)
    }

    /// The JSON view of `shown`, siblings of `object`, with its context.
    fn shown(object: Option<&Object>, shown: &[&Content], key: &ContextKey) -> Self {
        SiblingsJson {
            context: encode_context(&object.map(|o| o.join()).unwrap_or_default(), key),
            siblings: shown.iter().map(|c| SiblingJson::from(*c)).collect(),
        }
    }
}

/// How a set of siblings is framed in a body.
pub enum Framing<'a> {
    /// `{"context", "siblings": [...]}` ([`SiblingsJson`]), the context
    /// signed with this key.
    Json(&'a ContextKey),
    /// `multipart/mixed`: before every sibling `\r\n--B\r\n`, its
    /// `Content-Type`, the headers this writes for it (each ending in
    /// `\r\n`), a blank line and the value; after the last
    /// `\r\n--B--\r\n`, as Riak frames it.
    Multipart(&'a dyn Fn(&Content, &mut String)),
}

/// Renders `shown` (siblings of `object`) as `framing` says, with `status`
/// (200 for a write's answer, 300 for a read's); the answer's
/// `Content-Type` names the framing.
pub fn render(
    status: StatusCode,
    object: &Object,
    shown: &[&Content],
    framing: Framing,
) -> Response {
    let (content_type, body) = match framing {
        Framing::Json(key) => {
            let json = SiblingsJson::shown(Some(object), shown, key);
            let body = serde_json::to_vec(&json).expect("JSON of strings and booleans");
            (HeaderValue::from_static("application/json"), body)
        }
        Framing::Multipart(part_headers) => {
            let boundary = random_id();
            let mut body = Vec::new();
            for c in shown {
                let mut head = format!("\r\n--{boundary}\r\nContent-Type: {}\r\n", content_type(c));
                part_headers(c, &mut head);
                head.push_str("\r\n");
                body.extend_from_slice(head.as_bytes());
                body.extend_from_slice(&c.value);
            }
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let ct = format!("multipart/mixed; boundary={boundary}");
            (HeaderValue::from_str(&ct).expect("base62 boundary"), body)
        }
    };
    let mut r = (status, Body::from(body)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, content_type);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn multipart_frames_every_sibling_with_its_headers() {
        let a = Content::value("one", "text/plain", 1);
        let b = Content::tombstone(2);
        let o = Object::from_value(a.clone());
        let mark = |c: &Content, h: &mut String| {
            if c.deleted {
                h.push_str("X-Deleted: true\r\n");
            }
        };
        let r = render(
            StatusCode::MULTIPLE_CHOICES,
            &o,
            &[&a, &b],
            Framing::Multipart(&mark),
        );
        assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
        let ct = r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let boundary = ct
            .strip_prefix("multipart/mixed; boundary=")
            .unwrap()
            .to_string();
        let body = body_of(r).await;
        assert_eq!(
            body,
            format!(
                "\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\none\
                 \r\n--{boundary}\r\nContent-Type: {DEFAULT_CONTENT_TYPE}\r\nX-Deleted: true\r\n\r\n\
                 \r\n--{boundary}--\r\n"
            )
        );
    }

    #[tokio::test]
    async fn json_shows_text_and_binary_values() {
        let a = Content::value("one", "text/plain", 1);
        let b = Content::value(vec![0xff, 0x00], "", 2);
        let o = Object::from_value(a.clone());
        let key = ContextKey::new([1; 32]);
        let r = render(StatusCode::OK, &o, &[&a, &b], Framing::Json(&key));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_str(&body_of(r).await).unwrap();
        assert_eq!(v["siblings"][0]["value"], "one");
        assert_eq!(v["siblings"][0]["encoding"], "utf8");
        assert_eq!(v["siblings"][1]["value"], "/wA=");
        assert_eq!(v["siblings"][1]["encoding"], "base64");
        assert_eq!(v["context"], encode_context(&o.join(), &key));
    }
}
