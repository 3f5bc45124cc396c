//! # wharf-tokio
//!
//! Async WebSocket (RFC 6455) connections on tokio, driving the sans-IO
//! [`wharf_core::Connection`]: [`connect`] (ws and wss), [`accept`] and a
//! [`Server`] with a graceful shutdown, and a [`ReconnectingClient`] that
//! follows the core's [`Reconnect`] policy.
//!
//! ```text
//!  handles (any task)                 driver task (one per connection)
//! ┌──────────────┐  bounded queue   ┌─────────────────────────────────────┐
//! │ WsWriter     │ ───────────────▶ │ Connection::send                    │
//! │  send/Sink   │                  │ poll_transmit ──▶ TcpStream::write  │
//! ├──────────────┤  bounded queue   │ TcpStream::read ──▶ handle_input    │
//! │ WsReader     │ ◀─────────────── │ poll_event (Message, Open, Closed)  │
//! │  recv/Stream │                  │ poll_timeout ──▶ Sleep ──▶ handle_timeout
//! └──────────────┘                  └─────────────────────────────────────┘
//! ```
//!
//! Each connection has one task that owns its socket, its core `Connection`
//! and a timer for [`Connection::poll_timeout`](wharf_core::Connection::poll_timeout):
//! keepalive pings, the pong deadline, the close timeout and the handshake
//! timeout run without the application polling anything. The task only
//! moves bytes between the socket and the core, and whole messages between
//! the core and the handles; it parses nothing. It ends, closing the socket,
//! when the connection is finished or when every handle is gone (after
//! closing with 1001, bounded by the close timeout).
//!
//! ## Echo, client and server
//!
//! ```
//! use wharf_tokio::{connect, ClientConfig, CloseCode, Message, Server, ServerConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wharf_tokio::Error> {
//! let mut server = Server::bind("127.0.0.1:0", ServerConfig::new()).await?;
//! let url = format!("ws://{}/echo", server.local_addr()?);
//! let shutdown = server.handle();
//! tokio::spawn(async move {
//!     while let Ok(incoming) = server.accept().await {
//!         tokio::spawn(async move {
//!             let Ok(mut ws) = incoming.handshake().await else { return };
//!             while let Some(Ok(message)) = ws.recv().await {
//!                 if ws.send(message).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!     }
//! });
//!
//! let mut ws = connect(&url, &ClientConfig::new()).await?;
//! ws.send(Message::text("hello")).await?;
//! let echo = ws.recv().await.expect("an echo or the end")?;
//! assert_eq!(echo, Message::text("hello"));
//! let info = ws.close(CloseCode::NORMAL, "done").await?;
//! assert!(info.clean);
//! shutdown.shutdown().await; // stop accepting, close the rest with 1001
//! # Ok(())
//! # }
//! ```
//!
//! ## Cancel safety and backpressure
//!
//! Every handle future is cancel-safe: [`WsReader::recv`] takes a message
//! only when it completes, and [`WsWriter::send`] queues its message when it
//! is called and then only waits for room, so dropping either in a
//! `tokio::select!` loses no message and can never leave a frame half
//! written (frames are made by the driver from whole messages). Buffers are
//! bounded both ways (the core's `max_receive_queue` and
//! `max_send_queue`, [`ClientConfig::with_outgoing_buffer`]):
//! sending waits ([`WsWriter::send`], [`WsWriter::reserve`]) or hands the
//! message back ([`WsWriter::try_send`], [`SendError`]), and a reader that
//! falls behind makes its connection stop reading the socket and decoding
//! (or, with permessage-deflate, inflating) further messages, so the peer
//! meets TCP backpressure and memory stays bounded whatever the
//! compression ratio.
//!
//! ## Staying connected
//!
//! ```no_run
//! use wharf_tokio::{ClientEvent, ClientOptions, ClientRequest, Message, ReconnectingClient};
//!
//! # async fn run() -> Result<(), wharf_tokio::Error> {
//! let mut options = ClientOptions::new(ClientRequest::new("wss://example.com/feed")?);
//! // options.reconnect: by default 1 s × 1.6 ± 20 %, up to 120 s
//! options.registration = Some(Box::new(|_| vec![Message::text("register: sensor-7")]));
//! let (client, mut events) = ReconnectingClient::spawn(options)?;
//! client.send(Message::text("reading: 21.5")).await?; // queued while disconnected
//! while let Some(event) = events.recv().await {
//!     if let ClientEvent::Message(m) = event {
//!         println!("{m:?}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Dropping the last [`ReconnectingClient`] handle ends its task and closes
//! its socket; [`ReconnectingClient::shutdown`] does so after sending what is
//! queued and returns what could not be sent.

/// This crate's README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct Readme;

mod client;
mod config;
mod connect;
mod driver;
mod error;
mod link;
mod server;
mod shared;
mod tracker;
mod websocket;

pub use client::{ClientEvents, ClientPermit, ReconnectingClient};
pub use config::{ClientConfig, ServerConfig};
pub use connect::{accept, accept_io, connect, connect_request};
pub use error::{Error, SendError};
pub use server::{Incoming, Server, ServerHandle};
pub use websocket::{Permit, WebSocket, WsReader, WsWriter};

pub use wharf_core;
pub use wharf_core::{
    Accept, ClientEvent, ClientOptions, ClientRequest, ClientTls, CloseCode, CloseInfo, Config,
    DeflateConfig, Disconnect, Disconnected, Initiator, Message, Open, Reconnect, ReconnectConfig,
    RegistrationHook, Reject, Request, Response, ServerTls,
};
