//! The receive bound: what the application has not taken counts against
//! `max_receive_queue` / `max_receive_events`; at the bound the connection
//! decodes nothing more and stops wanting input, and resumes at half; the
//! keepalive and the closing handshake still end a connection whose
//! application stopped taking; and an adapter that hands messages on
//! (`poll_event_held` / `release`) keeps them counted until released.

mod support;

use std::time::Duration;

use support::{server_frame, Pair};
use wharf_core::{CloseCode, Config, Error, Event, Message, TimeoutKind};

fn bounded(events: usize, bytes: usize) -> Config {
    let mut config = Config::default();
    config.max_receive_events = events;
    config.max_receive_queue = bytes;
    config
}

/// `n` binary messages of `len` bytes as the server sends them, numbered in
/// their first byte.
fn burst(n: usize, len: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| {
            let mut payload = vec![0u8; len];
            payload[0] = i as u8;
            server_frame(0x82, &payload)
        })
        .collect()
}

fn numbers(messages: &[Message]) -> Vec<u8> {
    messages.iter().map(|m| m.payload()[0]).collect()
}

#[test]
fn decoding_stops_at_the_event_bound_and_resumes_at_half() {
    let mut p = Pair::plain(bounded(8, 1 << 20));
    p.open();
    let now = p.now;
    p.client.handle_input(now, &burst(40, 10));
    // Eight queued; the rest waits, undecoded, and no more is wanted.
    assert!(!p.client.wants_read());
    let mut taken = Vec::new();
    for _ in 0..4 {
        match p.client.poll_event() {
            Some(Event::Message(m)) => taken.push(m),
            other => panic!("{other:?}"),
        }
    }
    // Four left of eight: half the bound, so decoding went on.
    assert!(p.client.wants_read() || p.client.has_events());
    while let Some(event) = p.client.poll_event() {
        if let Event::Message(m) = event {
            taken.push(m);
        }
    }
    assert_eq!(numbers(&taken), (0..40).collect::<Vec<u8>>());
    assert!(p.client.wants_read(), "all taken: reading again");
}

#[test]
fn the_byte_bound_holds_whatever_arrives_in_one_read() {
    // 64 messages of 64 KiB in one read, 256 KiB bound: at most the bound
    // plus one message waits.
    let mut p = Pair::plain(bounded(10_000, 256 * 1024));
    p.open();
    let now = p.now;
    p.client.handle_input(now, &burst(64, 64 * 1024));
    assert!(!p.client.wants_read());
    let mut got = Vec::new();
    let mut most_waiting = 0;
    loop {
        // What waits right now (each taken message frees its place).
        let mut waiting = Vec::new();
        while let Some(event) = p.client.poll_event() {
            waiting.push(event);
            if waiting.len() > 4 {
                break;
            }
        }
        if waiting.is_empty() {
            break;
        }
        most_waiting = most_waiting.max(waiting.len());
        got.extend(support::messages(&waiting));
    }
    assert_eq!(numbers(&got), (0..64).collect::<Vec<u8>>());
    assert!(most_waiting <= 5);
}

#[test]
fn a_peer_that_keeps_sending_to_a_stuck_application_is_ended_by_the_keepalive() {
    let mut config = bounded(4, 1 << 20);
    config.ping_interval = Some(Duration::from_secs(10));
    config.pong_timeout = Duration::from_secs(5);
    let mut p = Pair::plain(config);
    p.open();
    let now = p.now;
    // The application never takes anything: the client stops reading.
    p.client.handle_input(now, &burst(100, 10));
    assert!(!p.client.wants_read());
    // Its keepalive still goes out, and with nothing read the pong deadline
    // fails it (1011), whatever the peer sends meanwhile.
    p.now += Duration::from_secs(10);
    p.client.handle_timeout(p.now);
    let mut out = Vec::new();
    while p.client.poll_transmit(&mut out) > 0 {}
    let frames = support::parse_frames(&out);
    assert!(frames.iter().any(|f| f.0 == 0x89), "a Ping: {frames:?}");
    p.now += Duration::from_secs(5);
    p.client.handle_timeout(p.now);
    out.clear();
    while p.client.poll_transmit(&mut out) > 0 {}
    let frames = support::parse_frames(&out);
    assert_eq!(frames.last().map(|f| f.0), Some(0x88));
    assert_eq!(&frames.last().unwrap().1[..2], &1011u16.to_be_bytes());
    // The application still gets what was queued, then the end.
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    let info = support::closed(&events).expect("closed");
    assert_eq!(info.error, Some(Error::Timeout(TimeoutKind::Pong)));
    assert_eq!(support::messages(&events).len(), 4);
}

#[test]
fn closing_reads_on_past_the_bound_to_the_peers_close() {
    let mut p = Pair::plain(bounded(4, 1 << 20));
    p.open();
    let now = p.now;
    let mut wire = burst(20, 10);
    p.client.handle_input(now, &wire);
    assert!(!p.client.wants_read());
    // The application closes without taking anything: reading goes on, the
    // messages that do not fit are dropped and counted, and the peer's
    // Close behind them ends the handshake cleanly.
    p.client.close(CloseCode::NORMAL, "bye").unwrap();
    assert!(p.client.wants_read());
    wire = burst(5, 10);
    wire.extend(server_frame(0x88, &1000u16.to_be_bytes()));
    p.client.handle_input(now, &wire);
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    let info = support::closed(&events).expect("closed");
    assert!(info.clean, "{info:?}");
    let kept = support::messages(&events).len() as u64;
    assert_eq!(kept + p.client.discarded_messages(), 25);
    assert!(p.client.discarded_messages() > 0);
}

#[test]
fn held_messages_count_until_released() {
    let mut p = Pair::plain(bounded(4, 1 << 20));
    p.open();
    let now = p.now;
    p.client.handle_input(now, &burst(10, 10));
    let mut lent = Vec::new();
    while let Some(e) = p.client.poll_event_held() {
        lent.push(e);
    }
    // Handed out but not released: still counted, nothing more decoded.
    assert_eq!(lent.len(), 4);
    assert!(!p.client.wants_read());
    p.client.release(2, 20);
    // Two held of four: half the bound, decoding resumed.
    while let Some(e) = p.client.poll_event_held() {
        lent.push(e);
    }
    assert_eq!(lent.len(), 6);
    p.client.release(4, 40);
    while let Some(e) = p.client.poll_event_held() {
        lent.push(e);
    }
    p.client.release(4, 40);
    assert_eq!(
        numbers(&support::messages(&lent)),
        (0..10).collect::<Vec<u8>>()
    );
    assert!(p.client.wants_read());
}

#[test]
fn a_violation_behind_held_messages_waits_for_their_release() {
    let mut p = Pair::plain(Config::default());
    p.open();
    let now = p.now;
    // A message, then a frame with a reserved bit set (1002).
    let mut wire = server_frame(0x82, b"first");
    wire.extend([0xC2, 0x00]);
    p.client.handle_input(now, &wire);
    assert!(matches!(
        p.client.poll_event_held(),
        Some(Event::Message(_))
    ));
    // Held: the failure waits, so that an answer to the message goes first.
    assert!(p.client.poll_event_held().is_none());
    assert!(!p.client.is_closed());
    p.client.send(Message::text("answer")).unwrap();
    p.client.release(1, 5);
    let closed = std::iter::from_fn(|| p.client.poll_event())
        .find_map(|e| match e {
            Event::Closed(info) => Some(info),
            _ => None,
        })
        .expect("closed");
    assert_eq!(closed.code, CloseCode::PROTOCOL_ERROR);
    let mut out = Vec::new();
    while p.client.poll_transmit(&mut out) > 0 {}
    let frames = support::parse_frames(&out);
    assert_eq!(frames.len(), 2, "the answer, then the Close: {frames:?}");
    assert_eq!(frames[0].1, b"answer");
    assert_eq!(frames[1].0, 0x88);
}

#[test]
fn a_violation_behind_messages_never_released_applies_after_the_close_timeout() {
    let mut p = Pair::plain(Config::default());
    p.open();
    let now = p.now;
    let mut wire = server_frame(0x82, b"first");
    wire.extend([0xC2, 0x00]);
    p.client.handle_input(now, &wire);
    assert!(matches!(
        p.client.poll_event_held(),
        Some(Event::Message(_))
    ));
    let deadline = p.client.poll_timeout().expect("the failure is bounded");
    assert!(deadline <= now + Config::default().close_timeout);
    p.client.handle_timeout(deadline);
    let closed = std::iter::from_fn(|| p.client.poll_event_held())
        .find_map(|e| match e {
            Event::Closed(info) => Some(info),
            _ => None,
        })
        .expect("closed");
    assert_eq!(closed.code, CloseCode::PROTOCOL_ERROR);
}
