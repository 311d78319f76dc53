//! Message codes: the byte after a frame's length that says which message
//! the body is. The table is Riak's own `riak_pb_messages.csv`, so names in
//! logs, metrics and errors are the ones Riak's documentation uses.

/// Riak's message table, one `code,name,module` per line.
pub const TABLE: &str = include_str!("../riak_pb_messages.csv");

/// The name Riak gives a message code (`RpbGetReq`), if it has one: used to
/// label metrics and log lines.
pub fn name(code: u8) -> Option<&'static str> {
    static NAMES: std::sync::OnceLock<[Option<&'static str>; 256]> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = [None; 256];
        for line in TABLE.lines() {
            let mut parts = line.split(',');
            if let (Some(c), Some(n)) = (parts.next(), parts.next())
                && let Ok(c) = c.trim().parse::<u8>()
            {
                names[c as usize] = Some(n);
            }
        }
        names
    })[code as usize]
}

/// Any request may be answered with an error instead.
pub const ERROR_RESP: u8 = 0;
/// Liveness check, no body.
pub const PING_REQ: u8 = 1;
/// Answer to a ping, no body.
pub const PING_RESP: u8 = 2;
/// Ask for the connection's client id, no body.
pub const GET_CLIENT_ID_REQ: u8 = 3;
/// The connection's client id.
pub const GET_CLIENT_ID_RESP: u8 = 4;
/// Set the connection's client id.
pub const SET_CLIENT_ID_REQ: u8 = 5;
/// Client id set, no body.
pub const SET_CLIENT_ID_RESP: u8 = 6;
/// Ask for the node name and version, no body.
pub const GET_SERVER_INFO_REQ: u8 = 7;
/// The node name and version.
pub const GET_SERVER_INFO_RESP: u8 = 8;
/// Fetch an object.
pub const GET_REQ: u8 = 9;
/// An object's siblings and vclock.
pub const GET_RESP: u8 = 10;
/// Store an object.
pub const PUT_REQ: u8 = 11;
/// Put done (with the body if asked).
pub const PUT_RESP: u8 = 12;
/// Delete an object.
pub const DEL_REQ: u8 = 13;
/// Delete done, no body.
pub const DEL_RESP: u8 = 14;
/// List the buckets of a type.
pub const LIST_BUCKETS_REQ: u8 = 15;
/// Buckets (streamed when asked; the last has `done`).
pub const LIST_BUCKETS_RESP: u8 = 16;
/// List the keys of a bucket.
pub const LIST_KEYS_REQ: u8 = 17;
/// Keys, streamed; the last has `done`.
pub const LIST_KEYS_RESP: u8 = 18;
/// Read a bucket's properties.
pub const GET_BUCKET_REQ: u8 = 19;
/// A bucket's (or bucket type's) properties.
pub const GET_BUCKET_RESP: u8 = 20;
/// Set a bucket's properties.
pub const SET_BUCKET_REQ: u8 = 21;
/// Properties set, no body (also the answer to a bucket type's set).
pub const SET_BUCKET_RESP: u8 = 22;
/// A secondary index query.
pub const INDEX_REQ: u8 = 25;
/// Index results (streamed when asked).
pub const INDEX_RESP: u8 = 26;
/// Reset a bucket's properties to its type's.
pub const RESET_BUCKET_REQ: u8 = 29;
/// Properties reset, no body.
pub const RESET_BUCKET_RESP: u8 = 30;
/// Read a bucket type's properties (answered with `GET_BUCKET_RESP`).
pub const GET_BUCKET_TYPE_REQ: u8 = 31;
/// Set a bucket type's properties (answered with `SET_BUCKET_RESP`).
pub const SET_BUCKET_TYPE_REQ: u8 = 32;
/// Legacy counter increment (Riak 1.4).
pub const COUNTER_UPDATE_REQ: u8 = 50;
/// Legacy counter fetch (Riak 1.4).
pub const COUNTER_GET_REQ: u8 = 52;
/// Fetch a data type.
pub const DT_FETCH_REQ: u8 = 80;
/// A data type's value and context.
pub const DT_FETCH_RESP: u8 = 81;
/// Update a data type.
pub const DT_UPDATE_REQ: u8 = 82;
/// Update done (with the value if asked).
pub const DT_UPDATE_RESP: u8 = 83;
/// Authenticate (after TLS is up).
pub const AUTH_REQ: u8 = 253;
/// Authenticated, no body.
pub const AUTH_RESP: u8 = 254;
/// Upgrade the connection to TLS, no body; answered with the same code.
pub const START_TLS: u8 = 255;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_riaks_table() {
        assert_eq!(name(GET_REQ), Some("RpbGetReq"));
        assert_eq!(name(START_TLS), Some("RpbStartTls"));
        assert_eq!(name(DT_UPDATE_RESP), Some("DtUpdateResp"));
        assert_eq!(name(35), None);
    }

    #[test]
    fn constants_match_the_table() {
        for (code, n) in [
            (ERROR_RESP, "RpbErrorResp"),
            (PING_RESP, "RpbPingResp"),
            (SET_CLIENT_ID_RESP, "RpbSetClientIdResp"),
            (DEL_RESP, "RpbDelResp"),
            (LIST_KEYS_RESP, "RpbListKeysResp"),
            (RESET_BUCKET_RESP, "RpbResetBucketResp"),
            (SET_BUCKET_TYPE_REQ, "RpbSetBucketTypeReq"),
            (COUNTER_GET_REQ, "RpbCounterGetReq"),
            (INDEX_RESP, "RpbIndexResp"),
            (AUTH_RESP, "RpbAuthResp"),
        ] {
            assert_eq!(name(code), Some(n));
        }
    }
}
