//! # Riak's protocol buffers API (PBC)
//!
//! The second Riak adapter: the same core as the HTTP routes (the
//! transport-neutral functions of [`super::object`], [`super::listing`],
//! [`super::props`]: quorum parameters, vclock tokens, sibling visibility,
//! errors), reached through Riak's binary protocol instead of URLs and
//! headers. The frame codec and message types are `dynkv-riakpb`'s; the
//! node's listener (crates/node `pb`) accepts connections and hands each
//! one to [`serve`].
//!
//! ## Layout
//! - this module: the per-connection loop ([`serve`]), the dispatch by
//!   message code ([`Session::dispatch`]), the answer writer ([`Out`]),
//!   errors ([`RiakError`] → `RpbErrorResp`) and the small messages (ping,
//!   server info, client id);
//! - [`kv`]: get, put, delete, and `RpbContent` ⇄ stored content;
//! - [`listing`]: list buckets and list keys (streamed);
//! - [`props`]: bucket and bucket type properties;
//! - [`index`]: secondary index queries (streamed or whole);
//! - [`datatypes`]: data type fetch and update;
//! - [`mapred`]: the one MapReduce job served (phaseless, over an index);
//! - [`security`]: the `RpbStartTls` / `RpbAuthReq` gate and the grant
//!   each request needs.
//!
//! A new area adds a module and match arms in [`Session::dispatch`].
//!
//! ## Requests become the core's parameters
//! PBC carries quorums as `uint32` with Riak's symbolic values
//! (`one` = 2^32−2, `quorum` = 2^32−3, `all` = 2^32−4, `default` = 2^32−5);
//! [`params`] turns them into the same [`Params`] an HTTP query string
//! gives, so validation and defaults are the HTTP routes' own. A vclock is
//! the binary form of the `X-Riak-Vclock` token (the signed context
//! payload, not base64).
//!
//! ## Errors
//! `RpbErrorResp` carries the HTTP adapter's sentence (`R-value
//! unsatisfied: 1/2`, ...) with `errcode` 0, as Riak sends. A read that
//! finds nothing is an empty `RpbGetResp`, and a delete of nothing a plain
//! `RpbDelResp`, as in Riak. A code dynkv does not serve is answered
//! `Unknown message code: N` (docs/RIAK.md lists them).

pub mod datatypes;
pub mod index;
pub mod kv;
pub mod listing;
pub mod mapred;
pub mod props;
pub mod security;

use axum::http::StatusCode;
use bytes::{Bytes, BytesMut};
use dynkv_riakpb::Frame;
use dynkv_riakpb::codes;
use dynkv_riakpb::frame::{FrameError, HEADER_LEN, check_header, encode_frame, encode_message};
use dynkv_riakpb::messages::{
    RpbErrorResp, RpbGetClientIdResp, RpbGetServerInfoResp, RpbSetClientIdReq,
};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use super::RiakError;
use crate::AppState;
use crate::http::params::Params;

/// Riak's `RpbErrorResp` code for every error it sends.
const ERRCODE: u32 = 0;

/// One client connection's state: the node's API state and the client id
/// it set (kept only to be read back, as dynkv's versions need none).
pub struct Session {
    state: AppState,
    client_id: Bytes,
    gate: security::Gate,
    tls_available: bool,
    peer: Option<IpAddr>,
}

/// What one request's handler answers: a frame written, or an error.
pub type Answer = Result<(), RiakError>;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The socket failed or the peer closed it mid-frame.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a frame that cannot be read.
    #[error("{0}")]
    Frame(#[from] FrameError),
}

/// A connection's byte stream, plain or TLS.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// How the listener upgrades a connection to TLS after `RpbStartTls` (the
/// node's TLS configuration, the same as the HTTP listener's).
pub type Upgrade<S> = Box<
    dyn FnOnce(S) -> Pin<Box<dyn Future<Output = std::io::Result<Box<dyn Conn>>> + Send>> + Send,
>;

/// How a run over one stream ended.
enum Ended<S> {
    /// The peer closed the connection.
    Closed,
    /// `RpbStartTls` was answered: the stream, to be upgraded.
    StartTls(S),
}

/// Serves one connection until the peer closes it, an I/O error, or a
/// refused frame (answered with an error first). A frame's declared length
/// is checked before its body is read or allocated. `upgrade` is how
/// `RpbStartTls` switches the connection to TLS (`None`: the node has no
/// TLS certificate, and `RpbStartTls` is refused); `peer` is checked
/// against the security sources on `RpbAuthReq`.
pub async fn serve<S: Conn + 'static>(
    state: AppState,
    stream: S,
    max_frame: usize,
    peer: Option<IpAddr>,
    upgrade: Option<Upgrade<S>>,
) -> Result<(), ConnError> {
    let mut session = Session::new(state);
    session.peer = peer;
    session.tls_available = upgrade.is_some();
    match run(&mut session, stream, max_frame).await? {
        Ended::Closed => Ok(()),
        Ended::StartTls(plain) => {
            let Some(upgrade) = upgrade else {
                return Ok(());
            };
            let tls = upgrade(plain).await?;
            session.gate = security::Gate::Tls;
            // A second `RpbStartTls` is refused by the gate, so this run
            // ends only when the connection does.
            run(&mut session, tls, max_frame).await.map(|_| ())
        }
    }
}

/// Serves frames from `stream` until it closes or `RpbStartTls` is
/// answered.
async fn run<S: Conn>(
    session: &mut Session,
    stream: S,
    max_frame: usize,
) -> Result<Ended<S>, ConnError> {
    let (mut rd, wr) = tokio::io::split(stream);
    let mut out = Out::new(wr);
    loop {
        let mut header = [0u8; HEADER_LEN];
        match rd.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Ended::Closed),
            Err(e) => return Err(e.into()),
        }
        let len = match check_header(header, max_frame) {
            Ok(len) => len,
            Err(e) => {
                let msg = format!("Refused frame: {e}");
                out.error(&RiakError::bad_request(msg)).await?;
                out.flush().await?;
                return Err(e.into());
            }
        };
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await?;
        let mut body = Bytes::from(body);
        let code = body[0];
        let frame = Frame {
            code,
            body: body.split_off(1),
        };
        let start_tls = session.dispatch(frame, &mut out).await?;
        out.flush().await?;
        if start_tls {
            // Nothing is buffered on the read side: the client waits for
            // the answer before its handshake.
            return Ok(Ended::StartTls(rd.unsplit(out.w)));
        }
    }
}

/// Writes answer frames to the connection (buffered until [`Out::flush`]
/// or a streamed answer's [`Out::send_now`]).
pub struct Out<W> {
    w: W,
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin + Send> Out<W> {
    fn new(w: W) -> Self {
        Out {
            w,
            buf: BytesMut::with_capacity(8 << 10),
        }
    }

    /// Queues a frame carrying `msg`.
    pub fn message(&mut self, code: u8, msg: &impl Message) {
        encode_message(code, msg, &mut self.buf);
    }

    /// Queues a frame without a body (`RpbPingResp`, `RpbDelResp`, ...).
    pub fn empty(&mut self, code: u8) {
        encode_frame(code, b"", &mut self.buf);
    }

    /// Queues `msg` and writes what is queued: for streamed answers, so a
    /// client sees each part as it is produced.
    pub async fn send_now(&mut self, code: u8, msg: &impl Message) -> std::io::Result<()> {
        self.message(code, msg);
        self.flush().await
    }

    /// Writes an `RpbErrorResp` for `e` at once.
    pub async fn error(&mut self, e: &RiakError) -> std::io::Result<()> {
        self.message(codes::ERROR_RESP, &error_resp(e));
        self.flush().await
    }

    /// Writes what is queued.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.w.write_all(&self.buf).await?;
            self.buf.clear();
        }
        self.w.flush().await
    }
}

/// The `RpbErrorResp` of an error: its sentence without the trailing
/// newline the HTTP body has.
pub fn error_resp(e: &RiakError) -> RpbErrorResp {
    RpbErrorResp {
        errmsg: Bytes::from(e.body.trim_end_matches('\n').to_string()),
        errcode: ERRCODE,
    }
}

/// The answer to a code dynkv does not serve, in Riak's words.
pub fn unknown_code(code: u8) -> RiakError {
    RiakError::bad_request(format!("Unknown message code: {code}"))
}

/// Decodes a request body, or answers Riak's sentence for a bad one.
pub fn decode<M: Message + Default>(body: Bytes) -> Result<M, RiakError> {
    M::decode(body).map_err(|e| RiakError::bad_request(format!("Invalid message: {e}")))
}

/// Riak's symbolic quorum values in PBC's `uint32` fields.
pub mod quorum {
    /// `one`.
    pub const ONE: u32 = u32::MAX - 1;
    /// `quorum`.
    pub const QUORUM: u32 = u32::MAX - 2;
    /// `all`.
    pub const ALL: u32 = u32::MAX - 3;
    /// `default` (the bucket's).
    pub const DEFAULT: u32 = u32::MAX - 4;

    /// The query-parameter form of a PBC quorum.
    pub fn word(v: u32) -> String {
        match v {
            ONE => "one".into(),
            QUORUM => "quorum".into(),
            ALL => "all".into(),
            DEFAULT => "default".into(),
            n => n.to_string(),
        }
    }

    /// The PBC form of a quorum as the HTTP adapter shows it (`"quorum"`
    /// or a count).
    pub fn from_json(v: &serde_json::Value) -> Option<u32> {
        match v {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            serde_json::Value::String(s) => match s.as_str() {
                "one" => Some(ONE),
                "quorum" => Some(QUORUM),
                "all" => Some(ALL),
                "default" => Some(DEFAULT),
                n => n.parse().ok(),
            },
            _ => None,
        }
    }
}

/// The [`Params`] an HTTP query string with these values would give:
/// quorums (`Some` fields only), flags and a timeout in milliseconds.
pub fn params(
    quorums: &[(&str, Option<u32>)],
    flags: &[(&str, Option<bool>)],
    timeout: Option<u32>,
) -> Params {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, v) in quorums {
        if let Some(v) = v {
            pairs.push((name.to_string(), quorum::word(*v)));
        }
    }
    for (name, v) in flags {
        if let Some(v) = v {
            pairs.push((name.to_string(), v.to_string()));
        }
    }
    if let Some(t) = timeout {
        pairs.push(("timeout".into(), t.to_string()));
    }
    Params::from_pairs(pairs)
}

impl Session {
    /// A new connection's session.
    pub fn new(state: AppState) -> Self {
        Session {
            state,
            // Riak (with vnode vclocks) gives every connection 4 zero bytes.
            client_id: Bytes::from_static(&[0; 4]),
            gate: security::Gate::default(),
            tls_available: false,
            peer: None,
        }
    }

    /// The node's API state.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves one request frame: its answer frames are queued on (or, when
    /// streamed, written to) `out`. `Ok(true)`: `RpbStartTls` was answered
    /// and the connection must now upgrade. `Err` only when the connection
    /// failed.
    pub async fn dispatch<W: AsyncWrite + Unpin + Send>(
        &mut self,
        frame: Frame,
        out: &mut Out<W>,
    ) -> std::io::Result<bool> {
        let name = codes::name(frame.code).unwrap_or("unknown");
        self.state.metrics.pb_request(name);
        let enabled = self
            .state
            .membership
            .as_ref()
            .is_some_and(|m| m.security().enabled());
        let answer = match self.gate.step(enabled, frame.code) {
            security::Step::Serve(user) => {
                match user.map(|u| security::authorise(&self.state, &u, frame.code, &frame.body)) {
                    Some(Err(e)) => Err(e),
                    _ => self.route(frame, out).await,
                }
            }
            security::Step::StartTls if self.tls_available => {
                out.empty(codes::START_TLS);
                return Ok(true);
            }
            security::Step::StartTls => Err(RiakError::bad_request(
                "Security is enabled but this node has no TLS certificate (node.tls_cert): STARTTLS is not possible",
            )),
            security::Step::Authenticate => {
                match security::authenticate(&self.state, &frame.body, self.peer).await {
                    Ok(user) => {
                        self.gate = security::Gate::User(user);
                        out.empty(codes::AUTH_RESP);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            security::Step::Refuse(words) => Err(RiakError::bad_request(words)),
        };
        match answer {
            Ok(()) => Ok(false),
            Err(e) => out.error(&e).await.map(|()| false),
        }
    }

    async fn route<W: AsyncWrite + Unpin + Send>(
        &mut self,
        frame: Frame,
        out: &mut Out<W>,
    ) -> Answer {
        let _permit = match frame.code {
            codes::PING_REQ => None,
            _ => Some(self.state.inflight.clone().try_acquire_owned().map_err(|_| {
                self.state.metrics.overloaded.inc();
                RiakError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded: this node is serving its maximum number of requests; retry shortly",
                )
            })?),
        };
        let state = &self.state;
        let body = frame.body;
        match frame.code {
            codes::PING_REQ => out.empty(codes::PING_RESP),
            codes::GET_SERVER_INFO_REQ => out.message(
                codes::GET_SERVER_INFO_RESP,
                &RpbGetServerInfoResp {
                    node: Some(Bytes::from(state.coord.node_id().to_string())),
                    server_version: Some(Bytes::from_static(
                        super::info::RIAK_KV_VERSION.as_bytes(),
                    )),
                },
            ),
            codes::GET_CLIENT_ID_REQ => out.message(
                codes::GET_CLIENT_ID_RESP,
                &RpbGetClientIdResp {
                    client_id: self.client_id.clone(),
                },
            ),
            codes::SET_CLIENT_ID_REQ => {
                self.client_id = decode::<RpbSetClientIdReq>(body)?.client_id;
                out.empty(codes::SET_CLIENT_ID_RESP);
            }
            codes::GET_REQ => kv::get(state, decode(body)?, out).await?,
            codes::PUT_REQ => kv::put(state, decode(body)?, out).await?,
            codes::DEL_REQ => kv::delete(state, decode(body)?, out).await?,
            codes::LIST_BUCKETS_REQ => listing::buckets(state, decode(body)?, out).await?,
            codes::LIST_KEYS_REQ => listing::keys(state, decode(body)?, out).await?,
            codes::GET_BUCKET_REQ => props::get(state, decode(body)?, out).await?,
            codes::SET_BUCKET_REQ => props::set(state, decode(body)?, out).await?,
            codes::RESET_BUCKET_REQ => props::reset(state, decode(body)?, out).await?,
            codes::INDEX_REQ => match index::query(state, decode(body)?).await? {
                index::IndexAnswer::Whole(r) => out.message(codes::INDEX_RESP, &r),
                index::IndexAnswer::Stream(mut stream) => {
                    while let Some(m) = stream.next().await {
                        out.send_now(codes::INDEX_RESP, &m?).await.map_err(|e| {
                            RiakError::bad_request(format!("connection failed: {e}"))
                        })?;
                    }
                }
            },
            mapred::MAP_RED_REQ => {
                for m in mapred::mapred(state, decode(body)?).await? {
                    out.message(mapred::MAP_RED_RESP, &m);
                }
            }
            codes::DT_FETCH_REQ => {
                let r = datatypes::fetch(state, &state.riak, decode(body)?).await?;
                out.message(codes::DT_FETCH_RESP, &r);
            }
            codes::DT_UPDATE_REQ => {
                let r = datatypes::update(state, &state.riak, decode(body)?).await?;
                out.message(codes::DT_UPDATE_RESP, &r);
            }
            codes::GET_BUCKET_TYPE_REQ => props::get_type(state, decode(body)?, out)?,
            codes::SET_BUCKET_TYPE_REQ => props::set_type(state, decode(body)?, out).await?,
            other => return Err(unknown_code(other)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbc_quorums_become_the_http_parameters() {
        let q = params(
            &[
                ("r", Some(quorum::QUORUM)),
                ("w", Some(2)),
                ("pr", None),
                ("dw", Some(quorum::DEFAULT)),
            ],
            &[("notfound_ok", Some(false))],
            Some(1500),
        );
        assert_eq!(q.get("r"), Some("quorum"));
        assert_eq!(q.get("w"), Some("2"));
        assert_eq!(q.get("pr"), None);
        assert_eq!(q.get("dw"), Some("default"));
        assert_eq!(q.get("notfound_ok"), Some("false"));
        assert_eq!(q.get("timeout"), Some("1500"));
        assert_eq!(quorum::word(quorum::ONE), "one");
        assert_eq!(quorum::word(quorum::ALL), "all");
    }

    #[test]
    fn errors_carry_the_http_sentence_without_its_newline() {
        let e = error_resp(&unknown_code(27));
        assert_eq!(&e.errmsg[..], b"Unknown message code: 27");
        assert_eq!(e.errcode, 0);
    }
}
