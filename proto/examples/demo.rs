//! wharf-proto end to end: a wss server with a private CA made on the spot,
//! a client that trusts only that CA, requests and pushed frames, and a
//! server restart in the middle. Exits non-zero if anything was lost.
//!
//! ```sh
//! cargo run --release -p wharf-proto --example demo
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use wharf_core::test_certs::TestPki;
use wharf_core::{ReconnectConfig, ServerTls};
use wharf_proto::{
    Client, ClientSessionConfig, FrameEvent, OnReconnect, Publisher, RequestResult, Server, Status,
};

const REQUESTS: u64 = 120;
const RESTART_AFTER: u64 = 50;
const STREAM: &str = "ticks";

/// Prints a line with the time since the start.
macro_rules! say {
    ($t0:expr, $($arg:tt)*) => {
        println!("[{:>6.3}s] {}", $t0.elapsed().as_secs_f64(), format!($($arg)*))
    };
}

async fn start_server(tls: ServerTls, addr: SocketAddr, run: u64) -> std::io::Result<Server> {
    Server::builder()
        .tls(tls)
        .epoch(run)
        .authorize(|register| {
            if register.auth_token == "demo-token" {
                Ok(())
            } else {
                Err("unknown token".into())
            }
        })
        .handler(|request| async move {
            match request.kind.as_str() {
                "square" => {
                    let Some(n) = std::str::from_utf8(&request.payload)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                    else {
                        return RequestResult::error(
                            request.id,
                            Status::InvalidRequest,
                            "not a number",
                        );
                    };
                    // Some work, so that requests are in flight at the restart.
                    tokio::time::sleep(Duration::from_millis(5 + n % 25)).await;
                    RequestResult::ok(request.id, n.saturating_mul(n).to_string())
                }
                _ => RequestResult::error(request.id, Status::UnknownKind, "no such kind"),
            }
        })
        .bind(addr)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Publishes a tick every 10 ms until aborted, counting what it published.
fn publish_ticks(publisher: Publisher, published: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(10));
        loop {
            every.tick().await;
            let n = published.load(Ordering::Relaxed) + 1;
            if publisher.publish(STREAM, format!("tick {n}")).is_ok() {
                published.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    println!("wharf-proto demo: protobuf requests and streams over wss, with a server restart\n");

    // A private CA and a server certificate, made now; the client trusts only this CA.
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost", "127.0.0.1"]);
    say!(
        t0,
        "made a private CA and a certificate for localhost (rcgen, ECDSA P-256); the client trusts only this CA"
    );

    let server = start_server(server_tls.clone(), "127.0.0.1:0".parse()?, 1).await?;
    let addr = server.local_addr();
    let url = format!("wss://localhost:{}/proto", addr.port());
    say!(t0, "server #1 listening on {url} (epoch 1)");

    let config = ClientSessionConfig::new("demo-client")
        .with_auth_token("demo-token")
        .with_stream(STREAM)
        .with_request_timeout(Duration::from_secs(10))
        .with_on_reconnect(OnReconnect::Resend);
    let (client, mut frames) = Client::builder(&url, config)
        .tls(pki.client_tls())
        .reconnect(ReconnectConfig::fixed(Duration::from_millis(100)))
        .spawn()?;

    // Tell what the connection does, as it happens.
    let mut status = client.watch_status();
    let watched = client.clone();
    let watcher = tokio::spawn(async move {
        let mut last = status.borrow_and_update().clone();
        let mut resent_told = 0;
        while status.changed().await.is_ok() {
            let now = status.borrow_and_update().clone();
            if now.connections_lost > last.connections_lost {
                let resend = now.requests_resent - resent_told;
                resent_told = now.requests_resent;
                say!(
                    t0,
                    "client: connection lost; {resend} sent request(s) to send again; retrying every 100 ms"
                );
            }
            if now.registrations > last.registrations {
                let verb = if now.registrations == 1 {
                    "registered"
                } else {
                    "re-registered"
                };
                let resend = now.requests_resent - resent_told;
                resent_told = now.requests_resent;
                let extra = if resend > 0 {
                    format!(", {resend} more request(s) sent again")
                } else {
                    String::new()
                };
                let waiting = watched.pending();
                say!(
                    t0,
                    "client: {verb} (epoch {}){extra}; {waiting} request(s) waiting go out now",
                    now.server_epoch
                );
            }
            last = now;
        }
    });
    tokio::time::timeout(
        Duration::from_secs(10),
        client.watch_status().wait_for(|s| s.registered),
    )
    .await??;

    // Frames, with gaps and resets, counted as they arrive.
    let frames_seen = Arc::new(AtomicU64::new(0));
    let seen = frames_seen.clone();
    let collector = tokio::spawn(async move {
        let (mut gaps, mut resets) = (0u64, 0u64);
        while let Some(event) = frames.recv().await {
            match event {
                FrameEvent::Frame(frame) => {
                    let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
                    if frame.sequence % 25 == 0 {
                        let text = String::from_utf8_lossy(&frame.payload);
                        say!(
                            t0,
                            "frame {STREAM} #{} ({text:?}), {n} received so far",
                            frame.sequence
                        );
                    }
                }
                FrameEvent::Gap { stream, missing } => {
                    gaps += 1;
                    say!(t0, "GAP on {stream}: frames {missing:?} are lost");
                }
                FrameEvent::Reset {
                    stream,
                    last_sequence,
                } => {
                    resets += 1;
                    say!(t0, "stream {stream}: new server epoch, numbering starts over after #{last_sequence}");
                }
                _ => {}
            }
        }
        (gaps, resets)
    });

    let published = Arc::new(AtomicU64::new(0));
    let mut ticker = Some(publish_ticks(server.publisher(), published.clone()));
    let mut server = Some(server);
    let mut restart = None;

    let answered = Arc::new(AtomicU64::new(0));
    let mut requests = JoinSet::new();
    for i in 1..=REQUESTS {
        let c = client.clone();
        let counter = answered.clone();
        requests.spawn(async move {
            let result = c.request("square", i.to_string()).await;
            let expected = (i * i).to_string();
            match result {
                Ok(r) if r.is_ok() && r.payload().map(|p| &p[..]) == Some(expected.as_bytes()) => {
                    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
                    if i % 20 == 0 {
                        say!(
                            t0,
                            "request #{i}: square({i}) = {expected}  ({n} answered so far)"
                        );
                    }
                    true
                }
                Ok(r) => {
                    say!(t0, "request #{i}: WRONG result {r:?}");
                    false
                }
                Err(e) => {
                    say!(t0, "request #{i}: FAILED: {e}");
                    false
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(12)).await;

        if i == RESTART_AFTER {
            // The restart runs beside the requests, which keep coming and
            // wait in the client while no server is up.
            let in_flight = i - answered.load(Ordering::Relaxed);
            say!(
                t0,
                "restarting the server ({in_flight} request(s) unanswered right now)"
            );
            let old = server.take();
            let old_ticker = ticker.take();
            let (tls, url, published) = (server_tls.clone(), url.clone(), published.clone());
            restart = Some(tokio::spawn(async move {
                if let Some(t) = old_ticker {
                    t.abort();
                }
                if let Some(old) = old {
                    old.shutdown().await;
                }
                say!(
                    t0,
                    "server #1 stopped (connections closed with 1001, listener closed)"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
                let new = start_server(tls, addr, 2).await?;
                say!(t0, "server #2 listening on {url} (epoch 2)");
                let ticker = publish_ticks(new.publisher(), published);
                Ok::<_, std::io::Error>((new, ticker))
            }));
        }
    }
    if let Some(restart) = restart {
        let (new, new_ticker) = restart.await??;
        server = Some(new);
        ticker = Some(new_ticker);
    }

    let mut ok = 0u64;
    while let Some(joined) = requests.join_next().await {
        if joined.unwrap_or(false) {
            ok += 1;
        }
    }
    say!(t0, "all {REQUESTS} requests ended; stopping the ticker");
    if let Some(ticker) = ticker {
        ticker.abort();
        let _ = ticker.await;
    }
    // Let the last frames arrive.
    let want = published.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while frames_seen.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = client.status();
    client.shutdown().await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    let (gaps, resets) = collector.await?;
    watcher.abort();
    let received = frames_seen.load(Ordering::Relaxed);
    let failed = REQUESTS - ok;

    println!();
    println!("summary");
    println!("  requests   sent {REQUESTS}, answered {ok}, failed {failed}");
    println!(
        "  frames     published {want}, received {received}, gaps {gaps}, epoch resets {resets}"
    );
    println!(
        "  reconnects {} (registrations {}), requests resent {}, protocol errors {}",
        status.connections_lost,
        status.registrations,
        status.requests_resent,
        status.protocol_errors
    );
    println!("  time       {:.2} s", t0.elapsed().as_secs_f64());
    let lost = failed > 0 || gaps > 0 || received != want || status.registrations < 2;
    if lost {
        println!("\nLOST SOMETHING: see above");
    } else {
        println!("\nnothing lost: every request answered, every frame received");
    }
    Ok(!lost)
}
