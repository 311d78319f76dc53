//! Riak's protocol buffers API across real `dynkv` processes, for what
//! rides on the KV requests: secondary index queries paged and streamed,
//! data type updates and fetches through two nodes (with contexts), and
//! security (`RpbStartTls` then `RpbAuthReq`, refusals before each, grants
//! after).

use std::path::Path;
use std::time::Duration;

use dynkv_riakpb::codes;
use dynkv_riakpb::messages::{
    DtFetchReq, DtFetchResp, DtOp, DtUpdateReq, DtUpdateResp, RpbAuthReq, RpbErrorResp, RpbGetReq,
    RpbIndexReq, RpbIndexResp, RpbMapRedReq, RpbMapRedResp, SetOp, rpb_index_req::IndexQueryType,
};
use dynkv_tests::{Cluster, ClusterOptions, StatusCode, poll};
use openssl::ssl::{SslConnector, SslMethod};
use prost::Message;
use prost::bytes::Bytes;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one frame.
async fn send<S: AsyncWrite + Unpin>(s: &mut S, code: u8, body: &[u8]) {
    let mut frame = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    frame.push(code);
    frame.extend_from_slice(body);
    s.write_all(&frame).await.unwrap();
    s.flush().await.unwrap();
}

/// Reads one frame: its code and body.
async fn recv<S: AsyncRead + Unpin>(s: &mut S) -> (u8, Bytes) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    let code = body.remove(0);
    (code, Bytes::from(body))
}

/// One request, one answer.
async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    code: u8,
    msg: &impl Message,
) -> (u8, Bytes) {
    send(s, code, &msg.encode_to_vec()).await;
    recv(s).await
}

/// The words of an `RpbErrorResp`, or a panic naming what came instead.
fn error_of(code: u8, body: &Bytes) -> String {
    assert_eq!(
        code,
        codes::ERROR_RESP,
        "expected an error, got code {code}"
    );
    let e = RpbErrorResp::decode(body.clone()).unwrap();
    String::from_utf8_lossy(&e.errmsg).into_owned()
}

async fn connect(c: &Cluster, i: usize) -> TcpStream {
    let port = c.node(i).pb_port.expect("a cluster started with riak_pb()");
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

async fn make_type(c: &Cluster, name: &str, props: Value) {
    let (s, v) = c
        .admin(
            1,
            &format!("bucket-types/{name}/create"),
            json!({ "props": props }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = c
        .admin(1, &format!("bucket-types/{name}/activate"), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    for i in 1..=c.nodes.len() {
        let url = format!("{}/types/{name}/props", c.url(i));
        let known = poll(Duration::from_secs(10), || async {
            matches!(c.http.get(&url).send().await, Ok(r) if r.status().is_success())
        })
        .await;
        assert!(known, "n{i} never learned bucket type {name}");
    }
}

fn range(min: &str, max: &str) -> RpbIndexReq {
    RpbIndexReq {
        bucket: Bytes::from_static(b"ix"),
        index: Bytes::from_static(b"field_bin"),
        qtype: IndexQueryType::Range as i32,
        range_min: Some(Bytes::from(min.to_string())),
        range_max: Some(Bytes::from(max.to_string())),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn index_queries_page_and_stream_over_pb() {
    let c = Cluster::start(3, ClusterOptions::default().riak_pb()).await;
    for i in 0..25 {
        let r = c
            .http
            .put(format!("{}/buckets/ix/keys/k{i:02}", c.url(1 + i % 3)))
            .header("content-type", "text/plain")
            .header("x-riak-index-field_bin", format!("v{i:02}"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let all: Vec<String> = (0..25).map(|i| format!("k{i:02}")).collect();
    let mut s = connect(&c, 2).await;

    // Pages of 10 through a continuation: 10, 10, 5, each in order.
    let mut got = Vec::new();
    let mut continuation = None;
    let mut pages = 0;
    loop {
        let mut q = range("v00", "v99");
        q.max_results = Some(10);
        q.continuation = continuation.take();
        let (code, body) = call(&mut s, codes::INDEX_REQ, &q).await;
        assert_eq!(code, codes::INDEX_RESP);
        let r = RpbIndexResp::decode(body).unwrap();
        pages += 1;
        got.extend(
            r.keys
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
        );
        match r.continuation {
            Some(c) if !r.keys.is_empty() => continuation = Some(c),
            _ => break,
        }
    }
    assert_eq!(got, all);
    assert_eq!(pages, 3);

    // Terms with the keys.
    let mut q = range("v03", "v04");
    q.return_terms = Some(true);
    let (code, body) = call(&mut s, codes::INDEX_REQ, &q).await;
    assert_eq!(code, codes::INDEX_RESP);
    let r = RpbIndexResp::decode(body).unwrap();
    let pairs: Vec<(String, String)> = r
        .results
        .iter()
        .map(|p| {
            (
                String::from_utf8_lossy(&p.key).into_owned(),
                String::from_utf8_lossy(p.value.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        vec![("v03".into(), "k03".into()), ("v04".into(), "k04".into())]
    );

    // Streamed without a page size: messages until `done`, every key once.
    let mut q = range("v00", "v99");
    q.stream = Some(true);
    send(&mut s, codes::INDEX_REQ, &q.encode_to_vec()).await;
    let mut streamed = Vec::new();
    loop {
        let (code, body) = recv(&mut s).await;
        assert_eq!(code, codes::INDEX_RESP);
        let r = RpbIndexResp::decode(body).unwrap();
        streamed.extend(
            r.keys
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
        );
        if r.done == Some(true) {
            assert!(r.continuation.is_none());
            break;
        }
    }
    streamed.sort();
    assert_eq!(streamed, all);

    // Streamed and paged: the last message carries the continuation.
    let mut q = range("v00", "v99");
    q.stream = Some(true);
    q.max_results = Some(20);
    send(&mut s, codes::INDEX_REQ, &q.encode_to_vec()).await;
    let mut streamed = Vec::new();
    let continuation = loop {
        let (code, body) = recv(&mut s).await;
        assert_eq!(code, codes::INDEX_RESP);
        let r = RpbIndexResp::decode(body).unwrap();
        streamed.extend(
            r.keys
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
        );
        if r.done == Some(true) {
            break r.continuation;
        }
    };
    assert_eq!(streamed, all[..20]);
    // The same token resumes the query over HTTP.
    let token = String::from_utf8(continuation.expect("a full page").to_vec()).unwrap();
    let r = c
        .http
        .get(format!(
            "{}/buckets/ix/index/field_bin/v00/v99?max_results=20&continuation={token}",
            c.url(3)
        ))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["keys"], json!(all[20..]));

    // The phaseless MapReduce job over an index (what `client.index()`
    // sends): phase 0 with the `[bucket, key]` pairs, then `done`.
    let job = json!({"inputs": {"bucket": "ix", "index": "field_bin", "key": "v07"}, "query": []});
    let req = RpbMapRedReq {
        request: Bytes::from(job.to_string()),
        content_type: Bytes::from_static(b"application/json"),
    };
    let (code, body) = call(&mut s, 23, &req).await;
    assert_eq!(code, 24);
    let r = RpbMapRedResp::decode(body).unwrap();
    let pairs: Value = serde_json::from_slice(r.response.as_deref().unwrap()).unwrap();
    assert_eq!(pairs, json!([["ix", "k07"]]));
    let (code, body) = recv(&mut s).await;
    assert_eq!(code, 24);
    assert_eq!(RpbMapRedResp::decode(body).unwrap().done, Some(true));

    // Bad queries are errors in Riak's words; the connection stays usable.
    let mut q = range("a", "b");
    q.index = Bytes::from_static(b"field");
    let (code, body) = call(&mut s, codes::INDEX_REQ, &q).await;
    assert!(error_of(code, &body).contains("unknown_field_type"));
    let (code, _) = call(&mut s, codes::INDEX_REQ, &range("v01", "v01")).await;
    assert_eq!(code, codes::INDEX_RESP);
}

fn set_update(key: &str, adds: &[&str], removes: &[&str], context: Option<Bytes>) -> DtUpdateReq {
    let b = |v: &[&str]| v.iter().map(|s| Bytes::from(s.to_string())).collect();
    DtUpdateReq {
        bucket: Bytes::from_static(b"b"),
        key: Some(Bytes::from(key.to_string())),
        r#type: Bytes::from_static(b"sets"),
        context,
        op: DtOp {
            set_op: Some(SetOp {
                adds: b(adds),
                removes: b(removes),
            }),
            ..Default::default()
        },
        return_body: Some(true),
        ..Default::default()
    }
}

fn fetch(btype: &str, key: &str) -> DtFetchReq {
    DtFetchReq {
        bucket: Bytes::from_static(b"b"),
        key: Bytes::from(key.to_string()),
        r#type: Bytes::from(btype.to_string()),
        ..Default::default()
    }
}

fn strings(v: &[Bytes]) -> Vec<String> {
    v.iter()
        .map(|x| String::from_utf8_lossy(x).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn data_types_update_and_fetch_over_pb_through_two_nodes() {
    let c = Cluster::start(3, ClusterOptions::default().riak_pb()).await;
    make_type(&c, "sets", json!({"datatype": "set"})).await;
    make_type(&c, "counters", json!({"datatype": "counter"})).await;
    let mut n1 = connect(&c, 1).await;
    let mut n2 = connect(&c, 2).await;

    // Not found: a type and no value.
    let (code, body) = call(&mut n2, codes::DT_FETCH_REQ, &fetch("sets", "s")).await;
    assert_eq!(code, codes::DT_FETCH_RESP);
    assert!(DtFetchResp::decode(body).unwrap().value.is_none());

    let (code, body) = call(
        &mut n1,
        codes::DT_UPDATE_REQ,
        &set_update("s", &["a", "b"], &[], None),
    )
    .await;
    assert_eq!(code, codes::DT_UPDATE_RESP);
    let r = DtUpdateResp::decode(body).unwrap();
    assert_eq!(strings(&r.set_value), ["a", "b"]);
    assert!(r.context.is_some());

    // n2 sees it, and removes with the context it fetched.
    let (code, body) = call(&mut n2, codes::DT_FETCH_REQ, &fetch("sets", "s")).await;
    assert_eq!(code, codes::DT_FETCH_RESP);
    let f = DtFetchResp::decode(body).unwrap();
    assert_eq!(strings(&f.value.as_ref().unwrap().set_value), ["a", "b"]);
    let context = f.context.clone().unwrap();
    let (code, body) = call(
        &mut n2,
        codes::DT_UPDATE_REQ,
        &set_update("s", &[], &["a"], Some(context.clone())),
    )
    .await;
    assert_eq!(code, codes::DT_UPDATE_RESP);
    assert_eq!(
        strings(&DtUpdateResp::decode(body).unwrap().set_value),
        ["b"]
    );

    // Over HTTP on n3 the state is the same.
    let v: Value = c
        .http
        .get(format!("{}/types/sets/buckets/b/datatypes/s", c.url(3)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["value"], json!(["b"]));

    // An altered context is refused.
    let mut bad = context.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let (code, body) = call(
        &mut n1,
        codes::DT_UPDATE_REQ,
        &set_update("s", &[], &["b"], Some(Bytes::from(bad))),
    )
    .await;
    assert!(error_of(code, &body).contains("bad_context"));

    // A counter, with a key chosen by the server.
    let inc = DtUpdateReq {
        bucket: Bytes::from_static(b"b"),
        r#type: Bytes::from_static(b"counters"),
        op: DtOp {
            counter_op: Some(dynkv_riakpb::messages::CounterOp { increment: Some(5) }),
            ..Default::default()
        },
        ..Default::default()
    };
    let (code, body) = call(&mut n1, codes::DT_UPDATE_REQ, &inc).await;
    assert_eq!(code, codes::DT_UPDATE_RESP);
    let key = DtUpdateResp::decode(body)
        .unwrap()
        .key
        .expect("a chosen key");
    let key = String::from_utf8(key.to_vec()).unwrap();
    let (code, body) = call(&mut n2, codes::DT_FETCH_REQ, &fetch("counters", &key)).await;
    assert_eq!(code, codes::DT_FETCH_RESP);
    assert_eq!(
        DtFetchResp::decode(body)
            .unwrap()
            .value
            .unwrap()
            .counter_value,
        Some(5)
    );

    // The wrong operation for the bucket's type.
    let mut wrong = inc.clone();
    wrong.r#type = Bytes::from_static(b"sets");
    let (code, body) = call(&mut n1, codes::DT_UPDATE_REQ, &wrong).await;
    assert!(error_of(code, &body).contains("Operation type is `counter`"));
}

/// A CA and a node certificate for 127.0.0.1, written to `dir`.
fn pki(dir: &Path) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "pb test CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap();
    let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
    std::fs::write(dir.join("node.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("node.key"), key.serialize_pem()).unwrap();
    ca.pem()
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_then_auth_with_security_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let c = Cluster::start(
        1,
        ClusterOptions {
            n_val: 1,
            ..ClusterOptions::default()
        }
        .riak_pb()
        .serve_tls(
            ca.clone(),
            &dir.path().join("node.pem"),
            &dir.path().join("node.key"),
        ),
    )
    .await;
    let sec = |verb: &'static str, body: Value| {
        let c = &c;
        async move {
            let (s, v) = c.admin(1, &format!("security/{verb}"), body).await;
            assert_eq!(s, StatusCode::OK, "{verb}: {v}");
        }
    };
    sec("add-user", json!({"name": "alice", "password": "alice-pw"})).await;
    sec(
        "add-source",
        json!({"users": ["all"], "cidr": "127.0.0.1/32", "method": "password"}),
    )
    .await;
    sec("grant", json!({"permissions": ["riak_kv.get"], "bucket_type": "default", "bucket": "a", "users": ["alice"]})).await;
    sec("enable", json!({})).await;

    let mut tcp = connect(&c, 1).await;
    // Nothing before TLS, not even a ping.
    send(&mut tcp, codes::PING_REQ, &[]).await;
    let (code, body) = recv(&mut tcp).await;
    assert_eq!(
        error_of(code, &body),
        "Security is enabled, please STARTTLS first"
    );
    send(&mut tcp, codes::START_TLS, &[]).await;
    let (code, _) = recv(&mut tcp).await;
    assert_eq!(code, codes::START_TLS);
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    let x509 = openssl::x509::X509::from_pem(ca.as_bytes()).unwrap();
    b.cert_store_mut().add_cert(x509).unwrap();
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut s).connect().await.unwrap();

    let get = |bucket: &str| RpbGetReq {
        bucket: Bytes::from(bucket.to_string()),
        key: Bytes::from_static(b"k"),
        ..Default::default()
    };
    // Nothing before authentication.
    let (code, body) = call(&mut s, codes::GET_REQ, &get("a")).await;
    assert_eq!(error_of(code, &body), "Please authenticate first");
    let auth = |pw: &str| RpbAuthReq {
        user: Bytes::from_static(b"alice"),
        password: Bytes::from(pw.to_string()),
    };
    let (code, body) = call(&mut s, codes::AUTH_REQ, &auth("wrong")).await;
    assert_eq!(error_of(code, &body), "Authentication failed");
    let (code, _) = call(&mut s, codes::AUTH_REQ, &auth("alice-pw")).await;
    assert_eq!(code, codes::AUTH_RESP);
    // Granted: a not-found get answers an empty RpbGetResp.
    let (code, _) = call(&mut s, codes::GET_REQ, &get("a")).await;
    assert_eq!(code, codes::GET_RESP);
    // Not granted on another bucket, nor another permission.
    let (code, body) = call(&mut s, codes::GET_REQ, &get("b")).await;
    assert!(error_of(code, &body).starts_with("Permission denied: riak_kv.get"));
    let ix = RpbIndexReq {
        bucket: Bytes::from_static(b"a"),
        index: Bytes::from_static(b"f_bin"),
        qtype: IndexQueryType::Eq as i32,
        key: Some(Bytes::from_static(b"x")),
        ..Default::default()
    };
    let (code, body) = call(&mut s, codes::INDEX_REQ, &ix).await;
    assert!(error_of(code, &body).starts_with("Permission denied: riak_kv.index"));
}
