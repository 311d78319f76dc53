//! Why postcard: size and speed of the internode frames in postcard,
//! bincode (2, serde mode) and JSON, for the messages on the hot path.
//!
//! ```sh
//! cargo run --release -p dynkv-rpc --example encoding_bench -- [--json out.json]
//! ```

use std::time::Instant;

use bytes::Bytes;
use dynkv_rpc::{Request, Response};
use dynkv_vclock::{Content, DvvSet, Object, VersionVector};

fn object(value_len: usize) -> Object {
    let mut o = Object::new();
    for (i, actor) in ["n1", "n2", "n3"].iter().enumerate() {
        o = DvvSet::update(
            &o.join(),
            &o,
            actor,
            Content::value(
                vec![b'x'; value_len],
                "application/octet-stream",
                1_700_000_000_000_000 + i as u64,
            ),
        );
    }
    o
}

fn time<F: FnMut()>(iters: u32, mut f: F) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iters {
        f();
    }
    started.elapsed().as_nanos() as f64 / iters as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let cases: Vec<(&str, Request)> = vec![
        (
            "replicate 1 KiB",
            Request::Replicate {
                key: Bytes::from_static(b"user:12345:cart"),
                object: object(1024),
            },
        ),
        (
            "replicate 100 B",
            Request::Replicate {
                key: Bytes::from_static(b"user:12345:cart"),
                object: object(100),
            },
        ),
        (
            "get",
            Request::Get {
                key: Bytes::from_static(b"user:12345:cart"),
                hint_for: None,
            },
        ),
    ];
    let reply = Response::Object(Some(object(1024)));
    let bincode_cfg = bincode::config::standard();
    let mut results = Vec::new();
    println!("| message | format | bytes | encode ns | decode ns |");
    println!("|---|---|---:|---:|---:|");
    let mut report = |name: &str, format: &str, bytes: usize, enc: f64, dec: f64| {
        println!("| {name} | {format} | {bytes} | {enc:.0} | {dec:.0} |");
        results.push(serde_json::json!({"message": name, "format": format, "bytes": bytes, "encode_ns": enc, "decode_ns": dec}));
    };
    for (name, req) in &cases {
        let p = dynkv_rpc::encode(req);
        let enc = time(20_000, || {
            std::hint::black_box(dynkv_rpc::encode(req));
        });
        let dec = time(20_000, || {
            std::hint::black_box(dynkv_rpc::decode::<Request>(&p).unwrap());
        });
        report(name, "postcard", p.len(), enc, dec);
        let b = bincode::serde::encode_to_vec(req, bincode_cfg).unwrap();
        let enc = time(20_000, || {
            std::hint::black_box(bincode::serde::encode_to_vec(req, bincode_cfg).unwrap());
        });
        let dec = time(20_000, || {
            std::hint::black_box(
                bincode::serde::decode_from_slice::<Request, _>(&b, bincode_cfg).unwrap(),
            );
        });
        report(name, "bincode", b.len(), enc, dec);
        let j = serde_json::to_vec(req).unwrap();
        let enc = time(5_000, || {
            std::hint::black_box(serde_json::to_vec(req).unwrap());
        });
        let dec = time(5_000, || {
            std::hint::black_box(serde_json::from_slice::<Request>(&j).unwrap());
        });
        report(name, "json", j.len(), enc, dec);
    }
    let p = dynkv_rpc::encode(&reply);
    let dec = time(20_000, || {
        std::hint::black_box(dynkv_rpc::decode::<Response>(&p).unwrap());
    });
    let enc = time(20_000, || {
        std::hint::black_box(dynkv_rpc::encode(&reply));
    });
    report("object reply 1 KiB", "postcard", p.len(), enc, dec);
    let _ = VersionVector::new();
    if let Some(path) = json_out {
        std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
        eprintln!("wrote {path}");
    }
}
