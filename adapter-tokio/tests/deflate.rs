//! permessage-deflate (RFC 7692) through the adapter, over loopback sockets:
//! messages round-trip compressed over ws and wss, and `send_uncompressed`
//! puts frames on the wire with RSV1 clear, seen by a core `Connection`
//! driven by hand on the other end.

mod support;

use std::sync::Arc;
use std::time::Instant;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wharf_core::{Accept, Connection, Event};
use wharf_tokio::{connect, ClientConfig, CloseCode, Config, DeflateConfig, Message, ServerConfig};

/// The core's defaults with permessage-deflate on.
fn deflate_config() -> Config {
    let mut config = Config::default();
    config.deflate = Some(DeflateConfig::default());
    config
}

/// What a data frame's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    opcode: u8,
    rsv1: bool,
    payload_len: usize,
}

/// The frames a client sent (masked, RFC 6455 §5.2) in `wire`, after its
/// HTTP request head. A cut-off last frame is left out.
fn client_frames(wire: &[u8]) -> Vec<Frame> {
    let head_end = wire
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("the upgrade request ends its head")
        + 4;
    let mut rest = &wire[head_end..];
    let mut frames = Vec::new();
    while rest.len() >= 2 {
        let (b0, b1) = (rest[0], rest[1]);
        let (mut len, mut at) = (usize::from(b1 & 0x7f), 2);
        if len == 126 && rest.len() >= 4 {
            len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            at = 4;
        } else if len == 127 && rest.len() >= 10 {
            let mut n = [0u8; 8];
            n.copy_from_slice(&rest[2..10]);
            len = usize::try_from(u64::from_be_bytes(n)).expect("a 64-bit length fits");
            at = 10;
        }
        if b1 & 0x80 != 0 {
            at += 4; // the masking key
        }
        if rest.len() < at + len {
            break;
        }
        frames.push(Frame {
            opcode: b0 & 0x0f,
            rsv1: b0 & 0x40 != 0,
            payload_len: len,
        });
        rest = &rest[at + len..];
    }
    frames
}

/// What the hand-driven peer saw.
struct Seen {
    wire: Vec<u8>,
    messages: Vec<Message>,
    deflate: bool,
}

/// A server peer: one core `Connection` with deflate on, driven by hand on
/// the first socket `listener` accepts, keeping every byte it reads, until
/// `count` messages have arrived.
async fn recording_peer(listener: TcpListener, count: usize) -> Seen {
    let (mut stream, _) = listener.accept().await.expect("accept");
    let mut conn =
        Connection::server(Arc::new(deflate_config()), None, Instant::now()).expect("a config");
    let mut wire = Vec::new();
    let mut messages = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    while messages.len() < count {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "the client ended the connection early");
        wire.extend_from_slice(&buf[..n]);
        conn.handle_input(Instant::now(), &buf[..n]);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request(_) => conn.accept(Accept::default()).expect("accepted"),
                Event::Message(m) => messages.push(m),
                Event::Closed(info) => panic!("closed before {count} messages: {info:?}"),
                _ => {}
            }
        }
        out.clear();
        while conn.poll_transmit(&mut out) > 0 {}
        stream.write_all(&out).await.expect("write");
    }
    Seen {
        wire,
        messages,
        deflate: conn.deflate().is_some(),
    }
}

#[tokio::test]
async fn send_uncompressed_goes_out_without_rsv1() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let peer = tokio::spawn(recording_peer(listener, 5));

    let config = ClientConfig::new().with_config(deflate_config());
    let mut ws = within("connect", connect(&format!("ws://{addr}/"), &config))
        .await
        .expect("connected");
    assert!(
        ws.response().and_then(|r| r.deflate()).is_some(),
        "the server accepted permessage-deflate"
    );

    // Compressible, and far above the smallest size compressed.
    let text = "the same words again and again, ".repeat(64);
    let sent = vec![
        Message::text(text.clone()),
        Message::text(text.clone()),
        Message::binary(text.clone().into_bytes()),
        Message::text(format!("{text}!")),
        Message::text(format!("{text}?")),
    ];
    ws.send(sent[0].clone()).await.expect("send");
    within("send_uncompressed", ws.send_uncompressed(sent[1].clone()))
        .await
        .expect("send_uncompressed");
    ws.try_send_uncompressed(sent[2].clone())
        .expect("try_send_uncompressed");
    within("reserve", ws.reserve())
        .await
        .expect("room")
        .send_uncompressed(sent[3].clone())
        .expect("permit send_uncompressed");
    let (_reader, mut writer) = ws.split();
    writer.send(sent[4].clone()).await.expect("send");

    let seen = within("the peer's messages", peer).await.expect("the peer");
    assert!(seen.deflate, "the peer negotiated permessage-deflate");
    assert_eq!(seen.messages, sent, "every message intact and in order");

    let data: Vec<Frame> = client_frames(&seen.wire)
        .into_iter()
        .filter(|f| f.opcode == 1 || f.opcode == 2)
        .collect();
    assert_eq!(data.len(), 5, "one frame per message: {data:?}");
    let rsv1: Vec<bool> = data.iter().map(|f| f.rsv1).collect();
    assert_eq!(rsv1, [true, false, false, false, true], "{data:?}");
    for (frame, message) in data.iter().zip(&sent) {
        if frame.rsv1 {
            assert!(
                frame.payload_len < message.len() / 4,
                "compressed: {frame:?}"
            );
        } else {
            assert_eq!(frame.payload_len, message.len(), "sent as it is");
        }
    }
    let _ = writer.close(CloseCode::NORMAL, "").await;
}

/// Round trips of every size through an echo server, both ends compressing.
async fn deflate_round_trip(scheme: &str, server: ServerConfig, client: ClientConfig) {
    let echo = echo_server(server.with_config(deflate_config())).await;
    let client = client.with_config(deflate_config());
    let mut ws = within(
        "connect",
        connect(&format!("{scheme}://{}/", echo.addr), &client),
    )
    .await
    .expect("connected");
    assert!(ws.response().and_then(|r| r.deflate()).is_some());
    for i in 0..40 {
        let message = numbered(i);
        if i % 3 == 0 {
            ws.send_uncompressed(message.clone()).await.expect("send");
        } else {
            ws.send(message.clone()).await.expect("send");
        }
        let echo = within("the echo", ws.recv())
            .await
            .expect("open")
            .expect("an echo");
        assert!(
            echo == message,
            "{} != {}",
            describe(&echo),
            describe(&message)
        );
    }
    let info = within("close", ws.close(CloseCode::NORMAL, ""))
        .await
        .expect("closed");
    assert!(info.clean, "{info:?}");
    echo.handle.shutdown().await;
}

#[tokio::test]
async fn deflate_echo_over_ws() {
    deflate_round_trip("ws", ServerConfig::new(), ClientConfig::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_echo_over_wss() {
    let tls = tls();
    deflate_round_trip(
        "wss",
        ServerConfig::new().with_tls(tls.server),
        ClientConfig::new().with_tls(tls.client),
    )
    .await;
}
