//! Bugs the fuzz targets in `fuzz/` found, one test each (see fuzz/README.md).

mod support;

use support::{client_frame, parse_frames, Pair};
use wharf_core::{CloseCode, Config, Error, Event, Message, MessageMode, ProtocolError};

/// connection_server / connection_client: `take_unsent` on an open connection
/// while a large message was partly written gave that message back, and the
/// next `send` started a new message inside the unfinished one (§5.4). The
/// partly written message must stay queued and be finished.
#[test]
fn take_unsent_keeps_a_partly_written_message() {
    let mut p = Pair::plain(Config::default());
    p.open();
    let big = Message::binary(vec![7u8; 300 * 1024]);
    p.client.send(big.clone()).unwrap();
    p.client.send(Message::text("queued")).unwrap();
    // One poll_transmit writes one batch: the first frames of `big` only.
    let mut wire = Vec::new();
    assert!(p.client.poll_transmit(&mut wire) > 0);
    let first = parse_frames(&wire);
    assert_eq!(first[0].0, 0x02, "starts the binary message");
    assert!(first.iter().all(|f| f.0 & 0x80 == 0), "not finished yet");

    assert_eq!(p.client.take_unsent(), vec![Message::text("queued")]);
    assert!(
        p.client.queued_bytes() > 0,
        "the rest of `big` is still queued"
    );
    p.client.send(Message::text("next")).unwrap();
    let mut rest = Vec::new();
    while p.client.poll_transmit(&mut rest) > 0 {}
    let frames = parse_frames(&rest);
    let (last, before) = frames.split_last().unwrap();
    assert_eq!(last.0, 0x81, "the new message comes after");
    assert_eq!(last.1, b"next");
    assert!(
        before.iter().all(|f| f.0 & 0x0F == 0),
        "continuations of `big`"
    );
    assert_eq!(before.last().unwrap().0, 0x80, "which ends `big`");

    // The server receives both messages whole.
    let now = p.now;
    p.server.handle_input(now, &wire);
    p.server.handle_input(now, &rest);
    p.drive();
    assert_eq!(p.server_messages(), vec![big, Message::text("next")]);
}

/// connection_server: in stream mode, a text message whose last frame ended
/// inside a character reported the cut-off bytes as a text chunk (not UTF-8
/// on its own) before failing with 1007. It must fail without reporting them.
#[test]
fn stream_mode_never_reports_a_cut_off_character() {
    let mut config = Config::default();
    config.message_mode = MessageMode::Stream;
    let mut p = Pair::plain(config);
    p.open();
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut bytes = client_frame(0x01, "κό".as_bytes(), key);
    // "σμ" then the first two bytes of a three-byte character, and FIN.
    bytes.extend(client_frame(0x80, b"\xcf\x83\xce\xbc\xe1\xb5", key));
    let now = p.now;
    p.server.handle_input(now, &bytes);
    let events: Vec<Event> = std::iter::from_fn(|| p.server.poll_event()).collect();
    let mut text = Vec::new();
    for e in &events {
        if let Event::Chunk(c) = e {
            assert!(
                std::str::from_utf8(&c.data).is_ok(),
                "chunk {:02x?}",
                &c.data[..]
            );
            text.extend_from_slice(&c.data);
        }
    }
    assert!("κόσμ".as_bytes().starts_with(&text), "reported {text:02x?}");
    let info = support::closed(&events).expect("the server failed the connection");
    assert_eq!(info.code, CloseCode::INVALID_PAYLOAD);
    assert_eq!(
        info.error,
        Some(Error::Protocol(ProtocolError::InvalidUtf8))
    );
}
