//! Riak security over protocol buffers, as `riak_api_pb_server` runs it:
//! with security enabled a connection must first upgrade to TLS
//! (`RpbStartTls`, 255, answered with the same code, then the TLS
//! handshake on the same socket with the node's certificate), then
//! authenticate (`RpbAuthReq`, 253, user and password, answered
//! `RpbAuthResp`, 254); any other message before that is refused with
//! Riak's words. Afterwards each request is authorised with the grants the
//! matching HTTP route needs ([`need`]), from the same security state.
//!
//! [`Gate`] is the connection's state machine, free of I/O: the listener
//! asks it what to do with each message code and reports the upgrade and
//! the authentication.

use std::net::IpAddr;

use axum::http::StatusCode;
use dynkv_riakpb::codes;
use dynkv_riakpb::messages::{
    DtFetchReq, DtUpdateReq, RpbAuthReq, RpbDelReq, RpbGetBucketReq, RpbGetReq, RpbIndexReq,
    RpbListBucketsReq, RpbListKeysReq, RpbPutReq, RpbResetBucketReq, RpbSetBucketReq,
};
use dynkv_security::Permission;
use prost::Message;

use super::super::RiakError;
use crate::AppState;
use crate::http::auth::{Need, check_password};

/// Riak's refusal of a message before `RpbStartTls`.
pub const STARTTLS_FIRST: &str = "Security is enabled, please STARTTLS first";
/// Riak's refusal of a message before `RpbAuthReq`.
pub const AUTHENTICATE_FIRST: &str = "Please authenticate first";
/// Riak's refusal of `RpbStartTls` or `RpbAuthReq` with security off.
pub const SECURITY_OFF: &str = "Security not enabled; STARTTLS not allowed.";

/// Where a connection is in the security handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Gate {
    /// No TLS yet.
    #[default]
    Plain,
    /// TLS is up; no user yet.
    Tls,
    /// Authenticated as this user (over TLS).
    User(String),
}

/// What to do with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Serve it (as `user` when security is on).
    Serve(Option<String>),
    /// Answer `RpbStartTls` and upgrade the connection.
    StartTls,
    /// Check the `RpbAuthReq` credentials ([`authenticate`]).
    Authenticate,
    /// Answer `RpbErrorResp` with these words; the connection stays open.
    Refuse(&'static str),
}

impl Gate {
    /// What to do with a message of `code`, security being `enabled`.
    pub fn step(&self, enabled: bool, code: u8) -> Step {
        if !enabled {
            return match (code, self) {
                (codes::START_TLS | codes::AUTH_REQ, Gate::Plain) => Step::Refuse(SECURITY_OFF),
                (_, Gate::User(u)) => Step::Serve(Some(u.clone())),
                _ => Step::Serve(None),
            };
        }
        match (self, code) {
            (Gate::Plain, codes::START_TLS) => Step::StartTls,
            (Gate::Plain, _) => Step::Refuse(STARTTLS_FIRST),
            (Gate::Tls, codes::AUTH_REQ) => Step::Authenticate,
            (Gate::Tls, _) => Step::Refuse(AUTHENTICATE_FIRST),
            (Gate::User(u), _) => Step::Serve(Some(u.clone())),
        }
    }
}

/// Checks an `RpbAuthReq` body against the security state, by the sources
/// that match the user and the peer, with the password cache HTTP Basic
/// uses: the user on success, Riak's `Authentication failed` otherwise
/// (each failure counted with its reason).
pub async fn authenticate(
    state: &AppState,
    body: &[u8],
    peer: Option<IpAddr>,
) -> Result<String, RiakError> {
    let failed = || RiakError::new(StatusCode::UNAUTHORIZED, "Authentication failed");
    let req = RpbAuthReq::decode(body).map_err(|_| failed())?;
    let user = String::from_utf8(req.user.to_vec()).map_err(|_| failed())?;
    let password = String::from_utf8(req.password.to_vec()).map_err(|_| failed())?;
    let Some(sec) = state.membership.as_ref().map(|m| m.security()) else {
        return Err(failed());
    };
    match check_password(state, &sec, &user, &password, peer).await {
        Ok(()) => Ok(user),
        Err(reason) => {
            state.metrics.auth_failure(reason);
            Err(failed())
        }
    }
}

fn text(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// A grant on a bucket type (`default` when none is named) and bucket.
fn grant(p: Permission, btype: Option<&[u8]>, bucket: Option<&[u8]>) -> Need {
    let t = match btype.filter(|t| !t.is_empty()) {
        Some(t) => text(t),
        None => Some("default".to_string()),
    };
    Need::Grant(p, t, bucket.and_then(text))
}

/// What a request of `code` needs: the permission of the HTTP route that
/// does the same (`riak_kv.get` for `RpbGetReq` and `DtFetchReq`,
/// `riak_kv.put` for `RpbPutReq` and `DtUpdateReq`, `riak_kv.index` for
/// `RpbIndexReq`, ...), or a valid user for the rest (ping, server info,
/// bucket types, as over HTTP). A body that does not decode needs the
/// grant on any bucket (the handler refuses it anyway).
pub fn need(code: u8, body: &[u8]) -> Need {
    use Permission::*;
    fn on<M: Message + Default>(
        body: &[u8],
        p: Permission,
        f: impl Fn(&M) -> (Option<&[u8]>, Option<&[u8]>),
    ) -> Need {
        match M::decode(body) {
            Ok(m) => {
                let (t, b) = f(&m);
                grant(p, t, b)
            }
            Err(_) => Need::Grant(p, None, None),
        }
    }
    match code {
        codes::GET_REQ => on::<RpbGetReq>(body, Get, |m| (m.r#type.as_deref(), Some(&m.bucket))),
        codes::PUT_REQ => on::<RpbPutReq>(body, Put, |m| (m.r#type.as_deref(), Some(&m.bucket))),
        codes::DEL_REQ => on::<RpbDelReq>(body, Delete, |m| (m.r#type.as_deref(), Some(&m.bucket))),
        codes::LIST_KEYS_REQ => {
            on::<RpbListKeysReq>(body, ListKeys, |m| (m.r#type.as_deref(), Some(&m.bucket)))
        }
        codes::LIST_BUCKETS_REQ => {
            on::<RpbListBucketsReq>(body, ListBuckets, |m| (m.r#type.as_deref(), None))
        }
        codes::GET_BUCKET_REQ => {
            on::<RpbGetBucketReq>(body, GetBucket, |m| (m.r#type.as_deref(), Some(&m.bucket)))
        }
        codes::SET_BUCKET_REQ => {
            on::<RpbSetBucketReq>(body, SetBucket, |m| (m.r#type.as_deref(), Some(&m.bucket)))
        }
        codes::RESET_BUCKET_REQ => {
            on::<RpbResetBucketReq>(body, SetBucket, |m| (m.r#type.as_deref(), Some(&m.bucket)))
        }
        codes::INDEX_REQ => {
            on::<RpbIndexReq>(body, Index, |m| (m.r#type.as_deref(), Some(&m.bucket)))
        }
        codes::DT_FETCH_REQ => on::<DtFetchReq>(body, Get, |m| (Some(&m.r#type), Some(&m.bucket))),
        codes::DT_UPDATE_REQ => {
            on::<DtUpdateReq>(body, Put, |m| (Some(&m.r#type), Some(&m.bucket)))
        }
        // The one job served is an index query whose bucket is in the
        // JSON body: as over HTTP, only a grant on any bucket covers it.
        super::mapred::MAP_RED_REQ => Need::Grant(Index, None, None),
        _ => Need::User,
    }
}

/// Whether `user` may make a request of `code`: `Ok`, or Riak's
/// `Permission denied` naming the grant (counted as `forbidden`).
pub fn authorise(state: &AppState, user: &str, code: u8, body: &[u8]) -> Result<(), RiakError> {
    let Need::Grant(p, t, b) = need(code, body) else {
        return Ok(());
    };
    let Some(sec) = state.membership.as_ref().map(|m| m.security()) else {
        return Ok(());
    };
    if sec.allowed(user, p, t.as_deref(), b.as_deref()) {
        return Ok(());
    }
    state.metrics.auth_failure("forbidden");
    let what = match (&t, &b) {
        (Some(t), Some(b)) => format!("{p} on {t} {b}"),
        (Some(t), None) => format!("{p} on {t}"),
        _ => p.to_string(),
    };
    Err(RiakError::new(
        StatusCode::FORBIDDEN,
        format!("Permission denied: {what}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::bytes::Bytes;

    #[test]
    fn nothing_passes_before_tls_and_authentication() {
        let g = Gate::Plain;
        assert_eq!(g.step(true, codes::PING_REQ), Step::Refuse(STARTTLS_FIRST));
        assert_eq!(g.step(true, codes::AUTH_REQ), Step::Refuse(STARTTLS_FIRST));
        assert_eq!(g.step(true, codes::START_TLS), Step::StartTls);
        let g = Gate::Tls;
        assert_eq!(
            g.step(true, codes::GET_REQ),
            Step::Refuse(AUTHENTICATE_FIRST)
        );
        assert_eq!(g.step(true, codes::AUTH_REQ), Step::Authenticate);
        let g = Gate::User("alice".into());
        assert_eq!(
            g.step(true, codes::GET_REQ),
            Step::Serve(Some("alice".into()))
        );
    }

    #[test]
    fn with_security_off_requests_pass_and_the_handshake_is_refused() {
        assert_eq!(Gate::Plain.step(false, codes::GET_REQ), Step::Serve(None));
        assert_eq!(
            Gate::Plain.step(false, codes::START_TLS),
            Step::Refuse(SECURITY_OFF)
        );
        assert_eq!(
            Gate::Plain.step(false, codes::AUTH_REQ),
            Step::Refuse(SECURITY_OFF)
        );
    }

    #[test]
    fn requests_need_the_grants_of_their_http_routes() {
        let get = RpbGetReq {
            bucket: Bytes::from_static(b"b"),
            key: Bytes::from_static(b"k"),
            ..Default::default()
        };
        assert_eq!(
            need(codes::GET_REQ, &get.encode_to_vec()),
            Need::Grant(Permission::Get, Some("default".into()), Some("b".into()))
        );
        let ix = RpbIndexReq {
            bucket: Bytes::from_static(b"b"),
            r#type: Some(Bytes::from_static(b"t")),
            ..Default::default()
        };
        assert_eq!(
            need(codes::INDEX_REQ, &ix.encode_to_vec()),
            Need::Grant(Permission::Index, Some("t".into()), Some("b".into()))
        );
        let dt = DtUpdateReq {
            bucket: Bytes::from_static(b"b"),
            r#type: Bytes::from_static(b"maps"),
            ..Default::default()
        };
        assert_eq!(
            need(codes::DT_UPDATE_REQ, &dt.encode_to_vec()),
            Need::Grant(Permission::Put, Some("maps".into()), Some("b".into()))
        );
        assert_eq!(need(codes::PING_REQ, &[]), Need::User);
        assert_eq!(
            need(codes::GET_REQ, &[0xff]),
            Need::Grant(Permission::Get, None, None)
        );
    }
}
