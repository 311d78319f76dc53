//! What requests take and answers give: contexts, options, siblings.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde::Deserialize;

/// The causal context of a key: an opaque token the server signed. A read
/// gives one; a write that carries it replaces exactly the versions it has
/// seen. Cheap to clone (it shares its bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct Context(pub(crate) HeaderValue);

impl Context {
    /// A context from its text form (as printed by `dynkv get`); `None`
    /// when it cannot be a header value. The server checks its signature.
    pub fn from_token(token: &str) -> Option<Context> {
        let t = token.trim();
        if t.is_empty() {
            return None;
        }
        HeaderValue::from_str(t).ok().map(Context)
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }

    /// The token as the header value it travels in.
    pub fn header(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Context({})", self.as_str())
    }
}

/// How many replicas must answer a read (R) or acknowledge a write (W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// One replica.
    One,
    /// A majority of N.
    Quorum,
    /// All N.
    All,
    /// This many (1..=N).
    N(u8),
}

impl Quorum {
    /// Parses `one`, `quorum`, `all` or a number.
    pub fn parse(s: &str) -> Option<Quorum> {
        match s {
            "one" => Some(Quorum::One),
            "quorum" => Some(Quorum::Quorum),
            "all" => Some(Quorum::All),
            n => n.parse().ok().filter(|n| *n > 0).map(Quorum::N),
        }
    }
}

impl fmt::Display for Quorum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quorum::One => f.write_str("one"),
            Quorum::Quorum => f.write_str("quorum"),
            Quorum::All => f.write_str("all"),
            Quorum::N(n) => write!(f, "{n}"),
        }
    }
}

/// Per-read settings; unset fields take the server's defaults.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Replies needed (`?r=`).
    pub r: Option<Quorum>,
    /// `false`: count only primary replicas (`?sloppy=false`).
    pub sloppy: Option<bool>,
    /// The server's deadline (`?timeout_ms=`); the client waits a little
    /// longer for its answer.
    pub timeout: Option<Duration>,
    /// Answer only with a state that includes this context (a session
    /// read), instead of the client's own last context of the key.
    pub after: Option<Context>,
}

/// Per-write settings; unset fields take the server's (or the client's) defaults.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// Acknowledgements needed (`?w=`).
    pub w: Option<Quorum>,
    /// `false`: count only primary replicas (`?sloppy=false`).
    pub sloppy: Option<bool>,
    /// The server's deadline (`?timeout_ms=`).
    pub timeout: Option<Duration>,
    /// Content-Type stored with the value (default: the client's).
    pub content_type: Option<String>,
}

pub(crate) fn query(
    q: Option<(&str, Quorum)>,
    sloppy: Option<bool>,
    timeout: Option<Duration>,
) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let sep = |s: &mut String| s.push(if s.is_empty() { '?' } else { '&' });
    if let Some((name, q)) = q {
        sep(&mut s);
        let _ = write!(s, "{name}={q}");
    }
    if let Some(b) = sloppy {
        sep(&mut s);
        let _ = write!(s, "sloppy={b}");
    }
    if let Some(t) = timeout {
        sep(&mut s);
        let _ = write!(s, "timeout_ms={}", t.as_millis().max(1));
    }
    s
}

/// One version of a key's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sibling {
    /// The value's bytes (empty for a tombstone).
    pub value: Bytes,
    /// Its stored Content-Type.
    pub content_type: String,
    /// Whether this version is a delete.
    pub deleted: bool,
}

/// The server's sibling JSON (`Accept: application/json`).
#[derive(Deserialize)]
pub(crate) struct SiblingsJson {
    pub siblings: Vec<SiblingJson>,
}

#[derive(Deserialize)]
pub(crate) struct SiblingJson {
    #[serde(default)]
    value: String,
    #[serde(default)]
    encoding: String,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    deleted: bool,
}

impl SiblingJson {
    pub(crate) fn into_sibling(self) -> Result<Sibling, String> {
        let value = if self.encoding == "base64" {
            base64::engine::general_purpose::STANDARD
                .decode(self.value.as_bytes())
                .map_err(|e| format!("a base64 sibling does not decode: {e}"))?
                .into()
        } else {
            Bytes::from(self.value)
        };
        Ok(Sibling {
            value,
            content_type: self.content_type,
            deleted: self.deleted,
        })
    }
}

/// The `X-Dynkv-Replicas` report of an answer: how many replicas the
/// coordinator asked, how many answered, how many it repaired, and how
/// many answers came from fallbacks (sloppy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaReport {
    /// Replicas asked.
    pub asked: u32,
    /// Replicas that answered in time.
    pub answered: u32,
    /// Replicas read-repaired.
    pub repaired: u32,
    /// Answers from fallback nodes.
    pub sloppy: u32,
}

impl ReplicaReport {
    /// Parses `asked=A answered=B repaired=C sloppy=D` (fields in any
    /// order, unknown ones ignored).
    pub fn parse(s: &str) -> Option<ReplicaReport> {
        let mut r = ReplicaReport::default();
        let mut any = false;
        for part in s.split_whitespace() {
            let (k, v) = part.split_once('=')?;
            let v: u32 = v.parse().ok()?;
            match k {
                "asked" => r.asked = v,
                "answered" => r.answered = v,
                "repaired" => r.repaired = v,
                "sloppy" => r.sloppy = v,
                _ => continue,
            }
            any = true;
        }
        any.then_some(r)
    }
}

impl fmt::Display for ReplicaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "asked={} answered={} repaired={} sloppy={}",
            self.asked, self.answered, self.repaired, self.sloppy
        )
    }
}

/// What a read found.
#[derive(Clone, Debug)]
pub struct Fetched {
    /// 200 (one value), 300 (siblings) or 404 (nothing, or only deletes).
    pub status: StatusCode,
    /// Every version, tombstones included (empty on 404).
    pub siblings: Vec<Sibling>,
    /// The key's context: give it to the next write of the key.
    pub context: Option<Context>,
    /// Base URL of the node that answered.
    pub node: String,
    /// `X-Dynkv-Replicas`, when the server sent it.
    pub replicas: Option<ReplicaReport>,
}

impl Fetched {
    /// Whether the key holds a live value.
    pub fn is_found(&self) -> bool {
        self.live().next().is_some()
    }

    /// The value when the key holds exactly one live version.
    pub fn value(&self) -> Option<&Bytes> {
        let mut live = self.live();
        match (live.next(), live.next()) {
            (Some(s), None) => Some(&s.value),
            _ => None,
        }
    }

    /// The live versions (siblings that are not deletes).
    pub fn live(&self) -> impl Iterator<Item = &Sibling> {
        self.siblings.iter().filter(|s| !s.deleted)
    }
}

/// What a write left.
#[derive(Clone, Debug)]
pub struct Written {
    /// 204, or 200 when the answer shows siblings.
    pub status: StatusCode,
    /// The key's new context.
    pub context: Option<Context>,
    /// The versions the key holds after the write when it holds more than
    /// one (a concurrent write kept beside this one); empty otherwise.
    pub siblings: Vec<Sibling>,
    /// The server recognised this write's idempotency key: an earlier
    /// attempt had already been applied, and nothing new was.
    pub replayed: bool,
    /// `actor:counter` of the version the write created.
    pub dot: Option<String>,
    /// Base URL of the node that answered.
    pub node: String,
    /// `X-Dynkv-Replicas`, when the server sent it.
    pub replicas: Option<ReplicaReport>,
}

/// What a watch saw.
#[derive(Clone, Debug)]
pub enum Watched {
    /// The key holds a version the context had not seen.
    Changed(Fetched),
    /// Nothing new before the timeout (304).
    Unchanged,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_and_queries() {
        assert_eq!(Quorum::parse("quorum"), Some(Quorum::Quorum));
        assert_eq!(Quorum::parse("2"), Some(Quorum::N(2)));
        assert_eq!(Quorum::parse("0"), None);
        assert_eq!(Quorum::parse("most"), None);
        assert_eq!(query(None, None, None), "");
        assert_eq!(
            query(
                Some(("w", Quorum::All)),
                Some(false),
                Some(Duration::from_millis(250))
            ),
            "?w=all&sloppy=false&timeout_ms=250"
        );
        assert_eq!(query(None, Some(true), None), "?sloppy=true");
    }

    #[test]
    fn replica_reports() {
        let r = ReplicaReport::parse("asked=3 answered=2 repaired=1 sloppy=0").unwrap();
        assert_eq!((r.asked, r.answered, r.repaired, r.sloppy), (3, 2, 1, 0));
        assert_eq!(r.to_string(), "asked=3 answered=2 repaired=1 sloppy=0");
        assert!(ReplicaReport::parse("").is_none());
        assert!(ReplicaReport::parse("asked=x").is_none());
    }

    #[test]
    fn siblings_decode_both_encodings() {
        let j: SiblingsJson = serde_json::from_str(
            r#"{"context":"c","siblings":[{"value":"a","encoding":"utf8","content_type":"text/plain","deleted":false},
                {"value":"/w==","encoding":"base64","content_type":"x","deleted":false},
                {"value":"","encoding":"utf8","content_type":"","deleted":true}]}"#,
        )
        .unwrap();
        let s: Vec<Sibling> = j
            .siblings
            .into_iter()
            .map(|s| s.into_sibling().unwrap())
            .collect();
        assert_eq!(s[0].value, "a");
        assert_eq!(&s[1].value[..], &[0xff]);
        let f = Fetched {
            status: StatusCode::MULTIPLE_CHOICES,
            siblings: s,
            context: None,
            node: String::new(),
            replicas: None,
        };
        assert_eq!(f.live().count(), 2);
        assert!(f.is_found());
        assert!(f.value().is_none());
    }
}
