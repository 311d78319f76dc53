//! The PBC frame codec: `length: u32 BE | code: u8 | body`, where `length`
//! counts the code byte and the body.
//!
//! Pure: the decoder takes bytes already read and returns frames; the
//! listener owns the socket. A declared length above the limit is refused
//! from the 4-byte header alone, before any buffer grows for the body, and
//! a zero length (no code byte) is refused as malformed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The default largest frame (code byte plus body) a node accepts: Riak
/// objects are capped well below this, and a bigger frame is either a bug
/// or an attempt to make the node allocate.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;

/// One message: its code and its protobuf body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message code (see [`crate::codes`]).
    pub code: u8,
    /// The protobuf body (may be empty).
    pub body: Bytes,
}

/// Why a byte stream is not a sequence of frames: the connection ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is above the limit.
    #[error("frame of {len} bytes is above the limit of {max}")]
    TooLarge {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The length prefix is zero: there is no message code.
    #[error("frame without a message code")]
    Empty,
}

/// Checks a length prefix: the number of bytes (code and body) that follow,
/// or why they must not be read. The listener calls this on the 4 header
/// bytes before reading (and allocating) the rest.
pub fn check_header(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 {
        Err(FrameError::Empty)
    } else if len > max {
        Err(FrameError::TooLarge { len, max })
    } else {
        Ok(len)
    }
}

/// Cuts frames out of a growing buffer of received bytes.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max: usize,
}

impl FrameDecoder {
    /// A decoder refusing frames longer than `max` bytes (code and body).
    pub fn new(max: usize) -> Self {
        Self { max }
    }

    /// The next whole frame in `buf`, removing its bytes; `None` when more
    /// bytes are needed. On `Err` the stream is unusable. Reserves room for
    /// the frame in `buf` only once its header has passed the limit check.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&buf[..HEADER_LEN]);
        let len = check_header(header, self.max)?;
        if buf.len() < HEADER_LEN + len {
            buf.reserve(HEADER_LEN + len - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let mut frame = buf.split_to(len).freeze();
        let code = frame.get_u8();
        Ok(Some(Frame { code, body: frame }))
    }
}

/// Appends a frame with a raw body to `out`.
pub fn encode_frame(code: u8, body: &[u8], out: &mut BytesMut) {
    out.reserve(HEADER_LEN + 1 + body.len());
    out.put_u32(u32::try_from(body.len() + 1).expect("frame above 4 GiB"));
    out.put_u8(code);
    out.put_slice(body);
}

/// Appends a frame carrying `msg` to `out`.
pub fn encode_message(code: u8, msg: &impl Message, out: &mut BytesMut) {
    let len = msg.encoded_len();
    out.reserve(HEADER_LEN + 1 + len);
    out.put_u32(u32::try_from(len + 1).expect("frame above 4 GiB"));
    out.put_u8(code);
    msg.encode(out).expect("reserved above");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes;
    use crate::messages::{RpbContent, RpbGetReq, RpbPutReq};

    #[test]
    fn a_message_round_trips_through_a_frame() {
        let req = RpbGetReq {
            bucket: Bytes::from_static(b"b"),
            key: Bytes::from_static(b"k"),
            r: Some(2),
            ..Default::default()
        };
        let mut out = BytesMut::new();
        encode_message(codes::GET_REQ, &req, &mut out);
        assert_eq!(&out[..4], &((req.encoded_len() + 1) as u32).to_be_bytes());
        let frame = FrameDecoder::new(1024).decode(&mut out).unwrap().unwrap();
        assert_eq!(frame.code, codes::GET_REQ);
        assert_eq!(RpbGetReq::decode(frame.body).unwrap(), req);
        assert!(out.is_empty());
    }

    #[test]
    fn frames_arrive_in_pieces_and_back_to_back() {
        let mut wire = BytesMut::new();
        encode_frame(codes::PING_REQ, b"", &mut wire);
        encode_frame(codes::GET_SERVER_INFO_REQ, b"", &mut wire);
        let put = RpbPutReq {
            bucket: Bytes::from_static(b"b"),
            content: RpbContent {
                value: Bytes::from_static(b"v"),
                ..Default::default()
            },
            ..Default::default()
        };
        encode_message(codes::PUT_REQ, &put, &mut wire);
        let dec = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        let codes: Vec<u8> = got.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            [codes::PING_REQ, codes::GET_SERVER_INFO_REQ, codes::PUT_REQ]
        );
        assert!(got[0].body.is_empty());
        assert_eq!(RpbPutReq::decode(got[2].body.clone()).unwrap(), put);
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header() {
        let dec = FrameDecoder::new(100);
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        let cap = buf.capacity();
        assert_eq!(
            dec.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 100
            })
        );
        assert_eq!(buf.capacity(), cap, "nothing reserved for the body");
        assert_eq!(
            check_header(101u32.to_be_bytes(), 100),
            Err(FrameError::TooLarge { len: 101, max: 100 })
        );
        assert_eq!(check_header(100u32.to_be_bytes(), 100), Ok(100));
    }

    #[test]
    fn a_zero_length_frame_is_malformed() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(
            FrameDecoder::new(10).decode(&mut buf),
            Err(FrameError::Empty)
        );
    }

    #[test]
    fn a_partial_frame_waits() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 9][..]);
        assert_eq!(FrameDecoder::new(10).decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 5);
    }
}
