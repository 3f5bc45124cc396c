//! The `core` section: what wharf's server `Connection` costs per echoed
//! message by itself, in memory — no socket, no kernel, no load client in
//! the figure — against a bare rustls server session echoing the same bytes
//! the same way (the TLS floor).
//!
//! One message in flight, as in the loopback tables: a client `Connection`
//! (untimed) sends one masked frame; the timed part is the server's turn,
//! fed as the adapters feed it: the frame read as from a socket
//! (`read_with` for large payloads, else 64 KiB at a time through
//! `handle_input`), the `Message` event sent back, the reply written with
//! `transmit_to` into a `Vec` (memcpy standing in for the kernel's copies).
//! The client then checks that the message came back whole. Allocations
//! are counted on the main thread during the timed part only; the cost of
//! reading the clock around it is measured once and subtracted. The floor
//! does what a rustls-based server must do at least: `read_tls` +
//! `process_new_packets`, read the plaintext, write the message back,
//! `write_tls`.
//!
//! The loopback tables mix the server's cost with the kernel's and the
//! load client's; this one shows the server's own work, and so where the
//! time of a wss echo goes inside the process.

use std::io::{Read, Write};
use std::ops::DerefMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConnection, ServerConnection};
use wharf_core::{bench_api, Config, Connection, Event, Message};

use crate::client;
use crate::tls::Tls;
use crate::{alloc, fmt_size, Settings, Stat, CASES};

/// The counting slot of the main thread while it plays the server.
const SLOT: usize = alloc::SLOTS - 1;

/// The adapters' read buffer.
const READ_CHUNK: usize = 64 * 1024;

pub(crate) fn section(settings: &Settings, tls: &Tls) {
    println!("## The core alone: server work per echoed message, in memory");
    let clock = clock_cost();
    println!("   one thread, no socket, one message in flight: the server `Connection`");
    println!("   reading the frame as from a socket (read_with / handle_input), send,");
    println!("   transmit_to a Vec (wharf), or a bare rustls ServerConnection echoing the");
    println!("   same frame (floor: read_tls, process_new_packets, read, write, write_tls);");
    println!("   allocs/msg counted in the timed part only; reading the clock around it");
    println!("   ({clock:.0} ns) is subtracted");
    println!(
        "  {:<22} {:>10} {:>14} {:>12} {:>9}",
        "case", "ns/msg", "spread", "allocs/msg", "÷floor"
    );
    for &case in &settings.cases {
        let (_, size) = CASES[case];
        for use_tls in [false, true] {
            let mut wharf = Echo::wharf(tls, use_tls, size);
            let mut floor = use_tls.then(|| Echo::floor(tls, size));
            let (mut w, mut f) = (Samples::default(), Samples::default());
            for _ in 0..settings.runs {
                w.push(wharf.run(settings.secs, clock));
                if let Some(floor) = &mut floor {
                    f.push(floor.run(settings.secs, clock));
                }
            }
            let floor_median = Stat::of(&f.ns).map(|s| s.median);
            let name = format!("{} {}", fmt_size(size), if use_tls { "wss" } else { "ws" });
            w.print(&format!("{name}: wharf"), floor_median);
            if use_tls {
                f.print(&format!("{name}: floor"), None);
            }
        }
    }
    println!();
}

#[derive(Default)]
struct Samples {
    ns: Vec<f64>,
    allocs: Vec<f64>,
}

impl Samples {
    fn push(&mut self, (ns, allocs): (f64, f64)) {
        self.ns.push(ns);
        self.allocs.push(allocs);
    }

    fn print(&self, name: &str, floor: Option<f64>) {
        let (Some(ns), Some(allocs)) = (Stat::of(&self.ns), Stat::of(&self.allocs)) else {
            return;
        };
        let ratio = floor.map_or(String::new(), |f| format!("{:.2}", ns.median / f));
        println!(
            "  {:<22} {:>10.0} {:>14} {:>12.2} {:>9}",
            name,
            ns.median,
            ns.spread(),
            allocs.median,
            ratio
        );
    }
}

/// One side of the comparison: a client and a server in memory.
enum Echo {
    Wharf {
        client: Box<Connection>,
        server: Box<Connection>,
        message: Message,
        wire: Vec<u8>,
        out: Vec<u8>,
    },
    Floor {
        client: Box<ClientConnection>,
        server: Box<ServerConnection>,
        /// The masked frame of the message, as the client sends it.
        frame: Vec<u8>,
        wire: Vec<u8>,
        out: Vec<u8>,
        /// The server's echo buffer: one frame.
        plain: Vec<u8>,
    },
}

impl Echo {
    fn wharf(tls: &Tls, use_tls: bool, size: usize) -> Echo {
        // One frame per message, as the loopback load client sends (wharf
        // would otherwise split large messages into 64 KiB fragments).
        let mut config = Config::default();
        config.max_outgoing_frame = 16 << 20;
        let config = Arc::new(config);
        let (client, server) = wharf_core::pair::open(
            config.clone(),
            config,
            use_tls.then_some(&tls.wharf_client),
            use_tls.then_some(&tls.wharf),
            Instant::now(),
        );
        Echo::Wharf {
            client: Box::new(client),
            server: Box::new(server),
            message: Message::binary(vec![0x5a; size]),
            wire: Vec::new(),
            out: Vec::new(),
        }
    }

    fn floor(tls: &Tls, size: usize) -> Echo {
        let mut client = ClientConnection::new(tls.client_config.clone(), tls.name.clone())
            .expect("a client session");
        let mut server = ServerConnection::new(tls.server.clone()).expect("a server session");
        // As wharf's session: no limit on buffered output (a 1 MiB frame is
        // written whole before `write_tls`).
        client.set_buffer_limit(None);
        server.set_buffer_limit(None);
        let mut wire = Vec::new();
        while client.is_handshaking() || server.is_handshaking() {
            while client.wants_write() {
                client.write_tls(&mut wire).expect("to memory");
            }
            feed(&mut server, &wire, |_| {});
            wire.clear();
            while server.wants_write() {
                server.write_tls(&mut wire).expect("to memory");
            }
            feed(&mut client, &wire, |_| {});
            wire.clear();
        }
        // The frame the loopback load client sends.
        let (frame, _) = client::masked_frame(size);
        let plain = vec![0; frame.len()];
        Echo::Floor {
            client: Box::new(client),
            server: Box::new(server),
            frame,
            wire,
            out: Vec::new(),
            plain,
        }
    }

    /// Echoes for `secs`; returns (server ns per message, less `clock`,
    /// and server allocations per message).
    fn run(&mut self, secs: f64, clock: f64) -> (f64, f64) {
        let window = Duration::from_secs_f64(secs);
        let start = Instant::now();
        let mut busy = Duration::ZERO;
        let mut msgs = 0u64;
        let allocs_before = alloc::allocs(SLOT);
        while start.elapsed() < window {
            busy += self.once();
            msgs += 1;
        }
        let allocs = alloc::allocs(SLOT) - allocs_before;
        (
            busy.as_nanos() as f64 / msgs as f64 - clock,
            allocs as f64 / msgs as f64,
        )
    }

    /// One message there and back; returns the server's time.
    fn once(&mut self) -> Duration {
        match self {
            Echo::Wharf {
                client,
                server,
                message,
                wire,
                out,
            } => {
                let now = Instant::now();
                client.send(message.clone()).expect("room in the queue");
                while client.poll_transmit(wire) > 0 {}
                let took = timed(|| serve_wharf(server, now, wire, out));
                wire.clear();
                client.handle_input(now, out);
                out.clear();
                let mut back = 0;
                while let Some(event) = client.poll_event() {
                    if let Event::Message(m) = event {
                        assert_eq!(m.len(), message.len(), "the message came back whole");
                        back += 1;
                    }
                }
                assert_eq!(back, 1, "the message came back");
                took
            }
            Echo::Floor {
                client,
                server,
                frame,
                wire,
                out,
                plain,
            } => {
                client.writer().write_all(frame).expect("to memory");
                while client.wants_write() {
                    client.write_tls(wire).expect("to memory");
                }
                let took = timed(|| serve_floor(server, wire, out, plain));
                wire.clear();
                let mut back = 0;
                feed(&mut **client, out, |n| back += n);
                out.clear();
                assert_eq!(back, frame.len(), "every byte came back");
                took
            }
        }
    }
}

/// Runs the server's part, timed, with this thread's allocations counted.
fn timed(serve: impl FnOnce()) -> Duration {
    alloc::claim(SLOT);
    let t0 = Instant::now();
    serve();
    let took = t0.elapsed();
    alloc::unclaim();
    took
}

/// The timed part for wharf: the frame in `wire` read as from a socket,
/// the message sent back, the reply written to `out`. Not inlined, so
/// that a profile can collect exactly this
/// (`valgrind --tool=callgrind --toggle-collect='*serve_wharf*'`).
#[inline(never)]
fn serve_wharf(server: &mut Connection, now: Instant, wire: &[u8], out: &mut Vec<u8>) {
    read_like_a_socket(server, now, wire);
    while let Some(event) = server.poll_event() {
        if let Event::Message(m) = event {
            server.send(m).expect("room in the queue");
            while server.wants_write() {
                server
                    .transmit_to(&mut bench_api::Writer(out))
                    .expect("to memory");
            }
        }
    }
}

/// The timed part for the floor: the same for a bare rustls session (one
/// `write` of the whole frame, as wharf writes it).
#[inline(never)]
fn serve_floor(server: &mut ServerConnection, wire: &[u8], out: &mut Vec<u8>, frame: &mut [u8]) {
    let mut input = wire;
    let mut have = 0;
    loop {
        while let Ok(n @ 1..) = server.reader().read(&mut frame[have..]) {
            have += n;
            if have == frame.len() {
                server.writer().write_all(frame).expect("to memory");
                have = 0;
            }
        }
        if input.is_empty() {
            break;
        }
        let mut from = bench_api::Reader(input);
        server.read_tls(&mut from).expect("from memory");
        input = from.0;
        server.process_new_packets().expect("valid records");
    }
    while server.wants_write() {
        server
            .write_tls(&mut bench_api::Writer(out))
            .expect("to memory");
    }
}

/// Feeds `input` to `conn` as the adapters feed what a socket reads: a
/// large frame's payload straight into the connection's buffer
/// (`read_with`), anything else through a 64 KiB read buffer. The copy
/// out of `input` stands for the kernel's copy out of the socket.
fn read_like_a_socket(conn: &mut Connection, now: Instant, mut input: &[u8]) {
    while !input.is_empty() {
        let direct = conn.read_with(now, |room| {
            let n = (room.capacity() - room.len()).min(input.len());
            for piece in input[..n].chunks(PIECE) {
                room.extend_from_slice(piece);
            }
            n
        });
        let n = match direct {
            Some(n) => n,
            None => {
                let n = input.len().min(READ_CHUNK);
                conn.handle_input(now, &input[..n]);
                n
            }
        };
        input = &input[n..];
    }
}

/// The harness's own copies (standing for the kernel's) go in pieces of
/// this size, as the core's do (`bench_api::Reader` / `Writer`): one
/// `memcpy` of a larger block meets glibc's `rep movsb`, which on some AMD
/// processors is many times slower at some offsets between source and
/// destination (see `core/src/copy.rs`), and would make the figures depend
/// on where the allocator put the buffers.
const PIECE: usize = 2048;

/// What reading the clock twice costs (the timed part does), in ns.
fn clock_cost() -> f64 {
    const N: u32 = 100_000;
    let start = Instant::now();
    let mut sum = Duration::ZERO;
    for _ in 0..N {
        let t0 = Instant::now();
        sum += t0.elapsed();
    }
    std::hint::black_box(sum);
    start.elapsed().as_nanos() as f64 / f64::from(N)
}

/// Hands `input` to a rustls session (client or server), reporting the
/// length of each piece of plaintext it decrypts.
fn feed<C, D>(conn: &mut C, mut input: &[u8], mut plaintext: impl FnMut(usize))
where
    C: DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Ok(n @ 1..) = conn.reader().read(&mut buf) {
            plaintext(n);
        }
        if input.is_empty() {
            break;
        }
        conn.read_tls(&mut input).expect("from memory");
        conn.process_new_packets().expect("valid records");
    }
}
