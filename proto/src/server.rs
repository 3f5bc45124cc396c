//! The server side of the session, sans-IO: registered clients and their
//! streams, requests handed to the application and answered, frames
//! numbered, kept for resumption and pushed to subscribers.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use wharf_core::{Bytes, Message};

use crate::codec::{decode, encode};
use crate::error::{ProtoError, ServerError};
use crate::wire::{
    self, envelope::Body, Frame, Register, RegisterAck, Request, Status, StreamPosition,
};

/// One transport connection of a [`ServerSession`], from
/// [`ServerSession::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u64);

impl ConnectionId {
    /// The number behind the id (unique within one session).
    #[must_use]
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Settings for a [`ServerSession`]; every bound on memory is here.
///
/// ```
/// use wharf_proto::ServerSessionConfig;
///
/// let config = ServerSessionConfig::new().with_history(64);
/// assert_eq!(config.history, 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerSessionConfig {
    /// Most connections at once. Default 10 000.
    pub max_connections: usize,
    /// Most streams one client may subscribe to. Default 64.
    pub max_streams_per_client: usize,
    /// Longest client id or stream name, in bytes. Default 256.
    pub max_name_len: usize,
    /// Most requests in flight per connection (handed to the application
    /// and not answered yet); beyond it requests are answered with
    /// [`Status::Unavailable`]. Default 256.
    pub max_in_flight: usize,
    /// Frames kept per stream so that a client that reconnects gets what it
    /// missed. Default 1024.
    pub history: usize,
}

impl Default for ServerSessionConfig {
    fn default() -> Self {
        ServerSessionConfig {
            max_connections: 10_000,
            max_streams_per_client: 64,
            max_name_len: 256,
            max_in_flight: 256,
            history: 1024,
        }
    }
}

impl ServerSessionConfig {
    /// The defaults.
    #[must_use]
    pub fn new() -> Self {
        ServerSessionConfig::default()
    }

    /// Sets how many frames are kept per stream for resumption.
    #[must_use]
    pub fn with_history(mut self, frames: usize) -> Self {
        self.history = frames;
        self
    }

    /// Sets the most requests in flight per connection (at least 1).
    #[must_use]
    pub fn with_max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// Sets the most connections at once.
    #[must_use]
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// Sets the most streams per client.
    #[must_use]
    pub fn with_max_streams_per_client(mut self, streams: usize) -> Self {
        self.max_streams_per_client = streams;
        self
    }
}

/// What a [`ServerSession`] reports through [`ServerSession::poll_event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A well-formed registration awaits the application's decision:
    /// [`ServerSession::accept_registration`] or
    /// [`ServerSession::refuse_registration`].
    Register {
        /// The connection it came on.
        connection: ConnectionId,
        /// What the client sent (check `auth_token` here).
        register: Register,
    },
    /// A request for the application; answer it with
    /// [`ServerSession::respond`].
    Request {
        /// The connection it came on.
        connection: ConnectionId,
        /// The registered client that sent it.
        client_id: String,
        /// The request.
        request: Request,
    },
    /// A client registered again on a new connection, which replaces the
    /// old one for good: nothing more is sent on the old connection (no
    /// frames, no results) and nothing it sends is taken (its messages are
    /// ignored, a `Register` included). The requests it had in flight can no
    /// longer be answered: [`ServerSession::respond`] for them reports
    /// [`ServerError::Replaced`] and sends nothing (the client resends or
    /// fails them on its new connection). Close the old connection and
    /// [`disconnect`](ServerSession::disconnect) it.
    Replaced {
        /// The old connection.
        old: ConnectionId,
        /// The new one.
        new: ConnectionId,
        /// The client.
        client_id: String,
    },
}

#[derive(Debug)]
enum ConnState {
    /// No registration yet (or the last one was refused).
    Connected,
    /// Waiting for the application's decision; requests that arrive
    /// meanwhile are held (at most `max_in_flight`).
    Registering {
        register: Register,
        held: Vec<Request>,
    },
    /// Registered as this client.
    Registered { client_id: String },
    /// Replaced by a newer connection of its client: nothing more goes out
    /// on it or is taken from it, until it is disconnected.
    Replaced,
}

#[derive(Debug)]
struct Conn {
    state: ConnState,
    in_flight: HashSet<u64>,
    streams: Vec<String>,
}

impl Conn {
    /// Whether a request with this id is in flight: handed to the
    /// application and not answered, or held while it decides.
    fn has_request(&self, id: u64) -> bool {
        self.in_flight.contains(&id)
            || matches!(&self.state, ConnState::Registering { held, .. }
                if held.iter().any(|r| r.id == id))
    }
}

#[derive(Debug)]
struct StreamLog {
    next_seq: u64,
    history: VecDeque<Frame>,
    subscribers: BTreeSet<ConnectionId>,
}

impl StreamLog {
    fn new() -> StreamLog {
        StreamLog {
            next_seq: 1,
            history: VecDeque::new(),
            subscribers: BTreeSet::new(),
        }
    }

    /// Never published to and nobody listening: can go.
    fn is_idle(&self) -> bool {
        self.next_seq == 1 && self.subscribers.is_empty()
    }
}

/// The server side of a wharf-proto session for many connections, with no
/// I/O inside.
///
/// # Driving it
///
/// [`connect`](Self::connect) each transport connection that reaches Open,
/// [`handle_message`](Self::handle_message) what arrives on it, and
/// [`disconnect`](Self::disconnect) it when it ends. Decide registrations
/// and answer requests as [`ServerEvent`]s ask, and
/// [`publish`](Self::publish) frames. **After every call** drain
/// [`poll_transmit`](Self::poll_transmit) (each message names its
/// connection) and [`poll_event`](Self::poll_event).
///
/// # Rules
///
/// - A connection's first message must be a `Register`. Requests that come
///   before it are answered with [`Status::NotRegistered`]; those that come
///   while the application decides are held, then run or answered so.
/// - Every request that arrives gets exactly one `Result`: the
///   application's, or an error one (malformed, unknown version, not
///   registered, too many in flight). A malformed message never ends the
///   connection.
/// - A request whose id is already in flight on its connection (handed to
///   the application, or held) is a duplicate, well-formed or not: it is
///   dropped with [`ProtoError::DuplicateRequest`] and gets no `Result`;
///   the first one keeps its single answer.
/// - At most [`max_in_flight`](ServerSessionConfig::max_in_flight)
///   requests per connection are handed to the application and not
///   answered.
/// - A connection whose client registers on another one is replaced
///   ([`ServerEvent::Replaced`]): from then on nothing is sent on it and
///   nothing it sends is taken, until it is disconnected.
/// - Frames are numbered per stream from 1 and the last
///   [`history`](ServerSessionConfig::history) of them kept: a client that
///   resumes gets what it missed, from its last sequence number in this
///   epoch, or from the start of the history if it comes from another epoch.
///
/// ```
/// use wharf_proto::{decode, encode, Body, Register, ServerEvent, ServerSession,
///     ServerSessionConfig, Subscription};
///
/// let mut server = ServerSession::new(ServerSessionConfig::new(), 7);
/// let conn = server.connect()?;
/// let register = Register {
///     client_id: "c1".into(),
///     streams: vec![Subscription { stream: "ticks".into(), ..Default::default() }],
///     ..Default::default()
/// };
/// server.handle_message(conn, &encode(Body::Register(register)))?;
/// let Some(ServerEvent::Register { connection, .. }) = server.poll_event() else { panic!() };
/// server.accept_registration(connection)?; // after checking the token
/// let (to, ack) = server.poll_transmit().expect("the ack");
/// assert!(to == conn && matches!(decode(&ack)?, Body::RegisterAck(a) if a.accepted));
///
/// assert_eq!(server.publish("ticks", "t1")?, 1);
/// let (_, frame) = server.poll_transmit().expect("the frame");
/// assert!(matches!(decode(&frame)?, Body::Frame(f) if f.sequence == 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ServerSession {
    config: ServerSessionConfig,
    epoch: u64,
    next_conn: u64,
    conns: HashMap<ConnectionId, Conn>,
    clients: HashMap<String, ConnectionId>,
    streams: HashMap<String, StreamLog>,
    transmit: VecDeque<(ConnectionId, Message)>,
    events: VecDeque<ServerEvent>,
}

impl ServerSession {
    /// A session with no connections. `epoch` identifies this run of the
    /// server (0 is taken as 1): give each run a different one (a start
    /// time, a random number), so that clients notice a restart.
    #[must_use]
    pub fn new(config: ServerSessionConfig, epoch: u64) -> ServerSession {
        ServerSession {
            config,
            epoch: epoch.max(1),
            next_conn: 0,
            conns: HashMap::new(),
            clients: HashMap::new(),
            streams: HashMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// This run's epoch.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ServerSessionConfig {
        &self.config
    }

    /// How many connections are open.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// The client registered on `connection`, if any.
    #[must_use]
    pub fn client_id(&self, connection: ConnectionId) -> Option<&str> {
        match &self.conns.get(&connection)?.state {
            ConnState::Registered { client_id } => Some(client_id),
            _ => None,
        }
    }

    /// How many connections are subscribed to `stream`.
    #[must_use]
    pub fn subscribers(&self, stream: &str) -> usize {
        self.streams.get(stream).map_or(0, |s| s.subscribers.len())
    }

    /// A transport connection opened.
    ///
    /// # Errors
    ///
    /// [`ServerError::TooManyConnections`] at `max_connections`.
    pub fn connect(&mut self) -> Result<ConnectionId, ServerError> {
        if self.conns.len() >= self.config.max_connections {
            return Err(ServerError::TooManyConnections(self.config.max_connections));
        }
        self.next_conn += 1;
        let id = ConnectionId(self.next_conn);
        self.conns.insert(
            id,
            Conn {
                state: ConnState::Connected,
                in_flight: HashSet::new(),
                streams: Vec::new(),
            },
        );
        Ok(id)
    }

    /// A connection ended: its subscriptions and registration go; results
    /// for its requests can no longer be sent ([`respond`](Self::respond)
    /// then reports [`ServerError::UnknownConnection`]).
    pub fn disconnect(&mut self, connection: ConnectionId) {
        let Some(conn) = self.conns.remove(&connection) else {
            return;
        };
        self.unsubscribe(connection, &conn.streams);
        if let ConnState::Registered { client_id } = conn.state {
            if self.clients.get(&client_id) == Some(&connection) {
                self.clients.remove(&client_id);
            }
        }
        self.transmit.retain(|(to, _)| *to != connection);
    }

    /// Takes one message that arrived on `connection` (ignored if the
    /// connection is unknown, as it may have just been disconnected, or
    /// replaced).
    ///
    /// # Errors
    ///
    /// A [`ProtoError`] for a malformed, unknown or unexpected message. The
    /// connection stays; if the message carried a request id, an error
    /// `Result` for it is queued, unless a request with that id is already
    /// in flight on this connection: then the message is a duplicate,
    /// reported as [`ProtoError::DuplicateRequest`] and dropped.
    pub fn handle_message(
        &mut self,
        connection: ConnectionId,
        message: &Message,
    ) -> Result<(), ProtoError> {
        match self.conns.get(&connection) {
            Some(conn) if !matches!(conn.state, ConnState::Replaced) => {}
            // Unknown (maybe just disconnected) or replaced: nothing is taken.
            _ => return Ok(()),
        }
        let body = match decode(message) {
            Ok(body) => body,
            Err(error) => {
                if let Some(id) = error.request_id() {
                    if self.conns[&connection].has_request(id) {
                        return Err(ProtoError::DuplicateRequest { id });
                    }
                    let status = match error {
                        ProtoError::UnsupportedVersion { .. } => Status::UnsupportedVersion,
                        _ => Status::InvalidRequest,
                    };
                    self.send_result(
                        connection,
                        wire::Result::error(id, status, error.to_string()),
                    );
                }
                return Err(error);
            }
        };
        match body {
            Body::Register(register) => self.on_register(connection, register),
            Body::Request(request) => self.on_request(connection, request),
            Body::RegisterAck(_) => Err(unexpected("RegisterAck")),
            Body::Result(_) => Err(unexpected("Result")),
            Body::Frame(_) => Err(unexpected("Frame")),
        }
    }

    /// Accepts the registration awaiting on `connection`: the ack goes out,
    /// then the frames each resuming stream missed, then live frames; the
    /// requests held meanwhile are handed out as [`ServerEvent::Request`]. A
    /// connection of the same client id is replaced
    /// ([`ServerEvent::Replaced`]): it gets nothing more, and its requests
    /// in flight can no longer be answered.
    ///
    /// # Errors
    ///
    /// [`ServerError::UnknownConnection`],
    /// [`ServerError::NoPendingRegistration`].
    pub fn accept_registration(&mut self, connection: ConnectionId) -> Result<(), ServerError> {
        let conn = self
            .conns
            .get_mut(&connection)
            .ok_or(ServerError::UnknownConnection(connection))?;
        let (register, held) = match std::mem::replace(&mut conn.state, ConnState::Connected) {
            ConnState::Registering { register, held } => (register, held),
            other => {
                conn.state = other;
                return Err(ServerError::NoPendingRegistration(connection));
            }
        };
        conn.state = ConnState::Registered {
            client_id: register.client_id.clone(),
        };
        conn.streams = register.streams.iter().map(|s| s.stream.clone()).collect();

        if let Some(old) = self
            .clients
            .insert(register.client_id.clone(), connection)
            .filter(|&old| old != connection)
        {
            if let Some(old_conn) = self.conns.get_mut(&old) {
                old_conn.state = ConnState::Replaced;
                old_conn.in_flight.clear();
                let streams = std::mem::take(&mut old_conn.streams);
                self.unsubscribe(old, &streams);
            }
            self.events.push_back(ServerEvent::Replaced {
                old,
                new: connection,
                client_id: register.client_id.clone(),
            });
        }

        let mut positions = Vec::with_capacity(register.streams.len());
        let mut replay = Vec::new();
        for sub in &register.streams {
            let log = self
                .streams
                .entry(sub.stream.clone())
                .or_insert_with(StreamLog::new);
            let from = if !sub.resume {
                log.next_seq
            } else if register.server_epoch == self.epoch {
                sub.last_sequence.saturating_add(1).min(log.next_seq)
            } else {
                1
            };
            let oldest = log.history.front().map_or(log.next_seq, |f| f.sequence);
            let start = from.max(oldest);
            replay.extend(log.history.iter().filter(|f| f.sequence >= start).cloned());
            log.subscribers.insert(connection);
            positions.push(StreamPosition {
                stream: sub.stream.clone(),
                next_sequence: start,
            });
        }
        let ack = RegisterAck {
            accepted: true,
            reason: String::new(),
            server_epoch: self.epoch,
            streams: positions,
        };
        self.transmit
            .push_back((connection, encode(Body::RegisterAck(ack))));
        for frame in replay {
            self.transmit
                .push_back((connection, encode(Body::Frame(frame))));
        }
        for request in held {
            self.dispatch(connection, &register.client_id, request);
        }
        Ok(())
    }

    /// Refuses the registration awaiting on `connection` with `reason`; the
    /// requests held meanwhile are answered with
    /// [`Status::NotRegistered`]. The client may register again.
    ///
    /// # Errors
    ///
    /// [`ServerError::UnknownConnection`],
    /// [`ServerError::NoPendingRegistration`].
    pub fn refuse_registration(
        &mut self,
        connection: ConnectionId,
        reason: impl Into<String>,
    ) -> Result<(), ServerError> {
        let conn = self
            .conns
            .get_mut(&connection)
            .ok_or(ServerError::UnknownConnection(connection))?;
        let held = match std::mem::replace(&mut conn.state, ConnState::Connected) {
            ConnState::Registering { held, .. } => held,
            other => {
                conn.state = other;
                return Err(ServerError::NoPendingRegistration(connection));
            }
        };
        self.refuse(connection, reason.into());
        for request in held {
            self.send_result(
                connection,
                wire::Result::error(request.id, Status::NotRegistered, "registration refused"),
            );
        }
        Ok(())
    }

    /// Answers a request handed out as [`ServerEvent::Request`]. The
    /// result's `request_id` names it.
    ///
    /// # Errors
    ///
    /// Nothing is sent when it fails:
    /// [`ServerError::UnknownConnection`] when the connection is gone and
    /// [`ServerError::Replaced`] when it was replaced by a newer connection
    /// of its client (in both cases the result is dropped: the client
    /// resends or fails the request), [`ServerError::NoSuchRequest`] when
    /// the request is not in flight.
    pub fn respond(
        &mut self,
        connection: ConnectionId,
        result: wire::Result,
    ) -> Result<(), ServerError> {
        let conn = self
            .conns
            .get_mut(&connection)
            .ok_or(ServerError::UnknownConnection(connection))?;
        if matches!(conn.state, ConnState::Replaced) {
            return Err(ServerError::Replaced(connection));
        }
        if !conn.in_flight.remove(&result.request_id) {
            return Err(ServerError::NoSuchRequest {
                connection,
                request_id: result.request_id,
            });
        }
        self.send_result(connection, result);
        Ok(())
    }

    /// Publishes a frame on `stream`: numbers it, keeps it in the stream's
    /// history and queues it for every subscriber. Returns its sequence
    /// number.
    ///
    /// # Errors
    ///
    /// [`ServerError::EmptyStream`] for an empty name.
    pub fn publish(&mut self, stream: &str, payload: impl Into<Bytes>) -> Result<u64, ServerError> {
        if stream.is_empty() {
            return Err(ServerError::EmptyStream);
        }
        let log = self
            .streams
            .entry(stream.to_owned())
            .or_insert_with(StreamLog::new);
        let sequence = log.next_seq;
        log.next_seq += 1;
        let frame = Frame {
            stream: stream.to_owned(),
            sequence,
            payload: payload.into(),
        };
        if !log.subscribers.is_empty() {
            let message = encode(Body::Frame(frame.clone()));
            for &to in &log.subscribers {
                self.transmit.push_back((to, message.clone()));
            }
        }
        if self.config.history > 0 {
            if log.history.len() >= self.config.history {
                log.history.pop_front();
            }
            log.history.push_back(frame);
        }
        Ok(sequence)
    }

    /// The next message to send, and the connection to send it on.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(ConnectionId, Message)> {
        self.transmit.pop_front()
    }

    /// The next thing the application must look at.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    fn on_register(
        &mut self,
        connection: ConnectionId,
        register: Register,
    ) -> Result<(), ProtoError> {
        let Some(conn) = self.conns.get_mut(&connection) else {
            return Ok(());
        };
        if !matches!(conn.state, ConnState::Connected) {
            return Err(ProtoError::Unexpected {
                message: "Register",
                context: "this connection already registered",
                request_id: None,
            });
        }
        if let Err(reason) = check_registration(&self.config, &register) {
            self.refuse(connection, reason);
            return Ok(());
        }
        conn.state = ConnState::Registering {
            register: register.clone(),
            held: Vec::new(),
        };
        self.events.push_back(ServerEvent::Register {
            connection,
            register,
        });
        Ok(())
    }

    fn on_request(&mut self, connection: ConnectionId, request: Request) -> Result<(), ProtoError> {
        let max_in_flight = self.config.max_in_flight;
        let Some(conn) = self.conns.get_mut(&connection) else {
            return Ok(());
        };
        if conn.has_request(request.id) {
            return Err(ProtoError::DuplicateRequest { id: request.id });
        }
        let busy = conn.in_flight.len() >= max_in_flight;
        match &mut conn.state {
            // Not reached: handle_message ignores a replaced connection.
            ConnState::Replaced => Ok(()),
            ConnState::Connected => {
                let id = request.id;
                self.send_result(
                    connection,
                    wire::Result::error(id, Status::NotRegistered, "register first"),
                );
                Err(ProtoError::Unexpected {
                    message: "Request",
                    context: "before a registration",
                    request_id: Some(id),
                })
            }
            ConnState::Registering { held, .. } => {
                if held.len() >= max_in_flight {
                    let id = request.id;
                    self.send_result(connection, too_busy(id));
                } else {
                    held.push(request);
                }
                Ok(())
            }
            ConnState::Registered { client_id } => {
                if busy {
                    let id = request.id;
                    self.send_result(connection, too_busy(id));
                } else {
                    let client_id = client_id.clone();
                    self.dispatch(connection, &client_id, request);
                }
                Ok(())
            }
        }
    }

    fn dispatch(&mut self, connection: ConnectionId, client_id: &str, request: Request) {
        if let Some(conn) = self.conns.get_mut(&connection) {
            conn.in_flight.insert(request.id);
            self.events.push_back(ServerEvent::Request {
                connection,
                client_id: client_id.to_owned(),
                request,
            });
        }
    }

    fn refuse(&mut self, connection: ConnectionId, reason: String) {
        let ack = RegisterAck {
            accepted: false,
            reason,
            server_epoch: self.epoch,
            streams: Vec::new(),
        };
        self.transmit
            .push_back((connection, encode(Body::RegisterAck(ack))));
    }

    fn send_result(&mut self, connection: ConnectionId, result: wire::Result) {
        self.transmit
            .push_back((connection, encode(Body::Result(result))));
    }

    fn unsubscribe(&mut self, connection: ConnectionId, streams: &[String]) {
        for name in streams {
            if let Some(log) = self.streams.get_mut(name) {
                log.subscribers.remove(&connection);
                if log.is_idle() {
                    self.streams.remove(name);
                }
            }
        }
    }
}

fn unexpected(message: &'static str) -> ProtoError {
    ProtoError::Unexpected {
        message,
        context: "sent to a server",
        request_id: None,
    }
}

fn too_busy(id: u64) -> wire::Result {
    wire::Result::error(id, Status::Unavailable, "too many requests in flight")
}

/// The registration's shape: a reason to refuse it, if any.
fn check_registration(config: &ServerSessionConfig, register: &Register) -> Result<(), String> {
    if register.client_id.is_empty() {
        return Err("client_id must not be empty".into());
    }
    if register.client_id.len() > config.max_name_len {
        return Err(format!(
            "client_id longer than {} bytes",
            config.max_name_len
        ));
    }
    if register.streams.len() > config.max_streams_per_client {
        return Err(format!(
            "more than {} streams",
            config.max_streams_per_client
        ));
    }
    let mut seen = HashSet::new();
    for sub in &register.streams {
        if sub.stream.is_empty() {
            return Err("a stream name must not be empty".into());
        }
        if sub.stream.len() > config.max_name_len {
            return Err(format!(
                "a stream name longer than {} bytes",
                config.max_name_len
            ));
        }
        if !seen.insert(sub.stream.as_str()) {
            return Err(format!("stream {:?} listed twice", sub.stream));
        }
    }
    Ok(())
}
