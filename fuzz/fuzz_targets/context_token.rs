#![no_main]
//! Fuzz target: see `dynkv_fuzz::checks::context_token`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::checks::context_token(data));
