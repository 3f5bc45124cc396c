//! A listening server with a graceful shutdown: stop accepting, close every
//! open connection with 1001 (going away), wait until their sockets are
//! closed.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::driver::start_server;
use crate::error::Error;
use crate::tracker::{Registration, Tracker};
use crate::websocket::WebSocket;

/// A WebSocket server on a TCP listener.
///
/// [`accept`](Self::accept) takes the next connection and starts its
/// handshake on its own task; [`Incoming::handshake`] waits for it (spawn
/// that, so a slow client holds up nobody). A [`ServerHandle`] shuts the
/// server down gracefully from anywhere: `accept` then fails with
/// [`Error::ShuttingDown`] and drops the listener, and every connection is
/// closed with 1001 (going away).
///
/// ```no_run
/// use wharf_tokio::{Server, ServerConfig};
///
/// # async fn run() -> Result<(), wharf_tokio::Error> {
/// let mut server = Server::bind("127.0.0.1:9001", ServerConfig::new()).await?;
/// let handle = server.handle();
/// tokio::spawn(async move {
///     let _ = tokio::signal::ctrl_c().await;
///     handle.shutdown().await; // returns once every connection has ended
/// });
/// loop {
///     let incoming = match server.accept().await {
///         Ok(incoming) => incoming,
///         Err(wharf_tokio::Error::ShuttingDown) => break,
///         Err(e) => { eprintln!("accept: {e}"); continue; }
///     };
///     tokio::spawn(async move {
///         let Ok(mut ws) = incoming.handshake().await else { return };
///         while let Some(Ok(message)) = ws.recv().await {
///             let _ = ws.send(message).await;
///         }
///     });
/// }
/// # Ok(())
/// # }
/// ```
pub struct Server {
    listener: Option<TcpListener>,
    config: ServerConfig,
    tracker: Arc<Tracker>,
    shutdown: watch::Receiver<bool>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds a listener to `addr` (e.g. `"127.0.0.1:9001"`, port 0 for any).
    pub async fn bind(addr: impl ToSocketAddrs, config: ServerConfig) -> Result<Server, Error> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Server::from_listener(listener, config))
    }

    /// Serves on a listener bound by the caller.
    #[must_use]
    pub fn from_listener(listener: TcpListener, config: ServerConfig) -> Server {
        let tracker = Arc::new(Tracker::new());
        let shutdown = tracker.shutting_down.subscribe();
        Server {
            listener: Some(listener),
            config,
            tracker,
            shutdown,
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        match &self.listener {
            Some(l) => Ok(l.local_addr()?),
            None => Err(Error::ShuttingDown),
        }
    }

    /// A handle to shut the server down from another task.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            tracker: self.tracker.clone(),
        }
    }

    /// Accepts the next TCP connection and starts its handshake (TLS, then
    /// the upgrade request, decided by [`ServerConfig::on_request`]).
    ///
    /// Cancel-safe. Fails with [`Error::ShuttingDown`] once a shutdown has
    /// begun (the listener is then closed), and with [`Error::Io`] when the
    /// listener reports an error (e.g. too many open files); the server
    /// keeps working after an `Io` error. A connection reset before it was
    /// accepted is skipped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the connection's task is spawned on it).
    pub async fn accept(&mut self) -> Result<Incoming, Error> {
        loop {
            if *self.shutdown.borrow_and_update() {
                self.listener = None;
                return Err(Error::ShuttingDown);
            }
            let Some(listener) = &self.listener else {
                return Err(Error::ShuttingDown);
            };
            let shutdown = &mut self.shutdown;
            let (stream, peer) = tokio::select! {
                biased;
                // The sender lives in the tracker, which we hold.
                _ = shutdown.changed() => continue,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    // One connection's failure (reset before it was
                    // accepted): the listener goes on.
                    Err(e) if is_per_connection(&e) => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            let _ = stream.set_nodelay(true);
            let registration = Registration::new(&self.tracker);
            let ws = start_server(stream, &self.config, Some(registration))?;
            return Ok(Incoming { ws, peer });
        }
    }

    /// Shuts down: closes the listener, closes every connection with 1001
    /// and waits until all have ended (see [`ServerHandle::shutdown`]).
    pub async fn shutdown(mut self) {
        self.listener = None;
        self.handle().shutdown().await;
    }
}

/// A connection accepted by [`Server::accept`], its handshake under way.
///
/// Dropping it abandons the handshake and closes the socket.
#[derive(Debug)]
pub struct Incoming {
    ws: WebSocket,
    peer: SocketAddr,
}

impl Incoming {
    /// The client's address.
    #[must_use]
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Waits for the handshake to finish (bounded by the core's
    /// `handshake_timeout`); see [`accept`](crate::accept) for the errors.
    pub async fn handshake(self) -> Result<WebSocket, Error> {
        self.ws.opened().await
    }
}

/// Shuts a [`Server`] down from any task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    tracker: Arc<Tracker>,
}

impl ServerHandle {
    /// Stops accepting (a pending or later [`Server::accept`] fails with
    /// [`Error::ShuttingDown`] and closes the listener), asks every
    /// connection — open or still in its handshake — to close with 1001
    /// (going away) after the messages already queued, and waits until every
    /// connection's socket is closed. Each connection's part is bounded by
    /// its close timeout. Calling it again waits again.
    pub async fn shutdown(&self) {
        self.tracker.begin_shutdown();
        let mut live = self.tracker.live.subscribe();
        // The sender lives in the tracker, which we hold: this cannot fail.
        let _ = live.wait_for(|&n| n == 0).await;
    }

    /// How many connections are live (in their handshake, open or closing).
    #[must_use]
    pub fn connections(&self) -> usize {
        *self.tracker.live.borrow()
    }

    /// Whether a shutdown has begun.
    #[must_use]
    pub fn is_shutting_down(&self) -> bool {
        self.tracker.is_shutting_down()
    }
}

/// An `accept` error that concerns only the connection being accepted.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
}
