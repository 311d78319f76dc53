//! The systems under test and the wire: how an operation becomes an HTTP
//! request for each kind of target, and one keep-alive HTTP/1.1 connection
//! per client slot.
//!
//! The connection is hyper's low-level HTTP/1.1 client, not a pooled
//! high-level client: each simulated client owns exactly one TCP
//! connection, sends one request at a time on it (closed loop) and
//! reconnects only when the server closed it or a request failed. The
//! generator runs on the same small machine as the servers, so the less
//! CPU it spends per request the more the measurement says about the server.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::spec::Op;

/// The header dynkv uses for the causal context of a key.
pub const CONTEXT_HEADER: &str = "x-dynkv-context";

/// Which protocol the targets speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// dynkv's `/kv/{key}` API with contexts and `r`/`w` parameters.
    Dynkv,
    /// The same requests as `dynkv`, against a server that answers 200 to
    /// anything: the ceiling of the HTTP stack and of the generator.
    Bare,
    /// etcd's v3 HTTP/JSON gateway (`/v3/kv/put`, `/v3/kv/range`, `/v3/kv/deleterange`).
    Etcd,
}

/// Builds requests for one target kind; holds what is the same for every
/// request (the value, its base64 form, the `r`/`w` query strings).
pub struct RequestBuilder {
    kind: TargetKind,
    value: Bytes,
    value_b64: String,
    get_query: String,
    write_query: String,
}

fn query(params: &[(&str, &Option<String>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

impl RequestBuilder {
    /// `value` is the body of every write; `r` and `w` go into dynkv's
    /// query strings (ignored by the other kinds).
    pub fn new(kind: TargetKind, value: Bytes, r: &Option<String>, w: &Option<String>) -> Self {
        RequestBuilder {
            kind,
            value_b64: if kind == TargetKind::Etcd {
                B64.encode(&value)
            } else {
                String::new()
            },
            value,
            get_query: query(&[("r", r)]),
            write_query: query(&[("w", w)]),
        }
    }

    /// The request for `op` on `key`; `context` is the dynkv context to
    /// send with a write (none = a blind write).
    pub fn build(
        &self,
        host: &HeaderValue,
        op: Op,
        key: &str,
        context: Option<HeaderValue>,
    ) -> Request<Full<Bytes>> {
        match self.kind {
            TargetKind::Dynkv | TargetKind::Bare => {
                let (method, q, body) = match op {
                    Op::Get => (Method::GET, &self.get_query, Bytes::new()),
                    Op::Put => (Method::PUT, &self.write_query, self.value.clone()),
                    Op::Delete => (Method::DELETE, &self.write_query, Bytes::new()),
                };
                let mut b = Request::builder()
                    .method(method)
                    .uri(format!("/kv/{key}{q}"))
                    .header(HOST, host.clone());
                if op == Op::Put {
                    b = b.header(CONTENT_TYPE, "application/octet-stream");
                }
                if let Some(c) = context.filter(|_| op != Op::Get) {
                    b = b.header(CONTEXT_HEADER, c);
                }
                b.body(Full::new(body)).expect("valid request")
            }
            TargetKind::Etcd => {
                let k = B64.encode(key);
                let (path, body) = match op {
                    Op::Get => ("/v3/kv/range", format!(r#"{{"key":"{k}"}}"#)),
                    Op::Put => (
                        "/v3/kv/put",
                        format!(r#"{{"key":"{k}","value":"{}"}}"#, self.value_b64),
                    ),
                    Op::Delete => ("/v3/kv/deleterange", format!(r#"{{"key":"{k}"}}"#)),
                };
                Request::builder()
                    .method(Method::POST)
                    .uri(path)
                    .header(HOST, host.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .expect("valid request")
            }
        }
    }

    /// Whether `status` is a successful answer to `op` for this kind: for
    /// dynkv a read may also find siblings (300) or nothing (404).
    pub fn is_success(&self, op: Op, status: StatusCode) -> bool {
        match self.kind {
            TargetKind::Dynkv => {
                status.is_success()
                    || (op == Op::Get
                        && (status == StatusCode::MULTIPLE_CHOICES
                            || status == StatusCode::NOT_FOUND))
            }
            TargetKind::Bare | TargetKind::Etcd => status.is_success(),
        }
    }
}

/// Why a request did not succeed; the report counts these by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No TCP connection could be made.
    Connect,
    /// The whole exchange took longer than `--timeout`.
    Timeout,
    /// The connection broke during the exchange.
    Io,
    /// The server answered with an error status.
    Status(u16),
}

impl Failure {
    /// Name in reports: `connect`, `timeout`, `io` or `http_503`.
    pub fn kind(&self) -> String {
        match self {
            Failure::Connect => "connect".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Io => "io".into(),
            Failure::Status(s) => format!("http_{s}"),
        }
    }
}

/// What the generator keeps of an answer.
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// dynkv's context header, if any.
    pub context: Option<HeaderValue>,
}

/// One keep-alive HTTP/1.1 connection to one target, re-established on demand.
pub struct Conn {
    addr: String,
    /// `Host` header value for this target.
    pub host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened so far (1 = never reconnected).
    pub connects: u64,
}

/// Reads `http://host[:port][/]` (the scheme may be left out) as the
/// `host:port` to connect to; only plain HTTP is spoken, and a target has
/// no path, query or credentials.
pub fn parse_target(target: &str) -> Result<String, String> {
    let full = if target.contains("://") {
        target.to_string()
    } else {
        format!("http://{target}")
    };
    let url = url::Url::parse(&full).map_err(|e| format!("bad target {target:?}: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "unsupported target {target:?}: only http:// is spoken"
        ));
    }
    let plain = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) if plain => Ok(format!("{host}:{port}")),
        _ => Err(format!(
            "bad target {target:?}: expected http://host:port with no path"
        )),
    }
}

impl Conn {
    /// A connection slot for `addr` (`host:port`); it connects on first use.
    pub fn new(addr: String) -> Conn {
        let host = HeaderValue::from_str(&addr).expect("host:port is a valid header");
        Conn {
            addr,
            host,
            sender: None,
            connects: 0,
        }
    }

    async fn connect(&mut self) -> Result<(), Failure> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Failure> {
        // A connection the server closed while idle is replaced silently:
        // that is keep-alive housekeeping, not a failed request.
        let ready = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            self.sender = None;
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected");
        let resp = sender.send_request(req).await.map_err(|_| Failure::Io)?;
        let status = resp.status();
        let context = resp.headers().get(CONTEXT_HEADER).cloned();
        // Read the whole body: the connection is reusable only after it,
        // and a real client pays for it.
        resp.into_body().collect().await.map_err(|_| Failure::Io)?;
        Ok(Answer { status, context })
    }

    /// Sends `req` and reads the whole answer within `timeout`. On any
    /// failure the connection is dropped, so the next request starts clean.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let out = match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        if out.is_err() {
            self.sender = None;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("http://127.0.0.1:7071").unwrap(),
            "127.0.0.1:7071"
        );
        assert_eq!(parse_target("127.0.0.1:80/").unwrap(), "127.0.0.1:80");
        assert_eq!(parse_target("localhost:7071").unwrap(), "localhost:7071");
        assert_eq!(parse_target("http://[::1]:7071/").unwrap(), "[::1]:7071");
        assert_eq!(parse_target("http://x").unwrap(), "x:80");
        assert!(parse_target("https://x:1").is_err());
        assert!(parse_target("http://x:1/kv").is_err());
        assert!(parse_target("http://x:1/?a=b").is_err());
        assert!(parse_target("http://u:p@x:1").is_err());
        assert!(parse_target("http://").is_err());
    }

    #[test]
    fn dynkv_requests() {
        let b = RequestBuilder::new(
            TargetKind::Dynkv,
            Bytes::from_static(b"vv"),
            &Some("one".into()),
            &Some("2".into()),
        );
        let host = HeaderValue::from_static("h:1");
        let ctx = HeaderValue::from_static("AQE");
        let g = b.build(&host, Op::Get, "k-1", Some(ctx.clone()));
        assert_eq!(g.uri(), "/kv/k-1?r=one");
        assert!(g.headers().get(CONTEXT_HEADER).is_none());
        let p = b.build(&host, Op::Put, "k-1", Some(ctx));
        assert_eq!(p.method(), Method::PUT);
        assert_eq!(p.uri(), "/kv/k-1?w=2");
        assert_eq!(p.headers()[CONTEXT_HEADER], "AQE");
        let d = b.build(&host, Op::Delete, "k-1", None);
        assert!(d.headers().get(CONTEXT_HEADER).is_none());
        assert!(b.is_success(Op::Get, StatusCode::NOT_FOUND));
        assert!(b.is_success(Op::Get, StatusCode::MULTIPLE_CHOICES));
        assert!(!b.is_success(Op::Put, StatusCode::SERVICE_UNAVAILABLE));
    }

    #[tokio::test]
    async fn etcd_requests() {
        let b = RequestBuilder::new(TargetKind::Etcd, Bytes::from_static(b"hi"), &None, &None);
        let host = HeaderValue::from_static("h:1");
        let p = b.build(&host, Op::Put, "k", None);
        assert_eq!(p.uri(), "/v3/kv/put");
        let body = p.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"key":"aw==","value":"aGk="}"#);
        let r = b.build(&host, Op::Get, "k", None);
        assert_eq!(r.uri(), "/v3/kv/range");
        assert!(!b.is_success(Op::Get, StatusCode::NOT_FOUND));
    }
}
