//! The `Pair` harness: a client and a server `Connection` wired in memory,
//! over plaintext or real rustls, with a simulated clock, chunked delivery
//! and a filter to tamper with bytes in flight.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_core::{
    Accept, ClientRequest, ClientTls, CloseInfo, Config, Connection, Event, OsSeededRng, Random,
    ServerTls,
};

/// A deterministic generator for masks and keys.
pub fn rng(seed: u8) -> Box<dyn Random> {
    Box::new(OsSeededRng::from_seed([seed; 32]))
}

/// Rewrites the bytes of one direction before delivery.
pub type Filter = Box<dyn FnMut(&mut Vec<u8>)>;

/// Client and server connections joined back to back.
pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    /// The simulated clock.
    pub now: Instant,
    /// Largest piece delivered in one `handle_input` call (1 = byte by byte).
    pub chunk: usize,
    /// Everything the client reported, in order.
    pub client_events: Vec<Event>,
    /// Everything the server reported, in order.
    pub server_events: Vec<Event>,
    /// The server's answer to `Event::Request` (`None`: leave it pending).
    pub accept: Option<Accept>,
    /// Tamper with client → server bytes.
    pub c2s_filter: Option<Filter>,
    /// Tamper with server → client bytes.
    pub s2c_filter: Option<Filter>,
    /// Stop carrying bytes in one direction (a peer that went silent).
    pub c2s_cut: bool,
    pub s2c_cut: bool,
    /// All bytes carried each way so far (after filtering).
    pub c2s_bytes: usize,
    pub s2c_bytes: usize,
    /// Deliver through `read_with` whenever a connection lends its buffer
    /// (as the tokio adapter reads large frames), else `handle_input`.
    pub direct_read: bool,
    /// Reads that went through `read_with`.
    pub direct_reads: usize,
}

impl Pair {
    /// A plaintext pair for `ws://localhost/`.
    pub fn plain(config: Config) -> Pair {
        Self::with(config, "ws://localhost/", None, None)
    }

    /// A TLS pair for `url` (a `wss://` URL).
    pub fn tls(config: Config, url: &str, client_tls: &ClientTls, server_tls: &ServerTls) -> Pair {
        Self::with(config, url, Some(client_tls), Some(server_tls))
    }

    /// A pair from an explicit request.
    pub fn with(
        config: Config,
        url: &str,
        client_tls: Option<&ClientTls>,
        server_tls: Option<&ServerTls>,
    ) -> Pair {
        let request = ClientRequest::new(url).expect("test URL is valid");
        Self::with_request(config, &request, client_tls, server_tls)
    }

    /// A pair from a built request (subprotocols, headers).
    pub fn with_request(
        config: Config,
        request: &ClientRequest,
        client_tls: Option<&ClientTls>,
        server_tls: Option<&ServerTls>,
    ) -> Pair {
        let config = Arc::new(config);
        let now = Instant::now();
        let client = Connection::client_with_rng(config.clone(), request, client_tls, now, rng(1))
            .expect("client connection");
        let server = Connection::server_with_rng(config, server_tls, now, rng(2)).expect("server");
        Pair {
            client,
            server,
            now,
            chunk: usize::MAX,
            client_events: Vec::new(),
            server_events: Vec::new(),
            accept: Some(Accept::default()),
            c2s_filter: None,
            s2c_filter: None,
            c2s_cut: false,
            s2c_cut: false,
            c2s_bytes: 0,
            s2c_bytes: 0,
            direct_read: false,
            direct_reads: 0,
        }
    }

    /// Carries bytes both ways and collects events until nothing moves.
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            let a = self.pump_client();
            let b = self.pump_server();
            self.collect();
            if !a && !b {
                return;
            }
        }
        panic!("pair did not settle in 100,000 rounds");
    }

    /// Opens the pair and asserts both sides reported `Open`.
    pub fn open(&mut self) -> &mut Self {
        self.drive();
        assert!(
            self.client.is_open(),
            "client not open: {:?}",
            self.client_events
        );
        assert!(
            self.server.is_open(),
            "server not open: {:?}",
            self.server_events
        );
        self
    }

    fn pump_client(&mut self) -> bool {
        let mut wire = Vec::new();
        while self.client.poll_transmit(&mut wire) > 0 {}
        if wire.is_empty() || self.c2s_cut {
            return false;
        }
        if let Some(f) = self.c2s_filter.as_mut() {
            f(&mut wire);
        }
        self.c2s_bytes += wire.len();
        self.carry(true, &wire);
        true
    }

    fn pump_server(&mut self) -> bool {
        let mut wire = Vec::new();
        while self.server.poll_transmit(&mut wire) > 0 {}
        if wire.is_empty() || self.s2c_cut {
            return false;
        }
        if let Some(f) = self.s2c_filter.as_mut() {
            f(&mut wire);
        }
        self.s2c_bytes += wire.len();
        self.carry(false, &wire);
        true
    }

    /// Delivers `wire` to the server (collecting its events after every
    /// read, so that it answers the handshake at once) or to the client,
    /// in reads of at most `chunk` bytes.
    fn carry(&mut self, to_server: bool, wire: &[u8]) {
        let mut rest = wire;
        while !rest.is_empty() {
            let conn = if to_server {
                &mut self.server
            } else {
                &mut self.client
            };
            let (n, direct) = deliver(conn, self.now, rest, self.chunk, self.direct_read);
            self.direct_reads += usize::from(direct);
            rest = &rest[n..];
            if to_server {
                self.collect_server();
            }
        }
    }

    fn collect_server(&mut self) {
        while let Some(e) = self.server.poll_event() {
            if let Event::Request(_) = &e {
                if let Some(accept) = self.accept.clone() {
                    self.server.accept(accept).expect("accept");
                }
            }
            self.server_events.push(e);
        }
    }

    fn collect(&mut self) {
        self.collect_server();
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
    }

    /// Jumps the clock to the earliest deadline of either side (if it is
    /// within `limit`), fires it and drives. Returns false when no deadline.
    pub fn advance(&mut self, limit: Duration) -> bool {
        let next = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= self.now + limit => {
                if t > self.now {
                    self.now = t;
                }
                let now = self.now;
                self.client.handle_timeout(now);
                self.server.handle_timeout(now);
                self.drive();
                true
            }
            _ => false,
        }
    }

    /// Advances the clock by `d` in one step, firing what is due.
    pub fn sleep(&mut self, d: Duration) {
        self.now += d;
        let now = self.now;
        self.client.handle_timeout(now);
        self.server.handle_timeout(now);
        self.drive();
    }

    /// The messages the client received.
    pub fn client_messages(&self) -> Vec<wharf_core::Message> {
        messages(&self.client_events)
    }

    /// The messages the server received.
    pub fn server_messages(&self) -> Vec<wharf_core::Message> {
        messages(&self.server_events)
    }

    /// The client's `Closed` event, if reported.
    pub fn client_closed(&self) -> Option<&CloseInfo> {
        closed(&self.client_events)
    }

    /// The server's `Closed` event, if reported.
    pub fn server_closed(&self) -> Option<&CloseInfo> {
        closed(&self.server_events)
    }
}

/// One read of at most `chunk` bytes of `data` into `conn`: through
/// `read_with` when `direct` and the connection lends its buffer (checking
/// what it lends), else `handle_input`. Returns (bytes taken, direct).
fn deliver(
    conn: &mut Connection,
    now: Instant,
    data: &[u8],
    chunk: usize,
    direct: bool,
) -> (usize, bool) {
    let n = chunk.max(1).min(data.len());
    if direct {
        let lent = conn.read_with(now, |room| {
            assert!(room.is_empty(), "read_with lends an empty buffer");
            assert!(room.capacity() >= 16 * 1024, "room: {}", room.capacity());
            let n = n.min(room.capacity());
            room.extend_from_slice(&data[..n]);
            n
        });
        if let Some(n) = lent {
            return (n, true);
        }
    }
    conn.handle_input(now, &data[..n]);
    (n, false)
}

pub fn messages(events: &[Event]) -> Vec<wharf_core::Message> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// The one `Closed` event; panics if reported twice.
pub fn closed(events: &[Event]) -> Option<&CloseInfo> {
    let all: Vec<&CloseInfo> = events
        .iter()
        .filter_map(|e| match e {
            Event::Closed(c) => Some(c),
            _ => None,
        })
        .collect();
    assert!(all.len() <= 1, "Closed reported {} times", all.len());
    if let Some(Event::Closed(_)) = events.last() {
    } else {
        assert!(all.is_empty(), "Closed is not the last event: {events:?}");
    }
    all.first().copied()
}

/// Builds a raw frame as a client would send it (masked with `key`).
pub fn client_frame(first_byte: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first_byte];
    push_len(&mut out, payload.len(), 0x80);
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Builds a raw frame as a server would send it (unmasked).
pub fn server_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    push_len(&mut out, payload.len(), 0);
    out.extend_from_slice(payload);
    out
}

fn push_len(out: &mut Vec<u8>, len: usize, mask_bit: u8) {
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Decodes the frames in `bytes` as (first byte, unmasked payload).
pub fn parse_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let b0 = bytes[0];
        let masked = bytes[1] & 0x80 != 0;
        let mut len = (bytes[1] & 0x7F) as usize;
        let mut pos = 2;
        if len == 126 {
            len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
            pos = 4;
        } else if len == 127 {
            len = u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize;
            pos = 10;
        }
        let key = if masked {
            let k: [u8; 4] = bytes[pos..pos + 4].try_into().unwrap();
            pos += 4;
            Some(k)
        } else {
            None
        };
        let mut payload = bytes[pos..pos + len].to_vec();
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        frames.push((b0, payload));
        bytes = &bytes[pos + len..];
    }
    assert!(bytes.is_empty(), "trailing partial frame");
    frames
}

/// Feeds `bytes` to the (open) server of `p` as if its client sent them;
/// returns the server's Closed event and the frames it wrote back, and
/// checks that the failed connection is finished once drained.
pub fn server_fails_on(mut p: Pair, bytes: &[u8]) -> (CloseInfo, Vec<(u8, Vec<u8>)>) {
    let now = p.now;
    p.server.handle_input(now, bytes);
    let mut out = Vec::new();
    while p.server.poll_transmit(&mut out) > 0 {}
    let mut events = Vec::new();
    while let Some(e) = p.server.poll_event() {
        events.push(e);
    }
    let info = closed(&events)
        .unwrap_or_else(|| panic!("server did not close: {events:?}"))
        .clone();
    assert!(p.server.is_closed());
    assert!(
        p.server.is_finished(),
        "a failed connection is finished once drained"
    );
    (info, parse_frames(&out))
}
