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
    /// The Riak HTTP API (`/buckets/bench/keys/{key}`), blind writes.
    RiakHttp,
    /// Riak's protocol buffers API (`RpbGetReq`, `RpbPutReq`, `RpbDelReq`
    /// on bucket `bench`) on the targets' PBC ports, blind writes.
    RiakPb,
}

/// The bucket of the Riak target kinds.
pub const RIAK_BUCKET: &str = "bench";

/// The path of a request that carries a PBC frame as its body: the
/// connection of a `riak-pb` target writes the body as is.
const PB_PATH: &str = "/riakpb";

/// A quorum option as PBC encodes it (Riak's symbolic values).
fn pb_quorum(v: &Option<String>) -> Option<u32> {
    match v.as_deref()? {
        "one" => Some(u32::MAX - 1),
        "quorum" => Some(u32::MAX - 2),
        "all" => Some(u32::MAX - 3),
        "default" => Some(u32::MAX - 4),
        n => n.parse().ok(),
    }
}

/// Builds requests for one target kind; holds what is the same for every
/// request (the value, its base64 form, the `r`/`w` query strings).
pub struct RequestBuilder {
    kind: TargetKind,
    value: Bytes,
    value_b64: String,
    get_query: String,
    write_query: String,
    r: Option<u32>,
    w: Option<u32>,
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
            r: pb_quorum(r),
            w: pb_quorum(w),
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
        // The native API takes our context header on writes; the Riak
        // HTTP workload writes blind (one sibling per key with the
        // bucket's allow_mult=false).
        let (path, context) = match self.kind {
            TargetKind::Dynkv | TargetKind::Bare => {
                (format!("/kv/{key}"), context.filter(|_| op != Op::Get))
            }
            TargetKind::RiakHttp => (format!("/buckets/{RIAK_BUCKET}/keys/{key}"), None),
            TargetKind::RiakPb => return self.build_pb(host, op, key),
            TargetKind::Etcd => return self.build_etcd(host, op, key),
        };
        let (method, q, body) = match op {
            Op::Get => (Method::GET, &self.get_query, Bytes::new()),
            Op::Put => (Method::PUT, &self.write_query, self.value.clone()),
            Op::Delete => (Method::DELETE, &self.write_query, Bytes::new()),
        };
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{path}{q}"))
            .header(HOST, host.clone());
        if op == Op::Put {
            b = b.header(CONTENT_TYPE, "application/octet-stream");
        }
        if let Some(c) = context {
            b = b.header(CONTEXT_HEADER, c);
        }
        b.body(Full::new(body)).expect("valid request")
    }

    /// The PBC frame for `op` on `key`, carried as a request body.
    fn build_pb(&self, host: &HeaderValue, op: Op, key: &str) -> Request<Full<Bytes>> {
        use dynkv_riakpb::codes;
        use dynkv_riakpb::frame::encode_message;
        use dynkv_riakpb::messages::{RpbContent, RpbDelReq, RpbGetReq, RpbPutReq};
        let bucket = Bytes::from_static(RIAK_BUCKET.as_bytes());
        let k = Bytes::from(key.to_string());
        let mut frame = bytes::BytesMut::new();
        match op {
            Op::Get => {
                let m = RpbGetReq {
                    bucket,
                    key: k,
                    r: self.r,
                    ..Default::default()
                };
                encode_message(codes::GET_REQ, &m, &mut frame);
            }
            Op::Put => {
                let m = RpbPutReq {
                    bucket,
                    key: Some(k),
                    content: RpbContent {
                        value: self.value.clone(),
                        content_type: Some(Bytes::from_static(b"application/octet-stream")),
                        ..Default::default()
                    },
                    w: self.w,
                    ..Default::default()
                };
                encode_message(codes::PUT_REQ, &m, &mut frame);
            }
            Op::Delete => {
                let m = RpbDelReq {
                    bucket,
                    key: k,
                    w: self.w,
                    ..Default::default()
                };
                encode_message(codes::DEL_REQ, &m, &mut frame);
            }
        }
        Request::builder()
            .method(Method::POST)
            .uri(PB_PATH)
            .header(HOST, host.clone())
            .body(Full::new(frame.freeze()))
            .expect("valid request")
    }

    /// etcd's JSON gateway request for `op` on `key`.
    fn build_etcd(&self, host: &HeaderValue, op: Op, key: &str) -> Request<Full<Bytes>> {
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

    /// Whether `status` is a successful answer to `op` for this kind: for
    /// dynkv a read may also find siblings (300) or nothing (404).
    pub fn is_success(&self, op: Op, status: StatusCode) -> bool {
        match self.kind {
            TargetKind::Dynkv | TargetKind::RiakHttp => {
                status.is_success()
                    || (op == Op::Get
                        && (status == StatusCode::MULTIPLE_CHOICES
                            || status == StatusCode::NOT_FOUND))
            }
            TargetKind::Bare | TargetKind::Etcd | TargetKind::RiakPb => status.is_success(),
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
    /// A PBC connection (`riak-pb` targets) instead of HTTP.
    pb: Option<PbConn>,
    /// Whether this slot speaks PBC.
    speaks_pb: bool,
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
            pb: None,
            speaks_pb: false,
            connects: 0,
        }
    }

    /// A connection slot of `kind` for `addr`: PBC for `riak-pb`, else HTTP.
    pub fn for_kind(addr: String, kind: TargetKind) -> Conn {
        let mut c = Conn::new(addr);
        c.speaks_pb = kind == TargetKind::RiakPb;
        c
    }

    /// One PBC exchange: the request's body is a whole frame; the answer is
    /// 200 unless the node answered `RpbErrorResp` (500).
    async fn exchange_pb(&mut self, req: Request<Full<Bytes>>) -> Result<Answer, Failure> {
        if self.pb.is_none() {
            let stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|_| Failure::Connect)?;
            let _ = stream.set_nodelay(true);
            self.pb = Some(PbConn {
                stream,
                buf: bytes::BytesMut::with_capacity(8 << 10),
            });
            self.connects += 1;
        }
        let frame = req
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Io)?
            .to_bytes();
        let pb = self.pb.as_mut().expect("connected");
        let code = pb.call(&frame).await.map_err(|_| Failure::Io)?;
        let status = if code == dynkv_riakpb::codes::ERROR_RESP {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        Ok(Answer {
            status,
            context: None,
        })
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
        if self.speaks_pb {
            return self.exchange_pb(req).await;
        }
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
            self.pb = None;
        }
        out
    }
}

/// A PBC connection: one request frame out, one answer frame back.
struct PbConn {
    stream: TcpStream,
    buf: bytes::BytesMut,
}

impl PbConn {
    /// Writes `frame` and reads the answer; returns its message code.
    async fn call(&mut self, frame: &[u8]) -> std::io::Result<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(frame).await?;
        let dec = dynkv_riakpb::FrameDecoder::new(dynkv_riakpb::frame::DEFAULT_MAX_FRAME);
        loop {
            match dec.decode(&mut self.buf) {
                Ok(Some(f)) => return Ok(f.code),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
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
