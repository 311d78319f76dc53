//! Checks of the byte-level decoders: context tokens, stored/replicated
//! objects and quorum parameters (the internode stream and handshake are in
//! [`crate::internode`]). Each takes the raw fuzzer input and panics on a
//! finding.

use dynkv_rpc::messages::Quorum;
use dynkv_vclock::context::{CONTEXT_FORMAT_V1, ContextError};
use dynkv_vclock::{
    Content, ContextKey, DvvSet, VersionVector, context_payload, decode_context,
    decode_context_payload, decode_object, encode_context, encode_object, inspect_context,
};

/// The key the context targets sign with (any fixed key will do: the
/// fuzzer must not be able to forge its MAC).
pub fn fuzz_context_key() -> ContextKey {
    ContextKey::new([0x5a; 32])
}

/// `X-Dynkv-Context`: any string a client sends.
pub fn context_token(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let key = fuzz_context_key();
    let Ok(vv) = decode_context(s, &key) else {
        return;
    };
    let entries = vv.entries();
    assert!(
        entries.windows(2).all(|w| w[0].0 < w[1].0),
        "entries not strictly sorted: {entries:?}"
    );
    assert!(entries.iter().all(|(_, n)| *n > 0), "zero counter kept");
    let again =
        decode_context(&encode_context(&vv, &key), &key).expect("a re-encoded token decodes");
    assert_eq!(again, vv, "token round trip");
    // Merging with itself changes nothing; descends is reflexive.
    assert_eq!(vv.merge(&vv), vv);
    assert!(vv.descends(&vv));
}

/// Signed contexts: any bytes as a client's token or `X-Riak-Vclock`
/// payload are refused unless the key signed them; and a token the key did
/// sign (built from the input) verifies, while any one bit flipped in its
/// bytes or its text, any truncation, another key or the unsigned earlier
/// format is refused.
pub fn signed_context(data: &[u8]) {
    let key = fuzz_context_key();
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(vv) = decode_context(s, &key) {
            let again = decode_context(&encode_context(&vv, &key), &key);
            assert_eq!(again, Ok(vv), "a verified token re-encodes");
        }
        let _ = inspect_context(s);
    }
    if let Ok(vv) = decode_context_payload(data, &key) {
        assert_eq!(
            context_payload(&vv, &key),
            data,
            "only issued payloads verify"
        );
    }
    let Some((head, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let flip = usize::from(u16::from_le_bytes([head[0], head[1]]));
    let cut = usize::from(u16::from_le_bytes([head[2], head[3]]));
    let vv = VersionVector::from_pairs(rest.chunks(9).map(|c| {
        let mut n = [0u8; 8];
        n[..c.len() - 1].copy_from_slice(&c[1..]);
        (format!("n{}", c[0]), u64::from_le_bytes(n))
    }));
    let payload = context_payload(&vv, &key);
    assert_eq!(decode_context_payload(&payload, &key), Ok(vv.clone()));
    let mut flipped = payload.clone();
    let b = flip % (flipped.len() * 8);
    flipped[b / 8] ^= 1 << (b % 8);
    assert!(
        decode_context_payload(&flipped, &key).is_err(),
        "bit {b} flipped verifies"
    );
    let short = cut % payload.len();
    assert!(
        decode_context_payload(&payload[..short], &key).is_err(),
        "cut at {short} verifies"
    );
    let token = encode_context(&vv, &key);
    assert_eq!(decode_context(&token, &key), Ok(vv.clone()));
    let mut text = token.clone().into_bytes();
    let b = flip % (text.len() * 8);
    text[b / 8] ^= 1 << (b % 8);
    if let Ok(text) = String::from_utf8(text) {
        assert!(decode_context(&text, &key).is_err(), "{text} verifies");
    }
    let short = cut % token.len();
    assert!(
        decode_context(&token[..short], &key).is_err(),
        "token cut at {short} verifies"
    );
    assert_eq!(
        decode_context(&token, &ContextKey::new([0xa5; 32])),
        Err(ContextError::BadSignature)
    );
    let mut unsigned = vec![CONTEXT_FORMAT_V1];
    postcard_entries(&vv, &mut unsigned);
    assert_eq!(
        decode_context_payload(&unsigned, &key),
        Err(ContextError::Unsigned)
    );
}

/// The unsigned (version 1) body: the payload of a signed token without its
/// version byte and MAC.
fn postcard_entries(vv: &VersionVector, out: &mut Vec<u8>) {
    let signed = context_payload(vv, &fuzz_context_key());
    let mac = dynkv_vclock::context::CONTEXT_MAC_LEN;
    out.extend_from_slice(&signed[1..signed.len() - mac]);
}

/// Two objects (the input split at its first byte's position) as a replica
/// decodes them from disk or from a peer, merged and written to.
pub fn object(data: &[u8]) {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize).min(rest.len());
    let (a, b) = rest.split_at(at);
    let decoded: Vec<DvvSet<Content>> = [a, b]
        .iter()
        .filter_map(|bytes| decode_object(bytes).ok())
        .collect();
    for o in &decoded {
        let bytes = encode_object(o);
        let again = decode_object(&bytes).expect("a re-encoded object decodes");
        assert_eq!(&again, o, "object round trip");
        assert_eq!(again.digest(), o.digest(), "digest of equal objects");
        assert_eq!(DvvSet::sync(o, o), *o, "sync is idempotent");
        let _ = (o.is_deleted(), o.live_values(), o.sibling_count());
        // A coordinator's write on top of it, with its own clock as context
        // and with none: the new value is live, the clock covers both.
        for ctx in [o.join(), VersionVector::new()] {
            let v = Content::value(&b"fuzz"[..], "text/plain", 1);
            let u = DvvSet::update(&ctx, o, "n1", v.clone());
            assert!(u.values().contains(&&v), "the written value is live");
            assert!(u.join().descends(&ctx), "the new clock covers the context");
            assert!(
                u.join().descends(&o.join()),
                "the new clock covers the replica"
            );
            let bytes = encode_object(&u);
            assert!(decode_object(&bytes).is_ok(), "an updated object decodes");
        }
    }
    if let [x, y] = decoded.as_slice() {
        let m = DvvSet::sync(x, y);
        assert_eq!(
            m.join(),
            x.join().merge(&y.join()),
            "the merged clock is the least upper bound"
        );
        assert!(m.sibling_count() <= x.sibling_count() + y.sibling_count());
        assert_eq!(m.join(), DvvSet::sync(y, x).join(), "sync clocks commute");
        assert!(decode_object(&encode_object(&m)).is_ok(), "a merge decodes");
    }
}

/// `r=` / `w=` query parameters against N from the first byte.
pub fn quorum_param(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8) + 1;
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(q) = Quorum::parse(s, n) {
        let req = q.required(n);
        assert!((1..=n).contains(&req), "{s:?} at N={n} requires {req}");
        assert_eq!(
            Quorum::parse(&q.to_string(), n),
            Ok(q),
            "display round trip"
        );
    }
}
