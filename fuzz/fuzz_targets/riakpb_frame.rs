#![no_main]
//! Fuzz target: see `dynkv_fuzz::riakpb::riakpb_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dynkv_fuzz::riakpb::riakpb_frame(data));
