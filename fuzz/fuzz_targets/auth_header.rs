#![no_main]
//! Fuzz target: see `dynkv_fuzz::auth::auth_header`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::auth::auth_header(data));
