#![no_main]
//! See `wharf_fuzz::run_mask` for the properties.

libfuzzer_sys::fuzz_target!(|input: wharf_fuzz::MaskInput| wharf_fuzz::run_mask(input));
