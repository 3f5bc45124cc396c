//! Loopback helpers for the adapter's tests: echo servers, a peer that goes
//! silent after the handshake, TLS material, and bounded waits.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use wharf_core::test_certs::TestPki;
use wharf_core::{Accept, Connection, Event};
use wharf_tokio::{ClientTls, Message, Server, ServerConfig, ServerHandle, ServerTls};

/// The bound on every wait in a test.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `f`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(LIMIT, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {LIMIT:?}: {what}"),
    }
}

/// Polls `cond` every millisecond until it holds (at most [`LIMIT`]).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < LIMIT, "never became true: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Message `i` of a test stream: text or binary, sizes from 0 bytes to
/// 300 KiB (several frames and socket reads), content derived from `i` so
/// that any corruption, loss, duplicate or reordering shows.
pub fn numbered(i: usize) -> Message {
    let len = match i % 10 {
        0 => 0,
        1 => 1,
        2 => 125,
        3 => 126,
        4 => 65_535,
        5 => 65_536 + i,
        6 => 300 * 1024 + i,
        _ => 20 + i % 1000,
    };
    let mut bytes = format!("#{i}:").into_bytes();
    bytes.extend((0..len).map(|k| b'a' + ((i * 7 + k) % 26) as u8));
    if i % 2 == 0 {
        Message::text(String::from_utf8(bytes).expect("ASCII"))
    } else {
        Message::binary(bytes)
    }
}

/// A short description of a message for assertion failures.
pub fn describe(m: &Message) -> String {
    let head: String = m.payload().iter().take(12).map(|&b| b as char).collect();
    format!("{:?} of {} bytes starting {head:?}", m.kind(), m.len())
}

/// A server whose connections echo every message.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    pub task: JoinHandle<()>,
}

/// Starts an echo server on 127.0.0.1 (any port) with `config`.
pub async fn echo_server(config: ServerConfig) -> EchoServer {
    let mut server = Server::bind("127.0.0.1:0", config)
        .await
        .expect("bind 127.0.0.1:0");
    let addr = server.local_addr().expect("bound");
    let handle = server.handle();
    let task = tokio::spawn(async move {
        while let Ok(incoming) = server.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = incoming.handshake().await else {
                    return;
                };
                while let Some(Ok(message)) = ws.recv().await {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    EchoServer { addr, handle, task }
}

/// A CA with a server certificate for 127.0.0.1 and localhost.
pub struct Tls {
    pub pki: TestPki,
    pub server: ServerTls,
    pub client: ClientTls,
}

pub fn tls() -> Tls {
    let pki = TestPki::new();
    let server = pki.server_tls(&["localhost", "127.0.0.1"]);
    let client = pki.client_tls();
    Tls {
        pki,
        server,
        client,
    }
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Live tasks of the current runtime.
pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// A peer that completes the opening handshake (a core server connection
/// driven by hand on a raw socket) and then goes silent: it neither reads
/// nor writes, but keeps the socket open until the returned handle is
/// dropped or aborted.
pub async fn silent_peer() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let task = tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        if handshake_by_hand(&mut stream).await {
            // Silent from now on; keep the socket open.
            std::future::pending::<()>().await;
        }
    });
    (addr, task)
}

/// Runs a server handshake with a core `Connection` on `stream`.
async fn handshake_by_hand(stream: &mut TcpStream) -> bool {
    let now = Instant::now();
    let Ok(mut conn) = Connection::server(Arc::new(wharf_core::Config::default()), None, now)
    else {
        return false;
    };
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..1000 {
        let Ok(n) = stream.read(&mut buf).await else {
            return false;
        };
        if n == 0 {
            return false;
        }
        conn.handle_input(Instant::now(), &buf[..n]);
        while let Some(event) = conn.poll_event() {
            if let Event::Request(_) = event {
                if conn.accept(Accept::default()).is_err() {
                    return false;
                }
            }
        }
        let mut out = Vec::new();
        while conn.poll_transmit(&mut out) > 0 {}
        if stream.write_all(&out).await.is_err() {
            return false;
        }
        if conn.is_open() {
            return true;
        }
    }
    false
}
