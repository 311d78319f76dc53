//! The byte layout of an internode connection after its handshake, as pure
//! functions over buffers (no I/O), so the decoders can be fuzzed alone.
//!
//! Two layers, as in TLS:
//! - **Records** carry the encrypted stream: `u16 length (big-endian) ‖
//!   ciphertext`, each ciphertext one AEAD message of at most 65,535 bytes
//!   (Noise's limit) sealed with the next nonce of its direction.
//! - **Frames** are cut from the decrypted stream: `u32 length
//!   (little-endian) ‖ kind ‖ request id ‖ [endpoint] ‖ body`. A frame may
//!   span records and a record may hold many frames, so a writer coalesces
//!   every frame that is ready into one socket write.
//!
//! Every length is checked against its limit before anything is allocated
//! for it: a peer cannot make this node reserve memory by announcing a
//! large frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest AEAD message (ciphertext with its tag) in one record.
pub const MAX_RECORD: usize = 65_535;
/// Bytes the AEAD adds to each message.
pub const TAG_LEN: usize = 16;
/// Largest plaintext one record carries.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_RECORD - TAG_LEN;

const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_FAILURE: u8 = 3;
/// kind + id.
const REPLY_HEADER: usize = 1 + 8;
/// kind + id + endpoint.
const REQUEST_HEADER: usize = 1 + 8 + 2;

/// One decoded frame; its body is a zero-copy slice of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A request for `endpoint`, to be answered under `id`.
    Request {
        /// Correlates the answer.
        id: u64,
        /// Which message type the body is.
        endpoint: u16,
        /// The encoded request.
        body: Bytes,
    },
    /// The successful answer to request `id`.
    Reply {
        /// The request answered.
        id: u64,
        /// The encoded response.
        body: Bytes,
    },
    /// Request `id` failed on the peer; the body is a `RemoteError`.
    Failure {
        /// The request answered.
        id: u64,
        /// The encoded `RemoteError`.
        body: Bytes,
    },
}

/// Why the byte stream cannot be a valid connection any more (the
/// connection is closed: there is no resynchronising inside a stream).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A frame announced more bytes than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A record or frame that cannot be one.
    #[error("malformed stream: {0}")]
    Malformed(&'static str),
    /// A record did not authenticate (tampering, or a wrong key).
    #[error("a record failed authentication")]
    Decrypt,
}

/// The length field of a request frame with a body of `body` bytes: what
/// the receiver checks against its limit.
pub fn request_len(body: usize) -> usize {
    REQUEST_HEADER + body
}

/// The length field of an answer frame with a body of `body` bytes.
pub fn answer_len(body: usize) -> usize {
    REPLY_HEADER + body
}

/// Appends a request frame.
pub fn put_request(out: &mut BytesMut, id: u64, endpoint: u16, body: &[u8]) {
    out.reserve(4 + REQUEST_HEADER + body.len());
    out.put_u32_le((REQUEST_HEADER + body.len()) as u32);
    out.put_u8(KIND_REQUEST);
    out.put_u64_le(id);
    out.put_u16_le(endpoint);
    out.put_slice(body);
}

/// Appends an answer frame: a reply when `ok`, else a failure.
pub fn put_answer(out: &mut BytesMut, id: u64, ok: bool, body: &[u8]) {
    out.reserve(4 + REPLY_HEADER + body.len());
    out.put_u32_le((REPLY_HEADER + body.len()) as u32);
    out.put_u8(if ok { KIND_REPLY } else { KIND_FAILURE });
    out.put_u64_le(id);
    out.put_slice(body);
}

/// Cuts frames from the decrypted stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames above `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::with_capacity(MAX_RECORD),
            max_frame,
        }
    }

    /// The buffer decrypted bytes are appended to.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends decrypted bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if len < REPLY_HEADER {
            return Err(FrameError::Malformed("frame shorter than its header"));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        self.buf.advance(4);
        let mut frame = self.buf.split_to(len).freeze();
        let kind = frame.get_u8();
        let id = frame.get_u64_le();
        Ok(Some(match kind {
            KIND_REQUEST => {
                if frame.len() < 2 {
                    return Err(FrameError::Malformed("request without an endpoint"));
                }
                let endpoint = frame.get_u16_le();
                Frame::Request {
                    id,
                    endpoint,
                    body: frame,
                }
            }
            KIND_REPLY => Frame::Reply { id, body: frame },
            KIND_FAILURE => Frame::Failure { id, body: frame },
            _ => return Err(FrameError::Malformed("unknown frame kind")),
        }))
    }
}

/// The AEAD of one direction of a connection: seals or opens message
/// number `nonce` (each nonce used once, in order).
pub trait RecordCipher {
    /// Encrypts `plaintext` into `out`, returning the bytes written.
    fn seal(&self, nonce: u64, plaintext: &[u8], out: &mut [u8]) -> Result<usize, FrameError>;
    /// Decrypts and authenticates `ciphertext` into `out`.
    fn open(&self, nonce: u64, ciphertext: &[u8], out: &mut [u8]) -> Result<usize, FrameError>;
}

/// Seals a plaintext stream chunk into records appended to `out`.
pub fn seal_records(
    cipher: &impl RecordCipher,
    nonce: &mut u64,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    for chunk in plaintext.chunks(MAX_RECORD_PLAINTEXT) {
        let at = out.len();
        out.resize(at + 2 + chunk.len() + TAG_LEN, 0);
        let n = cipher.seal(*nonce, chunk, &mut out[at + 2..])?;
        *nonce += 1;
        out[at..at + 2].copy_from_slice(&(n as u16).to_be_bytes());
        out.truncate(at + 2 + n);
    }
    Ok(())
}

/// Cuts records from the received byte stream and opens them.
#[derive(Debug, Default)]
pub struct RecordDecoder {
    buf: BytesMut,
    nonce: u64,
}

impl RecordDecoder {
    /// A decoder expecting nonce 0 first.
    pub fn new() -> Self {
        RecordDecoder {
            buf: BytesMut::with_capacity(2 * MAX_RECORD),
            nonce: 0,
        }
    }

    /// The buffer socket reads append to.
    pub fn buffer(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Opens every complete record into `frames`; returns how many.
    pub fn open_into(
        &mut self,
        cipher: &impl RecordCipher,
        frames: &mut FrameDecoder,
    ) -> Result<usize, FrameError> {
        let mut opened = 0;
        loop {
            if self.buf.len() < 2 {
                return Ok(opened);
            }
            let len = u16::from_be_bytes([self.buf[0], self.buf[1]]) as usize;
            if len < TAG_LEN {
                return Err(FrameError::Malformed("record shorter than its tag"));
            }
            if self.buf.len() < 2 + len {
                return Ok(opened);
            }
            let out = frames.buffer();
            let at = out.len();
            out.resize(at + len, 0);
            let n = cipher.open(self.nonce, &self.buf[2..2 + len], &mut out[at..])?;
            out.truncate(at + n);
            self.nonce += 1;
            self.buf.advance(2 + len);
            opened += 1;
        }
    }
}

/// A cipher that only frames, for tests and fuzzing of the layout: it
/// "seals" by copying and appending a zero tag.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullCipher;

impl RecordCipher for NullCipher {
    fn seal(&self, _nonce: u64, plaintext: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
        out[..plaintext.len()].copy_from_slice(plaintext);
        out[plaintext.len()..plaintext.len() + TAG_LEN].fill(0);
        Ok(plaintext.len() + TAG_LEN)
    }

    fn open(&self, _nonce: u64, ciphertext: &[u8], out: &mut [u8]) -> Result<usize, FrameError> {
        let n = ciphertext.len() - TAG_LEN;
        if ciphertext[n..].iter().any(|b| *b != 0) {
            return Err(FrameError::Decrypt);
        }
        out[..n].copy_from_slice(&ciphertext[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(stream: &[u8], max: usize) -> Result<Vec<Frame>, FrameError> {
        let mut rec = RecordDecoder::new();
        let mut frames = FrameDecoder::new(max);
        let mut out = Vec::new();
        // Feed in awkward pieces to exercise partial records and frames.
        for piece in stream.chunks(7) {
            rec.buffer().extend_from_slice(piece);
            rec.open_into(&NullCipher, &mut frames)?;
            while let Some(f) = frames.next_frame()? {
                out.push(f);
            }
        }
        Ok(out)
    }

    #[test]
    fn frames_survive_records_and_coalescing() {
        let big = vec![7u8; 200_000];
        let mut plain = BytesMut::new();
        put_request(&mut plain, 1, 11, b"hello");
        put_answer(&mut plain, 2, true, &big);
        put_answer(&mut plain, 3, false, b"");
        let mut wire = Vec::new();
        let mut nonce = 0;
        seal_records(&NullCipher, &mut nonce, &plain, &mut wire).unwrap();
        assert!(nonce >= 4, "a 200 kB frame spans several records");
        let frames = decode_all(&wire, 1 << 20).unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Request {
                    id: 1,
                    endpoint: 11,
                    body: Bytes::from_static(b"hello")
                },
                Frame::Reply {
                    id: 2,
                    body: Bytes::from(big)
                },
                Frame::Failure {
                    id: 3,
                    body: Bytes::new()
                },
            ]
        );
    }

    #[test]
    fn oversized_frames_are_refused_from_their_header() {
        let mut plain = BytesMut::new();
        plain.put_u32_le(10_000_000);
        let mut frames = FrameDecoder::new(1 << 20);
        frames.extend(&plain);
        assert_eq!(
            frames.next_frame(),
            Err(FrameError::TooLarge {
                len: 10_000_000,
                max: 1 << 20
            })
        );
    }

    #[test]
    fn tampered_records_fail() {
        let mut plain = BytesMut::new();
        put_request(&mut plain, 1, 1, b"x");
        let mut wire = Vec::new();
        seal_records(&NullCipher, &mut 0, &plain, &mut wire).unwrap();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(decode_all(&wire, 1024), Err(FrameError::Decrypt));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            let _ = decode_all(&raw, 1 << 16);
            let mut frames = FrameDecoder::new(1 << 16);
            frames.extend(&raw);
            while let Ok(Some(_)) = frames.next_frame() {}
        }
    }
}
