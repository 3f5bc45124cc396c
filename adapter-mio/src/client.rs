//! A client that reconnects forever and leaks nothing: the core's sans-IO
//! [`Client`] (policy, queue, registration, requeue) driven on mio sockets.
//! This file only opens a socket when the client asks, moves bytes and
//! time, and drops the socket when the client says.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Registry, Token};
use wharf_core::{Client, ClientAction, ClientEvent, ClientOptions, ConfigError, Message};

use crate::socket::{Readiness, Socket};

/// A WebSocket client that reconnects by the core's policy (see
/// [`wharf_core::Client`]): a registration hook on every Open before
/// queued messages, a bounded queue while disconnected (in order; what
/// does not fit is handed back), and what a lost connection had not sent
/// whole back first in line.
///
/// It uses one token in the caller's `Poll`. Between attempts it holds no
/// socket: the caller's loop stays alive through
/// [`poll_timeout`](Self::poll_timeout), its own timer.
///
/// Host names are resolved with the system resolver at each attempt, which
/// blocks the loop for the lookup; IP-address URLs never block. An attempt
/// tries the next address of the last lookup.
pub struct ReconnectingClient {
    client: Client,
    token: Token,
    socket: Option<Socket>,
    /// Addresses of the last resolution; attempts rotate through them.
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    now: Instant,
}

impl fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("client", &self.client)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl ReconnectingClient {
    /// A client under `token`; its first attempt is made by
    /// [`start`](Self::start) (or the first
    /// [`handle_timeout`](Self::handle_timeout)).
    pub fn new(options: ClientOptions, token: Token, now: Instant) -> Result<Self, ConfigError> {
        Ok(ReconnectingClient {
            client: Client::new(options, now)?,
            token,
            socket: None,
            addrs: Vec::new(),
            next_addr: 0,
            now,
        })
    }

    /// Makes the first attempt now.
    pub fn start(&mut self, registry: &Registry, now: Instant) {
        self.after(registry, now);
    }

    /// The token the client registers its sockets under.
    #[must_use]
    pub fn token(&self) -> Token {
        self.token
    }

    /// The core client (queries: `is_connected`, `queued`, `connects` …).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The client stopped (shut down, out of attempts, or rejected).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.client.is_stopped() && self.socket.is_none()
    }

    /// Handles a mio event with this client's token.
    pub fn handle_event(&mut self, registry: &Registry, event: &mio::event::Event, now: Instant) {
        self.now = now;
        let Some(socket) = self.socket.as_mut() else {
            return;
        };
        let readiness = Readiness::of(event);
        if !socket.connected {
            match socket.finish_connect(&readiness) {
                Ok(true) => self.client.connected(now),
                Ok(false) => return,
                Err(e) => {
                    self.client.connect_failed(now, e);
                    return self.after(registry, now);
                }
            }
        }
        socket.on_event(&mut self.client, &readiness, now);
        self.after(registry, now);
    }

    /// Runs what is due at `now`: the next attempt, or the connection's
    /// timers.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        self.now = now;
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        self.after(registry, now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }

    /// The next event. Taking a message lets a connection held at its
    /// receive bound read on.
    pub fn poll_event(&mut self, registry: &Registry) -> Option<ClientEvent> {
        let event = self.client.poll_event();
        let now = self.now;
        if let Some(socket) = self.socket.as_mut() {
            socket.resume(&mut self.client, now);
        }
        self.after(registry, now);
        event
    }

    /// Queues `message` (sent at once when connected); handed back when the
    /// queue is full or the client is stopping.
    pub fn send(
        &mut self,
        registry: &Registry,
        now: Instant,
        message: Message,
    ) -> Result<(), Message> {
        self.now = now;
        let result = self.client.send(message);
        self.after(registry, now);
        result
    }

    /// Stops reconnecting; an open connection sends what is queued and
    /// closes with 1000. Keep driving the client until it reports
    /// [`ClientEvent::Stopped`]; messages still queued come back with
    /// [`take_queued`](Self::take_queued).
    pub fn shutdown(&mut self, registry: &Registry, now: Instant) {
        self.now = now;
        self.client.shutdown(now);
        self.after(registry, now);
    }

    /// Takes back every message still waiting for a connection.
    pub fn take_queued(&mut self) -> Vec<Message> {
        self.client.take_queued()
    }

    /// After anything happened: carry out the client's socket actions and
    /// write what it has.
    fn after(&mut self, registry: &Registry, now: Instant) {
        for _ in 0..16 {
            match self.client.poll_action() {
                Some(ClientAction::Connect { host, port, .. }) => {
                    self.drop_socket(registry);
                    if let Err(e) = self.open(registry, &host, port) {
                        self.client.connect_failed(now, e);
                    }
                }
                Some(_) => self.drop_socket(registry),
                None => break,
            }
        }
        if let Some(socket) = self.socket.as_mut() {
            socket.drive(&mut self.client, registry, now);
        }
    }

    fn open(&mut self, registry: &Registry, host: &str, port: u16) -> io::Result<()> {
        let addr = self.next_address(host, port)?;
        let mut socket = Socket::new(TcpStream::connect(addr)?, self.token, false);
        socket.register(registry)?;
        self.socket = Some(socket);
        Ok(())
    }

    fn drop_socket(&mut self, registry: &Registry) {
        if let Some(mut socket) = self.socket.take() {
            let _ = socket.deregister(registry);
        }
    }

    fn next_address(&mut self, host: &str, port: u16) -> io::Result<SocketAddr> {
        if self.next_addr >= self.addrs.len() {
            self.addrs = (host, port).to_socket_addrs()?.collect();
            self.next_addr = 0;
        }
        let addr =
            self.addrs.get(self.next_addr).copied().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the host has no addresses")
            })?;
        self.next_addr += 1;
        Ok(addr)
    }
}
