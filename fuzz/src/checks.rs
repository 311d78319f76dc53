//! Checks of the byte-level decoders: context tokens, stored/replicated
//! objects and quorum parameters (the internode stream and handshake are in
//! [`crate::internode`]). Each takes the raw fuzzer input and panics on a
//! finding.

use dynkv_rpc::messages::Quorum;
use dynkv_vclock::{
    Content, DvvSet, VersionVector, decode_context, decode_object, encode_context, encode_object,
};

/// `X-Dynkv-Context`: any string a client sends.
pub fn context_token(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(vv) = decode_context(s) else {
        return;
    };
    let entries = vv.entries();
    assert!(
        entries.windows(2).all(|w| w[0].0 < w[1].0),
        "entries not strictly sorted: {entries:?}"
    );
    assert!(entries.iter().all(|(_, n)| *n > 0), "zero counter kept");
    let again = decode_context(&encode_context(&vv)).expect("a re-encoded token decodes");
    assert_eq!(again, vv, "token round trip");
    // Merging with itself changes nothing; descends is reflexive.
    assert_eq!(vv.merge(&vv), vv);
    assert!(vv.descends(&vv));
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
