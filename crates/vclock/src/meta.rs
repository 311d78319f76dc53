//! The typed metadata of a sibling ([`Meta`]), and its pair form.
//!
//! Object format 1 kept metadata as sorted `name → value` string pairs,
//! shared by the protocols and by dynkv's own records and told apart by the
//! prefix of the name:
//!
//! | pair | typed field |
//! | --- | --- |
//! | `dynkv.idem.<key>` = write time in µs, in decimal | [`Meta::idempotency`] |
//! | `riak.meta.<name>` = value | [`Meta::user`] |
//! | `riak.link.<nnnnn>` = `bucket/key/tag` (numbered from 0, in order) | [`Meta::links`] |
//! | `riak.index.<field>` = value | [`Meta::indexes`] |
//! | anything else | [`Meta::extra`] |
//!
//! Object format 2 stores the typed fields. The pair form ([`Meta::to_pairs`])
//! stays the *canonical* one: the object digest hashes it, so a sibling has
//! the same digest (and the same Riak vtag) on every node, whichever release
//! wrote it and whichever format it was decoded from; nodes of older
//! releases read it; and [`Meta::from_pairs`] reads it back losslessly: a
//! pair whose shape is not exactly the one its prefix names (a time that is
//! not a canonical decimal, links not numbered `00000, 00001, …`) is kept
//! verbatim in [`Meta::extra`], so `from_pairs(p).to_pairs()` is `p` sorted.
//!
//! A `Meta` is *canonical* when it is what [`Meta::from_pairs`] makes of its
//! own pair form: each list in pair order (links in their own order), and
//! nothing in `extra` that has a typed place. Two canonical metas are equal
//! exactly when their pair forms are. Decoding always yields canonical
//! metas; code that builds one calls [`Meta::normalize`].

use std::cmp::Ordering;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Name prefix of an idempotency record's pair.
pub const IDEMPOTENCY_PREFIX: &str = "dynkv.idem.";
/// Name prefix of a user metadata pair.
pub const USER_PREFIX: &str = "riak.meta.";
/// Name prefix of a link's pair.
pub const LINK_PREFIX: &str = "riak.link.";
/// Name prefix of an index entry's pair.
pub const INDEX_PREFIX: &str = "riak.index.";

/// A record that a client write with this idempotency key was applied (see
/// `dynkv_quorum::idempotency`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdempotencyRecord {
    /// The client's idempotency key.
    pub key: String,
    /// When that write was applied, in microseconds since the Unix epoch.
    pub at_micros: u64,
}

/// A link to another object (Riak's `Link` header). Each part is kept as a
/// URL path segment (percent-encoded, so none contains `/`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Link {
    /// The target's bucket.
    pub bucket: String,
    /// The target's key.
    pub key: String,
    /// The link's tag (`riaktag`).
    pub tag: String,
}

/// What a sibling carries besides its value, content type and time.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Meta {
    /// Idempotency records: the writes this value stands for (the newest
    /// [`IDEMPOTENCY_PREFIX`] pairs are carried over from replaced values).
    pub idempotency: Vec<IdempotencyRecord>,
    /// User metadata `(name, value)` (Riak's `X-Riak-Meta-<name>`).
    pub user: Vec<(String, String)>,
    /// Links, in the order the writer gave them.
    pub links: Vec<Link>,
    /// Secondary index entries `(field, value)` (Riak's
    /// `X-Riak-Index-<field>`, one entry per value).
    pub indexes: Vec<(String, String)>,
    /// Any other pair: kept, replicated and hashed, never shown.
    pub extra: Vec<(String, String)>,
}

impl Meta {
    /// True when there is no metadata at all.
    pub fn is_empty(&self) -> bool {
        self.idempotency.is_empty()
            && self.user.is_empty()
            && self.links.is_empty()
            && self.indexes.is_empty()
            && self.extra.is_empty()
    }

    /// The number of pairs of [`Meta::to_pairs`].
    pub fn pair_count(&self) -> usize {
        self.idempotency.len()
            + self.user.len()
            + self.links.len()
            + self.indexes.len()
            + self.extra.len()
    }

    /// The bytes of every name and value of [`Meta::to_pairs`], computed
    /// without building them (what object size limits count).
    pub fn pair_bytes(&self) -> usize {
        let idem: usize = self
            .idempotency
            .iter()
            .map(|r| IDEMPOTENCY_PREFIX.len() + r.key.len() + decimal_len(r.at_micros))
            .sum();
        let user: usize = self
            .user
            .iter()
            .map(|(n, v)| USER_PREFIX.len() + n.len() + v.len())
            .sum();
        let links: usize = self
            .links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                LINK_PREFIX.len()
                    + decimal_len(i as u64).max(5)
                    + l.bucket.len()
                    + l.key.len()
                    + l.tag.len()
                    + 2
            })
            .sum();
        let indexes: usize = self
            .indexes
            .iter()
            .map(|(f, v)| INDEX_PREFIX.len() + f.len() + v.len())
            .sum();
        let extra: usize = self.extra.iter().map(|(n, v)| n.len() + v.len()).sum();
        idem + user + links + indexes + extra
    }

    /// The pair form, sorted: what object format 1 stored and what the
    /// digest hashes.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.pair_count());
        out.extend(self.idempotency.iter().map(|r| {
            (
                format!("{IDEMPOTENCY_PREFIX}{}", r.key),
                r.at_micros.to_string(),
            )
        }));
        out.extend(
            self.user
                .iter()
                .map(|(n, v)| (format!("{USER_PREFIX}{n}"), v.clone())),
        );
        out.extend(self.links.iter().enumerate().map(|(i, l)| {
            (
                format!("{LINK_PREFIX}{i:05}"),
                format!("{}/{}/{}", l.bucket, l.key, l.tag),
            )
        }));
        out.extend(
            self.indexes
                .iter()
                .map(|(f, v)| (format!("{INDEX_PREFIX}{f}"), v.clone())),
        );
        out.extend(self.extra.iter().cloned());
        out.sort();
        out
    }

    /// The typed form of pairs (in any order); canonical.
    pub fn from_pairs(mut pairs: Vec<(String, String)>) -> Meta {
        pairs.sort();
        let mut meta = Meta::default();
        let mut link_pairs = Vec::new();
        for (name, value) in pairs {
            if let Some(key) = name.strip_prefix(IDEMPOTENCY_PREFIX) {
                match canonical_decimal(&value) {
                    Some(at_micros) => meta.idempotency.push(IdempotencyRecord {
                        key: key.to_string(),
                        at_micros,
                    }),
                    None => meta.extra.push((name, value)),
                }
            } else if let Some(n) = name.strip_prefix(USER_PREFIX) {
                meta.user.push((n.to_string(), value));
            } else if let Some(f) = name.strip_prefix(INDEX_PREFIX) {
                meta.indexes.push((f.to_string(), value));
            } else if name.starts_with(LINK_PREFIX) {
                link_pairs.push((name, value));
            } else {
                meta.extra.push((name, value));
            }
        }
        match links_from_pairs(&link_pairs) {
            Some(links) => meta.links = links,
            None => {
                meta.extra.extend(link_pairs);
                meta.extra.sort();
            }
        }
        meta
    }

    /// Makes this meta canonical (see the module documentation): sorts its
    /// lists into pair order, and rebuilds it from its pairs if anything is
    /// out of place. Cheap when it already is canonical.
    pub fn normalize(&mut self) {
        self.idempotency.sort_by(record_order);
        self.user.sort();
        self.indexes.sort();
        self.extra.sort();
        if !self.extra_and_links_canonical() {
            *self = Meta::from_pairs(self.to_pairs());
        }
    }

    /// `self` made canonical.
    pub fn normalized(mut self) -> Meta {
        self.normalize();
        self
    }

    fn extra_and_links_canonical(&self) -> bool {
        let slash_free = self
            .links
            .iter()
            .all(|l| !l.bucket.contains('/') && !l.key.contains('/'));
        let mut extra_links = Vec::new();
        for (name, value) in &self.extra {
            if name.starts_with(USER_PREFIX) || name.starts_with(INDEX_PREFIX) {
                return false;
            }
            if name.starts_with(IDEMPOTENCY_PREFIX) && canonical_decimal(value).is_some() {
                return false;
            }
            if name.starts_with(LINK_PREFIX) {
                extra_links.push((name.clone(), value.clone()));
            }
        }
        slash_free
            && (extra_links.is_empty()
                || (self.links.is_empty() && links_from_pairs(&extra_links).is_none()))
    }
}

/// The typed links of every `riak.link.*` pair, when they are exactly the
/// pairs [`Meta::to_pairs`] writes for some links (named `00000`, `00001`,
/// … with no gap, each value `bucket/key/tag`).
fn links_from_pairs(pairs: &[(String, String)]) -> Option<Vec<Link>> {
    let mut slots: Vec<Option<Link>> = vec![None; pairs.len()];
    for (name, value) in pairs {
        let number = name.strip_prefix(LINK_PREFIX)?;
        let i: usize = number.parse().ok()?;
        if format!("{i:05}") != number {
            return None;
        }
        let mut parts = value.splitn(3, '/');
        let (Some(bucket), Some(key), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let slot = slots.get_mut(i)?;
        if slot.is_some() {
            return None;
        }
        *slot = Some(Link {
            bucket: bucket.to_string(),
            key: key.to_string(),
            tag: tag.to_string(),
        });
    }
    slots.into_iter().collect()
}

/// `s` as a number when it is exactly how that number prints.
fn canonical_decimal(s: &str) -> Option<u64> {
    let n: u64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Idempotency records in the order of their pairs: by key, then by the
/// decimal text of the time.
fn record_order(a: &IdempotencyRecord, b: &IdempotencyRecord) -> Ordering {
    a.key.cmp(&b.key).then_with(|| {
        let (mut x, mut y) = ([0u8; 20], [0u8; 20]);
        decimal(a.at_micros, &mut x).cmp(decimal(b.at_micros, &mut y))
    })
}

fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

// ---------------------------------------------------------------------------
// Object format 2: a meta is one sequence of tagged items.

/// One item of a meta in object format 2. The variant order is the format:
/// never reorder, only append (a new variant needs a new object format).
#[derive(Serialize)]
enum ItemRef<'a> {
    Idempotency(&'a str, u64),
    User(&'a str, &'a str),
    Link(&'a str, &'a str, &'a str),
    Index(&'a str, &'a str),
    Extra(&'a str, &'a str),
}

/// [`ItemRef`], owned, for decoding.
#[derive(Deserialize)]
enum Item {
    Idempotency(String, u64),
    User(String, String),
    Link(String, String, String),
    Index(String, String),
    Extra(String, String),
}

impl Serialize for Meta {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.pair_count()))?;
        for r in &self.idempotency {
            seq.serialize_element(&ItemRef::Idempotency(&r.key, r.at_micros))?;
        }
        for (n, v) in &self.user {
            seq.serialize_element(&ItemRef::User(n, v))?;
        }
        for l in &self.links {
            seq.serialize_element(&ItemRef::Link(&l.bucket, &l.key, &l.tag))?;
        }
        for (f, v) in &self.indexes {
            seq.serialize_element(&ItemRef::Index(f, v))?;
        }
        for (n, v) in &self.extra {
            seq.serialize_element(&ItemRef::Extra(n, v))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Meta {
    /// Decodes [`Meta`]'s serialization, normalized.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Meta, D::Error> {
        struct Items;
        impl<'de> Visitor<'de> for Items {
            type Value = Meta;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of metadata items")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Meta, A::Error> {
                let mut meta = Meta::default();
                while let Some(item) = seq.next_element::<Item>()? {
                    match item {
                        Item::Idempotency(key, at_micros) => {
                            meta.idempotency.push(IdempotencyRecord { key, at_micros })
                        }
                        Item::User(n, v) => meta.user.push((n, v)),
                        Item::Link(bucket, key, tag) => meta.links.push(Link { bucket, key, tag }),
                        Item::Index(f, v) => meta.indexes.push((f, v)),
                        Item::Extra(n, v) => meta.extra.push((n, v)),
                    }
                }
                meta.normalize();
                Ok(meta)
            }
        }
        d.deserialize_seq(Items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn sorted(mut p: Vec<(String, String)>) -> Vec<(String, String)> {
        p.sort();
        p
    }

    #[test]
    fn known_pairs_become_typed_fields() {
        let p = pairs(&[
            ("riak.meta.color", "red"),
            ("dynkv.idem.req-1", "17"),
            ("riak.link.00001", "old/k2/prev"),
            ("riak.link.00000", "other/k%2F1/next/x"),
            ("riak.index.f_int", "3"),
            ("riak.index.f_int", "1"),
            ("zz", "kept"),
        ]);
        let m = Meta::from_pairs(p.clone());
        assert_eq!(
            m.idempotency,
            [IdempotencyRecord {
                key: "req-1".into(),
                at_micros: 17
            }]
        );
        assert_eq!(m.user, pairs(&[("color", "red")]));
        assert_eq!(
            m.links,
            [
                Link {
                    bucket: "other".into(),
                    key: "k%2F1".into(),
                    tag: "next/x".into()
                },
                Link {
                    bucket: "old".into(),
                    key: "k2".into(),
                    tag: "prev".into()
                }
            ]
        );
        assert_eq!(m.indexes, pairs(&[("f_int", "1"), ("f_int", "3")]));
        assert_eq!(m.extra, pairs(&[("zz", "kept")]));
        assert_eq!(m.to_pairs(), sorted(p));
        assert_eq!(m.pair_count(), 7);
        assert_eq!(
            m.pair_bytes(),
            m.to_pairs()
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
        );
    }

    #[test]
    fn odd_pairs_are_kept_verbatim() {
        for p in [
            pairs(&[("dynkv.idem.x", "+5")]),
            pairs(&[("dynkv.idem.x", "05")]),
            pairs(&[("dynkv.idem.x", "")]),
            pairs(&[("riak.link.00001", "a/b/c")]),
            pairs(&[("riak.link.00000", "a/b")]),
            pairs(&[("riak.link.0", "a/b/c")]),
            pairs(&[("riak.link.00000", "a/b/c"), ("riak.link.00000", "a/b/d")]),
            pairs(&[("riak.link.", "a/b/c")]),
        ] {
            let m = Meta::from_pairs(p.clone());
            assert!(m.idempotency.is_empty() && m.links.is_empty(), "{p:?}");
            assert_eq!(m.extra, sorted(p.clone()));
            assert_eq!(m.to_pairs(), sorted(p));
            assert_eq!(m.clone().normalized(), m);
        }
    }

    #[test]
    fn more_than_99999_links_keep_their_order() {
        let links: Vec<Link> = (0..100_002)
            .map(|i| Link {
                bucket: "b".into(),
                key: i.to_string(),
                tag: "t".into(),
            })
            .collect();
        let m = Meta {
            links,
            ..Meta::default()
        };
        let back = Meta::from_pairs(m.to_pairs());
        assert_eq!(back, m);
        assert_eq!(back.pair_bytes(), m.pair_bytes());
    }

    #[test]
    fn normalize_puts_everything_in_its_place() {
        let m = Meta {
            idempotency: vec![
                IdempotencyRecord {
                    key: "k".into(),
                    at_micros: 9,
                },
                IdempotencyRecord {
                    key: "k".into(),
                    at_micros: 10,
                },
            ],
            user: pairs(&[("b", "1"), ("a", "2")]),
            links: vec![Link {
                bucket: "a/b".into(),
                key: "c".into(),
                tag: "d".into(),
            }],
            indexes: vec![],
            extra: pairs(&[("riak.meta.z", "1"), ("dynkv.idem.q", "3")]),
        };
        let n = m.clone().normalized();
        assert_eq!(n, Meta::from_pairs(m.to_pairs()));
        assert_eq!(n.to_pairs(), m.to_pairs());
        assert_eq!(n.user, pairs(&[("a", "2"), ("b", "1"), ("z", "1")]));
        // "10" sorts before "9", as the pairs do.
        let times: Vec<(&str, u64)> = n
            .idempotency
            .iter()
            .map(|r| (r.key.as_str(), r.at_micros))
            .collect();
        assert_eq!(times, [("k", 10), ("k", 9), ("q", 3)]);
        assert_eq!(n.links[0].bucket, "a");
        assert_eq!(n.links[0].tag, "c/d");
        assert!(n.extra.is_empty());
    }
}
