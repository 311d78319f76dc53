//! Riak's protocol buffers API (PBC) across real `dynkv` processes: a write
//! through one node's PBC port read through another's, siblings as
//! `RpbContent` lists, streamed key listing, bucket properties shared with
//! the HTTP API, unknown message codes, and an oversized frame refused
//! without harming the node.

use bytes::{Bytes, BytesMut};
use dynkv_riakpb::codes;
use dynkv_riakpb::frame::{Frame, FrameDecoder, encode_frame, encode_message};
use dynkv_riakpb::messages::{
    RpbBucketProps, RpbContent, RpbErrorResp, RpbGetBucketReq, RpbGetBucketResp, RpbGetReq,
    RpbGetResp, RpbListKeysReq, RpbListKeysResp, RpbPutReq, RpbPutResp, RpbSetBucketReq,
};
use dynkv_tests::{Cluster, ClusterOptions};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A minimal PBC client: one request, its answer frames.
struct Pbc {
    tcp: TcpStream,
    buf: BytesMut,
}

impl Pbc {
    async fn connect(c: &Cluster, i: usize) -> Pbc {
        let port = c.node(i).pb_port.expect("PBC port");
        Pbc {
            tcp: TcpStream::connect(("127.0.0.1", port)).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).await.unwrap();
    }

    /// The next answer frame; `None` when the node closed the connection.
    async fn recv(&mut self) -> Option<Frame> {
        let dec = FrameDecoder::new(64 << 20);
        loop {
            if let Some(f) = dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            if self.tcp.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// Sends `msg` with `code` and answers the first frame back.
    async fn call(&mut self, code: u8, msg: &impl Message) -> Frame {
        let mut out = BytesMut::new();
        encode_message(code, msg, &mut out);
        self.send_raw(&out).await;
        self.recv().await.expect("an answer")
    }

    async fn put(
        &mut self,
        bucket: &str,
        key: &str,
        value: &str,
        vclock: Option<Bytes>,
    ) -> RpbPutResp {
        let req = RpbPutReq {
            bucket: Bytes::from(bucket.to_string()),
            key: Some(Bytes::from(key.to_string())),
            vclock,
            content: RpbContent {
                value: Bytes::from(value.to_string()),
                content_type: Some(Bytes::from_static(b"text/plain")),
                ..Default::default()
            },
            return_body: Some(true),
            ..Default::default()
        };
        let f = self.call(codes::PUT_REQ, &req).await;
        assert_eq!(f.code, codes::PUT_RESP, "{}", error_text(&f));
        RpbPutResp::decode(f.body).unwrap()
    }

    async fn get(&mut self, bucket: &str, key: &str) -> RpbGetResp {
        let req = RpbGetReq {
            bucket: Bytes::from(bucket.to_string()),
            key: Bytes::from(key.to_string()),
            ..Default::default()
        };
        let f = self.call(codes::GET_REQ, &req).await;
        assert_eq!(f.code, codes::GET_RESP, "{}", error_text(&f));
        RpbGetResp::decode(f.body).unwrap()
    }
}

fn error_text(f: &Frame) -> String {
    if f.code == codes::ERROR_RESP {
        let e = RpbErrorResp::decode(f.body.clone()).unwrap();
        String::from_utf8_lossy(&e.errmsg).into_owned()
    } else {
        format!("code {}", f.code)
    }
}

fn values(r: &RpbGetResp) -> Vec<String> {
    let mut v: Vec<String> = r
        .content
        .iter()
        .map(|c| String::from_utf8_lossy(&c.value).into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbc_serves_objects_siblings_listings_and_props_across_nodes() {
    let c = Cluster::start(3, ClusterOptions::default().riak_pb()).await;
    let (mut a, mut b) = (Pbc::connect(&c, 1).await, Pbc::connect(&c, 2).await);

    // Ping, and a write through n1 read through n2 with the same vclock.
    let f = a.call(codes::PING_REQ, &RpbGetReq::default()).await;
    assert_eq!(f.code, codes::PING_RESP);
    let put = a.put("fruit", "apple", "red", None).await;
    assert_eq!(
        values(&RpbGetResp {
            content: put.content,
            ..Default::default()
        }),
        ["red"]
    );
    let got = b.get("fruit", "apple").await;
    assert_eq!(values(&got), ["red"]);
    assert_eq!(got.vclock, put.vclock);
    assert!(got.content[0].vtag.is_some());

    // A key never written: an empty answer, not an error.
    let none = b.get("fruit", "pear").await;
    assert!(none.content.is_empty() && none.vclock.is_none());

    // Siblings: allow_mult set through PBC, seen by the HTTP API too.
    let set = RpbSetBucketReq {
        bucket: Bytes::from_static(b"multi"),
        props: RpbBucketProps {
            allow_mult: Some(true),
            ..Default::default()
        },
        r#type: None,
    };
    let f = a.call(codes::SET_BUCKET_REQ, &set).await;
    assert_eq!(f.code, codes::SET_BUCKET_RESP, "{}", error_text(&f));
    let http: serde_json::Value = c
        .http
        .get(format!("{}/buckets/multi/props", c.url(3)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(http["props"]["allow_mult"], true);
    let f = b
        .call(
            codes::GET_BUCKET_REQ,
            &RpbGetBucketReq {
                bucket: Bytes::from_static(b"multi"),
                r#type: None,
            },
        )
        .await;
    let props = RpbGetBucketResp::decode(f.body).unwrap().props;
    assert_eq!(props.allow_mult, Some(true));
    assert_eq!(props.n_val, Some(3));
    let first = a.put("multi", "k", "one", None).await;
    b.put("multi", "k", "two", None).await;
    let both = a.get("multi", "k").await;
    assert_eq!(values(&both), ["one", "two"]);
    // A write with the read's vclock replaces both.
    a.put("multi", "k", "merged", both.vclock.clone()).await;
    assert_eq!(values(&b.get("multi", "k").await), ["merged"]);
    assert_ne!(first.vclock, both.vclock);

    // List keys: streamed frames, the last with `done`.
    for i in 0..30 {
        a.put("listed", &format!("k{i:02}"), "v", None).await;
    }
    let mut out = BytesMut::new();
    encode_message(
        codes::LIST_KEYS_REQ,
        &RpbListKeysReq {
            bucket: Bytes::from_static(b"listed"),
            ..Default::default()
        },
        &mut out,
    );
    b.send_raw(&out).await;
    let mut keys = Vec::new();
    loop {
        let f = b.recv().await.expect("a listing frame");
        assert_eq!(f.code, codes::LIST_KEYS_RESP, "{}", error_text(&f));
        let r = RpbListKeysResp::decode(f.body).unwrap();
        keys.extend(
            r.keys
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
        );
        if r.done == Some(true) {
            break;
        }
    }
    keys.sort();
    let want: Vec<String> = (0..30).map(|i| format!("k{i:02}")).collect();
    assert_eq!(keys, want);

    // An unknown code: Riak's error, and the connection stays usable.
    let mut out = BytesMut::new();
    encode_frame(27, b"", &mut out);
    b.send_raw(&out).await;
    let f = b.recv().await.unwrap();
    assert_eq!(error_text(&f), "Unknown message code: 27");
    assert_eq!(values(&b.get("fruit", "apple").await), ["red"]);

    // A frame declaring 1 GiB: refused from its header, connection closed,
    // the node unharmed.
    let mut big = Pbc::connect(&c, 3).await;
    big.send_raw(&(1u32 << 30).to_be_bytes()).await;
    big.send_raw(&[codes::PUT_REQ]).await;
    let f = big.recv().await.expect("an error before closing");
    assert!(
        error_text(&f).contains("above the limit"),
        "{}",
        error_text(&f)
    );
    assert!(big.recv().await.is_none(), "the connection is closed");
    let mut again = Pbc::connect(&c, 3).await;
    assert_eq!(values(&again.get("fruit", "apple").await), ["red"]);
}
