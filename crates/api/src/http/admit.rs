//! The client-request bulkhead both APIs share: at most
//! `limits.max_inflight` requests at once per node (the permits are the
//! node's, so `/kv` and the Riak API share one bound); past it a request
//! is refused at once with 503 and `Retry-After` in its protocol's words,
//! never queued, and counted in `dynkv_overloaded_total`.
//!
//! The permit is taken only once the request body has arrived. The body is
//! read first, at most `limits.max_value_bytes` of it, within
//! `limits.body_read_timeout`: a client that trickles its body (or never
//! finishes it) gets 408 `body_timeout` when that time is up (counted in
//! `dynkv_body_timeouts_total`) and never held a permit, so a crowd of slow
//! senders cannot deny service to the clients that send at speed. A body
//! larger than the limit is not read further: the handler sees the excess
//! and answers its API's 413.
//!
//! A router mounts it as
//! `.layer(from_fn_with_state((state.clone(), REFUSALS), admit))`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::BytesMut;
use http_body_util::BodyExt;

use crate::AppState;

/// How an API words the bulkhead's refusals.
#[derive(Clone, Copy)]
pub struct Refusals {
    /// Every permit is taken (given the node's limit): 503.
    pub overloaded: fn(usize) -> Response,
    /// The body did not arrive in time (given the limit): 408.
    pub body_timeout: fn(Duration) -> Response,
}

/// What reading a body came to.
enum Read {
    /// All of it, within the limit.
    Whole(Bytes),
    /// More than the limit: the bytes read so far (over the limit), for the
    /// handler to refuse.
    TooLarge(Bytes),
    /// The connection failed mid-body.
    Failed(axum::Error),
}

/// Reads the body into memory, stopping once it passes `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Read {
    let mut body = body;
    // Most bodies arrive as one frame: that frame is kept as it is, and
    // bytes are copied only when a second frame has to be appended.
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                match first.take() {
                    None if buf.is_empty() => first = Some(data),
                    held => {
                        if let Some(held) = held {
                            let hint = axum::body::HttpBody::size_hint(&body).lower() as usize;
                            buf.reserve((held.len() + data.len() + hint).min(limit + 1));
                            buf.extend_from_slice(&held);
                        }
                        buf.extend_from_slice(&data);
                    }
                }
                let len = first.as_ref().map_or(buf.len(), Bytes::len);
                if len > limit {
                    return Read::TooLarge(first.unwrap_or_else(|| buf.freeze()));
                }
            }
            Err(e) => return Read::Failed(e),
        }
    }
    Read::Whole(first.unwrap_or_else(|| buf.freeze()))
}

/// Reads the request body within the body-read deadline, then runs the
/// request under one of the node's in-flight permits, or answers the API's
/// refusal (408, or 503 with `Retry-After` when no permit is free).
pub async fn admit(
    State((state, refuse)): State<(AppState, Refusals)>,
    req: Request,
    next: Next,
) -> Response {
    let limit = state.limits.max_value_bytes;
    let (parts, body) = req.into_parts();
    let declared_too_large = axum::body::HttpBody::size_hint(&body).lower() > limit as u64;
    let body = if axum::body::HttpBody::is_end_stream(&body) || declared_too_large {
        // Nothing to wait for, or a declared length the handler refuses
        // without reading.
        body
    } else {
        let wait = state.limits.body_read_timeout;
        match tokio::time::timeout(wait, read_body(body, limit)).await {
            Ok(Read::Whole(b) | Read::TooLarge(b)) => Body::from(b),
            Ok(Read::Failed(e)) => {
                Body::from_stream(futures::stream::once(async move { Err::<Bytes, _>(e) }))
            }
            Err(_) => {
                state.metrics.body_timeouts.inc();
                let mut r = (refuse.body_timeout)(wait);
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
        }
    };
    let req = Request::from_parts(parts, body);
    match state.inflight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => {
            state.metrics.overloaded.inc();
            let mut r = (refuse.overloaded)(state.limits.max_inflight);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(parts: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Bytes, std::io::Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Body::from_stream(futures::stream::iter(frames))
    }

    #[tokio::test]
    async fn one_frame_and_many_frames_read_the_same_bytes() {
        let cases: [&[&'static [u8]]; 2] = [&[b"hello world"], &[b"hel", b"lo ", b"world"]];
        for parts in cases {
            match read_body(chunked(parts), 64).await {
                Read::Whole(b) => assert_eq!(&b[..], b"hello world"),
                _ => panic!("{parts:?} not read whole"),
            }
        }
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_cut_short_as_too_large() {
        let cases: [&[&'static [u8]]; 2] = [&[b"0123456789"], &[b"0123", b"4567", b"89"]];
        for parts in cases {
            match read_body(chunked(parts), 6).await {
                Read::TooLarge(b) => assert!(b.len() > 6 && b"0123456789".starts_with(&b)),
                _ => panic!("{parts:?} not refused"),
            }
        }
    }
}
