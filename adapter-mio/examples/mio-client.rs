//! A client on wharf-mio: sends each line of standard input as a text
//! message and prints every message received; at the end of the input it
//! closes with 1000 and exits 0.
//!
//! Without `--reconnect`, a failed connection (a certificate error
//! included) or a lost one prints the error and exits 1. With it, the
//! client keeps going through disconnects (the core's backoff), prints each
//! one, and sends what was typed meanwhile once it is back.
//!
//! ```sh
//! printf 'hello\nworld\n' | cargo run -p wharf-mio --example mio-client -- --url ws://127.0.0.1:9001/
//! cargo run -p wharf-mio --example mio-client -- --url wss://localhost:9443/ --ca ca.pem --reconnect
//! ```
//!
//! Flags, the same as `tokio-client`'s: `--url URL`, `--ca PEM` (trust this
//! CA instead of the Mozilla roots), `--cert PEM --key PEM` (a client
//! certificate, for servers that ask for one), `--reconnect`.

use std::io::BufRead;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use wharf_core::{ClientRequest, ClientTls, Message};
use wharf_mio::{ClientEvent, ClientOptions, Disconnect, ReconnectingClient};

const USAGE: &str = "usage: mio-client [--url URL] [--ca PEM] [--cert PEM --key PEM] [--reconnect]";

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

fn tls(args: &Args) -> Result<ClientTls, Box<dyn std::error::Error>> {
    let mut builder = ClientTls::builder();
    builder = match &args.ca {
        Some(ca) => builder.with_pem_roots(&std::fs::read(ca)?)?,
        None => builder.with_mozilla_roots(),
    };
    if let Some((cert, key)) = &args.cert {
        builder = builder.with_client_cert_pem(&std::fs::read(cert)?, &std::fs::read(key)?)?;
    }
    Ok(builder.build()?)
}

const CLIENT: Token = Token(0);
const STDIN: Token = Token(1);

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mio-client: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let mut options = ClientOptions::new(ClientRequest::new(&args.url)?);
    if args.url.starts_with("wss:") {
        options.tls = Some(tls(&args)?);
    }
    if !args.reconnect {
        // One attempt; a loss ends the program too (below).
        options.reconnect.max_attempts = Some(1);
    }

    let mut poll = Poll::new()?;
    // Standard input blocks: a thread reads it and wakes the loop.
    let waker = Waker::new(poll.registry(), STDIN)?;
    let (lines, typed) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(Some(line)).is_err() || waker.wake().is_err() {
                return;
            }
        }
        let _ = lines.send(None);
        let _ = waker.wake();
    });

    let mut client = ReconnectingClient::new(options, CLIENT, Instant::now())?;
    client.start(poll.registry(), Instant::now());
    let mut events = Events::with_capacity(64);
    let mut input_done = false;
    loop {
        let now = Instant::now();
        let wait = client
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(60));
        poll.poll(&mut events, Some(wait))?;
        let now = Instant::now();
        for event in events.iter() {
            if event.token() == CLIENT {
                client.handle_event(poll.registry(), event, now);
            }
        }
        client.handle_timeout(poll.registry(), now);
        while let Ok(line) = typed.try_recv() {
            match line {
                Some(line) => {
                    if let Err(m) = client.send(poll.registry(), now, Message::text(line)) {
                        eprintln!("the queue is full; not sent: {m:?}");
                    }
                }
                None => {
                    // End of input: send what is queued, close with 1000.
                    input_done = true;
                    client.shutdown(poll.registry(), now);
                }
            }
        }
        while let Some(event) = client.poll_event(poll.registry()) {
            match event {
                ClientEvent::Connected(_) => eprintln!("connected to {}", args.url),
                ClientEvent::Message(m) => match m.as_text() {
                    Some(text) => println!("{text}"),
                    None => println!("<{} bytes of binary>", m.len()),
                },
                ClientEvent::Disconnected(d) => {
                    let clean_end =
                        input_done && matches!(&d.reason, Disconnect::Lost(info) if info.clean);
                    if clean_end {
                        continue;
                    }
                    match d.retry_at {
                        Some(at) if args.reconnect => eprintln!(
                            "disconnected: {}; retrying in {:.1} s",
                            d.reason,
                            at.saturating_duration_since(now).as_secs_f64()
                        ),
                        _ => {
                            eprintln!("mio-client: {}", d.reason);
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                }
                ClientEvent::Stopped => {
                    return Ok(if input_done {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                _ => {}
            }
        }
    }
}
