//! A WebSocket server: a listener and its connections in the caller's `Poll`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use wharf_core::{
    Accept, Config, ConfigError, ConnId, Connection, ConnectionSet, Event, Message, SendError,
    ServerTls,
};

use crate::socket::{Readiness, Socket};

/// Settings of a [`WsServer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Connection settings shared by every connection.
    pub config: Arc<Config>,
    /// TLS (`wss`); `None` for plain `ws`.
    pub tls: Option<ServerTls>,
    /// The server uses tokens `first_token ..= first_token + max_connections`:
    /// the first for the listener, the rest for connections. Keep the
    /// caller's other tokens outside that range.
    pub first_token: usize,
    /// Most connections at once; beyond it, new ones wait in the listen
    /// backlog. Default 10,000.
    pub max_connections: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            config: Arc::new(Config::default()),
            tls: None,
            first_token: 1 << 20,
            max_connections: 10_000,
        }
    }
}

/// A listener and its connections, all driven inside the caller's `Poll`.
///
/// Every event a connection reports comes out of [`poll_event`](Self::poll_event)
/// with its [`ConnId`], including [`Event::Request`], which the application
/// answers with [`accept`](Self::accept), or rejects through
/// [`act`](Self::act). Connections that finished are deregistered and
/// dropped by the server after their `Closed` event.
///
/// The decisions between connections (whose events come next, which
/// deadline is due, the connection limit, what a shutdown sends) are the
/// core's [`ConnectionSet`]; this type keeps a socket beside each of its
/// connections and moves bytes.
pub struct WsServer {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    first_token: usize,
    max_connections: usize,
    set: ConnectionSet,
    /// The socket of each connection, at its `ConnId::index`.
    sockets: Vec<Option<Socket>>,
    /// The latest `now` seen.
    now: Instant,
    /// Connections refused at accept time (socket or TLS setup failure).
    accept_errors: u64,
}

impl std::fmt::Debug for WsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsServer")
            .field("local_addr", &self.local_addr)
            .field("set", &self.set)
            .finish_non_exhaustive()
    }
}

impl WsServer {
    /// Binds a listener on `addr`.
    pub fn bind(addr: SocketAddr, options: ServerOptions) -> io::Result<WsServer> {
        Self::from_listener(TcpListener::bind(addr)?, options)
    }

    /// Uses an already bound listener.
    pub fn from_listener(listener: TcpListener, options: ServerOptions) -> io::Result<WsServer> {
        let local_addr = listener.local_addr()?;
        Ok(WsServer {
            listener: Some(listener),
            local_addr,
            first_token: options.first_token,
            max_connections: options.max_connections,
            set: ConnectionSet::new(options.config, options.tls, options.max_connections),
            sockets: Vec::new(),
            now: Instant::now(),
            accept_errors: 0,
        })
    }

    /// The address the listener is bound to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Registers the listener with `registry`.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        if let Some(listener) = self.listener.as_mut() {
            registry.register(listener, Token(self.first_token), Interest::READABLE)?;
        }
        Ok(())
    }

    /// Whether `token` belongs to this server (its listener or a connection).
    #[must_use]
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.first_token && token.0 <= self.first_token + self.max_connections
    }

    /// Open connections (any state).
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.set.len()
    }

    /// Sockets that could not be set up at accept time.
    #[must_use]
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors
    }

    /// Handles a mio event whose token this server [`owns`](Self::owns).
    pub fn handle_event(&mut self, registry: &Registry, event: &mio::event::Event, now: Instant) {
        self.now = now;
        let token = event.token();
        if token.0 == self.first_token {
            return self.accept_all(registry, now);
        }
        let Some(index) = token.0.checked_sub(self.first_token + 1) else {
            return;
        };
        let Some(id) = self.set.id_at(index) else {
            return;
        };
        self.with(registry, id, |socket, conn| {
            socket.on_event(conn, &Readiness::of(event), now);
            socket.drive(conn, registry, now);
        });
    }

    /// Runs every connection timer due at `now`.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        self.now = now;
        while let Some(id) = self.set.poll_due(now) {
            self.with(registry, id, |socket, conn| {
                socket.drive(conn, registry, now)
            });
        }
    }

    /// The earliest connection deadline. It may come before any timer is
    /// due (a connection whose timers moved later is looked at once at
    /// the earlier time); `handle_timeout` then only re-registers.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.set.poll_timeout()
    }

    /// The next event of any connection, the connections with events
    /// taking turns (see [`ConnectionSet`]).
    ///
    /// Connections whose last event was taken and whose socket is done are
    /// dropped here.
    #[must_use]
    pub fn poll_event(&mut self, registry: &Registry) -> Option<(ConnId, Event)> {
        let now = self.now;
        while let Some(id) = self.set.next_ready() {
            let event = self.with(registry, id, |socket, conn| {
                socket.poll_event(conn, registry, now)
            });
            if let Some(event) = event.flatten() {
                return Some((id, event));
            }
        }
        None
    }

    /// Accepts the upgrade request of `id` (after [`Event::Request`]).
    pub fn accept(
        &mut self,
        registry: &Registry,
        now: Instant,
        id: ConnId,
        accept: Accept,
    ) -> Result<(), ConfigError> {
        self.act(registry, now, id, |conn| conn.accept(accept))
            .unwrap_or(Err(ConfigError::InvalidState("no such connection")))
    }

    /// Sends a message on `id`; on failure the message is handed back.
    pub fn send(
        &mut self,
        registry: &Registry,
        now: Instant,
        id: ConnId,
        message: Message,
    ) -> Result<(), SendError> {
        if self.set.get(id).is_none() {
            return Err(SendError::NotOpen(message));
        }
        self.act(registry, now, id, |conn| conn.send(message))
            .expect("the connection is live")
    }

    /// Calls `f` on the connection `id` (`send_uncompressed`, `ping`,
    /// `close`, `reject` …), then writes what it has; `None` when there is
    /// no such connection (any more).
    pub fn act<R>(
        &mut self,
        registry: &Registry,
        now: Instant,
        id: ConnId,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> Option<R> {
        self.now = now;
        self.with(registry, id, |socket, conn| {
            let result = f(conn);
            socket.drive(conn, registry, now);
            result
        })
    }

    /// Graceful shutdown: stops accepting and closes every connection with
    /// 1001 (going away). Keep driving the server until
    /// [`connection_count`](Self::connection_count) is 0; the close timeout
    /// bounds how long that takes.
    pub fn shutdown(&mut self, registry: &Registry, now: Instant) {
        self.now = now;
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
        self.set.shutdown();
        let ids: Vec<ConnId> = self.set.ids().collect();
        for id in ids {
            self.with(registry, id, |socket, conn| {
                socket.drive(conn, registry, now)
            });
        }
    }

    /// Whether the server still accepts connections.
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        self.listener.is_some()
    }

    /// Runs `f` on the socket and connection of `id`, then hands the
    /// connection back to the set, dropping the socket if the set says it
    /// is done; `None` when there is no such connection.
    fn with<R>(
        &mut self,
        registry: &Registry,
        id: ConnId,
        f: impl FnOnce(&mut Socket, &mut Connection) -> R,
    ) -> Option<R> {
        let conn = self.set.get_mut(id)?;
        let socket = self.sockets.get_mut(id.index())?.as_mut()?;
        let result = f(socket, conn);
        if self.set.update(id, socket.io_error.is_some()) {
            if let Some(mut socket) = self.sockets[id.index()].take() {
                let _ = socket.deregister(registry);
            }
            // A slot is free: connections waiting in the backlog get it.
            if self.listener.is_some() {
                self.accept_all(registry, self.now);
            }
        }
        Some(result)
    }

    fn accept_all(&mut self, registry: &Registry, now: Instant) {
        // Beyond the limit, connections are left in the backlog and
        // accepted when a slot frees up.
        while self.set.has_room() {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let socket = match listener.accept() {
                Ok((socket, _addr)) => socket,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // Per-connection failures (e.g. the peer reset before we
                    // accepted, or out of descriptors): count and go on.
                    self.accept_errors += 1;
                    return;
                }
            };
            let Ok(id) = self.set.insert(now) else {
                self.accept_errors += 1;
                continue;
            };
            let index = id.index();
            let mut socket = Socket::new(socket, Token(self.first_token + 1 + index), true);
            if socket.register(registry).is_err() {
                self.accept_errors += 1;
                self.set.remove(id);
                continue;
            }
            if self.sockets.len() <= index {
                self.sockets.resize_with(index + 1, || None);
            }
            self.sockets[index] = Some(socket);
            self.with(registry, id, |socket, conn| {
                socket.drive(conn, registry, now)
            });
        }
    }
}
