//! The Autobahn Testsuite's client testee (for `wstest -m fuzzingserver`) on
//! wharf-mio: runs every case the server offers, echoing each message, then
//! asks the server to write its reports. Offers permessage-deflate (cases
//! 12.* and 13.*).
//!
//! ```sh
//! cargo run --release -p wharf-mio --example mio-autobahn-client -- --url ws://127.0.0.1:9001 [--ca PEM] [--agent NAME]
//! ```

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use wharf_core::{ClientRequest, ClientTls, Config, DeflateConfig, Event, Message};
use wharf_mio::WsStream;

struct Ctx {
    base: String,
    tls: Option<ClientTls>,
    config: Arc<Config>,
    poll: Poll,
}

/// Runs one connection to `path`: echoes messages (when `echo`) and returns
/// the text messages received, until the connection ends.
fn run(ctx: &mut Ctx, path: &str, echo: bool) -> Result<Vec<Message>, Box<dyn std::error::Error>> {
    let request = ClientRequest::new(&format!("{}{path}", ctx.base))?;
    let addr = (request.host(), request.port())
        .to_socket_addrs()?
        .next()
        .ok_or("no address")?;
    let now = Instant::now();
    let mut stream = WsStream::connect(
        addr,
        &request,
        ctx.config.clone(),
        ctx.tls.as_ref(),
        now,
        Token(0),
    )?;
    stream.register(ctx.poll.registry())?;
    let mut events = Events::with_capacity(64);
    let mut got = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(120);
    while !stream.is_finished() && Instant::now() < give_up {
        let now = Instant::now();
        let wait = stream
            .poll_timeout()
            .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now));
        ctx.poll.poll(&mut events, Some(wait))?;
        let now = Instant::now();
        for event in events.iter() {
            stream.handle_event(ctx.poll.registry(), event, now);
        }
        if stream.poll_timeout().is_some_and(|t| t <= now) {
            stream.handle_timeout(ctx.poll.registry(), now);
        }
        while let Some(event) = stream.poll_event(ctx.poll.registry()) {
            if let Event::Message(m) = event {
                if echo {
                    let _ = stream.send(ctx.poll.registry(), now, m);
                } else {
                    got.push(m);
                }
            }
        }
    }
    stream.deregister(ctx.poll.registry())?;
    Ok(got)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut base = "ws://127.0.0.1:9001".to_owned();
    let mut ca = None;
    let mut agent = "wharf-mio".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => base = value.trim_end_matches('/').to_owned(),
            "--ca" => ca = Some(value),
            "--agent" => agent = value,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let tls = match ca {
        Some(ca) => Some(
            ClientTls::builder()
                .with_pem_roots(&std::fs::read(ca)?)?
                .build()?,
        ),
        None => None,
    };
    let mut config = Config::default();
    config.max_message_size = 64 << 20;
    config.max_frame_size = 64 << 20;
    config.max_send_queue = 128 << 20;
    config.deflate = Some(DeflateConfig::default());
    let mut ctx = Ctx {
        base,
        tls,
        config: config.into(),
        poll: Poll::new()?,
    };
    let count = run(&mut ctx, "/getCaseCount", false)?;
    let count: usize = match count.first() {
        Some(Message::Text(t)) => t.parse()?,
        other => return Err(format!("unexpected case count {other:?}").into()),
    };
    println!("running {count} cases as {agent}");
    for case in 1..=count {
        run(
            &mut ctx,
            &format!("/runCase?case={case}&agent={agent}"),
            true,
        )?;
    }
    run(&mut ctx, &format!("/updateReports?agent={agent}"), false)?;
    println!("done: {count} cases");
    Ok(())
}
