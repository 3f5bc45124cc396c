//! Writes a private CA and a server certificate signed by it (for localhost,
//! 127.0.0.1 and ::1) as PEM files into a folder: for trying the wss
//! examples and for the Autobahn runs.
//!
//! ```sh
//! cargo run -p wharf-core --example gen-certs -- OUTDIR
//! ```
//! writes `OUTDIR/ca.pem`, `OUTDIR/server.pem` (chain) and `OUTDIR/server.key`.

use wharf_core::test_certs::TestPki;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: gen-certs OUTDIR")?;
    std::fs::create_dir_all(&dir)?;
    let pki = TestPki::new();
    let (chain, key) = pki.server_cert(&["localhost", "127.0.0.1", "::1"]);
    let dir = std::path::Path::new(&dir);
    std::fs::write(dir.join("ca.pem"), pki.ca_pem())?;
    std::fs::write(dir.join("server.pem"), chain)?;
    std::fs::write(dir.join("server.key"), key)?;
    println!(
        "wrote {0}/ca.pem, {0}/server.pem and {0}/server.key (for localhost, 127.0.0.1, ::1)",
        dir.display()
    );
    Ok(())
}
