//! Where a Riak `(bucket, key)` lives in dynkv's one keyspace.
//!
//! A bucket's key is the *namespaced key* `0xFF ‖ varint(len(bucket)) ‖
//! bucket ‖ key`: the bucket is the first length-delimited component after
//! the tag `0xFF` (the varint is unsigned LEB128, protobuf's length
//! delimiter: [`component_prefix`]), so that
//! - a namespaced key can never equal a native key: native keys are UTF-8,
//!   and no UTF-8 string starts with the byte `0xFF`;
//! - the ring hashes the whole encoded key, so placement depends on the
//!   bucket as well as the key;
//! - within one partition all keys of a bucket are contiguous in the store
//!   (the length prefix stops `ab` from interleaving with `abc`), so
//!   listing a bucket's keys is a prefix scan ([`ListKeys`]) and listing
//!   the buckets a scan of distinct components after [`TAG`]
//!   ([`ListNamespaces`]), which seeks past each bucket.
//!
//! ## Bucket types
//! The layout above is the `default` type's. A bucket of another type `T`
//! is namespaced one level deeper, `0xFD ‖ varint(len(T)) ‖ T ‖
//! varint(len(bucket)) ‖ bucket ‖ key` ([`TYPED_TAG`], [`base`]): bucket
//! `b` of type `T` is not bucket `b` of the default type (nor of another
//! type), a type's buckets are listed by the same scan below its own
//! prefix, and the default type's keys keep their bytes.
//!
//! These bytes are on disk and decide placement: they never change (the
//! golden test below).
//!
//! [`ListKeys`]: dynkv_rpc::messages::ListKeys
//! [`ListNamespaces`]: dynkv_rpc::messages::ListNamespaces

use dynkv_rpc::messages::listing::{component_prefix, split_component};

/// First byte of every key of a bucket of a type other than `default`.
pub const TYPED_TAG: u8 = 0xFD;

/// What every key of a bucket type starts with, before its bucket
/// component (`None`: the default type).
pub fn base(btype: Option<&[u8]>) -> Vec<u8> {
    match btype {
        None => vec![TAG],
        Some(t) => component_prefix(&[TYPED_TAG], t),
    }
}

/// What every key of `bucket` of the type with [`base`] `base` starts with.
pub fn prefix_in(base: &[u8], bucket: &[u8]) -> Vec<u8> {
    component_prefix(base, bucket)
}

/// The internal key of `(bucket, name)` in the type with [`base`] `base`.
pub fn key_in(base: &[u8], bucket: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = prefix_in(base, bucket);
    out.extend_from_slice(name);
    out
}

/// `(bucket, key)` of an internal key of the type with [`base`] `base`.
pub fn split_in<'a>(base: &[u8], key: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
    split_component(base, key)
}

/// First byte of every namespaced key.
pub const TAG: u8 = 0xFF;

/// The prefix shared by every key of bucket `ns`.
pub fn prefix(ns: &[u8]) -> Vec<u8> {
    component_prefix(&[TAG], ns)
}

/// The namespaced key of `name` in bucket `ns`.
pub fn key(ns: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = prefix(ns);
    out.extend_from_slice(name);
    out
}

/// Splits a namespaced key into `(bucket, name)`; `None` for any other key
/// (a native key, or bytes that are not a well-formed namespaced key).
pub fn split(key: &[u8]) -> Option<(&[u8], &[u8])> {
    split_component(&[TAG], key)
}

/// The length of a namespaced key's bucket prefix: the *scope* its
/// secondary index entries are grouped by (`dynkv_storage::StoreConfig::index_scope`),
/// so that a query of one bucket's index is one range. `None` for any other
/// key (native keys are never indexed). A bucket's scope is the internal key
/// of its empty key name.
pub fn scope_len(key: &[u8]) -> Option<usize> {
    let name = match key.first() {
        Some(&TYPED_TAG) => {
            let (_, rest) = split_component(&[TYPED_TAG], key)?;
            split_in(&key[..key.len() - rest.len()], key)?.1
        }
        _ => split(key)?.1,
    };
    Some(key.len() - name.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_never_changes() {
        assert_eq!(key(b"users", b"ada"), b"\xff\x05usersada");
        assert_eq!(key(b"", b""), [0xff, 0x00]);
        assert_eq!(key(b"b", b""), [0xff, 0x01, b'b']);
        // 200 needs two varint bytes: 200 = 0xC8 0x01.
        let long = key(&[b'x'; 200], b"k");
        assert_eq!(&long[..3], &[0xff, 0xc8, 0x01]);
        assert_eq!(long.len(), 3 + 200 + 1);
        // 300 = 0xAC 0x02; 16384 = 0x80 0x80 0x01.
        assert_eq!(&prefix(&[7; 300])[..3], &[TAG, 0xac, 0x02]);
        assert_eq!(&prefix(&[7; 16384])[..4], &[TAG, 0x80, 0x80, 0x01]);
        assert_eq!(prefix(&[7; 127])[1], 0x7f);
        assert_eq!(&prefix(&[7; 128])[1..3], &[0x80, 0x01]);
    }

    #[test]
    fn typed_buckets_are_their_own_namespace() {
        let maps = base(Some(b"maps"));
        assert_eq!(maps, b"\xfd\x04maps");
        assert_eq!(key_in(&maps, b"b", b"k"), b"\xfd\x04maps\x01bk");
        assert_eq!(key_in(&base(None), b"b", b"k"), key(b"b", b"k"));
        assert_ne!(key_in(&maps, b"b", b"k"), key(b"b", b"k"));
        assert_ne!(
            key_in(&maps, b"b", b"k"),
            key_in(&base(Some(b"sets")), b"b", b"k")
        );
        assert_eq!(
            split_in(&maps, &key_in(&maps, b"b", b"k")),
            Some((&b"b"[..], &b"k"[..]))
        );
        assert_eq!(split_in(&maps, &key(b"b", b"k")), None);
        assert!(key_in(&maps, b"b", b"k").starts_with(&prefix_in(&maps, b"b")));
    }

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
        // `ab` and `abc` never interleave: every key of `ab` sorts before
        // every key of `abc` or after all of them.
        assert!(key(b"ab", b"\xff\xff\xff") < key(b"abc", b""));
        assert!(!key(b"abc", b"").starts_with(&prefix(b"ab")));
        assert_eq!(split(b"plain"), None);
        assert_eq!(scope_len(&key(b"ab", b"k")), Some(prefix(b"ab").len()));
        assert_eq!(scope_len(b"plain"), None);
        let maps = base(Some(b"maps"));
        let typed = key_in(&maps, b"ab", b"k");
        assert_eq!(scope_len(&typed), Some(prefix_in(&maps, b"ab").len()));
        assert_eq!(scope_len(&[TYPED_TAG, 4, b'm']), None);
        assert_eq!(split(&[TAG, 5, b'a']), None);
        assert_eq!(split(&[TAG, 0x80]), None);
        assert_eq!(
            split(&[
                TAG, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ]),
            None
        );
    }
}
