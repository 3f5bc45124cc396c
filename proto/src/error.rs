//! Typed errors: what a peer got wrong, why a request failed, and what the
//! caller asked for that could not be done.

use wharf_core::Bytes;

use crate::wire::PROTOCOL_VERSION;

/// A message from the peer that this side could not use. The connection
/// stays up: the message is skipped, and when it carried a request id the
/// request is answered (server) or failed (client) explicitly, once: on the
/// server a repeat of an id in flight is a [`DuplicateRequest`](Self::DuplicateRequest)
/// and gets no answer of its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// A text WebSocket message; the protocol uses binary messages only.
    #[error("a text message where a binary protobuf envelope was expected")]
    TextMessage,
    /// The bytes are not a protobuf `Envelope`.
    #[error("not a protobuf envelope: {0}")]
    Malformed(prost::DecodeError),
    /// The envelope's protocol version is not [`PROTOCOL_VERSION`].
    #[error("protocol version {version} is not supported (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version the peer sent.
        version: u32,
        /// The id of the request it carried, if any.
        request_id: Option<u64>,
    },
    /// The envelope has no body: empty, or a kind this side does not know
    /// (protobuf skips unknown fields, so a newer peer's new kind of message
    /// arrives as an empty envelope).
    #[error("an envelope without a known body")]
    MissingBody,
    /// A field breaks the schema's rules (an id of 0, an empty name, an
    /// unknown status …).
    #[error("invalid {message}.{field}: {reason}")]
    InvalidField {
        /// The message type, e.g. `"Request"`.
        message: &'static str,
        /// The field, e.g. `"kind"`.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
        /// The id of the request or result it was in, when that id is valid.
        request_id: Option<u64>,
    },
    /// A well-formed message that this side does not take, or not now (a
    /// `Request` sent to a client, a second `RegisterAck` …).
    #[error("unexpected {message} ({context})")]
    Unexpected {
        /// The message type, e.g. `"Request"`.
        message: &'static str,
        /// Why it is not taken.
        context: &'static str,
        /// The id of the request it carried, if any.
        request_id: Option<u64>,
    },
    /// A frame on a stream this client did not subscribe to.
    #[error("a frame on stream {stream:?}, which this client did not subscribe to")]
    UnknownStream {
        /// The stream's name.
        stream: String,
    },
    /// A request whose id is already in flight on this connection: the
    /// first one is still answered; this one is dropped and gets no
    /// `Result`. This holds whether the repeat is well-formed or not: a
    /// malformed message carrying the id of a request in flight is reported
    /// as this rather than as what is wrong with it, so that no second
    /// `Result` goes out for that id.
    #[error("request id {id} is already in flight on this connection")]
    DuplicateRequest {
        /// The repeated id.
        id: u64,
    },
}

impl ProtoError {
    /// The id of the request (or result) the bad message carried, when it
    /// could be read.
    #[must_use]
    pub fn request_id(&self) -> Option<u64> {
        match self {
            ProtoError::UnsupportedVersion { request_id, .. }
            | ProtoError::InvalidField { request_id, .. }
            | ProtoError::Unexpected { request_id, .. } => *request_id,
            ProtoError::DuplicateRequest { id } => Some(*id),
            ProtoError::TextMessage
            | ProtoError::Malformed(_)
            | ProtoError::MissingBody
            | ProtoError::UnknownStream { .. } => None,
        }
    }
}

/// Why a request ended without a matching result. Every request ends either
/// with its result or with one of these, exactly once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No result arrived before the request's deadline.
    #[error("no result before the deadline")]
    Timeout,
    /// The request had been sent when the connection was lost, and the
    /// client is configured to fail such requests
    /// ([`OnReconnect::Fail`](crate::OnReconnect::Fail)). The server may or
    /// may not have executed it.
    #[error("the connection was lost after the request was sent")]
    ConnectionLost,
    /// The server refused the client's registration.
    #[error("the server refused the registration: {0}")]
    RegistrationRefused(String),
    /// The server's result for this request was malformed.
    #[error("the result was malformed: {0}")]
    MalformedResult(ProtoError),
    /// The request could not be submitted (async client only); the error
    /// hands it back.
    #[error(transparent)]
    NotSubmitted(SubmitError),
    /// The client shut down before the result arrived.
    #[error("the client shut down")]
    Closed,
}

/// A request that could not be submitted, handed back whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The pending-request table is full
    /// ([`ClientSessionConfig::max_pending`](crate::ClientSessionConfig)).
    #[error("the pending-request table is full ({capacity} requests)")]
    Full {
        /// The table's capacity.
        capacity: usize,
        /// The request's kind, handed back.
        kind: String,
        /// The request's payload, handed back.
        payload: Bytes,
    },
    /// The request's kind is empty.
    #[error("a request needs a non-empty kind")]
    EmptyKind {
        /// The request's payload, handed back.
        payload: Bytes,
    },
    /// The client has shut down (async client only).
    #[error("the client has shut down")]
    Closed {
        /// The request's kind, handed back.
        kind: String,
        /// The request's payload, handed back.
        payload: Bytes,
    },
}

/// A misuse of the server session by the application.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No connection with this id (never opened, or already gone).
    #[error("no connection {0:?}")]
    UnknownConnection(crate::ConnectionId),
    /// The connection was replaced by a newer connection of its client
    /// ([`ServerEvent::Replaced`](crate::ServerEvent::Replaced)): nothing
    /// more is sent on it, so a result for one of its requests is dropped
    /// (the client resends or fails the request on its new connection).
    #[error("connection {0:?} was replaced by a newer connection of its client")]
    Replaced(crate::ConnectionId),
    /// The connection has no registration awaiting a decision.
    #[error("connection {0:?} has no registration awaiting a decision")]
    NoPendingRegistration(crate::ConnectionId),
    /// The connection has no request with this id in flight (already
    /// answered, or the connection went away).
    #[error("no request {request_id} in flight on connection {connection:?}")]
    NoSuchRequest {
        /// The connection.
        connection: crate::ConnectionId,
        /// The request id.
        request_id: u64,
    },
    /// `max_connections` connections are open already.
    #[error("too many connections ({0})")]
    TooManyConnections(usize),
    /// A stream name must not be empty.
    #[error("a stream name must not be empty")]
    EmptyStream,
}
