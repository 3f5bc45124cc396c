//! Typed errors of the adapter: what `connect`, `accept` and a WebSocket's
//! halves report, kept apart from [`SendError`], which hands a message back.

use wharf_core::{CloseInfo, ConfigError, Message};

/// Why a connection could not be made, or why it ended with a failure.
///
/// Peer and network faults arrive as [`Error::Connection`] (carrying the
/// core's sticky [`wharf_core::Error`]) or [`Error::Io`]; the caller's own
/// mistakes as [`Error::Config`] or [`Error::Unsupported`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller asked for something invalid: a bad URL, TLS settings, a
    /// close code that may not be sent, an `Accept` with a bad header …
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The TCP connection could not be made (DNS, refused, unreachable).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The connection failed: the opening handshake (including the server's
    /// refusal), TLS, a protocol violation, a timeout or the transport.
    #[error("connection failed: {0}")]
    Connection(#[from] wharf_core::Error),
    /// The connection ended before its opening handshake finished, without
    /// a failure of its own (it was abandoned, e.g. by a server shutdown).
    #[error("the connection closed before it opened (code {})", .0.code)]
    ClosedBeforeOpen(Box<CloseInfo>),
    /// The connection is closed or closing: nothing more can be sent.
    #[error("the connection is closed")]
    Closed,
    /// The server is shutting down and accepts no more connections.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A message could not be queued (it is inside, handed back), so that
    /// `?` works on sends in functions returning this error.
    #[error(transparent)]
    Send(#[from] SendError),
    /// A setting this adapter does not support (for example
    /// [`MessageMode::Stream`](wharf_core::MessageMode::Stream)).
    #[error("not supported by wharf-tokio: {0}")]
    Unsupported(&'static str),
}

/// A message could not be queued; it is handed back, never dropped.
///
/// ```
/// use wharf_tokio::{Message, SendError};
///
/// let err = SendError::Full(Message::text("hello"));
/// assert_eq!(err.into_message(), Message::text("hello"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The bounded outgoing buffer is full: wait (`send`, `reserve`) or try
    /// again later.
    #[error("the outgoing buffer is full")]
    Full(Message),
    /// The connection (or the reconnecting client) is closed or closing.
    #[error("the connection is closed")]
    Closed(Message),
}

impl SendError {
    /// Takes the message back.
    #[must_use]
    pub fn into_message(self) -> Message {
        match self {
            SendError::Full(m) | SendError::Closed(m) => m,
        }
    }

    /// The message that could not be queued.
    #[must_use]
    pub fn message(&self) -> &Message {
        match self {
            SendError::Full(m) | SendError::Closed(m) => m,
        }
    }
}

/// The error a failed connection reports, from its final `CloseInfo`.
pub(crate) fn from_close(info: &CloseInfo) -> Error {
    match &info.error {
        Some(e) => Error::Connection(e.clone()),
        None => Error::ClosedBeforeOpen(Box::new(info.clone())),
    }
}
