//! Bucket and bucket type properties over PBC: `RpbGetBucketReq`,
//! `RpbSetBucketReq`, `RpbResetBucketReq`, `RpbGetBucketTypeReq`,
//! `RpbSetBucketTypeReq`. The properties travel as the HTTP adapter's JSON
//! `props` object, translated field by field to and from `RpbBucketProps`,
//! so validation, storage and caching are [`crate::riak::props`]' and
//! [`crate::riak::types`]' own.

use axum::http::StatusCode;
use bytes::Bytes;
use dynkv_btypes::TypeCommand;
use dynkv_riakpb::codes;
use dynkv_riakpb::messages::{
    RpbBucketProps, RpbGetBucketReq, RpbGetBucketResp, RpbGetBucketTypeReq, RpbModFun,
    RpbResetBucketReq, RpbSetBucketReq, RpbSetBucketTypeReq,
};
use serde_json::{Map, Value};
use tokio::io::AsyncWrite;

use super::{Answer, Out, quorum};
use crate::AppState;
use crate::riak::RiakError;
use crate::riak::props::{self as core, PropsRefused};
use crate::riak::request::Target;
use crate::riak::types::{self, Refused};

/// Quorum properties: `uint32` fields with Riak's symbolic values.
const QUORUMS: [&str; 6] = ["r", "w", "dw", "rw", "pr", "pw"];

/// The `RpbBucketProps` of a JSON `props` object (unknown keys dropped).
pub fn to_rpb(m: &Map<String, Value>) -> RpbBucketProps {
    let b = |k: &str| m.get(k).and_then(Value::as_bool);
    let u = |k: &str| {
        m.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let q = |k: &str| m.get(k).and_then(quorum::from_json);
    let s = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .map(|v| Bytes::from(v.to_string()))
    };
    let modfun = |k: &str| {
        let o = m.get(k)?.as_object()?;
        Some(RpbModFun {
            module: Bytes::from(o.get("mod")?.as_str()?.to_string()),
            function: Bytes::from(o.get("fun")?.as_str()?.to_string()),
        })
    };
    let mut p = RpbBucketProps {
        n_val: u("n_val"),
        allow_mult: b("allow_mult"),
        last_write_wins: b("last_write_wins"),
        has_precommit: Some(false),
        has_postcommit: Some(false),
        chash_keyfun: modfun("chash_keyfun"),
        linkfun: modfun("linkfun"),
        old_vclock: u("old_vclock"),
        young_vclock: u("young_vclock"),
        big_vclock: u("big_vclock"),
        small_vclock: u("small_vclock"),
        basic_quorum: b("basic_quorum"),
        notfound_ok: b("notfound_ok"),
        backend: s("backend"),
        search: b("search"),
        search_index: s("search_index"),
        datatype: s("datatype"),
        consistent: b("consistent"),
        write_once: b("write_once"),
        hll_precision: u("hll_precision"),
        ..Default::default()
    };
    for name in QUORUMS {
        let v = q(name);
        match name {
            "r" => p.r = v,
            "w" => p.w = v,
            "dw" => p.dw = v,
            "rw" => p.rw = v,
            "pr" => p.pr = v,
            _ => p.pw = v,
        }
    }
    p
}

/// The JSON `props` object of the fields an `RpbBucketProps` sets.
pub fn from_rpb(p: &RpbBucketProps) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map(|b| Value::from(String::from_utf8_lossy(b).into_owned()))
    };
    let word = |v: Option<u32>| {
        v.map(|v| match quorum::word(v).parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::from(quorum::word(v)),
        })
    };
    put("n_val", p.n_val.map(Value::from));
    put("allow_mult", p.allow_mult.map(Value::from));
    put("last_write_wins", p.last_write_wins.map(Value::from));
    put("old_vclock", p.old_vclock.map(Value::from));
    put("young_vclock", p.young_vclock.map(Value::from));
    put("big_vclock", p.big_vclock.map(Value::from));
    put("small_vclock", p.small_vclock.map(Value::from));
    put("r", word(p.r));
    put("w", word(p.w));
    put("dw", word(p.dw));
    put("rw", word(p.rw));
    put("pr", word(p.pr));
    put("pw", word(p.pw));
    put("basic_quorum", p.basic_quorum.map(Value::from));
    put("notfound_ok", p.notfound_ok.map(Value::from));
    put("backend", text(&p.backend));
    put("search", p.search.map(Value::from));
    put("search_index", text(&p.search_index));
    put("datatype", text(&p.datatype));
    put("consistent", p.consistent.map(Value::from));
    put("write_once", p.write_once.map(Value::from));
    put("hll_precision", p.hll_precision.map(Value::from));
    m
}

/// The `props` object of a `{"props": {...}}` document.
fn props_of(doc: &Value) -> Map<String, Value> {
    doc.get("props")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// `RpbGetBucketReq`: read from the cluster (and re-cached), as HTTP does.
pub async fn get<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbGetBucketReq,
    out: &mut Out<W>,
) -> Answer {
    let t = Target::new(state, req.r#type.as_deref(), &req.bucket, None)?;
    let p = state.riak.reload_props(state, &t).await?;
    let props = to_rpb(&props_of(&p.to_json(&t.bucket)));
    out.message(codes::GET_BUCKET_RESP, &RpbGetBucketResp { props });
    Ok(())
}

/// `RpbSetBucketReq`: merges the given properties over those set.
pub async fn set<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbSetBucketReq,
    out: &mut Out<W>,
) -> Answer {
    let t = Target::new(state, req.r#type.as_deref(), &req.bucket, None)?;
    match core::set(state, &state.riak, &t, from_rpb(&req.props)).await {
        Ok(()) => {}
        Err(PropsRefused::Invalid(errors)) => {
            return Err(RiakError::bad_request(Value::Object(errors).to_string()));
        }
        Err(PropsRefused::Failed(e)) => return Err(e),
    }
    out.empty(codes::SET_BUCKET_RESP);
    Ok(())
}

/// `RpbResetBucketReq`: back to the type's properties.
pub async fn reset<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbResetBucketReq,
    out: &mut Out<W>,
) -> Answer {
    let t = Target::new(state, req.r#type.as_deref(), &req.bucket, None)?;
    core::reset(state, &state.riak, &t).await?;
    out.empty(codes::RESET_BUCKET_RESP);
    Ok(())
}

/// `RpbGetBucketTypeReq`: a type's properties (answered `RpbGetBucketResp`).
pub fn get_type<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbGetBucketTypeReq,
    out: &mut Out<W>,
) -> Answer {
    let t = Target::of_type(state, Some(&req.r#type))?;
    let name = t.type_name().to_string();
    let entry = state.membership.as_ref().and_then(|m| m.bucket_type(&name));
    let doc = types::type_json(state, &name, entry.as_ref());
    let props = to_rpb(&props_of(&doc));
    out.message(codes::GET_BUCKET_RESP, &RpbGetBucketResp { props });
    Ok(())
}

/// `RpbSetBucketTypeReq`: updates a type (answered `RpbSetBucketResp`).
pub async fn set_type<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbSetBucketTypeReq,
    out: &mut Out<W>,
) -> Answer {
    let cmd = TypeCommand::Update {
        name: String::from_utf8_lossy(&req.r#type).into_owned(),
        props: from_rpb(&req.props),
    };
    match types::change(state, cmd).await {
        Ok(_) => {
            out.empty(codes::SET_BUCKET_RESP);
            Ok(())
        }
        Err(Refused(status, why)) => Err(RiakError::new(
            if status.is_success() {
                StatusCode::BAD_REQUEST
            } else {
                status
            },
            why,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn props_translate_both_ways() {
        let m = json!({"n_val": 3, "allow_mult": true, "r": "quorum", "pw": 0, "w": 2,
                       "datatype": "set", "precommit": []});
        let p = to_rpb(m.as_object().unwrap());
        assert_eq!(p.n_val, Some(3));
        assert_eq!(p.r, Some(quorum::QUORUM));
        assert_eq!((p.pw, p.w), (Some(0), Some(2)));
        assert_eq!(p.datatype.as_deref(), Some(&b"set"[..]));
        let back = from_rpb(&p);
        assert_eq!(back["r"], json!("quorum"));
        assert_eq!(back["w"], json!(2));
        assert_eq!(back["allow_mult"], json!(true));
        assert!(!back.contains_key("has_precommit"));
    }
}
