//! A client on wharf-tokio: sends each line of standard input as a text
//! message and prints every message received; at the end of the input it
//! closes with 1000 and exits 0.
//!
//! Without `--reconnect`, a failed connection (a certificate error
//! included) or a lost one prints the error and exits 1. With it, the
//! client keeps going through disconnects (the core's backoff), prints each
//! one, and sends what was typed meanwhile once it is back.
//!
//! ```sh
//! printf 'hello\nworld\n' | cargo run -p wharf-tokio --example tokio-client -- --url ws://127.0.0.1:9001/
//! cargo run -p wharf-tokio --example tokio-client -- --url wss://localhost:9443/ --ca ca.pem --reconnect
//! ```
//!
//! Flags, the same as `mio-client`'s: `--url URL`, `--ca PEM` (trust this
//! CA instead of the Mozilla roots), `--cert PEM --key PEM` (a client
//! certificate, for servers that ask for one), `--reconnect`.

use std::process::ExitCode;

use tokio::io::{AsyncBufReadExt, BufReader};
use wharf_tokio::{
    ClientConfig, ClientEvent, ClientRequest, ClientTls, Disconnect, Message, ReconnectConfig,
    ReconnectingClient,
};

const USAGE: &str =
    "usage: tokio-client [--url URL] [--ca PEM] [--cert PEM --key PEM] [--reconnect]";

struct Args {
    url: String,
    ca: Option<String>,
    cert: Option<(String, String)>,
    reconnect: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "ws://127.0.0.1:9001/".into(),
        ca: None,
        cert: None,
        reconnect: false,
    };
    let (mut cert, mut key) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--ca" => args.ca = Some(value()?),
            "--cert" => cert = Some(value()?),
            "--key" => key = Some(value()?),
            "--reconnect" => args.reconnect = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    args.cert = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    Ok(args)
}

fn config(args: &Args) -> Result<ClientConfig, Box<dyn std::error::Error>> {
    let mut builder = ClientTls::builder();
    builder = match &args.ca {
        Some(ca) => builder.with_pem_roots(&std::fs::read(ca)?)?,
        None => builder.with_mozilla_roots(),
    };
    if let Some((cert, key)) = &args.cert {
        builder = builder.with_client_cert_pem(&std::fs::read(cert)?, &std::fs::read(key)?)?;
    }
    Ok(ClientConfig::new().with_tls(builder.build()?))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tokio-client: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

async fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mut reconnect = ReconnectConfig::default();
    if !args.reconnect {
        // One attempt; a loss ends the program too (below).
        reconnect.max_attempts = Some(1);
    }
    let mut options = config(&args)?.client_options(ClientRequest::new(&args.url)?);
    options.reconnect = reconnect;
    let (client, mut events) = ReconnectingClient::spawn(options)?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut client = Some(client);
    let mut input_done = false;
    loop {
        tokio::select! {
            // Cancel-safe: no line is lost when the other branch wins.
            line = lines.next_line(), if !input_done => match line? {
                Some(line) => {
                    if let Some(c) = &client {
                        if let Err(e) = c.try_send(Message::text(line)) {
                            eprintln!("not sent: {e}");
                        }
                    }
                }
                None => {
                    // End of input: send what is queued, close with 1000.
                    input_done = true;
                    if let Some(c) = client.take() {
                        tokio::spawn(c.shutdown());
                    }
                }
            },
            event = events.recv() => match event {
                Some(ClientEvent::Connected(_)) => eprintln!("connected to {}", args.url),
                Some(ClientEvent::Message(m)) => match m.as_text() {
                    Some(text) => println!("{text}"),
                    None => println!("<{} bytes of binary>", m.len()),
                },
                Some(ClientEvent::Disconnected(d)) => {
                    let clean_end =
                        input_done && matches!(&d.reason, Disconnect::Lost(info) if info.clean);
                    if clean_end {
                        continue;
                    }
                    match d.retry_at {
                        Some(at) if args.reconnect => eprintln!(
                            "disconnected: {}; retrying in {:.1} s",
                            d.reason,
                            at.saturating_duration_since(std::time::Instant::now()).as_secs_f64()
                        ),
                        _ => {
                            eprintln!("tokio-client: {}", d.reason);
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
                Some(ClientEvent::Stopped) | None => {
                    return Ok(if input_done { ExitCode::SUCCESS } else { ExitCode::FAILURE });
                }
                Some(_) => {}
            },
        }
    }
}
