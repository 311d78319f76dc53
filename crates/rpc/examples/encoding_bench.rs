//! What the message encoding costs: size and speed of the hot-path
//! internode messages as protobuf (what dynkv sends, objects inside in
//! their storage encoding), against postcard (the previous wire format,
//! which has no optional fields), bincode and JSON of the same content.
//!
//! ```sh
//! cargo run --release -p dynkv-rpc --example encoding_bench -- [--json out.json]
//! ```

use std::time::Instant;

use bytes::Bytes;
use dynkv_rpc::Message;
use dynkv_rpc::messages::{Read, ReadReply, Replicate};
use dynkv_vclock::{Content, DvvSet, Object};

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

/// The same content as a serde value, for the serde formats.
type SerdeReplicate = (Bytes, Object);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let key = Bytes::from_static(b"user:12345:cart");
    let bincode_cfg = bincode::config::standard();
    let mut results = Vec::new();
    println!("| message | format | bytes | encode ns | decode ns |");
    println!("|---|---|---:|---:|---:|");
    let mut report = |name: &str, format: &str, bytes: usize, enc: f64, dec: f64| {
        println!("| {name} | {format} | {bytes} | {enc:.0} | {dec:.0} |");
        results.push(serde_json::json!({"message": name, "format": format, "bytes": bytes, "encode_ns": enc, "decode_ns": dec}));
    };
    for (name, len) in [("replicate 1 KiB", 1024), ("replicate 100 B", 100)] {
        let msg = Replicate {
            key: key.clone(),
            object: object(len),
        };
        let p = msg.encode();
        let enc = time(20_000, || {
            std::hint::black_box(msg.encode());
        });
        let dec = time(20_000, || {
            std::hint::black_box(Replicate::decode(p.clone()).unwrap());
        });
        report(name, "protobuf", p.len(), enc, dec);
        let serde_msg: SerdeReplicate = (msg.key.clone(), msg.object.clone());
        let pc = postcard::to_allocvec(&serde_msg).unwrap();
        let enc = time(20_000, || {
            std::hint::black_box(postcard::to_allocvec(&serde_msg).unwrap());
        });
        let dec = time(20_000, || {
            std::hint::black_box(postcard::from_bytes::<SerdeReplicate>(&pc).unwrap());
        });
        report(name, "postcard", pc.len(), enc, dec);
        let b = bincode::serde::encode_to_vec(&serde_msg, bincode_cfg).unwrap();
        let enc = time(20_000, || {
            std::hint::black_box(bincode::serde::encode_to_vec(&serde_msg, bincode_cfg).unwrap());
        });
        let dec = time(20_000, || {
            std::hint::black_box(
                bincode::serde::decode_from_slice::<SerdeReplicate, _>(&b, bincode_cfg).unwrap(),
            );
        });
        report(name, "bincode", b.len(), enc, dec);
        let j = serde_json::to_vec(&serde_msg).unwrap();
        let enc = time(5_000, || {
            std::hint::black_box(serde_json::to_vec(&serde_msg).unwrap());
        });
        let dec = time(5_000, || {
            std::hint::black_box(serde_json::from_slice::<SerdeReplicate>(&j).unwrap());
        });
        report(name, "json", j.len(), enc, dec);
    }
    let read = Read {
        key: key.clone(),
        hint_for: None,
        digest_only: false,
    };
    let p = read.encode();
    let enc = time(20_000, || {
        std::hint::black_box(read.encode());
    });
    let dec = time(20_000, || {
        std::hint::black_box(Read::decode(p.clone()).unwrap());
    });
    report("read", "protobuf", p.len(), enc, dec);
    let reply = ReadReply {
        object: Some(object(1024)),
        digest: None,
        service_micros: None,
        received_micros: None,
    };
    let p = reply.encode();
    let enc = time(20_000, || {
        std::hint::black_box(reply.encode());
    });
    let dec = time(20_000, || {
        std::hint::black_box(ReadReply::decode(p.clone()).unwrap());
    });
    report("read reply 1 KiB", "protobuf", p.len(), enc, dec);
    if let Some(path) = json_out {
        std::fs::write(&path, serde_json::to_string_pretty(&results).unwrap()).unwrap();
        eprintln!("wrote {path}");
    }
}
