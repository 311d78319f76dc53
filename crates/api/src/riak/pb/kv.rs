//! Objects over PBC: `RpbGetReq`, `RpbPutReq`, `RpbDelReq`, served by the
//! same core functions as the HTTP routes ([`object::fetch`],
//! [`object::store_core`], [`object::delete_core`]). This module only
//! translates: request fields to [`Params`](crate::http::params::Params),
//! `RpbContent` to stored content and back, vclock bytes to contexts.

use axum::http::StatusCode;
use bytes::Bytes;
use dynkv_riakpb::codes;
use dynkv_riakpb::messages::{
    RpbContent, RpbDelReq, RpbGetReq, RpbGetResp, RpbLink, RpbPair, RpbPutReq, RpbPutResp,
};
use dynkv_vclock::{
    Content, Link, Meta, Object, VersionVector, context_payload, decode_context_payload,
};
use tokio::io::AsyncWrite;

use super::{Answer, Out, params};
use crate::AppState;
use crate::http::codec::{quote_plus, random_id, unquote_plus};
use crate::http::siblings::content_type;
use crate::riak::RiakError;
use crate::riak::object::{self, Precondition, WriteInput, etag, push_index};
use crate::riak::request::Target;

/// The type given in a request (`None`: the default type, untyped).
fn type_of(t: &Option<Bytes>) -> Option<&[u8]> {
    t.as_deref()
}

/// The binary vclock of an object: the signed context payload whose base64
/// is the HTTP adapter's `X-Riak-Vclock`.
pub fn vclock(state: &AppState, vv: &VersionVector) -> Bytes {
    Bytes::from(context_payload(vv, &state.context_key))
}

/// A client's vclock, verified (empty: none).
pub fn parse_vclock(
    state: &AppState,
    raw: Option<&Bytes>,
) -> Result<Option<VersionVector>, RiakError> {
    match raw {
        None => Ok(None),
        Some(b) if b.is_empty() => Ok(None),
        Some(b) => decode_context_payload(b, &state.context_key)
            .map(Some)
            .map_err(|e| {
                state.metrics.bad_contexts.inc();
                RiakError::bad_request(format!("bad_context: Invalid vclock: {e}"))
            }),
    }
}

/// `RpbGetReq`: `RpbGetResp` with every visible sibling; nothing found is
/// an empty answer, a deleted key's vclock is given with `deletedvclock`.
pub async fn get<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbGetReq,
    out: &mut Out<W>,
) -> Answer {
    let t = Target::new(state, type_of(&req.r#type), &req.bucket, Some(&req.key))?;
    let q = params(
        &[("r", req.r), ("pr", req.pr)],
        &[
            ("notfound_ok", req.notfound_ok),
            ("basic_quorum", req.basic_quorum),
        ],
        req.timeout,
    );
    let (object, props) = object::fetch(state, &state.riak, &t, &q).await?;
    let Some(object) = object else {
        out.message(codes::GET_RESP, &RpbGetResp::default());
        return Ok(());
    };
    let vv = object.join();
    if let Some(seen) = parse_vclock(state, req.if_modified.as_ref())?
        && seen == vv
    {
        let resp = RpbGetResp {
            unchanged: Some(true),
            ..Default::default()
        };
        out.message(codes::GET_RESP, &resp);
        return Ok(());
    }
    let shown = object::visible(&state.riak, &object, &props);
    if shown.iter().all(|c| c.deleted) {
        let resp = RpbGetResp {
            vclock: req
                .deletedvclock
                .unwrap_or(false)
                .then(|| vclock(state, &vv)),
            ..Default::default()
        };
        out.message(codes::GET_RESP, &resp);
        return Ok(());
    }
    let head = req.head.unwrap_or(false);
    let resp = RpbGetResp {
        content: shown.iter().map(|c| to_content(c, head)).collect(),
        vclock: Some(vclock(state, &vv)),
        unchanged: None,
    };
    out.message(codes::GET_RESP, &resp);
    Ok(())
}

/// `RpbPutReq`: stores, and answers the object as after the write when
/// `return_body` (or `return_head`) is set, the generated key when none
/// was given.
pub async fn put<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbPutReq,
    out: &mut Out<W>,
) -> Answer {
    let generated = req.key.is_none();
    let key = match &req.key {
        Some(k) => k.to_vec(),
        None => random_id().into_bytes(),
    };
    let t = Target::new(state, type_of(&req.r#type), &req.bucket, Some(&key))?;
    let q = params(
        &[("w", req.w), ("dw", req.dw), ("pw", req.pw)],
        &[],
        req.timeout,
    );
    if req.content.value.len() > state.limits.max_value_bytes {
        return Err(RiakError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Object too large: at most {} bytes are allowed",
                state.limits.max_value_bytes
            ),
        ));
    }
    let context = parse_vclock(state, req.vclock.as_ref())?.unwrap_or_default();
    let precondition = if req.if_none_match.unwrap_or(false) {
        Precondition::Absent
    } else if req.if_not_modified.unwrap_or(false) {
        Precondition::Unmodified
    } else {
        Precondition::None
    };
    let input = from_content(req.content, context)?;
    let (object, props) =
        object::store_core(state, &state.riak, &t, &q, input, precondition).await?;
    let head = req.return_head.unwrap_or(false);
    let mut resp = RpbPutResp {
        key: generated.then(|| Bytes::from(key)),
        ..Default::default()
    };
    if req.return_body.unwrap_or(false) || head {
        let shown = object::visible(&state.riak, &object, &props);
        resp.content = shown
            .iter()
            .filter(|c| !c.deleted)
            .map(|c| to_content(c, head))
            .collect();
        resp.vclock = Some(vclock(state, &object.join()));
    }
    out.message(codes::PUT_RESP, &resp);
    Ok(())
}

/// `RpbDelReq`: deletes what the vclock saw (or what a read finds);
/// deleting nothing succeeds, as in Riak.
pub async fn delete<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbDelReq,
    out: &mut Out<W>,
) -> Answer {
    let t = Target::new(state, type_of(&req.r#type), &req.bucket, Some(&req.key))?;
    let q = params(
        &[
            ("rw", req.rw),
            ("r", req.r),
            ("w", req.w),
            ("pr", req.pr),
            ("pw", req.pw),
            ("dw", req.dw),
        ],
        &[],
        req.timeout,
    );
    let vv = parse_vclock(state, req.vclock.as_ref())?;
    match object::delete_core(state, &state.riak, &t, &q, vv).await {
        Ok(()) => {}
        Err(e) if e.status == StatusCode::NOT_FOUND => {}
        Err(e) => return Err(e),
    }
    out.empty(codes::DEL_RESP);
    Ok(())
}

/// A stored sibling as `RpbContent` (`head`: without its value).
pub fn to_content(c: &Content, head: bool) -> RpbContent {
    let full = content_type(c);
    let mut parts = full.split(';').map(str::trim);
    let media = parts.next().unwrap_or_default().to_string();
    let charset = parts.find_map(|p| {
        p.strip_prefix("charset=")
            .map(|v| Bytes::from(v.trim_matches('"').to_string()))
    });
    RpbContent {
        value: if head { Bytes::new() } else { c.value.clone() },
        content_type: (!media.is_empty()).then(|| Bytes::from(media)),
        charset,
        content_encoding: None,
        vtag: Some(Bytes::from(etag(c))),
        links: c
            .meta
            .links
            .iter()
            .map(|l| RpbLink {
                bucket: Some(Bytes::from(unquote_plus(&l.bucket))),
                key: Some(Bytes::from(unquote_plus(&l.key))),
                tag: Some(Bytes::from(unquote_plus(&l.tag))),
            })
            .collect(),
        last_mod: Some((c.modified_micros / 1_000_000) as u32),
        last_mod_usecs: Some((c.modified_micros % 1_000_000) as u32),
        usermeta: c
            .meta
            .user
            .iter()
            .map(|(k, v)| RpbPair {
                key: Bytes::from(k.clone()),
                value: Some(Bytes::from(v.clone())),
            })
            .collect(),
        indexes: c
            .meta
            .indexes
            .iter()
            .map(|(k, v)| RpbPair {
                key: Bytes::from(k.clone()),
                value: Some(Bytes::from(v.clone())),
            })
            .collect(),
        deleted: c.deleted.then_some(true),
    }
}

/// A client's `RpbContent` as a write: the media type with its charset
/// (`application/octet-stream` when none is given), links, user metadata
/// and index entries (checked as the HTTP adapter checks them).
pub fn from_content(c: RpbContent, context: VersionVector) -> Result<WriteInput, RiakError> {
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let mut content_type = c
        .content_type
        .as_ref()
        .map(text)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "application/octet-stream".to_string());
    if let Some(cs) = c.charset.as_ref().map(text).filter(|s| !s.is_empty()) {
        content_type = format!("{content_type}; charset={cs}");
    }
    let mut meta = Meta::default();
    for l in &c.links {
        let part = |b: &Option<Bytes>| quote_plus(b.as_deref().unwrap_or_default());
        meta.links.push(Link {
            bucket: part(&l.bucket),
            key: part(&l.key),
            tag: part(&l.tag),
        });
    }
    for p in &c.usermeta {
        let value = p.value.as_ref().map(text).unwrap_or_default();
        meta.user.push((text(&p.key), value));
    }
    for p in &c.indexes {
        let field = text(&p.key).to_ascii_lowercase();
        let value = p.value.as_ref().map(text).unwrap_or_default();
        push_index(&mut meta, &field, &value)?;
    }
    meta.normalize();
    Ok(WriteInput {
        value: c.value,
        content_type,
        meta,
        context,
    })
}

/// The objects of a listing answer, for the 2i `return_body` path.
pub fn object_resp(state: &AppState, o: &Object) -> RpbGetResp {
    RpbGetResp {
        content: o.values().iter().map(|c| to_content(c, false)).collect(),
        vclock: Some(vclock(state, &o.join())),
        unchanged: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trips_through_rpbcontent() {
        let c = RpbContent {
            value: Bytes::from_static(b"v"),
            content_type: Some(Bytes::from_static(b"text/plain")),
            charset: Some(Bytes::from_static(b"UTF-8")),
            links: vec![RpbLink {
                bucket: Some(Bytes::from_static(b"b 2")),
                key: Some(Bytes::from_static(b"k/1")),
                tag: Some(Bytes::from_static(b"next")),
            }],
            usermeta: vec![RpbPair {
                key: Bytes::from_static(b"color"),
                value: Some(Bytes::from_static(b"red")),
            }],
            indexes: vec![RpbPair {
                key: Bytes::from_static(b"Age_INT"),
                value: Some(Bytes::from_static(b"42")),
            }],
            ..Default::default()
        };
        let w = from_content(c.clone(), VersionVector::new()).unwrap();
        assert_eq!(w.content_type, "text/plain; charset=UTF-8");
        let stored = Content::value(w.value, &w.content_type, 1_500_000).with_meta(w.meta);
        let back = to_content(&stored, false);
        assert_eq!(back.value, c.value);
        assert_eq!(back.content_type, c.content_type);
        assert_eq!(back.charset, c.charset);
        assert_eq!(back.links, c.links);
        assert_eq!(back.usermeta, c.usermeta);
        assert_eq!(back.indexes[0].key, Bytes::from_static(b"age_int"));
        assert_eq!(
            (back.last_mod, back.last_mod_usecs),
            (Some(1), Some(500_000))
        );
        assert!(to_content(&stored, true).value.is_empty());
    }

    #[test]
    fn bad_index_entries_are_refused_in_riaks_words() {
        let c = RpbContent {
            value: Bytes::from_static(b"v"),
            indexes: vec![RpbPair {
                key: Bytes::from_static(b"n_int"),
                value: Some(Bytes::from_static(b"x")),
            }],
            ..Default::default()
        };
        let e = from_content(c, VersionVector::new()).err().unwrap();
        assert_eq!(e.body, "Could not parse field 'n_int', value 'x'.\n");
    }
}
