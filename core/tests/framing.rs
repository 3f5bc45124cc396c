//! RFC 6455 §5 and §7 MUST-fail rules, one test each, with the close code sent;
//! and the §5.7 examples as byte literals.

mod support;

use support::{client_frame, parse_frames, server_frame, Pair};
use wharf_core::{
    CloseCode, CloseInfo, Config, Error, Event, Initiator, Message, MessageMode, ProtocolError,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn open_pair(config: Config) -> Pair {
    let mut p = Pair::plain(config);
    p.open();
    p
}

fn server_fails_on(config: Config, bytes: &[u8]) -> (CloseInfo, Vec<(u8, Vec<u8>)>) {
    support::server_fails_on(open_pair(config), bytes)
}

fn assert_fails(bytes: &[u8], code: CloseCode, err: ProtocolError) {
    assert_fails_with(Config::default(), bytes, code, err);
}

fn assert_fails_with(config: Config, bytes: &[u8], code: CloseCode, err: ProtocolError) {
    let (info, frames) = server_fails_on(config, bytes);
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.code, code, "{info:?}");
    assert!(!info.clean);
    assert_eq!(info.error, Some(Error::Protocol(err)));
    let close = frames.last().expect("a Close frame was sent");
    assert_eq!(close.0, 0x88, "last frame is a Close");
    assert_eq!(
        &close.1[..2],
        &code.0.to_be_bytes(),
        "Close carries the code"
    );
}

#[test]
fn unmasked_client_frame_is_1002() {
    assert_fails(
        &server_frame(0x81, b"hi"),
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::UnmaskedClientFrame,
    );
}

#[test]
fn masked_server_frame_is_1002() {
    let mut p = open_pair(Config::default());
    let now = p.now;
    p.client.handle_input(now, &client_frame(0x81, b"hi", KEY));
    let mut out = Vec::new();
    while p.client.poll_transmit(&mut out) > 0 {}
    let frames = parse_frames(&out);
    assert_eq!(frames.last().unwrap().0, 0x88);
    assert_eq!(&frames.last().unwrap().1[..2], &1002u16.to_be_bytes());
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    let info = support::closed(&events).unwrap();
    assert_eq!(info.code, CloseCode::PROTOCOL_ERROR);
    assert_eq!(
        info.error,
        Some(Error::Protocol(ProtocolError::MaskedServerFrame))
    );
}

#[test]
fn rsv_bits_without_extension_are_1002() {
    for (bit, first) in [(0b100, 0xC1u8), (0b010, 0xA1), (0b001, 0x91)] {
        assert_fails(
            &client_frame(first, b"x", KEY),
            CloseCode::PROTOCOL_ERROR,
            ProtocolError::ReservedBits(bit),
        );
    }
}

#[test]
fn reserved_opcodes_are_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        assert_fails(
            &client_frame(0x80 | op, b"", KEY),
            CloseCode::PROTOCOL_ERROR,
            ProtocolError::ReservedOpcode(op),
        );
    }
}

#[test]
fn control_frame_over_125_bytes_is_1002() {
    assert_fails(
        &client_frame(0x89, &[b'a'; 126], KEY),
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::ControlFrameTooLong(126),
    );
}

#[test]
fn fragmented_control_frame_is_1002() {
    assert_fails(
        &client_frame(0x09, b"ping", KEY),
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::FragmentedControlFrame,
    );
}

#[test]
fn continuation_without_message_is_1002() {
    assert_fails(
        &client_frame(0x80, b"tail", KEY),
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::UnexpectedContinuation,
    );
}

#[test]
fn data_frame_inside_fragmented_message_is_1002() {
    let mut bytes = client_frame(0x01, b"frag", KEY);
    bytes.extend(client_frame(0x81, b"new", KEY));
    assert_fails(
        &bytes,
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::ExpectedContinuation,
    );
}

#[test]
fn length_with_top_bit_is_1002() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(&KEY);
    assert_fails(
        &bytes,
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::LengthTopBit,
    );
}

#[test]
fn invalid_utf8_text_is_1007() {
    assert_fails(
        &client_frame(
            0x81,
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            KEY,
        ),
        CloseCode::INVALID_PAYLOAD,
        ProtocolError::InvalidUtf8,
    );
}

#[test]
fn text_ending_mid_character_is_1007() {
    assert_fails(
        &client_frame(0x81, b"abc\xce", KEY),
        CloseCode::INVALID_PAYLOAD,
        ProtocolError::InvalidUtf8,
    );
}

#[test]
fn invalid_utf8_fails_fast_across_fragments() {
    // The first fragment ends in the start of a surrogate (ED A0): invalid
    // already, though the message is far from complete.
    assert_fails(
        &client_frame(0x01, b"ok so far \xed\xa0", KEY),
        CloseCode::INVALID_PAYLOAD,
        ProtocolError::InvalidUtf8,
    );
}

#[test]
fn invalid_utf8_fails_fast_inside_one_frame() {
    // Only the first part of a long frame has arrived.
    let frame = client_frame(0x81, &[b"\xf5".as_slice(), &[b'a'; 1000]].concat(), KEY);
    let (info, _) = server_fails_on(Config::default(), &frame[..20]);
    assert_eq!(info.code, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn valid_utf8_split_across_fragments_is_accepted() {
    let mut p = open_pair(Config::default());
    let now = p.now;
    let text = "κόσμε";
    let bytes = text.as_bytes();
    let mut wire = client_frame(0x01, &bytes[..1], KEY);
    wire.extend(client_frame(0x00, &bytes[1..4], KEY));
    wire.extend(client_frame(0x80, &bytes[4..], KEY));
    for b in &wire {
        p.server.handle_input(now, std::slice::from_ref(b));
    }
    let mut got = Vec::new();
    while let Some(e) = p.server.poll_event() {
        got.push(e);
    }
    assert_eq!(got, vec![Event::Message(Message::text(text))]);
}

#[test]
fn invalid_utf8_close_reason_is_1007() {
    assert_fails(
        &client_frame(0x88, b"\x03\xe8\xce\xba\xed\xa0\x80", KEY),
        CloseCode::INVALID_PAYLOAD,
        ProtocolError::InvalidCloseReason,
    );
}

#[test]
fn invalid_close_codes_are_1002() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        assert_fails(
            &client_frame(0x88, &code.to_be_bytes(), KEY),
            CloseCode::PROTOCOL_ERROR,
            ProtocolError::InvalidCloseCode(code),
        );
    }
}

#[test]
fn one_byte_close_body_is_1002() {
    assert_fails(
        &client_frame(0x88, b"\x03", KEY),
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::CloseBodyOneByte,
    );
}

#[test]
fn frame_over_limit_is_1009_without_allocating_declared_length() {
    let mut config = Config::default();
    config.max_frame_size = 1024;
    // Declares 2^62 bytes; only the header is sent.
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    bytes.extend_from_slice(&KEY);
    assert_fails_with(
        config,
        &bytes,
        CloseCode::MESSAGE_TOO_BIG,
        ProtocolError::FrameTooLarge {
            len: 1 << 62,
            max: 1024,
        },
    );
}

#[test]
fn message_over_limit_is_1009() {
    let mut config = Config::default();
    config.max_message_size = 1000;
    let mut bytes = client_frame(0x02, &[1; 600], KEY);
    bytes.extend(client_frame(0x80, &[2; 600], KEY));
    assert_fails_with(
        config,
        &bytes,
        CloseCode::MESSAGE_TOO_BIG,
        ProtocolError::MessageTooLarge { max: 1000 },
    );
}

#[test]
fn too_many_fragments_is_1009() {
    let mut config = Config::default();
    config.max_fragments = 3;
    let mut bytes = Vec::new();
    bytes.extend(client_frame(0x02, b"a", KEY));
    for _ in 0..3 {
        bytes.extend(client_frame(0x00, b"b", KEY));
    }
    assert_fails_with(
        config,
        &bytes,
        CloseCode::MESSAGE_TOO_BIG,
        ProtocolError::TooManyFragments { max: 3 },
    );
}

#[test]
fn ping_is_answered_with_pong_and_reported() {
    let mut p = open_pair(Config::default());
    let now = p.now;
    p.server
        .handle_input(now, &client_frame(0x89, b"Hello", KEY));
    let mut out = Vec::new();
    while p.server.poll_transmit(&mut out) > 0 {}
    // §5.7: unmasked Pong carrying "Hello".
    assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(
        p.server.poll_event(),
        Some(Event::Ping(wharf_core::Bytes::from_static(b"Hello")))
    );
}

#[test]
fn unsolicited_pong_is_accepted() {
    let mut p = open_pair(Config::default());
    let now = p.now;
    p.server
        .handle_input(now, &client_frame(0x8a, b"unasked", KEY));
    assert_eq!(
        p.server.poll_event(),
        Some(Event::Pong(wharf_core::Bytes::from_static(b"unasked")))
    );
    assert!(p.server.is_open());
}

#[test]
fn control_frames_between_fragments_are_handled() {
    let mut p = open_pair(Config::default());
    let now = p.now;
    let mut wire = client_frame(0x01, b"Hel", KEY);
    wire.extend(client_frame(0x89, b"p", KEY));
    wire.extend(client_frame(0x80, b"lo", KEY));
    p.server.handle_input(now, &wire);
    let mut events = Vec::new();
    while let Some(e) = p.server.poll_event() {
        events.push(e);
    }
    assert_eq!(
        events,
        vec![
            Event::Ping(wharf_core::Bytes::from_static(b"p")),
            Event::Message(Message::text("Hello")),
        ]
    );
}

// ---- RFC 6455 §5.7 examples, byte for byte ----

fn client_receives(bytes: &[u8]) -> Vec<Event> {
    let mut p = open_pair(Config::default());
    let now = p.now;
    p.client.handle_input(now, bytes);
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    events
}

#[test]
fn rfc_5_7_single_frame_unmasked_text() {
    let events = client_receives(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(events, vec![Event::Message(Message::text("Hello"))]);
}

#[test]
fn rfc_5_7_single_frame_masked_text() {
    let mut p = open_pair(Config::default());
    let now = p.now;
    p.server.handle_input(
        now,
        &[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    );
    assert_eq!(
        p.server.poll_event(),
        Some(Event::Message(Message::text("Hello")))
    );
}

#[test]
fn rfc_5_7_fragmented_unmasked_text() {
    let events = client_receives(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(events, vec![Event::Message(Message::text("Hello"))]);
}

#[test]
fn rfc_5_7_unmasked_ping_and_masked_pong() {
    let events = client_receives(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(
        events,
        vec![Event::Ping(wharf_core::Bytes::from_static(b"Hello"))]
    );
    let mut p = open_pair(Config::default());
    let now = p.now;
    p.server.handle_input(
        now,
        &[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ],
    );
    assert_eq!(
        p.server.poll_event(),
        Some(Event::Pong(wharf_core::Bytes::from_static(b"Hello")))
    );
}

#[test]
fn rfc_5_7_256_bytes_and_64_kib_binary() {
    let mut bytes = vec![0x82, 0x7E, 0x01, 0x00];
    bytes.extend(std::iter::repeat_n(0xAB, 256));
    let events = client_receives(&bytes);
    assert_eq!(
        events,
        vec![Event::Message(Message::binary(vec![0xAB; 256]))]
    );

    let mut bytes = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
    bytes.extend(std::iter::repeat_n(0xCD, 65536));
    let events = client_receives(&bytes);
    assert_eq!(
        events,
        vec![Event::Message(Message::binary(vec![0xCD; 65536]))]
    );
}

// ---- streaming delivery ----

#[test]
fn stream_mode_delivers_chunks_on_character_boundaries() {
    let mut config = Config::default();
    config.message_mode = MessageMode::Stream;
    let mut p = open_pair(config);
    let now = p.now;
    let text = "aκόσμε€𝄞z".repeat(50);
    let wire = client_frame(0x01, &text.as_bytes()[..101], KEY);
    let mut wire2 = client_frame(0x80, &text.as_bytes()[101..], KEY);
    let mut all = wire;
    all.append(&mut wire2);
    let mut chunks = Vec::new();
    for piece in all.chunks(7) {
        p.server.handle_input(now, piece);
        while let Some(e) = p.server.poll_event() {
            match e {
                Event::Chunk(c) => chunks.push(c),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(chunks.len() > 10);
    assert!(chunks[0].first && chunks.iter().skip(1).all(|c| !c.first));
    assert!(chunks.last().unwrap().last && chunks.iter().rev().skip(1).all(|c| !c.last));
    let mut joined = String::new();
    for c in &chunks {
        joined.push_str(std::str::from_utf8(&c.data).expect("each chunk is valid UTF-8"));
    }
    assert_eq!(joined, text);
}

#[test]
fn answers_to_earlier_messages_go_out_before_the_failure_close() {
    // Autobahn 3.2 / 4.1.3 / 5.15: a valid message, then a bad frame, in one
    // read. The echo of the first must precede the Close for the second.
    let mut p = open_pair(Config::default());
    let now = p.now;
    let mut wire = client_frame(0x81, b"first", KEY);
    wire.extend(client_frame(0xA1, b"bad rsv", KEY));
    wire.extend(client_frame(0x89, b"never answered", KEY));
    p.server.handle_input(now, &wire);
    let Some(Event::Message(m)) = p.server.poll_event() else {
        panic!("the first message is delivered")
    };
    p.server.send(m).expect("still open for the answer");
    let Some(Event::Closed(info)) = p.server.poll_event() else {
        panic!("then the failure")
    };
    assert_eq!(info.code, CloseCode::PROTOCOL_ERROR);
    let mut out = Vec::new();
    while p.server.poll_transmit(&mut out) > 0 {}
    let frames = parse_frames(&out);
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], (0x81, b"first".to_vec()));
    assert_eq!(frames[1].0, 0x88);
    assert_eq!(p.server.poll_event(), None);
    assert!(p.server.is_finished());
}

#[test]
fn every_ping_of_a_burst_is_answered() {
    // Autobahn 2.10: ten Pings in one read get ten Pongs, in order.
    let mut p = open_pair(Config::default());
    let now = p.now;
    let mut wire = Vec::new();
    for i in 0..10u8 {
        wire.extend(client_frame(0x89, &[b'p', i], KEY));
    }
    p.server.handle_input(now, &wire);
    while p.server.poll_event().is_some() {}
    let mut out = Vec::new();
    while p.server.poll_transmit(&mut out) > 0 {}
    let pongs: Vec<(u8, Vec<u8>)> = (0..10u8).map(|i| (0x8a, vec![b'p', i])).collect();
    assert_eq!(parse_frames(&out), pongs);
}

#[test]
fn a_flood_of_pings_keeps_a_bounded_number_of_pongs() {
    let mut p = open_pair(Config::default());
    let now = p.now;
    let mut wire = Vec::new();
    for i in 0..10_000u16 {
        wire.extend(client_frame(0x89, &i.to_be_bytes(), KEY));
    }
    p.server.handle_input(now, &wire);
    while p.server.poll_event().is_some() {}
    let mut out = Vec::new();
    while p.server.poll_transmit(&mut out) > 0 {}
    let frames = parse_frames(&out);
    assert!(frames.len() <= 16, "{} pongs queued", frames.len());
    // The most recent Ping is among those answered (§5.5.3).
    assert_eq!(frames.last().unwrap().1, 9_999u16.to_be_bytes());
}
