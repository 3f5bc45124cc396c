//! The Autobahn Testsuite's echo server (testee for `wstest -m fuzzingclient`)
//! on wharf-tokio, one `current_thread` runtime: echoes every message,
//! accepts messages up to 64 MiB, and accepts permessage-deflate (cases
//! 12.* and 13.*).
//!
//! ```sh
//! cargo run --release -p wharf-tokio --example tokio-autobahn-server -- --listen 127.0.0.1:9001 [--cert PEM --key PEM]
//! ```

use wharf_tokio::{Config, DeflateConfig, Server, ServerConfig, ServerTls};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:9001".to_owned();
    let (mut cert, mut key) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value,
            "--cert" => cert = Some(value),
            "--key" => key = Some(value),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let mut core = Config::default();
    core.max_message_size = 64 << 20;
    core.max_frame_size = 64 << 20;
    core.max_send_queue = 128 << 20;
    core.max_receive_queue = 128 << 20;
    core.deflate = Some(DeflateConfig::default());
    let mut config = ServerConfig::new().with_config(core);
    match (cert, key) {
        (Some(c), Some(k)) => {
            config = config
                .with_tls(ServerTls::builder(&std::fs::read(c)?, &std::fs::read(k)?)?.build()?)
        }
        (None, None) => {}
        _ => return Err("--cert and --key go together".into()),
    }
    let mut server = Server::bind(listen.as_str(), config).await?;
    println!(
        "tokio-autobahn-server (wharf-tokio) on {}",
        server.local_addr()?
    );
    loop {
        let incoming = server.accept().await?;
        tokio::spawn(async move {
            let Ok(mut ws) = incoming.handshake().await else {
                return;
            };
            while let Some(Ok(message)) = ws.recv().await {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
        });
    }
}
