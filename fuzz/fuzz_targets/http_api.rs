#![no_main]
//! Fuzz target: see `dynkv_fuzz::http`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::http::Node::get().serve_bytes(data));
