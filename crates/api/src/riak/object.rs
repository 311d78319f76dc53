//! Objects: `GET|HEAD|PUT|POST|DELETE /buckets/{b}/keys/{k}` and
//! `POST /buckets/{b}/keys` (a server-chosen key), as `riak_kv_wm_object`
//! serves them.
//!
//! ## Reads
//! `r`, `pr`, `timeout`, `notfound_ok`, `basic_quorum`, `vtag`. One value:
//! 200 with `Content-Type` (and charset), `X-Riak-Vclock`, `ETag`,
//! RFC 1123 `Last-Modified`, `Link`, `X-Riak-Meta-*`, `X-Riak-Index-*`.
//! Siblings: 300 as `multipart/mixed` when the client accepts it (CRLF
//! before the first boundary and after the closing one, one part per
//! sibling with its own headers and `X-Riak-Deleted: true` on tombstones),
//! else Riak's `text/plain` list of vtags; `?vtag=` picks one. Nothing, or
//! only tombstones: 404 `not found`, with the vclock and `X-Riak-Deleted`
//! for a deleted key. `If-None-Match` / `If-Modified-Since`: 304.
//!
//! `pr` > 0 makes the read count only primary replicas (Riak's PR: our
//! `sloppy=false`) and needs max(r, pr) of them. `notfound_ok=false` makes
//! a read that found nothing ask again and wait for every replica (with
//! `basic_quorum=true`, for a majority) before answering 404.
//!
//! ## Writes
//! `w`, `dw`, `pw`, `returnbody`, `timeout` (and `rw` on deletes). Every
//! acknowledgement of a dynkv replica is a durable write, so DW is met
//! with W: a write waits for max(w, dw, pw) replicas, only primaries when
//! `pw` > 0. Without `returnbody` a PUT answers 204 (a POST 201 with
//! `Location`); with it, the object as after the write (200 or 300).
//! `If-None-Match: *`, `If-Match` and `If-Unmodified-Since` are checked
//! against a read just before the write (412 when they fail); as in Riak
//! the check and the write are not atomic.
//!
//! A `DELETE` without a vclock first reads the key (404 when there is
//! nothing) and deletes what it read, as Riak does; with one it deletes what
//! that vclock has seen.
//!
//! ## Buckets without siblings
//! With `allow_mult=false` or `last_write_wins=true` every write
//! *supersedes* what its coordinator stores, and a read that still finds
//! siblings (concurrent writes through different coordinators) shows only
//! the newest by timestamp (ties broken by content, so every node picks the
//! same one). The full causal context is still returned, so the next write
//! replaces them all.
//!
//! ## Stored form
//! The value and its `Content-Type` (the media type, plus `charset` when
//! given) are the sibling's [`Content`]; user metadata, links (URL-quoted,
//! in order) and index entries are kept in its typed [`Meta`]
//! (`user`, `links`, `indexes`). Other metadata (idempotency records) is
//! never shown.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dynkv_quorum::ReadOptions;
use dynkv_rpc::messages::{Quorum, WriteRequest};
use dynkv_vclock::{Content, Link, Meta, Object, VersionVector};

use super::RiakError;
use super::bucket::BucketProps;
use super::request::{Target, parse_vclock, timeout, vclock_header};
use super::shared::{Riak, Stats};
use crate::AppState;
use crate::http::codec::{
    base62_u64, etag_matches, http_date, media_type_and_charset, parse_http_date, quote_plus,
    random_id, unquote_plus,
};
use crate::http::input;
use crate::http::params::Params;
use crate::http::siblings::{self, Framing, content_type, newest};

/// A sibling's vtag (its `ETag`): a digest of its whole content, so every
/// node names a sibling the same way.
pub fn etag(c: &Content) -> String {
    base62_u64(Object::from_value(c.clone()).digest())
}

/// The siblings a read shows: all of them, or the newest alone for a
/// bucket that resolves siblings.
pub(super) fn visible<'a>(riak: &Riak, o: &'a Object, props: &BucketProps) -> Vec<&'a Content> {
    let values = o.values();
    if values.len() > 1 && props.resolves_siblings() {
        Stats::bump(&riak.stats().siblings_resolved);
        newest(o).into_iter().collect()
    } else {
        values
    }
}

/// Replicas of a bucket's keys with the current membership.
pub(super) fn bucket_n(state: &AppState, props: &BucketProps) -> usize {
    props.n_val.min(state.coord.effective_n()).max(1)
}

fn n_val_violation(n: usize) -> RiakError {
    RiakError::bad_request(format!(
        "Specified w/dw/pw values invalid for bucket n value of {n}"
    ))
}

// ---------------------------------------------------------------------------
// Reads.

/// Validated read parameters.
pub(super) struct ReadParams {
    r: usize,
    pr: usize,
    timeout: Duration,
    notfound_ok: bool,
    basic_quorum: bool,
}

pub(super) fn read_params(
    state: &AppState,
    props: &BucketProps,
    q: &Params,
    n: usize,
) -> Result<ReadParams, RiakError> {
    let r = q.quorum("r")?.resolve(n, props.r);
    let pr = q.quorum("pr")?.resolve(n, props.pr);
    if r > n || pr > n {
        return Err(n_val_violation(n));
    }
    Ok(ReadParams {
        r,
        pr,
        timeout: timeout(state, q)?,
        notfound_ok: q
            .flag_or_default("notfound_ok")?
            .unwrap_or(props.notfound_ok),
        basic_quorum: q
            .flag_or_default("basic_quorum")?
            .unwrap_or(props.basic_quorum),
    })
}

/// Reads a key with Riak's R, PR, notfound_ok and basic_quorum.
pub(super) async fn read(
    state: &AppState,
    key: &Bytes,
    p: &ReadParams,
    n: usize,
) -> Result<Option<Object>, RiakError> {
    let opts = |r: usize| ReadOptions {
        r: Some(Quorum::Count(r as u32)),
        sloppy: p.pr == 0,
        timeout: Some(p.timeout),
        after: None,
        n_val: Some(n),
    };
    let first = p.r.max(p.pr).max(1);
    let found = state
        .coord
        .get(key.clone(), opts(first))
        .await
        .map_err(|e| RiakError::read(e, p.pr > 0))?;
    if found.is_none() && !p.notfound_ok {
        // A "not found" does not count: look further before saying so.
        let want = if p.basic_quorum { n / 2 + 1 } else { n };
        if want > first {
            return Ok(state
                .coord
                .get(key.clone(), opts(want))
                .await
                .unwrap_or(None));
        }
    }
    Ok(found)
}

/// A read of one key with the request's quorum parameters (`r`, `pr`,
/// `notfound_ok`, `basic_quorum`, `timeout`): the transport-neutral core
/// of the HTTP `GET` and the PBC `RpbGetReq`. `None`: nothing stored.
pub(super) async fn fetch(
    state: &AppState,
    riak: &Riak,
    t: &Target,
    q: &Params,
) -> Result<(Option<Object>, Arc<BucketProps>), RiakError> {
    let props = riak.props(state, t).await?;
    let n = bucket_n(state, &props);
    let p = read_params(state, &props, q, n)?;
    Stats::bump(&riak.stats().gets);
    let key = Bytes::from(t.internal_key());
    let object = read(state, &key, &p, n).await?;
    Ok((object, props))
}

/// `GET` (and `HEAD`) of one key.
pub async fn get(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
    q: Params,
    headers: HeaderMap,
) -> Result<Response, RiakError> {
    let (object, props) = fetch(&state, &riak, &t, &q).await?;
    let object = object.ok_or_else(RiakError::not_found)?;
    let vclock = vclock_header(&object.join(), &state.context_key);
    if let Some(vtag) = q.get("vtag") {
        let Some(c) = object.values().into_iter().find(|c| etag(c) == vtag) else {
            return Err(RiakError::not_found());
        };
        let mut r = single(&t, c, vclock);
        if c.deleted {
            r.headers_mut()
                .insert("x-riak-deleted", HeaderValue::from_static("true"));
        }
        return Ok(r);
    }
    let shown = visible(&riak, &object, &props);
    if shown.iter().all(|c| c.deleted) {
        return Err(deleted(vclock));
    }
    if let [c] = shown[..] {
        if not_modified(&headers, c) {
            let mut r = StatusCode::NOT_MODIFIED.into_response();
            r.headers_mut().insert(header::ETAG, quoted_etag(c));
            r.headers_mut().insert("x-riak-vclock", vclock);
            return Ok(r);
        }
        return Ok(single(&t, c, vclock));
    }
    Stats::bump(&riak.stats().siblings_answered);
    Ok(multiple_choices(&t, &object, &shown, vclock, &headers))
}

/// The 404 of a key whose visible siblings are all tombstones.
fn deleted(vclock: HeaderValue) -> RiakError {
    RiakError::not_found()
        .with_header(HeaderName::from_static("x-riak-vclock"), vclock)
        .with_header(
            HeaderName::from_static("x-riak-deleted"),
            HeaderValue::from_static("true"),
        )
}

fn quoted_etag(c: &Content) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{}\"", etag(c))).expect("base62")
}

fn last_modified(c: &Content) -> String {
    http_date(c.modified_micros / 1_000_000)
}

/// True when a GET's `If-None-Match` or `If-Modified-Since` says the
/// client's copy is current.
fn not_modified(headers: &HeaderMap, c: &Content) -> bool {
    if let Some(v) = header_str(headers, header::IF_NONE_MATCH) {
        return etag_matches(v, &etag(c));
    }
    match header_str(headers, header::IF_MODIFIED_SINCE).and_then(parse_http_date) {
        Some(since) => c.modified_micros / 1_000_000 <= since,
        None => false,
    }
}

fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Link`, `X-Riak-Meta-*` and `X-Riak-Index-*` of a sibling, in order.
fn meta_headers(t: &Target, c: &Content) -> Vec<(String, String)> {
    let mut link = format!("</buckets/{}>; rel=\"up\"", quote_plus(&t.bucket));
    for l in &c.meta.links {
        link.push_str(&format!(
            ", </buckets/{}/keys/{}>; riaktag=\"{}\"",
            l.bucket, l.key, l.tag
        ));
    }
    let mut out = vec![("Link".to_string(), link)];
    out.extend(
        c.meta
            .user
            .iter()
            .map(|(m, value)| (format!("X-Riak-Meta-{m}"), value.clone())),
    );
    // Entries are sorted by field: one header per field, values in order.
    for run in c.meta.indexes.chunk_by(|a, b| a.0 == b.0) {
        let values: Vec<&str> = run.iter().map(|(_, v)| v.as_str()).collect();
        out.push((format!("X-Riak-Index-{}", run[0].0), values.join(", ")));
    }
    out
}

/// A one-value answer (200).
fn single(t: &Target, c: &Content, vclock: HeaderValue) -> Response {
    let mut r = Response::new(Body::from(c.value.clone()));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type(c)) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert("x-riak-vclock", vclock);
    h.insert(header::ETAG, quoted_etag(c));
    if let Ok(v) = HeaderValue::from_str(&last_modified(c)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    for (name, value) in meta_headers(t, c) {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            h.append(n, v);
        }
    }
    r
}

/// The headers of a sibling's part in Riak's `multipart/mixed` (after its
/// `Content-Type`): `Link`, `Etag`, `Last-Modified`, `X-Riak-Deleted` on a
/// tombstone, then its metadata and index entries.
fn part_headers(t: &Target, c: &Content, head: &mut String) {
    let mut meta = meta_headers(t, c).into_iter();
    if let Some((name, value)) = meta.next() {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Etag: {}\r\n", etag(c)));
    head.push_str(&format!("Last-Modified: {}\r\n", last_modified(c)));
    if c.deleted {
        head.push_str("X-Riak-Deleted: true\r\n");
    }
    for (name, value) in meta {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
}

/// A 300 answer: `multipart/mixed` when accepted, else Riak's `text/plain`
/// list of vtags.
fn multiple_choices(
    t: &Target,
    object: &Object,
    shown: &[&Content],
    vclock: HeaderValue,
    headers: &HeaderMap,
) -> Response {
    let accepts_multipart = header_str(headers, header::ACCEPT)
        .is_some_and(|a| a.to_ascii_lowercase().contains("multipart/mixed"));
    let status = StatusCode::MULTIPLE_CHOICES;
    let mut r = if accepts_multipart {
        let part = |c: &Content, head: &mut String| part_headers(t, c, head);
        siblings::render(status, object, shown, Framing::Multipart(&part))
    } else {
        let mut body = String::from("Siblings:\n");
        for c in shown {
            body.push_str(&etag(c));
            body.push('\n');
        }
        let mut r = (status, body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    };
    let h = r.headers_mut();
    h.insert("x-riak-vclock", vclock);
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", base62_u64(object.digest()))).expect("base62"),
    );
    if let Some(latest) = shown.iter().map(|c| c.modified_micros).max()
        && let Ok(v) = HeaderValue::from_str(&http_date(latest / 1_000_000))
    {
        h.insert(header::LAST_MODIFIED, v);
    }
    r
}

// ---------------------------------------------------------------------------
// Writes.

/// The stored Content-Type of a write: the media type and its charset;
/// Riak refuses a write without one.
fn request_content_type(headers: &HeaderMap) -> Result<String, RiakError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .ok_or_else(|| RiakError::bad_request("Missing Content-Type request header"))?;
    let raw = String::from_utf8_lossy(raw.as_bytes());
    media_type_and_charset(&raw).ok_or_else(|| {
        let media = raw.split(';').next().unwrap_or_default().trim();
        RiakError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("\"{media}\" is not a valid media type for the Content-type header."),
        )
    })
}

fn invalid_link() -> RiakError {
    RiakError::bad_request(
        "Invalid Link header. Links must be of the form\n</buckets/BUCKET/keys/KEY>; riaktag=\"TAG\"",
    )
}

/// A link as the client sent it: (bucket, key, tag), decoded.
type LinkTarget = (Vec<u8>, Vec<u8>, Vec<u8>);

/// One `Link` entry: `Some((bucket, key, tag))`, or `None` for the
/// bucket's own `rel="up"` link (which is implied and not stored).
fn parse_link(item: &str) -> Result<Option<LinkTarget>, RiakError> {
    let (target, param) = item
        .strip_prefix('<')
        .and_then(|s| s.split_once('>'))
        .ok_or_else(invalid_link)?;
    let param = param
        .trim()
        .strip_prefix(';')
        .ok_or_else(invalid_link)?
        .trim();
    let (name, value) = param.split_once('=').ok_or_else(invalid_link)?;
    let value = value.trim().trim_matches('"');
    let segs: Vec<&str> = target.trim_start_matches('/').split('/').collect();
    match (name.trim(), segs.as_slice()) {
        ("riaktag", ["buckets", b, "keys", k]) | ("riaktag", ["riak", b, k]) => Ok(Some((
            unquote_plus(b),
            unquote_plus(k),
            unquote_plus(value),
        ))),
        ("rel", ["buckets", _]) | ("rel", ["riak", _]) => Ok(None),
        _ => Err(invalid_link()),
    }
}

/// Links, user metadata and index entries of a write, in stored form
/// (sorted by name, links numbered to keep their order).
fn request_meta(headers: &HeaderMap) -> Result<Meta, RiakError> {
    let mut meta = Meta::default();
    for v in headers.get_all(header::LINK) {
        let v = String::from_utf8_lossy(v.as_bytes());
        for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some((b, k, tag)) = parse_link(item)? {
                meta.links.push(Link {
                    bucket: quote_plus(&b),
                    key: quote_plus(&k),
                    tag: quote_plus(&tag),
                });
            }
        }
    }
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Some(m) = name.as_str().strip_prefix("x-riak-meta-") {
            meta.user.push((m.to_string(), value));
        } else if let Some(field) = name.as_str().strip_prefix("x-riak-index-") {
            for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                push_index(&mut meta, field, v)?;
            }
        }
    }
    meta.normalize();
    Ok(meta)
}

/// Adds one index entry to a write's metadata, refusing an unknown field
/// type or an `_int` value that is not an integer (Riak's sentences).
pub(super) fn push_index(meta: &mut Meta, field: &str, value: &str) -> Result<(), RiakError> {
    let int = field.ends_with("_int");
    if !int && !field.ends_with("_bin") {
        return Err(RiakError::bad_request(format!(
            "Unknown field type for field: '{field}'."
        )));
    }
    if int && value.parse::<i128>().is_err() {
        return Err(RiakError::bad_request(format!(
            "Could not parse field '{field}', value '{value}'."
        )));
    }
    meta.indexes.push((field.to_string(), value.to_string()));
    Ok(())
}

/// Whether a write carries conditions that need the current object.
fn has_preconditions(headers: &HeaderMap) -> bool {
    [
        header::IF_MATCH,
        header::IF_NONE_MATCH,
        header::IF_UNMODIFIED_SINCE,
    ]
    .iter()
    .any(|h| headers.contains_key(h))
}

/// Checks `If-Match`, `If-None-Match` and `If-Unmodified-Since` of a write
/// against the current object (412 when one fails).
fn check_preconditions(
    riak: &Riak,
    headers: &HeaderMap,
    current: Option<&Object>,
    props: &BucketProps,
) -> Result<(), RiakError> {
    let shown: Vec<&Content> = current.map(|o| visible(riak, o, props)).unwrap_or_default();
    let exists = shown.iter().any(|c| !c.deleted);
    let tag = match (current, shown.as_slice()) {
        (_, [one]) => Some(etag(one)),
        (Some(o), _) if exists => Some(base62_u64(o.digest())),
        _ => None,
    };
    let failed = || RiakError::new(StatusCode::PRECONDITION_FAILED, "Precondition Failed");
    if let Some(list) = header_str(headers, header::IF_MATCH) {
        let ok = exists && tag.as_deref().is_some_and(|t| etag_matches(list, t));
        if !ok {
            return Err(failed());
        }
    }
    if let Some(since) = header_str(headers, header::IF_UNMODIFIED_SINCE).and_then(parse_http_date)
    {
        let latest = shown.iter().map(|c| c.modified_micros / 1_000_000).max();
        if exists && latest.is_some_and(|l| l > since) {
            return Err(failed());
        }
    }
    if let Some(list) = header_str(headers, header::IF_NONE_MATCH) {
        let hit = exists && tag.as_deref().is_some_and(|t| etag_matches(list, t));
        if hit {
            return Err(failed());
        }
    }
    Ok(())
}

/// Validated write parameters.
pub(super) struct WriteParams {
    pub(super) required: usize,
    pub(super) pw: usize,
    pub(super) timeout: Duration,
}

pub(super) fn write_params(
    state: &AppState,
    props: &BucketProps,
    q: &Params,
    n: usize,
    delete: bool,
) -> Result<WriteParams, RiakError> {
    let w = q.quorum("w")?.resolve(n, props.w);
    let dw = q.quorum("dw")?.resolve(n, props.dw);
    let pw = q.quorum("pw")?.resolve(n, props.pw);
    let rw = if delete {
        q.quorum("rw")?.resolve(n, props.rw)
    } else {
        0
    };
    if [w, dw, pw, rw].iter().any(|&x| x > n) {
        return Err(n_val_violation(n));
    }
    Ok(WriteParams {
        required: w.max(dw).max(pw).max(rw).max(1),
        pw,
        timeout: timeout(state, q)?,
    })
}

/// `PUT` or `POST` of one key.
pub async fn put(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
    q: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RiakError> {
    store(&state, &riak, &t, false, &q, &headers, body).await
}

/// `POST /buckets/{b}/keys`: stores under a new random key (22 base62
/// digits, like Riak's `unique_id_62`); 201 with `Location`.
pub async fn post(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    mut t: Target,
    q: Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RiakError> {
    t.key = Some(random_id().into_bytes());
    store(&state, &riak, &t, true, &q, &headers, body).await
}

/// A write of one key (`created`: under a key the server chose).
async fn store(
    state: &AppState,
    riak: &Riak,
    t: &Target,
    created: bool,
    q: &Params,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, RiakError> {
    let value = input::body(body, state.limits.max_value_bytes)?;
    let content_type = request_content_type(headers)?;
    let meta = request_meta(headers)?;
    let context = parse_vclock(headers, &state.context_key)
        .inspect_err(|_| {
            state.metrics.bad_contexts.inc();
        })?
        .unwrap_or_default();
    let returnbody = q.flag_or_default("returnbody")?.unwrap_or(false);
    let precondition = if has_preconditions(headers) {
        Precondition::Http(headers)
    } else {
        Precondition::None
    };
    let input = WriteInput {
        value,
        content_type,
        meta,
        context,
    };
    let (object, props) = store_core(state, riak, t, q, input, precondition).await?;
    let location = t.key_path(t.key.as_deref().unwrap_or_default());
    let mut r = if returnbody {
        let vclock = vclock_header(&object.join(), &state.context_key);
        let shown = visible(riak, &object, &props);
        match shown[..] {
            [] => StatusCode::NO_CONTENT.into_response(),
            [c] => single(t, c, vclock),
            _ => multiple_choices(t, &object, &shown, vclock, headers),
        }
    } else if created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    };
    if created {
        if r.status() == StatusCode::OK {
            *r.status_mut() = StatusCode::CREATED;
        }
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(r)
}

/// What a client writes, decoded from its transport (headers and body, or
/// an `RpbContent`).
pub struct WriteInput {
    /// The value.
    pub value: Bytes,
    /// Media type and charset.
    pub content_type: String,
    /// Links, user metadata and index entries, normalised.
    pub meta: Meta,
    /// The causal context the client read (empty: a blind write).
    pub context: VersionVector,
}

/// A condition a write must meet against the current object, checked by a
/// read just before the write (not atomically, as in Riak).
pub enum Precondition<'a> {
    /// None.
    None,
    /// HTTP's `If-Match`, `If-None-Match` and `If-Unmodified-Since`.
    Http(&'a HeaderMap),
    /// PBC's `if_none_match`: no live object may exist.
    Absent,
    /// PBC's `if_not_modified`: the object's context must be the write's.
    Unmodified,
}

/// Stores one key: the transport-neutral core of the HTTP `PUT`/`POST` and
/// the PBC `RpbPutReq` (metadata limits, quorum parameters `w`, `dw`, `pw`,
/// `timeout`, the precondition, the bucket's sibling semantics). Answers
/// the object as after the write.
pub(super) async fn store_core(
    state: &AppState,
    riak: &Riak,
    t: &Target,
    q: &Params,
    input: WriteInput,
    precondition: Precondition<'_>,
) -> Result<(Object, Arc<BucketProps>), RiakError> {
    input::check_metadata(&state.limits, &input.content_type, &input.meta).inspect_err(|e| {
        state.metrics.metadata_refused(e.limit);
    })?;
    let props = riak.props(state, t).await?;
    let n = bucket_n(state, &props);
    let wp = write_params(state, &props, q, n, false)?;
    let key = Bytes::from(t.internal_key());
    if !matches!(precondition, Precondition::None) {
        let rp = read_params(state, &props, q, n)?;
        let current = read(state, &key, &rp, n).await?;
        let failed = |why: &str| RiakError::new(StatusCode::PRECONDITION_FAILED, why);
        match precondition {
            Precondition::None => {}
            Precondition::Http(headers) => {
                check_preconditions(riak, headers, current.as_ref(), &props)?;
            }
            Precondition::Absent => {
                let live = current
                    .as_ref()
                    .is_some_and(|o| visible(riak, o, &props).iter().any(|c| !c.deleted));
                if live {
                    return Err(failed("match_found"));
                }
            }
            Precondition::Unmodified => {
                let same = current.as_ref().is_some_and(|o| o.join() == input.context);
                if !same {
                    return Err(failed("modified"));
                }
            }
        }
    }
    let content = Content {
        value: input.value,
        content_type: input.content_type,
        deleted: false,
        modified_micros: 0,
        meta: input.meta,
    };
    let object = write(state, &props, key, content, input.context, &wp, n).await?;
    Stats::bump(&riak.stats().puts);
    Ok((object, props))
}

/// One write through the coordinator, with the bucket's semantics.
async fn write(
    state: &AppState,
    props: &BucketProps,
    key: Bytes,
    content: Content,
    context: VersionVector,
    wp: &WriteParams,
    n: usize,
) -> Result<Object, RiakError> {
    let req = WriteRequest {
        key,
        content,
        context,
        w: Quorum::Count(wp.required as u32),
        sloppy: wp.pw == 0,
        timeout_ms: wp.timeout.as_millis() as u64,
        idempotency_key: None,
        n_val: Some(n as u32),
        supersede: props.resolves_siblings(),
        datatype_op: None,
    };
    state
        .coord
        .put(req)
        .await
        .map(|o| o.object)
        .map_err(|e| RiakError::write(e, wp.pw > 0))
}

/// `DELETE` of one key.
pub async fn delete(
    State(state): State<AppState>,
    Extension(riak): Extension<Riak>,
    t: Target,
    q: Params,
    headers: HeaderMap,
) -> Result<Response, RiakError> {
    let vclock = parse_vclock(&headers, &state.context_key).inspect_err(|_| {
        state.metrics.bad_contexts.inc();
    })?;
    delete_core(&state, &riak, &t, &q, vclock).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes one key: the transport-neutral core of the HTTP `DELETE` and the
/// PBC `RpbDelReq`. Without a vclock it deletes what a read finds (Riak's
/// way), and answers "not found" when there is nothing.
pub(super) async fn delete_core(
    state: &AppState,
    riak: &Riak,
    t: &Target,
    q: &Params,
    vclock: Option<VersionVector>,
) -> Result<(), RiakError> {
    let props = riak.props(state, t).await?;
    let n = bucket_n(state, &props);
    let wp = write_params(state, &props, q, n, true)?;
    let key = Bytes::from(t.internal_key());
    let context = match vclock {
        Some(c) => c,
        None => {
            let rp = read_params(state, &props, q, n)?;
            let current = read(state, &key, &rp, n).await?;
            match current {
                Some(o) if visible(riak, &o, &props).iter().any(|c| !c.deleted) => o.join(),
                _ => return Err(RiakError::not_found()),
            }
        }
    };
    write(state, &props, key, Content::tombstone(0), context, &wp, n).await?;
    Stats::bump(&riak.stats().deletes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            bucket: b"b k".to_vec(),
            key: Some(b"k".to_vec()),
            typed: false,
            btype: None,
        }
    }

    #[tokio::test]
    async fn multipart_is_framed_as_riak_frames_it() {
        let mut a = Content::value("one", "text/plain", 1_000_000);
        a.meta.user = vec![("color".into(), "red".into())];
        let b = Content::tombstone(2_000_000);
        let mut accept = HeaderMap::new();
        accept.insert(
            header::ACCEPT,
            HeaderValue::from_static("multipart/mixed, */*"),
        );
        let o = Object::from_value(a.clone());
        let vclock = vclock_header(&o.join(), &dynkv_vclock::ContextKey::new([1; 32]));
        let r = multiple_choices(&target(), &o, &[&a, &b], vclock, &accept);
        assert_eq!(r.status(), StatusCode::MULTIPLE_CHOICES);
        assert_eq!(
            r.headers()[header::LAST_MODIFIED],
            "Thu, 01 Jan 1970 00:00:02 GMT"
        );
        assert!(r.headers().contains_key("x-riak-vclock"));
        let ct = r.headers()[header::CONTENT_TYPE].to_str().unwrap();
        let boundary = ct
            .strip_prefix("multipart/mixed; boundary=")
            .unwrap()
            .to_string();
        let body = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.starts_with(&format!("\r\n--{boundary}\r\nContent-Type: text/plain\r\n")));
        assert!(body.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert_eq!(body.matches(&format!("\r\n--{boundary}\r\n")).count(), 2);
        assert!(body.contains("Link: </buckets/b+k>; rel=\"up\"\r\n"));
        assert!(body.contains("X-Riak-Meta-color: red\r\n"));
        assert!(body.contains("Last-Modified: Thu, 01 Jan 1970 00:00:01 GMT\r\n"));
        assert!(body.contains("\r\nX-Riak-Deleted: true\r\n\r\n\r\n--"));
        assert!(body.contains("\r\n\r\none\r\n--"));
        let plain = multiple_choices(
            &target(),
            &o,
            &[&a, &b],
            vclock_header(&o.join(), &dynkv_vclock::ContextKey::new([1; 32])),
            &HeaderMap::new(),
        );
        assert_eq!(plain.headers()[header::CONTENT_TYPE], "text/plain");
        let body = axum::body::to_bytes(plain.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body, format!("Siblings:\n{}\n{}\n", etag(&a), etag(&b)));
    }

    #[test]
    fn content_types_keep_the_charset_only() {
        let mut h = HeaderMap::new();
        assert_eq!(
            request_content_type(&h).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=\"UTF-8\"; q=1"),
        );
        assert_eq!(
            request_content_type(&h).unwrap(),
            "application/json; charset=UTF-8"
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("nonsense"));
        assert_eq!(
            request_content_type(&h).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }

    #[test]
    fn links_meta_and_indexes_round_trip() {
        let mut h = HeaderMap::new();
        h.append(
            header::LINK,
            HeaderValue::from_static(
                "</buckets/other/keys/k%2F1>; riaktag=\"next\", </buckets/b>; rel=\"up\"",
            ),
        );
        h.append(
            header::LINK,
            HeaderValue::from_static("</riak/old/k2>; riaktag=\"prev\""),
        );
        h.insert(
            "x-riak-meta-custom",
            HeaderValue::from_static("some metadata"),
        );
        h.insert("x-riak-index-field_int", HeaderValue::from_static("3, 1"));
        let meta = request_meta(&h).unwrap();
        // Stored as the release before typed metadata stored it.
        assert_eq!(
            meta.to_pairs(),
            [
                ("riak.index.field_int", "1"),
                ("riak.index.field_int", "3"),
                ("riak.link.00000", "other/k%2F1/next"),
                ("riak.link.00001", "old/k2/prev"),
                ("riak.meta.custom", "some metadata"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
        );
        let c = Content::value("v", "text/plain", 0).with_meta(meta);
        let shown = meta_headers(&target(), &c);
        assert_eq!(
            shown[0],
            (
                "Link".to_string(),
                "</buckets/b+k>; rel=\"up\", </buckets/other/keys/k%2F1>; riaktag=\"next\", \
                 </buckets/old/keys/k2>; riaktag=\"prev\""
                    .to_string()
            )
        );
        assert!(shown.contains(&("X-Riak-Meta-custom".into(), "some metadata".into())));
        assert!(shown.contains(&("X-Riak-Index-field_int".into(), "1, 3".into())));

        h.insert(header::LINK, HeaderValue::from_static("<nowhere>"));
        assert!(request_meta(&h).is_err());
        h.remove(header::LINK);
        h.insert("x-riak-index-bad", HeaderValue::from_static("1"));
        assert!(request_meta(&h).is_err());
    }

    #[test]
    fn newest_sibling_wins_deterministically() {
        use dynkv_vclock::DvvSet;
        let a = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n1",
            Content::value("old", "text/plain", 5),
        );
        let b = DvvSet::update(
            &VersionVector::new(),
            &Object::new(),
            "n2",
            Content::value("new", "text/plain", 9),
        );
        let both = DvvSet::sync(&a, &b);
        assert_eq!(&newest(&both).unwrap().value[..], b"new");
        assert_eq!(
            etag(newest(&both).unwrap()),
            etag(newest(&DvvSet::sync(&b, &a)).unwrap())
        );
    }
}
