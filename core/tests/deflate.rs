//! permessage-deflate (RFC 7692) through whole connections: negotiation in
//! both roles, the data path with and without context takeover, fragments,
//! one-byte delivery, control frames between compressed fragments, the
//! per-message opt-out, the failures (1002, 1007, 1009), and the §7.2.3
//! examples as byte literals.

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use support::{client_frame, parse_frames, Pair};
use wharf_core::{
    ClientRequest, CloseCode, Config, ConfigError, Connection, DeflateConfig, DeflateParams, Error,
    Event, ExtensionError, HandshakeError, Initiator, Message, MessageKind, MessageMode,
    ProtocolError,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn deflate_config(d: DeflateConfig) -> Config {
    let mut c = Config::default();
    c.deflate = Some(d);
    c
}

/// The default deflate settings changed by `f`.
fn dcfg(f: impl FnOnce(&mut DeflateConfig)) -> DeflateConfig {
    let mut d = DeflateConfig::default();
    f(&mut d);
    d
}

fn on() -> Config {
    deflate_config(DeflateConfig::default())
}

/// Opens a pair whose client and server use different configs.
fn pair2(client: Config, server: Config) -> Pair {
    let mut p = Pair::plain(client);
    let now = p.now;
    p.server = Connection::server_with_rng(server.into(), None, now, support::rng(2)).unwrap();
    p
}

fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
    let mut p = *open_pair(on()).client.deflate().expect("negotiated");
    p.server_no_context_takeover = snct;
    p.client_no_context_takeover = cnct;
    p.server_max_window_bits = sbits;
    p.client_max_window_bits = cbits;
    p
}

fn open_pair(config: Config) -> Pair {
    let mut p = Pair::plain(config);
    p.open();
    p
}

/// Records what goes over the wire, each way, from now on.
type Tap = Rc<RefCell<Vec<u8>>>;

fn tap(p: &mut Pair) -> (Tap, Tap) {
    let c2s: Tap = Rc::default();
    let s2c: Tap = Rc::default();
    let (a, b) = (c2s.clone(), s2c.clone());
    p.c2s_filter = Some(Box::new(move |w| a.borrow_mut().extend_from_slice(w)));
    p.s2c_filter = Some(Box::new(move |w| b.borrow_mut().extend_from_slice(w)));
    (c2s, s2c)
}

/// The value of the server's `Sec-WebSocket-Extensions`, as the client saw it.
fn answered_extensions(p: &Pair) -> Option<String> {
    p.client_events.iter().find_map(|e| match e {
        Event::Open(open) => open
            .response
            .as_ref()?
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned()),
        _ => None,
    })
}

/// The offer the server saw.
fn offered_extensions(p: &Pair) -> Option<String> {
    p.server_events.iter().find_map(|e| match e {
        Event::Request(r) => r
            .header("Sec-WebSocket-Extensions")
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        _ => None,
    })
}

/// Bytes that do not compress (a xorshift stream).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn json(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"seq\":{i},\"sym\":\"BTC-USD\",\"px\":{}.{}}}\n",
                60000 + i % 13,
                i % 7
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Negotiation
// ---------------------------------------------------------------------------

#[test]
fn off_by_default() {
    assert_eq!(Config::default().deflate, None);
    let mut p = open_pair(Config::default());
    assert_eq!(offered_extensions(&p), None);
    assert_eq!(p.client.deflate(), None);
    assert_eq!(p.server.deflate(), None);
    let (c2s, _) = tap(&mut p);
    p.client.send(Message::text(json(50))).unwrap();
    p.drive();
    assert_eq!(parse_frames(&c2s.borrow())[0].0, 0x81, "no RSV1");
}

#[test]
fn both_on_negotiates_the_defaults() {
    let p = open_pair(on());
    assert_eq!(
        offered_extensions(&p).as_deref(),
        Some("permessage-deflate; client_max_window_bits")
    );
    assert_eq!(
        answered_extensions(&p).as_deref(),
        Some("permessage-deflate")
    );
    let expect = p.server.deflate().copied().expect("server agreed");
    assert_eq!(p.client.deflate(), Some(&expect));
    assert!(!expect.server_no_context_takeover && !expect.client_no_context_takeover);
    assert_eq!(
        (expect.server_max_window_bits, expect.client_max_window_bits),
        (15, 15)
    );
    let Some(Event::Open(open)) = p.client_events.first() else {
        panic!("no open")
    };
    assert_eq!(open.response.as_ref().unwrap().deflate(), Some(&expect));
}

#[test]
fn one_side_off_means_no_compression() {
    // The server declines by not answering; the client goes on without it.
    let mut p = pair2(on(), Config::default());
    p.open();
    assert!(offered_extensions(&p).is_some());
    assert_eq!(answered_extensions(&p), None);
    assert_eq!((p.client.deflate(), p.server.deflate()), (None, None));
    echo_check(&mut p, &json(30));
    // A server with deflate on gets no offer from a client without it.
    let mut p = pair2(Config::default(), on());
    p.open();
    assert_eq!(offered_extensions(&p), None);
    assert_eq!((p.client.deflate(), p.server.deflate()), (None, None));
}

#[test]
fn context_takeover_and_window_requests_both_ways() {
    // The client asks for everything; the server grants it.
    let client = deflate_config(dcfg(|d| {
        d.max_window_bits = 11;
        d.peer_max_window_bits = 10;
        d.no_context_takeover = true;
        d.peer_no_context_takeover = true;
    }));
    let mut p = pair2(client, on());
    p.open();
    assert_eq!(
        offered_extensions(&p).as_deref(),
        Some(
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=11"
        )
    );
    assert_eq!(
        answered_extensions(&p).as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=11"
        )
    );
    assert_eq!(p.client.deflate(), Some(&params(true, true, 10, 11)));
    assert_eq!(p.server.deflate(), p.client.deflate());
    echo_check(&mut p, &json(400));

    // The server asks for everything of a plain client.
    let server = deflate_config(dcfg(|d| {
        d.max_window_bits = 9;
        d.peer_max_window_bits = 12;
        d.no_context_takeover = true;
        d.peer_no_context_takeover = true;
    }));
    let mut p = pair2(on(), server);
    p.open();
    assert_eq!(
        answered_extensions(&p).as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=12"
        )
    );
    assert_eq!(p.client.deflate(), Some(&params(true, true, 9, 12)));
    echo_check(&mut p, &json(400));
}

#[test]
fn server_held_to_an_eight_bit_window_sends_uncompressed() {
    // zlib cannot compress with a 256-byte window: the server accepts and
    // sends its messages uncompressed, while the client still compresses.
    let client = deflate_config(dcfg(|d| {
        d.peer_max_window_bits = 8;
    }));
    let mut p = pair2(client, on());
    p.open();
    assert_eq!(
        answered_extensions(&p).as_deref(),
        Some("permessage-deflate; server_max_window_bits=8")
    );
    let (c2s, s2c) = tap(&mut p);
    p.client.send(Message::text(json(20))).unwrap();
    p.server.send(Message::text(json(20))).unwrap();
    p.drive();
    assert_eq!(parse_frames(&c2s.borrow())[0].0, 0xC1, "client compresses");
    assert_eq!(parse_frames(&s2c.borrow())[0].0, 0x81, "server does not");
    assert_eq!(p.client_messages(), vec![Message::text(json(20))]);
    assert_eq!(p.server_messages(), vec![Message::text(json(20))]);
}

#[test]
fn invalid_settings_are_config_errors() {
    for d in [
        dcfg(|d| {
            d.level = 10;
        }),
        dcfg(|d| {
            d.max_window_bits = 8;
        }),
        dcfg(|d| {
            d.max_window_bits = 16;
        }),
        dcfg(|d| {
            d.peer_max_window_bits = 7;
        }),
    ] {
        let config = std::sync::Arc::new(deflate_config(d.clone()));
        let req = ClientRequest::new("ws://h/").unwrap();
        let now = std::time::Instant::now();
        assert!(matches!(
            Connection::client(config.clone(), &req, None, now),
            Err(ConfigError::InvalidDeflate(_))
        ));
        assert!(matches!(
            Connection::server(config, None, now),
            Err(ConfigError::InvalidDeflate(_))
        ));
    }
}

/// The server's answer rewritten in flight to `answer` (the value of
/// `Sec-WebSocket-Extensions`): the client must fail with `expect`.
fn client_refuses(client: Config, answer: &str, expect: HandshakeError) {
    let mut p = pair2(client, on());
    let answer = answer.to_owned();
    p.s2c_filter = Some(Box::new(move |w| {
        let text = String::from_utf8_lossy(w).into_owned();
        if let Some(start) = text.find("Sec-WebSocket-Extensions: ") {
            let end = start + text[start..].find("\r\n").unwrap();
            let new = format!(
                "{}Sec-WebSocket-Extensions: {answer}{}",
                &text[..start],
                &text[end..]
            );
            *w = new.into_bytes();
        }
    }));
    p.drive();
    let closed = p.client_closed().expect("client failed");
    assert_eq!(
        closed.error,
        Some(Error::Handshake(expect)),
        "{answer:?}",
        answer = closed
    );
    assert!(!p.client.is_open());
}

#[test]
fn client_fails_every_forbidden_answer() {
    let ext = HandshakeError::Extension;
    for (answer, expect) in [
        ("x-foo", HandshakeError::UnofferedExtension("x-foo".into())),
        (
            "permessage-deflate, permessage-deflate",
            ext(ExtensionError::DuplicateExtension),
        ),
        ("permessage-deflate; =", ext(ExtensionError::Malformed)),
        (
            "permessage-deflate; foo",
            ext(ExtensionError::UnknownParameter("foo".into())),
        ),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            ext(ExtensionError::DuplicateParameter(
                "server_no_context_takeover".into(),
            )),
        ),
        (
            "permessage-deflate; client_no_context_takeover=yes",
            ext(ExtensionError::InvalidValue {
                name: "client_no_context_takeover".into(),
                value: Some("yes".into()),
            }),
        ),
        (
            "permessage-deflate; server_max_window_bits=16",
            ext(ExtensionError::InvalidValue {
                name: "server_max_window_bits".into(),
                value: Some("16".into()),
            }),
        ),
        (
            "permessage-deflate; client_max_window_bits=7",
            ext(ExtensionError::InvalidValue {
                name: "client_max_window_bits".into(),
                value: Some("7".into()),
            }),
        ),
        (
            "permessage-deflate; client_max_window_bits",
            ext(ExtensionError::InvalidValue {
                name: "client_max_window_bits".into(),
                value: None,
            }),
        ),
    ] {
        client_refuses(on(), answer, expect);
    }
}

#[test]
fn client_fails_answers_that_ignore_its_requests() {
    let asks = deflate_config(dcfg(|d| {
        d.max_window_bits = 12;
        d.peer_max_window_bits = 10;
        d.peer_no_context_takeover = true;
    }));
    let ext = HandshakeError::Extension;
    client_refuses(
        asks.clone(),
        "permessage-deflate; server_max_window_bits=10",
        ext(ExtensionError::MissingParameter(
            "server_no_context_takeover",
        )),
    );
    client_refuses(
        asks.clone(),
        "permessage-deflate; server_no_context_takeover",
        ext(ExtensionError::MissingParameter("server_max_window_bits")),
    );
    client_refuses(
        asks.clone(),
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
        ext(ExtensionError::WindowTooLarge {
            name: "server_max_window_bits",
            offered: 10,
            answered: 11,
        }),
    );
    client_refuses(
        asks,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=13",
        ext(ExtensionError::WindowTooLarge {
            name: "client_max_window_bits",
            offered: 12,
            answered: 13,
        }),
    );
}

#[test]
fn client_without_deflate_refuses_an_extension() {
    let mut p = pair2(Config::default(), on());
    p.s2c_filter = Some(Box::new(|w| {
        let text = String::from_utf8_lossy(w).into_owned();
        if let Some(at) = text.find("\r\n\r\n") {
            *w = format!(
                "{}\r\nSec-WebSocket-Extensions: permessage-deflate{}",
                &text[..at],
                &text[at..]
            )
            .into_bytes();
        }
    }));
    p.drive();
    assert_eq!(
        p.client_closed().and_then(|c| c.error.clone()),
        Some(Error::Handshake(HandshakeError::UnofferedExtension(
            "permessage-deflate".into()
        )))
    );
}

/// A raw upgrade request with `extensions` to a deflate server; returns the
/// `Sec-WebSocket-Extensions` line of its 101 (`None` when declined).
fn server_answer(server: Config, extensions: &[&str]) -> Option<String> {
    let now = std::time::Instant::now();
    let mut s = Connection::server_with_rng(server.into(), None, now, support::rng(3)).unwrap();
    let mut req = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        .to_owned();
    for e in extensions {
        req.push_str(&format!("Sec-WebSocket-Extensions: {e}\r\n"));
    }
    req.push_str("\r\n");
    s.handle_input(now, req.as_bytes());
    assert!(matches!(s.poll_event(), Some(Event::Request(_))));
    s.accept(Default::default()).unwrap();
    let mut out = Vec::new();
    while s.poll_transmit(&mut out) > 0 {}
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 101"));
    let answer = text
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_owned);
    assert_eq!(answer.is_some(), s.deflate().is_some());
    answer
}

#[test]
fn server_answers_per_rfc7692() {
    let a = |e: &[&str]| server_answer(on(), e);
    assert_eq!(a(&[]), None);
    assert_eq!(a(&["x-webkit-deflate-frame"]), None);
    assert_eq!(
        a(&["permessage-deflate"]).as_deref(),
        Some("permessage-deflate")
    );
    // server_no_context_takeover must be granted when accepted.
    assert_eq!(
        a(&["permessage-deflate; server_no_context_takeover"]).as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    // client_no_context_takeover (a hint) is echoed.
    assert_eq!(
        a(&["permessage-deflate; client_no_context_takeover"]).as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    // server_max_window_bits 8 to 15 is answered with the same value.
    for bits in 8..=15 {
        assert_eq!(
            a(&[&format!(
                "permessage-deflate; server_max_window_bits={bits}"
            )]),
            Some(format!("permessage-deflate; server_max_window_bits={bits}"))
        );
    }
    // client_max_window_bits without a value: nothing to answer by default;
    // with a value: echoed.
    assert_eq!(
        a(&["permessage-deflate; client_max_window_bits"]).as_deref(),
        Some("permessage-deflate")
    );
    assert_eq!(
        a(&["permessage-deflate; client_max_window_bits=10"]).as_deref(),
        Some("permessage-deflate; client_max_window_bits=10")
    );
    // Out of range, malformed, valueless or duplicate parameters, and
    // unknown ones, decline that offer; the next one is taken, across
    // header lines too.
    for bad in [
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=09",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
        "permessage-deflate; unknown",
    ] {
        assert_eq!(a(&[bad]), None, "{bad}");
        assert_eq!(
            a(&[bad, "permessage-deflate; server_max_window_bits=12"]).as_deref(),
            Some("permessage-deflate; server_max_window_bits=12"),
            "{bad}"
        );
    }
    // A header that is not an extension list is declined whole.
    assert_eq!(a(&["permessage-deflate; a=\"unterminated"]), None);
    // What the server asks of the client, where the offer allows it.
    let asks = deflate_config(dcfg(|d| {
        d.peer_max_window_bits = 9;
        d.peer_no_context_takeover = true;
    }));
    assert_eq!(
        server_answer(
            asks.clone(),
            &["permessage-deflate; client_max_window_bits"]
        )
        .as_deref(),
        Some("permessage-deflate; client_no_context_takeover; client_max_window_bits=9")
    );
    assert_eq!(
        server_answer(asks, &["permessage-deflate"]).as_deref(),
        Some("permessage-deflate; client_no_context_takeover"),
        "no client_max_window_bits unless offered (§7.1.2.2)"
    );
}

// ---------------------------------------------------------------------------
// Data path
// ---------------------------------------------------------------------------

/// Sends `text` and a binary message each way and checks they arrive.
fn echo_check(p: &mut Pair, text: &str) {
    let before_c = p.client_messages().len();
    let before_s = p.server_messages().len();
    let bin = Message::binary(text.as_bytes().iter().rev().copied().collect::<Vec<u8>>());
    p.client.send(Message::text(text.to_owned())).unwrap();
    p.client.send(bin.clone()).unwrap();
    p.server.send(Message::text(text.to_owned())).unwrap();
    p.server.send(bin.clone()).unwrap();
    p.drive();
    let expect = [Message::text(text.to_owned()), bin];
    assert_eq!(p.server_messages()[before_s..], expect[..]);
    assert_eq!(p.client_messages()[before_c..], expect[..]);
}

#[test]
fn round_trip_with_context_takeover() {
    let mut p = open_pair(on());
    let (c2s, s2c) = tap(&mut p);
    let msg = json(200);
    for _ in 0..3 {
        echo_check(&mut p, &msg);
    }
    for wire in [&c2s, &s2c] {
        let frames = parse_frames(&wire.borrow());
        assert_eq!(frames.len(), 6);
        assert!(
            frames.iter().all(|f| f.0 & 0x40 != 0),
            "RSV1 on every message"
        );
        // The repeats cost a few bytes: the window is shared.
        assert!(frames[0].1.len() < msg.len() / 3, "{}", frames[0].1.len());
        assert!(frames[2].1.len() < msg.len() / 10, "{}", frames[2].1.len());
        assert!(frames[4].1.len() < msg.len() / 10, "{}", frames[4].1.len());
        assert!(frames[2].1.len() < frames[0].1.len() / 2);
    }
    // Many different messages keep decoding (the shared window moves on).
    for i in 0..50 {
        echo_check(&mut p, &json(i * 37));
    }
}

#[test]
fn round_trip_without_context_takeover() {
    let c = deflate_config(dcfg(|d| {
        d.no_context_takeover = true;
        d.peer_no_context_takeover = true;
    }));
    let mut p = open_pair(c);
    assert_eq!(p.client.deflate(), Some(&params(true, true, 15, 15)));
    let (c2s, s2c) = tap(&mut p);
    let msg = json(200);
    for _ in 0..3 {
        echo_check(&mut p, &msg);
    }
    for wire in [&c2s, &s2c] {
        let frames = parse_frames(&wire.borrow());
        // Each message stands alone: the same size every time.
        assert_eq!(frames[0].1.len(), frames[2].1.len());
        assert_eq!(frames[2].1.len(), frames[4].1.len());
        assert!(frames[0].1.len() < msg.len() / 3);
    }
}

#[test]
fn small_windows_both_ways() {
    for bits in 9..=15 {
        let c = deflate_config(dcfg(|d| {
            d.max_window_bits = bits;
            d.peer_max_window_bits = bits;
        }));
        let mut p = open_pair(c);
        assert_eq!(p.client.deflate(), Some(&params(false, false, bits, bits)));
        echo_check(&mut p, &json(300));
        echo_check(&mut p, &json(301));
    }
}

#[test]
fn fragmented_compressed_messages_carry_rsv1_on_the_first_frame_only() {
    let mut c = on();
    c.max_outgoing_frame = 100;
    let mut p = open_pair(c);
    let (c2s, s2c) = tap(&mut p);
    let big: String = json(2000);
    echo_check(&mut p, &big);
    for wire in [&c2s, &s2c] {
        let frames = parse_frames(&wire.borrow());
        assert!(frames.len() > 20);
        assert_eq!(frames[0].0, 0x41, "text, RSV1, not final");
        let mut starts = 0;
        for f in &frames {
            assert!(f.1.len() <= 100);
            if f.0 & 0x0F == 0 {
                assert_eq!(f.0 & 0x70, 0, "no RSV bit on continuations");
            } else {
                assert_eq!(f.0 & 0x70, 0x40, "RSV1 on the first frame");
                starts += 1;
            }
        }
        assert_eq!(starts, 2, "a text and a binary message");
    }
}

#[test]
fn one_byte_at_a_time() {
    let mut p = open_pair(on());
    p.chunk = 1;
    echo_check(&mut p, &json(300));
    echo_check(&mut p, "héllo wörld ✓ 𝄞 ");
    let mut c = on();
    c.message_mode = MessageMode::Stream;
    let mut p = open_pair(c);
    p.chunk = 1;
    let text = "héllo wörld ✓ 𝄞 ".repeat(40);
    p.client.send(Message::text(text.clone())).unwrap();
    p.drive();
    let chunks: Vec<_> = p
        .server_events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let joined: Vec<u8> = chunks.iter().flat_map(|c| c.data.to_vec()).collect();
    assert_eq!(joined, text.as_bytes());
    for c in &chunks {
        assert!(
            std::str::from_utf8(&c.data).is_ok(),
            "chunks end on characters"
        );
        assert_eq!(c.kind, MessageKind::Text);
    }
    assert!(chunks[0].first && chunks.last().unwrap().last);
    assert_eq!(chunks.iter().filter(|c| c.last).count(), 1);
}

#[test]
fn stream_mode_reports_inflated_chunks() {
    let mut c = on();
    c.message_mode = MessageMode::Stream;
    c.max_outgoing_frame = 4096;
    let mut p = open_pair(c);
    let big = vec![b'z'; 3 << 20];
    p.client.send(Message::binary(big.clone())).unwrap();
    p.drive();
    let chunks: Vec<_> = p
        .server_events
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert!(chunks.iter().all(|c| c.data.len() <= 64 * 1024));
    let total: usize = chunks.iter().map(|c| c.data.len()).sum();
    assert_eq!(total, big.len());
    assert!(chunks.iter().all(|c| c.data.iter().all(|&b| b == b'z')));
}

#[test]
fn control_frames_between_compressed_fragments() {
    // RFC 7692 §7.2.3.1's fragmented "Hello", with a Ping in between.
    let mut p = open_pair(on());
    let now = p.now;
    let mut wire = client_frame(0x41, &[0xf2, 0x48, 0xcd], KEY);
    wire.extend(client_frame(0x89, b"between", KEY));
    wire.extend(client_frame(0x80, &[0xc9, 0xc9, 0x07, 0x00], KEY));
    p.server.handle_input(now, &wire);
    p.drive();
    assert_eq!(p.server_messages(), vec![Message::text("Hello")]);
    assert!(p
        .server_events
        .iter()
        .any(|e| matches!(e, Event::Ping(b) if &b[..] == b"between")));

    // Our own: a Ping queued while a large compressed message goes out lands
    // between its frames, untouched (no RSV1).
    let mut c = on();
    c.max_outgoing_frame = 1000;
    let mut p = open_pair(c);
    let (c2s, _) = tap(&mut p);
    let big = Message::binary(noise(600_000));
    p.client.send(big.clone()).unwrap();
    // The first batch goes out by hand (through the tap), then a Ping.
    let mut out = Vec::new();
    assert!(p.client.poll_transmit(&mut out) > 0);
    c2s.borrow_mut().extend_from_slice(&out);
    p.server.handle_input(p.now, &out);
    p.client.ping(b"p").unwrap();
    p.drive();
    let frames = parse_frames(&c2s.borrow());
    let ping = frames.iter().position(|f| f.0 == 0x89).expect("ping sent");
    assert!(ping > 0 && ping < frames.len() - 1, "between fragments");
    assert_eq!(frames[ping].1, b"p");
    assert_eq!(p.server_messages(), vec![big]);
}

#[test]
fn per_message_opt_out_and_small_messages() {
    let mut p = open_pair(on());
    let (c2s, _) = tap(&mut p);
    let long = json(100);
    p.client
        .send_uncompressed(Message::text(long.clone()))
        .unwrap();
    p.client.send(Message::text("tiny")).unwrap();
    p.client.send(Message::text(long.clone())).unwrap();
    p.client.send(Message::binary(vec![])).unwrap();
    p.drive();
    let firsts: Vec<u8> = parse_frames(&c2s.borrow()).iter().map(|f| f.0).collect();
    assert_eq!(firsts, vec![0x81, 0x81, 0xC1, 0x82]);
    assert_eq!(
        p.server_messages(),
        vec![
            Message::text(long.clone()),
            Message::text("tiny"),
            Message::text(long),
            Message::binary(vec![])
        ]
    );
    // min_message_size 0 compresses even an empty message.
    let c = deflate_config(dcfg(|d| {
        d.min_message_size = 0;
    }));
    let mut p = open_pair(c);
    let (_, s2c) = tap(&mut p);
    p.server.send(Message::binary(vec![])).unwrap();
    p.server.send(Message::text("")).unwrap();
    p.server.send(Message::text("x")).unwrap();
    p.drive();
    let frames = parse_frames(&s2c.borrow());
    assert_eq!(frames[0].0, 0xC2);
    assert_eq!(frames[1], (0xC1, vec![0x00]), "an empty message is 0x00");
    assert_eq!(
        p.client_messages(),
        vec![
            Message::binary(vec![]),
            Message::text(""),
            Message::text("x")
        ]
    );
}

#[test]
fn take_unsent_gives_back_uncompressed_messages_and_keeps_the_window_right() {
    let mut c = on();
    c.max_outgoing_frame = 500;
    let mut p = open_pair(c);
    let big = Message::binary(noise(600_000));
    p.client.send(big.clone()).unwrap();
    p.client.send(Message::text(json(10))).unwrap();
    let mut wire = Vec::new();
    assert!(p.client.poll_transmit(&mut wire) > 0);
    // A shared window never saw the taken message, so what follows decodes.
    assert_eq!(p.client.take_unsent(), vec![Message::text(json(10))]);
    p.server.handle_input(p.now, &wire);
    p.client.send(Message::text(json(11))).unwrap();
    p.drive();
    assert_eq!(p.server_messages(), vec![big, Message::text(json(11))]);
}

// ---------------------------------------------------------------------------
// RFC 7692 §7.2.3 examples as bytes
// ---------------------------------------------------------------------------

#[test]
fn rfc7692_examples() {
    let every = deflate_config(dcfg(|d| d.min_message_size = 0));
    let mut p = open_pair(every.clone());
    let now = p.now;
    for frame in [
        // §7.2.3.1: "Hello" in one compressed frame.
        &[0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
        // §7.2.3.2: again, sharing the window with the first.
        &[0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00],
        // §7.2.3.3: a DEFLATE block with no compression.
        &[
            0xc1, 0x0b, 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ],
        // §7.2.3.4: a block with BFINAL set.
        &[0xc1, 0x08, 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
        // §7.2.3.5: two DEFLATE blocks in one message.
        &[
            0xc1, 0x0d, 0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07,
            0x00,
        ],
    ] {
        p.client.handle_input(now, frame);
    }
    // §7.2.3.1, fragmented.
    p.client.handle_input(now, &[0x41, 0x03, 0xf2, 0x48, 0xcd]);
    p.client
        .handle_input(now, &[0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00]);
    p.drive();
    assert_eq!(p.client_messages(), vec![Message::text("Hello"); 6]);
    assert!(p.client.is_open());

    // And the first as we write it.
    let mut p = open_pair(every);
    let (_, s2c) = tap(&mut p);
    p.server.send(Message::text("Hello")).unwrap();
    p.drive();
    assert_eq!(
        *s2c.borrow(),
        [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
    );
    // At zlib's default level the second is the RFC's too.
    let c = deflate_config(dcfg(|d| {
        d.level = 6;
        d.min_message_size = 0;
    }));
    let mut p = open_pair(c);
    let (_, s2c) = tap(&mut p);
    p.server.send(Message::text("Hello")).unwrap();
    p.server.send(Message::text("Hello")).unwrap();
    p.drive();
    assert_eq!(
        *s2c.borrow(),
        [
            0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11,
            0x00, 0x00
        ]
    );
}

// ---------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------

/// Feeds the server raw client bytes; returns its Closed info and the close
/// code it sent.
fn server_fails(config: Config, bytes: &[u8]) -> (wharf_core::CloseInfo, u16) {
    let (info, mut frames) = support::server_fails_on(open_pair(config), bytes);
    let close = frames.pop().expect("a Close");
    assert_eq!(close.0, 0x88);
    (info, u16::from_be_bytes([close.1[0], close.1[1]]))
}

fn assert_server_fails(config: Config, bytes: &[u8], code: CloseCode, err: ProtocolError) {
    let (info, sent) = server_fails(config, bytes);
    assert_eq!(info.initiator, Initiator::Local);
    assert_eq!(info.code, code);
    assert_eq!(sent, code.0);
    assert_eq!(info.error, Some(Error::Protocol(err)));
}

#[test]
fn rsv1_rules() {
    // Without the extension RSV1 is reserved.
    assert_server_fails(
        Config::default(),
        &client_frame(0xC1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], KEY),
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::ReservedBits(0b100),
    );
    // With it: never on a control frame or a continuation (§6.1).
    for first in [0xC9, 0xCA, 0xC8] {
        assert_server_fails(
            on(),
            &client_frame(first, b"x", KEY),
            CloseCode::PROTOCOL_ERROR,
            ProtocolError::MisplacedRsv1,
        );
    }
    let mut wire = client_frame(0x41, &[0xf2, 0x48, 0xcd], KEY);
    wire.extend(client_frame(0xC0, &[0xc9, 0xc9, 0x07, 0x00], KEY));
    assert_server_fails(
        on(),
        &wire,
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::MisplacedRsv1,
    );
    // RSV2 / RSV3 stay reserved.
    assert_server_fails(
        on(),
        &client_frame(0xE1, b"x", KEY),
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::ReservedBits(0b010),
    );
    // An uncompressed message on a deflate connection is fine.
    let mut p = open_pair(on());
    let now = p.now;
    p.server
        .handle_input(now, &client_frame(0x81, b"plain", KEY));
    p.drive();
    assert_eq!(p.server_messages(), vec![Message::text("plain")]);
}

#[test]
fn corrupt_compressed_data_is_1002() {
    assert_server_fails(
        on(),
        &client_frame(0xC2, &[0xff, 0xff, 0xff, 0xff], KEY),
        CloseCode::PROTOCOL_ERROR,
        ProtocolError::InvalidCompressedData,
    );
}

#[test]
fn invalid_utf8_inside_compressed_text_is_1007() {
    // A stored block holding 0xff, then the empty byte.
    let payload = [0x00, 0x01, 0x00, 0xfe, 0xff, 0xff, 0x00];
    assert_server_fails(
        on(),
        &client_frame(0xC1, &payload, KEY),
        CloseCode::INVALID_PAYLOAD,
        ProtocolError::InvalidUtf8,
    );
    // Valid as binary.
    let mut p = open_pair(on());
    let now = p.now;
    p.server
        .handle_input(now, &client_frame(0xC2, &payload, KEY));
    p.drive();
    assert_eq!(p.server_messages(), vec![Message::binary(vec![0xff])]);
}

#[test]
fn inflated_size_is_held_to_max_message_size() {
    let mut c = on();
    c.max_message_size = 100_000;
    // 100,000 bytes inflated pass, one more does not.
    let mut p = open_pair(c.clone());
    p.client.send(Message::binary(vec![1u8; 100_000])).unwrap();
    p.drive();
    assert_eq!(p.server_messages().len(), 1);
    let mut p = open_pair(c.clone());
    p.client.send(Message::binary(vec![1u8; 100_001])).unwrap();
    p.drive();
    let info = p.server_closed().expect("closed");
    assert_eq!(info.code, CloseCode::MESSAGE_TOO_BIG);
    assert_eq!(
        info.error,
        Some(Error::Protocol(ProtocolError::MessageTooLarge {
            max: 100_000
        }))
    );
    // Stream mode too.
    c.message_mode = MessageMode::Stream;
    let mut p = open_pair(c);
    p.client.send(Message::binary(vec![1u8; 300_000])).unwrap();
    p.drive();
    assert_eq!(
        p.server_closed().expect("closed").code,
        CloseCode::MESSAGE_TOO_BIG
    );
    let seen: usize = p
        .server_events
        .iter()
        .map(|e| match e {
            Event::Chunk(c) => c.data.len(),
            _ => 0,
        })
        .sum();
    assert!(seen <= 100_000, "{seen}");
    // A compressed message may be larger on the wire than inflated (it is
    // held to its inflated size); a plain one may not.
    let mut c = on();
    c.max_message_size = 10;
    let mut p = open_pair(c);
    let now = p.now;
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    p.server
        .handle_input(now, &client_frame(0xC1, &stored, KEY));
    p.drive();
    assert_eq!(p.server_messages(), vec![Message::text("Hello")]);
}

#[test]
fn deflate_works_over_tls() {
    let pki = wharf_core::test_certs::TestPki::new();
    let (client_tls, server_tls) = (pki.client_tls(), pki.server_tls(&["localhost"]));
    let mut p = Pair::tls(on(), "wss://localhost/", &client_tls, &server_tls);
    p.open();
    assert!(p.client.deflate().is_some());
    echo_check(&mut p, &json(1000));
}

/// Raw DEFLATE of `data`, sync-flushed, the tail stripped (§7.2.1).
fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, flate2::FlushCompress::Sync)
        .expect("deflate");
    out.truncate(out.len() - 4);
    out
}

#[test]
fn paused_input_is_decoded_before_the_transport_end_applies() {
    // 8 messages of 512 KiB inflated arrive in one read with the server's
    // Close, then the transport ends: decoding pauses once 256 KiB wait, and
    // the end applies only after everything before it was decoded.
    let mut p = open_pair(on());
    let now = p.now;
    let half = raw_deflate(&vec![0u8; 512 * 1024]);
    let mut wire = Vec::new();
    for _ in 0..8 {
        wire.extend(support::server_frame(0xC2, &half));
    }
    wire.extend(support::server_frame(0x88, &1000u16.to_be_bytes()));
    p.client.handle_input(now, &wire);
    p.client.handle_eof(now);
    assert!(p.client.has_events());
    let mut events = Vec::new();
    while let Some(e) = p.client.poll_event() {
        events.push(e);
    }
    assert_eq!(support::messages(&events).len(), 8);
    let info = support::closed(&events).expect("closed");
    assert!(info.clean, "{info:?}");
    assert_eq!(info.code, CloseCode::NORMAL);
    assert!(!p.client.has_events());
}

/// Found by fuzzing: a compressed text frame whose inflated bytes are
/// invalid UTF-8 and whose next block is corrupt closed with 1002 when fed
/// whole but 1007 when cut before the corrupt block. Checks run in stream
/// order now, so every cut gives 1007 (the bad byte comes first), in both
/// message modes; likewise a message over the limit whose bytes are valid.
#[test]
fn the_close_code_does_not_depend_on_how_the_input_is_cut() {
    // A stored block holding 0xff, then a block of the reserved type 11.
    let utf8_then_corrupt = client_frame(0xC1, &[0x00, 0x01, 0x00, 0xfe, 0xff, 0xff, 0x07], KEY);
    // 4 KiB of zeros (valid UTF-8) over a 1 KiB limit, then the same corrupt block.
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut big = Vec::with_capacity(8192);
    c.compress_vec(&[0u8; 4096], &mut big, flate2::FlushCompress::Sync)
        .unwrap();
    big.push(0x07);
    let too_big_then_corrupt = client_frame(0xC1, &big, KEY);
    for mode in [MessageMode::Reassemble, MessageMode::Stream] {
        for (wire, code, err) in [
            (
                &utf8_then_corrupt,
                CloseCode::INVALID_PAYLOAD,
                ProtocolError::InvalidUtf8,
            ),
            (
                &too_big_then_corrupt,
                CloseCode::MESSAGE_TOO_BIG,
                ProtocolError::MessageTooLarge { max: 1024 },
            ),
        ] {
            for cut in 1..wire.len() {
                let mut config = on();
                config.message_mode = mode;
                config.max_message_size = 1024;
                let mut p = open_pair(config);
                let now = p.now;
                p.server.handle_input(now, &wire[..cut]);
                p.server.handle_input(now, &wire[cut..]);
                let mut events = Vec::new();
                while let Some(e) = p.server.poll_event() {
                    events.push(e);
                }
                let info = support::closed(&events).expect("closed");
                assert_eq!(info.code, code, "{mode:?}, cut at {cut}");
                assert_eq!(
                    info.error,
                    Some(Error::Protocol(err.clone())),
                    "{mode:?}, cut at {cut}"
                );
            }
        }
    }
}
