//! A WebSocket server: a listener and its connections in the caller's `Poll`.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpListener;
use mio::{Interest, Registry, Token};
use wharf_core::{Accept, Config, ConfigError, Connection, Event, Message, SendError, ServerTls};

use crate::stream::WsStream;

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

/// Identifies one connection of a [`WsServer`]. Ids are not reused while a
/// server runs (a slot's generation changes), so a stale id finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    slot: usize,
    generation: u64,
}

struct Slot {
    stream: WsStream,
    generation: u64,
    /// The deadline registered in `deadlines` for this slot: never later
    /// than the connection's own (see `WsServer::after`).
    deadline: Option<Instant>,
    /// Listed in `ready`: it may have events to report.
    ready: bool,
}

/// A listener and its connections, all driven inside the caller's `Poll`.
///
/// Every event a connection reports comes out of [`poll_event`](Self::poll_event)
/// with its [`ConnId`], including [`Event::Request`], which the application
/// answers with [`accept`](Self::accept), or rejects through
/// [`act`](Self::act).
/// Connections that finished are deregistered and dropped by the server after
/// their `Closed` event.
pub struct WsServer {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    options: ServerOptions,
    /// Boxed: a `Slot` is about 1 KB (1,040 bytes on x86-64), and the
    /// vector keeps the length and capacity of the busiest moment; an empty
    /// slot then costs 8 bytes instead.
    slots: Vec<Option<Box<Slot>>>,
    free: Vec<usize>,
    next_generation: u64,
    deadlines: BTreeSet<(Instant, usize)>,
    /// Slots that may have events, in the order they became ready.
    ready: VecDeque<usize>,
    /// Connections refused at accept time (socket or TLS setup failure).
    accept_errors: u64,
}

impl std::fmt::Debug for WsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsServer")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.connection_count())
            .field("accepting", &self.listener.is_some())
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
            options,
            slots: Vec::new(),
            free: Vec::new(),
            next_generation: 0,
            deadlines: BTreeSet::new(),
            ready: VecDeque::new(),
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
            registry.register(
                listener,
                Token(self.options.first_token),
                Interest::READABLE,
            )?;
        }
        Ok(())
    }

    /// Whether `token` belongs to this server (its listener or a connection).
    #[must_use]
    pub fn owns(&self, token: Token) -> bool {
        let first = self.options.first_token;
        token.0 >= first && token.0 <= first + self.options.max_connections
    }

    /// Open connections (any state).
    #[must_use]
    pub fn connection_count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Sockets that could not be set up at accept time.
    #[must_use]
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors
    }

    /// Handles a mio event whose token this server [`owns`](Self::owns).
    pub fn handle_event(&mut self, registry: &Registry, event: &mio::event::Event, now: Instant) {
        let token = event.token();
        if token.0 == self.options.first_token {
            self.accept_all(registry, now);
            return;
        }
        let Some(slot) = token.0.checked_sub(self.options.first_token + 1) else {
            return;
        };
        if let Some(Some(s)) = self.slots.get_mut(slot) {
            s.stream.handle_event(registry, event, now);
            self.after(registry, slot, now);
        }
    }

    /// Runs every connection timer due at `now`.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        while let Some(&(at, slot)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(Some(s)) = self.slots.get_mut(slot) {
                s.deadline = None;
                s.stream.handle_timeout(registry, now);
                self.after(registry, slot, now);
            }
        }
    }

    /// The earliest connection deadline. It may come before any timer is
    /// due (a connection whose timers moved later is looked at once at
    /// the earlier time); `handle_timeout` then only re-registers.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// The next event of any connection, taking turns between the
    /// connections that have some. Events are taken from a connection one
    /// at a time, so what the application does in answer to one (say, an
    /// echo) goes out before what the connection does next (say, the Close
    /// for a protocol violation that followed in the same read).
    ///
    /// Connections whose last event was taken and whose socket is done are
    /// dropped here.
    #[must_use]
    pub fn poll_event(&mut self, registry: &Registry) -> Option<(ConnId, Event)> {
        while let Some(&slot) = self.ready.front() {
            let Some(Some(s)) = self.slots.get_mut(slot) else {
                self.ready.pop_front();
                continue;
            };
            if let Some(event) = s.stream.poll_event(registry) {
                let id = ConnId {
                    slot,
                    generation: s.generation,
                };
                // Round robin: a connection that always has events (a peer
                // sending as fast as the application takes) does not keep
                // the others waiting.
                if self.ready.len() > 1 {
                    self.ready.pop_front();
                    self.ready.push_back(slot);
                }
                return Some((id, event));
            }
            s.ready = false;
            self.ready.pop_front();
            let now = s.stream.last_now();
            self.after(registry, slot, now);
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
        match self.live(id) {
            Some(slot) => self.act_on(registry, now, slot, |conn| conn.send(message)),
            None => Err(SendError::NotOpen(message)),
        }
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
        let slot = self.live(id)?;
        Some(self.act_on(registry, now, slot, f))
    }

    fn act_on<R>(
        &mut self,
        registry: &Registry,
        now: Instant,
        slot: usize,
        f: impl FnOnce(&mut Connection) -> R,
    ) -> R {
        let result = self
            .stream(slot)
            .expect("callers found the slot live")
            .act(registry, now, f);
        self.after(registry, slot, now);
        result
    }

    /// Graceful shutdown: stops accepting and closes every connection with
    /// 1001 (going away). Keep driving the server until
    /// [`connection_count`](Self::connection_count) is 0; the close timeout
    /// bounds how long that takes.
    pub fn shutdown(&mut self, registry: &Registry, now: Instant) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
        for slot in 0..self.slots.len() {
            if let Some(s) = self.stream(slot) {
                s.act(registry, now, Connection::close_going_away);
            }
            self.after(registry, slot, now);
        }
    }

    /// Whether the server still accepts connections.
    #[must_use]
    pub fn is_accepting(&self) -> bool {
        self.listener.is_some()
    }

    fn live(&self, id: ConnId) -> Option<usize> {
        match self.slots.get(id.slot) {
            Some(Some(s)) if s.generation == id.generation => Some(id.slot),
            _ => None,
        }
    }

    fn stream(&mut self, slot: usize) -> Option<&mut WsStream> {
        self.slots.get_mut(slot)?.as_mut().map(|s| &mut s.stream)
    }

    fn accept_all(&mut self, registry: &Registry, now: Instant) {
        loop {
            if self.connection_count() >= self.options.max_connections {
                // Left in the backlog; accepted when a slot frees up.
                return;
            }
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            let (socket, _addr) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // Per-connection failures (e.g. the peer reset before we
                    // accepted, or out of descriptors): count and go on.
                    self.accept_errors += 1;
                    return;
                }
            };
            let conn = match Connection::server(
                self.options.config.clone(),
                self.options.tls.as_ref(),
                now,
            ) {
                Ok(c) => c,
                Err(_) => {
                    self.accept_errors += 1;
                    continue;
                }
            };
            let slot = match self.free.pop() {
                Some(slot) => slot,
                None => {
                    self.slots.push(None);
                    self.slots.len() - 1
                }
            };
            let token = Token(self.options.first_token + 1 + slot);
            let mut stream = WsStream::new(socket, conn, token);
            if stream.register(registry).is_err() {
                self.accept_errors += 1;
                self.free.push(slot);
                continue;
            }
            self.next_generation += 1;
            self.slots[slot] = Some(Box::new(Slot {
                stream,
                generation: self.next_generation,
                deadline: None,
                ready: false,
            }));
            self.after(registry, slot, now);
        }
    }

    /// Marks a connection as having events, refreshes its deadline, and
    /// drops it once finished (and all its events were taken).
    fn after(&mut self, registry: &Registry, slot: usize, now: Instant) {
        let Some(Some(s)) = self.slots.get_mut(slot) else {
            return;
        };
        if !s.ready && s.stream.has_events() {
            s.ready = true;
            self.ready.push_back(slot);
        }
        // Only an earlier deadline is registered again. A busy connection
        // pushes its timers later on every message (keepalive, giving back
        // large buffers); re-sorting the set each time would cost two tree
        // updates per message, and allocations once many connections are
        // in it. A registration left too early fires, runs the connection's
        // timers early (harmless) and registers the deadline then due.
        let deadline = s.stream.poll_timeout();
        let earlier = match (deadline, s.deadline) {
            (Some(new), Some(old)) => new < old,
            (new, old) => new.is_some() && old.is_none(),
        };
        if earlier {
            if let Some(old) = s.deadline {
                self.deadlines.remove(&(old, slot));
            }
            self.deadlines.extend(deadline.map(|new| (new, slot)));
            s.deadline = deadline;
        }
        if s.stream.is_finished() && !s.ready {
            if let Some(d) = s.deadline.take() {
                self.deadlines.remove(&(d, slot));
            }
            let _ = s.stream.deregister(registry);
            self.slots[slot] = None;
            self.free.push(slot);
            // A slot is free: connections waiting in the backlog get it.
            if self.listener.is_some() {
                self.accept_all(registry, now);
            }
        }
    }
}
