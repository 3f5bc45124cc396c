//! An echo server on wharf-mio: every message comes back to its sender.
//!
//! ```sh
//! cargo run -p wharf-mio --example mio-echo-server -- --listen 127.0.0.1:9001
//! cargo run -p wharf-mio --example mio-echo-server -- --listen 127.0.0.1:9443 --cert cert.pem --key key.pem
//! ```

use std::time::{Duration, Instant};

use mio::{Events, Poll};
use wharf_core::{Accept, Config, Event, ServerTls};
use wharf_mio::{ServerOptions, WsServer};

struct Args {
    listen: String,
    cert: Option<String>,
    key: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:9001".into(),
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
            "-h" | "--help" => {
                return Err("usage: mio-echo-server [--listen ADDR] [--cert PEM --key PEM]".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tls = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            Some(ServerTls::builder(&std::fs::read(cert)?, &std::fs::read(key)?)?.build()?)
        }
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let mut options = ServerOptions::default();
    let mut config = Config::default();
    config.max_message_size = 16 << 20;
    options.config = config.into();
    options.tls = tls;

    let mut poll = Poll::new()?;
    let mut server = WsServer::bind(args.listen.parse()?, options)?;
    server.register(poll.registry())?;
    println!(
        "echo server listening on {scheme}://{}",
        server.local_addr()
    );

    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let wait = server
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(60));
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        let now = Instant::now();
        for event in events.iter() {
            server.handle_event(poll.registry(), event, now);
        }
        server.handle_timeout(poll.registry(), now);
        while let Some((id, event)) = server.poll_event(poll.registry()) {
            match event {
                Event::Request(req) => {
                    println!("{id:?}: upgrade request for {}", req.target());
                    server.accept(poll.registry(), now, id, Accept::default())?;
                }
                Event::Message(m) => {
                    if let Err(e) = server.send(poll.registry(), now, id, m) {
                        println!("{id:?}: could not echo: {e}");
                    }
                }
                Event::Closed(info) => println!(
                    "{id:?}: closed ({}) {}{}",
                    info.code,
                    info.reason,
                    info.error.map(|e| format!(" — {e}")).unwrap_or_default()
                ),
                _ => {}
            }
        }
    }
}
