//! Reconnect soak: thousands of connect → register → echo → close cycles of
//! the reconnecting client against a real loopback server, asserting that
//! file descriptors, live heap bytes and live tasks stay flat.
//!
//! 2,000 cycles by default (a few seconds); more with
//! `WHARF_SOAK_CYCLES=100000 cargo test -p wharf-tokio --test soak -- --nocapture`,
//! over wss (TLS with rcgen certificates) with `WHARF_SOAK_TLS=1`, and with
//! the figures printed every N cycles with `WHARF_SOAK_TRACE=N`.
//!
//! Over wss, rustls' session-resumption caches (bounded: 256 sessions on the
//! server, 8 tickets per server name on the client) fill up during the first
//! ~2,000 cycles and stay flat after; there the early sample is taken at
//! cycle 2,500 and the default is 5,000 cycles.
//!
//! This file is its own test binary with a single test, so the counting
//! allocator (`counting/`) sees only this test's allocations.

mod counting;
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use wharf_tokio::{
    ClientConfig, ClientEvent, ClientEvents, ClientRequest, CloseCode, Disconnect, Message,
    ReconnectConfig, ReconnectingClient, Server, ServerConfig,
};

/// Default cycle count; `WHARF_SOAK_CYCLES` changes it.
const DEFAULT_CYCLES: usize = 2_000;
const DEFAULT_CYCLES_TLS: usize = 5_000;

/// Where the figures are first sampled, to compare with the last cycle.
const EARLY_CYCLE: usize = 100;
const EARLY_CYCLE_TLS: usize = 2_500;

/// Allowed heap growth between the early and the last sample.
const HEAP_SLACK: isize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    fds: usize,
    heap: isize,
    tasks: usize,
}

fn sample() -> Sample {
    Sample {
        fds: fd_count(),
        heap: counting::live_bytes(),
        tasks: alive_tasks(),
    }
}

async fn next_event(events: &mut ClientEvents) -> ClientEvent {
    within("next event", events.recv())
        .await
        .expect("the client is running")
}

#[tokio::test(flavor = "current_thread")]
async fn reconnect_soak_keeps_fds_heap_and_tasks_flat() {
    let tls = std::env::var("WHARF_SOAK_TLS").is_ok_and(|v| v == "1");
    let (default_cycles, early_cycle) = if tls {
        (DEFAULT_CYCLES_TLS, EARLY_CYCLE_TLS)
    } else {
        (DEFAULT_CYCLES, EARLY_CYCLE)
    };
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    let cycles = env("WHARF_SOAK_CYCLES")
        .unwrap_or(default_cycles)
        .max(early_cycle + 1);
    let trace = env("WHARF_SOAK_TRACE").unwrap_or(0);
    let (server_config, client_config, scheme) = if tls {
        let tls = support::tls();
        (
            ServerConfig::new().with_tls(tls.server),
            ClientConfig::new().with_tls(tls.client),
            "wss",
        )
    } else {
        (ServerConfig::new(), ClientConfig::new(), "ws")
    };
    let started = Instant::now();
    let baseline = sample();

    // The server: echo "hello", close with 1000 on "bye".
    let mut server = Server::bind("127.0.0.1:0", server_config)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("bound");
    let handle = server.handle();
    let handlers = Arc::new(AtomicUsize::new(0));
    let live_handlers = handlers.clone();
    let accept_loop = tokio::spawn(async move {
        while let Ok(incoming) = server.accept().await {
            let handlers = live_handlers.clone();
            handlers.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut ws) = incoming.handshake().await {
                    while let Some(Ok(message)) = ws.recv().await {
                        if message == Message::text("bye") {
                            let _ = ws.close(CloseCode::NORMAL, "").await;
                            break;
                        }
                        if ws.send(message).await.is_err() {
                            break;
                        }
                    }
                }
                handlers.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });

    // The client: reconnect at once, register with "hello" on every Open.
    let mut options = client_config
        .client_options(ClientRequest::new(&format!("{scheme}://{addr}/soak")).expect("url"));
    options.reconnect = ReconnectConfig::fixed(Duration::ZERO);
    options.registration = Some(Box::new(|_| vec![Message::text("hello")]));
    let (client, mut events) = ReconnectingClient::spawn(options).expect("spawned");

    let mut early = None;
    let mut last = None;
    for cycle in 1..=cycles {
        match next_event(&mut events).await {
            ClientEvent::Connected(_) => {}
            other => panic!("cycle {cycle}: expected Connected, got {other:?}"),
        }
        match next_event(&mut events).await {
            ClientEvent::Message(m) if m == Message::text("hello") => {}
            other => panic!("cycle {cycle}: expected the echo, got {other:?}"),
        }
        let traced = trace > 0 && cycle % trace == 0;
        if cycle == early_cycle || cycle == cycles || traced {
            // Quiescent: one open connection, both ends idle, the previous
            // connection's tasks gone.
            eventually("one server connection", || {
                handle.connections() == 1 && handlers.load(Ordering::SeqCst) == 1
            })
            .await;
            tokio::task::yield_now().await;
            let s = sample();
            if traced {
                eprintln!(
                    "soak: cycle {cycle:<6}    fds {:>3}  heap {:>9} B  tasks {}",
                    s.fds, s.heap, s.tasks
                );
            }
            if cycle == early_cycle {
                early = Some(s);
            }
            if cycle == cycles {
                last = Some(s);
            }
        }
        client.try_send(Message::text("bye")).expect("room");
        match next_event(&mut events).await {
            ClientEvent::Disconnected(d) => match d.reason {
                Disconnect::Lost(info) => {
                    assert_eq!(info.code, CloseCode::NORMAL, "cycle {cycle}");
                    assert!(info.clean, "cycle {cycle}: {info:?}");
                }
                other => panic!("cycle {cycle}: {other:?}"),
            },
            other => panic!("cycle {cycle}: expected Disconnected, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();

    let unsent = within("client shutdown", client.shutdown()).await;
    assert!(unsent.is_empty());
    drop(events);
    within("server shutdown", handle.shutdown()).await;
    within("accept loop", accept_loop).await.expect("ended");
    eventually("tasks back to the baseline", || {
        alive_tasks() == baseline.tasks
    })
    .await;
    let end = sample();

    let early = early.expect("sampled");
    let last = last.expect("sampled");
    eprintln!(
        "soak: {cycles} reconnect cycles in {elapsed:.2?} ({:.0} cycles/s)",
        cycles as f64 / elapsed.as_secs_f64()
    );
    eprintln!(
        "soak: baseline        fds {:>3}  heap {:>9} B  tasks {}",
        baseline.fds, baseline.heap, baseline.tasks
    );
    eprintln!(
        "soak: cycle {early_cycle:<6}    fds {:>3}  heap {:>9} B  tasks {}",
        early.fds, early.heap, early.tasks
    );
    eprintln!(
        "soak: cycle {cycles:<6}    fds {:>3}  heap {:>9} B  tasks {}",
        last.fds, last.heap, last.tasks
    );
    eprintln!(
        "soak: after shutdown  fds {:>3}  heap {:>9} B  tasks {}",
        end.fds, end.heap, end.tasks
    );
    eprintln!(
        "soak: heap change cycle {early_cycle} → {cycles}: {:+} B",
        last.heap - early.heap
    );

    assert_eq!(last.fds, early.fds, "file descriptors grew");
    assert_eq!(last.tasks, early.tasks, "live tasks grew");
    assert!(
        last.heap - early.heap <= HEAP_SLACK,
        "heap grew by {} B over {} cycles",
        last.heap - early.heap,
        cycles - early_cycle
    );
    assert_eq!(end.tasks, baseline.tasks, "tasks left behind");
    assert!(end.fds <= baseline.fds, "file descriptors left open");
}
