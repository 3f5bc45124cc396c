//! Runs fuzz inputs through a target's code without libFuzzer, on stable:
//! `cargo run --example replay -- <target> <file>...`. A crash reproduces as
//! an ordinary panic with a backtrace (`RUST_BACKTRACE=1`).

use arbitrary::{Arbitrary, Unstructured};

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: replay <target> <file>...");
    for path in args {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        eprintln!("{target} < {path} ({} bytes)", data.len());
        let start = std::time::Instant::now();
        match target.as_str() {
            "frame_decode" => wharf_fuzz::run_frame_decode(&data),
            "handshake_request" => wharf_fuzz::run_handshake_request(&data),
            "handshake_response" => wharf_fuzz::run_handshake_response(&data),
            "connection_server" => wharf_fuzz::run_connection(&data, true),
            "connection_client" => wharf_fuzz::run_connection(&data, false),
            "utf8" => wharf_fuzz::run_utf8(&data),
            "proto_envelope" => wharf_fuzz::run_proto_envelope(&data),
            "mask" => {
                // libfuzzer-sys builds typed inputs with `arbitrary_take_rest`.
                let u = Unstructured::new(&data);
                if let Ok(input) = wharf_fuzz::MaskInput::arbitrary_take_rest(u) {
                    wharf_fuzz::run_mask(input);
                }
            }
            other => panic!("unknown target {other}"),
        }
        eprintln!("  ok in {:?}", start.elapsed());
    }
}
