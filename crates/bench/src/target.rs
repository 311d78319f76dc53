//! The systems under test and the wire: how an operation reaches each kind
//! of target.
//!
//! - **dynkv and bare** go through `dynkv-client`, the client applications
//!   use: its routing (`--routing`: round-robin over the nodes, or
//!   token-aware to a replica of each key), its connection pool, its
//!   answer parsing. Nothing else in the generator speaks the native API.
//!   The generator turns off what would change the server's work from one
//!   request to the next: retries (a failure is counted, not hidden),
//!   session contexts on reads, and idempotency keys unless
//!   `--idempotency-keys` (a keyed write makes the coordinator read the
//!   other primaries first).
//! - **riak-http and etcd** are requests built here and sent on the
//!   client's transport (the same pooled hyper HTTP/1.1 connections), each
//!   simulated client to its one target.
//! - **riak-pb** speaks PBC frames on one TCP connection per client.
//!
//! Every connection is keep-alive and carries one request at a time
//! (closed loop); a client holds at most one at once, so `--connections`
//! bounds the connections to each node. The generator runs on the same
//! small machine as the servers, so the less CPU it spends per request the
//! more the measurement says about the server.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use dynkv_client::{
    Client, Context, Endpoint, ReadOptions, Transport, TransportError, WriteOptions,
};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
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
/// request (the value, its base64 form, the `r`/`w` settings).
pub struct RequestBuilder {
    kind: TargetKind,
    value: Bytes,
    value_b64: String,
    r: Option<u32>,
    w: Option<u32>,
    /// dynkv's per-request settings (native kinds).
    read: ReadOptions,
    write: WriteOptions,
}

fn quorum_opt(name: &str, v: &Option<String>) -> Result<Option<dynkv_client::Quorum>, String> {
    match v {
        None => Ok(None),
        Some(s) => dynkv_client::Quorum::parse(s)
            .map(Some)
            .ok_or_else(|| format!("--{name} must be one, quorum, all or a number, got {s:?}")),
    }
}

impl RequestBuilder {
    /// `value` is the body of every write; `r` and `w` are the read and
    /// write quorums (dynkv's `?r=`/`?w=`, PBC's `r`/`w`; ignored by the
    /// other kinds).
    pub fn new(
        kind: TargetKind,
        value: Bytes,
        r: &Option<String>,
        w: &Option<String>,
    ) -> Result<Self, String> {
        Ok(RequestBuilder {
            kind,
            value_b64: if kind == TargetKind::Etcd {
                B64.encode(&value)
            } else {
                String::new()
            },
            value,
            r: pb_quorum(r),
            w: pb_quorum(w),
            read: ReadOptions {
                r: quorum_opt("r", r)?,
                ..Default::default()
            },
            write: WriteOptions {
                w: quorum_opt("w", w)?,
                content_type: Some("application/octet-stream".into()),
                ..Default::default()
            },
        })
    }

    /// Whether this kind goes through `dynkv-client` (dynkv, bare).
    pub fn is_native(&self) -> bool {
        matches!(self.kind, TargetKind::Dynkv | TargetKind::Bare)
    }

    /// The request for `op` on `key` for the kinds the generator speaks
    /// itself (riak-http, etcd, riak-pb); the native kinds go through
    /// [`Sender::native`].
    pub fn build(&self, host: &HeaderValue, op: Op, key: &str) -> Request<Full<Bytes>> {
        match self.kind {
            TargetKind::RiakPb => return self.build_pb(host, op, key),
            TargetKind::Etcd => return self.build_etcd(host, op, key),
            TargetKind::RiakHttp | TargetKind::Dynkv | TargetKind::Bare => {}
        }
        // The Riak HTTP workload writes blind (one sibling per key with
        // the bucket's allow_mult=false).
        let path = format!("/buckets/{RIAK_BUCKET}/keys/{key}");
        let (method, body) = match op {
            Op::Get => (Method::GET, Bytes::new()),
            Op::Put => (Method::PUT, self.value.clone()),
            Op::Delete => (Method::DELETE, Bytes::new()),
        };
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, host.clone());
        if op == Op::Put {
            b = b.header(CONTENT_TYPE, "application/octet-stream");
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
    /// HTTP status (PBC: 200, or 500 for `RpbErrorResp`).
    pub status: StatusCode,
    /// dynkv's context of the key, if any.
    pub context: Option<Context>,
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Failure {
        match e {
            TransportError::Connect(_) => Failure::Connect,
            TransportError::Timeout(_) => Failure::Timeout,
            TransportError::NotSent(_) | TransportError::Io(_) => Failure::Io,
        }
    }
}

impl From<dynkv_client::Error> for Failure {
    fn from(e: dynkv_client::Error) -> Failure {
        match e {
            dynkv_client::Error::Http { status, .. } => Failure::Status(status),
            dynkv_client::Error::Transport(t) => t.into(),
            _ => Failure::Io,
        }
    }
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

/// One simulated client's way to its target.
pub enum Conn {
    /// dynkv's API (or the bare server) through the shared client, which
    /// picks the node per request.
    Native,
    /// Another HTTP API, to this one node, on the shared transport.
    Http(Arc<Endpoint>),
    /// Riak PBC to `addr` on a connection of its own.
    Pb {
        /// `host:port`.
        addr: String,
        /// The connection, once open.
        conn: Option<PbConn>,
        /// Connections opened so far.
        connects: u64,
    },
}

/// Sends every client's requests: the shared `dynkv-client` (native
/// kinds) or transport (other HTTP kinds), and the request builder.
pub struct Sender {
    /// The requests.
    pub builder: RequestBuilder,
    /// The client for dynkv and bare targets.
    pub client: Option<Client>,
    /// The transport for riak-http and etcd targets.
    pub transport: Transport,
}

impl Sender {
    /// The connection slot of client `i` for `addr` (`host:port`).
    pub fn conn(&self, addr: &str) -> Result<Conn, String> {
        Ok(match self.builder.kind {
            TargetKind::Dynkv | TargetKind::Bare => Conn::Native,
            TargetKind::RiakPb => Conn::Pb {
                addr: addr.to_string(),
                conn: None,
                connects: 0,
            },
            TargetKind::RiakHttp | TargetKind::Etcd => Conn::Http(self.transport.endpoint(addr)?),
        })
    }

    /// TCP connections opened so far by everything but PBC slots.
    pub fn connects(&self) -> u64 {
        self.transport.connects() + self.client.as_ref().map_or(0, |c| c.transport().connects())
    }

    /// One native request through the client: `context` goes with writes.
    async fn native(&self, op: Op, key: &str, context: Option<Context>) -> Result<Answer, Failure> {
        let c = self.client.as_ref().expect("native kinds have a client");
        let b = &self.builder;
        Ok(match op {
            Op::Get => {
                let f = c.get_with(key, &b.read).await?;
                Answer {
                    status: f.status,
                    context: f.context,
                }
            }
            Op::Put => {
                let w = c
                    .put_with(key, b.value.clone(), context.as_ref(), &b.write)
                    .await?;
                Answer {
                    status: w.status,
                    context: w.context,
                }
            }
            Op::Delete => {
                let w = c.delete_with(key, context.as_ref(), &b.write).await?;
                Answer {
                    status: w.status,
                    context: w.context,
                }
            }
        })
    }

    /// Sends `op` on `key` through `conn` and reads the whole answer
    /// within `timeout`. A failed PBC connection is dropped, so the next
    /// request starts clean (the HTTP transport never reuses a failed one).
    pub async fn send(
        &self,
        conn: &mut Conn,
        op: Op,
        key: &str,
        context: Option<Context>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        match conn {
            Conn::Native => self.native(op, key, context).await,
            Conn::Http(ep) => {
                let req = self.builder.build(ep.host(), op, key);
                let resp = self.transport.send(ep, req, timeout).await?;
                Ok(Answer {
                    status: resp.status(),
                    context: None,
                })
            }
            Conn::Pb {
                addr,
                conn,
                connects,
            } => {
                let host = HeaderValue::from_str(addr).expect("host:port is a valid header");
                let req = self.builder.build(&host, op, key);
                let out =
                    match tokio::time::timeout(timeout, exchange_pb(addr, conn, connects, req))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(Failure::Timeout),
                    };
                if out.is_err() {
                    *conn = None;
                }
                out
            }
        }
    }
}

/// One PBC exchange: the request's body is a whole frame; the answer is
/// 200 unless the node answered `RpbErrorResp` (500).
async fn exchange_pb(
    addr: &str,
    slot: &mut Option<PbConn>,
    connects: &mut u64,
    req: Request<Full<Bytes>>,
) -> Result<Answer, Failure> {
    if slot.is_none() {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        *slot = Some(PbConn {
            stream,
            buf: bytes::BytesMut::with_capacity(8 << 10),
        });
        *connects += 1;
    }
    let frame = req
        .into_body()
        .collect()
        .await
        .map_err(|_| Failure::Io)?
        .to_bytes();
    let pb = slot.as_mut().expect("connected");
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

/// A PBC connection: one request frame out, one answer frame back.
pub struct PbConn {
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
    fn riak_http_requests_and_quorums() {
        let b = RequestBuilder::new(
            TargetKind::RiakHttp,
            Bytes::from_static(b"vv"),
            &Some("one".into()),
            &Some("2".into()),
        )
        .unwrap();
        let host = HeaderValue::from_static("h:1");
        let g = b.build(&host, Op::Get, "k-1");
        assert_eq!(g.uri(), "/buckets/bench/keys/k-1");
        let p = b.build(&host, Op::Put, "k-1");
        assert_eq!(p.method(), Method::PUT);
        assert_eq!(b.read.r, Some(dynkv_client::Quorum::One));
        assert_eq!(b.write.w, Some(dynkv_client::Quorum::N(2)));
        assert!(b.is_success(Op::Get, StatusCode::NOT_FOUND));
        assert!(b.is_success(Op::Get, StatusCode::MULTIPLE_CHOICES));
        assert!(!b.is_success(Op::Put, StatusCode::SERVICE_UNAVAILABLE));
        assert!(
            RequestBuilder::new(TargetKind::Dynkv, Bytes::new(), &Some("most".into()), &None)
                .is_err()
        );
    }

    #[tokio::test]
    async fn etcd_requests() {
        let b =
            RequestBuilder::new(TargetKind::Etcd, Bytes::from_static(b"hi"), &None, &None).unwrap();
        let host = HeaderValue::from_static("h:1");
        let p = b.build(&host, Op::Put, "k");
        assert_eq!(p.uri(), "/v3/kv/put");
        let body = p.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"key":"aw==","value":"aGk="}"#);
        let r = b.build(&host, Op::Get, "k");
        assert_eq!(r.uri(), "/v3/kv/range");
        assert!(!b.is_success(Op::Get, StatusCode::NOT_FOUND));
    }
}
