//! A mio echo server in its steady state allocates nothing per message: its
//! buffers are kept while traffic flows (and given back once it stops), reads
//! go through one buffer per thread, and messages are handed out of the input
//! buffer without a copy.
//!
//! With permessage-deflate too, where `send_uncompressed` leaves RSV1 clear.
//!
//! The server runs on its own thread, counting the allocations that thread
//! makes; the load is a blocking client on this thread sending pre-masked
//! frames, one message in flight.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use wharf_core::{Accept, Config, DeflateConfig, Event};
use wharf_mio::{ServerOptions, WsServer};

struct Counting;

thread_local! {
    /// Allocations (and reallocations) made by this thread.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

fn track(allocated: usize, freed: usize) {
    LIVE.with(|l| l.set(l.get() + allocated as isize - freed as isize));
}

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

// A global allocator that forwards to the system allocator and counts calls
// per thread.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        track(layout.size(), 0);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        track(0, layout.size());
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        track(new_size, layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What a server thread measured: its allocation count and live heap bytes
/// after each echoed message, and its live heap bytes, with the number of
/// connections closed so far, whenever connections were closed and dropped.
struct Served {
    echoes: Vec<(u64, isize)>,
    closes: Vec<(usize, isize)>,
}

/// Runs an echo server until `connections` connections have closed
/// (messages starting with `raw:` are echoed with `send_uncompressed`).
fn serve(
    ready: mpsc::Sender<SocketAddr>,
    messages: usize,
    deflate: bool,
    connections: usize,
) -> Served {
    let mut options = ServerOptions::default();
    let mut config = Config::default();
    if deflate {
        config.deflate = Some(DeflateConfig::default());
    }
    config.max_message_size = 4 << 20;
    config.max_frame_size = 4 << 20;
    options.config = config.into();
    let mut poll = Poll::new().unwrap();
    let mut server = WsServer::bind("127.0.0.1:0".parse().unwrap(), options).unwrap();
    server.register(poll.registry()).unwrap();
    ready.send(server.local_addr()).unwrap();
    let mut counts = Vec::with_capacity(messages + 1);
    let mut closes = Vec::with_capacity(connections);
    let mut events = Events::with_capacity(64);
    let mut closed = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        let now = Instant::now();
        let wait = server
            .poll_timeout()
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(now)
            })
            .min(Duration::from_millis(50));
        poll.poll(&mut events, Some(wait)).unwrap();
        let now = Instant::now();
        for event in events.iter() {
            server.handle_event(poll.registry(), event, now);
        }
        server.handle_timeout(poll.registry(), now);
        while let Some((id, event)) = server.poll_event(poll.registry()) {
            match event {
                Event::Request(_) => server
                    .accept(poll.registry(), now, id, Accept::default())
                    .unwrap(),
                Event::Message(m) if m.payload().starts_with(b"raw:") => {
                    server
                        .act(poll.registry(), now, id, |c| c.send_uncompressed(m))
                        .expect("live")
                        .unwrap();
                    counts.push((allocs(), live()));
                }
                Event::Message(m) => {
                    server.send(poll.registry(), now, id, m).unwrap();
                    counts.push((allocs(), live()));
                }
                Event::Closed(_) => closed += 1,
                _ => {}
            }
        }
        // `poll_event` drops a closed connection once its events are taken.
        if closes.last().map_or(0, |&(n, _)| n) < closed {
            closes.push((closed, live()));
        }
        if closed == connections {
            return Served {
                echoes: counts,
                closes,
            };
        }
    }
    panic!("the echo did not finish in time");
}

/// A masked binary frame carrying `len` bytes.
fn masked_frame(len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    masked(0x82, &payload)
}

/// A masked frame with first byte `first` and `payload`.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut frame = vec![first];
    match len {
        0..=125 => frame.push(0x80 | len as u8),
        126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Connects and upgrades, with `extra` header lines in the request; returns
/// the socket and checks the response is a 101.
fn open(addr: SocketAddr, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    if !extra.is_empty() {
        assert!(head.contains("permessage-deflate"), "{head}");
    }
    s
}

/// Echoes `messages` messages of `len` bytes, then (if `quiet` is given)
/// waits that long and echoes one more of 20 B; returns the server's
/// allocation count and live heap bytes after each.
fn echo(len: usize, messages: usize, quiet: Option<Duration>) -> Vec<(u64, isize)> {
    let (tx, rx) = mpsc::channel();
    let total = messages + usize::from(quiet.is_some());
    let server = std::thread::spawn(move || serve(tx, total, false, 1).echoes);
    let mut s = open(rx.recv().unwrap(), "");

    let frame = masked_frame(len);
    for _ in 0..messages {
        s.write_all(&frame).unwrap();
        let (first, echoed) = read_frames(&mut s);
        assert_eq!(first & 0x7F, 0x02, "binary, no RSV bits");
        assert_eq!(echoed.len(), len);
        assert!(echoed.iter().enumerate().all(|(i, &b)| b == i as u8));
    }
    if let Some(quiet) = quiet {
        std::thread::sleep(quiet);
        s.write_all(&masked_frame(20)).unwrap();
        assert_eq!(read_frames(&mut s).1.len(), 20);
    }
    // Close 1000, masked with a zero key.
    s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]).unwrap();
    let counts = server.join().unwrap();
    assert_eq!(counts.len(), total);
    counts
}

fn assert_steady(len: usize) {
    let messages = 40;
    let counts = echo(len, messages, None);
    // The first messages grow the buffers; after that, nothing.
    let warm = 8;
    let steady = counts[messages - 1].0 - counts[warm - 1].0;
    println!(
        "{len} B: {} allocations for the first {warm} messages, {steady} for the next {}",
        counts[warm - 1].0,
        messages - warm
    );
    assert_eq!(
        steady,
        0,
        "the server allocated {steady} times echoing {} messages of {len} B",
        messages - warm
    );
}

#[test]
fn small_messages_allocate_nothing() {
    assert_steady(20);
}

#[test]
fn messages_of_16_kib_allocate_nothing() {
    // Read into the connection's buffer between frames, too.
    assert_steady(16 * 1024);
}

#[test]
fn messages_of_64_kib_allocate_nothing() {
    assert_steady(64 * 1024);
}

#[test]
fn messages_of_1_mib_allocate_nothing() {
    assert_steady(1024 * 1024);
}

#[test]
fn timers_pushed_later_on_every_message_allocate_nothing() {
    // 32 busy connections, echoing in turn: each holds a buffer over
    // 64 KiB, so each has a timer to give it back, pushed a second later by
    // every message. The server's deadline set is not re-sorted for that
    // (each message would move its connection from the front of the set to
    // the back, and the set's tree allocates as it splits and merges).
    let (conns, len, rounds, warm) = (32, 70_000, 8, 3);
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || serve(tx, conns * rounds, false, conns).echoes);
    let addr = rx.recv().unwrap();
    let frame = masked_frame(len);
    let mut sockets: Vec<TcpStream> = (0..conns).map(|_| open(addr, "")).collect();
    let start = Instant::now();
    for _ in 0..rounds {
        for s in &mut sockets {
            s.write_all(&frame).unwrap();
            assert_eq!(read_frames(s).1.len(), len);
        }
    }
    let took = start.elapsed();
    println!("{} echoes in {took:?}", conns * rounds);
    for s in &mut sockets {
        s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]).unwrap();
    }
    let counts = server.join().unwrap();
    let steady = counts[conns * rounds - 1].0 - counts[conns * warm - 1].0;
    // (Taking over a second would let the first timers fire, which
    // registers them again: the run takes a few hundred milliseconds.)
    assert_eq!(
        steady,
        0,
        "the server allocated {steady} times echoing {} messages (all {} in {took:?})",
        conns * (rounds - warm),
        conns * rounds
    );
}

#[test]
fn large_buffers_are_given_back_once_the_connection_is_quiet() {
    let len = 1024 * 1024;
    let counts = echo(len, 10, Some(Duration::from_millis(1500)));
    let busy = counts[9].1;
    let quiet = counts[10].1;
    println!("live heap on the server thread: {busy} B busy, {quiet} B after a quiet second");
    // The input buffer and the output buffer each held a whole message.
    assert!(
        busy - quiet > len as isize,
        "only {} B given back after the connection went quiet",
        busy - quiet
    );
}

#[test]
fn closed_connections_leave_next_to_nothing_behind() {
    // One connection warms the thread's read buffer; then `busy` are open at
    // once and all close. What the server thread holds afterwards beyond
    // what it held after the first is what the busiest moment left behind.
    let busy = 256;
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || serve(tx, 1, false, 1 + busy));
    let addr = rx.recv().unwrap();
    let mut first = open(addr, "");
    first.write_all(&masked_frame(20)).unwrap();
    assert_eq!(read_frames(&mut first).1.len(), 20);
    first
        .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8])
        .unwrap();
    // The server's Close, then the end of the stream: its connection is
    // gone before the others open.
    let mut rest = Vec::new();
    first.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, [0x88, 0x02, 0x03, 0xE8], "the server's Close 1000");
    let mut sockets: Vec<TcpStream> = (0..busy).map(|_| open(addr, "")).collect();
    for s in &mut sockets[..busy / 2] {
        s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]).unwrap();
    }
    // The other half just go away.
    drop(sockets);
    let closes = server.join().unwrap().closes;
    let (n, warm) = closes[0];
    assert_eq!(n, 1, "the first connection closed alone: {closes:?}");
    let (n, after) = *closes.last().unwrap();
    assert_eq!(n, 1 + busy);
    let left = (after - warm) / busy as isize;
    println!("live heap on the server thread: {warm} B after one connection, {after} B after {busy} more closed ({left} B each)");
    // Each closed connection may leave its place in the server's lists
    // (three words), and mio's poll(2) selector (the backend `.ci/run` also
    // tests on) keeps about 90 bytes per descriptor it once watched; a whole
    // connection's state is over a kilobyte.
    assert!(
        left <= 256,
        "{left} B per closed connection left on the server thread"
    );
}

/// Reads frames up to the end of one message (the server may fragment it);
/// returns the first frame's first byte and the payload.
fn read_frames(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut first = None;
    let mut payload = Vec::new();
    loop {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let opcode = head[0] & 0x0F;
        assert_eq!(
            opcode == 0,
            first.is_some(),
            "a data frame, then continuations"
        );
        let len = match head[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).unwrap();
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let at = payload.len();
        payload.resize(at + len, 0);
        s.read_exact(&mut payload[at..]).unwrap();
        let first = *first.get_or_insert(head[0]);
        if head[0] & 0x80 != 0 {
            return (first, payload);
        }
    }
}

#[test]
fn compressed_messages_allocate_nothing() {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    // A text-like message of about 4 KiB, compressed once: the client asks
    // for no context takeover, so the same frame is valid every time.
    let text: String = (0..60)
        .map(|i| format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"a\",\"b\"]}},"))
        .collect();
    let mut c = Compress::new(Compression::default(), false);
    let mut compressed = Vec::with_capacity(text.len() + 64);
    c.compress_vec(text.as_bytes(), &mut compressed, FlushCompress::Sync)
        .unwrap();
    assert!(compressed.ends_with(&[0, 0, 0xff, 0xff]));
    compressed.truncate(compressed.len() - 4);
    let frame = masked(0xC1, &compressed);

    let messages = 40;
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || serve(tx, messages, true, 1).echoes);
    let mut s = open(
        rx.recv().unwrap(),
        "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n",
    );
    // The server keeps its context: inflate its replies in order.
    let mut inflater = Decompress::new(false);
    for _ in 0..messages {
        s.write_all(&frame).unwrap();
        let (first, mut payload) = read_frames(&mut s);
        assert_eq!(first & 0xF0, 0xC0, "FIN and RSV1 on a compressed reply");
        payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut inflated = Vec::with_capacity(text.len() + 64);
        inflater
            .decompress_vec(&payload, &mut inflated, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(inflated, text.as_bytes());
    }
    s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]).unwrap();
    let counts = server.join().unwrap();
    let warm = 8;
    let steady = counts[messages - 1].0 - counts[warm - 1].0;
    println!(
        "compressed {} B: {} allocations for the first {warm} messages, {steady} for the next {}",
        text.len(),
        counts[warm - 1].0,
        messages - warm
    );
    assert_eq!(steady, 0, "the server allocated {steady} times");
}

#[test]
fn send_uncompressed_goes_out_without_rsv1() {
    let (tx, rx) = mpsc::channel();
    let server = std::thread::spawn(move || serve(tx, 2, true, 1).echoes);
    let mut s = open(
        rx.recv().unwrap(),
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    let text = "raw: ".to_owned() + &"compressible ".repeat(40);
    for (payload, rsv1) in [(&text[..], false), (&text[5..], true)] {
        s.write_all(&masked(0x81, payload.as_bytes())).unwrap();
        let (first, wire) = read_frames(&mut s);
        assert_eq!(first & 0x40 != 0, rsv1, "RSV1 on the echo of {payload:?}");
        if !rsv1 {
            assert_eq!(wire, payload.as_bytes());
        } else {
            assert!(
                wire.len() < payload.len() / 2,
                "compressed: {} B",
                wire.len()
            );
        }
    }
    s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]).unwrap();
    assert_eq!(server.join().unwrap().len(), 2);
}
