//! One WebSocket connection on a mio `TcpStream`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Registry, Token};
use wharf_core::{
    ClientRequest, ClientTls, Config, ConfigError, Connection, Event, Message, SendError,
};

use crate::socket::{Readiness, Socket};

/// A [`Connection`] driven on a non-blocking mio `TcpStream`, registered in
/// the caller's `Poll` under the caller's `Token`.
///
/// Call [`handle_event`](Self::handle_event) for every mio event with this
/// stream's token, [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout) passes, and drain
/// [`poll_event`](Self::poll_event) after each. The stream keeps its mio
/// interest in step with what the connection wants (always readable while it
/// reads, writable only while bytes wait for the socket).
///
/// Once [`is_finished`](Self::is_finished) is true, deregister and drop it.
pub struct WsStream {
    io: Socket,
    conn: Connection,
    /// The latest `now` seen.
    now: Instant,
}

impl std::fmt::Debug for WsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsStream")
            .field("token", &self.io.token)
            .field("conn", &self.conn)
            .field("wants_write", &self.conn.wants_write())
            .field("io_error", &self.io.io_error)
            .finish_non_exhaustive()
    }
}

impl WsStream {
    /// Wraps a connected socket (e.g. from `TcpListener::accept`) and its
    /// connection. Call [`register`](Self::register) next.
    pub fn new(socket: TcpStream, conn: Connection, token: Token) -> WsStream {
        WsStream {
            io: Socket::new(socket, token, true),
            conn,
            now: Instant::now(),
        }
    }

    /// Starts a non-blocking TCP connect to `addr` and a client connection
    /// for `request`. Call [`register`](Self::register) next; the upgrade
    /// request goes out once the TCP connect completes.
    pub fn connect(
        addr: SocketAddr,
        request: &ClientRequest,
        config: Arc<Config>,
        tls: Option<&ClientTls>,
        now: Instant,
        token: Token,
    ) -> Result<WsStream, ConnectError> {
        let conn = Connection::client(config, request, tls, now)?;
        let socket = TcpStream::connect(addr)?;
        Ok(WsStream {
            io: Socket::new(socket, token, false),
            conn,
            now,
        })
    }

    /// Registers the socket with `registry` under this stream's token.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        self.io.register(registry)
    }

    /// Removes the socket from `registry`.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.io.deregister(registry)
    }

    /// This stream's token.
    #[must_use]
    pub fn token(&self) -> Token {
        self.io.token
    }

    /// The address of the peer, once connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.socket.peer_addr()
    }

    /// The core connection (for queries such as `is_open`).
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Handles a mio event for this stream's token: reads what is readable,
    /// writes what is pending.
    pub fn handle_event(&mut self, registry: &Registry, event: &mio::event::Event, now: Instant) {
        self.now = now;
        let readiness = Readiness::of(event);
        if !self.io.connected {
            match self.io.finish_connect(&readiness) {
                Ok(true) => {}
                Ok(false) => return self.drive(registry, now),
                Err(e) => {
                    self.io.fail(&mut self.conn, e, now);
                    return self.drive(registry, now);
                }
            }
        }
        self.io.on_event(&mut self.conn, &readiness, now);
        self.drive(registry, now);
    }

    /// Runs the connection's timers (call when [`poll_timeout`](Self::poll_timeout) passes).
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        self.now = now;
        self.conn.handle_timeout(now);
        self.drive(registry, now);
    }

    /// Queues a message and writes what the socket takes now. On error the
    /// message is handed back inside [`SendError`].
    pub fn send(
        &mut self,
        registry: &Registry,
        now: Instant,
        message: Message,
    ) -> Result<(), SendError> {
        self.act(registry, now, |conn| conn.send(message))
    }

    /// Calls `f` on the connection (`send_uncompressed`, `ping`, `close`,
    /// `accept`, `reject` …), then writes what it has and keeps the
    /// socket's interest in step.
    ///
    /// ```no_run
    /// # fn run(stream: &mut wharf_mio::WsStream, registry: &mio::Registry) -> Result<(), wharf_core::ConfigError> {
    /// use wharf_core::CloseCode;
    /// let now = std::time::Instant::now();
    /// stream.act(registry, now, |conn| conn.close(CloseCode::NORMAL, "done"))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn act<R>(
        &mut self,
        registry: &Registry,
        now: Instant,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> R {
        let result = f(&mut self.conn);
        self.drive(registry, now);
        result
    }

    /// The next connection event. Taking an event can make the connection
    /// write (a Close after a protocol violation waits until the events before
    /// it were taken), so this writes what is pending too.
    #[must_use]
    pub fn poll_event(&mut self, registry: &Registry) -> Option<Event> {
        self.io.poll_event(&mut self.conn, registry, self.now)
    }

    /// Whether [`poll_event`](Self::poll_event) has something to report.
    #[must_use]
    pub fn has_events(&self) -> bool {
        self.conn.has_events()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    /// Takes back messages queued but not sent (after a failure).
    pub fn take_unsent(&mut self) -> Vec<Message> {
        self.conn.take_unsent()
    }

    /// The socket error that ended the connection, if one did.
    #[must_use]
    pub fn io_error(&self) -> Option<&io::Error> {
        self.io.io_error.as_ref()
    }

    /// The connection is over and every byte went out (or the socket failed):
    /// deregister and drop the stream.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.conn.is_finished() || (self.io.io_error.is_some() && self.conn.is_closed())
    }

    /// Writes pending bytes until the socket would block, then sets the
    /// interest.
    fn drive(&mut self, registry: &Registry, now: Instant) {
        self.now = now;
        self.io.drive(&mut self.conn, registry, now);
    }
}

/// Starting a client connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The request or TLS settings are invalid.
    #[error("invalid connection settings: {0}")]
    Config(#[from] ConfigError),
    /// The socket could not be created or the host not resolved.
    #[error("connect failed: {0}")]
    Io(#[from] io::Error),
}
