//! wharf-core (being assembled).

mod close;
mod config;
mod error;
mod event;
mod frame;
mod handshake;
mod message;
mod rng;
mod tls;
mod utf8;

pub use bytes::Bytes;
pub use close::{CloseCode, MAX_CLOSE_REASON};
pub use config::{Config, MessageMode};
pub use error::{ConfigError, Error, HandshakeError, ProtocolError, SendError, TimeoutKind, TlsError};
pub use event::{CloseInfo, Event, Initiator, Open};
pub use handshake::{Accept, ClientRequest, Reject, Request, Response};
pub use message::{Chunk, Message, MessageKind, Text};
pub use rng::{OsSeededRng, Random};
pub use tls::{ClientTls, ServerTls};
pub use rustls;

/// Placeholder until the connection lands.
#[derive(Debug)]
pub struct Connection;
