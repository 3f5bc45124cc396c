//! Backpressure on what arrives, over real loopback sockets: a peer sends
//! far more than a reader that does not read may hold. The connection keeps
//! only its bounded buffers (the reader's, and the core's own bound on
//! inflated data, which holds only while the adapter leaves the core's
//! events alone), stops reading its socket so that the sender's writes
//! block, while another client of the same listener is served; and once
//! the reader reads, every message arrives whole and in order. Both for a [`WebSocket`](wharf_tokio::WebSocket) and for the
//! [`ReconnectingClient`].
//!
//! This file is its own test binary, so the counting allocator
//! (`counting/`) sees only its tests' allocations; they run one at a time.

mod counting;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wharf_core::{Accept, ClientRequest, Connection, Event};
use wharf_tokio::{
    ClientConfig, ClientEvent, Config, DeflateConfig, Message, ReconnectConfig, ReconnectingClient,
    ServerConfig,
};

/// Messages that inflate from a few hundred bytes each to `BIG`, sent in
/// one burst: a single read of the receiver holds dozens of them.
const COMPRESSIBLE: usize = 64;
const BIG: usize = 256 * 1024;
/// Then messages that do not compress, sent as they are.
const INCOMPRESSIBLE: usize = 48;
const RANDOM: usize = 64 * 1024;

/// The reader's buffer: 4 messages or 1 MiB.
const INCOMING_MESSAGES: usize = 4;
const INCOMING_BYTES: usize = 1 << 20;

/// Socket buffers (the kernel doubles them): small, so that the sender is
/// stopped soon after the receiver stops reading.
const SOCKET_BUFFER: u32 = 32 * 1024;

/// What both ends may hold while the reader does not read: the reader's
/// buffer (plus one message), the core's inflated data (256 KiB in its
/// events, one message being reassembled), both compressors' state, the
/// sender's queue and transmit batch; about 2 MiB is seen. Taking every
/// event regardless would hold all the inflated messages, 16 MiB.
const MEMORY_BOUND: isize = 6 << 20;

/// The tests measure the whole process's heap: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Message `i` of the stream.
fn message(i: usize) -> Message {
    if i < COMPRESSIBLE {
        let mut text = format!("#{i}:");
        let fill = char::from(b'a' + (i % 26) as u8);
        text.extend(std::iter::repeat_n(fill, BIG - text.len()));
        Message::text(text)
    } else {
        // xorshift64, seeded by `i`: bytes deflate cannot shrink.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (i as u64);
        let bytes: Vec<u8> = (0..RANDOM)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Message::binary(bytes)
    }
}

/// The receiver's protocol settings: the defaults with deflate on.
fn deflate_config() -> Config {
    let mut config = Config::default();
    config.deflate = Some(DeflateConfig::default());
    // What may wait for the application: the core's receive bound.
    config.max_receive_events = INCOMING_MESSAGES;
    config.max_receive_queue = INCOMING_BYTES;
    config
}

/// The sender's: deflate at its best ratio, a small send queue.
fn sender_config() -> Arc<Config> {
    let mut deflate = DeflateConfig::default();
    deflate.level = 9;
    let mut config = Config::default();
    config.deflate = Some(deflate);
    config.max_send_queue = 256 * 1024;
    Arc::new(config)
}

/// Writes all of `bytes`, noting in `blocked` when a write waits longer
/// than a moment (the receiver's window and our send buffer are full).
async fn write_noting_stalls(stream: &mut TcpStream, bytes: &[u8], blocked: &AtomicBool) {
    let mut at = 0;
    while at < bytes.len() {
        // A write that times out wrote nothing: the retry sends the same bytes.
        match tokio::time::timeout(Duration::from_millis(200), stream.write(&bytes[at..])).await {
            Ok(Ok(0)) => panic!("the receiver closed its socket"),
            Ok(Ok(n)) => at += n,
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => blocked.store(true, Ordering::SeqCst),
        }
    }
}

/// Runs the opening handshake of a core connection driven by hand (a
/// server accepts the request); checks that deflate was agreed.
async fn open(conn: &mut Connection, stream: &mut TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    loop {
        out.clear();
        while conn.poll_transmit(&mut out) > 0 {}
        stream.write_all(&out).await.expect("write the handshake");
        if conn.is_open() {
            assert!(conn.deflate().is_some(), "permessage-deflate agreed");
            return;
        }
        let n = stream.read(&mut buf).await.expect("read the handshake");
        assert!(n > 0, "the peer ended the connection in the handshake");
        conn.handle_input(Instant::now(), &buf[..n]);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request(_) => conn.accept(Accept::default()).expect("accepted"),
                Event::Closed(info) => panic!("closed in the handshake: {info:?}"),
                _ => {}
            }
        }
    }
}

/// Sends the compressible messages in one burst, then `incompressible`
/// more as fast as the socket takes them; then waits until the receiver
/// closes.
async fn send_stream(
    mut conn: Connection,
    mut stream: TcpStream,
    incompressible: usize,
    blocked: Arc<AtomicBool>,
    burst_sent: Arc<AtomicBool>,
) {
    let mut burst = Vec::new();
    for i in 0..COMPRESSIBLE {
        conn.send(message(i)).expect("room for one message");
        while conn.poll_transmit(&mut burst) > 0 {}
    }
    write_noting_stalls(&mut stream, &burst, &blocked).await;
    drop(burst);
    burst_sent.store(true, Ordering::SeqCst);

    // The connection takes messages up to its queue's bound.
    let total = COMPRESSIBLE + incompressible;
    let mut next = COMPRESSIBLE;
    let mut out = Vec::new();
    loop {
        while next < total {
            if conn.send_uncompressed(message(next)).is_err() {
                break;
            }
            next += 1;
        }
        out.clear();
        if conn.poll_transmit(&mut out) == 0 {
            assert_eq!(next, total, "nothing to send, yet messages are left");
            break;
        }
        write_noting_stalls(&mut stream, &out, &blocked).await;
    }
    // Keep the socket open until the receiver is done with it.
    let mut buf = [0u8; 1024];
    let _ = stream.read(&mut buf).await;
}

/// A listening socket on 127.0.0.1 whose accepted sockets have small
/// buffers.
fn small_buffered_listener() -> tokio::net::TcpListener {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(SOCKET_BUFFER)
        .expect("receive buffer");
    socket
        .set_send_buffer_size(SOCKET_BUFFER)
        .expect("send buffer");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind");
    socket.listen(8).expect("listen")
}

/// The heap grown since `baseline` at its highest, checked against the bound.
fn check_held(baseline: isize) {
    let held = counting::peak_bytes() - baseline;
    println!("at most {held} bytes held while the reader did not read");
    assert!(
        held < MEMORY_BOUND,
        "{held} bytes held while the reader did not read (bound {MEMORY_BOUND})"
    );
}

/// Checks that `got` is message `i`.
fn check_message(i: usize, got: &Message) {
    let want = message(i);
    assert!(
        *got == want,
        "message {i}: got {}, want {}",
        describe(got),
        describe(&want)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_does_not_read_bounds_memory_and_stalls_the_sender() {
    let _serial = SERIAL.lock().await;
    let listener = small_buffered_listener();
    let addr = listener.local_addr().expect("bound");
    let config = ServerConfig::new().with_config(deflate_config());

    let baseline = counting::live_bytes();
    counting::reset_peak();
    let blocked = Arc::new(AtomicBool::new(false));
    let burst_sent = Arc::new(AtomicBool::new(false));
    let sending = tokio::spawn({
        let (blocked, burst_sent) = (blocked.clone(), burst_sent.clone());
        async move {
            let socket = TcpSocket::new_v4().expect("socket");
            socket
                .set_send_buffer_size(SOCKET_BUFFER)
                .expect("send buffer");
            let mut stream = socket.connect(addr).await.expect("connect");
            let request = ClientRequest::new(&format!("ws://{addr}/")).expect("url");
            let mut conn = Connection::client(sender_config(), &request, None, Instant::now())
                .expect("a config");
            open(&mut conn, &mut stream).await;
            send_stream(conn, stream, INCOMPRESSIBLE, blocked, burst_sent).await;
        }
    });
    let (stream, _) = within("accept", listener.accept()).await.expect("accepted");
    let mut ws = within("handshake", wharf_tokio::accept(stream, &config))
        .await
        .expect("open");

    // Not reading: the sender soon cannot write any more.
    eventually("the sender's writes block", || {
        blocked.load(Ordering::SeqCst)
    })
    .await;
    assert!(burst_sent.load(Ordering::SeqCst));
    // Time for a connection that kept taking events to fill memory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sending.is_finished(), "the sender got everything out");
    check_held(baseline);

    // Another client of the same listener is served meanwhile.
    let other = tokio::spawn(async move {
        let mut ws = wharf_tokio::connect(&format!("ws://{addr}/"), &ClientConfig::new())
            .await
            .expect("the other client connects");
        ws.send(Message::text("still there?")).await.expect("sent");
        ws.recv().await.expect("an echo").expect("a message")
    });
    let (stream, _) = within("accept", listener.accept()).await.expect("accepted");
    let mut echo = within("handshake", wharf_tokio::accept(stream, &config))
        .await
        .expect("open");
    let got = within("the other message", echo.recv()).await;
    echo.send(got.expect("open").expect("a message"))
        .await
        .expect("echoed");
    let answer = within("the other client's echo", other)
        .await
        .expect("the client");
    assert_eq!(answer, Message::text("still there?"));

    // Reading now: everything arrives, whole and in order.
    for i in 0..COMPRESSIBLE + INCOMPRESSIBLE {
        let got = within("the next message", ws.recv())
            .await
            .expect("still open")
            .expect("a message");
        check_message(i, &got);
    }
    drop(ws); // closes: the sender's last read ends
    within("the sender finishes", sending)
        .await
        .expect("the sender");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_whose_events_are_not_read_bounds_memory() {
    let _serial = SERIAL.lock().await;
    let listener = small_buffered_listener();
    let addr: SocketAddr = listener.local_addr().expect("bound");

    let baseline = counting::live_bytes();
    counting::reset_peak();
    let blocked = Arc::new(AtomicBool::new(false));
    let burst_sent = Arc::new(AtomicBool::new(false));
    let sending = tokio::spawn({
        let (blocked, burst_sent) = (blocked.clone(), burst_sent.clone());
        async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut conn =
                Connection::server(sender_config(), None, Instant::now()).expect("a config");
            open(&mut conn, &mut stream).await;
            send_stream(conn, stream, 0, blocked, burst_sent).await;
        }
    });
    let config = ClientConfig::new().with_config(deflate_config());
    let mut options =
        config.client_options(ClientRequest::new(&format!("ws://{addr}/")).expect("url"));
    options.reconnect = ReconnectConfig::fixed(Duration::from_secs(60));
    let (client, mut events) = ReconnectingClient::spawn(options).expect("spawned");
    match within("connected", events.recv()).await {
        Some(ClientEvent::Connected(_)) => {}
        other => panic!("expected Connected, got {other:?}"),
    }

    // Not reading the events while the burst arrives.
    eventually("the burst is out", || burst_sent.load(Ordering::SeqCst)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_held(baseline);

    for i in 0..COMPRESSIBLE {
        match within("the next event", events.recv()).await {
            Some(ClientEvent::Message(got)) => check_message(i, &got),
            other => panic!("message {i}: got {other:?}"),
        }
    }
    let unsent = within("shutdown", client.shutdown()).await;
    assert!(unsent.is_empty());
    within("the sender finishes", sending)
        .await
        .expect("the sender");
}
