//! The closing handshake (§7), the close timeout, a transport that ends
//! without a Close (1006), keepalive, and backpressure — on the simulated clock.

mod support;

use std::time::Duration;

use support::Pair;
use wharf_core::{CloseCode, Config, Error, Event, Initiator, Message, SendError, TimeoutKind};

#[test]
fn client_initiated_close_is_clean_on_both_sides() {
    let mut p = Pair::plain(Config::default());
    p.open();
    p.client.send(Message::text("last words")).unwrap();
    p.client.close(CloseCode::NORMAL, "bye").unwrap();
    assert!(matches!(
        p.client.send(Message::text("too late")),
        Err(SendError::NotOpen(_))
    ));
    p.drive();
    // The message queued before close went out before the Close frame.
    assert_eq!(p.server_messages(), vec![Message::text("last words")]);
    let s = p.server_closed().expect("server closed").clone();
    assert_eq!(
        (s.initiator, s.code, s.clean),
        (Initiator::Remote, CloseCode::NORMAL, true)
    );
    assert_eq!(s.reason, "bye");
    let c = p.client_closed().expect("client closed").clone();
    assert_eq!(
        (c.initiator, c.code, c.clean),
        (Initiator::Local, CloseCode::NORMAL, true)
    );
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::CloseReceived {
            code: CloseCode::NORMAL,
            ..
        }
    )));
    // The server may drop the socket now; the client waits for it (§7.1.1).
    assert!(p.server.is_finished());
    assert!(!p.client.is_finished());
    let now = p.now;
    p.client.handle_eof(now);
    assert!(p.client.is_finished());
}

#[test]
fn client_gives_up_waiting_for_the_server_to_drop_the_socket() {
    let mut p = Pair::plain(Config::default());
    p.open();
    p.client.close(CloseCode::NORMAL, "").unwrap();
    p.drive();
    assert!(p.client.is_closed() && !p.client.is_finished());
    assert!(p.advance(Duration::from_secs(60)));
    assert!(p.client.is_finished());
}

#[test]
fn server_initiated_close_echoes_code() {
    let mut p = Pair::plain(Config::default());
    p.open();
    p.server.close(CloseCode::GOING_AWAY, "shutdown").unwrap();
    p.drive();
    let c = p.client_closed().unwrap();
    assert_eq!(
        (c.initiator, c.code, c.clean),
        (Initiator::Remote, CloseCode::GOING_AWAY, true)
    );
    assert_eq!(c.reason, "shutdown");
    let s = p.server_closed().unwrap();
    assert_eq!(
        (s.initiator, s.code, s.clean),
        (Initiator::Local, CloseCode::GOING_AWAY, true)
    );
    assert!(p.server.is_finished());
}

#[test]
fn the_close_reply_echoes_the_code_and_the_reason() {
    let mut p = Pair::plain(Config::default());
    p.open();
    let now = p.now;
    let mut body = 1012u16.to_be_bytes().to_vec();
    body.extend_from_slice("restarting, back in 30 s".as_bytes());
    p.server
        .handle_input(now, &support::client_frame(0x88, &body, [9, 8, 7, 6]));
    let mut out = Vec::new();
    while p.server.poll_transmit(&mut out) > 0 {}
    assert_eq!(support::parse_frames(&out), vec![(0x88, body)]);
}

#[test]
fn close_without_code_is_reported_as_1005() {
    let mut p = Pair::plain(Config::default());
    p.open();
    let now = p.now;
    p.server
        .handle_input(now, &support::client_frame(0x88, b"", [1, 2, 3, 4]));
    let mut out = Vec::new();
    while p.server.poll_transmit(&mut out) > 0 {}
    // The echo carries no code either.
    assert_eq!(out, [0x88, 0x00]);
    let mut events = Vec::new();
    while let Some(e) = p.server.poll_event() {
        events.push(e);
    }
    let info = support::closed(&events).unwrap();
    assert_eq!(info.code, CloseCode::NO_STATUS);
    assert!(info.clean);
}

#[test]
fn close_timeout_when_the_peer_never_answers() {
    let mut config = Config::default();
    config.close_timeout = Duration::from_secs(3);
    let mut p = Pair::plain(config);
    p.open();
    p.s2c_cut = true;
    let start = p.now;
    p.client.close(CloseCode::NORMAL, "bye").unwrap();
    p.drive();
    assert!(p.client_closed().is_none());
    assert!(p.advance(Duration::from_secs(10)));
    assert_eq!(p.now - start, Duration::from_secs(3));
    let c = p.client_closed().expect("closed by timeout");
    assert!(!c.clean);
    assert_eq!(c.initiator, Initiator::Local);
    assert_eq!(c.error, Some(Error::Timeout(TimeoutKind::Close)));
    assert!(p.client.is_finished());
}

#[test]
fn transport_end_without_close_is_1006() {
    let mut p = Pair::plain(Config::default());
    p.open();
    let now = p.now;
    p.client.handle_eof(now);
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    let c = support::closed(&events).unwrap();
    assert_eq!(
        (c.initiator, c.code, c.clean),
        (Initiator::Remote, CloseCode::ABNORMAL, false)
    );
    assert_eq!(c.error, Some(Error::TransportClosed));
    assert!(p.client.is_finished());
}

#[test]
fn keepalive_pings_a_quiet_but_live_peer_and_stays_open() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_secs(10));
    config.pong_timeout = Duration::from_secs(5);
    let mut p = Pair::plain(config);
    p.open();
    let start = p.now;
    while p.now - start < Duration::from_secs(120) {
        assert!(p.advance(Duration::from_secs(60)));
    }
    assert!(p.client.is_open() && p.server.is_open());
    let pings = p
        .server_events
        .iter()
        .filter(|e| matches!(e, Event::Ping(_)))
        .count();
    let pongs = p
        .client_events
        .iter()
        .filter(|e| matches!(e, Event::Pong(_)))
        .count();
    assert!(pings >= 10, "{pings} pings in 120 s");
    assert!(pongs >= 10);
}

#[test]
fn keepalive_detects_a_silent_peer_with_1011() {
    let mut config = Config::default();
    config.ping_interval = Some(Duration::from_secs(10));
    config.pong_timeout = Duration::from_secs(5);
    let mut p = Pair::plain(config);
    p.open();
    let start = p.now;
    p.s2c_cut = true; // the server's answers are lost
    while p.client_closed().is_none() && p.advance(Duration::from_secs(60)) {}
    let c = p.client_closed().expect("keepalive failure").clone();
    assert_eq!(p.now - start, Duration::from_secs(15));
    assert_eq!(c.code, CloseCode::INTERNAL_ERROR);
    assert_eq!(c.error, Some(Error::Timeout(TimeoutKind::Pong)));
    assert!(!c.clean);
}

#[test]
fn handshake_timeout() {
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_secs(7);
    let mut p = Pair::plain(config);
    p.accept = None; // the application never decides
    p.drive();
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Request(_))));
    assert!(p.advance(Duration::from_secs(60)));
    let s = p.server_closed().expect("server gave up").clone();
    assert_eq!(s.error, Some(Error::Timeout(TimeoutKind::Handshake)));
    while p.client_closed().is_none() && p.advance(Duration::from_secs(60)) {}
    assert_eq!(
        p.client_closed().unwrap().error,
        Some(Error::Timeout(TimeoutKind::Handshake))
    );
}

#[test]
fn full_send_queue_hands_the_message_back() {
    let mut config = Config::default();
    config.max_send_queue = 1000;
    let mut p = Pair::plain(config);
    p.open();
    p.client.send(Message::binary(vec![0; 600])).unwrap();
    match p.client.send(Message::binary(vec![1; 600])) {
        Err(SendError::Full(m)) => assert_eq!(m, Message::binary(vec![1; 600])),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(p.client.queued_bytes(), 600);
    p.drive();
    assert_eq!(p.client.queued_bytes(), 0);
    p.client.send(Message::binary(vec![1; 600])).unwrap();
    p.drive();
    assert_eq!(p.server_messages().len(), 2);
}

#[test]
fn pong_goes_between_the_fragments_of_a_large_message() {
    let mut config = Config::default();
    config.max_outgoing_frame = 1024;
    let mut p = Pair::plain(config);
    p.open();
    let big = Message::binary(vec![7u8; 1024 * 1024]);
    p.server.send(big.clone()).unwrap();
    // The server writes its first batch, then a Ping arrives.
    let mut first = Vec::new();
    let _ = p.server.poll_transmit(&mut first);
    let now = p.now;
    p.server
        .handle_input(now, &support::client_frame(0x89, b"?", [9, 9, 9, 9]));
    let mut rest = Vec::new();
    while p.server.poll_transmit(&mut rest) > 0 {}
    let frames: Vec<u8> = support::parse_frames(&[first.clone(), rest.clone()].concat())
        .into_iter()
        .map(|(b0, _)| b0)
        .collect();
    let pong_at = frames.iter().position(|b| *b == 0x8a).expect("a pong");
    assert!(
        pong_at > 0 && pong_at < frames.len() - 1,
        "pong between fragments"
    );
    p.client.handle_input(now, &first);
    p.client.handle_input(now, &rest);
    let mut got = Vec::new();
    while let Some(e) = p.client.poll_event() {
        got.push(e);
    }
    assert_eq!(
        got,
        vec![
            Event::Pong(wharf_core::Bytes::from_static(b"?")),
            Event::Message(big)
        ]
    );
}

#[test]
fn unsent_messages_are_handed_back_after_a_failure() {
    let mut p = Pair::plain(Config::default());
    p.open();
    p.client.send(Message::text("one")).unwrap();
    p.client.send(Message::text("two")).unwrap();
    let now = p.now;
    p.client.handle_eof(now);
    assert_eq!(
        p.client.take_unsent(),
        vec![Message::text("one"), Message::text("two")]
    );
}

#[test]
fn a_failed_connection_whose_peer_stops_reading_is_abandoned() {
    let mut config = Config::default();
    config.close_timeout = Duration::from_secs(2);
    let mut p = Pair::plain(config);
    p.open();
    p.c2s_cut = true;
    p.s2c_cut = true;
    // Lots queued for a peer that reads nothing, then a protocol violation.
    p.server.send(Message::binary(vec![0; 4 << 20])).unwrap();
    let now = p.now;
    p.server
        .handle_input(now, &support::client_frame(0x83, b"", [1, 2, 3, 4]));
    while p.server.poll_event().is_some() {}
    assert!(p.server.is_closed());
    // The adapter only manages to write one batch: the socket is full.
    let mut out = Vec::new();
    assert!(p.server.poll_transmit(&mut out) > 0);
    assert!(!p.server.is_finished(), "still flushing");
    assert!(p.advance(Duration::from_secs(10)));
    assert!(p.server.is_finished() && p.server.is_abandoned());
}
