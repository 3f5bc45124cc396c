//! The receive bound on real sockets over 127.0.0.1, with the process's
//! live heap counted: a peer that sends 64 KiB messages as fast as it can
//! and never reads cannot make an echo server whose application is slower
//! than it hold more than the bounds
//! (while another client of the same server is still answered), and a
//! reconnecting client whose application stops taking messages stops
//! reading, holds a bounded amount, and then delivers everything in order.

mod counting;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use wharf_core::{Accept, ClientRequest, Config, Connection, Event, Message};
use wharf_mio::{ClientEvent, ClientOptions, ReconnectingClient, ServerOptions, WsServer};

/// The two tests measure the whole process: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const MESSAGE: usize = 64 * 1024;
/// The settings under test: what waits for the application, and what
/// waits to be written.
const RECEIVE_BOUND: usize = 256 * 1024;
const SEND_BOUND: usize = 1 << 20;
/// What the process may hold beyond its baseline meanwhile: both bounds,
/// a message being read, a read buffer, the test's own buffers, and slack
/// for the allocator's rounding. Without the bound the first test's server
/// held hundreds of MiB.
const HEAP_BOUND: isize = 8 << 20;

fn config() -> Config {
    let mut config = Config::default();
    config.max_receive_queue = RECEIVE_BOUND;
    config.max_send_queue = SEND_BOUND;
    config.max_message_size = 1 << 20;
    config
}

/// A client's (masked) binary frame of `len` bytes, the header and the
/// payload built once.
fn client_frame(len: usize) -> Vec<u8> {
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(len as u64).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    frame.extend((0..len).map(|i| 0x5a ^ [1u8, 2, 3, 4][i % 4]));
    frame
}

/// Opens a WebSocket on a blocking socket with a core client connection;
/// returns the socket, past the 101.
fn upgrade(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).expect("connect");
    let request = ClientRequest::new(&format!("ws://{addr}/")).unwrap();
    let now = Instant::now();
    let mut conn = Connection::client(Arc::new(Config::default()), &request, None, now).unwrap();
    let mut out = Vec::new();
    while conn.poll_transmit(&mut out) > 0 {}
    socket.write_all(&out).unwrap();
    let mut buf = [0u8; 4096];
    while !conn.is_open() {
        let n = socket.read(&mut buf).expect("the 101");
        assert!(n > 0, "the server closed during the handshake");
        conn.handle_input(now, &buf[..n]);
        while conn.poll_event().is_some() {}
    }
    socket
}

/// The echo server, on this thread's own `Poll`, until `stop`.
fn echo_server(listener: TcpListener, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut poll = Poll::new().unwrap();
        let mut options = ServerOptions::default();
        options.config = Arc::new(config());
        listener.set_nonblocking(true).unwrap();
        let listener = mio::net::TcpListener::from_std(listener);
        let mut server = WsServer::from_listener(listener, options).unwrap();
        server.register(poll.registry()).unwrap();
        let mut events = Events::with_capacity(256);
        while !stop.load(Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(10)))
                .unwrap();
            let now = Instant::now();
            for event in events.iter() {
                server.handle_event(poll.registry(), event, now);
            }
            server.handle_timeout(poll.registry(), now);
            // A busy application: at most 8 events a turn, a turn every
            // millisecond, slower than the flooder.
            std::thread::sleep(Duration::from_millis(1));
            for _ in 0..8 {
                let Some((id, event)) = server.poll_event(poll.registry()) else {
                    break;
                };
                match event {
                    Event::Request(_) => server
                        .accept(poll.registry(), now, id, Accept::default())
                        .unwrap(),
                    // What does not fit the send bound is dropped, by choice.
                    Event::Message(m) => drop(server.send(poll.registry(), now, id, m)),
                    _ => {}
                }
            }
        }
    })
}

#[test]
fn a_peer_that_floods_and_never_reads_cannot_grow_the_servers_heap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = echo_server(listener, stop.clone());
    let baseline = counting::live_bytes();

    // The flooder: 64 KiB messages, as fast as the socket takes them, for
    // at most 512 MiB; it never reads. A write that blocks for half a
    // second means the server stopped reading.
    let written = Arc::new(AtomicU64::new(0));
    let blocked = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (written, blocked) = (written.clone(), blocked.clone());
        std::thread::spawn(move || {
            let mut socket = upgrade(addr);
            socket
                .set_write_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let frame = client_frame(MESSAGE);
            while written.load(Ordering::Relaxed) < 512 << 20 {
                match socket.write(&frame) {
                    Ok(n) => {
                        written.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        blocked.store(true, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
            }
            socket
        })
    };

    // Meanwhile another client is answered, round trip after round trip,
    // until the flooder has written everything or was held back.
    let mut other = upgrade(addr);
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut most = 0isize;
    let mut answered = 0;
    while (!flooder.is_finished() && !blocked.load(Ordering::Relaxed)) || answered < 50 {
        assert!(Instant::now() < give_up, "the flood did not end");
        let ping = client_frame(16);
        other.write_all(&ping).unwrap();
        let mut echo = [0u8; 18];
        other
            .read_exact(&mut echo)
            .expect("the other client is answered");
        assert_eq!(&echo[..2], &[0x82, 16]);
        answered += 1;
        most = most.max(counting::live_bytes() - baseline);
    }
    let flooded = written.load(Ordering::Relaxed);
    eprintln!(
        "flooder wrote {} KiB (held back: {}); the process held at most {} KiB more; {answered} round trips of the other client meanwhile",
        flooded / 1024,
        blocked.load(Ordering::Relaxed),
        most / 1024
    );
    assert!(most < HEAP_BOUND, "held {most} bytes (bound {HEAP_BOUND})");
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    drop(flooder.join().unwrap());
}

#[test]
fn a_client_whose_application_stops_taking_messages_holds_a_bounded_amount() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    const COUNT: u32 = 2_000; // 125 MiB in all
                              // The server sends COUNT numbered 64 KiB messages as fast as its
                              // socket takes them, then closes.
    let sender = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let now = Instant::now();
        let mut conn = Connection::server(Arc::new(Config::default()), None, now).unwrap();
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        while !conn.is_open() {
            let n = socket.read(&mut buf).unwrap();
            conn.handle_input(now, &buf[..n]);
            while let Some(e) = conn.poll_event() {
                if let Event::Request(_) = e {
                    conn.accept(Accept::default()).unwrap();
                }
            }
            while conn.poll_transmit(&mut out) > 0 {}
            socket.write_all(&out).unwrap();
            out.clear();
        }
        let mut payload = vec![0u8; MESSAGE];
        for i in 0..COUNT {
            payload[..4].copy_from_slice(&i.to_be_bytes());
            conn.send(Message::binary(payload.clone())).unwrap();
            while conn.poll_transmit(&mut out) > 0 {}
            if socket.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        conn.close(wharf_core::CloseCode::NORMAL, "done").unwrap();
        while conn.poll_transmit(&mut out) > 0 {}
        let _ = socket.write_all(&out);
        // Wait for the client's Close before ending the socket.
        let _ = socket.read(&mut buf);
    });

    let mut poll = Poll::new().unwrap();
    let mut options = ClientOptions::new(ClientRequest::new(&format!("ws://{addr}/")).unwrap());
    options.config = Arc::new(config());
    let mut client = ReconnectingClient::new(options, Token(1), Instant::now()).unwrap();
    client.start(poll.registry(), Instant::now());
    let mut events = Events::with_capacity(64);
    let baseline = counting::live_bytes();
    let mut most = 0isize;
    let mut got = Vec::new();
    let started = Instant::now();
    let give_up = started + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < give_up,
            "{} of {COUNT} received",
            got.len()
        );
        poll.poll(&mut events, Some(Duration::from_millis(5)))
            .unwrap();
        let now = Instant::now();
        for event in events.iter() {
            client.handle_event(poll.registry(), event, now);
        }
        client.handle_timeout(poll.registry(), now);
        most = most.max(counting::live_bytes() - baseline);
        // The application takes nothing for the first second.
        if now < started + Duration::from_secs(1) {
            continue;
        }
        while let Some(event) = client.poll_event(poll.registry()) {
            if let ClientEvent::Message(m) = event {
                got.push(u32::from_be_bytes(m.payload()[..4].try_into().unwrap()));
            }
        }
        if got.len() == COUNT as usize {
            break;
        }
    }
    eprintln!(
        "client: held at most {} KiB more while its application took nothing",
        most / 1024
    );
    assert!(most < HEAP_BOUND, "held {most} bytes (bound {HEAP_BOUND})");
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>(), "all, in order");
    client.shutdown(poll.registry(), Instant::now());
    drop(client);
    sender.join().unwrap();
}
