//! A client: sends every line of standard input as a text message and prints
//! what comes back; at the end of the input it waits for the outstanding
//! replies (up to 5 s), then closes with 1000.
//!
//! ```sh
//! printf 'hello\nworld\n' | cargo run -p wharf-tokio --example tokio-client -- --url ws://127.0.0.1:9001/
//! cargo run -p wharf-tokio --example tokio-client -- --url wss://localhost:9443/ --ca ca.pem
//! ```

use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use wharf_tokio::{connect, ClientConfig, ClientTls, CloseCode, CloseInfo, Initiator, Message};

const USAGE: &str = "usage: tokio-client [--url URL] [--ca PEM]

  --url URL   ws:// or wss:// URL to connect to (default ws://127.0.0.1:9001/)
  --ca PEM    trust the CA certificate(s) in this PEM file (a private CA)
              instead of the Mozilla root set";

struct Args {
    url: String,
    ca: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "ws://127.0.0.1:9001/".to_owned(),
        ca: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--ca" => args.ca = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn config(args: &Args) -> Result<ClientConfig, String> {
    let Some(ca) = &args.ca else {
        return Ok(ClientConfig::new());
    };
    let pem = std::fs::read(ca).map_err(|e| format!("{ca}: {e}"))?;
    let tls = ClientTls::builder()
        .with_pem_roots(&pem)
        .and_then(|b| b.build())
        .map_err(|e| e.to_string())?;
    Ok(ClientConfig::new().with_tls(tls))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("tokio-client: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match config(&args) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("tokio-client: {why}");
            return ExitCode::FAILURE;
        }
    };
    let ws = match connect(&args.url, &config).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("tokio-client: cannot connect to {}: {e}", args.url);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("connected to {}", args.url);
    let (mut reader, mut writer) = ws.split();

    // Print replies as they come; report how many.
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0u64);
    let printer = tokio::spawn(async move {
        let mut received = 0u64;
        while let Some(reply) = reader.recv().await {
            match reply {
                Ok(Message::Text(text)) => println!("{text}"),
                Ok(Message::Binary(bytes)) => println!("<{} binary bytes>", bytes.len()),
                Err(e) => eprintln!("tokio-client: {e}"),
            }
            received += 1;
            count_tx.send_replace(received);
        }
        reader.close_info()
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut sent = 0u64;
    let mut printer = printer;
    loop {
        tokio::select! {
            // The server ended the connection first.
            info = &mut printer => {
                return report(info.ok().flatten());
            }
            // Cancel-safe: no line is lost when the other branch wins.
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    if let Err(e) = writer.send(Message::text(line)).await {
                        eprintln!("tokio-client: {e}");
                        break;
                    }
                    sent += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    eprintln!("tokio-client: reading standard input: {e}");
                    break;
                }
            },
        }
    }
    // Wait for the outstanding replies, then close.
    let _ = tokio::time::timeout(Duration::from_secs(5), count_rx.wait_for(|&n| n >= sent)).await;
    let outcome = writer.close(CloseCode::NORMAL, "bye").await;
    let info = printer.await.ok().flatten();
    match (outcome, info) {
        (Ok(info), _) => report(Some(info)),
        (Err(e), info) => {
            eprintln!("tokio-client: {e}");
            report(info)
        }
    }
}

fn report(info: Option<CloseInfo>) -> ExitCode {
    match info {
        Some(info) => {
            eprintln!(
                "closed by {}: code {} {:?}{}",
                match info.initiator {
                    Initiator::Local => "us",
                    Initiator::Remote => "the server",
                },
                info.code,
                info.reason,
                if info.clean { "" } else { " (not clean)" }
            );
            if info.clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        None => ExitCode::FAILURE,
    }
}
