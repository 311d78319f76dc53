//! How a set of siblings is shown to a client: JSON or `multipart/mixed`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dynkv_vclock::{Content, Object, encode_context};
use serde::Serialize;

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
        match std::str::from_utf8(&c.value) {
            Ok(s) => SiblingJson {
                value: s.to_string(),
                encoding: "utf8",
                content_type: c.content_type.clone(),
                deleted: c.deleted,
            },
            Err(_) => SiblingJson {
                value: STANDARD.encode(&c.value),
                encoding: "base64",
                content_type: c.content_type.clone(),
                deleted: c.deleted,
            },
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
    /// The JSON view of an object (`None`: nothing stored).
    pub fn of(object: Option<&Object>) -> Self {
        match object {
            Some(o) => SiblingsJson {
                context: encode_context(&o.join()),
                siblings: o.values().into_iter().map(SiblingJson::from).collect(),
            },
            None => SiblingsJson {
                context: encode_context(&Default::default()),
                siblings: Vec::new(),
            },
        }
    }
}

/// Renders siblings as a `multipart/mixed` body; returns (boundary, body).
/// Tombstones are parts with an empty body and `X-Dynkv-Deleted: true`.
pub fn multipart(object: &Object) -> (String, Vec<u8>) {
    let boundary = format!("dynkv{:016x}", rand::random::<u64>());
    let mut body = Vec::new();
    for c in object.values() {
        body.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        let ct = if c.content_type.is_empty() {
            "application/octet-stream"
        } else {
            &c.content_type
        };
        body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        if c.deleted {
            body.extend_from_slice(b"X-Dynkv-Deleted: true\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(&c.value);
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (boundary, body)
}
