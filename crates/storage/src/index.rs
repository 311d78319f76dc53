//! The layout of secondary index entries (the `index` column family): pure
//! functions from an object to its entries, and from a query to the key
//! range that answers it.
//!
//! An entry says "the object under `key` carries the term `term` in the
//! index `field`". Its RocksDB key is
//!
//! ```text
//! partition (u32 BE) ‖ varint len(scope) ‖ scope ‖ varint len(field) ‖ field ‖ enc(term) ‖ rest
//! ```
//!
//! where `scope ‖ rest` is the object key split by
//! [`StoreConfig::index_scope`](crate::StoreConfig::index_scope) (Riak's
//! bucket namespace and the key inside it) and the value is empty. So one
//! `(partition, scope, field)` is one contiguous range, ordered by term and
//! then by key: a range query is one seek and a forward walk, and a
//! position `(term, key)` to resume after is a key of that range.
//!
//! Terms are encoded so that byte order is the query order:
//! - a field named `*_int` holds integers (Riak's `_int` indexes): the term
//!   is a decimal `i128`, encoded as 16 big-endian bytes with the sign bit
//!   flipped, so negative numbers sort before positive ones;
//! - any other field holds byte strings (`*_bin`), encoded with every `0x00`
//!   escaped as `0x00 0xFF` and ended by `0x00 0x01`, so that a term sorts
//!   before every longer term it is a prefix of, whatever bytes follow.
//!
//! The varint is protobuf's length delimiter (unsigned LEB128), as in the
//! namespaced keys. These bytes are on disk: they never change (the golden
//! test below).

use std::collections::BTreeSet;

use dynkv_vclock::Object;

/// Whether a field holds integers (Riak's `_int` suffix).
pub fn is_int_field(field: &str) -> bool {
    field.ends_with("_int")
}

/// An integer term as Riak writes it: optional sign, decimal digits.
pub fn parse_int(term: &[u8]) -> Option<i128> {
    std::str::from_utf8(term).ok()?.trim().parse::<i128>().ok()
}

/// The sortable encoding of `term` in `field` (`None`: an `_int` field's
/// term is not an integer, so the object is not indexed under it).
pub fn encode_term(field: &str, term: &[u8]) -> Option<Vec<u8>> {
    if is_int_field(field) {
        let v = parse_int(term)?;
        return Some(((v as u128) ^ (1u128 << 127)).to_be_bytes().to_vec());
    }
    let mut out = Vec::with_capacity(term.len() + 2);
    for &b in term {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 1]);
    Some(out)
}

/// Decodes a term at the start of `bytes`: (the term as a client writes it,
/// bytes taken). `None` for bytes that no [`encode_term`] made.
pub fn decode_term(field: &str, bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    if is_int_field(field) {
        let raw: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        let v = (u128::from_be_bytes(raw) ^ (1u128 << 127)) as i128;
        return Some((v.to_string().into_bytes(), 16));
    }
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        match (bytes.get(i)?, bytes.get(i + 1)) {
            (0, Some(1)) => return Some((out, i + 2)),
            (0, Some(0xff)) => {
                out.push(0);
                i += 2;
            }
            (0, _) => return None,
            (&b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
}

/// `partition ‖ varint len(scope) ‖ scope ‖ varint len(field) ‖ field`:
/// the prefix of every entry of one field of one scope in one partition.
pub fn field_prefix(partition: u32, scope: &[u8], field: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + scope.len() + field.len() + 4);
    out.extend_from_slice(&partition.to_be_bytes());
    prost::encode_length_delimiter(scope.len(), &mut out).expect("a Vec grows as needed");
    out.extend_from_slice(scope);
    prost::encode_length_delimiter(field.len(), &mut out).expect("a Vec grows as needed");
    out.extend_from_slice(field.as_bytes());
    out
}

/// The entry key of `key` (split as `scope ‖ rest`) under `term` of
/// `field`, or `None` when the term does not encode.
pub fn entry_key(
    partition: u32,
    key: &[u8],
    scope_len: usize,
    field: &str,
    term: &[u8],
) -> Option<Vec<u8>> {
    let (scope, rest) = key.split_at(scope_len.min(key.len()));
    let mut out = field_prefix(partition, scope, field);
    out.extend_from_slice(&encode_term(field, term)?);
    out.extend_from_slice(rest);
    Some(out)
}

/// Every entry key of an object: the union, over its live siblings (a
/// tombstone carries none), of their `(field, term)` pairs. Empty when the
/// key is in no scope (`scope_len` is `None`).
pub fn entries(
    partition: u32,
    key: &[u8],
    scope_len: Option<usize>,
    object: Option<&Object>,
) -> BTreeSet<Vec<u8>> {
    let (Some(scope_len), Some(object)) = (scope_len, object) else {
        return BTreeSet::new();
    };
    object
        .live_values()
        .into_iter()
        .flat_map(|c| c.meta.indexes.iter())
        .filter_map(|(field, term)| entry_key(partition, key, scope_len, field, term.as_bytes()))
        .collect()
}

/// What a range scan of the index looks for: the terms `from..=to` of one
/// field of one scope. Built by [`IndexRange::new`], which checks the
/// bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRange {
    /// The scope (Riak: the bucket's namespace prefix).
    pub scope: Vec<u8>,
    /// The field.
    pub field: String,
    /// Encoded lower bound (inclusive).
    pub(crate) from: Vec<u8>,
    /// Encoded upper bound (inclusive).
    pub(crate) to: Vec<u8>,
}

impl IndexRange {
    /// The range `from..=to` of `field` in `scope`; an error naming the
    /// bound that is not a term of the field (an `_int` field's bounds must
    /// be integers).
    pub fn new(scope: &[u8], field: &str, from: &[u8], to: &[u8]) -> Result<IndexRange, String> {
        let enc = |t: &[u8]| {
            encode_term(field, t).ok_or_else(|| {
                format!(
                    "{:?} is not an integer, as terms of the field {field:?} must be",
                    String::from_utf8_lossy(t)
                )
            })
        };
        Ok(IndexRange {
            scope: scope.to_vec(),
            field: field.to_string(),
            from: enc(from)?,
            to: enc(to)?,
        })
    }

    /// The encoding of a term of this range's field, if it is one.
    pub(crate) fn encode(&self, term: &[u8]) -> Option<Vec<u8>> {
        encode_term(&self.field, term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_never_changes() {
        assert_eq!(encode_term("a_bin", b"x\0y").unwrap(), b"x\0\xffy\0\x01");
        assert_eq!(
            encode_term("a_int", b"-1").unwrap(),
            [
                0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0xff, 0xff
            ]
        );
        assert_eq!(
            entry_key(3, b"SSk", 2, "f_bin", b"t").unwrap(),
            b"\0\0\0\x03\x02SS\x05f_bint\0\x01k"
        );
    }

    #[test]
    fn integers_sort_numerically_and_strings_bytewise() {
        let ints = [
            "-10000",
            "-1004",
            "-1",
            "0",
            "7",
            "1001",
            "170141183460469231731687303715884105727",
        ];
        let enc: Vec<_> = ints
            .iter()
            .map(|t| encode_term("f_int", t.as_bytes()).unwrap())
            .collect();
        assert!(enc.windows(2).all(|w| w[0] < w[1]));
        let bins: [&[u8]; 6] = [b"", b"\0", b"\0\0", b"a", b"a\0", b"ab"];
        let enc: Vec<_> = bins
            .iter()
            .map(|t| encode_term("f_bin", t).unwrap())
            .collect();
        assert!(enc.windows(2).all(|w| w[0] < w[1]), "{enc:?}");
        assert!(encode_term("f_int", b"1.5").is_none());
        assert!(encode_term("f_int", b"").is_none());
    }

    proptest::proptest! {
        #[test]
        fn integer_order_is_byte_order(a in proptest::prelude::any::<i128>(), b in proptest::prelude::any::<i128>()) {
            let ea = encode_term("f_int", a.to_string().as_bytes()).unwrap();
            let eb = encode_term("f_int", b.to_string().as_bytes()).unwrap();
            proptest::prop_assert_eq!(ea.cmp(&eb), a.cmp(&b));
        }

        #[test]
        fn string_order_is_byte_order_and_terms_delimit_themselves(
            a in proptest::collection::vec(0u8..4, 0..6),
            b in proptest::collection::vec(0u8..4, 0..6),
            ka in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4),
            kb in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4),
        ) {
            // Entries (term then key) sort by term first, whatever the keys.
            let entry = |t: &[u8], k: &[u8]| [encode_term("f_bin", t).unwrap(), k.to_vec()].concat();
            let (ea, eb) = (entry(&a, &ka), entry(&b, &kb));
            proptest::prop_assert_eq!(ea.cmp(&eb), a.cmp(&b).then(ka.cmp(&kb)));
            proptest::prop_assert_eq!(decode_term("f_bin", &ea), Some((a.clone(), ea.len() - ka.len())));
        }
    }

    #[test]
    fn terms_round_trip() {
        for (field, term) in [
            ("f_bin", &b"a\0\xff\x01"[..]),
            ("f_bin", b""),
            ("f_int", b"-42"),
        ] {
            let mut enc = encode_term(field, term).unwrap();
            let n = enc.len();
            enc.extend_from_slice(b"rest");
            assert_eq!(decode_term(field, &enc), Some((term.to_vec(), n)));
        }
        assert_eq!(decode_term("f_bin", b"abc"), None);
        assert_eq!(decode_term("f_bin", b"a\0\x05"), None);
        assert_eq!(decode_term("f_int", b"short"), None);
    }
}
