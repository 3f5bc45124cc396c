//! Soak: thousands of reconnect cycles against a server that accepts and
//! drops, stalls, completes the handshake then drops, or refuses — with the
//! process's open file descriptors and live heap bytes flat from the first
//! hundred cycles to the last.
//!
//! `WHARF_SOAK_CYCLES` sets the number of cycles (default 2,000).

mod counting;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use wharf_core::{Accept, ClientRequest, Config, Connection, Event, Message, ReconnectConfig};
use wharf_mio::{ClientEvent, ClientOptions, ReconnectingClient};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What the server does with the next connection.
fn mode(n: usize) -> &'static str {
    match n % 4 {
        0 => "drop",
        1 => "stall",
        2 => "handshake-then-drop",
        _ => "refuse",
    }
}

/// A blocking server thread that cycles through the modes; `refuse` closes
/// the listener for a moment so connects are refused.
fn server(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut listener = Some(TcpListener::bind(addr).expect("bind"));
        let mut stalled: Option<TcpStream> = None;
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let Some(l) = listener.as_ref() else {
                std::thread::sleep(Duration::from_millis(3));
                listener = TcpListener::bind(addr).ok();
                continue;
            };
            l.set_nonblocking(true).expect("nonblocking");
            let socket = match l.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_micros(200));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            n += 1;
            // A new connection means the client gave up on the stalled one.
            stalled = None;
            match mode(n) {
                "drop" => drop(socket),
                "stall" => stalled = Some(socket),
                "handshake-then-drop" => handshake_then_drop(socket),
                _ => {
                    drop(socket);
                    listener = None;
                }
            }
        }
        drop(stalled);
    })
}

fn handshake_then_drop(mut socket: TcpStream) {
    socket.set_nonblocking(false).expect("blocking");
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let now = Instant::now();
    let mut conn = Connection::server(Arc::new(Config::default()), None, now).expect("server");
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    for _ in 0..100 {
        let n = match socket.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        conn.handle_input(now, &buf[..n]);
        while let Some(e) = conn.poll_event() {
            if let Event::Request(_) = e {
                conn.accept(Accept::default()).expect("accept");
            }
        }
        while conn.poll_transmit(&mut out) > 0 {}
        if socket.write_all(&out).is_err() {
            return;
        }
        out.clear();
        if conn.is_open() {
            return; // drop right after the 101
        }
    }
}

#[test]
fn reconnect_cycles_keep_descriptors_and_heap_flat() {
    let cycles: usize = std::env::var("WHARF_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let addr = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let stop = Arc::new(AtomicBool::new(false));
    let server = server(addr, stop.clone());

    let mut config = Config::default();
    config.handshake_timeout = Duration::from_millis(20);
    let mut options = ClientOptions::new(ClientRequest::new(&format!("ws://{addr}/")).unwrap());
    options.config = Arc::new(config);
    options.reconnect = ReconnectConfig::fixed(Duration::from_millis(1));
    options.registration = Some(Box::new(|_open| vec![Message::text("register")]));
    let mut poll = Poll::new().unwrap();
    let mut client = ReconnectingClient::new(options, Token(7), Instant::now()).unwrap();
    client.start(poll.registry(), Instant::now());
    let mut events = Events::with_capacity(64);

    let started = Instant::now();
    let give_up = started + Duration::from_secs(600);
    let mut disconnects = 0usize;
    let mut connects = 0usize;
    let mut baseline = None;
    // Sockets in flight (the client's, the server's stalled one, the
    // listener while it is closed for "refuse") come and go between
    // cycles: compare the fewest descriptors seen early with the fewest
    // seen late, which a leak would raise.
    let mut fds_early = usize::MAX;
    let mut fds_late = usize::MAX;
    let mut reasons = std::collections::BTreeMap::<String, usize>::new();
    while disconnects < cycles {
        assert!(Instant::now() < give_up, "soak did not finish");
        let now = Instant::now();
        let wait = client
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(10))
            .min(Duration::from_millis(10));
        poll.poll(&mut events, Some(wait)).unwrap();
        let now = Instant::now();
        for e in events.iter() {
            client.handle_event(poll.registry(), e, now);
        }
        client.handle_timeout(poll.registry(), now);
        while let Some(e) = client.poll_event(poll.registry()) {
            match e {
                ClientEvent::Connected { .. } => connects += 1,
                ClientEvent::Disconnected(d) => {
                    let reason = d.reason;
                    assert!(d.retry_at.is_some(), "retries forever");
                    disconnects += 1;
                    let key = format!("{reason}");
                    *reasons.entry(key).or_default() += 1;
                    let fds = open_fds();
                    if (100..200).contains(&disconnects) {
                        fds_early = fds_early.min(fds);
                    }
                    if disconnects + 100 >= cycles {
                        fds_late = fds_late.min(fds);
                    }
                    if disconnects == 100 {
                        baseline = Some((fds, counting::live_bytes()));
                    }
                }
                _ => {}
            }
        }
    }
    let end = (open_fds(), counting::live_bytes());
    let (fd0, heap0) = baseline.expect("100 cycles");
    eprintln!(
        "soak: {disconnects} cycles ({connects} reached Open) in {:?}; fds at cycle 100 {fd0}, at the end {}, fewest in cycles 100-199 {fds_early}, fewest in the last 100 {fds_late}; live heap {heap0} -> {} bytes; reasons {reasons:?}",
        started.elapsed(),
        end.0,
        end.1
    );
    stop.store(true, Ordering::Relaxed);
    server.join().expect("server thread");
    // Each cycle's socket is gone: no descriptor accumulates.
    assert!(
        fds_late <= fds_early,
        "file descriptors grew: fewest {fds_early} early, {fds_late} late"
    );
    // Heap: no per-cycle growth (16 KiB slack for allocator-internal noise).
    assert!(
        end.1 - heap0 < 16 * 1024,
        "live heap grew: {heap0} -> {} bytes",
        end.1
    );
    assert!(connects > cycles / 8, "the handshake mode was exercised");
    assert!(
        reasons.len() >= 3,
        "several failure kinds were exercised: {reasons:?}"
    );
}
