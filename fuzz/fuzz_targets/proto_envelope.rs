#![no_main]
//! See `wharf_fuzz::run_proto_envelope` for the input layout and the properties.

libfuzzer_sys::fuzz_target!(|data: &[u8]| wharf_fuzz::run_proto_envelope(data));
