//! Checks of the Riak PBC port's frame decoder ([`riakpb_frame`]): the
//! received bytes, fed in awkward pieces, cut into the same frames a
//! reference model of the layout cuts; a header above the limit is refused
//! before the buffer grows for it; every body is offered to every request
//! decoder, which may refuse it but never panic, and what decodes
//! re-encodes to a message that decodes to the same value.

use bytes::BytesMut;
use dynkv_riakpb::frame::{FrameDecoder, FrameError, HEADER_LEN};
use dynkv_riakpb::messages as m;
use prost::Message;

/// The frame limit of the check: small, so the fuzzer reaches it.
pub const MAX_FRAME: usize = 4 << 10;

/// Chunk sizes (cycled) of the awkward feeding.
const AWKWARD: &[usize] = &[1, 3, 2, 7, 300, 5, 1, 4_099];

/// The fuzz target: see the module doc.
pub fn riakpb_frame(data: &[u8]) {
    let model = reference(data);
    let dec = FrameDecoder::new(MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut error = None;
    let mut at = 0;
    let mut i = 0;
    'feed: while at < data.len() {
        let n = AWKWARD[i % AWKWARD.len()].min(data.len() - at);
        i += 1;
        buf.extend_from_slice(&data[at..at + n]);
        at += n;
        loop {
            let cap = buf.capacity();
            match dec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(buf.capacity(), cap, "grew before refusing");
                    error = Some(e);
                    break 'feed;
                }
            }
        }
    }
    let got: Vec<(u8, Vec<u8>)> = frames.iter().map(|f| (f.code, f.body.to_vec())).collect();
    assert_eq!((got, error), model);
    for f in &frames {
        bodies(&f.body);
    }
}

/// What the layout says `data` holds: whole frames, then the error that
/// stops the stream (a trailing partial frame is neither).
fn reference(data: &[u8]) -> (Vec<(u8, Vec<u8>)>, Option<FrameError>) {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= HEADER_LEN {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len == 0 {
            return (out, Some(FrameError::Empty));
        }
        if len > MAX_FRAME {
            return (
                out,
                Some(FrameError::TooLarge {
                    len,
                    max: MAX_FRAME,
                }),
            );
        }
        if rest.len() < HEADER_LEN + len {
            break;
        }
        out.push((
            rest[HEADER_LEN],
            rest[HEADER_LEN + 1..HEADER_LEN + len].to_vec(),
        ));
        rest = &rest[HEADER_LEN + len..];
    }
    (out, None)
}

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(msg) = M::decode(body) {
        let again = M::decode(msg.encode_to_vec().as_slice()).expect("re-encoded decodes");
        assert_eq!(again, msg);
    }
}

/// Offers a body to every request decoder the port may use.
fn bodies(body: &[u8]) {
    round_trip::<m::RpbGetReq>(body);
    round_trip::<m::RpbPutReq>(body);
    round_trip::<m::RpbDelReq>(body);
    round_trip::<m::RpbListBucketsReq>(body);
    round_trip::<m::RpbListKeysReq>(body);
    round_trip::<m::RpbGetBucketReq>(body);
    round_trip::<m::RpbSetBucketReq>(body);
    round_trip::<m::RpbResetBucketReq>(body);
    round_trip::<m::RpbGetBucketTypeReq>(body);
    round_trip::<m::RpbSetBucketTypeReq>(body);
    round_trip::<m::RpbSetClientIdReq>(body);
    round_trip::<m::RpbIndexReq>(body);
    round_trip::<m::RpbAuthReq>(body);
    round_trip::<m::DtFetchReq>(body);
    round_trip::<m::DtUpdateReq>(body);
}

/// Seed inputs: a few well-formed request streams and the refusals.
pub fn riakpb_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use dynkv_riakpb::codes;
    use dynkv_riakpb::frame::{encode_frame, encode_message};
    let mut kv = BytesMut::new();
    encode_frame(codes::PING_REQ, b"", &mut kv);
    encode_message(
        codes::PUT_REQ,
        &m::RpbPutReq {
            bucket: "b".into(),
            key: Some("k".into()),
            content: m::RpbContent {
                value: "v".into(),
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
            return_body: Some(true),
            ..Default::default()
        },
        &mut kv,
    );
    encode_message(
        codes::GET_REQ,
        &m::RpbGetReq {
            bucket: "b".into(),
            key: "k".into(),
            r: Some(2),
            ..Default::default()
        },
        &mut kv,
    );
    let mut too_large = BytesMut::new();
    encode_frame(codes::PING_REQ, b"", &mut too_large);
    too_large.extend_from_slice(&((MAX_FRAME + 1) as u32).to_be_bytes());
    vec![
        ("seed-kv", kv.to_vec()),
        ("seed-too-large", too_large.to_vec()),
        ("seed-empty-frame", vec![0, 0, 0, 0]),
    ]
}
