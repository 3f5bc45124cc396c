//! The reconnecting client on loopback: a server restart with the
//! registration replayed and the queue delivered in order, messages a
//! failed connection did not send, the bounded queue, giving up, and
//! clean ends (shutdown, last handle dropped).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;
use tokio::sync::mpsc;
use wharf_tokio::{
    ClientEvent, ClientEvents, ClientOptions, ClientRequest, CloseCode, Disconnect, Message,
    ReconnectConfig, ReconnectingClient, SendError, Server, ServerConfig, ServerHandle,
};

/// The next event, within the test's bound.
async fn next_event(events: &mut ClientEvents) -> ClientEvent {
    within("next event", events.recv())
        .await
        .expect("the client is running")
}

/// Skips events until `pick` matches one (at most 10,000 events).
async fn wait_for<T>(
    events: &mut ClientEvents,
    mut pick: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    for _ in 0..10_000 {
        let event = next_event(events).await;
        if let Some(found) = pick(&event) {
            return found;
        }
    }
    panic!("no matching event in 10,000");
}

/// A server on `addr` that reports every message it receives, with the
/// number of the connection it came on, and echoes it.
async fn recording_server(
    addr: &str,
    seen: mpsc::UnboundedSender<(usize, Message)>,
) -> (SocketAddr, ServerHandle) {
    // The address may be one whose last listener was just aborted: its
    // task drops the listener on its next turn.
    let mut tries = 0;
    let mut server = loop {
        match Server::bind(addr, ServerConfig::new()).await {
            Ok(server) => break server,
            Err(e) if tries < 100 => {
                tries += 1;
                eprintln!("bind {addr}: {e}; again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    let local = server.local_addr().expect("bound");
    let handle = server.handle();
    tokio::spawn(async move {
        let mut conn = 0;
        while let Ok(incoming) = server.accept().await {
            conn += 1;
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(message)) = ws.recv().await {
                    let _ = seen.send((conn, message.clone()));
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (local, handle)
}

async fn expect_seen(seen: &mut mpsc::UnboundedReceiver<(usize, Message)>) -> (usize, Message) {
    within("server receives", seen.recv())
        .await
        .expect("server running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_server_restart_with_registration_replayed_and_queue_in_order() {
    let (tx, mut seen) = mpsc::unbounded_channel();
    let (addr, server) = recording_server("127.0.0.1:0", tx.clone()).await;
    let mut options =
        ClientOptions::new(ClientRequest::new(&format!("ws://{addr}/feed")).expect("url"));
    options.reconnect = ReconnectConfig::fixed(Duration::from_millis(50));
    options.registration = Some(Box::new(|_| {
        vec![Message::text("register"), Message::text("subscribe")]
    }));
    let (client, mut events) = ReconnectingClient::spawn(options).expect("spawned");

    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Connected(_)).then_some(())
    })
    .await;
    for i in 0..5 {
        client
            .send(Message::text(format!("a{i}")))
            .await
            .expect("queued");
    }
    let mut first = Vec::new();
    for _ in 0..7 {
        first.push(expect_seen(&mut seen).await);
    }
    let expected: Vec<Message> = ["register", "subscribe", "a0", "a1", "a2", "a3", "a4"]
        .into_iter()
        .map(Message::text)
        .collect();
    assert_eq!(
        first.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(first.iter().all(|(conn, _)| *conn == 1));

    // The server goes away (1001), and stays away for a while.
    within("server shutdown", server.shutdown()).await;
    let lost = wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected(d) => match &d.reason {
            Disconnect::Lost(info) => Some(info.code),
            _ => None,
        },
        _ => None,
    })
    .await;
    assert_eq!(lost, CloseCode::GOING_AWAY);
    assert!(!client.is_connected());

    // Sent while disconnected: queued, in order.
    for i in 0..50 {
        client
            .send(Message::text(format!("b{i}")))
            .await
            .expect("queued");
    }
    assert_eq!(client.queued(), 50);
    // Attempts fail while nothing listens.
    wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected(d) => {
            matches!(d.reason, Disconnect::Connect(_) | Disconnect::Handshake(_)).then_some(())
        }
        _ => None,
    })
    .await;

    // The server comes back on the same address.
    let (_, server) = recording_server(&addr.to_string(), tx).await;
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Connected(_)).then_some(())
    })
    .await;
    let mut second = Vec::new();
    for _ in 0..52 {
        second.push(expect_seen(&mut seen).await);
    }
    let mut expected = vec![Message::text("register"), Message::text("subscribe")];
    expected.extend((0..50).map(|i| Message::text(format!("b{i}"))));
    assert_eq!(
        second.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(
        second.iter().all(|(conn, _)| *conn == 1),
        "one new connection"
    );

    // The echoes come back as events too.
    let echo = wait_for(&mut events, |e| match e {
        ClientEvent::Message(m) if *m == Message::text("b49") => Some(()),
        _ => None,
    });
    within("echo of b49", echo).await;

    let unsent = within("client shutdown", client.shutdown()).await;
    assert!(unsent.is_empty());
    within("server shutdown", server.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_ends_every_task() {
    let baseline_tasks = alive_tasks();
    let baseline_fds = fd_count();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let (addr, server) = recording_server("127.0.0.1:0", tx).await;
    let mut options =
        ClientOptions::new(ClientRequest::new(&format!("ws://{addr}/")).expect("url"));
    options.reconnect = ReconnectConfig::fixed(Duration::from_millis(20));
    let (client, mut events) = ReconnectingClient::spawn(options).expect("spawned");
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Connected(_)).then_some(())
    })
    .await;
    let other = client.clone();
    other
        .send(Message::text("from a clone"))
        .await
        .expect("queued");
    assert_eq!(
        expect_seen(&mut seen).await.1,
        Message::text("from a clone")
    );

    drop(client);
    assert!(other.is_connected(), "one handle is enough to keep it");
    drop(other);
    // The connection closes with 1001, and the event stream ends.
    let end = wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected(d) => Some((d.retry_at, d.reason_code())),
        _ => None,
    })
    .await;
    assert_eq!(end, (None, Some(CloseCode::GOING_AWAY)));
    assert!(matches!(
        within("the last event", events.recv()).await,
        Some(ClientEvent::Stopped)
    ));
    assert!(within("end of events", events.recv()).await.is_none());
    drop(events);

    within("server shutdown", server.shutdown()).await;
    eventually("tasks back to the baseline", || {
        alive_tasks() <= baseline_tasks
    })
    .await;
    eventually("fds back to the baseline", || fd_count() <= baseline_fds).await;
}

/// A small extension for the test above.
trait ReasonCode {
    fn reason_code(&self) -> Option<CloseCode>;
}

impl ReasonCode for wharf_tokio::Disconnected {
    fn reason_code(&self) -> Option<CloseCode> {
        match &self.reason {
            Disconnect::Lost(info) => Some(info.code),
            _ => None,
        }
    }
}

#[tokio::test]
async fn the_queue_is_bounded_and_shutdown_hands_it_back() {
    // A port where nothing listens.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("bound")
    };
    let mut options =
        ClientOptions::new(ClientRequest::new(&format!("ws://{addr}/")).expect("url"));
    options.reconnect = ReconnectConfig::fixed(Duration::from_millis(10));
    options.max_queued_messages = 8;
    let (client, mut events) = ReconnectingClient::spawn(options).expect("spawned");
    for i in 0..8 {
        client
            .try_send(Message::text(format!("m{i}")))
            .expect("room");
    }
    match client.try_send(Message::text("m8")) {
        Err(SendError::Full(m)) => assert_eq!(m, Message::text("m8")),
        other => panic!("{other:?}"),
    }
    // A waiting send is bounded by the caller's timeout.
    let waited = tokio::time::timeout(Duration::from_millis(30), client.reserve())
        .await
        .is_err();
    assert!(waited);
    wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected(d) => {
            matches!(d.reason, Disconnect::Connect(_) | Disconnect::Handshake(_)).then_some(())
        }
        _ => None,
    })
    .await;
    let sender = client.clone();
    let unsent = within("shutdown", client.shutdown()).await;
    let expected: Vec<Message> = (0..8).map(|i| Message::text(format!("m{i}"))).collect();
    assert_eq!(unsent, expected);
    match sender.try_send(Message::text("late")) {
        Err(SendError::Closed(m)) => assert_eq!(m, Message::text("late")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        sender.send(Message::text("late")).await,
        Err(SendError::Closed(_))
    ));
    // The events end after the task.
    for _ in 0..1000 {
        if within("events", events.recv()).await.is_none() {
            return;
        }
    }
    panic!("the event stream did not end");
}

#[tokio::test]
async fn gives_up_after_max_attempts() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("bound")
    };
    let mut policy = ReconnectConfig::fixed(Duration::from_millis(10));
    policy.max_attempts = Some(3);
    let mut options =
        ClientOptions::new(ClientRequest::new(&format!("ws://{addr}/")).expect("url"));
    options.reconnect = policy;
    let (client, mut events) = ReconnectingClient::spawn(options).expect("spawned");
    let mut retries = Vec::new();
    while let Some(event) = within("events", events.recv()).await {
        match event {
            ClientEvent::Disconnected(d) => {
                assert!(matches!(
                    d.reason,
                    Disconnect::Connect(_) | Disconnect::Handshake(_)
                ));
                retries.push(d.retry_at.is_some());
            }
            ClientEvent::Stopped => {}
            other => panic!("{other:?}"),
        }
        assert!(retries.len() <= 3);
    }
    // Two retries, then it gives up.
    assert_eq!(retries, vec![true, true, false]);
    within("closed", client.closed()).await;
    assert!(matches!(
        client.try_send(Message::text("x")),
        Err(SendError::Closed(_))
    ));
}

/// A connection that fails with messages it has not sent whole gives them
/// back to the front of the queue; the next connection sends them, in
/// order, whole. Messages already written to the old socket are not sent
/// again (at most once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connection_gives_its_unsent_messages_back() {
    let (addr, peer) = silent_peer().await;
    let mut core = wharf_tokio::Config::default();
    core.max_send_queue = 512 * 1024;
    let mut options = wharf_tokio::ClientConfig::new()
        .with_config(core)
        .client_options(ClientRequest::new(&format!("ws://{addr}/")).expect("url"));
    options.reconnect = ReconnectConfig::fixed(Duration::from_millis(20));
    options.max_queued_messages = 64;
    let (client, mut events) = ReconnectingClient::spawn(options).expect("spawned");
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Connected(_)).then_some(())
    })
    .await;
    // Fill the socket, the connection and the queue.
    let mut sent = 0usize;
    for _ in 0..10_000 {
        match client.try_send(numbered_big(sent)) {
            Ok(()) => sent += 1,
            Err(SendError::Full(_)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if client.try_send(numbered_big(sent)).is_err() {
                    break;
                }
                sent += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(sent > 64, "the socket took some: {sent} sent");
    peer.abort();
    let requeued = wait_for(&mut events, |e| match e {
        ClientEvent::Disconnected(d) => Some(d.requeued),
        _ => None,
    })
    .await;
    assert!(requeued > 0, "the connection held unsent messages");

    // A server comes up on the same address and gets the rest, in order.
    let (tx, mut seen) = mpsc::unbounded_channel();
    let (_, server) = recording_server(&addr.to_string(), tx).await;
    let (_, first) = expect_seen(&mut seen).await;
    let first = index_of(&first);
    assert!(first < sent);
    for i in first + 1..sent {
        let (_, m) = expect_seen(&mut seen).await;
        assert_eq!(index_of(&m), i, "in order, none lost after the first");
        assert!(m == numbered_big(i), "whole");
    }
    // What the dead connection had written into its socket (or had in
    // its last write batch) is gone; everything else arrives.
    assert!(
        sent - first >= requeued,
        "everything requeued arrives: {} of {sent}",
        sent - first
    );
    eprintln!(
        "sent {sent}; written to the dead socket {first}; requeued {requeued}; delivered {}",
        sent - first
    );
    within("client shutdown", client.shutdown()).await;
    within("server shutdown", server.shutdown()).await;
}

/// 64 KiB messages that carry their index.
fn numbered_big(i: usize) -> Message {
    let mut bytes = (i as u64).to_be_bytes().to_vec();
    bytes.resize(64 * 1024, (i % 251) as u8);
    Message::binary(bytes)
}

fn index_of(m: &Message) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&m.payload()[..8]);
    u64::from_be_bytes(b) as usize
}
