#![no_main]
//! Fuzz target: see `dynkv_fuzz::checks::quorum_param`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::checks::quorum_param(data));
