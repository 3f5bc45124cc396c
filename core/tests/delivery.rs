//! Every message arrives identically whatever the chunking of the bytes:
//! whole, one byte at a time, or odd sizes; plaintext and TLS; both directions.

mod support;

use support::Pair;
use wharf_core::test_certs::TestPki;
use wharf_core::{Config, Event, Message};

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
