//! # wharf-core
//!
//! A WebSocket (RFC 6455) protocol core that does no I/O. One state machine,
//! [`Connection`], runs the TLS session (rustls), the HTTP Upgrade handshake
//! and the framing; whoever owns the socket feeds it bytes and the time.
//!
//! ```text
//! socket bytes ──handle_input(now, &[u8])──▶ ┌──────────── Connection ────────────┐
//!                                            │ rustls Connection (or plaintext)   │
//! timer fired ──handle_timeout(now)────────▶ │ handshake ▸ frames ▸ messages      │
//! app ──send(msg) / ping / close(code)─────▶ │ close handshake, keepalive, limits │
//!                                            └────────────────────────────────────┘
//!    poll_transmit(&mut buf) ◀── bytes for the socket
//!    poll_event()            ◀── Open / Message / Ping / Pong / Closed …
//!    poll_timeout()          ◀── the next Instant at which handle_timeout is due
//! ```
//!
//! Around it, two more sans-IO values an adapter drives the same way:
//! [`Client`], a client that stays connected (reconnect policy, a bounded
//! queue, the registration on every Open, what goes back to the queue), and
//! [`ConnectionSet`], a server's connections in one loop (whose events come
//! next, the earliest deadline, the connection limit, shutdown). A
//! `Connection` and a `Client` meet their socket through the same
//! [`Endpoint`] trait: bytes and time.
//!
//! ## The run loop
//!
//! After **every** call that feeds or drives a connection, drain
//! [`Connection::poll_transmit`] into the socket, drain
//! [`Connection::poll_event`], and re-read [`Connection::poll_timeout`]. Here a
//! client and a server talk over an in-memory "socket" (two byte vectors); a
//! real program does the same with a `TcpStream` and its event loop.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use wharf_core::{Accept, ClientRequest, CloseCode, Config, Connection, Event, Message};
//!
//! let config = Arc::new(Config::default());
//! let mut now = Instant::now(); // the caller owns the clock
//! let request = ClientRequest::new("ws://example.com/chat")?;
//! let mut client = Connection::client(config.clone(), &request, None, now)?;
//! let mut server = Connection::server(config, None, now)?;
//!
//! let mut wire = Vec::new();
//! let mut received = Vec::new();
//! for _round in 0..10 {
//!     // client → socket → server
//!     while client.poll_transmit(&mut wire) > 0 {}
//!     server.handle_input(now, &wire);
//!     wire.clear();
//!     while let Some(event) = server.poll_event() {
//!         match event {
//!             // The application decides on every upgrade request.
//!             Event::Request(_req) => server.accept(Accept::default())?,
//!             // Echo what arrives.
//!             Event::Message(msg) => server.send(msg).expect("queue has room"),
//!             _ => {}
//!         }
//!     }
//!     // server → socket → client
//!     while server.poll_transmit(&mut wire) > 0 {}
//!     client.handle_input(now, &wire);
//!     wire.clear();
//!     while let Some(event) = client.poll_event() {
//!         match event {
//!             Event::Open(_) => client.send(Message::text("hello")).expect("open"),
//!             Event::Message(msg) => {
//!                 received.push(msg);
//!                 client.close(CloseCode::NORMAL, "done")?;
//!             }
//!             Event::Closed(info) => assert!(info.clean),
//!             _ => {}
//!         }
//!     }
//!     // Timers: run whatever is due.
//!     if let Some(deadline) = client.poll_timeout() {
//!         if deadline <= now {
//!             client.handle_timeout(now);
//!         }
//!     }
//!     now += Duration::from_millis(1);
//! }
//! assert_eq!(received, vec![Message::text("hello")]);
//! assert!(client.is_closed() && server.is_closed());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## TLS
//!
//! `wss://` needs a [`ClientTls`] (trusted roots: the Mozilla set, the OS
//! store or PEM files; optionally a client certificate); a TLS server needs a
//! [`ServerTls`] (certificate chain and key, optionally client
//! authentication). Certificate failures end the connection with a typed
//! [`TlsError`] (unknown issuer, expired, wrong name …) and the TLS alert is
//! sent to the peer. [`Connection::tls_info`] tells what the handshake agreed.
//!
//! The crypto provider is chosen by a crate feature:
//!
//! | feature | provider | key exchange |
//! |---|---|---|
//! | `aws-lc-rs` (default) | AWS-LC, rustls' own default | X25519MLKEM768 (post-quantum hybrid) preferred; X25519, P-384, P-256 for peers without it |
//! | `ring` | *ring*, for targets AWS-LC does not build on | X25519, P-384, P-256 |
//!
//! For *ring*: `wharf-core = { version = "0.1", default-features = false,
//! features = ["ring"] }` (the adapters and `wharf-proto` forward both
//! features). With both on, AWS-LC is used. Any other rustls provider (a FIPS
//! build, a hardware-backed one) can be given to the builders with
//! [`ClientTlsBuilder::with_crypto_provider`]; rustls' process-wide default
//! provider is never consulted.
//!
//! ## Rules and limits
//!
//! Every MUST-fail rule of RFC 6455 §5 and §7 closes the connection with the
//! right code (1002, 1007, 1009 …) and reports one final [`Event::Closed`].
//! Every buffer is bounded by [`Config`]; nothing is allocated from a length
//! the peer declares. A full outgoing queue hands the message back
//! ([`SendError::Full`]).
//!
//! ## Compression
//!
//! permessage-deflate (RFC 7692) is off by default; set [`Config::deflate`]
//! to a [`DeflateConfig`] on both sides to use it. The client offers it, the
//! server accepts the first valid offer, and [`Connection::deflate`] tells
//! what was agreed. Messages of at least
//! [`DeflateConfig::min_message_size`] bytes then go out compressed (RSV1 on
//! their first frame), unless sent with [`Connection::send_uncompressed`];
//! control frames never are. `max_message_size` bounds the inflated size, so
//! a compression bomb fails with 1009 after inflating at most that much.
//! [`DeflateConfig`] states the memory a compressing connection holds.
//!
//! ```
//! use wharf_core::{Config, DeflateConfig};
//!
//! let mut deflate = DeflateConfig::default();
//! deflate.max_window_bits = 12; // a smaller compressor
//! let mut config = Config::default();
//! config.deflate = Some(deflate);
//! ```

/// This crate's README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct Readme;

mod client;
mod close;
mod close_code;
mod config;
mod connection;
mod connection_set;
mod copy;
mod deflate;
mod endpoint;
mod error;
mod event;
mod frame;
mod handshake;
mod message;
mod reconnect;
mod rng;
mod role;
mod timer;
mod tls;
mod utf8;

// Test and benchmark support (feature `_internal`), not part of the API.
#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod bench_api;
#[cfg(any(test, feature = "_internal"))]
#[doc(hidden)]
pub mod pair;
#[cfg(any(test, feature = "_internal"))]
#[doc(hidden)]
pub mod test_certs;

pub use bytes::{Bytes, BytesMut};
pub use client::{
    Client, ClientAction, ClientEvent, ClientOptions, Disconnect, Disconnected, RegistrationHook,
};
pub use close::{validate_close, CloseCode, MAX_CLOSE_REASON};
pub use config::{Config, DeflateConfig, MessageMode};
pub use connection::{Connection, Role};
pub use connection_set::{ConnId, ConnectionSet};
pub use endpoint::Endpoint;
pub use error::{
    ConfigError, Error, ExtensionError, HandshakeError, ProtocolError, SendError, TimeoutKind,
    TlsError,
};
pub use event::{CloseInfo, Event, Initiator, Open};
pub use handshake::{Accept, ClientRequest, DeflateParams, Reject, Request, Response};
pub use message::{Chunk, Message, MessageKind, Text};
pub use reconnect::{Backoff, Reconnect, ReconnectConfig};
pub use rng::{OsSeededRng, Random};
pub use rustls;
pub use tls::{ClientTls, ClientTlsBuilder, ServerTls, ServerTlsBuilder, TlsInfo};
