//! The servers under test: one echo server per library, each on its own
//! thread pinned to core 0, each on one thread (a tokio `current_thread`
//! runtime, or wharf-mio's own loop). Each follows its library's documented
//! echo example; each sets `TCP_NODELAY` (wharf's adapters do it
//! themselves). The floors echo the raw bytes back (TCP, and rustls).

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::alloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    WharfMio,
    WharfTokio,
    Tungstenite,
    FastWebSockets,
    TokioWebSockets,
    /// Raw TCP echo (plain) or raw rustls echo (TLS).
    Floor,
}

impl Kind {
    pub(crate) const ALL: [Kind; 6] = [
        Kind::WharfMio,
        Kind::WharfTokio,
        Kind::Tungstenite,
        Kind::FastWebSockets,
        Kind::TokioWebSockets,
        Kind::Floor,
    ];

    pub(crate) fn name(self, tls: bool) -> &'static str {
        match (self, tls) {
            (Kind::WharfMio, _) => "wharf-mio",
            (Kind::WharfTokio, _) => "wharf-tokio",
            (Kind::Tungstenite, _) => "tokio-tungstenite",
            (Kind::FastWebSockets, _) => "fastwebsockets",
            (Kind::TokioWebSockets, _) => "tokio-websockets",
            (Kind::Floor, false) => "floor: raw TCP",
            (Kind::Floor, true) => "floor: raw rustls",
        }
    }

    /// The name `WHARF_BENCH_SERVERS` knows it by.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            _ => self.name(false),
        }
    }

    pub(crate) fn is_wharf(self) -> bool {
        matches!(self, Kind::WharfMio | Kind::WharfTokio)
    }

    pub(crate) fn is_peer(self) -> bool {
        matches!(
            self,
            Kind::Tungstenite | Kind::FastWebSockets | Kind::TokioWebSockets
        )
    }
}

/// A running server: its address and its allocation-counting slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) slot: usize,
    /// The server thread's id, to read its CPU time from /proc.
    pub(crate) tid: u32,
}

/// CPU time (user + system) the thread `tid` of this process has used, in
/// clock ticks (1/100 s on Linux).
pub(crate) fn cpu_ticks(tid: u32) -> u64 {
    let (user, system) = cpu_split(tid);
    user + system
}

/// A thread's CPU time so far in clock ticks (10 ms), user and system
/// apart; zeros where /proc cannot say.
pub(crate) fn cpu_split(tid: u32) -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return (0, 0);
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return (0, 0);
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field(11), field(12))
}

/// The calling thread's id.
pub(crate) fn this_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// Starts `kind`'s echo server on a thread pinned to core 0; it runs until
/// the process exits.
pub(crate) fn start(kind: Kind, tls: Option<&crate::tls::Tls>, slot: usize) -> Running {
    spawn(kind, tls, slot, big_config())
}

/// Starts a wharf echo server (`kind` is `WharfMio` or `WharfTokio`) as
/// [`start`] does, plain `ws`, with permessage-deflate enabled at
/// `DeflateConfig::default()`: it accepts a client's offer.
pub(crate) fn start_deflate(kind: Kind, slot: usize) -> Running {
    assert!(kind.is_wharf(), "only wharf's servers compress");
    let mut config = big_config();
    config.deflate = Some(wharf_core::DeflateConfig::default());
    spawn(kind, None, slot, config)
}

/// Starts `kind`'s echo server; `config` is the wharf servers' (the peers
/// and the floors ignore it).
fn spawn(
    kind: Kind,
    tls: Option<&crate::tls::Tls>,
    slot: usize,
    config: wharf_core::Config,
) -> Running {
    let (tx, rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let wharf_tls = tls.map(|t| t.wharf.clone());
    let rustls_tls = tls.map(|t| t.server.clone());
    std::thread::Builder::new()
        .name(format!("server-{slot}"))
        .spawn(move || {
            alloc::pin(0);
            alloc::claim(slot);
            let _ = tid_tx.send(this_tid());
            if kind == Kind::WharfMio {
                return wharf_mio_server(config, wharf_tls, tx);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(async move {
                match kind {
                    Kind::WharfMio => unreachable!("handled above"),
                    Kind::WharfTokio => wharf_tokio_server(config, wharf_tls, tx).await,
                    _ => peer_server(kind, rustls_tls, tx).await,
                }
            });
        })
        .expect("spawn a server thread");
    let addr = rx.recv().expect("the server reports its address");
    let tid = tid_rx.recv().expect("the server reports its thread id");
    Running { addr, slot, tid }
}

fn big_config() -> wharf_core::Config {
    let mut config = wharf_core::Config::default();
    config.max_message_size = 16 << 20;
    config
}

fn wharf_mio_server(
    config: wharf_core::Config,
    tls: Option<wharf_tokio::ServerTls>,
    tx: mpsc::Sender<SocketAddr>,
) {
    use mio::{Events, Poll};
    use wharf_core::{Accept, Event};
    use wharf_mio::{ServerOptions, WsServer};

    let mut options = ServerOptions::default();
    options.config = config.into();
    options.tls = tls;
    options.max_connections = 20_000;
    let mut poll = Poll::new().expect("a mio poll");
    let mut server =
        WsServer::bind("127.0.0.1:0".parse().expect("an address"), options).expect("bind");
    server.register(poll.registry()).expect("register");
    tx.send(server.local_addr()).expect("report the address");
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let wait = server
            .poll_timeout()
            .map(|d| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(60));
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            assert!(e.kind() == std::io::ErrorKind::Interrupted, "poll: {e}");
            continue;
        }
        let now = Instant::now();
        for event in events.iter() {
            server.handle_event(poll.registry(), event, now);
        }
        server.handle_timeout(poll.registry(), now);
        while let Some((id, event)) = server.poll_event(poll.registry()) {
            match event {
                Event::Request(_) => {
                    let _ = server.accept(poll.registry(), now, id, Accept::default());
                }
                Event::Message(m) => {
                    let _ = server.send(poll.registry(), now, id, m);
                }
                _ => {}
            }
        }
    }
}

async fn wharf_tokio_server(
    config: wharf_core::Config,
    tls: Option<wharf_tokio::ServerTls>,
    tx: mpsc::Sender<SocketAddr>,
) {
    use wharf_tokio::{Server, ServerConfig};
    let mut config = ServerConfig::new().with_config(config);
    if let Some(tls) = tls {
        config = config.with_tls(tls);
    }
    let mut server = Server::bind("127.0.0.1:0", config).await.expect("bind");
    tx.send(server.local_addr().expect("an address"))
        .expect("report the address");
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
}

async fn peer_server(
    kind: Kind,
    tls: Option<Arc<rustls::ServerConfig>>,
    tx: mpsc::Sender<SocketAddr>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    tx.send(listener.local_addr().expect("an address"))
        .expect("report the address");
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // E.g. out of file descriptors: wait rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => serve(kind, stream).await,
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve(kind, stream).await;
                    }
                }
            }
        });
    }
}

async fn serve<S>(kind: Kind, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match kind {
        Kind::Tungstenite => {
            let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
            config.max_message_size = Some(16 << 20);
            let Ok(mut ws) =
                tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
            else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if (message.is_binary() || message.is_text()) && ws.send(message).await.is_err() {
                    break;
                }
            }
        }
        Kind::FastWebSockets => {
            use hyper::server::conn::http1;
            use hyper::service::service_fn;
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = http1::Builder::new()
                .serve_connection(io, service_fn(fastwebsockets_upgrade))
                .with_upgrades()
                .await;
        }
        Kind::TokioWebSockets => {
            let Ok((_request, mut ws)) = tokio_websockets::ServerBuilder::new()
                .limits(tokio_websockets::Limits::default().max_payload_len(Some(16 << 20)))
                .accept(stream)
                .await
            else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if (message.is_binary() || message.is_text()) && ws.send(message).await.is_err() {
                    break;
                }
            }
        }
        Kind::Floor => floor_echo(stream).await,
        Kind::WharfMio | Kind::WharfTokio => unreachable!("wharf runs its own servers"),
    }
}

async fn fastwebsockets_upgrade(
    mut request: hyper::Request<hyper::body::Incoming>,
) -> Result<
    hyper::Response<http_body_util::Empty<hyper::body::Bytes>>,
    fastwebsockets::WebSocketError,
> {
    let (response, fut) = fastwebsockets::upgrade::upgrade(&mut request)?;
    tokio::spawn(async move {
        let Ok(ws) = fut.await else { return };
        let mut ws = fastwebsockets::FragmentCollector::new(ws);
        while let Ok(frame) = ws.read_frame().await {
            let echo = match frame.opcode {
                fastwebsockets::OpCode::Close => break,
                fastwebsockets::OpCode::Text | fastwebsockets::OpCode::Binary => frame,
                _ => continue,
            };
            if ws.write_frame(echo).await.is_err() {
                break;
            }
        }
    });
    Ok(response)
}

/// The floor: the bytes come back as they are, through one 64 KiB buffer,
/// allocated once the first byte has arrived (so that an idle connection of
/// the floor holds only the TLS session, the socket and the task).
async fn floor_echo<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut first = [0u8; 1];
    match stream.read(&mut first).await {
        Ok(1) => {}
        _ => return,
    }
    if stream.write_all(&first).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                // rustls buffers plaintext until flushed.
                if stream.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}
