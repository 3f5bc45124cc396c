//! The reconnecting client, sans-IO: one value that owns the current
//! [`Connection`] (or none), the [`Reconnect`] policy, a bounded queue of
//! messages that survives the gaps, and the registration hook that runs on
//! every Open. Adapters only open and close sockets when it says, and move
//! bytes and time.

mod event;
mod options;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

pub use event::{ClientEvent, Disconnect, Disconnected};
pub use options::{ClientOptions, RegistrationHook};

use crate::close::CloseCode;
use crate::config::{Config, MessageMode};
use crate::connection::Connection;
use crate::endpoint::Endpoint;
use crate::error::{ConfigError, Error};
use crate::event::{CloseInfo, Event, Initiator};
use crate::handshake::ClientRequest;
use crate::message::Message;
use crate::reconnect::Reconnect;
use crate::rng::{OsSeededRng, Random};
use crate::tls::ClientTls;

/// What the adapter must do with its socket, from
/// [`Client::poll_action`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAction {
    /// Open a TCP connection to `host:port`, then call
    /// [`Client::connected`] (or [`Client::connect_failed`]). The client
    /// gives up on it at `deadline` (the handshake timeout), and then asks
    /// for [`ClientAction::Close`].
    Connect {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// When the attempt is abandoned if not connected by then.
        deadline: Instant,
    },
    /// Close and drop the socket (connecting or connected): the connection
    /// on it is over. Nothing more is read from it or written to it.
    Close,
}

enum State {
    /// The next attempt is due at `at`.
    Waiting { at: Instant },
    /// The adapter is opening a socket (asked by `ClientAction::Connect`).
    Connecting { deadline: Instant },
    /// A connection runs on the adapter's socket.
    Active(Box<Active>),
    /// No more attempts; `Stopped` was reported.
    Stopped,
}

/// One connection's bookkeeping.
struct Active {
    conn: Connection,
    opened: bool,
    /// The hook's messages not yet taken by the connection.
    registration: VecDeque<Message>,
    /// Queue messages the connection took (the last ones it hands back
    /// unsent are theirs).
    from_queue: usize,
    /// Its `Closed` report.
    closed: Option<CloseInfo>,
    /// `Connection::close` was called for a requested stop.
    close_started: bool,
}

/// A stop requested with [`Client::shutdown`] or [`Client::go_away`].
#[derive(Clone, Copy)]
struct Stop {
    code: CloseCode,
    /// The queue's drain and the close end by then.
    deadline: Instant,
}

/// A WebSocket client that stays connected: sans-IO, like [`Connection`].
///
/// # Driving it
///
/// The client tells its adapter what to do with the socket through
/// [`poll_action`](Self::poll_action): open one ([`ClientAction::Connect`]; then
/// call [`connected`](Self::connected) or
/// [`connect_failed`](Self::connect_failed)) or drop it
/// ([`ClientAction::Close`]). While a socket is up, the adapter drives the
/// client exactly as a [`Connection`] ([`Endpoint`]): what the socket reads
/// into [`handle_input`](Self::handle_input), what
/// [`transmit_to`](Self::transmit_to) writes out of it,
/// [`handle_timeout`](Self::handle_timeout) when
/// [`poll_timeout`](Self::poll_timeout) passes (also between connections:
/// the next attempt is a deadline, not a socket). After every call, take
/// `poll_action`, write, drain [`poll_event`](Self::poll_event) and read
/// `poll_timeout` again.
///
/// # What it does
///
/// - Attempts follow its [`Reconnect`] policy: exponential backoff with
///   jitter after failures, a random first delay after a loss, 1013 (try
///   again later) honoured, the backoff reset once a connection is open.
///   Rejections (a certificate refused, an HTTP 4xx) stop the client
///   unless [`ReconnectConfig::retry_rejected`](crate::ReconnectConfig::retry_rejected).
/// - On every Open the registration hook runs, and its messages go out
///   before anything queued; what the connection cannot take yet waits,
///   first in line.
/// - [`send`](Self::send) queues (bounded by count and bytes; a message
///   that does not fit is handed back) and the queue drains, in order, into
///   each open connection. Messages a lost connection had not sent whole go
///   back to the front of the queue.
/// - Received messages count against the connection's receive bound until
///   the application takes them from `poll_event`; the next attempt waits
///   until the last connection's messages were taken, so memory stays
///   bounded across reconnects.
///
/// ```
/// use std::time::Instant;
/// use wharf_core::{Client, ClientAction, ClientOptions, ClientRequest};
///
/// let now = Instant::now();
/// let options = ClientOptions::new(ClientRequest::new("ws://127.0.0.1:9001/")?);
/// let mut client = Client::new(options, now)?;
/// match client.poll_action() {
///     Some(ClientAction::Connect { host, port, .. }) => assert_eq!((host.as_str(), port), ("127.0.0.1", 9001)),
///     other => panic!("{other:?}"),
/// }
/// // ... open the socket, then `client.connected(now)` and drive it.
/// # Ok::<(), wharf_core::ConfigError>(())
/// ```
pub struct Client {
    request: ClientRequest,
    config: Arc<Config>,
    tls: Option<ClientTls>,
    policy: Reconnect,
    hook: Option<RegistrationHook>,
    rng: Box<dyn Random>,
    queue: VecDeque<Message>,
    queued_bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    state: State,
    events: VecDeque<ClientEvent>,
    /// Messages in `events` from a connection already dropped (oldest
    /// first): taking them releases nothing.
    orphans: usize,
    action: Option<ClientAction>,
    stop: Option<Stop>,
    /// The latest `now` seen.
    now: Instant,
    connects: u64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.request.url().as_str())
            .field("connected", &self.is_connected())
            .field("queued", &self.queue.len())
            .field("connects", &self.connects)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client whose first attempt starts at once: take
    /// [`poll_action`](Self::poll_action).
    ///
    /// Fails for settings no attempt could use: a TLS server name rustls
    /// refuses, TLS without a crypto provider, stream mode (the client
    /// delivers whole messages). A `wss://` URL without
    /// [`ClientOptions::tls`] trusts the Mozilla root set.
    pub fn new(options: ClientOptions, now: Instant) -> Result<Client, ConfigError> {
        Self::with_rng(options, now, Box::new(OsSeededRng::new()))
    }

    /// As [`new`](Self::new), with the randomness (backoff jitter, each
    /// connection's masks and keys) injected: tests, simulations.
    pub fn with_rng(
        options: ClientOptions,
        now: Instant,
        mut rng: Box<dyn Random>,
    ) -> Result<Client, ConfigError> {
        if options.config.message_mode != MessageMode::Reassemble {
            return Err(ConfigError::InvalidState(
                "the reconnecting client delivers whole messages (MessageMode::Reassemble)",
            ));
        }
        let mut options = options;
        options.tls = ClientTls::for_request(options.tls.as_ref(), &options.request)?;
        // Whatever would fail every attempt fails here instead.
        Connection::client(
            options.config.clone(),
            &options.request,
            options.tls.as_ref(),
            now,
        )?;
        let mut seed = [0u8; 32];
        rng.fill(&mut seed);
        let mut client = Client {
            request: options.request,
            config: options.config,
            tls: options.tls,
            policy: Reconnect::with_rng(options.reconnect, Box::new(OsSeededRng::from_seed(seed))),
            hook: options.registration,
            rng,
            queue: VecDeque::new(),
            queued_bytes: 0,
            max_messages: options.max_queued_messages.max(1),
            max_bytes: options.max_queued_bytes.max(1),
            state: State::Waiting { at: now },
            events: VecDeque::new(),
            orphans: 0,
            action: None,
            stop: None,
            now,
            connects: 0,
        };
        client.attempt(now);
        Ok(client)
    }

    /// What to do with the socket, if anything: take it after every call.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<ClientAction> {
        self.action.take()
    }

    /// The socket asked for by [`ClientAction::Connect`] is connected: the
    /// WebSocket connection (TLS and the upgrade) starts on it.
    pub fn connected(&mut self, now: Instant) {
        self.now = now;
        if !matches!(self.state, State::Connecting { .. }) {
            return;
        }
        let mut seed = [0u8; 32];
        self.rng.fill(&mut seed);
        let conn = Connection::client_with_rng(
            self.config.clone(),
            &self.request,
            self.tls.as_ref(),
            now,
            Box::new(OsSeededRng::from_seed(seed)),
        );
        match conn {
            Ok(conn) => {
                self.state = State::Active(Box::new(Active {
                    conn,
                    opened: false,
                    registration: VecDeque::new(),
                    from_queue: 0,
                    closed: None,
                    close_started: false,
                }));
                self.update(now);
            }
            // Checked in `new`: settings that worked once work again.
            Err(e) => self.attempt_over(now, Disconnect::Connect(io::Error::other(e)), 0),
        }
    }

    /// The socket asked for by [`ClientAction::Connect`] could not be opened.
    pub fn connect_failed(&mut self, now: Instant, error: io::Error) {
        self.now = now;
        if matches!(self.state, State::Connecting { .. }) {
            self.attempt_over(now, Disconnect::Connect(error), 0);
        }
    }

    /// Queues `message`: it goes out on the open connection, in order,
    /// after the registration, or waits for the next one. Handed back when
    /// the queue is full (count or bytes) or the client is stopping.
    pub fn send(&mut self, message: Message) -> Result<(), Message> {
        if self.is_stopping() {
            return Err(message);
        }
        let len = message.len();
        if self.queue.len() >= self.max_messages
            || (self.queued_bytes > 0 && self.queued_bytes + len > self.max_bytes)
        {
            return Err(message);
        }
        self.queued_bytes += len;
        self.queue.push_back(message);
        let now = self.now;
        self.update(now);
        Ok(())
    }

    /// Stops: no more attempts; an open connection sends what is queued
    /// (within the close timeout) and closes with 1000. Keep driving the
    /// client until it reports [`ClientEvent::Stopped`]; what was not sent
    /// comes back with [`take_queued`](Self::take_queued).
    pub fn shutdown(&mut self, now: Instant) {
        self.request_stop(now, CloseCode::NORMAL);
    }

    /// As [`shutdown`](Self::shutdown), closing with 1001 (going away): for
    /// when the application itself is gone (an adapter whose every handle
    /// was dropped).
    pub fn go_away(&mut self, now: Instant) {
        self.request_stop(now, CloseCode::GOING_AWAY);
    }

    fn request_stop(&mut self, now: Instant, code: CloseCode) {
        self.now = now;
        if self.stop.is_none() {
            self.stop = Some(Stop {
                code,
                deadline: now + self.config.close_timeout,
            });
        }
        match self.state {
            State::Waiting { .. } => self.stopped(),
            State::Connecting { .. } => {
                self.action = Some(ClientAction::Close);
                self.stopped();
            }
            State::Active(_) => self.update(now),
            State::Stopped => {}
        }
    }

    /// Takes back every message still waiting for a connection.
    pub fn take_queued(&mut self) -> Vec<Message> {
        self.queued_bytes = 0;
        self.queue.drain(..).collect()
    }

    /// The next event. Taking a message frees its place in the
    /// connection's receive bound.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.pop_front()?;
        if let ClientEvent::Message(m) = &event {
            if self.orphans > 0 {
                self.orphans -= 1;
            } else if let State::Active(active) = &mut self.state {
                active.conn.release(1, m.len());
                let now = self.now;
                self.update(now);
            }
        }
        Some(event)
    }

    /// Whether [`poll_event`](Self::poll_event) has something.
    #[must_use]
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether [`send`](Self::send) would take one more message (of at
    /// most the queue's byte bound): the client is not stopping and the
    /// queue is under its count.
    #[must_use]
    pub fn has_room(&self) -> bool {
        !self.is_stopping()
            && self.queue.len() < self.max_messages
            && self.queued_bytes < self.max_bytes
    }

    /// A stop was requested, or the client stopped.
    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.stop.is_some() || matches!(self.state, State::Stopped)
    }

    /// A connection is open.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        matches!(&self.state, State::Active(a) if a.opened && a.conn.is_open())
    }

    /// The client stopped: [`ClientEvent::Stopped`] was reported.
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

    /// The current connection, if a socket is up.
    #[must_use]
    pub fn connection(&self) -> Option<&Connection> {
        match &self.state {
            State::Active(a) => Some(&a.conn),
            _ => None,
        }
    }

    /// After anything happened: the connection's events, the registration
    /// and the queue into the connection, a requested stop, the end of the
    /// connection.
    fn update(&mut self, now: Instant) {
        let State::Active(active) = &mut self.state else {
            return;
        };
        while let Some(event) = active.conn.poll_event_held() {
            match event {
                Event::Open(open) => {
                    active.opened = true;
                    self.connects += 1;
                    self.policy.opened();
                    if let Some(hook) = self.hook.as_mut() {
                        active.registration = hook(&open).into();
                    }
                    self.events.push_back(ClientEvent::Connected(open));
                }
                Event::Message(m) => self.events.push_back(ClientEvent::Message(m)),
                Event::Closed(info) => active.closed = Some(info),
                // Pings are answered and Close frames echoed by the
                // connection; chunks are not produced (Reassemble mode).
                _ => {}
            }
        }
        if active.opened && active.conn.is_open() {
            // The hook's messages first, then the queue, in order.
            while let Some(m) = active.registration.pop_front() {
                if let Err(e) = active.conn.send(m) {
                    active.registration.push_front(e.into_message());
                    break;
                }
            }
            if active.registration.is_empty() {
                while let Some(m) = self.queue.pop_front() {
                    let len = m.len();
                    match active.conn.send(m) {
                        Ok(()) => {
                            self.queued_bytes -= len;
                            active.from_queue += 1;
                        }
                        Err(e) => {
                            self.queue.push_front(e.into_message());
                            break;
                        }
                    }
                }
            }
        }
        if let Some(stop) = self.stop {
            if !active.close_started {
                let drained = self.queue.is_empty() && active.registration.is_empty();
                let overdue = now >= stop.deadline;
                if drained || overdue || !active.opened || !active.conn.is_open() {
                    // 1000 and 1001 with an empty reason are always sendable.
                    let _ = active.conn.close(stop.code, "");
                    active.close_started = true;
                }
            }
        }
        if active.conn.is_finished() {
            self.connection_over(now);
        }
    }

    /// The connection is finished: its socket goes, what it did not send
    /// whole goes back to the queue, and the policy says what is next.
    fn connection_over(&mut self, now: Instant) {
        let State::Active(mut active) = std::mem::replace(&mut self.state, State::Stopped) else {
            return;
        };
        // What it still had for the application stays with the client.
        while let Some(event) = active.conn.poll_event() {
            match event {
                Event::Message(m) => self.events.push_back(ClientEvent::Message(m)),
                Event::Closed(info) => active.closed = Some(info),
                _ => {}
            }
        }
        self.orphans = self
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Message(_)))
            .count();
        // Messages not sent whole: the connection took the registration
        // before any queued message, so the queued ones are the last
        // `from_queue` of what it hands back.
        let unsent = active.conn.take_unsent();
        let ours = unsent.len().min(active.from_queue);
        let skip = unsent.len() - ours;
        for m in unsent.into_iter().skip(skip).rev() {
            self.queued_bytes += m.len();
            self.queue.push_front(m);
        }
        let info = active.closed.take().unwrap_or_else(CloseInfo::abandoned);
        if active.opened {
            let code = peer_code(&info);
            self.lost(now, Disconnect::Lost(info), code, ours);
        } else {
            let error = info.error.unwrap_or(Error::TransportClosed);
            self.attempt_over(now, Disconnect::Handshake(error), ours);
        }
    }

    /// An open connection ended.
    fn lost(&mut self, now: Instant, reason: Disconnect, code: Option<CloseCode>, requeued: usize) {
        self.action = Some(ClientAction::Close);
        let retry_at = match self.stop {
            Some(_) => None,
            None => Some(self.policy.lost(now, code)),
        };
        self.disconnected(reason, retry_at, requeued);
    }

    /// An attempt failed before Open.
    fn attempt_over(&mut self, now: Instant, reason: Disconnect, requeued: usize) {
        self.action = Some(ClientAction::Close);
        let give_up =
            self.stop.is_some() || (reason.is_rejection() && !self.policy.config().retry_rejected);
        let retry_at = if give_up {
            None
        } else {
            self.policy.attempt_failed(now)
        };
        self.disconnected(reason, retry_at, requeued);
    }

    fn disconnected(&mut self, reason: Disconnect, retry_at: Option<Instant>, requeued: usize) {
        self.events
            .push_back(ClientEvent::Disconnected(Disconnected {
                reason,
                retry_at,
                requeued,
            }));
        match retry_at {
            Some(at) => self.state = State::Waiting { at },
            None => self.stopped(),
        }
    }

    fn stopped(&mut self) {
        self.state = State::Stopped;
        self.events.push_back(ClientEvent::Stopped);
    }

    fn attempt(&mut self, now: Instant) {
        let deadline = now + self.config.handshake_timeout;
        self.state = State::Connecting { deadline };
        self.action = Some(ClientAction::Connect {
            host: self.request.host().to_owned(),
            port: self.request.port(),
            deadline,
        });
    }
}

/// The peer's close code, for the policy (1012 / 1013 matter): only one it
/// sent.
fn peer_code(info: &CloseInfo) -> Option<CloseCode> {
    let sent_by_peer = info.initiator == Initiator::Remote
        && info.code != CloseCode::NO_STATUS
        && info.code != CloseCode::ABNORMAL;
    sent_by_peer.then_some(info.code)
}

/// The byte-and-time interface, as on [`Connection`] (where each method is
/// documented), on the current connection; without one there is nothing to
/// read or write, and the only deadline is the next attempt.
impl Client {
    /// Feeds bytes read from the socket.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.now = now;
        if let State::Active(a) = &mut self.state {
            a.conn.handle_input(now, data);
            self.update(now);
        }
    }

    /// Lends the input buffer to `read` for a large frame; `None` when not.
    pub fn read_with<R>(
        &mut self,
        now: Instant,
        read: impl FnOnce(&mut BytesMut) -> R,
    ) -> Option<R> {
        self.now = now;
        let State::Active(a) = &mut self.state else {
            return None;
        };
        let result = a.conn.read_with(now, read);
        if result.is_some() {
            self.update(now);
        }
        result
    }

    /// The socket reached its end, or failed.
    pub fn handle_eof(&mut self, now: Instant) {
        self.now = now;
        if let State::Active(a) = &mut self.state {
            a.conn.handle_eof(now);
            self.update(now);
        } else if matches!(self.state, State::Connecting { .. }) {
            let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
            self.attempt_over(now, Disconnect::Connect(eof), 0);
        }
    }

    /// Runs what is due at `now`: the next attempt, the connect deadline,
    /// the connection's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        match &mut self.state {
            State::Active(a) => {
                a.conn.handle_timeout(now);
                self.update(now);
            }
            State::Waiting { at } => {
                if *at <= now && self.orphans == 0 {
                    self.attempt(now);
                }
            }
            State::Connecting { deadline } => {
                if *deadline <= now {
                    let timeout = io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection did not open within the handshake timeout",
                    );
                    self.attempt_over(now, Disconnect::Connect(timeout), 0);
                }
            }
            State::Stopped => {}
        }
    }

    /// Writes what is pending into `sink` until it would block.
    pub fn transmit_to(&mut self, sink: &mut dyn io::Write) -> io::Result<usize> {
        let State::Active(a) = &mut self.state else {
            return Ok(0);
        };
        let result = a.conn.transmit_to(sink);
        let now = self.now;
        self.update(now);
        result
    }

    /// Appends what is pending to `buf`.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        let State::Active(a) = &mut self.state else {
            return 0;
        };
        let n = a.conn.poll_transmit(buf);
        let now = self.now;
        self.update(now);
        n
    }

    /// Read the socket (false: no socket, or the receive bound is reached).
    #[must_use]
    pub fn wants_read(&self) -> bool {
        matches!(&self.state, State::Active(a) if a.conn.wants_read())
    }

    /// There are bytes to write.
    #[must_use]
    pub fn wants_write(&self) -> bool {
        matches!(&self.state, State::Active(a) if a.conn.wants_write())
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            // Waiting for the application to take the last connection's
            // messages: nothing is due until it does.
            State::Waiting { .. } if self.orphans > 0 => None,
            State::Waiting { at } => Some(*at),
            State::Connecting { deadline } => Some(*deadline),
            State::Active(a) => {
                let own = self.stop.filter(|_| !a.close_started).map(|s| s.deadline);
                crate::timer::earlier(a.conn.poll_timeout(), own)
            }
            State::Stopped => None,
        }
    }
}

impl Endpoint for Client {
    fn handle_input(&mut self, now: Instant, data: &[u8]) {
        Client::handle_input(self, now, data);
    }
    fn read_with<R>(&mut self, now: Instant, read: impl FnOnce(&mut BytesMut) -> R) -> Option<R> {
        Client::read_with(self, now, read)
    }
    fn handle_eof(&mut self, now: Instant) {
        Client::handle_eof(self, now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Client::handle_timeout(self, now);
    }
    fn transmit_to(&mut self, sink: &mut dyn io::Write) -> io::Result<usize> {
        Client::transmit_to(self, sink)
    }
    fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> usize {
        Client::poll_transmit(self, buf)
    }
    fn wants_read(&self) -> bool {
        Client::wants_read(self)
    }
    fn wants_write(&self) -> bool {
        Client::wants_write(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Client::poll_timeout(self)
    }
}
