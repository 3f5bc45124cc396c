//! Opening connections: [`connect`] on the client side, [`accept`] on the
//! server side. Each spawns the connection's driver task and returns once
//! the opening handshake has finished.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wharf_core::{ClientRequest, ClientTls, Connection, TimeoutKind};

use crate::config::{check_supported, ClientConfig, ServerConfig};
use crate::driver::start_server;
use crate::driver::Driver;
use crate::error::Error;
use crate::link::now;
use crate::shared::Shared;
use crate::websocket::WebSocket;

/// Connects to a `ws://` or `wss://` URL: TCP (the host's addresses in
/// turn), then TLS for `wss`, then the opening handshake. Returns once the
/// connection is open.
///
/// The TCP connect and the handshake are each bounded by the core's
/// `handshake_timeout`. Dropping the future abandons the attempt and closes
/// the socket.
///
/// # Errors
///
/// [`Error::Config`] for a bad URL or TLS settings, [`Error::Io`] when no
/// TCP connection could be made, [`Error::Connection`] when TLS or the
/// handshake failed (e.g. [`HandshakeError::Rejected`](wharf_core::HandshakeError::Rejected)
/// with the server's status).
///
/// # Panics
///
/// Outside a tokio runtime (the connection's task is spawned on it).
///
/// ```no_run
/// # async fn run() -> Result<(), wharf_tokio::Error> {
/// let ws = wharf_tokio::connect("wss://example.com/feed", &wharf_tokio::ClientConfig::new()).await?;
/// # let _ = ws;
/// # Ok(())
/// # }
/// ```
pub async fn connect(url: &str, config: &ClientConfig) -> Result<WebSocket, Error> {
    let request = ClientRequest::new(url)?;
    connect_request(&request, config).await
}

/// As [`connect`], with a [`ClientRequest`] that may carry subprotocols and
/// extra headers.
///
/// ```no_run
/// use wharf_tokio::{connect_request, ClientConfig, ClientRequest};
///
/// # async fn run() -> Result<(), wharf_tokio::Error> {
/// let request = ClientRequest::new("ws://127.0.0.1:9001/chat")?
///     .subprotocol("chat.v2")
///     .header("Authorization", "Bearer secret");
/// let ws = connect_request(&request, &ClientConfig::new()).await?;
/// println!("subprotocol: {:?}", ws.subprotocol());
/// # Ok(())
/// # }
/// ```
pub async fn connect_request(
    request: &ClientRequest,
    config: &ClientConfig,
) -> Result<WebSocket, Error> {
    check_supported(&config.core)?;
    let tls = ClientTls::for_request(config.tls.as_ref(), request)?;
    let limit = config.core.handshake_timeout;
    let stream = tokio::time::timeout(limit, TcpStream::connect((request.host(), request.port())))
        .await
        .map_err(|_| Error::Connection(wharf_core::Error::Timeout(TimeoutKind::Handshake)))??;
    // Frames are written whole; Nagle would only add latency.
    let _ = stream.set_nodelay(true);
    let conn = Connection::client(config.core.clone(), request, tls.as_ref(), now())?;
    let shared = Arc::new(Shared::new(config.outgoing));
    Driver::spawn(conn, stream, shared.clone(), None, None);
    WebSocket::new(shared).opened().await
}

/// Serves one accepted TCP connection: TLS when the config has it, then the
/// opening handshake, with the application's decision from
/// [`ServerConfig::on_request`]. Returns once the connection is open.
///
/// To stop accepting and close every connection with 1001 on shutdown, use
/// a [`Server`](crate::Server) instead.
///
/// # Errors
///
/// [`Error::Connection`] when TLS or the handshake failed or timed out, or
/// the application rejected the request
/// ([`HandshakeError::RejectedByApplication`](wharf_core::HandshakeError::RejectedByApplication));
/// [`Error::Config`] when the application's `Accept` or `Reject` could not
/// be encoded.
///
/// # Panics
///
/// Outside a tokio runtime.
///
/// ```no_run
/// use tokio::net::TcpListener;
/// use wharf_tokio::{accept, ServerConfig};
///
/// # async fn run() -> Result<(), wharf_tokio::Error> {
/// let listener = TcpListener::bind("127.0.0.1:9001").await?;
/// let config = ServerConfig::new();
/// loop {
///     let (stream, _peer) = listener.accept().await?;
///     let config = config.clone();
///     tokio::spawn(async move {
///         let Ok(mut ws) = accept(stream, &config).await else { return };
///         while let Some(Ok(message)) = ws.recv().await {
///             if ws.send(message).await.is_err() {
///                 break;
///             }
///         }
///     });
/// }
/// # }
/// ```
pub async fn accept(stream: TcpStream, config: &ServerConfig) -> Result<WebSocket, Error> {
    let _ = stream.set_nodelay(true);
    accept_io(stream, config).await
}

/// As [`accept`], on any byte stream (a Unix socket, an in-memory pipe, a
/// stream that went through a proxy protocol …).
pub async fn accept_io<S>(stream: S, config: &ServerConfig) -> Result<WebSocket, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    start_server(stream, config, None)?.opened().await
}
