//! The mio adapter on real sockets over 127.0.0.1: echo over ws and wss, many
//! clients in one Poll, and a client that survives a server restart.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::Looper;
use wharf_core::test_certs::TestPki;
use wharf_core::{ClientRequest, Message, ReconnectConfig};
use wharf_mio::{ClientOptions, ReconnectingClient, ServerOptions, WsServer};

const LIMIT: Duration = Duration::from_secs(20);

fn server(options: ServerOptions) -> WsServer {
    WsServer::bind("127.0.0.1:0".parse().unwrap(), options).expect("bind")
}

fn client(url: &str, token: usize, tweak: impl FnOnce(&mut ClientOptions)) -> ReconnectingClient {
    let mut options = ClientOptions::new(ClientRequest::new(url).unwrap());
    options.reconnect = ReconnectConfig::fixed(Duration::from_millis(20));
    tweak(&mut options);
    ReconnectingClient::new(options, Looper::token(token), std::time::Instant::now()).unwrap()
}

fn messages(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| match i % 3 {
            0 => Message::text(format!("text {i} κόσμε")),
            1 => Message::binary(vec![i as u8; i * 997]),
            _ => Message::binary(vec![0xEE; 300_000]),
        })
        .collect()
}

#[test]
fn echo_over_ws() {
    let mut l = Looper::new();
    l.set_server(server(ServerOptions::default()));
    let url = format!("ws://{}/echo", l.server.as_ref().unwrap().local_addr());
    let c = l.add_client(client(&url, 1, |_| {}));
    l.run_until(LIMIT, |l| l.clients[c].client().is_connected());
    let sent = messages(12);
    for m in &sent {
        l.send(c, m.clone());
    }
    l.run_until(LIMIT, |l| l.received(c).len() == sent.len());
    assert_eq!(l.received(c), sent);
}

#[test]
fn echo_over_wss_with_a_private_ca() {
    let pki = TestPki::new();
    let mut options = ServerOptions::default();
    options.tls = Some(pki.server_tls(&["localhost", "127.0.0.1"]));
    let mut l = Looper::new();
    l.set_server(server(options));
    let port = l.server.as_ref().unwrap().local_addr().port();
    let tls = pki.client_tls();
    for (i, url) in [
        format!("wss://127.0.0.1:{port}/"),
        format!("wss://localhost:{port}/"),
    ]
    .iter()
    .enumerate()
    {
        let tls = tls.clone();
        let c = l.add_client(client(url, 1 + i, |o| o.tls = Some(tls)));
        l.run_until(LIMIT, |l| l.clients[c].client().is_connected());
        let sent = messages(6);
        for m in &sent {
            l.send(c, m.clone());
        }
        l.run_until(LIMIT, |l| l.received(c).len() == sent.len());
        assert_eq!(l.received(c), sent);
    }
}

#[test]
fn many_clients_against_one_server_in_one_poll() {
    let mut l = Looper::new();
    l.set_server(server(ServerOptions::default()));
    let url = format!("ws://{}/", l.server.as_ref().unwrap().local_addr());
    let n = 64;
    for i in 0..n {
        l.add_client(client(&url, 1 + i, |_| {}));
    }
    l.run_until(LIMIT, |l| {
        l.clients.iter().all(|c| c.client().is_connected())
    });
    assert_eq!(l.server.as_ref().unwrap().connection_count(), n);
    for i in 0..n {
        for j in 0..10 {
            l.send(i, Message::text(format!("client {i} message {j}")));
        }
    }
    l.run_until(LIMIT, |l| (0..n).all(|i| l.received(i).len() == 10));
    for i in 0..n {
        let expected: Vec<Message> = (0..10)
            .map(|j| Message::text(format!("client {i} message {j}")))
            .collect();
        assert_eq!(l.received(i), expected, "client {i}");
    }
}

#[test]
fn client_reconnects_after_a_server_restart_and_delivers_queued_messages_in_order() {
    let mut l = Looper::new();
    l.set_server(server(ServerOptions::default()));
    let addr = l.server.as_ref().unwrap().local_addr();
    let registrations = Arc::new(AtomicUsize::new(0));
    let counter = registrations.clone();
    let c = l.add_client(client(&format!("ws://{addr}/"), 1, move |o| {
        o.registration = Some(Box::new(move |_open| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            vec![Message::text(format!("register #{n}"))]
        }));
    }));
    l.run_until(LIMIT, |l| l.received(c).len() == 1);
    assert_eq!(l.received(c), vec![Message::text("register #1")]);

    // The server goes away: every socket closes at once.
    l.drop_server();
    l.run_until(LIMIT, |l| !l.clients[c].client().is_connected());
    l.server_events.clear();
    // While it is gone, messages queue up.
    let queued: Vec<Message> = (0..20)
        .map(|i| Message::text(format!("queued {i}")))
        .collect();
    for m in &queued {
        l.send(c, m.clone());
    }
    // Let a few attempts fail against the closed port.
    l.run_until(LIMIT, |l| {
        l.client_events[c]
            .iter()
            .filter(|e| matches!(e, wharf_mio::ClientEvent::Disconnected(_)))
            .count()
            >= 3
    });
    assert_eq!(l.clients[c].client().queued(), 20);

    // The server comes back on the same address.
    l.set_server(server_on(addr));
    l.run_until(LIMIT, |l| l.server_messages().len() == 21);
    let mut expected = vec![Message::text("register #2")];
    expected.extend(queued.iter().cloned());
    assert_eq!(
        l.server_messages(),
        expected,
        "registration first, then the queue in order"
    );
    assert_eq!(l.connects(c), 2);
    assert_eq!(registrations.load(Ordering::SeqCst), 2);
    l.run_until(LIMIT, |l| l.received(c).len() == 22);
}

fn server_on(addr: std::net::SocketAddr) -> WsServer {
    // The old listener is gone; bind again (mio sets SO_REUSEADDR).
    let give_up = std::time::Instant::now() + LIMIT;
    loop {
        match WsServer::bind(addr, ServerOptions::default()) {
            Ok(s) => return s,
            Err(e) if std::time::Instant::now() < give_up => {
                eprintln!("rebind {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("could not rebind {addr}: {e}"),
        }
    }
}

#[test]
fn graceful_server_shutdown_closes_with_1001() {
    let mut l = Looper::new();
    l.set_server(server(ServerOptions::default()));
    let url = format!("ws://{}/", l.server.as_ref().unwrap().local_addr());
    let c = l.add_client(client(&url, 1, |o| {
        o.reconnect = ReconnectConfig::fixed(Duration::from_secs(60));
    }));
    l.run_until(LIMIT, |l| l.clients[c].client().is_connected());
    let now = std::time::Instant::now();
    let registry = l.poll.registry();
    l.server.as_mut().unwrap().shutdown(registry, now);
    assert!(!l.server.as_ref().unwrap().is_accepting());
    l.run_until(LIMIT, |l| {
        l.server.as_ref().unwrap().connection_count() == 0
    });
    l.run_until(LIMIT, |l| {
        l.client_events[c]
            .iter()
            .any(|e| matches!(e, wharf_mio::ClientEvent::Disconnected(_)))
    });
    let code = l.client_events[c].iter().find_map(|e| match e {
        wharf_mio::ClientEvent::Disconnected(d) => match &d.reason {
            wharf_mio::Disconnect::Lost(info) => Some(info.code),
            _ => None,
        },
        _ => None,
    });
    assert_eq!(code, Some(wharf_core::CloseCode::GOING_AWAY));
}

/// A raw client socket, upgraded by the looper's server.
fn raw_client(l: &mut Looper) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let addr = l.server.as_ref().unwrap().local_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let opened = l.server_events.len();
    l.run_until(LIMIT, |l| {
        l.server_events[opened..]
            .iter()
            .any(|(_, e)| matches!(e, wharf_core::Event::Open(_)))
    });
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s
}

/// A masked text frame.
fn masked_text(text: &str) -> Vec<u8> {
    let key = [0x5a, 0x01, 0xc3, 0x7e];
    let mut frame = vec![0x81, 0x80 | text.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// The server stops reading at a short read (the socket is empty); a
/// hang-up that arrived with the data must still be read to its end, since
/// no later event reports it.
#[test]
fn data_and_hang_up_in_one_event_are_both_seen() {
    use std::io::Write;
    let mut l = Looper::new();
    l.echo = false;
    l.set_server(server(ServerOptions::default()));
    let server_closed = |l: &Looper| {
        l.server_events
            .iter()
            .filter(|(_, e)| matches!(e, wharf_core::Event::Closed(_)))
            .count()
    };

    // Data and FIN sent before the server's loop turns: one event.
    let mut s = raw_client(&mut l);
    s.write_all(&masked_text("last words")).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    l.run_until(LIMIT, |l| server_closed(l) == 1);
    assert_eq!(l.server_messages(), vec![Message::text("last words")]);
    let closed = l.server_events.iter().find_map(|(_, e)| match e {
        wharf_core::Event::Closed(info) => Some(info.code),
        _ => None,
    });
    assert_eq!(closed, Some(wharf_core::CloseCode::ABNORMAL));
    l.run_until(LIMIT, |l| {
        l.server.as_ref().unwrap().connection_count() == 0
    });

    // The FIN after the data was read: an event of its own.
    let mut s = raw_client(&mut l);
    s.write_all(&masked_text("more")).unwrap();
    l.run_until(LIMIT, |l| l.server_messages().len() == 2);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    l.run_until(LIMIT, |l| server_closed(l) == 2);
    l.run_until(LIMIT, |l| {
        l.server.as_ref().unwrap().connection_count() == 0
    });
}
