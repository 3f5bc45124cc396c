//! Generates the protobuf types from `proto/*.proto` with prost, parsing the
//! schema with protox (pure Rust), so building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const FILES: &[&str] = &["proto/wharf.proto"];
    for file in FILES {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(FILES, ["proto"])?;
    prost_build::Config::new()
        // Payloads stay `bytes::Bytes`: decoding from a WebSocket message's
        // `Bytes` then shares its buffer instead of copying.
        .bytes(["."])
        .compile_fds(fds)?;
    Ok(())
}
