#![no_main]
//! Fuzz target: see `dynkv_fuzz::internode::internode_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::internode::internode_frame(data));
