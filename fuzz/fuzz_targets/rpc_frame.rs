#![no_main]
//! Fuzz target: see `dynkv_fuzz::checks::rpc_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::checks::rpc_frame(data));
