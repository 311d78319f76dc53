//! Checks of what the cluster port parses before and after the handshake:
//! the record and frame decoders of an established connection
//! ([`internode_frame`]) with every message decoder behind them, and the
//! Noise handshake's message parsing on both sides ([`handshake`]).
//!
//! Shared with `crates/chaos/tests/fuzz_regressions.rs`, which includes this
//! file, so it names `bytes::Bytes` through axum's re-export (one dependency
//! fewer for that test crate).

use std::any::type_name;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use axum::body::Bytes;
use dynkv_ring::NodeId;
use dynkv_rpc::frame::{
    Frame, FrameDecoder, FrameError, MAX_RECORD, NullCipher, RecordDecoder, TAG_LEN, put_answer,
    put_request, seal_records,
};
use dynkv_rpc::handshake::{
    HandshakeError, Hello, Initiator, MAX_HANDSHAKE_MESSAGE, accept_first, initiate, respond,
};
use dynkv_rpc::messages::{
    AaeFetch, AaeHashes, AaeKeys, AaeRepair, ClaimantChange, ClusterStateReply, Coordinate,
    CoordinateFallback, ENDPOINT_IDS, FeedChunk, FeedEntry, FeedRead, Gossip, Handoff, Hashes,
    IndexEntries, IndexQuery, Join, KeyDigests, Keys, ListKeys, ListNamespaces, NodeSummary,
    Objects, Overview, Ping, Pong, Quorum, Read, ReadReply, Reap, ReapCheck, Repaired, Replicate,
    StoreHint, WatchKey, WatchReply, WriteOutcome, WriteRequest,
};
use dynkv_rpc::{
    CallContext, ClusterSecret, Dispatcher, Endpoint, Handler, Message, PROTOCOL_VERSION,
    RemoteError, WireError,
};
use dynkv_vclock::{Content, DvvSet, IdempotencyRecord, Meta, Object, VersionVector};

/// The frame limit of the check: small, so the fuzzer reaches it with a
/// 4-byte header and frames spanning records stay cheap.
pub const MAX_FRAME: usize = 64 << 10;

/// Chunk sizes (cycled) of the "awkward" feeding: single bytes, pieces that
/// split record and frame headers, and one larger than a whole record.
const AWKWARD: &[usize] = &[7, 1, 2, 300, 3, 65_537, 13, 4_099, 5, 19, 1, 64];

// ---------------------------------------------------------------------------
// internode_frame

/// What decoding a received byte stream gave: every frame in order, and the
/// error that ends the connection, if any.
#[derive(Debug, Default)]
pub struct StreamOutcome {
    /// Frames, in stream order.
    pub frames: Vec<Frame>,
    /// Why the stream was refused.
    pub error: Option<FrameError>,
}

/// What [`internode_stream`] reached, for tests that want to know a seed
/// gets past the frame layer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reached {
    /// Frames decoded.
    pub frames: usize,
    /// Request frames whose body decoded as their endpoint's request.
    pub requests: usize,
    /// Failure frames whose body decoded as a `RemoteError`.
    pub failures: usize,
    /// (message type, frame body) pairs that decoded, over every type.
    pub messages: usize,
    /// The error that ended the stream.
    pub error: Option<FrameError>,
}

/// The received stream of an established connection (after the handshake,
/// with the [`NullCipher`] so the fuzzer reaches the frame layer).
pub fn internode_frame(data: &[u8]) {
    internode_stream(data);
}

/// [`internode_frame`], returning what it reached.
///
/// - Fed byte by byte, the decoders must agree exactly with a reference
///   model of the layout (frames, and the error: a frame announcing more
///   than [`MAX_FRAME`] is `TooLarge` with its length as soon as its 4-byte
///   header is in).
/// - Fed in awkward chunks and all at once, they must refuse the stream iff
///   the model does, return a prefix of the model's frames, and all of them
///   when the stream is not refused.
/// - The decoders' buffers never grow past what the bytes received and the
///   frame limit justify, whatever length a header announces.
/// - Re-encoding the frames gives back the exact bytes, which decode to the
///   same frames.
/// - Every frame body is decoded as every message type; a request body
///   also through a [`Dispatcher`], as a node serves it. A message that
///   decodes re-encodes and decodes to an equal value.
pub fn internode_stream(data: &[u8]) -> Reached {
    let (model, plain) = model(data, MAX_FRAME);

    let fine = feed(data, MAX_FRAME, std::iter::repeat(1));
    assert_eq!(fine.frames, model.frames, "byte by byte: frames differ");
    assert_eq!(
        fine.error.as_ref().map(error_kind),
        model.error.as_ref().map(error_kind),
        "byte by byte: the error differs ({:?} vs the model's {:?})",
        fine.error,
        model.error
    );
    for (how, outcome) in [
        (
            "awkward",
            feed(data, MAX_FRAME, AWKWARD.iter().copied().cycle()),
        ),
        (
            "all at once",
            feed(data, MAX_FRAME, std::iter::once(data.len().max(1))),
        ),
    ] {
        assert_eq!(
            outcome.error.is_some(),
            model.error.is_some(),
            "{how}: {:?}, the model {:?}",
            outcome.error,
            model.error
        );
        assert!(
            model.frames.starts_with(&outcome.frames),
            "{how}: frames are not a prefix of the model's"
        );
        if outcome.error.is_none() {
            assert_eq!(
                outcome.frames.len(),
                model.frames.len(),
                "{how}: frames missing"
            );
        }
    }

    // The layout is canonical: the frames re-encode to the bytes they came
    // from, and those sealed again decode to the same frames.
    let mut again = Default::default();
    for f in &model.frames {
        match f {
            Frame::Request { id, endpoint, body } => put_request(&mut again, *id, *endpoint, body),
            Frame::Reply { id, body } => put_answer(&mut again, *id, true, body),
            Frame::Failure { id, body } => put_answer(&mut again, *id, false, body),
        }
    }
    assert!(
        again[..] == plain[..],
        "re-encoded frames differ from the stream's"
    );
    let mut wire = Vec::new();
    seal_records(&NullCipher, &mut 0, &again, &mut wire).expect("NullCipher seals anything");
    let resealed = feed(&wire, MAX_FRAME, std::iter::once(wire.len().max(1)));
    assert_eq!(resealed.error, None, "re-sealed frames are refused");
    assert_eq!(resealed.frames, model.frames, "re-sealed frames differ");

    let mut reached = Reached {
        frames: model.frames.len(),
        error: model.error,
        ..Reached::default()
    };
    for f in &model.frames {
        check_frame(f, &mut reached);
    }
    reached
}

/// Feeds `stream` to the decoders as a connection's reader does (open the
/// records received, then cut every complete frame), in pieces of the given
/// sizes.
pub fn feed(stream: &[u8], max_frame: usize, chunks: impl Iterator<Item = usize>) -> StreamOutcome {
    let mut records = RecordDecoder::new();
    let mut frames = FrameDecoder::new(max_frame);
    let mut out = StreamOutcome::default();
    let mut rest = stream;
    for size in chunks {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.clamp(1, rest.len()));
        rest = tail;
        records.buffer().extend_from_slice(chunk);
        let opened = records.open_into(&NullCipher, &mut frames);
        check_buffers(&mut records, &mut frames, max_frame, chunk.len());
        if let Err(e) = opened {
            out.error = Some(e);
            return out;
        }
        loop {
            match frames.next_frame() {
                Ok(Some(f)) => out.frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    check_buffers(&mut records, &mut frames, max_frame, chunk.len());
                    out.error = Some(e);
                    return out;
                }
            }
        }
    }
    out
}

/// The decoders hold at most a partial record, a partial frame (under the
/// limit: a larger one is refused from its header) and one chunk; growing a
/// buffer at most doubles it. A buffer reserved from an announced length
/// breaks this bound.
fn check_buffers(
    records: &mut RecordDecoder,
    frames: &mut FrameDecoder,
    max_frame: usize,
    chunk: usize,
) {
    let record_live = 2 + MAX_RECORD + chunk;
    let record_bound = (2 * MAX_RECORD).max(2 * record_live);
    let frame_live = 4 + max_frame + record_live;
    let frame_bound = MAX_RECORD.max(2 * frame_live);
    let (rc, fc) = (records.buffer().capacity(), frames.buffer().capacity());
    assert!(
        rc <= record_bound,
        "the record buffer holds {rc} bytes (bound {record_bound})"
    );
    assert!(
        fc <= frame_bound,
        "the frame buffer holds {fc} bytes (bound {frame_bound}, frame limit {max_frame})"
    );
}

/// A reference model of the layout, written from `frame.rs`'s description
/// (records `u16 BE len ‖ ciphertext`, the null tag 16 zero bytes; frames
/// `u32 LE len ‖ kind ‖ id ‖ [endpoint] ‖ body`): the outcome of a stream
/// fed byte by byte, and the plaintext of its complete frames.
pub fn model(stream: &[u8], max_frame: usize) -> (StreamOutcome, Vec<u8>) {
    let mut out = StreamOutcome::default();
    let mut plain = Vec::new();
    let mut framed = 0; // plaintext consumed by complete frames
    let mut at = 0;
    loop {
        if stream.len() - at < 2 {
            break;
        }
        let len = u16::from_be_bytes([stream[at], stream[at + 1]]) as usize;
        if len < TAG_LEN {
            out.error = Some(FrameError::Malformed("record shorter than its tag"));
            break;
        }
        if stream.len() - at - 2 < len {
            break;
        }
        let ciphertext = &stream[at + 2..at + 2 + len];
        at += 2 + len;
        let (text, tag) = ciphertext.split_at(len - TAG_LEN);
        if tag.iter().any(|b| *b != 0) {
            out.error = Some(FrameError::Decrypt);
            break;
        }
        plain.extend_from_slice(text);
        // Every frame complete in the plaintext so far.
        while plain.len() - framed >= 4 {
            let flen = u32::from_le_bytes(plain[framed..framed + 4].try_into().unwrap()) as usize;
            if flen > max_frame {
                out.error = Some(FrameError::TooLarge {
                    len: flen,
                    max: max_frame,
                });
                break;
            }
            if flen < 1 + 8 {
                out.error = Some(FrameError::Malformed("frame shorter than its header"));
                break;
            }
            if plain.len() - framed - 4 < flen {
                break;
            }
            let f = &plain[framed + 4..framed + 4 + flen];
            let id = u64::from_le_bytes(f[1..9].try_into().unwrap());
            let frame = match f[0] {
                1 if flen >= 1 + 8 + 2 => Frame::Request {
                    id,
                    endpoint: u16::from_le_bytes([f[9], f[10]]),
                    body: Bytes::copy_from_slice(&f[11..]),
                },
                1 => {
                    out.error = Some(FrameError::Malformed("request without an endpoint"));
                    break;
                }
                2 => Frame::Reply {
                    id,
                    body: Bytes::copy_from_slice(&f[9..]),
                },
                3 => Frame::Failure {
                    id,
                    body: Bytes::copy_from_slice(&f[9..]),
                },
                _ => {
                    out.error = Some(FrameError::Malformed("unknown frame kind"));
                    break;
                }
            };
            out.frames.push(frame);
            framed += 4 + flen;
        }
        if out.error.is_some() {
            break;
        }
    }
    plain.truncate(framed);
    (out, plain)
}

/// What must agree between the decoders and the model: the variant, and a
/// refused length exactly (the wording of `Malformed` is free).
fn error_kind(e: &FrameError) -> (u8, usize, usize) {
    match e {
        FrameError::TooLarge { len, max } => (0, *len, *max),
        FrameError::Malformed(_) => (1, 0, 0),
        FrameError::Decrypt => (2, 0, 0),
    }
}

/// Decodes `body` as a `T`; what decodes must re-encode and decode to an
/// equal value.
fn round_trip<T: Message + PartialEq + Debug>(body: &Bytes) -> Result<T, WireError> {
    let v = T::decode(body.clone())?;
    let again = T::decode(v.encode())
        .unwrap_or_else(|e| panic!("a re-encoded {} does not decode: {e}", type_name::<T>()));
    assert_eq!(again, v, "{} round trip", type_name::<T>());
    Ok(v)
}

/// Marks a request that a [`RoundTrip`] handler decoded.
const DECODED: u32 = 0xF022;

/// Serves every endpoint by checking the decoded request's round trip and
/// answering [`DECODED`].
struct RoundTrip;

impl<E: Endpoint + PartialEq + Debug> Handler<E> for RoundTrip {
    fn handle(
        self: Arc<Self>,
        request: E,
        _ctx: CallContext,
    ) -> impl Future<Output = Result<E::Response, RemoteError>> + Send + 'static {
        match E::decode(request.encode()) {
            Ok(again) => assert_eq!(again, request, "{} round trip (dispatched)", E::NAME),
            Err(e) => panic!("a re-encoded {} request does not decode: {e}", E::NAME),
        }
        std::future::ready(Err(RemoteError::Other {
            code: DECODED,
            message: E::NAME.to_owned(),
        }))
    }
}

/// Every endpoint, once: its request and response decoders, and its
/// registration with the dispatcher.
macro_rules! endpoints {
    ($($e:ty),* $(,)?) => {
        /// The endpoint IDs this check decodes.
        const CHECKED_IDS: &[u16] = &[$(<$e as Endpoint>::ID),*];

        /// Decodes `body` as the request of `endpoint` (`None`: no such
        /// endpoint).
        fn decode_request(endpoint: u16, body: &Bytes) -> Option<Result<(), WireError>> {
            $(
                if endpoint == <$e as Endpoint>::ID {
                    return Some(round_trip::<$e>(body).map(drop));
                }
            )*
            None
        }

        /// Decodes `body` as every request and every response type;
        /// returns how many decoded.
        fn decode_every_endpoint(body: &Bytes) -> usize {
            let mut n = 0;
            $(
                n += usize::from(round_trip::<$e>(body).is_ok());
                n += usize::from(round_trip::<<$e as Endpoint>::Response>(body).is_ok());
            )*
            n
        }

        fn register_every_endpoint(d: &mut Dispatcher) {
            let h = Arc::new(RoundTrip);
            $( d.register::<$e, _>(h.clone()); )*
        }
    };
}

endpoints!(
    Ping,
    Read,
    Replicate,
    Coordinate,
    CoordinateFallback,
    StoreHint,
    AaeHashes,
    AaeKeys,
    AaeFetch,
    AaeRepair,
    Gossip,
    Join,
    Handoff,
    ClaimantChange,
    ListKeys,
    ListNamespaces,
    IndexQuery,
    ReapCheck,
    Reap,
    WatchKey,
    FeedRead,
    Overview,
);

/// The dispatcher every request frame goes through.
fn dispatcher() -> &'static Dispatcher {
    static D: OnceLock<Dispatcher> = OnceLock::new();
    D.get_or_init(|| {
        let mut listed: Vec<u16> = ENDPOINT_IDS.iter().map(|(id, _)| *id).collect();
        let mut checked = CHECKED_IDS.to_vec();
        listed.sort_unstable();
        checked.sort_unstable();
        assert_eq!(
            listed, checked,
            "ENDPOINT_IDS and the endpoints this check decodes differ: add the new endpoint to `endpoints!`"
        );
        let mut d = Dispatcher::new();
        register_every_endpoint(&mut d);
        d
    })
}

/// The value of a future that must be ready at once.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a dispatched request was not answered at once"),
    }
}

fn check_frame(f: &Frame, reached: &mut Reached) {
    let body = match f {
        Frame::Request { endpoint, body, .. } => {
            let endpoint = *endpoint;
            let direct = decode_request(endpoint, body);
            let ctx = CallContext {
                peer: NodeId::from("fuzz"),
                version: PROTOCOL_VERSION,
            };
            let d = dispatcher();
            let name = ENDPOINT_IDS
                .iter()
                .find(|(id, _)| *id == endpoint)
                .map(|(_, n)| *n);
            assert_eq!(
                d.name(endpoint),
                name.unwrap_or("unknown"),
                "endpoint {endpoint}"
            );
            match (direct, ready(d.dispatch(endpoint, body.clone(), ctx))) {
                (None, Err(RemoteError::UnknownEndpoint(e))) if e == endpoint => {}
                (Some(Ok(())), Err(RemoteError::Other { code, message }))
                    if code == DECODED && Some(message.as_str()) == name =>
                {
                    reached.requests += 1;
                }
                (Some(Err(_)), Err(RemoteError::BadRequest(_))) => {}
                (direct, answer) => panic!(
                    "endpoint {endpoint}: decoding gave {direct:?} but the dispatcher answered {answer:?}"
                ),
            }
            body
        }
        Frame::Reply { body, .. } => body,
        Frame::Failure { body, .. } => {
            if round_trip::<RemoteError>(body).is_ok() {
                reached.failures += 1;
            }
            body
        }
    };
    reached.messages += decode_every_endpoint(body);
    // The handshake payload and the parts of a client write are messages
    // too (the former only ever decoded after authentication).
    reached.messages += usize::from(round_trip::<Hello>(body).is_ok())
        + usize::from(round_trip::<RemoteError>(body).is_ok())
        + usize::from(round_trip::<WriteRequest>(body).is_ok())
        + usize::from(round_trip::<Content>(body).is_ok())
        + usize::from(round_trip::<VersionVector>(body).is_ok())
        + usize::from(round_trip::<Quorum>(body).is_ok());
}

// ---------------------------------------------------------------------------
// handshake

/// The cluster secret of the handshake check: fixed, so the check is
/// deterministic on the responder side.
pub fn fuzz_secret() -> ClusterSecret {
    ClusterSecret::from_hex(&"5a".repeat(32)).expect("a valid secret")
}

/// The hello both sides of the check send.
pub fn fuzz_hello(node: &str) -> Hello {
    Hello::new(node, "127.0.0.1:7071", None)
}

/// The input as a responder's received first message, and as an
/// initiator's received answer. Neither can prove the secret (a random
/// input cannot produce a valid AEAD tag under the PSK-derived key, nor one
/// bound to the initiator's fresh ephemeral key), so both must be refused,
/// as `BadSecret`: nothing in the payload may be looked at before it is
/// authenticated.
///
/// Then the input as the whole byte stream a connection receives (`u16 BE
/// length ‖ message ‖ whatever follows`, then EOF), through the async
/// `respond` and `initiate`: they must fail for the reason the length
/// prefix and the stream's end dictate, and read nothing past the first
/// message (a peer that fails the handshake gets no further byte parsed).
pub fn handshake(data: &[u8]) {
    let secret = fuzz_secret();
    match accept_first(&secret, &fuzz_hello("responder"), data) {
        Ok(_) => panic!("a first message of {} bytes proved the secret", data.len()),
        Err(e) => assert_eq!(e, HandshakeError::BadSecret, "responder"),
    }
    let (initiator, _first) = Initiator::start(&secret, fuzz_hello("initiator"));
    match initiator.finish(data) {
        Ok(_) => panic!("an answer of {} bytes proved the secret", data.len()),
        Err(e) => assert_eq!(e, HandshakeError::BadSecret, "initiator"),
    }
    handshake_stream(data);
}

/// The runtime of the stream half of [`handshake`].
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

fn handshake_stream(data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // What reading one handshake message from `data` then EOF must give,
    // and how many bytes it may consume.
    let (want, consumed) = match data {
        [] | [_] => ("closed", data.len()),
        [a, b, rest @ ..] => match u16::from_be_bytes([*a, *b]) as usize {
            0 => ("malformed", 2),
            n if n > MAX_HANDSHAKE_MESSAGE => ("malformed", 2),
            n if rest.len() < n => ("closed", data.len()),
            n => ("bad_secret", 2 + n),
        },
    };
    let secret = fuzz_secret();
    let deadline = std::time::Duration::from_secs(5);
    for responder in [true, false] {
        let side = if responder { "respond" } else { "initiate" };
        let (error, rest) = runtime().block_on(async {
            // Room for the input and the initiator's own first message.
            let (mut peer, mut conn) = tokio::io::duplex(data.len() + 2 * MAX_HANDSHAKE_MESSAGE);
            peer.write_all(data).await.expect("fits the pipe");
            peer.shutdown().await.expect("EOF after the input");
            let r = if responder {
                respond(&mut conn, &secret, &fuzz_hello("responder"), deadline)
                    .await
                    .map(drop)
            } else {
                initiate(&mut conn, &secret, fuzz_hello("initiator"), deadline)
                    .await
                    .map(drop)
            };
            let Err(error) = r else {
                panic!("{side}: a stream of {} bytes proved the secret", data.len());
            };
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest)
                .await
                .expect("the rest of the input");
            (error, rest)
        });
        assert_eq!(error.reason(), want, "{side}: {error}");
        assert!(
            rest[..] == data[consumed..],
            "{side} read {} bytes of {}, not {consumed}",
            data.len() - rest.len(),
            data.len()
        );
    }
}

// ---------------------------------------------------------------------------
// Seeds: valid inputs, written by the regression test's `write_seeds`.

fn object(tag: &str) -> Object {
    let mut first = Content::value(format!("value {tag}"), "text/plain", 1_700_000_000_000_000);
    first.meta.user = vec![("a".into(), tag.into())];
    first.meta.idempotency = vec![IdempotencyRecord {
        key: tag.into(),
        at_micros: 1_700_000_000_000_000,
    }];
    let one = DvvSet::update(&VersionVector::new(), &Object::new(), "n1", first);
    let two = DvvSet::update(
        &VersionVector::new(),
        &one,
        "n2",
        Content::value(vec![0u8, 255, 1], "application/octet-stream", 2),
    );
    DvvSet::update(&two.join(), &two, "n1", Content::tombstone(3))
}

fn write_request() -> WriteRequest {
    WriteRequest {
        key: Bytes::from_static(b"ns\0key"),
        // Metadata of every kind, so the seed reaches the typed decoders.
        content: Content::value("v", "text/plain", 9).with_meta(Meta::from_pairs(vec![
            ("dynkv.idem.r".into(), "5".into()),
            ("riak.meta.a".into(), "b".into()),
            ("riak.link.00000".into(), "b/k/t".into()),
            ("riak.index.f_int".into(), "1".into()),
            ("x".into(), "y".into()),
        ])),
        context: VersionVector::from_pairs([("n1".to_owned(), 3), ("n2".to_owned(), 1)]),
        w: Quorum::Count(2),
        sloppy: true,
        timeout_ms: 500,
        idempotency_key: Some("idem-1".into()),
        n_val: Some(3),
        supersede: false,
        datatype_op: None,
    }
}

/// One request of every endpoint, each as `(endpoint, body)`.
pub fn seed_requests() -> Vec<(u16, Bytes)> {
    fn r<E: Endpoint>(e: E) -> (u16, Bytes) {
        (E::ID, e.encode())
    }
    vec![
        r(Ping {}),
        r(Read {
            key: Bytes::from_static(b"k"),
            hint_for: Some(NodeId::from("n3")),
            digest_only: true,
        }),
        r(Replicate {
            key: Bytes::from_static(b"k"),
            object: object("r"),
        }),
        r(Coordinate(write_request())),
        r(CoordinateFallback(write_request())),
        r(StoreHint {
            owner: NodeId::from("n2"),
            key: Bytes::from_static(b"k"),
            object: object("h"),
        }),
        r(AaeHashes {
            partition: 3,
            shape: (10, 5),
            level: 1,
            indices: vec![0, 7, 31],
        }),
        r(AaeKeys {
            partition: 3,
            shape: (10, 5),
            leaves: vec![1, 2],
        }),
        r(AaeFetch {
            keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        }),
        r(AaeRepair {
            items: vec![(Bytes::from_static(b"a"), object("a"))],
        }),
        r(Gossip {
            state: Bytes::from_static(b"opaque cluster state"),
        }),
        r(Join {
            node: NodeId::from("n4"),
            addr: "10.0.0.4:7070".into(),
            partitions: 64,
        }),
        r(Handoff {
            partition: 5,
            items: vec![(Bytes::from_static(b"k"), object("k"))],
        }),
        r(ClaimantChange::Leave {
            node: NodeId::from("n2"),
        }),
        r(ListKeys {
            partition: 9,
            prefix: Bytes::from_static(b"ns\0"),
            after: Some(Bytes::from_static(b"ns\0k1")),
            limit: 100,
        }),
        r(ListNamespaces {
            partition: 9,
            prefix: Bytes::from_static(&[0xff]),
            after: None,
            limit: 10,
        }),
        r(IndexQuery {
            partitions: vec![1, 2],
            scope: Bytes::from_static(b"\xff\x01b"),
            field: "f_bin".into(),
            from: Bytes::from_static(b"a"),
            to: Bytes::from_static(b"z"),
            after: Some((Bytes::from_static(b"m"), Bytes::from_static(b"\xff\x01bk"))),
            term_regex: Some("^v".into()),
            limit: 10,
        }),
        r(WatchKey {
            key: Bytes::from_static(b"k"),
            context: VersionVector::from_pairs([("n1".to_string(), 2)]),
            wait_ms: 30_000,
        }),
        r(FeedRead {
            after: (1, 2),
            upto: (3, u64::MAX),
            prefix: Bytes::from_static(b"user/"),
            limit: 100,
        }),
        r(Overview {}),
    ]
}

/// One answer of every response type, and failures.
pub fn seed_answers() -> Vec<(bool, Bytes)> {
    vec![
        (
            true,
            Pong {
                node: NodeId::from("n2"),
                clock: 1_764_650_000_000_000,
            }
            .encode(),
        ),
        (
            true,
            NodeSummary {
                node: "n2".into(),
                uptime_ms: 1_000,
                window_ms: 10_000,
                ..Default::default()
            }
            .encode(),
        ),
        (
            true,
            WatchReply {
                object: Some(object("w")),
            }
            .encode(),
        ),
        (
            true,
            FeedChunk {
                entries: vec![FeedEntry {
                    position: (10, 11),
                    key: Bytes::from_static(b"user/1"),
                    actor: "n1".into(),
                    counter: 3,
                    context: VersionVector::from_pairs([("n1".to_string(), 3)]),
                    content: Content::value("v", "text/plain", 10),
                }],
                reached: (12, u64::MAX),
                floor: 5,
            }
            .encode(),
        ),
        (
            true,
            ReadReply {
                object: Some(object("rr")),
                digest: Some(42),
                service_micros: Some(120),
                received_micros: Some(1_700_000_000_000_000),
            }
            .encode(),
        ),
        (
            true,
            WriteOutcome {
                object: object("wo"),
                replayed: false,
                dot: Some(("n1".into(), 4)),
                replicas: Default::default(),
            }
            .encode(),
        ),
        (true, Hashes(vec![1, u64::MAX]).encode()),
        (
            true,
            KeyDigests(vec![(Bytes::from_static(b"a"), 7)]).encode(),
        ),
        (true, Objects(vec![Some(object("o")), None]).encode()),
        (true, Repaired(3).encode()),
        (true, Keys(vec![Bytes::from_static(b"ns\0a")]).encode()),
        (
            true,
            IndexEntries(vec![(Bytes::from_static(b"t"), Bytes::from_static(b"k"))]).encode(),
        ),
        (
            true,
            ClusterStateReply(Bytes::from_static(b"state")).encode(),
        ),
        (
            false,
            RemoteError::QuorumNotMet {
                op: "write".into(),
                needed: 2,
                acked: 1,
                detail: vec![(NodeId::from("n3"), "timeout".into())],
            }
            .encode(),
        ),
        (false, RemoteError::UnknownEndpoint(77).encode()),
    ]
}

/// Frames sealed into records: `split` ≥ 1 cuts the plaintext into records
/// of at most that many bytes (frames then span records), 0 seals each
/// frame in its own record.
pub fn seal(frames: &[(u64, Option<u16>, bool, Bytes)], split: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut nonce = 0;
    let mut all = Vec::new();
    for (id, endpoint, ok, body) in frames {
        let mut one = Default::default();
        match endpoint {
            Some(e) => put_request(&mut one, *id, *e, body),
            None => put_answer(&mut one, *id, *ok, body),
        }
        if split == 0 {
            seal_records(&NullCipher, &mut nonce, &one, &mut wire).unwrap();
        }
        all.extend_from_slice(&one);
    }
    if split > 0 {
        for piece in all.chunks(split) {
            seal_records(&NullCipher, &mut nonce, piece, &mut wire).unwrap();
        }
    }
    wire
}

/// Seed streams of the `internode_frame` target, as `(name, bytes)`.
pub fn internode_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let requests: Vec<_> = seed_requests()
        .into_iter()
        .enumerate()
        .map(|(i, (e, body))| (i as u64 + 1, Some(e), true, body))
        .collect();
    let answers: Vec<_> = seed_answers()
        .into_iter()
        .enumerate()
        .map(|(i, (ok, body))| (i as u64 + 100, None, ok, body))
        .collect();
    let mut too_large = seal(&requests[..1], 0);
    let mut header = Vec::new();
    header.extend_from_slice(&((MAX_FRAME + 1) as u32).to_le_bytes());
    header.push(1);
    seal_records(&NullCipher, &mut 1, &header, &mut too_large).unwrap();
    vec![
        ("seed-requests", seal(&requests, 0)),
        ("seed-answers-coalesced", seal(&answers, usize::MAX)),
        ("seed-requests-split-records", seal(&requests[..4], 37)),
        ("seed-too-large", too_large),
    ]
}

/// Seed messages of the `handshake` target, as `(name, bytes)`: real
/// handshake messages under other secrets (so the check's refusal holds).
pub fn handshake_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let other = ClusterSecret::from_hex(&"a5".repeat(32)).expect("a valid secret");
    let (initiator, first) = Initiator::start(&other, fuzz_hello("n1"));
    let (answer, _) = accept_first(&other, &fuzz_hello("n2"), &first).expect("same secret");
    assert!(
        initiator.finish(&answer).is_ok(),
        "a real handshake completes"
    );
    let mut truncated = first.clone();
    truncated.truncate(40);
    // As a connection receives it: length-prefixed, then the first bytes
    // of a record stream the handshake must leave unread.
    let mut framed = (first.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&first);
    framed.extend_from_slice(&[0, 16, 1, 2, 3]);
    vec![
        ("seed-first-other-secret", first),
        ("seed-answer-other-secret", answer),
        ("seed-first-truncated", truncated),
        ("seed-framed-first-other-secret", framed),
    ]
}
