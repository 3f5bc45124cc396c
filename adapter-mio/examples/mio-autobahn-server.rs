//! The Autobahn Testsuite's echo server (testee for `wstest -m fuzzingclient`)
//! on wharf-mio: echoes every message, accepts messages up to 64 MiB, and
//! accepts permessage-deflate (cases 12.* and 13.*).
//!
//! ```sh
//! cargo run --release -p wharf-mio --example mio-autobahn-server -- --listen 127.0.0.1:9001 [--cert PEM --key PEM]
//! ```

use std::time::{Duration, Instant};

use mio::{Events, Poll};
use wharf_core::{Accept, Config, DeflateConfig, Event, ServerTls};
use wharf_mio::{ServerOptions, WsServer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let mut config = Config::default();
    config.max_message_size = 64 << 20;
    config.max_frame_size = 64 << 20;
    config.max_send_queue = 128 << 20;
    config.deflate = Some(DeflateConfig::default());
    let mut options = ServerOptions::default();
    options.config = config.into();
    options.tls = match (cert, key) {
        (Some(c), Some(k)) => {
            Some(ServerTls::builder(&std::fs::read(c)?, &std::fs::read(k)?)?.build()?)
        }
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    let mut poll = Poll::new()?;
    let mut server = WsServer::bind(listen.parse()?, options)?;
    server.register(poll.registry())?;
    println!("mio-autobahn-server (wharf-mio) on {}", server.local_addr());
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let wait = server
            .poll_timeout()
            .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
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
                Event::Request(_) => server.accept(poll.registry(), now, id, Accept::default())?,
                Event::Message(m) => {
                    let _ = server.send(poll.registry(), now, id, m);
                }
                _ => {}
            }
        }
    }
}
