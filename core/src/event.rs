//! What a connection reports through [`Connection::poll_event`](crate::Connection::poll_event).

use crate::close::CloseCode;
use crate::error::Error;
use crate::handshake::{Request, Response};
use crate::message::{Chunk, Message};
use bytes::Bytes;

/// Something that happened on a connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Server side: a valid upgrade request arrived. Answer it with
    /// [`Connection::accept`](crate::Connection::accept) or
    /// [`Connection::reject`](crate::Connection::reject); the handshake timeout
    /// keeps running meanwhile.
    Request(Box<Request>),
    /// The opening handshake finished: messages may flow.
    Open(Open),
    /// A whole data message ([`MessageMode::Reassemble`](crate::MessageMode)).
    Message(Message),
    /// Part of a data message ([`MessageMode::Stream`](crate::MessageMode)).
    Chunk(Chunk),
    /// The peer sent a Ping; the Pong was already queued (§5.5.2).
    Ping(Bytes),
    /// The peer sent a Pong, solicited or not (§5.5.3).
    Pong(Bytes),
    /// The peer started the closing handshake; the echo was already queued
    /// (§5.5.1). `Closed` follows once the handshake ends.
    CloseReceived {
        /// The peer's code (1005 when its Close frame had none).
        code: CloseCode,
        /// The peer's reason.
        reason: String,
    },
    /// The connection is over. Always the last event, exactly once.
    Closed(CloseInfo),
}

/// The handshake's outcome, as seen by either side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The negotiated subprotocol, if any.
    pub subprotocol: Option<String>,
    /// Client side: the server's 101 response. `None` on the server.
    pub response: Option<Box<Response>>,
}

/// Which side started the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// This side: the application called `close`, or this side failed the
    /// connection (protocol error, timeout).
    Local,
    /// The peer: it sent a Close frame, or its transport went away.
    Remote,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CloseInfo {
    /// Who started it.
    pub initiator: Initiator,
    /// The close code: the peer's for a remote close, ours for a local one;
    /// 1006 when the transport ended without a Close frame, 1005 when a Close
    /// frame had no code, 1015 for a TLS failure.
    pub code: CloseCode,
    /// The reason that went with the code.
    pub reason: String,
    /// Whether both Close frames were exchanged (§7.1.4).
    pub clean: bool,
    /// Why the connection failed, if it did.
    pub error: Option<Error>,
}

impl CloseInfo {
    /// How a connection ends that its owner dropped before the core
    /// reported `Closed` (its task aborted, a runtime shut down): 1006, by
    /// this side, the transport gone.
    #[must_use]
    pub fn abandoned() -> CloseInfo {
        CloseInfo {
            initiator: Initiator::Local,
            code: CloseCode::ABNORMAL,
            reason: String::new(),
            clean: false,
            error: Some(Error::TransportClosed),
        }
    }
}
