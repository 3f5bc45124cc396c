//! What a [`Client`](super::Client) reports.

use std::fmt;
use std::io;
use std::time::Instant;

use crate::error::{Error, HandshakeError, TlsError};
use crate::event::{CloseInfo, Open};
use crate::message::Message;

/// What a [`Client`](super::Client) reports, in order, through
/// [`Client::poll_event`](super::Client::poll_event).
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A connection reached Open. The registration hook's messages were
    /// queued on it ahead of everything waiting.
    Connected(Open),
    /// A message arrived.
    Message(Message),
    /// A connection ended or an attempt failed; `retry_at` says when the next
    /// attempt starts.
    Disconnected(Disconnected),
    /// The client will make no more attempts (shut down, out of attempts,
    /// or rejected) and holds no socket; messages still queued come back
    /// with [`Client::take_queued`](super::Client::take_queued). Always the
    /// last event.
    Stopped,
}

/// A lost connection or a failed attempt.
#[derive(Debug)]
#[non_exhaustive]
pub struct Disconnected {
    /// What happened.
    pub reason: Disconnect,
    /// When the next attempt starts; `None` when there is none.
    pub retry_at: Option<Instant>,
    /// Messages the connection had not sent whole, put back at the front of
    /// the queue, in order, to go out on the next connection.
    pub requeued: usize,
}

/// Why a [`Disconnected`] was reported.
#[derive(Debug)]
#[non_exhaustive]
pub enum Disconnect {
    /// The socket could not be opened: name resolution or the TCP connect
    /// failed, or it did not complete before the handshake timeout
    /// (`io::ErrorKind::TimedOut`).
    Connect(io::Error),
    /// The connection failed before Open: TLS (a certificate this side
    /// rejected, or the peer's alert), the HTTP upgrade (a status other
    /// than 101, a bad answer), or the handshake timeout. The typed error.
    Handshake(Error),
    /// An open connection ended: who closed, the code, the reason and the
    /// error, if any.
    Lost(CloseInfo),
}

impl Disconnect {
    /// A failure that trying again does not fix by itself: the server's
    /// certificate failed verification here, the server refused this
    /// side's certificate, or it answered the upgrade with a 4xx status
    /// other than 408 (timeout) and 429 (too many requests). Such failures
    /// stop the client unless
    /// [`ReconnectConfig::retry_rejected`](crate::ReconnectConfig::retry_rejected).
    #[must_use]
    pub fn is_rejection(&self) -> bool {
        match self {
            Disconnect::Handshake(Error::Tls(e)) => e.is_certificate_failure(),
            Disconnect::Handshake(Error::Handshake(HandshakeError::Rejected {
                status, ..
            })) => (400..500).contains(status) && *status != 408 && *status != 429,
            _ => false,
        }
    }
}

impl TlsError {
    /// A certificate failed verification: the peer's, here, or this side's,
    /// at the peer (its alert says so).
    #[must_use]
    pub fn is_certificate_failure(&self) -> bool {
        match self {
            TlsError::UnknownIssuer
            | TlsError::Expired
            | TlsError::NotValidYet
            | TlsError::WrongName
            | TlsError::Revoked
            | TlsError::BadCertificate(_)
            | TlsError::ClientCertificateRequired => true,
            TlsError::AlertReceived(alert) => {
                alert.contains("Certificate") || alert == "UnknownCA" || alert == "AccessDenied"
            }
            _ => false,
        }
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::Connect(e) => write!(f, "could not connect: {e}"),
            Disconnect::Handshake(e) => write!(f, "handshake failed: {e}"),
            Disconnect::Lost(info) => match &info.error {
                Some(e) => write!(f, "connection lost ({}): {e}", info.code),
                None if info.reason.is_empty() => write!(f, "connection closed ({})", info.code),
                None => write!(f, "connection closed ({}): {}", info.code, info.reason),
            },
        }
    }
}
