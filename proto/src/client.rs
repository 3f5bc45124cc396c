//! The client side of the session, sans-IO: registration, request ids and
//! deadlines, results matched to requests, what happens to requests across a
//! reconnect, and per-stream sequence tracking.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Range;
use std::time::{Duration, Instant};

use wharf_core::{Bytes, Message};

use crate::codec::{decode, encode};
use crate::error::{ProtoError, RequestError, SubmitError};
use crate::wire::{self, envelope::Body, Frame, Register, RegisterAck, Request, StreamPosition};

/// What happens to requests that had been sent when the connection was lost
/// (their fate is unknown: the server may or may not have run them).
/// Requests not yet sent are always kept and sent after the next
/// registration. Either way, no request is ever dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnReconnect {
    /// Send them again, with the same ids, after the next registration
    /// (at-least-once: the server may run such a request twice). Their
    /// deadlines keep running. The default.
    #[default]
    Resend,
    /// Fail them at once with [`RequestError::ConnectionLost`].
    Fail,
}

/// Settings for a [`ClientSession`].
///
/// ```
/// use std::time::Duration;
/// use wharf_proto::{ClientSessionConfig, OnReconnect};
///
/// let config = ClientSessionConfig::new("sensor-7")
///     .with_auth_token("secret")
///     .with_stream("prices")
///     .with_request_timeout(Duration::from_secs(5))
///     .with_on_reconnect(OnReconnect::Fail);
/// assert_eq!(config.streams, ["prices"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientSessionConfig {
    /// The client's stable identity, sent in every registration.
    pub client_id: String,
    /// Credentials for the server to check.
    pub auth_token: String,
    /// The streams to subscribe to (duplicates are ignored).
    pub streams: Vec<String>,
    /// How long a request waits for its result by default. Default 10 s.
    pub request_timeout: Duration,
    /// Most requests waiting for a result (sent or not) at once; beyond it
    /// [`ClientSession::request`] hands the request back. Default 1024.
    pub max_pending: usize,
    /// What happens to sent requests when the connection is lost.
    pub on_reconnect: OnReconnect,
}

impl ClientSessionConfig {
    /// Settings for client `client_id`, with no token, no streams and the
    /// defaults.
    #[must_use]
    pub fn new(client_id: impl Into<String>) -> Self {
        ClientSessionConfig {
            client_id: client_id.into(),
            auth_token: String::new(),
            streams: Vec::new(),
            request_timeout: Duration::from_secs(10),
            max_pending: 1024,
            on_reconnect: OnReconnect::default(),
        }
    }

    /// Sets the credentials.
    #[must_use]
    pub fn with_auth_token(mut self, token: impl Into<String>) -> Self {
        self.auth_token = token.into();
        self
    }

    /// Adds a stream to subscribe to.
    #[must_use]
    pub fn with_stream(mut self, stream: impl Into<String>) -> Self {
        self.streams.push(stream.into());
        self
    }

    /// Sets the default request timeout.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the pending-request table's capacity (at least 1).
    #[must_use]
    pub fn with_max_pending(mut self, max: usize) -> Self {
        self.max_pending = max.max(1);
        self
    }

    /// Sets what happens to sent requests when the connection is lost.
    #[must_use]
    pub fn with_on_reconnect(mut self, policy: OnReconnect) -> Self {
        self.on_reconnect = policy;
        self
    }
}

/// What a [`ClientSession`] reports through [`ClientSession::poll_event`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The server accepted the registration. Requests flow from now on.
    Registered {
        /// The server's run (sequence numbers restart when it changes).
        server_epoch: u64,
        /// Where each subscribed stream resumes.
        streams: Vec<StreamPosition>,
    },
    /// The server refused the registration; every pending request was
    /// failed with [`RequestError::RegistrationRefused`]. The session tries
    /// again on the next connection.
    RegistrationRefused {
        /// The server's reason.
        reason: String,
    },
    /// The result of a pending request (any status). The request is done.
    Result(wire::Result),
    /// A pending request ended without a result. The request is done.
    Failed {
        /// The request's id.
        request_id: u64,
        /// The request's kind.
        kind: String,
        /// Why.
        error: RequestError,
    },
    /// A frame on a subscribed stream, in sequence order.
    Frame(Frame),
    /// Frames were lost on a stream: those numbered `missing` will never
    /// arrive. Reported before the frame that follows the hole.
    Gap {
        /// The stream.
        stream: String,
        /// The sequence numbers lost.
        missing: Range<u64>,
    },
    /// The server's numbering of a stream started over (the server
    /// restarted: a new epoch). Frames of the new epoch follow from 1; a
    /// [`Gap`](Self::Gap) follows if the server no longer holds its first
    /// ones.
    StreamReset {
        /// The stream.
        stream: String,
        /// The last sequence number accounted for in the old numbering.
        last_sequence: u64,
    },
    /// A frame whose sequence number was already delivered or reported lost;
    /// it was dropped.
    Duplicate {
        /// The stream.
        stream: String,
        /// Its sequence number.
        sequence: u64,
    },
    /// A result for no pending request (it timed out, was cancelled, or is
    /// the second answer to a resent request); dropped.
    UnmatchedResult(wire::Result),
}

/// Where the session is with its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// No connection.
    Disconnected,
    /// Connected; the registration goes out first (`sent` once it did) and
    /// requests wait for its ack.
    Registering { sent: bool },
    /// The ack arrived: requests flow.
    Registered,
    /// The server refused; nothing goes out until the next connection.
    Refused,
}

/// A request waiting for its result.
#[derive(Debug)]
struct Pending {
    kind: String,
    payload: Bytes,
    deadline: Instant,
    /// Sent on the current connection.
    sent: bool,
}

/// One subscribed stream.
#[derive(Debug, Default)]
struct StreamState {
    /// The next sequence number expected: everything before it was
    /// delivered or reported lost. `None` until an ack lists the stream.
    expected: Option<u64>,
}

/// The client side of a wharf-proto session, with no I/O inside: it is told
/// when a connection opens and closes and what arrives, and hands out the
/// messages to send.
///
/// # Driving it
///
/// Call [`connected`](Self::connected) when a connection reaches Open,
/// [`handle_message`](Self::handle_message) for every message that arrives,
/// [`disconnected`](Self::disconnected) when it is lost, and
/// [`handle_timeout`](Self::handle_timeout) once the deadline from
/// [`poll_timeout`](Self::poll_timeout) passes. **After every call** drain
/// [`poll_transmit`](Self::poll_transmit) into the connection and
/// [`poll_event`](Self::poll_event), and read `poll_timeout` again.
///
/// The session never reads a clock: every `now` comes from the caller.
///
/// # Guarantees
///
/// - On every connection the registration goes out first; requests wait for
///   its ack ([`ClientEvent::Registered`]).
/// - Every request ends exactly once, with [`ClientEvent::Result`] or
///   [`ClientEvent::Failed`] (timeout, connection lost under
///   [`OnReconnect::Fail`], registration refused), unless the caller
///   [`cancel`](Self::cancel)s it.
/// - Frames come out in sequence order per stream; every hole is reported
///   ([`ClientEvent::Gap`]), duplicates are dropped.
/// - Memory is bounded: at most `max_pending` requests are held;
///   [`request`](Self::request) hands back what does not fit.
///
/// ```
/// use std::time::{Duration, Instant};
/// use wharf_proto::{
///     decode, encode, Body, ClientEvent, ClientSession, ClientSessionConfig, RegisterAck,
///     RequestResult,
/// };
///
/// let mut now = Instant::now();
/// let mut client = ClientSession::new(ClientSessionConfig::new("c1"));
/// let id = client.request(now, "ping", "hi")?; // waits for the registration
///
/// client.connected();
/// let register = client.poll_transmit().expect("the registration goes first");
/// assert!(matches!(decode(&register)?, Body::Register(_)));
/// assert!(client.poll_transmit().is_none()); // requests wait for the ack
///
/// let ack = RegisterAck { accepted: true, server_epoch: 1, ..Default::default() };
/// client.handle_message(now, &encode(Body::RegisterAck(ack)))?;
/// let request = client.poll_transmit().expect("the request follows");
/// assert!(matches!(decode(&request)?, Body::Request(r) if r.id == id));
///
/// now += Duration::from_millis(5);
/// client.handle_message(now, &encode(Body::Result(RequestResult::ok(id, "pong"))))?;
/// assert!(matches!(client.poll_event(), Some(ClientEvent::Registered { .. })));
/// assert!(matches!(client.poll_event(), Some(ClientEvent::Result(r)) if r.request_id == id));
/// assert_eq!(client.poll_timeout(), None); // nothing pending
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ClientSession {
    config: ClientSessionConfig,
    link: Link,
    /// The epoch of the last accepted registration (0: none yet).
    server_epoch: u64,
    streams: BTreeMap<String, StreamState>,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// Ids to send once registered, in order (each at most once).
    send_queue: VecDeque<u64>,
    events: VecDeque<ClientEvent>,
}

impl ClientSession {
    /// A disconnected session.
    #[must_use]
    pub fn new(config: ClientSessionConfig) -> ClientSession {
        let streams = config
            .streams
            .iter()
            .map(|s| (s.clone(), StreamState::default()))
            .collect();
        ClientSession {
            config,
            link: Link::Disconnected,
            server_epoch: 0,
            streams,
            next_id: 1,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            send_queue: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &ClientSessionConfig {
        &self.config
    }

    /// Whether the current connection's registration was accepted.
    #[must_use]
    pub fn is_registered(&self) -> bool {
        self.link == Link::Registered
    }

    /// Whether a connection is open (registered or not): between
    /// [`connected`](Self::connected) and [`disconnected`](Self::disconnected).
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.link != Link::Disconnected
    }

    /// The epoch of the last accepted registration (0 before the first).
    #[must_use]
    pub fn server_epoch(&self) -> u64 {
        self.server_epoch
    }

    /// How many requests wait for a result (sent or not).
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Submits a request with the default timeout; see
    /// [`request_with_timeout`](Self::request_with_timeout).
    ///
    /// # Errors
    ///
    /// As `request_with_timeout`.
    pub fn request(
        &mut self,
        now: Instant,
        kind: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Result<u64, SubmitError> {
        let timeout = self.config.request_timeout;
        self.request_with_timeout(now, kind, payload, timeout)
    }

    /// Submits a request that fails with [`RequestError::Timeout`] unless its
    /// result arrives within `timeout` of `now`. Returns its id. It is sent
    /// at once if registered, else after the next registration.
    ///
    /// # Errors
    ///
    /// Hands the request back: [`SubmitError::Full`] when `max_pending`
    /// requests are pending, [`SubmitError::EmptyKind`].
    pub fn request_with_timeout(
        &mut self,
        now: Instant,
        kind: impl Into<String>,
        payload: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<u64, SubmitError> {
        let kind = kind.into();
        let payload = payload.into();
        if kind.is_empty() {
            return Err(SubmitError::EmptyKind { payload });
        }
        if self.pending.len() >= self.config.max_pending {
            return Err(SubmitError::Full {
                capacity: self.config.max_pending,
                kind,
                payload,
            });
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let deadline = now.checked_add(timeout).unwrap_or(now);
        self.pending.insert(
            id,
            Pending {
                kind,
                payload,
                deadline,
                sent: false,
            },
        );
        self.deadlines.insert((deadline, id));
        self.send_queue.push_back(id);
        Ok(id)
    }

    /// Forgets a pending request (no event follows; a result that still
    /// arrives is reported as [`ClientEvent::UnmatchedResult`]). Returns
    /// whether it was pending.
    pub fn cancel(&mut self, request_id: u64) -> bool {
        self.remove(request_id).is_some()
    }

    /// A connection reached Open: the registration is queued, ahead of
    /// everything else. (Also ends the previous connection, if
    /// [`disconnected`](Self::disconnected) was not called.)
    pub fn connected(&mut self) {
        if self.link != Link::Disconnected {
            self.disconnected();
        }
        self.link = Link::Registering { sent: false };
    }

    /// The connection was lost. Requests that had been sent are resent after
    /// the next registration or failed, by
    /// [`on_reconnect`](ClientSessionConfig::on_reconnect); requests not yet
    /// sent wait. Returns how many sent requests will be sent again.
    pub fn disconnected(&mut self) -> usize {
        self.link = Link::Disconnected;
        let sent: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sent)
            .map(|(&id, _)| id)
            .collect();
        let resent = match self.config.on_reconnect {
            OnReconnect::Resend => {
                for id in &sent {
                    if let Some(p) = self.pending.get_mut(id) {
                        p.sent = false;
                    }
                }
                sent.len()
            }
            OnReconnect::Fail => {
                for id in sent {
                    self.fail(id, RequestError::ConnectionLost);
                }
                0
            }
        };
        // Everything unsent goes out after the next registration, in id
        // (submission) order.
        self.send_queue = self
            .pending
            .iter()
            .filter(|(_, p)| !p.sent)
            .map(|(&id, _)| id)
            .collect();
        resent
    }

    /// Takes one message that arrived. A message that cannot be used is
    /// skipped and reported as the error; if it carried the id of a pending
    /// request, that request fails with [`RequestError::MalformedResult`].
    /// The connection stays up either way.
    ///
    /// # Errors
    ///
    /// A [`ProtoError`] for a malformed, unknown or unexpected message.
    pub fn handle_message(&mut self, now: Instant, message: &Message) -> Result<(), ProtoError> {
        let _ = now; // results are matched whatever their timing
        let body = match decode(message) {
            Ok(body) => body,
            Err(error) => {
                if let Some(id) = error.request_id() {
                    if self.pending.contains_key(&id) {
                        self.fail(id, RequestError::MalformedResult(error.clone()));
                    }
                }
                return Err(error);
            }
        };
        match body {
            Body::RegisterAck(ack) => self.on_ack(ack),
            Body::Result(result) => {
                if self.remove(result.request_id).is_some() {
                    self.events.push_back(ClientEvent::Result(result));
                } else {
                    self.events.push_back(ClientEvent::UnmatchedResult(result));
                }
                Ok(())
            }
            Body::Frame(frame) => self.on_frame(frame),
            Body::Register(_) => Err(ProtoError::Unexpected {
                message: "Register",
                context: "sent to a client",
                request_id: None,
            }),
            Body::Request(r) => Err(ProtoError::Unexpected {
                message: "Request",
                context: "sent to a client",
                request_id: Some(r.id),
            }),
        }
    }

    /// Fails every request whose deadline is at or before `now` with
    /// [`RequestError::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.fail(id, RequestError::Timeout);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next: the
    /// earliest request deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(deadline, _)| deadline)
    }

    /// The next message to send on the connection: the registration first,
    /// then (once registered) requests in submission order.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Message> {
        match self.link {
            Link::Disconnected | Link::Refused | Link::Registering { sent: true } => None,
            Link::Registering { sent: false } => {
                self.link = Link::Registering { sent: true };
                Some(encode(Body::Register(self.registration())))
            }
            Link::Registered => {
                while let Some(id) = self.send_queue.pop_front() {
                    let Some(p) = self.pending.get_mut(&id) else {
                        continue;
                    };
                    if p.sent {
                        continue;
                    }
                    p.sent = true;
                    return Some(encode(Body::Request(Request {
                        id,
                        kind: p.kind.clone(),
                        payload: p.payload.clone(),
                    })));
                }
                None
            }
        }
    }

    /// The next thing that happened.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// The registration for the current state: which streams resume where.
    fn registration(&self) -> Register {
        Register {
            client_id: self.config.client_id.clone(),
            auth_token: self.config.auth_token.clone(),
            streams: self
                .streams
                .iter()
                .map(|(name, st)| wire::Subscription {
                    stream: name.clone(),
                    resume: st.expected.is_some(),
                    last_sequence: st.expected.map_or(0, |e| e.saturating_sub(1)),
                })
                .collect(),
            server_epoch: self.server_epoch,
        }
    }

    fn on_ack(&mut self, ack: RegisterAck) -> Result<(), ProtoError> {
        if self.link != (Link::Registering { sent: true }) {
            return Err(ProtoError::Unexpected {
                message: "RegisterAck",
                context: "no registration is awaiting an answer",
                request_id: None,
            });
        }
        if !ack.accepted {
            self.link = Link::Refused;
            let ids: Vec<u64> = self.pending.keys().copied().collect();
            for id in ids {
                self.fail(id, RequestError::RegistrationRefused(ack.reason.clone()));
            }
            self.events
                .push_back(ClientEvent::RegistrationRefused { reason: ack.reason });
            return Ok(());
        }
        let epoch_changed = self.server_epoch != 0 && self.server_epoch != ack.server_epoch;
        for pos in &ack.streams {
            let Some(st) = self.streams.get_mut(&pos.stream) else {
                continue; // not asked for: ignored (its frames will be refused)
            };
            let next = pos.next_sequence.max(1);
            let from = match st.expected {
                None => next,
                Some(expected) if epoch_changed => {
                    self.events.push_back(ClientEvent::StreamReset {
                        stream: pos.stream.clone(),
                        last_sequence: expected.saturating_sub(1),
                    });
                    1
                }
                Some(expected) => expected,
            };
            if next > from {
                self.events.push_back(ClientEvent::Gap {
                    stream: pos.stream.clone(),
                    missing: from..next,
                });
            } else if next < from {
                // The same epoch going backwards: the server lost its
                // numbering without saying so. Follow it, and say so.
                self.events.push_back(ClientEvent::StreamReset {
                    stream: pos.stream.clone(),
                    last_sequence: from - 1,
                });
            }
            st.expected = Some(next);
        }
        self.server_epoch = ack.server_epoch;
        self.link = Link::Registered;
        self.events.push_back(ClientEvent::Registered {
            server_epoch: ack.server_epoch,
            streams: ack.streams,
        });
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), ProtoError> {
        if self.link != Link::Registered {
            return Err(ProtoError::Unexpected {
                message: "Frame",
                context: "before the registration was accepted",
                request_id: None,
            });
        }
        let Some(expected) = self.streams.get(&frame.stream).and_then(|s| s.expected) else {
            return Err(ProtoError::UnknownStream {
                stream: frame.stream,
            });
        };
        let seq = frame.sequence;
        if seq < expected {
            self.events.push_back(ClientEvent::Duplicate {
                stream: frame.stream,
                sequence: seq,
            });
            return Ok(());
        }
        if seq > expected {
            self.events.push_back(ClientEvent::Gap {
                stream: frame.stream.clone(),
                missing: expected..seq,
            });
        }
        if let Some(st) = self.streams.get_mut(&frame.stream) {
            st.expected = Some(seq.saturating_add(1));
        }
        self.events.push_back(ClientEvent::Frame(frame));
        Ok(())
    }

    fn remove(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.deadlines.remove(&(p.deadline, id));
        if !p.sent {
            self.send_queue.retain(|&queued| queued != id);
        }
        Some(p)
    }

    fn fail(&mut self, id: u64, error: RequestError) {
        if let Some(p) = self.remove(id) {
            self.events.push_back(ClientEvent::Failed {
                request_id: id,
                kind: p.kind,
                error,
            });
        }
    }
}
