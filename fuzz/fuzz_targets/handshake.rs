#![no_main]
//! Fuzz target: see `dynkv_fuzz::internode::handshake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::internode::handshake(data));
