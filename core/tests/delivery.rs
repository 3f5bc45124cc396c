//! Every message arrives identically whatever the chunking of the bytes:
//! whole, one byte at a time, or odd sizes; plaintext and TLS; both directions.

mod support;

use support::Pair;
use wharf_core::test_certs::TestPki;
use wharf_core::{CloseCode, Config, Event, Message};

fn corpus() -> Vec<Message> {
    vec![
        Message::text(""),
        Message::text("Hello"),
        Message::text("κόσμε 𝄞 € — ünïcödé ".repeat(40)),
        Message::binary(Vec::new()),
        Message::binary((0..=255u8).collect::<Vec<_>>()),
        Message::binary(vec![0x5A; 70_000]),
        Message::text("x".repeat(200_000)),
    ]
}

fn exchange(mut p: Pair) -> (Vec<Event>, Vec<Event>) {
    exchange_in(&mut p)
}

/// Opens `p`, sends the corpus both ways with pings between, and returns
/// what each side received (messages, pings, pongs).
fn exchange_in(p: &mut Pair) -> (Vec<Event>, Vec<Event>) {
    p.open();
    for m in corpus() {
        p.client.send(m.clone()).unwrap();
        p.server.send(m).unwrap();
        p.client.ping(b"mid").unwrap();
    }
    p.drive();
    let strip = |events: &[Event]| -> Vec<Event> {
        events
            .iter()
            .filter(|e| matches!(e, Event::Message(_) | Event::Ping(_) | Event::Pong(_)))
            .cloned()
            .collect()
    };
    (strip(&p.client_events), strip(&p.server_events))
}

fn small_frames() -> Config {
    let mut c = Config::default();
    c.max_outgoing_frame = 4096; // many fragments, pings between them
    c
}

#[test]
fn plaintext_any_chunking_gives_identical_messages() {
    let whole = exchange(Pair::plain(small_frames()));
    assert_eq!(support::messages(&whole.0), corpus());
    assert_eq!(support::messages(&whole.1), corpus());
    for chunk in [1usize, 2, 3, 7, 127, 1500] {
        let mut p = Pair::plain(small_frames());
        p.chunk = chunk;
        assert_eq!(exchange(p), whole, "chunk size {chunk}");
    }
}

/// `exchange` reading through `read_with` whenever it lends its buffer;
/// also returns how many reads did.
fn exchange_direct(mut p: Pair) -> ((Vec<Event>, Vec<Event>), usize) {
    p.direct_read = true;
    let events = exchange_in(&mut p);
    (events, p.direct_reads)
}

#[test]
fn reading_into_the_connections_buffer_gives_identical_messages() {
    // Large frames (default 64 KiB fragments of the 70,000 and 200,000
    // byte messages) read straight into the input buffer, in reads of any
    // size; masked (to the server) and unmasked (to the client).
    let whole = exchange(Pair::plain(Config::default()));
    assert_eq!(support::messages(&whole.0), corpus());
    assert_eq!(support::messages(&whole.1), corpus());
    for chunk in [1usize, 1500, 20_000, 65_536, usize::MAX] {
        let mut p = Pair::plain(Config::default());
        p.chunk = chunk;
        let (events, direct) = exchange_direct(p);
        assert_eq!(events, whole, "chunk size {chunk}");
        // Reads of 64 KiB and more take a whole frame or all but a few
        // bytes of it, and never end between frames: nothing large is left
        // to come at the next read.
        if chunk <= 20_000 {
            assert!(
                direct > 0,
                "chunk size {chunk}: read_with never lent its buffer"
            );
        }
    }
    // Small frames never borrow it: they go through the caller's buffer.
    let (events, direct) = exchange_direct(Pair::plain(small_frames()));
    assert_eq!(support::messages(&events.0), corpus());
    assert_eq!(direct, 0);
}

#[test]
fn read_with_lends_nothing_with_tls_or_after_the_end() {
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost"]);
    let client_tls = pki.client_tls();
    let mut p = Pair::tls(
        Config::default(),
        "wss://localhost/",
        &client_tls,
        &server_tls,
    );
    p.chunk = 20_000;
    let (events, direct) = exchange_direct(p);
    assert_eq!(support::messages(&events.0), corpus());
    assert_eq!(direct, 0, "TLS input is decrypted, not read into place");

    // Plaintext, a 100 KiB frame half arrived: lent; after the end: not.
    let mut p = Pair::plain(Config::default());
    p.open();
    p.client.send(Message::binary(vec![3u8; 60_000])).unwrap();
    let mut wire = Vec::new();
    while p.client.poll_transmit(&mut wire) > 0 {}
    let now = p.now;
    assert!(p.server.read_with(now, |_| ()).is_none(), "no frame yet");
    p.server.handle_input(now, &wire[..1000]);
    let lent = p.server.read_with(now, |room| {
        room.extend_from_slice(&wire[1000..30_000]);
    });
    assert!(lent.is_some(), "59,000 payload bytes still to come");
    // A read that appends nothing changes nothing.
    assert!(p.server.read_with(now, |_| ()).is_some());
    p.server.handle_eof(now);
    assert!(p.server.read_with(now, |_| ()).is_none(), "after the end");
}

#[test]
fn read_with_lends_between_large_frames_until_a_small_one_or_a_quiet_second() {
    // The payload lengths of the messages `conn` delivered (then dropped).
    fn delivered(conn: &mut wharf_core::Connection) -> Vec<usize> {
        std::iter::from_fn(|| conn.poll_event())
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.payload().len()),
                _ => None,
            })
            .collect()
    }
    let mut p = Pair::plain(Config::default());
    p.open();
    let mut wire = Vec::new();
    for len in [40_000usize, 20_000, 100] {
        p.client.send(Message::binary(vec![7u8; len])).unwrap();
    }
    while p.client.poll_transmit(&mut wire) > 0 {}
    let now = p.now;
    // Masked frames: 2 + 2 (16-bit length) + 4 (mask) header bytes.
    let first = 8 + 40_000;
    p.server.handle_input(now, &wire[..first]);
    assert!(
        p.server.read_with(now, |_| ()).is_none(),
        "the undelivered message still holds the buffer"
    );
    assert_eq!(delivered(&mut p.server), [40_000]);
    // Between frames after a 40,000 byte one: room for another like it,
    // filled with the whole next frame (header included).
    let second = 8 + 20_000;
    let room = p.server.read_with(now, |room| {
        let room_len = room.capacity();
        room.extend_from_slice(&wire[first..first + second]);
        room_len
    });
    assert!(room.is_some_and(|len| len >= 40_000 + 8), "{room:?}");
    assert_eq!(delivered(&mut p.server), [20_000]);
    // After the 20,000 byte frame, still lent; the read takes the small
    // frame, and after it nothing is lent.
    let lent = p.server.read_with(now, |room| {
        room.extend_from_slice(&wire[first + second..]);
    });
    assert!(lent.is_some());
    assert_eq!(delivered(&mut p.server), [100]);
    assert!(
        p.server.read_with(now, |_| ()).is_none(),
        "after a small frame"
    );

    // A frame of 64 KiB (a buffer larger than an idle connection keeps),
    // then a quiet second: the buffer is given back, and the next read
    // between frames goes through the caller's buffer again.
    p.client.send(Message::binary(vec![7u8; 65_536])).unwrap();
    wire.clear();
    while p.client.poll_transmit(&mut wire) > 0 {}
    assert_eq!(wire.len(), 14 + 65_536, "one frame");
    p.server.handle_input(now, &wire);
    assert_eq!(delivered(&mut p.server), [65_536]);
    assert!(p.server.read_with(now, |_| ()).is_some());
    let later = now + std::time::Duration::from_secs(2);
    p.server.handle_timeout(later);
    assert!(
        p.server.read_with(later, |_| ()).is_none(),
        "after a quiet second"
    );
}

#[test]
fn tls_any_chunking_gives_identical_messages() {
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost"]);
    let client_tls = pki.client_tls();
    let make = |chunk| {
        let mut p = Pair::tls(small_frames(), "wss://localhost/", &client_tls, &server_tls);
        p.chunk = chunk;
        p
    };
    let whole = exchange(make(usize::MAX));
    assert_eq!(support::messages(&whole.0), corpus());
    for chunk in [1usize, 5, 1000] {
        assert_eq!(exchange(make(chunk)), whole, "chunk size {chunk}");
    }
}

#[test]
fn tls_with_default_frames_gives_identical_messages() {
    // Large unmasked frames go to the TLS session without the framing
    // buffer; Pongs and small frames queued around them keep their order,
    // so both sides see exactly what they see over plaintext.
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost"]);
    let client_tls = pki.client_tls();
    let tls = exchange(Pair::tls(
        Config::default(),
        "wss://localhost/",
        &client_tls,
        &server_tls,
    ));
    assert_eq!(support::messages(&tls.0), corpus());
    assert_eq!(support::messages(&tls.1), corpus());
    assert_eq!(tls, exchange(Pair::plain(Config::default())));
}

/// A socket that takes at most `limit` bytes per write (gathering across
/// slices, as writev does) and would block on every third call.
struct Throttled {
    taken: Vec<u8>,
    calls: usize,
    limit: usize,
}

impl std::io::Write for Throttled {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_vectored(&[std::io::IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls % 3 == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(self.limit - n);
            self.taken.extend_from_slice(&b[..take]);
            n += take;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The server's output, taken by `transmit_to` into a throttled socket and
/// by `poll_transmit` in turns, reaches the client whole and in order.
fn transmit_to_and_poll_transmit_mix(make: impl Fn() -> Pair) {
    // Frames cut inside headers and payloads, and whole frames taken at once.
    for limit in [7, 1000, 100_000] {
        let mut p = make();
        p.open();
        for m in corpus() {
            p.server.send(m).unwrap();
        }
        let mut sink = Throttled {
            taken: Vec::new(),
            calls: 0,
            limit,
        };
        let mut turns = 0;
        while p.server.wants_write() {
            turns += 1;
            assert!(turns < 1_000_000, "the output never drained");
            if turns % 5 == 0 {
                let _ = p.server.poll_transmit(&mut sink.taken);
            } else {
                p.server.transmit_to(&mut sink).unwrap();
            }
        }
        let now = p.now;
        p.client.handle_input(now, &sink.taken);
        let mut got = Vec::new();
        while let Some(event) = p.client.poll_event() {
            if let Event::Message(m) = event {
                got.push(m);
            }
        }
        assert_eq!(got, corpus(), "socket taking {limit} bytes a call");
    }
}

#[test]
fn transmit_to_a_throttled_socket_plaintext() {
    transmit_to_and_poll_transmit_mix(|| Pair::plain(Config::default()));
}

#[test]
fn transmit_to_a_throttled_socket_tls() {
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost"]);
    let client_tls = pki.client_tls();
    transmit_to_and_poll_transmit_mix(|| {
        Pair::tls(
            Config::default(),
            "wss://localhost/",
            &client_tls,
            &server_tls,
        )
    });
}

#[test]
fn a_large_message_goes_to_the_socket_in_one_gathered_write() {
    // 1 MiB in 64 KiB frames: every header and payload slice in one
    // write_vectored call, straight from the message.
    let mut p = Pair::plain(Config::default());
    p.open();
    let message = Message::binary((0..1 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    p.server.send(message.clone()).unwrap();
    let mut sink = Throttled {
        taken: Vec::new(),
        calls: 0,
        limit: usize::MAX,
    };
    let written = p.server.transmit_to(&mut sink).unwrap();
    assert_eq!(sink.calls, 1, "one write for the whole message");
    assert_eq!(
        written,
        (1 << 20) + 16 * 10,
        "16 frames with 10-byte headers"
    );
    assert!(!p.server.wants_write());
    let now = p.now;
    p.client.handle_input(now, &sink.taken);
    assert!(matches!(p.client.poll_event(), Some(Event::Message(m)) if m == message));
}

#[test]
fn pongs_go_between_frames_the_socket_takes_in_pieces() {
    // While the server writes a large message from the message itself and
    // the socket takes it in pieces cut anywhere, the client's pings are
    // answered: each Pong must go between two frames, never inside one.
    for limit in [3, 1000, 65_541, 100_000] {
        let mut p = Pair::plain(Config::default());
        p.open();
        let message = Message::binary((0..1 << 20).map(|i| (i % 253) as u8).collect::<Vec<_>>());
        p.server.send(message.clone()).unwrap();
        let mut sink = Throttled {
            taken: Vec::new(),
            calls: 0,
            limit,
        };
        let mut pings = 0;
        let mut turns = 0;
        while p.server.wants_write() {
            turns += 1;
            assert!(turns < 2_000_000, "the output never drained");
            p.server.transmit_to(&mut sink).unwrap();
            // Pings while the message is still going out.
            if p.server.queued_bytes() > 0 && (turns % 7 == 0 || limit > 1000) {
                p.client.ping(b"p").unwrap();
                let mut ping = Vec::new();
                while p.client.poll_transmit(&mut ping) > 0 {}
                let now = p.now;
                p.server.handle_input(now, &ping);
                while let Some(event) = p.server.poll_event() {
                    assert!(matches!(event, Event::Ping(_)), "{event:?}");
                }
                pings += 1;
            }
        }
        let now = p.now;
        p.client.handle_input(now, &sink.taken);
        let (mut pongs, mut pongs_before_message) = (0, 0);
        let mut got = None;
        while let Some(event) = p.client.poll_event() {
            match event {
                Event::Pong(_) => pongs += 1,
                Event::Message(m) => {
                    got = Some(m);
                    pongs_before_message = pongs;
                }
                other => panic!("socket taking {limit} bytes a call: {other:?}"),
            }
        }
        // Unanswered pings are answered together (at most 16 Pongs wait).
        assert!(pongs > 0 && pongs <= pings, "{pongs} pongs, {pings} pings");
        assert!(
            pongs_before_message > 0,
            "socket taking {limit} bytes a call"
        );
        assert_eq!(got, Some(message), "socket taking {limit} bytes a call");
    }
}

/// An open plaintext pair whose server sent a 1 MiB message of which the
/// socket took the first `taken` bytes (the sink now blocks).
fn half_written(taken: usize) -> (Pair, Message, Throttled) {
    let mut p = Pair::plain(Config::default());
    p.open();
    let message = Message::binary(vec![0x42; 1 << 20]);
    p.server.send(message.clone()).unwrap();
    let mut sink = Throttled {
        taken: Vec::new(),
        calls: 1, // the next call takes `limit`, the one after blocks
        limit: taken,
    };
    p.server.transmit_to(&mut sink).unwrap();
    assert_eq!(sink.taken.len(), taken);
    (p, message, sink)
}

#[test]
fn a_failure_while_a_frame_is_half_written_finishes_the_frame_before_the_close() {
    // The socket took the first 70,000 bytes of a 1 MiB message (its second
    // 64 KiB frame is half written) when the client breaks the protocol.
    // take_unsent hands the message back, but the half-written frame is
    // finished first: the Close must not land inside it.
    for taken in [70_000, 65_546 + 5] {
        let (mut p, message, mut sink) = half_written(taken);
        let now = p.now;
        // An unmasked client frame: 1002.
        p.server
            .handle_input(now, &support::server_frame(0x82, b"unmasked"));
        while p.server.poll_event().is_some() {}
        assert_eq!(p.server.take_unsent(), vec![message]);
        while p.server.poll_transmit(&mut sink.taken) > 0 {}
        let frames = support::parse_frames(&sink.taken);
        let (close, data) = frames.split_last().unwrap();
        assert_eq!(close.0, 0x88, "a Close frame last");
        assert_eq!(&close.1[..2], &1002u16.to_be_bytes());
        assert_eq!(data.len(), 2, "the first frame and the finished second one");
        assert!(data.iter().all(|(_, payload)| payload.len() == 64 * 1024));
    }
}

#[test]
fn the_end_of_the_transport_while_a_frame_is_half_written_still_finishes_the_frame() {
    // The socket took the first 70,000 bytes of a 1 MiB message (its second
    // 64 KiB frame is half written) when the peer ended its side. The
    // connection is closed, but the rest of that frame still goes out,
    // nothing after it, and `wants_write` says so exactly; a peer that no
    // longer reads holds the connection for the close timeout at most.
    for peer_reads in [true, false] {
        let (mut p, message, mut sink) = half_written(70_000);
        let now = p.now;
        p.server.handle_eof(now);
        match p.server.poll_event() {
            Some(Event::Closed(info)) => assert_eq!(info.code, CloseCode::ABNORMAL),
            other => panic!("expected Closed, got {other:?}"),
        }
        assert!(p.server.wants_write(), "the rest of the frame is due");
        assert!(!p.server.is_finished());
        if peer_reads {
            let mut rest = Throttled {
                taken: Vec::new(),
                calls: 0,
                limit: usize::MAX,
            };
            while p.server.wants_write() {
                assert!(p.server.transmit_to(&mut rest).unwrap() > 0);
            }
            sink.taken.extend_from_slice(&rest.taken);
            let frames = support::parse_frames(&sink.taken);
            assert_eq!(frames.len(), 2, "the first frame and the finished second");
            assert!(frames.iter().all(|(_, p)| p.len() == 64 * 1024));
            assert_eq!(p.server.transmit_to(&mut rest).unwrap(), 0);
            assert!(p.server.is_finished());
        } else {
            let deadline = p.server.poll_timeout().expect("a bound on the wait");
            assert!(deadline - now <= Config::default().close_timeout);
            p.server.handle_timeout(deadline);
            assert!(p.server.is_finished() && p.server.is_abandoned());
        }
        assert_eq!(p.server.take_unsent(), vec![message]);
    }
}

#[test]
fn a_large_message_over_tls_fills_whole_records() {
    // rustls cuts each write into records of at most 16 KiB of plaintext;
    // a server's frames are sized so that each fills whole records (a
    // 64 KiB payload with its header would make four records and a
    // 10-byte one: 80 records for 1 MiB, 16 of them short). Counted on
    // the wire: application-data records.
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost"]);
    let client_tls = pki.client_tls();
    for max_frame in [20_000, 64 * 1024, 100_000, 1 << 20] {
        let mut config = Config::default();
        config.max_outgoing_frame = max_frame;
        let mut p = Pair::tls(config, "wss://localhost/", &client_tls, &server_tls);
        p.open();
        let wire = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let tap = wire.clone();
        p.s2c_filter = Some(Box::new(move |w| tap.borrow_mut().extend_from_slice(w)));
        let message = Message::binary((0..1 << 20).map(|i| i as u8).collect::<Vec<_>>());
        p.server.send(message.clone()).unwrap();
        p.drive();
        assert_eq!(p.client_messages(), vec![message]);

        let wire = wire.borrow();
        let mut records = Vec::new();
        let mut rest = &wire[..];
        while rest.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            assert_eq!(rest[0], 23, "application data only after the handshake");
            records.push(len);
            rest = &rest[5 + len..];
        }
        assert!(rest.is_empty(), "whole records");
        // 1 MiB is 64 records of 16 KiB; the frames' headers add a few
        // bytes, hence at most two more, short ones (the last frame's).
        let full = 16 * 1024 + 17; // plaintext, content type, AEAD tag
        let short = records.iter().filter(|&&l| l < full).count();
        assert!(
            records.len() <= 66 && short <= 2,
            "frames of {max_frame}: {} records, {short} short: {records:?}",
            records.len()
        );
    }
}
