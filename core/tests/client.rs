//! The sans-IO reconnecting client under a simulated clock: a `Client` and
//! server `Connection`s joined in memory, one per "socket" the client asks
//! for, over plaintext or real rustls. Backoff, 1012 / 1013, registration
//! first, requeue order, a full queue, rejections, shutdown, and the
//! receive bound across reconnects.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_core::test_certs::TestPki;
use wharf_core::{
    Accept, Client, ClientAction, ClientEvent, ClientOptions, ClientRequest, CloseCode, Config,
    Connection, Disconnect, Error, Event, HandshakeError, Message, OsSeededRng, Reject, ServerTls,
    TlsError,
};

/// What the in-memory server does with each connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Answer {
    Accept,
    Reject(u16),
}

struct World {
    client: Client,
    now: Instant,
    /// The server side of the client's current socket.
    server: Option<Connection>,
    server_tls: Option<ServerTls>,
    /// Accept connections at all (false: the TCP connect is refused).
    up: bool,
    answer: Answer,
    /// Stop carrying client → server bytes (the server stops reading).
    deaf: bool,
    /// Everything every server connection received, in order.
    received: Vec<Message>,
    /// The client's events, in order (when collected).
    events: Vec<ClientEvent>,
    /// The application takes the client's events.
    collect: bool,
    connects_asked: Vec<Instant>,
}

impl World {
    fn new(options: ClientOptions) -> World {
        let now = Instant::now();
        let client = Client::with_rng(options, now, Box::new(OsSeededRng::from_seed([3; 32])))
            .expect("valid options");
        World {
            client,
            now,
            server: None,
            server_tls: None,
            up: true,
            answer: Answer::Accept,
            deaf: false,
            received: Vec::new(),
            events: Vec::new(),
            collect: true,
            connects_asked: Vec::new(),
        }
    }

    /// Carries bytes and actions until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(action) = self.client.poll_action() {
                moved = true;
                match action {
                    ClientAction::Connect { .. } => {
                        self.connects_asked.push(self.now);
                        if self.up {
                            let server = Connection::server(
                                Arc::new(Config::default()),
                                self.server_tls.as_ref(),
                                self.now,
                            )
                            .unwrap();
                            self.server = Some(server);
                            self.client.connected(self.now);
                        } else {
                            let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
                            self.client.connect_failed(self.now, refused);
                        }
                    }
                    ClientAction::Close => self.server = None,
                    other => panic!("{other:?}"),
                }
            }
            let now = self.now;
            let mut wire = Vec::new();
            // A deaf server's socket is full: the client writes nothing.
            while !self.deaf && self.client.poll_transmit(&mut wire) > 0 {}
            if let Some(server) = self.server.as_mut() {
                if !wire.is_empty() {
                    server.handle_input(now, &wire);
                    moved = true;
                }
                while let Some(event) = server.poll_event() {
                    moved = true;
                    match event {
                        Event::Request(_) => match self.answer {
                            Answer::Accept => server.accept(Accept::default()).unwrap(),
                            Answer::Reject(status) => server
                                .reject(Reject {
                                    status,
                                    headers: vec![],
                                    body: vec![],
                                })
                                .unwrap(),
                        },
                        Event::Message(m) => self.received.push(m),
                        _ => {}
                    }
                }
                let mut back = Vec::new();
                while server.poll_transmit(&mut back) > 0 {}
                if !back.is_empty() {
                    moved = true;
                    self.client.handle_input(now, &back);
                }
                if server.is_finished() {
                    // The server closes its socket: the client reads the end.
                    self.server = None;
                    self.client.handle_eof(now);
                    moved = true;
                }
            }
            if self.collect {
                while let Some(e) = self.client.poll_event() {
                    moved = true;
                    self.events.push(e);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the world did not settle");
    }

    /// Jumps to the earliest deadline (of the client and the server) within
    /// `limit`, runs it and settles; false when none.
    fn advance(&mut self, limit: Duration) -> bool {
        self.settle();
        let next = [
            self.client.poll_timeout(),
            self.server.as_ref().and_then(Connection::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(t) if t <= self.now + limit => {
                self.now = self.now.max(t);
                let now = self.now;
                self.client.handle_timeout(now);
                if let Some(s) = self.server.as_mut() {
                    s.handle_timeout(now);
                }
                self.settle();
                true
            }
            _ => false,
        }
    }

    /// The server's side closes with `code`.
    fn server_closes(&mut self, code: CloseCode) {
        self.server
            .as_mut()
            .expect("a server connection")
            .close(code, "")
            .unwrap();
        self.settle();
    }

    fn disconnects(&self) -> Vec<(&Disconnect, Option<Instant>, usize)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Disconnected(d) => Some((&d.reason, d.retry_at, d.requeued)),
                _ => None,
            })
            .collect()
    }

    fn connected_count(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Connected(_)))
            .count()
    }
}

fn options(url: &str) -> ClientOptions {
    ClientOptions::new(ClientRequest::new(url).unwrap())
}

fn text(s: &str) -> Message {
    Message::text(s.to_owned())
}

#[test]
fn failed_attempts_back_off_exponentially_with_jitter() {
    let mut w = World::new(options("ws://localhost/"));
    w.up = false;
    w.settle();
    let start = w.now;
    while w.connects_asked.len() < 8 {
        assert!(w.advance(Duration::from_secs(300)));
    }
    assert_eq!(w.connects_asked[0], start, "the first attempt at once");
    let mut base = 1.0f64;
    for pair in w.connects_asked.windows(2) {
        let d = (pair[1] - pair[0]).as_secs_f64();
        assert!(
            d >= base * 0.8 - 1e-6 && d <= base * 1.2 + 1e-6,
            "{d} s after a failure, base {base}"
        );
        base *= 1.6;
    }
    // Each failure was reported, with when the next attempt is.
    let d = w.disconnects();
    assert!(d.len() >= 7);
    assert!(d
        .iter()
        .all(|(r, at, _)| matches!(r, Disconnect::Connect(_)) && at.is_some()));
}

#[test]
fn the_registration_goes_first_then_the_queue_in_order() {
    let mut o = options("ws://localhost/");
    o.registration = Some(Box::new(|_| {
        vec![text("register: sensor-7"), text("subscribe: ticks")]
    }));
    let mut w = World::new(o);
    // Queued before any connection exists.
    for i in 0..5 {
        w.client.send(text(&format!("reading {i}"))).unwrap();
    }
    w.settle();
    let expect: Vec<Message> = ["register: sensor-7", "subscribe: ticks"]
        .into_iter()
        .map(text)
        .chain((0..5).map(|i| text(&format!("reading {i}"))))
        .collect();
    assert_eq!(w.received, expect);
    assert!(w.client.is_connected());
    // On every new connection the registration goes first again.
    w.received.clear();
    w.server_closes(CloseCode::GOING_AWAY);
    w.client.send(text("after the gap")).unwrap();
    assert!(w.advance(Duration::from_secs(2)));
    assert_eq!(
        w.received,
        ["register: sensor-7", "subscribe: ticks", "after the gap"].map(text)
    );
    assert_eq!(w.connected_count(), 2);
}

#[test]
fn a_lost_connection_puts_what_it_had_not_sent_back_first_in_line() {
    let mut o = options("ws://localhost/");
    // Small frames and a small send queue so that messages wait in the
    // connection when the server stops reading.
    let mut config = Config::default();
    config.max_send_queue = 64;
    o.config = Arc::new(config);
    let mut w = World::new(o);
    w.settle();
    assert!(w.client.is_connected());
    w.client.send(text("one")).unwrap();
    w.settle();
    // The server goes deaf; what is sent now stays unsent.
    w.deaf = true;
    for m in ["two", "three", "four"] {
        w.client.send(text(m)).unwrap();
    }
    w.settle();
    // The socket dies.
    w.server = None;
    w.client.handle_eof(w.now);
    w.deaf = false;
    w.settle();
    let (reason, retry, requeued) = w.disconnects()[0];
    assert!(matches!(reason, Disconnect::Lost(_)), "{reason:?}");
    assert!(retry.is_some());
    assert!(requeued >= 1, "requeued {requeued}");
    w.client.send(text("five")).unwrap();
    while w.connected_count() < 2 {
        assert!(w.advance(Duration::from_secs(2)));
    }
    // Everything arrived once, in order: nothing lost, nothing twice.
    let got: Vec<String> = w
        .received
        .iter()
        .map(|m| String::from_utf8(m.payload().to_vec()).unwrap())
        .collect();
    assert_eq!(got, ["one", "two", "three", "four", "five"]);
}

#[test]
fn a_full_queue_hands_the_message_back() {
    let mut o = options("ws://localhost/");
    o.max_queued_messages = 3;
    let mut w = World::new(o);
    w.up = false;
    for i in 0..3 {
        w.client.send(text(&i.to_string())).unwrap();
    }
    assert_eq!(w.client.send(text("overflow")), Err(text("overflow")));
    let mut o = options("ws://localhost/");
    o.max_queued_bytes = 10;
    let mut w = World::new(o);
    w.up = false;
    w.client.send(text("0123456789")).unwrap();
    assert_eq!(w.client.send(text("x")), Err(text("x")));
    // A message larger than the whole bound is taken when the queue is empty.
    w.client.take_queued();
    w.client.send(text("a much longer message")).unwrap();
}

#[test]
fn a_service_restart_reconnects_soon_and_try_again_later_waits() {
    let mut w = World::new(options("ws://localhost/"));
    w.settle();
    w.server_closes(CloseCode::SERVICE_RESTART);
    let (_, at, _) = w.disconnects()[0];
    let wait = at.unwrap() - w.now;
    assert!(wait <= Duration::from_secs(1), "1012: {wait:?}");
    while w.connected_count() < 2 {
        assert!(w.advance(Duration::from_secs(2)));
    }
    w.server_closes(CloseCode::TRY_AGAIN_LATER);
    let (_, at, _) = w.disconnects()[1];
    let wait = at.unwrap() - w.now;
    assert!(wait >= Duration::from_secs(30), "1013: {wait:?}");
}

#[test]
fn a_rejected_certificate_stops_the_client_with_the_typed_error() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let mut o = options("wss://localhost/");
    // Trusts another CA than the server's.
    o.tls = Some(other.client_tls());
    let mut w = World::new(o);
    w.server_tls = Some(pki.server_tls(&["localhost"]));
    w.settle();
    let d = w.disconnects();
    assert_eq!(d.len(), 1);
    let (reason, retry, _) = d[0];
    assert!(
        matches!(
            reason,
            Disconnect::Handshake(Error::Tls(TlsError::UnknownIssuer))
        ),
        "{reason:?}"
    );
    assert!(reason.is_rejection());
    assert_eq!(retry, None);
    assert!(matches!(w.events.last(), Some(ClientEvent::Stopped)));
    assert!(w.client.is_stopped());
    assert!(!w.advance(Duration::from_secs(3600)), "no more attempts");

    // Unless told to retry rejections.
    let mut o = options("wss://localhost/");
    o.tls = Some(other.client_tls());
    o.reconnect.retry_rejected = true;
    let mut w = World::new(o);
    w.server_tls = Some(pki.server_tls(&["localhost"]));
    w.settle();
    assert!(w.advance(Duration::from_secs(2)));
    assert_eq!(w.connects_asked.len(), 2);
    assert!(!w.client.is_stopped());
}

#[test]
fn http_4xx_stops_and_5xx_retries() {
    let mut w = World::new(options("ws://localhost/"));
    w.answer = Answer::Reject(403);
    w.settle();
    let (reason, retry, _) = w.disconnects()[0];
    assert!(matches!(
        reason,
        Disconnect::Handshake(Error::Handshake(HandshakeError::Rejected {
            status: 403,
            ..
        }))
    ));
    assert_eq!(retry, None);
    assert!(w.client.is_stopped());

    let mut w = World::new(options("ws://localhost/"));
    w.answer = Answer::Reject(503);
    w.settle();
    let (_, retry, _) = w.disconnects()[0];
    assert!(retry.is_some());
    w.answer = Answer::Accept;
    assert!(w.advance(Duration::from_secs(2)));
    assert!(w.client.is_connected());
}

#[test]
fn shutdown_sends_what_is_queued_then_closes_with_1000() {
    let mut w = World::new(options("ws://localhost/"));
    w.settle();
    for m in ["a", "b", "c"] {
        w.client.send(text(m)).unwrap();
    }
    w.client.shutdown(w.now);
    assert_eq!(w.client.send(text("late")), Err(text("late")));
    w.settle();
    while !w.client.is_stopped() {
        assert!(
            w.advance(Duration::from_secs(10)),
            "{:?} {:?}",
            w.events,
            w.client
        );
    }
    assert_eq!(w.received, ["a", "b", "c"].map(text));
    let (reason, retry, _) = w.disconnects()[0];
    match reason {
        Disconnect::Lost(info) => {
            assert_eq!(info.code, CloseCode::NORMAL);
            assert!(info.clean);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(retry, None);
    assert!(matches!(w.events.last(), Some(ClientEvent::Stopped)));
    assert!(w.client.take_queued().is_empty());
}

#[test]
fn shutdown_while_disconnected_stops_at_once_and_hands_the_queue_back() {
    let mut w = World::new(options("ws://localhost/"));
    w.up = false;
    w.settle();
    w.client.send(text("never sent")).unwrap();
    w.client.shutdown(w.now);
    w.settle();
    assert!(w.client.is_stopped());
    assert_eq!(w.client.take_queued(), vec![text("never sent")]);
}

#[test]
fn an_application_that_stops_taking_holds_back_reading_and_reconnecting() {
    let mut o = options("ws://localhost/");
    let mut config = Config::default();
    config.max_receive_events = 8;
    o.config = Arc::new(config);
    let mut w = World::new(o);
    w.settle();
    assert!(w.client.is_connected());
    w.collect = false;
    // The server sends far more than the bound.
    let now = w.now;
    let server = w.server.as_mut().unwrap();
    for i in 0..100u32 {
        server
            .send(Message::binary(i.to_be_bytes().to_vec()))
            .unwrap();
    }
    w.settle();
    assert!(!w.client.wants_read(), "the bound is reached");
    // The connection is lost while the application holds back.
    w.server = None;
    w.client.handle_eof(now);
    w.settle();
    // No new attempt until the messages it has were taken.
    assert!(!w.advance(Duration::from_secs(3600)));
    assert_eq!(w.connects_asked.len(), 1);
    w.collect = true;
    w.settle();
    let got: Vec<u32> = w
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some(u32::from_be_bytes(m.payload().try_into().unwrap())),
            _ => None,
        })
        .collect();
    // In order, and what had not arrived is not invented.
    assert!(!got.is_empty() && got.len() <= 100);
    assert_eq!(got, (0..got.len() as u32).collect::<Vec<_>>());
    assert!(w.advance(Duration::from_secs(2)));
    assert_eq!(w.connects_asked.len(), 2);
}

#[test]
fn a_connect_that_does_not_complete_times_out() {
    let mut o = options("ws://localhost/");
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_secs(3);
    o.config = Arc::new(config);
    let now = Instant::now();
    let mut client = Client::new(o, now).unwrap();
    let Some(ClientAction::Connect { deadline, .. }) = client.poll_action() else {
        panic!("expected a connect");
    };
    assert_eq!(deadline, now + Duration::from_secs(3));
    assert_eq!(client.poll_timeout(), Some(deadline));
    client.handle_timeout(deadline);
    assert_eq!(client.poll_action(), Some(ClientAction::Close));
    let Some(ClientEvent::Disconnected(d)) = client.poll_event() else {
        panic!("expected a disconnect");
    };
    assert!(matches!(&d.reason, Disconnect::Connect(e) if e.kind() == io::ErrorKind::TimedOut));
    assert!(d.retry_at.is_some());
}

#[test]
fn stream_mode_is_refused_up_front_and_wss_without_tls_trusts_the_mozilla_roots() {
    let now = Instant::now();
    let mut client = Client::new(options("wss://localhost/"), now).expect("default roots");
    assert!(matches!(
        client.poll_action(),
        Some(ClientAction::Connect { port: 443, .. })
    ));
    let mut o = options("ws://localhost/");
    let mut config = Config::default();
    config.message_mode = wharf_core::MessageMode::Stream;
    o.config = Arc::new(config);
    assert!(Client::new(o, now).is_err());
}
