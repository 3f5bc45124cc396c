//! A reconnecting client on wharf-mio: sends a numbered message every
//! `--interval-ms`, prints what comes back, and reconnects by the default
//! policy whenever the server goes away.
//!
//! ```sh
//! cargo run -p wharf-mio --example mio-client -- --url ws://127.0.0.1:9001/
//! cargo run -p wharf-mio --example mio-client -- --url wss://localhost:9443/ --ca ca.pem --count 10
//! ```

use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use wharf_core::{ClientRequest, ClientTls, Message};
use wharf_mio::{ClientEvent, ClientOptions, ReconnectingClient};

struct Args {
    url: String,
    ca: Option<String>,
    count: Option<u64>,
    interval: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "ws://127.0.0.1:9001/".into(),
        ca: None,
        count: None,
        interval: Duration::from_millis(1000),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--ca" => args.ca = Some(value()?),
            "--count" => args.count = Some(value()?.parse().map_err(|e| format!("--count: {e}"))?),
            "--interval-ms" => {
                let ms: u64 = value()?
                    .parse()
                    .map_err(|e| format!("--interval-ms: {e}"))?;
                args.interval = Duration::from_millis(ms);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: mio-client [--url URL] [--ca PEM] [--count N] [--interval-ms MS]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let request = ClientRequest::new(&args.url)?;
    let mut options = ClientOptions::new(request);
    options.tls = match &args.ca {
        Some(ca) => Some(
            ClientTls::builder()
                .with_pem_roots(&std::fs::read(ca)?)?
                .build()?,
        ),
        None if args.url.starts_with("wss:") => {
            Some(ClientTls::builder().with_mozilla_roots().build()?)
        }
        None => None,
    };
    options.registration = Some(Box::new(|| vec![Message::text("hello from wharf-mio")]));

    let mut poll = Poll::new()?;
    let mut client = ReconnectingClient::new(options, Token(0), Instant::now())?;
    client.start(poll.registry(), Instant::now());

    let mut events = Events::with_capacity(64);
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut next_send = Instant::now();
    loop {
        let now = Instant::now();
        let deadline = [client.poll_timeout(), Some(next_send)]
            .into_iter()
            .flatten()
            .min();
        let wait = deadline.map(|d| d.saturating_duration_since(now));
        poll.poll(&mut events, wait)?;
        let now = Instant::now();
        for event in events.iter() {
            client.handle_event(poll.registry(), event, now);
        }
        client.handle_timeout(poll.registry(), now);
        if now >= next_send && args.count.is_none_or(|c| sent < c) {
            sent += 1;
            if let Err(m) = client.send(
                poll.registry(),
                now,
                Message::text(format!("message {sent}")),
            ) {
                println!("queue full, dropped by choice: {m:?}");
            }
            next_send = now + args.interval;
        }
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Connected { .. } => println!("connected to {}", args.url),
                ClientEvent::Disconnected { reason, retry_at } => match retry_at {
                    Some(t) => println!(
                        "disconnected: {reason}; retrying in {:?}",
                        t.saturating_duration_since(now)
                    ),
                    None => println!("disconnected: {reason}; giving up"),
                },
                ClientEvent::Message(m) => {
                    received += 1;
                    println!("received {m:?}");
                }
                ClientEvent::Stopped => {
                    println!("stopped: sent {sent}, received {received}");
                    return Ok(());
                }
                _ => {}
            }
        }
        // The registration message is echoed too.
        if args.count.is_some_and(|c| sent >= c && received > c) && !client.is_stopped() {
            client.shutdown(poll.registry(), now);
        }
    }
}
