//! A wss client and server in one process, joined by in-memory "sockets":
//! a private CA and a server certificate are made on the spot, the client
//! trusts only that CA, they exchange messages, ping, and close cleanly.
//!
//! Run: `cargo run -p wharf-core --example loopback`

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_core::test_certs::TestPki;
use wharf_core::{Accept, ClientRequest, CloseCode, Config, Connection, Event, Message};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost"]);
    let client_tls = pki.client_tls();
    println!("made a private CA and a certificate for localhost");

    let config = Arc::new(Config::default());
    let mut now = Instant::now();
    let request = ClientRequest::new("wss://localhost/demo")?.subprotocol("demo.v1");
    let mut client = Connection::client(config.clone(), &request, Some(&client_tls), now)?;
    let mut server = Connection::server(config, Some(&server_tls), now)?;

    let mut wire = Vec::new();
    let mut to_send = 5u32;
    let mut echoed = 0u32;
    let mut bytes = (0usize, 0usize);
    let started = Instant::now();
    for _ in 0..1000 {
        while client.poll_transmit(&mut wire) > 0 {}
        bytes.0 += wire.len();
        server.handle_input(now, &wire);
        wire.clear();
        while let Some(event) = server.poll_event() {
            match event {
                Event::Request(req) => {
                    println!(
                        "server: upgrade request for {} offering {:?}",
                        req.path(),
                        req.subprotocols()
                    );
                    server.accept(Accept {
                        subprotocol: req.subprotocols().first().cloned(),
                        headers: vec![],
                    })?;
                }
                Event::Message(m) => {
                    server.send(m).map_err(|e| e.to_string())?;
                }
                Event::Ping(p) => println!("server: ping {:?} (pong sent)", p),
                Event::Closed(info) => println!("server: closed {info:?}"),
                other => println!("server: {other:?}"),
            }
        }
        while server.poll_transmit(&mut wire) > 0 {}
        bytes.1 += wire.len();
        client.handle_input(now, &wire);
        wire.clear();
        while let Some(event) = client.poll_event() {
            match event {
                Event::Open(open) => {
                    println!("client: open, subprotocol {:?}", open.subprotocol);
                    client.ping(b"are you there")?;
                }
                Event::Message(m) => {
                    echoed += 1;
                    println!("client: echo {m:?}");
                }
                Event::Closed(info) => println!("client: closed {info:?}"),
                other => println!("client: {other:?}"),
            }
        }
        if client.is_open() && to_send > 0 {
            client
                .send(Message::text(format!("message #{}", 6 - to_send)))
                .map_err(|e| e.to_string())?;
            to_send -= 1;
        } else if client.is_open() && echoed == 5 {
            client.close(CloseCode::NORMAL, "done")?;
        }
        if client.is_closed() && server.is_finished() {
            break;
        }
        now += Duration::from_millis(1);
        for c in [&mut client, &mut server] {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
    }
    println!(
        "summary: {echoed} of 5 messages echoed, {} bytes client→server, {} bytes server→client (TLS), {:?}",
        bytes.0,
        bytes.1,
        started.elapsed()
    );
    if echoed != 5 || !client.is_closed() {
        return Err("the exchange did not complete".into());
    }
    Ok(())
}
