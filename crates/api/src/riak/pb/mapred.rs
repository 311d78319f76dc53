//! MapReduce over protocol buffers (`RpbMapRedReq`, 23 → `RpbMapRedResp`,
//! 24), as far as dynkv serves it over HTTP: a job with no phases whose
//! inputs are a secondary index query, answered by
//! [`index::mapred_answer`](super::super::index::mapred_answer) (the core
//! of `POST /mapred`). The Riak clients run such jobs for `client.index()`.
//! The answer is one message with phase 0 and the JSON `[[bucket, key],
//! ...]`, then one with `done`, as Riak streams a job's results.

use dynkv_riakpb::messages::{RpbMapRedReq, RpbMapRedResp};
use prost::bytes::Bytes;
use serde_json::Value;

use super::super::RiakError;
use super::super::index;
use crate::AppState;

/// `RpbMapRedReq`'s message code.
pub const MAP_RED_REQ: u8 = 23;
/// `RpbMapRedResp`'s message code.
pub const MAP_RED_RESP: u8 = 24;

/// The answer messages of a job: its results, then `done`.
pub async fn mapred(state: &AppState, req: RpbMapRedReq) -> Result<Vec<RpbMapRedResp>, RiakError> {
    let ct = req.content_type.as_ref();
    if !ct.is_empty() && !ct.eq_ignore_ascii_case(b"application/json") {
        return Err(RiakError::bad_request(format!(
            "Unsupported MapReduce content type: {}",
            String::from_utf8_lossy(ct)
        )));
    }
    let pairs = index::mapred_answer(state, &req.request).await?;
    Ok(vec![
        RpbMapRedResp {
            phase: Some(0),
            response: Some(Bytes::from(Value::Array(pairs).to_string())),
            done: None,
        },
        RpbMapRedResp {
            done: Some(true),
            ..Default::default()
        },
    ])
}
