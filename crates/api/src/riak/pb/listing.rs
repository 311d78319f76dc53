//! Listings over PBC: `RpbListBucketsReq` and `RpbListKeysReq`, from the
//! same listing task as the HTTP routes ([`super::super::listing`]). Keys
//! are always streamed, one `RpbListKeysResp` per page as it arrives and a
//! last one with `done`; buckets are streamed when `stream` is set, else
//! sent in one answer. A failure mid-way ends the stream with an
//! `RpbErrorResp`, as Riak does.

use std::time::{Duration, Instant};

use dynkv_riakpb::codes;
use dynkv_riakpb::messages::{
    RpbListBucketsReq, RpbListBucketsResp, RpbListKeysReq, RpbListKeysResp,
};
use tokio::io::AsyncWrite;

use super::{Answer, Out};
use crate::AppState;
use crate::riak::RiakError;
use crate::riak::listing::{Event, bucket_events, key_events};
use crate::riak::request::Target;
use axum::http::StatusCode;
use bytes::Bytes;

/// When a listing must be done: its `timeout` (milliseconds, capped as the
/// HTTP adapter caps it) or the HTTP adapter's default.
fn deadline(state: &AppState, timeout: Option<u32>) -> Instant {
    let max = state.limits.max_timeout_ms;
    let ms = timeout.map_or(max.min(60_000), |t| u64::from(t).min(max));
    Instant::now() + Duration::from_millis(ms)
}

fn failed(why: String) -> RiakError {
    RiakError::new(StatusCode::SERVICE_UNAVAILABLE, why)
}

/// `RpbListKeysReq`: the bucket's keys, streamed.
pub async fn keys<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbListKeysReq,
    out: &mut Out<W>,
) -> Answer {
    let t = Target::new(state, req.r#type.as_deref(), &req.bucket, None)?;
    let mut rx = key_events(state, &state.riak, &t, deadline(state, req.timeout));
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Batch(names) => {
                let resp = RpbListKeysResp {
                    keys: names.into_iter().map(Bytes::from).collect(),
                    done: None,
                };
                out.send_now(codes::LIST_KEYS_RESP, &resp)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
            }
            Event::Failed(why) => return Err(failed(why)),
        }
    }
    let last = RpbListKeysResp {
        keys: Vec::new(),
        done: Some(true),
    };
    out.message(codes::LIST_KEYS_RESP, &last);
    Ok(())
}

/// `RpbListBucketsReq`: the type's buckets, streamed when asked.
pub async fn buckets<W: AsyncWrite + Unpin + Send>(
    state: &AppState,
    req: RpbListBucketsReq,
    out: &mut Out<W>,
) -> Answer {
    let t = Target::of_type(state, req.r#type.as_deref())?;
    let stream = req.stream.unwrap_or(false);
    let mut rx = bucket_events(state, &state.riak, &t, deadline(state, req.timeout));
    let mut all = Vec::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Batch(names) if stream => {
                let resp = RpbListBucketsResp {
                    buckets: names.into_iter().map(Bytes::from).collect(),
                    done: None,
                };
                out.send_now(codes::LIST_BUCKETS_RESP, &resp)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
            }
            Event::Batch(names) => all.extend(names.into_iter().map(Bytes::from)),
            Event::Failed(why) => return Err(failed(why)),
        }
    }
    let last = RpbListBucketsResp {
        buckets: all,
        done: Some(true),
    };
    out.message(codes::LIST_BUCKETS_RESP, &last);
    Ok(())
}
