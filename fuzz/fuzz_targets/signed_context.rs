#![no_main]
//! Fuzz target: see `dynkv_fuzz::checks::signed_context`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::checks::signed_context(data));
