//! `connect` / `accept` / `Server` on real loopback sockets: echo over ws
//! and wss, split halves, cancel safety, keepalive, backpressure, the
//! application's accept / reject decision, and graceful shutdown.

mod support;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use support::*;
use wharf_core::{HandshakeError, TimeoutKind, TlsError};
use wharf_tokio::{
    connect, connect_request, Accept, ClientConfig, ClientRequest, CloseCode, Config, Error,
    Initiator, Message, Reject, SendError, Server, ServerConfig,
};

const N: usize = 200;

/// Sends `numbered(0..n)` and checks that the echoes come back whole and in order.
async fn echo_round_trip(mut ws: wharf_tokio::WebSocket, n: usize) {
    for i in 0..n {
        within("send", ws.send(numbered(i))).await.expect("queued");
    }
    for i in 0..n {
        let got = within("echo", ws.recv())
            .await
            .expect("connection open")
            .expect("no failure");
        assert!(got == numbered(i), "message {i}: got {}", describe(&got));
    }
    let info = within("close", ws.close(CloseCode::NORMAL, "done"))
        .await
        .expect("valid close");
    assert!(info.clean, "{info:?}");
    assert_eq!(info.code, CloseCode::NORMAL);
    assert_eq!(info.initiator, Initiator::Local);
    assert!(within("end", ws.recv()).await.is_none());
}

#[tokio::test]
async fn echo_over_ws() {
    let server = echo_server(ServerConfig::new()).await;
    let url = format!("ws://{}/echo", server.addr);
    let ws = within("connect", connect(&url, &ClientConfig::new()))
        .await
        .expect("connected");
    assert!(ws.response().is_some());
    echo_round_trip(ws, N).await;
    within("shutdown", server.handle.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_wss() {
    let tls = tls();
    let server = echo_server(ServerConfig::new().with_tls(tls.server.clone())).await;
    let config = ClientConfig::new().with_tls(tls.client.clone());
    // By IP address and by name: the certificate has both.
    let by_ip = format!("wss://{}/echo", server.addr);
    let ws = within("connect", connect(&by_ip, &config))
        .await
        .expect("connected over TLS");
    echo_round_trip(ws, N).await;
    let by_name = format!("wss://localhost:{}/echo", server.addr.port());
    let ws = within("connect", connect(&by_name, &config))
        .await
        .expect("connected over TLS");
    echo_round_trip(ws, 20).await;
    within("shutdown", server.handle.shutdown()).await;
}

#[tokio::test]
async fn wss_refuses_an_untrusted_server() {
    let tls = tls();
    let server = echo_server(ServerConfig::new().with_tls(tls.server.clone())).await;
    let stranger = wharf_core::test_certs::TestPki::new().client_tls();
    let url = format!("wss://{}/", server.addr);
    let err = within(
        "connect",
        connect(&url, &ClientConfig::new().with_tls(stranger)),
    )
    .await
    .expect_err("unknown issuer");
    assert!(
        matches!(
            err,
            Error::Connection(wharf_core::Error::Tls(TlsError::UnknownIssuer))
        ),
        "{err:?}"
    );
    within("shutdown", server.handle.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_work_from_two_tasks() {
    let server = echo_server(ServerConfig::new()).await;
    let url = format!("ws://{}/", server.addr);
    let ws = within("connect", connect(&url, &ClientConfig::new()))
        .await
        .expect("connected");
    let (mut reader, mut writer) = ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            writer.send(numbered(i)).await.expect("queued");
        }
        writer.flush().await.expect("written");
        writer
    });
    let receiver = tokio::spawn(async move {
        for i in 0..N {
            let got = reader.next().await.expect("open").expect("no failure");
            assert!(got == numbered(i), "message {i}: got {}", describe(&got));
        }
        reader
    });
    let mut writer = within("sender", sender).await.expect("sender task");
    let mut reader = within("receiver", receiver).await.expect("receiver task");
    let info = within("close", writer.close(CloseCode::NORMAL, ""))
        .await
        .expect("closed");
    assert!(info.clean);
    assert!(within("end", reader.recv()).await.is_none());
    assert_eq!(reader.close_info().map(|i| i.code), Some(CloseCode::NORMAL));
    within("shutdown", server.handle.shutdown()).await;
}

#[tokio::test]
async fn sink_and_stream() {
    let server = echo_server(ServerConfig::new()).await;
    let url = format!("ws://{}/", server.addr);
    let mut ws = within("connect", connect(&url, &ClientConfig::new()))
        .await
        .expect("connected");
    let mut outgoing = futures::stream::iter((0..50).map(|i| Ok(numbered(i))));
    within("send_all", ws.send_all(&mut outgoing))
        .await
        .expect("sent");
    for i in 0..50 {
        let got = within("echo", ws.next()).await.expect("open").expect("ok");
        assert!(got == numbered(i));
    }
    within("sink close", SinkExt::close(&mut ws))
        .await
        .expect("closed");
    assert!(ws.close_info().is_some_and(|i| i.clean));
    within("shutdown", server.handle.shutdown()).await;
}

/// The server pushes messages; the client receives them in a `select!`
/// loop whose other branch wins whenever a receive has to wait, so most
/// receive futures are dropped. Every message still arrives whole, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_loop_cancelling_receives_loses_nothing() {
    const COUNT: usize = 400;
    let mut server = Server::bind("127.0.0.1:0", ServerConfig::new())
        .await
        .expect("bind");
    let url = format!("ws://{}/", server.local_addr().expect("bound"));
    let handle = server.handle();
    tokio::spawn(async move {
        let incoming = server.accept().await.expect("a client");
        let mut ws = incoming.handshake().await.expect("open");
        for i in 0..COUNT {
            ws.send(numbered(i)).await.expect("queued");
        }
        // Wait for the client's close.
        while ws.recv().await.is_some() {}
    });

    let mut core = wharf_tokio::Config::default();
    core.max_receive_events = 4;
    core.max_receive_queue = 64 * 1024;
    let config = ClientConfig::new().with_config(core);
    let mut ws = within("connect", connect(&url, &config))
        .await
        .expect("connected");
    let mut next = 0;
    let mut cancelled = 0u64;
    let mut ticks = tokio::time::interval(Duration::from_micros(50));
    let run = async {
        for _ in 0..50_000_000u64 {
            if next == COUNT {
                break;
            }
            tokio::select! {
                biased;
                _ = ticks.tick() => cancelled += 1,
                _ = tokio::task::yield_now() => cancelled += 1,
                got = ws.recv() => {
                    let got = got.expect("open").expect("no failure");
                    assert!(got == numbered(next), "message {next}: got {}", describe(&got));
                    next += 1;
                }
            }
        }
    };
    within("receive loop", run).await;
    assert_eq!(next, COUNT);
    assert!(
        cancelled > 100,
        "receives were cancelled only {cancelled} times"
    );
    eprintln!("select loop: {COUNT} messages, {cancelled} cancelled receives");
    within("close", ws.close(CloseCode::NORMAL, ""))
        .await
        .expect("closed");
    within("shutdown", handle.shutdown()).await;
}

/// Sending through `reserve()` in a `select!` loop whose other branch
/// often wins, and through `send()` whose wait is cut short by a zero
/// timeout: every message reaches the peer once, whole, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_sends_lose_nothing() {
    const COUNT: usize = 300;
    let server = echo_server(ServerConfig::new()).await;
    let url = format!("ws://{}/", server.addr);
    let config = ClientConfig::new().with_outgoing_buffer(2);
    let ws = within("connect", connect(&url, &config))
        .await
        .expect("connected");
    let (mut reader, mut writer) = ws.split();
    let receiver = tokio::spawn(async move {
        for i in 0..2 * COUNT {
            let got = reader.recv().await.expect("open").expect("ok");
            assert!(
                got == numbered(i % COUNT),
                "echo {i}: got {}",
                describe(&got)
            );
        }
        reader
    });

    // 1. reserve() in select!: the message is built only once there is room.
    let mut next = 0;
    let mut cancelled = 0u64;
    let run = async {
        for _ in 0..50_000_000u64 {
            if next == COUNT {
                break;
            }
            tokio::select! {
                biased;
                _ = tokio::task::yield_now() => cancelled += 1,
                permit = writer.reserve() => {
                    permit.expect("open").send(numbered(next)).expect("room");
                    next += 1;
                }
            }
        }
    };
    within("reserve loop", run).await;
    assert_eq!(next, COUNT);

    // 2. send(): queued at the call; the wait is cut short (the future is
    // dropped), the message still goes out. A send while the buffer is still
    // over its bound hands the message back, and it is retried.
    let mut pending: Option<Message> = None;
    let mut next = 0;
    let mut handed_back = 0u64;
    let run = async {
        for _ in 0..50_000_000u64 {
            let message = match pending.take() {
                Some(m) => m,
                None if next < COUNT => {
                    next += 1;
                    numbered(next - 1)
                }
                None => break,
            };
            match tokio::time::timeout(Duration::ZERO, writer.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(SendError::Full(m))) => {
                    handed_back += 1;
                    pending = Some(m);
                    tokio::task::yield_now().await;
                }
                Ok(Err(e)) => panic!("{e}"),
                Err(_elapsed) => cancelled += 1,
            }
        }
    };
    within("send loop", run).await;
    within("flush", writer.flush()).await.expect("written");
    let reader = within("echoes", receiver).await.expect("receiver task");
    eprintln!("cancelled waits: {cancelled}, handed back: {handed_back}");
    drop(reader);
    within("close", writer.close(CloseCode::NORMAL, ""))
        .await
        .expect("closed");
    within("shutdown", server.handle.shutdown()).await;
}

/// A peer that stops answering after the handshake is detected by the
/// keepalive: ping after 100 ms of silence, fail after 200 ms more.
#[tokio::test]
async fn keepalive_detects_a_silent_peer() {
    let (addr, peer) = silent_peer().await;
    let mut core = Config::default();
    core.ping_interval = Some(Duration::from_millis(100));
    core.pong_timeout = Duration::from_millis(200);
    core.close_timeout = Duration::from_millis(200);
    let config = ClientConfig::new().with_config(core);
    let started = Instant::now();
    let mut ws = within("connect", connect(&format!("ws://{addr}/"), &config))
        .await
        .expect("handshake done by the peer");
    let end = within("keepalive", ws.recv()).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(
            end,
            Some(Err(Error::Connection(wharf_core::Error::Timeout(
                TimeoutKind::Pong
            ))))
        ),
        "{end:?}"
    );
    assert!(within("end", ws.recv()).await.is_none());
    let info = ws.close_info().expect("closed");
    assert_eq!(info.code, CloseCode::INTERNAL_ERROR);
    assert!(!info.clean);
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(5),
        "detected after {elapsed:?}"
    );
    peer.abort();
}

/// The server's application decides from the request: path, subprotocol.
#[tokio::test]
async fn server_accepts_or_rejects_from_the_request() {
    let config = ServerConfig::new().on_request(|request| match request.path() {
        "/chat" => Ok(Accept {
            subprotocol: request.subprotocols().first().cloned(),
            headers: vec![("X-Room".into(), "lobby".into())],
        }),
        _ => Err(Reject {
            status: 403,
            headers: Vec::new(),
            body: b"forbidden".to_vec(),
        }),
    });
    let server = echo_server(config).await;

    let request = ClientRequest::new(&format!("ws://{}/chat", server.addr))
        .expect("url")
        .subprotocol("chat.v2");
    let mut ws = within("connect", connect_request(&request, &ClientConfig::new()))
        .await
        .expect("accepted");
    assert_eq!(ws.subprotocol(), Some("chat.v2"));
    let response = ws.response().expect("client side has the 101");
    assert!(response
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("x-room") && v == b"lobby"));
    ws.send(Message::text("hi")).await.expect("queued");
    let echo = within("echo", ws.recv()).await.expect("open").expect("ok");
    assert_eq!(echo, Message::text("hi"));

    let url = format!("ws://{}/admin", server.addr);
    let err = within("connect", connect(&url, &ClientConfig::new()))
        .await
        .expect_err("rejected");
    assert!(
        matches!(
            &err,
            Error::Connection(wharf_core::Error::Handshake(HandshakeError::Rejected {
                status: 403,
                ..
            }))
        ),
        "{err:?}"
    );
    drop(ws);
    within("shutdown", server.handle.shutdown()).await;
}

/// With a peer that reads nothing, the bounded buffers fill up and
/// `try_send` hands the message back intact; nothing grows without bound.
#[tokio::test]
async fn full_buffers_hand_the_message_back() {
    let (addr, peer) = silent_peer().await;
    let mut core = Config::default();
    core.max_send_queue = 256 * 1024;
    let config = ClientConfig::new()
        .with_config(core)
        .with_outgoing_buffer(4);
    let mut ws = within("connect", connect(&format!("ws://{addr}/"), &config))
        .await
        .expect("open");
    let big = Message::binary(vec![7u8; 1 << 20]);
    let mut accepted = 0usize;
    let mut refused = None;
    for _ in 0..10_000 {
        match ws.try_send(big.clone()) {
            Ok(()) => accepted += 1,
            Err(SendError::Full(m)) => {
                // The driver may still be moving messages into the socket:
                // give it a moment, and stop once it is really stuck.
                tokio::time::sleep(Duration::from_millis(5)).await;
                if ws.try_send(m.clone()).is_err() {
                    refused = Some(m);
                    break;
                }
                accepted += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let refused = refused.expect("the buffers are bounded");
    assert!(refused == big, "the refused message comes back intact");
    // Kernel socket buffers take a few MiB on loopback; our own part is the
    // core's 256 KiB queue, one 256 KiB transmit batch and 4 queued messages.
    assert!(accepted < 64, "accepted {accepted} MiB before refusing");
    // A waiting send() is bounded in time by the caller.
    let waited = tokio::time::timeout(Duration::from_millis(50), ws.reserve()).await;
    assert!(waited.is_err(), "no room while the peer reads nothing");
    peer.abort();
    // The peer's socket closes: the connection fails and hands back what it
    // could not send.
    let end = within("failure", async {
        loop {
            match ws.recv().await {
                Some(Ok(_)) => {}
                other => return other,
            }
        }
    })
    .await;
    assert!(matches!(end, Some(Err(Error::Connection(_)))), "{end:?}");
    let unsent = ws.take_unsent();
    assert!(!unsent.is_empty());
    assert!(unsent.iter().all(|m| *m == big));
}

/// Shutdown: stop accepting, close every open connection with 1001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_with_going_away() {
    let server = echo_server(ServerConfig::new()).await;
    let url = format!("ws://{}/", server.addr);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = within("connect", connect(&url, &ClientConfig::new()))
            .await
            .expect("open");
        ws.send(Message::text("x")).await.expect("queued");
        within("echo", ws.recv()).await.expect("open").expect("ok");
        clients.push(ws);
    }
    assert_eq!(server.handle.connections(), 3);
    within("shutdown", server.handle.shutdown()).await;
    assert_eq!(server.handle.connections(), 0);
    for mut ws in clients {
        assert!(within("end", ws.recv()).await.is_none(), "a clean close");
        let info = ws.close_info().expect("closed");
        assert_eq!(info.code, CloseCode::GOING_AWAY);
        assert_eq!(info.initiator, Initiator::Remote);
        assert!(info.clean);
    }
    // The accept loop ended and the listener is closed.
    within("accept loop", server.task).await.expect("ended");
    let refused = within("connect", connect(&url, &ClientConfig::new())).await;
    assert!(matches!(refused, Err(Error::Io(_))), "{refused:?}");
}

/// Dropping a WebSocket closes it with 1001 and ends its task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_websocket_closes_it_and_ends_its_task() {
    let mut server = Server::bind("127.0.0.1:0", ServerConfig::new())
        .await
        .expect("bind");
    let url = format!("ws://{}/", server.local_addr().expect("bound"));
    let handle = server.handle();
    let baseline = alive_tasks();
    let accepted = tokio::spawn(async move {
        let incoming = server.accept().await.expect("a client");
        let mut ws = incoming.handshake().await.expect("open");
        let first = ws.recv().await;
        let end = ws.recv().await;
        (first, end, ws.close_info())
    });
    let mut ws = within("connect", connect(&url, &ClientConfig::new()))
        .await
        .expect("open");
    ws.send(Message::text("last words")).await.expect("queued");
    drop(ws);
    let (first, end, info) = within("server side", accepted).await.expect("task");
    assert_eq!(
        first.expect("a message").expect("ok"),
        Message::text("last words")
    );
    assert!(end.is_none());
    let info = info.expect("closed");
    assert_eq!(info.code, CloseCode::GOING_AWAY);
    assert!(info.clean);
    within("shutdown", handle.shutdown()).await;
    eventually("tasks back to the baseline", || alive_tasks() <= baseline).await;
}

#[tokio::test]
async fn bad_settings_are_caller_errors() {
    let err = connect("http://example.com/", &ClientConfig::new())
        .await
        .expect_err("not a ws URL");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let mut core = Config::default();
    core.message_mode = wharf_tokio::wharf_core::MessageMode::Stream;
    let err = connect("ws://127.0.0.1:1/", &ClientConfig::new().with_config(core))
        .await
        .expect_err("stream mode");
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");

    let server = echo_server(ServerConfig::new()).await;
    let url = format!("ws://{}/", server.addr);
    let mut ws = within("connect", connect(&url, &ClientConfig::new()))
        .await
        .expect("open");
    let err = ws
        .close(CloseCode::ABNORMAL, "")
        .await
        .expect_err("1006 is never sent");
    assert!(matches!(err, Error::Config(_)));
    let err = ws
        .close(CloseCode::NORMAL, &"x".repeat(200))
        .await
        .expect_err("reason too long");
    assert!(matches!(err, Error::Config(_)));
    assert!(!ws.is_closed(), "a refused close changes nothing");
    within("close", ws.close(CloseCode::NORMAL, ""))
        .await
        .expect("closed");
    let again = ws.try_send(Message::text("late"));
    assert!(matches!(again, Err(SendError::Closed(_))));
    within("shutdown", server.handle.shutdown()).await;
}

/// The handshake and close timeouts fire with nobody polling but the
/// connection's own task.
#[tokio::test]
async fn handshake_and_close_timeouts_run_on_their_own() {
    use tokio::io::AsyncReadExt;
    let mut core = Config::default();
    core.handshake_timeout = Duration::from_millis(200);
    core.close_timeout = Duration::from_millis(200);

    // Client side: the server accepts TCP and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound");
    let mute = tokio::spawn(async move {
        let accepted = listener.accept().await;
        std::future::pending::<()>().await;
        drop(accepted);
    });
    let config = ClientConfig::new().with_config(core.clone());
    let started = Instant::now();
    let err = within("connect", connect(&format!("ws://{addr}/"), &config))
        .await
        .expect_err("no answer");
    let elapsed = started.elapsed();
    assert!(
        matches!(
            err,
            Error::Connection(wharf_core::Error::Timeout(TimeoutKind::Handshake))
        ),
        "{err:?}"
    );
    assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5));
    mute.abort();

    // Server side: a client connects and never sends its request.
    let mut server = Server::bind("127.0.0.1:0", ServerConfig::new().with_config(core.clone()))
        .await
        .expect("bind");
    let mut tcp = tokio::net::TcpStream::connect(server.local_addr().expect("bound"))
        .await
        .expect("tcp");
    let incoming = within("accept", server.accept()).await.expect("accepted");
    let err = within("handshake", incoming.handshake())
        .await
        .expect_err("no request");
    assert!(
        matches!(
            err,
            Error::Connection(wharf_core::Error::Timeout(TimeoutKind::Handshake))
        ),
        "{err:?}"
    );
    let mut buf = [0u8; 64];
    let n = within("server closes", tcp.read(&mut buf))
        .await
        .expect("read");
    assert_eq!(n, 0, "the server closed the socket");
    within("shutdown", server.shutdown()).await;

    // Close timeout: the peer never answers our Close.
    let (addr, peer) = silent_peer().await;
    let mut ws = within("connect", connect(&format!("ws://{addr}/"), &config))
        .await
        .expect("open");
    let started = Instant::now();
    let info = within("close", ws.close(CloseCode::NORMAL, "bye"))
        .await
        .expect("valid");
    let elapsed = started.elapsed();
    assert_eq!(
        info.error,
        Some(wharf_core::Error::Timeout(TimeoutKind::Close))
    );
    assert!(!info.clean);
    assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(5));
    peer.abort();
}

/// A sender that fills the socket while its peer does not read, then goes
/// quiet: only the socket becoming writable again can move the rest. A
/// `send` writes from the sender's task when it can; when the socket is
/// full, the connection's task must take over and wait for it.
async fn fill_the_socket_then_go_quiet() {
    const COUNT: usize = 400;
    const SIZE: usize = 16 * 1024;
    let payload = |i: usize| Message::binary(vec![i as u8; SIZE]);
    // The server reads nothing for a while, and holds at most one message
    // for its reader meanwhile: the client's bytes back up into its socket.
    let mut core = wharf_tokio::Config::default();
    core.max_receive_events = 1;
    core.max_receive_queue = SIZE;
    let mut server = Server::bind("127.0.0.1:0", ServerConfig::new().with_config(core))
        .await
        .expect("bind");
    let addr = server.local_addr().expect("bound");
    let reader = tokio::spawn(async move {
        let incoming = server.accept().await.expect("a connection");
        let mut ws = incoming.handshake().await.expect("handshake");
        tokio::time::sleep(Duration::from_millis(300)).await;
        for i in 0..COUNT {
            let got = ws.recv().await.expect("open").expect("no failure");
            assert!(got == payload(i), "message {i}: {}", describe(&got));
        }
        ws
    });
    let mut ws = within(
        "connect",
        connect(&format!("ws://{addr}/"), &ClientConfig::new()),
    )
    .await
    .expect("connected");
    for i in 0..COUNT {
        within("send", ws.send(payload(i))).await.expect("queued");
    }
    // Every message reaches the socket, with no other traffic to help.
    within("flush", ws.flush()).await.expect("all written");
    let _server_ws = within("the reader", reader).await.expect("reader ok");
}

#[tokio::test]
async fn a_sender_that_fills_the_socket_loses_nothing() {
    fill_the_socket_then_go_quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_fills_the_socket_loses_nothing_across_threads() {
    fill_the_socket_then_go_quiet().await;
}
