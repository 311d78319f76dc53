//! The replica's step of a secondary index query ([`IndexQuery`]): scan
//! the local store in each asked partition, merge the partitions' sorted
//! entries and answer the first `limit`.
//!
//! Entries are ordered by term (in its field's order: integers
//! numerically, byte strings bytewise) and then by key, the order a
//! coordinator merges replicas' answers in ([`entry_order`]).

use std::cmp::Ordering;

use bytes::Bytes;
use dynkv_rpc::RemoteError;
use dynkv_rpc::messages::IndexQuery;
use dynkv_rpc::messages::listing::{BUCKET_FIELD, KEY_FIELD};
use dynkv_storage::Store;
use dynkv_storage::index::{IndexRange, encode_term};
use regex::Regex;

/// Most entries one replica answers per call, whatever it is asked (the
/// coordinator pages past it).
pub const MAX_PAGE: u32 = 10_000;

/// A `(term, key)` entry of an index query.
pub type Entry = (Bytes, Bytes);

/// The order of two entries of `field`: by term as the field sorts it,
/// then by key.
pub fn entry_order(field: &str, a: &Entry, b: &Entry) -> Ordering {
    term_order(field, &a.0, &b.0).then_with(|| a.1.cmp(&b.1))
}

/// The order of two terms of `field`: integers numerically (`*_int`),
/// anything else bytewise.
pub fn term_order(field: &str, a: &[u8], b: &[u8]) -> Ordering {
    match (encode_term(field, a), encode_term(field, b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// Whether `term` is a term of `field` (an `_int` field's terms are
/// integers).
pub fn is_term_of(field: &str, term: &[u8]) -> bool {
    encode_term(field, term).is_some()
}

/// Answers an index query from the local store (blocking).
pub fn scan(store: &Store, req: &IndexQuery) -> Result<Vec<Entry>, RemoteError> {
    let regex = match &req.term_regex {
        Some(r) => Some(
            Regex::new(r)
                .map_err(|e| RemoteError::BadRequest(format!("invalid term regex: {e}")))?,
        ),
        None => None,
    };
    let keep = |t: &[u8]| {
        regex
            .as_ref()
            .is_none_or(|r| r.is_match(&String::from_utf8_lossy(t)))
    };
    let limit = req.limit.min(MAX_PAGE) as usize;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let storage = |e: dynkv_storage::StoreError| RemoteError::Storage(e.to_string());
    let mut out: Vec<Entry> = Vec::new();
    for &partition in &req.partitions {
        let found: Vec<Entry> = match req.field.as_str() {
            BUCKET_FIELD | KEY_FIELD => {
                scan_keys(store, req, partition, limit, &keep).map_err(storage)?
            }
            field => {
                let range = IndexRange::new(&req.scope, field, &req.from, &req.to)
                    .map_err(RemoteError::BadRequest)?;
                let after = req.after.as_ref().map(|(t, k)| (&t[..], &k[..]));
                store
                    .scan_index(partition, &range, after, limit, keep)
                    .map_err(storage)?
                    .into_iter()
                    .map(|(t, k)| (Bytes::from(t), Bytes::from(k)))
                    .collect()
            }
        };
        out.extend(found);
    }
    out.sort_by(|a, b| entry_order(&req.field, a, b));
    out.truncate(limit);
    Ok(out)
}

/// The `$bucket` and `$key` queries: live keys of the scope (whose name is
/// in `from..=to` for `$key`), after the position's key.
fn scan_keys(
    store: &Store,
    req: &IndexQuery,
    partition: u32,
    limit: usize,
    keep: &dyn Fn(&[u8]) -> bool,
) -> dynkv_storage::Result<Vec<Entry>> {
    let scope = &req.scope[..];
    let by_name = req.field == KEY_FIELD;
    let mut start = scope.to_vec();
    if by_name {
        start.extend_from_slice(&req.from);
    }
    if let Some((_, key)) = &req.after {
        let mut resume = key.to_vec();
        resume.push(0);
        start = start.max(resume);
    }
    let mut out = Vec::new();
    loop {
        let page = store.scan_keys_from(partition, scope, &start, limit)?;
        let exhausted = page.len() < limit;
        for key in page {
            let name = &key[scope.len()..];
            if by_name && name > &req.to[..] {
                return Ok(out);
            }
            if !by_name || keep(name) {
                let term = if by_name {
                    Bytes::copy_from_slice(name)
                } else {
                    Bytes::new()
                };
                out.push((term, Bytes::from(key.clone())));
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            start = key;
            start.push(0);
        }
        if exhausted {
            return Ok(out);
        }
    }
}
