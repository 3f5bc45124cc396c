//! End to end over real wss on loopback: a private CA, a server restarted in
//! the middle, and a client that must see every request answered or
//! explicitly failed, and every frame or its loss accounted for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinSet;
use wharf_core::test_certs::TestPki;
use wharf_core::{Bytes, ReconnectConfig, ServerTls};
use wharf_proto::{
    Client, ClientSessionConfig, FrameEvent, OnReconnect, RequestError, RequestResult, Server,
    Status,
};

const REQUESTS: u64 = 60;

async fn start_server(tls: ServerTls, addr: SocketAddr, epoch: u64) -> Server {
    Server::builder()
        .tls(tls)
        .epoch(epoch)
        .authorize(|r| {
            if r.auth_token == "let-me-in" {
                Ok(())
            } else {
                Err("bad token".into())
            }
        })
        .handler(|request| async move {
            match request.kind.as_str() {
                "echo" => {
                    // Some requests are still running when the server stops.
                    let ms = 5 + request.payload.first().copied().unwrap_or(0) % 30;
                    tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
                    RequestResult::ok(request.id, request.payload)
                }
                _ => RequestResult::error(request.id, Status::UnknownKind, "no such kind"),
            }
        })
        .bind(addr)
        .await
        .expect("bind the loopback address")
}

/// Runs the scenario; returns (answered, failed) counts.
async fn scenario(policy: OnReconnect) -> (usize, usize) {
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost", "127.0.0.1"]);
    let server = start_server(server_tls.clone(), "127.0.0.1:0".parse().unwrap(), 1).await;
    let addr = server.local_addr();

    let config = ClientSessionConfig::new("e2e")
        .with_auth_token("let-me-in")
        .with_stream("ticks")
        .with_request_timeout(Duration::from_secs(20))
        .with_on_reconnect(policy);
    let (client, mut frames) =
        Client::builder(&format!("wss://localhost:{}/proto", addr.port()), config)
            .tls(pki.client_tls())
            .reconnect(ReconnectConfig::fixed(Duration::from_millis(50)))
            .spawn()
            .unwrap();
    let mut status = client.watch_status();
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.registered))
        .await
        .expect("registered in time")
        .unwrap();
    let first_epoch = client.status().server_epoch;
    assert_eq!(first_epoch, 1);

    // Frames: collected by epoch in a task of their own.
    let (count_tx, mut count) = tokio::sync::watch::channel(0u64);
    let collector = tokio::spawn(async move {
        let mut epoch = 0usize;
        let mut seen: Vec<Vec<u64>> = vec![Vec::new()];
        let mut gaps = Vec::new();
        while let Some(event) = frames.recv().await {
            match event {
                FrameEvent::Frame(f) => {
                    seen[epoch].push(f.sequence);
                    count_tx.send_modify(|n| *n += 1);
                }
                FrameEvent::Reset { .. } => {
                    epoch += 1;
                    seen.push(Vec::new());
                }
                FrameEvent::Gap { missing, .. } => gaps.push(missing),
                _ => {}
            }
        }
        (seen, gaps)
    });

    // Requests, staggered, each checked against its own payload.
    let mut requests = JoinSet::new();
    let publisher = server.publisher();
    let mut published_a = 0;
    for i in 0..REQUESTS / 2 {
        let client = client.clone();
        requests.spawn(async move {
            let payload = Bytes::from(vec![i as u8, 0xAB]);
            (payload.clone(), client.request("echo", payload).await)
        });
        published_a = publisher.publish("ticks", format!("a{i}")).unwrap();
        tokio::time::sleep(Duration::from_millis(4)).await;
    }

    // The restart, with requests in flight.
    server.shutdown().await;
    let more: Vec<u64> = (REQUESTS / 2..REQUESTS / 2 + 5).collect();
    for &i in &more {
        // Made while no server is up: queued until the re-registration.
        let client = client.clone();
        requests.spawn(async move {
            let payload = Bytes::from(vec![i as u8, 0xCD]);
            (payload.clone(), client.request("echo", payload).await)
        });
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let server = start_server(server_tls, addr, 2).await;
    let publisher = server.publisher();
    let mut published_b = 0;
    for i in REQUESTS / 2 + 5..REQUESTS {
        let client = client.clone();
        requests.spawn(async move {
            let payload = Bytes::from(vec![i as u8, 0xEF]);
            (payload.clone(), client.request("echo", payload).await)
        });
        published_b = publisher.publish("ticks", format!("b{i}")).unwrap();
        tokio::time::sleep(Duration::from_millis(4)).await;
    }

    let mut answered = 0;
    let mut failed = 0;
    let outcome = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(joined) = requests.join_next().await {
            let (payload, result) = joined.expect("request task");
            match result {
                Ok(result) => {
                    assert!(result.is_ok(), "{result:?}");
                    assert_eq!(result.payload(), Some(&payload), "matched to its request");
                    answered += 1;
                }
                // Explicit, and only what the policy allows.
                Err(RequestError::ConnectionLost) if policy == OnReconnect::Fail => failed += 1,
                Err(e) => panic!("request {payload:?} failed: {e}"),
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "every request ended in time");
    assert_eq!(answered + failed, REQUESTS as usize);

    let status = client.status();
    println!("{policy:?}: {answered} answered, {failed} failed, {status:?}");
    assert_eq!(status.registrations, 2, "{status:?}");
    assert!(status.connections_lost >= 1, "{status:?}");
    assert_eq!(status.server_epoch, 2);
    assert_eq!(status.protocol_errors, 0);
    if policy == OnReconnect::Resend {
        assert_eq!(failed, 0);
    }

    // Let the last frames arrive, then stop.
    let total = published_a + published_b;
    let _ = tokio::time::timeout(Duration::from_secs(10), count.wait_for(|&n| n >= total)).await;
    client.shutdown().await;
    server.shutdown().await;
    let (seen, gaps) = collector.await.unwrap();
    assert!(gaps.is_empty(), "gaps: {gaps:?}");
    let expected: BTreeMap<usize, Vec<u64>> = [
        (0, (1..=published_a).collect()),
        (1, (1..=published_b).collect()),
    ]
    .into();
    let got: BTreeMap<usize, Vec<u64>> = seen.into_iter().enumerate().collect();
    assert_eq!(got, expected, "every frame of both runs, in order");
    (answered, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_answered_across_a_server_restart() {
    let (answered, failed) = scenario(OnReconnect::Resend).await;
    assert_eq!((answered, failed), (REQUESTS as usize, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_answered_or_explicitly_failed_when_failing_on_reconnect() {
    let (answered, failed) = scenario(OnReconnect::Fail).await;
    assert_eq!(answered + failed, REQUESTS as usize);
}
