//! Namespaced keys: a second level of naming inside the one keyspace.
//!
//! A namespaced key is `0xFF ‖ varint(len(ns)) ‖ ns ‖ name` (the varint is
//! unsigned LEB128, protobuf's length delimiter, written and read by
//! `prost`). Protocols that group keys, such as Riak's buckets, use
//! it so that:
//! - a namespaced key can never equal a native key: native keys are UTF-8,
//!   and no UTF-8 string starts with the byte `0xFF`;
//! - the ring hashes the whole encoded key, so placement depends on the
//!   namespace as well as the name;
//! - within one partition all keys of a namespace are contiguous in the
//!   store (the length prefix stops `ab` from interleaving with `abc`), so
//!   listing a namespace's keys, or the distinct namespaces, is a range scan
//!   ([`crate::Store::scan_keys`], [`crate::Store::scan_namespaces`]).

/// First byte of every namespaced key.
pub const TAG: u8 = 0xFF;

/// The prefix shared by every key of namespace `ns`.
pub fn prefix(ns: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + prost::length_delimiter_len(ns.len()) + ns.len());
    out.push(TAG);
    prost::encode_length_delimiter(ns.len(), &mut out).expect("a Vec grows as needed");
    out.extend_from_slice(ns);
    out
}

/// The namespaced key of `name` in `ns`.
pub fn key(ns: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = prefix(ns);
    out.extend_from_slice(name);
    out
}

/// Splits a namespaced key into `(namespace, name)`; `None` for any other key
/// (a native key, or bytes that are not a well-formed namespaced key).
pub fn split(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, mut rest) = key.split_first()?;
    if tag != TAG {
        return None;
    }
    let len = prost::decode_length_delimiter(&mut rest).ok()?;
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

/// The smallest byte string greater than every string starting with
/// `prefix` (`None` when no such string exists: the prefix is all `0xFF`).
pub fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut b = prefix.to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return Some(b);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_order() {
        for (ns, name) in [
            (&b""[..], &b""[..]),
            (b"b", b"k"),
            (&[0xff; 200][..], b"\x00\xff"),
            (b"bucket", b""),
        ] {
            let k = key(ns, name);
            assert_eq!(k[0], TAG);
            assert_eq!(split(&k), Some((ns, name)));
            assert!(k.starts_with(&prefix(ns)));
        }
        // 200 needs two varint bytes.
        assert_eq!(prefix(&[1; 200]).len(), 1 + 2 + 200);
        // `ab` and `abc` never interleave: every key of `ab` sorts before
        // every key of `abc` or after all of them.
        let ab = successor(&prefix(b"ab")).unwrap();
        assert!(key(b"ab", b"\xff\xff\xff").as_slice() < ab.as_slice());
        assert!(!key(b"abc", b"").starts_with(&prefix(b"ab")));
        assert_eq!(split(b"plain"), None);
        assert_eq!(split(&[TAG, 5, b'a']), None);
        assert_eq!(split(&[TAG, 0x80]), None);
        // The length is unsigned LEB128: 300 = 0xAC 0x02.
        assert_eq!(&prefix(&[7; 300])[..3], &[TAG, 0xAC, 0x02]);
        assert_eq!(
            split(&[
                TAG, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ]),
            None
        );
        assert_eq!(successor(&[1, 0xff]), Some(vec![2]));
        assert_eq!(successor(&[0xff, 0xff]), None);
    }
}
