//! A client that reconnects forever by the core's policy and leaks nothing.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Instant;

use mio::{Registry, Token};
use wharf_core::{
    ClientRequest, ClientTls, CloseCode, CloseInfo, Config, ConfigError, Event, Initiator, Message,
    Reconnect, ReconnectConfig, SendError,
};

use crate::stream::{ConnectError, WsStream};

/// Produces the messages that must go first on every new connection (the
/// application's registration), before anything queued.
pub type RegistrationHook = Box<dyn FnMut() -> Vec<Message> + Send>;

/// Settings of a [`ReconnectingClient`].
#[non_exhaustive]
pub struct ClientOptions {
    /// What to connect to (URL, subprotocols, headers).
    pub request: ClientRequest,
    /// Connection settings.
    pub config: Arc<Config>,
    /// TLS settings, required for `wss://`.
    pub tls: Option<ClientTls>,
    /// When to retry.
    pub reconnect: ReconnectConfig,
    /// Most messages waiting while disconnected. Default 1,024.
    pub max_queued_messages: usize,
    /// Most bytes of messages waiting while disconnected. Default 16 MiB.
    pub max_queued_bytes: usize,
    /// Runs on every Open; its messages go out before the queued ones.
    pub registration: Option<RegistrationHook>,
}

impl ClientOptions {
    /// Options for `request` with every default.
    #[must_use]
    pub fn new(request: ClientRequest) -> Self {
        ClientOptions {
            request,
            config: Arc::new(Config::default()),
            tls: None,
            reconnect: ReconnectConfig::default(),
            max_queued_messages: 1024,
            max_queued_bytes: 16 << 20,
            registration: None,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("request", &self.request)
            .field("reconnect", &self.reconnect)
            .field("max_queued_messages", &self.max_queued_messages)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .finish_non_exhaustive()
    }
}

/// Why a connection ended or an attempt failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Disconnect {
    /// The host name did not resolve.
    Resolve(io::Error),
    /// The TCP connect or the socket failed.
    Io(io::Error),
    /// The WebSocket connection closed (the reason is in the `CloseInfo`:
    /// a close by the peer, a TLS or handshake failure, a timeout …).
    Closed(CloseInfo),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Resolve(e) => write!(f, "name resolution failed: {e}"),
            Disconnect::Io(e) => write!(f, "socket error: {e}"),
            Disconnect::Closed(info) => match &info.error {
                Some(e) => write!(f, "closed ({}): {e}", info.code),
                None => write!(f, "closed ({}) {}", info.code, info.reason),
            },
        }
    }
}

/// What a [`ReconnectingClient`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection reached Open; registration and queued messages are on
    /// their way.
    Connected {
        /// The negotiated subprotocol.
        subprotocol: Option<String>,
    },
    /// A connection ended or an attempt failed; the next attempt is at
    /// `retry_at` (`None`: the attempt limit was reached, the client stopped).
    Disconnected {
        /// Why.
        reason: Disconnect,
        /// When the next attempt starts.
        retry_at: Option<Instant>,
    },
    /// A message from the server.
    Message(Message),
    /// [`ReconnectingClient::shutdown`] finished: nothing is left running.
    Stopped,
}

enum State {
    /// Waiting for the next attempt.
    Waiting { retry_at: Instant },
    /// Connecting, handshaking or open.
    Active {
        stream: Box<WsStream>,
        opened: bool,
        /// The connection's `Closed` report, kept until the socket is done.
        closed: Option<CloseInfo>,
    },
    /// Shut down or gave up.
    Stopped,
}

/// A WebSocket client that reconnects by a [`Reconnect`] policy, runs a
/// registration hook on every Open before queued messages, and queues
/// messages while disconnected (bounded, in order; what does not fit is
/// handed back).
///
/// It uses one token in the caller's `Poll`. Between attempts it holds no
/// socket: the caller's loop stays alive through
/// [`poll_timeout`](Self::poll_timeout), its own timer.
///
/// Host names are resolved with the system resolver at each attempt, which
/// blocks the loop for the lookup; IP-address URLs never block.
pub struct ReconnectingClient {
    request: ClientRequest,
    config: Arc<Config>,
    tls: Option<ClientTls>,
    policy: Reconnect,
    token: Token,
    registration: Option<RegistrationHook>,
    max_queued_messages: usize,
    max_queued_bytes: usize,
    queue: VecDeque<Message>,
    queued_bytes: usize,
    state: State,
    events: VecDeque<ClientEvent>,
    /// Addresses of the last resolution; attempts rotate through them.
    addrs: Vec<SocketAddr>,
    next_addr: usize,
    shutting_down: bool,
    /// Connections that reached Open.
    connects: u64,
}

impl fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("url", &self.request.url().as_str())
            .field("token", &self.token)
            .field("connected", &self.is_connected())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl ReconnectingClient {
    /// A client that makes its first attempt at `now` (on the first
    /// [`handle_timeout`](Self::handle_timeout) call, or [`start`](Self::start)).
    pub fn new(options: ClientOptions, token: Token, now: Instant) -> Result<Self, ConfigError> {
        if options.request.is_tls() && options.tls.is_none() {
            return Err(ConfigError::TlsRequired);
        }
        Ok(ReconnectingClient {
            request: options.request,
            config: options.config,
            tls: options.tls,
            policy: Reconnect::new(options.reconnect),
            token,
            registration: options.registration,
            max_queued_messages: options.max_queued_messages,
            max_queued_bytes: options.max_queued_bytes,
            queue: VecDeque::new(),
            queued_bytes: 0,
            state: State::Waiting { retry_at: now },
            events: VecDeque::new(),
            addrs: Vec::new(),
            next_addr: 0,
            shutting_down: false,
            connects: 0,
        })
    }

    /// Makes the first attempt now.
    pub fn start(&mut self, registry: &Registry, now: Instant) {
        if let State::Waiting { .. } = self.state {
            self.attempt(registry, now);
        }
    }

    /// The token the client registers its sockets under.
    #[must_use]
    pub fn token(&self) -> Token {
        self.token
    }

    /// A connection is open.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        matches!(&self.state, State::Active { opened: true, stream, .. } if stream.connection().is_open())
    }

    /// The client stopped (shut down, or the attempt limit was reached).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, State::Stopped)
    }

    /// Connections that reached Open so far.
    #[must_use]
    pub fn connects(&self) -> u64 {
        self.connects
    }

    /// Messages waiting for a connection.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Handles a mio event with this client's token.
    pub fn handle_event(&mut self, registry: &Registry, event: &mio::event::Event, now: Instant) {
        if let State::Active { stream, .. } = &mut self.state {
            stream.handle_event(registry, event, now);
            self.after(registry, now);
        }
    }

    /// Runs what is due at `now`: the next attempt, or the connection's timers.
    pub fn handle_timeout(&mut self, registry: &Registry, now: Instant) {
        match &mut self.state {
            State::Waiting { retry_at } if *retry_at <= now => self.attempt(registry, now),
            State::Active { stream, .. } if stream.poll_timeout().is_some_and(|t| t <= now) => {
                stream.handle_timeout(registry, now);
                self.after(registry, now);
            }
            _ => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Waiting { retry_at } => Some(*retry_at),
            State::Active { stream, .. } => stream.poll_timeout(),
            State::Stopped => None,
        }
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Sends `message` now if connected, else queues it. When the queue is
    /// full (or the client stopped) the message is handed back.
    pub fn send(
        &mut self,
        registry: &Registry,
        now: Instant,
        message: Message,
    ) -> Result<(), Message> {
        if self.shutting_down || matches!(self.state, State::Stopped) {
            return Err(message);
        }
        if self.queue.len() >= self.max_queued_messages
            || (self.queued_bytes > 0 && self.queued_bytes + message.len() > self.max_queued_bytes)
        {
            return Err(message);
        }
        self.queued_bytes += message.len();
        self.queue.push_back(message);
        self.pump(registry, now);
        Ok(())
    }

    /// Stops reconnecting and closes the connection (1000). Keep driving the
    /// client until it reports [`ClientEvent::Stopped`]; messages still
    /// queued can be taken back with [`take_queued`](Self::take_queued).
    pub fn shutdown(&mut self, registry: &Registry, now: Instant) {
        self.shutting_down = true;
        match &mut self.state {
            State::Active { stream, .. } => {
                if stream.connection().is_open() {
                    let _ = stream.close(registry, now, CloseCode::NORMAL, "client shutdown");
                } else {
                    // Not open yet: abandon the attempt.
                    let _ = stream.close(registry, now, CloseCode::NORMAL, "");
                }
                self.after(registry, now);
            }
            State::Waiting { .. } => self.stop(),
            State::Stopped => {}
        }
    }

    /// Takes back every message still waiting for a connection.
    pub fn take_queued(&mut self) -> Vec<Message> {
        self.queued_bytes = 0;
        self.queue.drain(..).collect()
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.events.push_back(ClientEvent::Stopped);
    }

    fn attempt(&mut self, registry: &Registry, now: Instant) {
        if self.shutting_down {
            self.stop();
            return;
        }
        let addr = match self.next_address() {
            Ok(addr) => addr,
            Err(e) => return self.failed(Disconnect::Resolve(e), now, false),
        };
        let stream = WsStream::connect(
            addr,
            &self.request,
            self.config.clone(),
            self.tls.as_ref(),
            now,
            self.token,
        );
        let mut stream = match stream {
            Ok(s) => Box::new(s),
            Err(ConnectError::Io(e)) => return self.failed(Disconnect::Io(e), now, false),
            Err(ConnectError::Config(_)) => {
                // Checked in `new`; a configuration cannot turn bad later.
                self.stop();
                return;
            }
        };
        if let Err(e) = stream.register(registry) {
            return self.failed(Disconnect::Io(e), now, false);
        }
        self.state = State::Active {
            stream,
            opened: false,
            closed: None,
        };
    }

    fn next_address(&mut self) -> io::Result<SocketAddr> {
        if self.next_addr >= self.addrs.len() {
            let host = self.request.host();
            self.addrs = (host, self.request.port()).to_socket_addrs()?.collect();
            self.next_addr = 0;
        }
        let addr =
            self.addrs.get(self.next_addr).copied().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the host has no addresses")
            })?;
        self.next_addr += 1;
        Ok(addr)
    }

    /// After anything happened on the active stream: report its events, move
    /// queued messages on, and handle its end.
    fn after(&mut self, registry: &Registry, now: Instant) {
        let State::Active {
            stream,
            opened,
            closed,
        } = &mut self.state
        else {
            return;
        };
        let mut just_opened = false;
        while let Some(event) = stream.poll_event(registry) {
            match event {
                Event::Open(open) => {
                    *opened = true;
                    just_opened = true;
                    self.connects += 1;
                    self.policy.opened();
                    self.events.push_back(ClientEvent::Connected {
                        subprotocol: open.subprotocol,
                    });
                }
                Event::Message(m) => self.events.push_back(ClientEvent::Message(m)),
                Event::Closed(info) => *closed = Some(info),
                _ => {}
            }
        }
        if just_opened {
            if let Some(hook) = self.registration.as_mut() {
                for m in hook() {
                    // Registration goes first; a refusal here means the
                    // message is larger than the whole send queue allows,
                    // which the application must fix: report it by closing.
                    if stream.send(registry, now, m).is_err() {
                        let _ = stream.close(registry, now, CloseCode::POLICY_VIOLATION, "");
                    }
                }
            }
        }
        let was_open = *opened;
        if stream.is_finished() {
            let _ = stream.deregister(registry);
            // Nothing is lost: what the connection did not send goes back to
            // the front of the queue, in order.
            let unsent = stream.take_unsent();
            let io_error = stream
                .io_error()
                .map(|e| io::Error::new(e.kind(), e.to_string()));
            for m in unsent.into_iter().rev() {
                self.queued_bytes += m.len();
                self.queue.push_front(m);
            }
            let reason = match (io_error, closed.take()) {
                (Some(e), _) if !was_open => Disconnect::Io(e),
                (_, Some(info)) => Disconnect::Closed(info),
                (Some(e), None) => Disconnect::Io(e),
                (None, None) => Disconnect::Io(io::Error::other("connection ended")),
            };
            self.failed(reason, now, was_open);
            return;
        }
        self.pump(registry, now);
    }

    /// Moves queued messages into the open connection, in order, as far as
    /// its send queue allows.
    fn pump(&mut self, registry: &Registry, now: Instant) {
        let State::Active {
            stream,
            opened: true,
            ..
        } = &mut self.state
        else {
            return;
        };
        while let Some(m) = self.queue.pop_front() {
            let len = m.len();
            match stream.send(registry, now, m) {
                Ok(()) => self.queued_bytes -= len,
                Err(SendError::Full(m) | SendError::NotOpen(m)) => {
                    self.queue.push_front(m);
                    return;
                }
                Err(e) => {
                    self.queue.push_front(e.into_message());
                    return;
                }
            }
        }
    }

    /// An attempt failed or a connection ended: schedule the next attempt.
    fn failed(&mut self, reason: Disconnect, now: Instant, was_open: bool) {
        if self.shutting_down {
            self.events.push_back(ClientEvent::Disconnected {
                reason,
                retry_at: None,
            });
            self.stop();
            return;
        }
        let retry_at = if was_open {
            let code = match &reason {
                Disconnect::Closed(info) if info.initiator == Initiator::Remote => Some(info.code),
                _ => None,
            };
            Some(self.policy.lost(now, code))
        } else {
            self.policy.attempt_failed(now)
        };
        self.events
            .push_back(ClientEvent::Disconnected { reason, retry_at });
        match retry_at {
            Some(retry_at) => self.state = State::Waiting { retry_at },
            None => self.stop(),
        }
    }
}
