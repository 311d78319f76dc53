//! The handshake that opens every internode connection: both ends prove
//! they hold the cluster secret before anything else is read, agree on a
//! message version, and derive the keys of the encrypted stream.
//!
//! ## Why Noise `NNpsk0`
//! The pattern is `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (the `snow`
//! crate), with a pre-shared key derived from the cluster secret. The
//! initiator's first message is already encrypted under a key mixed from
//! the PSK, so a responder that cannot open it drops the connection after
//! those bytes and nothing else; the responder's answer proves the PSK in
//! turn. Ephemeral Diffie-Hellman gives every connection fresh keys
//! (forward secrecy), and no secret, hash of it or reusable token ever
//! crosses the wire. One round trip, no certificates. Mutual TLS (rustls)
//! was the alternative: it needs a CA and per-node certificates to do what
//! one shared secret does here (TLS 1.3 external PSKs are not offered by
//! rustls), and the same AEAD underneath. Garage's secret handshake is the
//! anchor for the model.
//!
//! Each message is `u16 length (big-endian) ‖ Noise message`, at most
//! [`MAX_HANDSHAKE_MESSAGE`] bytes. The payloads carry each side's
//! [`Hello`] (node id, public address, message versions), encrypted.
//!
//! The sync cores ([`Initiator`], [`accept_first`]) do no I/O, so the
//! responder's parsing of untrusted bytes is fuzzed directly.

use std::sync::Arc;
use std::time::Duration;

use snow::{Builder, HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{FrameError, RecordCipher};
use crate::secret::ClusterSecret;
use crate::wire::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, WireError, WireForm};

/// The Noise protocol name.
pub const NOISE_PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// Bound to the handshake transcript: a peer speaking another protocol
/// (or another major version of this one) fails to authenticate.
const PROLOGUE: &[u8] = b"dynkv internode protocol 2";
/// Largest handshake message either side accepts.
pub const MAX_HANDSHAKE_MESSAGE: usize = 1024;

/// What each side tells the other, inside the encrypted handshake payloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's node id (so a misconfigured address is noticed).
    pub node: String,
    /// The sender's public API address (for views and clients).
    pub api_addr: String,
    /// Highest message version the sender speaks.
    pub max_version: u32,
    /// Lowest message version the sender speaks.
    pub min_version: u32,
}

impl Hello {
    /// This build's hello, with its versions capped at `pinned` when a
    /// rolling upgrade pins the cluster to an older message version.
    pub fn new(node: impl Into<String>, api_addr: impl Into<String>, pinned: Option<u32>) -> Self {
        let max = pinned
            .unwrap_or(PROTOCOL_VERSION)
            .clamp(MIN_PROTOCOL_VERSION, PROTOCOL_VERSION);
        Hello {
            node: node.into(),
            api_addr: api_addr.into(),
            max_version: max,
            min_version: MIN_PROTOCOL_VERSION,
        }
    }
}

/// The protobuf form of [`Hello`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireHello {
    /// Node id.
    #[prost(string, tag = "1")]
    pub node: String,
    /// Public API address.
    #[prost(string, tag = "2")]
    pub api_addr: String,
    /// Highest message version.
    #[prost(uint32, tag = "3")]
    pub max_version: u32,
    /// Lowest message version.
    #[prost(uint32, tag = "4")]
    pub min_version: u32,
}

impl WireForm for Hello {
    type Wire = WireHello;

    fn to_wire(&self) -> WireHello {
        WireHello {
            node: self.node.clone(),
            api_addr: self.api_addr.clone(),
            max_version: self.max_version,
            min_version: self.min_version,
        }
    }

    fn from_wire(w: WireHello) -> Result<Self, WireError> {
        if w.node.is_empty() || w.node.len() > 256 || w.api_addr.len() > 256 {
            return Err(WireError::Invalid(
                "hello with a bad node id or address".into(),
            ));
        }
        Ok(Hello {
            node: w.node,
            api_addr: w.api_addr,
            max_version: w.max_version,
            min_version: w.min_version,
        })
    }
}

/// Why a handshake failed; the reason is a metric label.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The peer does not hold the cluster secret (or tampered with the bytes).
    #[error("the peer failed to prove the cluster secret")]
    BadSecret,
    /// Bytes that cannot be a handshake.
    #[error("malformed handshake: {0}")]
    Malformed(String),
    /// No message version both sides speak.
    #[error(
        "no common message version (ours {ours_min}..={ours_max}, theirs {theirs_min}..={theirs_max})"
    )]
    Incompatible {
        /// Our range.
        ours_min: u32,
        /// Our range.
        ours_max: u32,
        /// Their range.
        theirs_min: u32,
        /// Their range.
        theirs_max: u32,
    },
    /// The peer closed the connection during the handshake: as seen from
    /// the initiator, what a peer with another secret does.
    #[error("the peer closed the connection during the handshake (wrong cluster secret?)")]
    Closed,
    /// Took too long.
    #[error("handshake timed out")]
    Timeout,
    /// Socket error.
    #[error("handshake I/O: {0}")]
    Io(String),
}

impl HandshakeError {
    /// The metric label of the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::BadSecret => "bad_secret",
            HandshakeError::Malformed(_) => "malformed",
            HandshakeError::Incompatible { .. } => "incompatible_version",
            HandshakeError::Closed => "closed",
            HandshakeError::Timeout => "timeout",
            HandshakeError::Io(_) => "io",
        }
    }
}

/// The AEAD of an established connection, shared by its reader and writer
/// (each keeps its own nonce counter).
#[derive(Clone)]
pub struct SessionCipher(Arc<StatelessTransportState>);

impl RecordCipher for SessionCipher {
    fn seal(&self, nonce: u64, plaintext: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
        self.0
            .write_message(nonce, plaintext, out)
            .map_err(|_| FrameError::Malformed("record too large to seal"))
    }

    fn open(&self, nonce: u64, ciphertext: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
        self.0
            .read_message(nonce, ciphertext, out)
            .map_err(|_| FrameError::Decrypt)
    }
}

/// An authenticated connection's keys and what the peer said.
pub struct Session {
    /// Seals and opens records.
    pub cipher: SessionCipher,
    /// The peer's hello.
    pub peer: Hello,
    /// The message version both sides use.
    pub version: u32,
}

fn builder() -> Builder<'static> {
    let params = NOISE_PATTERN.parse().expect("a valid Noise pattern");
    Builder::new(params)
        .prologue(PROLOGUE)
        .expect("prologue set once")
}

fn negotiate(ours: &Hello, theirs: &Hello) -> Result<u32, HandshakeError> {
    let version = ours.max_version.min(theirs.max_version);
    if version < ours.min_version.max(theirs.min_version) {
        return Err(HandshakeError::Incompatible {
            ours_min: ours.min_version,
            ours_max: ours.max_version,
            theirs_min: theirs.min_version,
            theirs_max: theirs.max_version,
        });
    }
    Ok(version)
}

fn decode_hello(payload: &[u8]) -> Result<Hello, HandshakeError> {
    <Hello as crate::wire::Message>::decode(bytes::Bytes::copy_from_slice(payload))
        .map_err(|e| HandshakeError::Malformed(e.to_string()))
}

fn encode_hello(h: &Hello) -> Vec<u8> {
    <Hello as crate::wire::Message>::encode(h).to_vec()
}

fn into_session(
    state: HandshakeState,
    peer: Hello,
    version: u32,
) -> Result<Session, HandshakeError> {
    let transport = state
        .into_stateless_transport_mode()
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    Ok(Session {
        cipher: SessionCipher(Arc::new(transport)),
        peer,
        version,
    })
}

/// The connecting side's state between its two steps.
pub struct Initiator {
    state: HandshakeState,
    hello: Hello,
}

impl Initiator {
    /// Starts a handshake; returns the state and the first message.
    pub fn start(secret: &ClusterSecret, hello: Hello) -> (Initiator, Vec<u8>) {
        let mut state = builder()
            .psk(0, &secret.handshake_key())
            .expect("psk slot 0 exists in NNpsk0")
            .build_initiator()
            .expect("a complete initiator configuration");
        let mut msg = vec![0u8; MAX_HANDSHAKE_MESSAGE];
        let n = state
            .write_message(&encode_hello(&hello), &mut msg)
            .expect("a hello fits a handshake message");
        msg.truncate(n);
        (Initiator { state, hello }, msg)
    }

    /// Reads the responder's answer.
    pub fn finish(mut self, answer: &[u8]) -> Result<Session, HandshakeError> {
        let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
        let n = self
            .state
            .read_message(answer, &mut payload)
            .map_err(|_| HandshakeError::BadSecret)?;
        let peer = decode_hello(&payload[..n])?;
        let version = negotiate(&self.hello, &peer)?;
        into_session(self.state, peer, version)
    }
}

/// The accepting side: checks the initiator's first message and, when it
/// proves the secret, returns the answer to send and the session.
pub fn accept_first(
    secret: &ClusterSecret,
    hello: &Hello,
    first: &[u8],
) -> Result<(Vec<u8>, Session), HandshakeError> {
    let mut state = builder()
        .psk(0, &secret.handshake_key())
        .expect("psk slot 0 exists in NNpsk0")
        .build_responder()
        .expect("a complete responder configuration");
    let mut payload = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let n = state
        .read_message(first, &mut payload)
        .map_err(|_| HandshakeError::BadSecret)?;
    let peer = decode_hello(&payload[..n])?;
    let version = negotiate(hello, &peer)?;
    let mut answer = vec![0u8; MAX_HANDSHAKE_MESSAGE];
    let n = state
        .write_message(&encode_hello(hello), &mut answer)
        .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
    answer.truncate(n);
    Ok((answer, into_session(state, peer, version)?))
}

async fn write_message<S: AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> Result<(), HandshakeError> {
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    s.write_all(&out)
        .await
        .map_err(|e| HandshakeError::Io(e.to_string()))
}

async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, HandshakeError> {
    let mut len = [0u8; 2];
    if let Err(e) = s.read_exact(&mut len).await {
        return Err(match e.kind() {
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                HandshakeError::Closed
            }
            _ => HandshakeError::Io(e.to_string()),
        });
    }
    let len = u16::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_HANDSHAKE_MESSAGE {
        return Err(HandshakeError::Malformed(format!(
            "handshake message of {len} bytes"
        )));
    }
    let mut msg = vec![0u8; len];
    s.read_exact(&mut msg).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
            HandshakeError::Closed
        }
        _ => HandshakeError::Io(e.to_string()),
    })?;
    Ok(msg)
}

/// Runs the initiator's side over a fresh connection, within `timeout`.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &ClusterSecret,
    hello: Hello,
    timeout: Duration,
) -> Result<Session, HandshakeError> {
    let run = async {
        let (initiator, first) = Initiator::start(secret, hello);
        write_message(stream, &first).await?;
        let answer = read_message(stream).await?;
        initiator.finish(&answer)
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

/// Runs the responder's side over an accepted connection, within
/// `timeout`. On failure nothing past the first message has been read.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &ClusterSecret,
    hello: &Hello,
    timeout: Duration,
) -> Result<Session, HandshakeError> {
    let run = async {
        let first = read_message(stream).await?;
        let (answer, session) = accept_first(secret, hello, &first)?;
        write_message(stream, &answer).await?;
        Ok(session)
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or(Err(HandshakeError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FrameDecoder, RecordDecoder, put_request, seal_records};

    fn hello(node: &str, max: u32) -> Hello {
        Hello {
            node: node.into(),
            api_addr: "127.0.0.1:7071".into(),
            max_version: max,
            min_version: 1,
        }
    }

    #[test]
    fn both_sides_agree_and_talk() {
        let secret = ClusterSecret::generate();
        let (init, first) = Initiator::start(&secret, hello("n1", 2));
        let (answer, server) = accept_first(&secret, &hello("n2", 1), &first).unwrap();
        let client = init.finish(&answer).unwrap();
        assert_eq!(client.peer.node, "n2");
        assert_eq!(server.peer.node, "n1");
        assert_eq!((client.version, server.version), (1, 1));
        // The stream keys match: what one seals the other opens.
        let mut plain = bytes::BytesMut::new();
        put_request(&mut plain, 9, 11, b"secret value");
        let mut wire = Vec::new();
        seal_records(&client.cipher, &mut 0, &plain, &mut wire).unwrap();
        assert!(!wire.windows(12).any(|w| w == b"secret value"));
        let mut rec = RecordDecoder::new();
        let mut frames = FrameDecoder::new(1024);
        rec.buffer().extend_from_slice(&wire);
        rec.open_into(&server.cipher, &mut frames).unwrap();
        assert!(frames.next_frame().unwrap().is_some());
    }

    #[test]
    fn a_wrong_secret_fails_on_the_first_message() {
        let (_, first) = Initiator::start(&ClusterSecret::generate(), hello("n1", 2));
        let r = accept_first(&ClusterSecret::generate(), &hello("n2", 2), &first);
        assert_eq!(r.err(), Some(HandshakeError::BadSecret));
        // And the secret is nowhere in the bytes sent.
        let secret = ClusterSecret::generate();
        let (_, first) = Initiator::start(&secret, hello("n1", 2));
        let key = secret.handshake_key();
        assert!(!first.windows(8).any(|w| w == &key[..8]));
    }

    #[test]
    fn versions_without_overlap_are_refused() {
        let secret = ClusterSecret::generate();
        let mut old = hello("n1", 1);
        old.min_version = 1;
        let mut new = hello("n2", 5);
        new.min_version = 3;
        let (_, first) = Initiator::start(&secret, old);
        assert!(matches!(
            accept_first(&secret, &new, &first),
            Err(HandshakeError::Incompatible { .. })
        ));
    }

    #[tokio::test]
    async fn over_a_socket_pair() {
        let secret = ClusterSecret::generate();
        let (mut a, mut b) = tokio::io::duplex(4096);
        let s2 = secret.clone();
        let server = tokio::spawn(async move {
            respond(&mut b, &s2, &hello("n2", 2), Duration::from_secs(5)).await
        });
        let client = initiate(&mut a, &secret, hello("n1", 2), Duration::from_secs(5))
            .await
            .unwrap();
        let server = server.await.unwrap().unwrap();
        assert_eq!((client.version, server.version), (2, 2));
    }

    proptest::proptest! {
        #[test]
        fn the_responder_never_panics(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1100)) {
            let secret = ClusterSecret::from_hex(&"11".repeat(32)).unwrap();
            proptest::prop_assert!(accept_first(&secret, &hello("n2", 2), &raw).is_err());
        }
    }
}
