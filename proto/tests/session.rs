//! The sans-IO sessions, client and server wired in memory, with a
//! simulated clock: request/result matching, timeouts, registration replay,
//! resend-or-fail after a reconnect, sequence gaps, malformed input.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use wharf_core::{Bytes, Message};
use wharf_proto::{
    decode, encode, Body, ClientEvent, ClientSession, ClientSessionConfig, ConnectionId, Envelope,
    OnReconnect, ProtoError, Register, Request, RequestError, RequestResult, ServerError,
    ServerEvent, ServerSession, ServerSessionConfig, Status, SubmitError, Subscription,
    PROTOCOL_VERSION,
};

const MS: Duration = Duration::from_millis(1);

/// A client and a server session joined by an in-memory "connection".
struct World {
    now: Instant,
    client: ClientSession,
    server: ServerSession,
    conn: Option<ConnectionId>,
    /// Server side: accept registrations by itself.
    auto_accept: bool,
    /// Server side: answer requests at once (echo), else keep them.
    auto_answer: bool,
    /// Requests the server application holds unanswered.
    held: Vec<(ConnectionId, Request)>,
    /// What the client reported, in order.
    events: Vec<ClientEvent>,
    /// Everything the client sent, decoded, in order.
    sent: Vec<Body>,
    /// Drops server → client frames with these sequence numbers.
    drop_frames: Vec<u64>,
}

impl World {
    fn new(config: ClientSessionConfig) -> World {
        World::with_server(config, ServerSessionConfig::new())
    }

    fn with_server(config: ClientSessionConfig, server: ServerSessionConfig) -> World {
        World {
            now: Instant::now(),
            client: ClientSession::new(config),
            server: ServerSession::new(server, 100),
            conn: None,
            auto_accept: true,
            auto_answer: true,
            held: Vec::new(),
            events: Vec::new(),
            sent: Vec::new(),
            drop_frames: Vec::new(),
        }
    }

    fn connect(&mut self) {
        self.conn = Some(self.server.connect().unwrap());
        self.client.connected();
        self.pump();
    }

    /// The transport breaks: both sides notice.
    fn disconnect(&mut self) -> usize {
        if let Some(conn) = self.conn.take() {
            self.server.disconnect(conn);
        }
        let resent = self.client.disconnected();
        self.pump();
        resent
    }

    /// The server process restarts: a new session with a new epoch.
    fn restart_server(&mut self, epoch: u64, config: ServerSessionConfig) {
        self.disconnect();
        self.server = ServerSession::new(config, epoch);
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.handle_timeout(self.now);
        self.pump();
    }

    fn request(&mut self, kind: &str, payload: &'static str) -> u64 {
        let id = self.client.request(self.now, kind, payload).unwrap();
        self.pump();
        id
    }

    fn answer_held(&mut self) {
        for (conn, request) in std::mem::take(&mut self.held) {
            let _ = self
                .server
                .respond(conn, RequestResult::ok(request.id, request.payload));
        }
        self.pump();
    }

    /// Moves messages both ways until nothing moves.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(message) = self.client.poll_transmit() {
                moved = true;
                self.sent.push(decode(&message).unwrap());
                if let Some(conn) = self.conn {
                    self.server.handle_message(conn, &message).unwrap();
                }
            }
            while let Some(event) = self.server.poll_event() {
                moved = true;
                match event {
                    ServerEvent::Register { connection, .. } if self.auto_accept => {
                        self.server.accept_registration(connection).unwrap();
                    }
                    ServerEvent::Request {
                        connection,
                        request,
                        ..
                    } => {
                        if self.auto_answer {
                            self.server
                                .respond(connection, RequestResult::ok(request.id, request.payload))
                                .unwrap();
                        } else {
                            self.held.push((connection, request));
                        }
                    }
                    _ => {}
                }
            }
            while let Some((to, message)) = self.server.poll_transmit() {
                moved = true;
                if Some(to) != self.conn {
                    continue;
                }
                if let Ok(Body::Frame(f)) = decode(&message) {
                    if self.drop_frames.contains(&f.sequence) {
                        continue;
                    }
                }
                self.client.handle_message(self.now, &message).unwrap();
            }
            while let Some(event) = self.client.poll_event() {
                moved = true;
                self.events.push(event);
            }
            if !moved {
                break;
            }
        }
    }

    fn take_events(&mut self) -> Vec<ClientEvent> {
        std::mem::take(&mut self.events)
    }

    fn take_sent(&mut self) -> Vec<Body> {
        std::mem::take(&mut self.sent)
    }
}

fn results(events: &[ClientEvent]) -> Vec<(u64, Bytes)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Result(r) => {
                Some((r.request_id, r.payload().cloned().unwrap_or_default()))
            }
            _ => None,
        })
        .collect()
}

fn failures(events: &[ClientEvent]) -> Vec<(u64, RequestError)> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Failed {
                request_id, error, ..
            } => Some((*request_id, error.clone())),
            _ => None,
        })
        .collect()
}

fn frames(events: &[ClientEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Frame(f) => Some(f.sequence),
            _ => None,
        })
        .collect()
}

fn request_ids(sent: &[Body]) -> Vec<u64> {
    sent.iter()
        .filter_map(|b| match b {
            Body::Request(r) => Some(r.id),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Registration and request/result matching
// ---------------------------------------------------------------------------

#[test]
fn registration_goes_first_and_requests_wait_for_its_ack() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_auth_token("tok"));
    w.auto_accept = false;
    let a = w.request("echo", "a"); // before any connection
    assert!(w.take_sent().is_empty());

    w.connect();
    let sent = w.take_sent();
    assert_eq!(
        sent.len(),
        1,
        "only the registration before the ack: {sent:?}"
    );
    let Body::Register(register) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(
        (register.client_id.as_str(), register.auth_token.as_str()),
        ("c1", "tok")
    );
    assert_eq!(register.server_epoch, 0);
    let b = w.request("echo", "b"); // still waiting for the ack
    assert!(w.take_sent().is_empty());
    assert!(!w.client.is_registered());

    w.server.accept_registration(w.conn.unwrap()).unwrap();
    w.pump();
    assert!(w.client.is_registered());
    assert_eq!(request_ids(&w.take_sent()), [a, b]);
    let events = w.take_events();
    assert!(matches!(
        events[0],
        ClientEvent::Registered {
            server_epoch: 100,
            ..
        }
    ));
    assert_eq!(results(&events), [(a, "a".into()), (b, "b".into())]);
}

#[test]
fn results_are_matched_to_their_requests_in_any_order() {
    let mut w = World::new(ClientSessionConfig::new("c1"));
    w.auto_answer = false;
    w.connect();
    let ids: Vec<u64> = ["a", "b", "c", "d"]
        .iter()
        .map(|p| w.request("echo", p))
        .collect();
    assert_eq!(w.held.len(), 4);
    assert_eq!(w.client.pending(), 4);
    // Answer in reverse, with distinct payloads.
    let held = std::mem::take(&mut w.held);
    for (conn, request) in held.iter().rev() {
        let answer = Bytes::from(format!("re:{}", request.id));
        w.server
            .respond(*conn, RequestResult::ok(request.id, answer))
            .unwrap();
    }
    w.pump();
    let got = results(&w.take_events());
    let expected: Vec<(u64, Bytes)> = ids
        .iter()
        .rev()
        .map(|id| (*id, Bytes::from(format!("re:{id}"))))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(w.client.pending(), 0);
    assert_eq!(w.client.poll_timeout(), None);

    // Ids are distinct and never 0.
    let mut sorted = ids.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 4);
    assert!(!ids.contains(&0));
}

#[test]
fn an_error_status_is_still_the_matching_result() {
    let mut w = World::new(ClientSessionConfig::new("c1"));
    w.auto_answer = false;
    w.connect();
    let id = w.request("nope", "");
    let (conn, _) = w.held.pop().unwrap();
    w.server
        .respond(
            conn,
            RequestResult::error(id, Status::UnknownKind, "no such kind"),
        )
        .unwrap();
    w.pump();
    let events = w.take_events();
    let Some(ClientEvent::Result(r)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(r.request_id, id);
    assert_eq!(r.status(), Status::UnknownKind);
    assert_eq!(r.error_message(), Some("no such kind"));
}

#[test]
fn a_result_for_no_pending_request_is_reported_unmatched() {
    let mut w = World::new(ClientSessionConfig::new("c1"));
    w.connect();
    w.take_events();
    let stray = encode(Body::Result(RequestResult::ok(999, "?")));
    w.client.handle_message(w.now, &stray).unwrap();
    assert!(matches!(
        w.client.poll_event(),
        Some(ClientEvent::UnmatchedResult(r)) if r.request_id == 999
    ));
}

#[test]
fn the_pending_table_is_bounded_and_hands_requests_back() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_max_pending(2));
    w.request("k", "1");
    w.request("k", "2");
    match w.client.request(w.now, "k", "3") {
        Err(SubmitError::Full {
            capacity,
            kind,
            payload,
        }) => {
            assert_eq!((capacity, kind.as_str(), &payload[..]), (2, "k", &b"3"[..]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        w.client.request(w.now, "", "x"),
        Err(SubmitError::EmptyKind { payload }) if payload == "x"
    ));
    // Room again once one is done.
    w.connect();
    assert_eq!(w.client.pending(), 0);
    assert!(w.client.request(w.now, "k", "3").is_ok());
}

// ---------------------------------------------------------------------------
// Timeouts (simulated clock)
// ---------------------------------------------------------------------------

#[test]
fn requests_time_out_at_their_deadline_and_late_results_are_unmatched() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_request_timeout(100 * MS));
    w.auto_answer = false;
    w.connect();
    let start = w.now;
    let a = w.request("slow", "a");
    w.advance(30 * MS);
    let b = w
        .client
        .request_with_timeout(w.now, "slow", "b", 20 * MS)
        .unwrap();
    w.pump();
    // b's deadline (start + 50 ms) comes before a's (start + 100 ms).
    assert_eq!(w.client.poll_timeout(), Some(start + 50 * MS));
    w.advance(19 * MS);
    assert!(failures(&w.events).is_empty());
    w.advance(MS);
    assert_eq!(failures(&w.take_events()), [(b, RequestError::Timeout)]);
    assert_eq!(w.client.poll_timeout(), Some(start + 100 * MS));
    w.advance(49 * MS);
    assert!(failures(&w.events).is_empty());
    w.advance(MS);
    assert_eq!(failures(&w.take_events()), [(a, RequestError::Timeout)]);
    assert_eq!(w.client.poll_timeout(), None);

    // The server's answers come too late: reported, not matched.
    w.answer_held();
    let events = w.take_events();
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|e| matches!(e, ClientEvent::UnmatchedResult(_))));
}

#[test]
fn deadlines_run_while_disconnected() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_request_timeout(10 * MS));
    let id = w.request("k", "x");
    w.advance(10 * MS);
    assert_eq!(failures(&w.take_events()), [(id, RequestError::Timeout)]);
    // Nothing is sent for it later.
    w.connect();
    assert!(request_ids(&w.take_sent()).is_empty());
}

#[test]
fn a_cancelled_request_ends_silently() {
    let mut w = World::new(ClientSessionConfig::new("c1"));
    let id = w.request("k", "x");
    assert!(w.client.cancel(id));
    assert!(!w.client.cancel(id));
    w.connect();
    assert!(request_ids(&w.take_sent()).is_empty());
    assert_eq!(w.client.poll_timeout(), None);
}

// ---------------------------------------------------------------------------
// Reconnects: registration replay, resend or fail
// ---------------------------------------------------------------------------

#[test]
fn the_registration_is_replayed_first_after_a_reconnect() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_stream("ticks"));
    w.connect();
    w.server.publish("ticks", "1").unwrap();
    w.server.publish("ticks", "2").unwrap();
    w.pump();
    w.disconnect();
    let queued = w.request("k", "while away");
    w.take_sent();
    w.take_events();

    w.connect();
    let sent = w.take_sent();
    let Body::Register(register) = &sent[0] else {
        panic!("the registration must go first: {sent:?}")
    };
    assert_eq!(register.server_epoch, 100);
    assert_eq!(
        register.streams,
        [Subscription {
            stream: "ticks".into(),
            resume: true,
            last_sequence: 2
        }]
    );
    assert_eq!(request_ids(&sent[1..]), [queued]);
    let events = w.take_events();
    assert!(matches!(events[0], ClientEvent::Registered { .. }));
    assert_eq!(results(&events), [(queued, "while away".into())]);
}

#[test]
fn sent_requests_are_resent_after_the_registration() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_on_reconnect(OnReconnect::Resend));
    w.auto_answer = false;
    w.connect();
    let ids: Vec<u64> = (0..3).map(|_| w.request("k", "p")).collect();
    assert_eq!(w.held.len(), 3);
    w.held.clear(); // the server went away with them
    w.take_sent();

    assert_eq!(w.disconnect(), 3);
    assert!(failures(&w.events).is_empty());
    let later = w.request("k", "later");
    w.auto_answer = true;
    w.connect();
    let sent = w.take_sent();
    assert!(matches!(sent[0], Body::Register(_)));
    // The same ids, in order, then the new one.
    assert_eq!(request_ids(&sent[1..]), [ids[0], ids[1], ids[2], later]);
    let got: Vec<u64> = results(&w.take_events()).iter().map(|r| r.0).collect();
    assert_eq!(got, [ids[0], ids[1], ids[2], later]);
}

#[test]
fn sent_requests_fail_explicitly_when_so_configured() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_on_reconnect(OnReconnect::Fail));
    w.auto_answer = false;
    w.connect();
    let sent_ids: Vec<u64> = (0..2).map(|_| w.request("k", "p")).collect();
    w.held.clear();
    w.take_sent();

    assert_eq!(w.disconnect(), 0);
    assert_eq!(
        failures(&w.take_events()),
        [
            (sent_ids[0], RequestError::ConnectionLost),
            (sent_ids[1], RequestError::ConnectionLost)
        ]
    );
    // A request made while disconnected was never sent: it waits, and goes.
    let unsent = w.request("k", "later");
    w.auto_answer = true;
    w.connect();
    assert_eq!(request_ids(&w.take_sent()), [unsent]);
    assert_eq!(results(&w.take_events()), [(unsent, "later".into())]);
}

#[test]
fn every_request_ends_exactly_once_through_a_storm_of_reconnects() {
    for policy in [OnReconnect::Resend, OnReconnect::Fail] {
        let mut w = World::new(
            ClientSessionConfig::new("c1")
                .with_on_reconnect(policy)
                .with_request_timeout(40 * MS)
                .with_max_pending(4),
        );
        w.auto_answer = false;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut submitted = Vec::new();
        let mut handed_back = 0;
        for _step in 0..2000 {
            match next() % 8 {
                0..=2 => match w.client.request(w.now, "k", "p") {
                    Ok(id) => submitted.push(id),
                    Err(SubmitError::Full { .. }) => handed_back += 1,
                    Err(e) => panic!("{e}"),
                },
                3 => w.answer_held(),
                4 if w.conn.is_some() => {
                    w.held.clear(); // in flight on the server: lost with it
                    w.disconnect();
                }
                4 => w.connect(),
                5 if w.conn.is_none() => w.connect(),
                _ => w.advance(Duration::from_millis(next() % 7)),
            }
            w.pump();
        }
        // Let every deadline pass.
        w.answer_held();
        w.advance(Duration::from_secs(1));
        let mut ended: HashMap<u64, usize> = HashMap::new();
        for e in &w.events {
            match e {
                ClientEvent::Result(r) => *ended.entry(r.request_id).or_default() += 1,
                ClientEvent::Failed { request_id, .. } => {
                    *ended.entry(*request_id).or_default() += 1
                }
                _ => {}
            }
        }
        assert!(submitted.len() > 100, "{policy:?}: {}", submitted.len());
        for id in &submitted {
            assert_eq!(ended.get(id), Some(&1), "{policy:?}: request {id}");
        }
        assert_eq!(ended.len(), submitted.len());
        assert_eq!(w.client.pending(), 0);
        assert!(handed_back > 0, "the bound was exercised");
    }
}

// ---------------------------------------------------------------------------
// Streams: order, gaps, resumption, restarts
// ---------------------------------------------------------------------------

#[test]
fn a_hole_in_a_stream_is_reported_before_the_next_frame() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_stream("ticks"));
    w.connect();
    w.take_events();
    w.drop_frames = vec![3, 4];
    for i in 1..=6 {
        w.server.publish("ticks", format!("t{i}")).unwrap();
    }
    w.pump();
    let events = w.take_events();
    assert_eq!(frames(&events), [1, 2, 5, 6]);
    let gap_at = events
        .iter()
        .position(|e| matches!(e, ClientEvent::Gap { stream, missing } if stream == "ticks" && *missing == (3..5)))
        .expect("the gap is reported");
    let frame5_at = events
        .iter()
        .position(|e| matches!(e, ClientEvent::Frame(f) if f.sequence == 5))
        .unwrap();
    assert!(gap_at < frame5_at);

    // A frame already accounted for is a duplicate, dropped.
    let old = encode(Body::Frame(wharf_proto::Frame {
        stream: "ticks".into(),
        sequence: 4,
        payload: Bytes::new(),
    }));
    w.client.handle_message(w.now, &old).unwrap();
    assert!(matches!(
        w.client.poll_event(),
        Some(ClientEvent::Duplicate { sequence: 4, .. })
    ));
    // And a frame on a stream not subscribed is refused.
    let other = encode(Body::Frame(wharf_proto::Frame {
        stream: "other".into(),
        sequence: 1,
        payload: Bytes::new(),
    }));
    assert!(matches!(
        w.client.handle_message(w.now, &other),
        Err(ProtoError::UnknownStream { .. })
    ));
}

#[test]
fn a_resuming_client_gets_what_it_missed_without_a_gap() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_stream("ticks"));
    w.connect();
    for _ in 0..3 {
        w.server.publish("ticks", "x").unwrap();
    }
    w.pump();
    w.disconnect();
    for _ in 0..4 {
        w.server.publish("ticks", "y").unwrap(); // 4..=7 while away
    }
    w.connect();
    let events = w.take_events();
    assert_eq!(frames(&events), [1, 2, 3, 4, 5, 6, 7]);
    assert!(!events.iter().any(|e| matches!(e, ClientEvent::Gap { .. })));
}

#[test]
fn missed_frames_beyond_the_history_are_a_gap() {
    let mut w = World::with_server(
        ClientSessionConfig::new("c1").with_stream("ticks"),
        ServerSessionConfig::new().with_history(2),
    );
    w.connect();
    w.server.publish("ticks", "1").unwrap();
    w.pump();
    w.disconnect();
    for _ in 2..=6 {
        w.server.publish("ticks", "away").unwrap();
    }
    w.take_events();
    w.connect();
    let events = w.take_events();
    // The server holds 5 and 6 only: 2..5 are gone, said at the ack.
    assert!(matches!(
        &events[0],
        ClientEvent::Gap { stream, missing } if stream == "ticks" && *missing == (2..5)
    ));
    assert!(matches!(events[1], ClientEvent::Registered { .. }));
    assert_eq!(frames(&events), [5, 6]);
    // Reconnecting again does not report the same hole twice.
    w.disconnect();
    w.connect();
    assert!(!w
        .take_events()
        .iter()
        .any(|e| matches!(e, ClientEvent::Gap { .. })));
}

#[test]
fn a_server_restart_resets_the_numbering() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_stream("ticks"));
    w.connect();
    for _ in 0..5 {
        w.server.publish("ticks", "old").unwrap();
    }
    w.pump();
    w.restart_server(200, ServerSessionConfig::new());
    w.server.publish("ticks", "new 1").unwrap(); // before the client is back
    w.take_events();
    w.connect();
    let events = w.take_events();
    assert!(matches!(
        &events[0],
        ClientEvent::StreamReset { stream, last_sequence: 5 } if stream == "ticks"
    ));
    assert!(matches!(
        events[1],
        ClientEvent::Registered {
            server_epoch: 200,
            ..
        }
    ));
    assert_eq!(
        frames(&events),
        [1],
        "the new epoch's first frame is replayed"
    );
    assert!(!events.iter().any(|e| matches!(e, ClientEvent::Gap { .. })));
    w.server.publish("ticks", "new 2").unwrap();
    w.pump();
    assert_eq!(frames(&w.take_events()), [2]);
}

#[test]
fn a_fresh_subscriber_starts_live() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_stream("ticks"));
    for _ in 0..3 {
        w.server.publish("ticks", "before").unwrap();
    }
    w.connect();
    let events = w.take_events();
    assert!(
        matches!(&events[0], ClientEvent::Registered { streams, .. } if streams[0].next_sequence == 4)
    );
    assert!(frames(&events).is_empty());
    w.server.publish("ticks", "live").unwrap();
    w.pump();
    assert_eq!(frames(&w.take_events()), [4]);
}

// ---------------------------------------------------------------------------
// Malformed and unexpected input
// ---------------------------------------------------------------------------

fn with_version(version: u32, body: Body) -> Message {
    use prost::Message as _;
    Message::binary(
        Envelope {
            version,
            body: Some(body),
        }
        .encode_to_vec(),
    )
}

#[test]
fn the_server_answers_bad_requests_and_keeps_the_connection() {
    let mut server = ServerSession::new(ServerSessionConfig::new(), 1);
    let conn = server.connect().unwrap();
    let answer = |server: &mut ServerSession| -> Option<RequestResult> {
        let (to, m) = server.poll_transmit()?;
        assert_eq!(to, conn);
        match decode(&m).unwrap() {
            Body::Result(r) => Some(r),
            other => panic!("{other:?}"),
        }
    };
    let request = |id: u64, kind: &str| Request {
        id,
        kind: kind.into(),
        payload: Bytes::new(),
    };

    // Before registering.
    let err = server
        .handle_message(conn, &encode(Body::Request(request(1, "k"))))
        .unwrap_err();
    assert_eq!(err.request_id(), Some(1));
    assert_eq!(answer(&mut server).unwrap().status(), Status::NotRegistered);

    let register = Register {
        client_id: "c".into(),
        ..Register::default()
    };
    server
        .handle_message(conn, &encode(Body::Register(register)))
        .unwrap();
    // Held while the application decides, then run.
    server
        .handle_message(conn, &encode(Body::Request(request(2, "k"))))
        .unwrap();
    let Some(ServerEvent::Register { .. }) = server.poll_event() else {
        panic!()
    };
    assert!(server.poll_event().is_none());
    server.accept_registration(conn).unwrap();
    let _ack = server.poll_transmit().unwrap();
    assert!(
        matches!(server.poll_event(), Some(ServerEvent::Request { request, .. }) if request.id == 2)
    );

    // Garbage, text, an empty envelope: an error, no answer (no id).
    for bad in [
        Message::binary(vec![0xff, 0xff, 0xff]),
        Message::text("hello"),
        Message::binary(Vec::new()),
    ] {
        assert!(server.handle_message(conn, &bad).is_err());
        assert!(server.poll_transmit().is_none());
    }
    // Another version, with an id: answered with UNSUPPORTED_VERSION.
    let err = server
        .handle_message(
            conn,
            &with_version(PROTOCOL_VERSION + 1, Body::Request(request(3, "k"))),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        ProtoError::UnsupportedVersion {
            request_id: Some(3),
            ..
        }
    ));
    let r = answer(&mut server).unwrap();
    assert_eq!((r.request_id, r.status()), (3, Status::UnsupportedVersion));
    // An empty kind: INVALID_REQUEST.
    assert!(server
        .handle_message(conn, &encode(Body::Request(request(4, ""))))
        .is_err());
    let r = answer(&mut server).unwrap();
    assert_eq!((r.request_id, r.status()), (4, Status::InvalidRequest));
    // A message only a server sends.
    assert!(matches!(
        server.handle_message(conn, &encode(Body::Result(RequestResult::ok(5, "")))),
        Err(ProtoError::Unexpected { .. })
    ));
    // A repeated id while the first is in flight: dropped, the first is answered.
    assert_eq!(
        server.handle_message(conn, &encode(Body::Request(request(2, "k")))),
        Err(ProtoError::DuplicateRequest { id: 2 })
    );
    assert!(server.poll_transmit().is_none());

    // Still registered and working.
    assert_eq!(server.client_id(conn), Some("c"));
    server.respond(conn, RequestResult::ok(2, "done")).unwrap();
    assert!(answer(&mut server).unwrap().is_ok());
    assert_eq!(
        server.respond(conn, RequestResult::ok(2, "again")),
        Err(ServerError::NoSuchRequest {
            connection: conn,
            request_id: 2
        })
    );
}

#[test]
fn the_client_skips_bad_messages_and_fails_a_request_whose_result_is_malformed() {
    let mut w = World::new(ClientSessionConfig::new("c1").with_stream("s"));
    w.auto_answer = false;
    w.connect();
    let id = w.request("k", "x");
    w.take_events();
    let now = w.now;
    for bad in [
        Message::binary(vec![0x0a, 0xff]),
        Message::text("hi"),
        Message::binary(Vec::new()),
        with_version(9, Body::Frame(wharf_proto::Frame::default())),
        encode(Body::Request(Request {
            id: 1,
            kind: "k".into(),
            payload: Bytes::new(),
        })),
        encode(Body::RegisterAck(wharf_proto::RegisterAck {
            accepted: true,
            server_epoch: 1,
            ..Default::default()
        })),
    ] {
        assert!(w.client.handle_message(now, &bad).is_err(), "{bad:?}");
        assert!(w.client.poll_event().is_none(), "{bad:?}");
    }
    assert_eq!(w.client.pending(), 1);

    // A result for the pending request with an unknown status: it fails,
    // explicitly, instead of waiting for its timeout.
    let broken = encode(Body::Result(RequestResult {
        request_id: id,
        status: 77,
        outcome: None,
    }));
    let err = w.client.handle_message(now, &broken).unwrap_err();
    assert_eq!(err.request_id(), Some(id));
    assert!(matches!(
        w.client.poll_event(),
        Some(ClientEvent::Failed { request_id, error: RequestError::MalformedResult(_), .. }) if request_id == id
    ));

    // Business as usual afterwards.
    w.auto_answer = true;
    let next = w.request("k", "y");
    assert_eq!(results(&w.take_events()), [(next, "y".into())]);
}

#[test]
fn random_bytes_never_panic_either_side() {
    let mut client = ClientSession::new(ClientSessionConfig::new("c").with_stream("s"));
    client.connected();
    let _ = client.poll_transmit();
    let mut server = ServerSession::new(ServerSessionConfig::new(), 1);
    let conn = server.connect().unwrap();
    let now = Instant::now();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for len in 0..2000usize {
        let bytes: Vec<u8> = (0..len % 64)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        let m = Message::binary(bytes);
        let _ = client.handle_message(now, &m);
        let _ = server.handle_message(conn, &m);
        while client.poll_event().is_some() {}
        while server.poll_transmit().is_some() {}
        while server.poll_event().is_some() {}
    }
}

// ---------------------------------------------------------------------------
// Server bookkeeping
// ---------------------------------------------------------------------------

#[test]
fn refused_registrations_fail_pending_requests() {
    let mut w = World::new(ClientSessionConfig::new("c1"));
    w.auto_accept = false;
    let id = w.request("k", "x");
    w.connect();
    w.server
        .refuse_registration(w.conn.unwrap(), "bad token")
        .unwrap();
    w.pump();
    let events = w.take_events();
    assert_eq!(
        failures(&events),
        [(id, RequestError::RegistrationRefused("bad token".into()))]
    );
    assert!(
        matches!(events.last(), Some(ClientEvent::RegistrationRefused { reason }) if reason == "bad token")
    );
    assert!(!w.client.is_registered());
}

#[test]
fn bad_registrations_are_refused_with_a_reason() {
    let mut server =
        ServerSession::new(ServerSessionConfig::new().with_max_streams_per_client(1), 1);
    let conn = server.connect().unwrap();
    let sub = |s: &str| Subscription {
        stream: s.into(),
        ..Subscription::default()
    };
    for register in [
        Register::default(),
        Register {
            client_id: "c".into(),
            streams: vec![sub("a"), sub("b")],
            ..Register::default()
        },
        Register {
            client_id: "c".into(),
            streams: vec![sub("")],
            ..Register::default()
        },
    ] {
        server
            .handle_message(conn, &encode(Body::Register(register)))
            .unwrap();
        let (_, m) = server.poll_transmit().unwrap();
        assert!(
            matches!(decode(&m).unwrap(), Body::RegisterAck(a) if !a.accepted && !a.reason.is_empty())
        );
        assert!(server.poll_event().is_none());
    }
}

#[test]
fn in_flight_requests_are_bounded_per_connection() {
    let mut w = World::with_server(
        ClientSessionConfig::new("c1"),
        ServerSessionConfig::new().with_max_in_flight(2),
    );
    w.auto_answer = false;
    w.connect();
    let ids: Vec<u64> = (0..3).map(|_| w.request("k", "p")).collect();
    assert_eq!(w.held.len(), 2);
    let events = w.take_events();
    let busy: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Result(r) => Some((r.request_id, r.status())),
            _ => None,
        })
        .collect();
    assert_eq!(busy, [(ids[2], Status::Unavailable)]);
}

#[test]
fn a_second_registration_of_a_client_replaces_the_first_connection() {
    let mut server = ServerSession::new(ServerSessionConfig::new(), 1);
    let register = encode(Body::Register(Register {
        client_id: "c".into(),
        streams: vec![Subscription {
            stream: "s".into(),
            ..Subscription::default()
        }],
        ..Register::default()
    }));
    let first = server.connect().unwrap();
    let second = server.connect().unwrap();
    for conn in [first, second] {
        server.handle_message(conn, &register).unwrap();
        assert!(matches!(
            server.poll_event(),
            Some(ServerEvent::Register { .. })
        ));
        server.accept_registration(conn).unwrap();
        while server.poll_transmit().is_some() {}
    }
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Replaced { old, new, .. }) if old == first && new == second
    ));
    assert_eq!(server.subscribers("s"), 1);
    server.publish("s", "x").unwrap();
    assert_eq!(server.poll_transmit().map(|(to, _)| to), Some(second));
    assert!(server.poll_transmit().is_none());
    server.disconnect(first); // the old one closing does not unregister the client
    assert_eq!(server.client_id(second), Some("c"));
    server.disconnect(second);
    assert_eq!(server.connections(), 0);
}

#[test]
fn connections_are_bounded() {
    let mut server = ServerSession::new(ServerSessionConfig::new().with_max_connections(1), 1);
    let conn = server.connect().unwrap();
    assert_eq!(server.connect(), Err(ServerError::TooManyConnections(1)));
    server.disconnect(conn);
    assert!(server.connect().is_ok());
}

/// Registers `client_id` on `conn` and accepts it; drains what it sends.
fn register_and_accept(server: &mut ServerSession, conn: ConnectionId, client_id: &str) {
    let register = Register {
        client_id: client_id.into(),
        ..Register::default()
    };
    server
        .handle_message(conn, &encode(Body::Register(register)))
        .unwrap();
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Register { connection, .. }) if connection == conn
    ));
    server.accept_registration(conn).unwrap();
    while server.poll_transmit().is_some() {}
}

fn request_message(id: u64, kind: &str) -> Message {
    encode(Body::Request(Request {
        id,
        kind: kind.into(),
        payload: Bytes::new(),
    }))
}

/// A replaced connection that registers again gets nothing more: not a
/// registration, not requests beyond `max_in_flight` on top of the one it
/// still had in flight (found by fuzzing).
#[test]
fn a_replaced_connection_cannot_register_again_or_take_requests() {
    let mut server = ServerSession::new(ServerSessionConfig::new().with_max_in_flight(1), 1);
    let a = server.connect().unwrap();
    let b = server.connect().unwrap();
    register_and_accept(&mut server, a, "c1");
    server.handle_message(a, &request_message(1, "k")).unwrap();
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Request { connection, request, .. }) if connection == a && request.id == 1
    ));
    register_and_accept(&mut server, b, "c1");
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Replaced { old, new, .. }) if old == a && new == b
    ));

    // The old connection tries again: nothing it sends is taken.
    let register = Register {
        client_id: "c1".into(),
        ..Register::default()
    };
    server
        .handle_message(a, &encode(Body::Register(register)))
        .unwrap();
    server.handle_message(a, &request_message(2, "k")).unwrap();
    assert_eq!(
        server.accept_registration(a),
        Err(ServerError::NoPendingRegistration(a))
    );
    assert_eq!(
        server.refuse_registration(a, "no"),
        Err(ServerError::NoPendingRegistration(a))
    );
    assert!(server.poll_event().is_none(), "request 2 handed out");
    assert!(
        server.poll_transmit().is_none(),
        "sent on a replaced connection"
    );
    assert_eq!(server.client_id(a), None);
    assert_eq!(server.client_id(b), Some("c1"));
    for id in [1, 2] {
        assert_eq!(
            server.respond(a, RequestResult::ok(id, "late")),
            Err(ServerError::Replaced(a))
        );
    }
    assert!(server.poll_transmit().is_none());

    // Closing it leaves the client registered on the new one.
    server.disconnect(a);
    assert_eq!(
        server.respond(a, RequestResult::ok(1, "late")),
        Err(ServerError::UnknownConnection(a))
    );
    assert_eq!(server.client_id(b), Some("c1"));
}

/// A replaced connection no longer gets results: answering a request it
/// had in flight is refused with `ServerError::Replaced` and sends nothing
/// (found by fuzzing).
#[test]
fn a_result_for_a_replaced_connection_is_refused_and_not_sent() {
    let mut server = ServerSession::new(ServerSessionConfig::new(), 1);
    let a = server.connect().unwrap();
    let b = server.connect().unwrap();
    register_and_accept(&mut server, a, "c1");
    server.handle_message(a, &request_message(1, "k")).unwrap();
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Request { .. })
    ));
    register_and_accept(&mut server, b, "c1");
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Replaced { .. })
    ));
    assert_eq!(
        server.respond(a, RequestResult::ok(1, "answer")),
        Err(ServerError::Replaced(a))
    );
    assert!(server.poll_transmit().is_none());
    // The new connection's own requests are answered as usual.
    server.handle_message(b, &request_message(1, "k")).unwrap();
    assert!(matches!(
        server.poll_event(),
        Some(ServerEvent::Request { connection, .. }) if connection == b
    ));
    server.respond(b, RequestResult::ok(1, "answer")).unwrap();
    assert_eq!(server.poll_transmit().map(|(to, _)| to), Some(b));
}

/// A malformed request carrying the id of a request in flight is a
/// duplicate: dropped, with no error `Result` that would end the client's
/// request before its real answer (found by fuzzing).
#[test]
fn a_malformed_request_with_an_id_in_flight_is_a_dropped_duplicate() {
    let mut w = World::new(ClientSessionConfig::new("c1"));
    w.auto_answer = false;
    w.connect();
    let id = w.request("k", "x");
    let (conn, _) = w.held[0].clone();
    w.take_events();
    for bad in [
        request_message(id, ""),
        with_version(
            PROTOCOL_VERSION + 1,
            Body::Request(Request {
                id,
                kind: "k".into(),
                payload: Bytes::new(),
            }),
        ),
    ] {
        assert_eq!(
            w.server.handle_message(conn, &bad),
            Err(ProtoError::DuplicateRequest { id })
        );
        assert!(
            w.server.poll_transmit().is_none(),
            "an answer to a duplicate"
        );
    }
    w.pump();
    assert!(w.take_events().is_empty());
    w.answer_held();
    let events = w.take_events();
    assert_eq!(results(&events), [(id, "x".into())]);
    assert_eq!(events.len(), 1, "{events:?}");

    // A malformed request with an id not in flight is still answered.
    assert!(w
        .server
        .handle_message(conn, &request_message(id + 100, ""))
        .is_err());
    let (_, m) = w.server.poll_transmit().unwrap();
    assert!(
        matches!(decode(&m).unwrap(), Body::Result(r) if r.request_id == id + 100
            && r.status() == Status::InvalidRequest)
    );
}
