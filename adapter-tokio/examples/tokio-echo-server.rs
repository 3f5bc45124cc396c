//! An echo server: every message a client sends comes back to it.
//!
//! ```sh
//! cargo run -p wharf-tokio --example tokio-echo-server -- --listen 127.0.0.1:9001
//! cargo run -p wharf-tokio --example tokio-echo-server -- --listen 127.0.0.1:9443 \
//!     --cert server.pem --key server.key            # wss
//! ```
//!
//! Ctrl-C shuts it down gracefully: it stops accepting and closes every
//! connection with 1001 (going away).

use std::process::ExitCode;

use wharf_tokio::{Error, Server, ServerConfig, ServerTls};

const USAGE: &str = "usage: tokio-echo-server [--listen ADDR] [--cert PEM --key PEM]

  --listen ADDR   address to listen on (default 127.0.0.1:9001)
  --cert PEM      certificate chain (PEM), with --key: serve wss
  --key PEM       private key (PEM) for --cert";

struct Args {
    listen: String,
    cert: Option<String>,
    key: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:9001".to_owned(),
        cert: None,
        key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--cert" => args.cert = Some(value()?),
            "--key" => args.key = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn config(args: &Args) -> Result<ServerConfig, String> {
    match (&args.cert, &args.key) {
        (None, None) => Ok(ServerConfig::new()),
        (Some(cert), Some(key)) => {
            let cert = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
            let key = std::fs::read(key).map_err(|e| format!("{key}: {e}"))?;
            let tls = ServerTls::builder(&cert, &key)
                .and_then(|b| b.build())
                .map_err(|e| e.to_string())?;
            Ok(ServerConfig::new().with_tls(tls))
        }
        _ => Err("--cert and --key go together".to_owned()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("tokio-echo-server: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match config(&args) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("tokio-echo-server: {why}");
            return ExitCode::FAILURE;
        }
    };
    let scheme = if args.cert.is_some() { "wss" } else { "ws" };
    let mut server = match Server::bind(args.listen.as_str(), config).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("tokio-echo-server: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(addr) => println!("listening on {scheme}://{addr}/"),
        Err(e) => eprintln!("tokio-echo-server: {e}"),
    }

    let handle = server.handle();
    let on_signal = handle.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("shutting down: closing every connection with 1001");
            on_signal.shutdown().await;
        }
    });

    loop {
        let incoming = match server.accept().await {
            Ok(incoming) => incoming,
            Err(Error::ShuttingDown) => break,
            Err(e) => {
                // E.g. too many open files: pause rather than spin.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let peer = incoming.peer_addr();
            let mut ws = match incoming.handshake().await {
                Ok(ws) => ws,
                Err(e) => {
                    eprintln!("{peer}: handshake failed: {e}");
                    return;
                }
            };
            eprintln!(
                "{peer}: open ({})",
                ws.request().map_or("/", |r| r.target())
            );
            let mut echoed = 0u64;
            while let Some(received) = ws.recv().await {
                match received {
                    Ok(message) => {
                        if ws.send(message).await.is_err() {
                            break;
                        }
                        echoed += 1;
                    }
                    Err(e) => eprintln!("{peer}: {e}"),
                }
            }
            match ws.close_info() {
                Some(info) => eprintln!(
                    "{peer}: closed after {echoed} messages: code {} {:?}{}",
                    info.code,
                    info.reason,
                    if info.clean { "" } else { " (not clean)" }
                ),
                None => eprintln!("{peer}: ended after {echoed} messages"),
            }
        });
    }
    // Wait until every connection has closed (bounded by the close timeout).
    handle.shutdown().await;
    println!("stopped");
    ExitCode::SUCCESS
}
