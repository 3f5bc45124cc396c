//! The `Pair` harness, for this workspace's tests, benchmarks and fuzz
//! targets (feature `_internal`, not part of the API): a client and a
//! server [`Connection`] wired in memory, over plaintext or real rustls,
//! with a simulated clock, chunked delivery, a filter to tamper with bytes
//! in flight, and deterministic randomness.
//!
//! # Panics
//!
//! The helpers panic when a pair cannot be built or does not settle: test
//! support, where that is the failure to report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{
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
        Self::with_configs(
            config.clone(),
            config,
            request,
            client_tls,
            server_tls,
            Instant::now(),
        )
    }

    /// A pair whose sides have settings of their own, at `now`.
    pub fn with_configs(
        client_config: Arc<Config>,
        server_config: Arc<Config>,
        request: &ClientRequest,
        client_tls: Option<&ClientTls>,
        server_tls: Option<&ServerTls>,
        now: Instant,
    ) -> Pair {
        let client = Connection::client_with_rng(client_config, request, client_tls, now, rng(1))
            .expect("client connection");
        let server =
            Connection::server_with_rng(server_config, server_tls, now, rng(2)).expect("server");
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
    pub fn client_messages(&self) -> Vec<crate::Message> {
        messages(&self.client_events)
    }

    /// The messages the server received.
    pub fn server_messages(&self) -> Vec<crate::Message> {
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

pub fn messages(events: &[Event]) -> Vec<crate::Message> {
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

/// A client and a server [`Connection`] with these settings, joined in
/// memory and open at `now` (TLS first when both sides have a TLS
/// configuration; the server accepts the defaults), as a benchmark or a fuzz
/// target starts from them.
pub fn open(
    client_config: Arc<Config>,
    server_config: Arc<Config>,
    client_tls: Option<&ClientTls>,
    server_tls: Option<&ServerTls>,
    now: Instant,
) -> (Connection, Connection) {
    let url = if client_tls.is_some() {
        "wss://localhost/"
    } else {
        "ws://localhost/"
    };
    let request = ClientRequest::new(url).expect("a constant, valid URL");
    let mut pair = Pair::with_configs(
        client_config,
        server_config,
        &request,
        client_tls,
        server_tls,
        now,
    );
    pair.open();
    (pair.client, pair.server)
}
