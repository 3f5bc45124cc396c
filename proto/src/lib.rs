//! # wharf-proto
//!
//! Registration, requests with results, and pushed stream frames over a
//! wharf WebSocket, as protobuf: one [`Envelope`] per binary message.
//!
//! ```text
//!  client                                                     server
//!  ClientSession                                              ServerSession
//!   connected() ───── Register (client id, token, streams) ──▶ Register event ─▶ accept / refuse
//!               ◀──── RegisterAck (epoch, where streams resume) ─┘
//!   request() ─────── Request (id, kind, payload) ───────────▶ Request event ─▶ your handler
//!   Result event ◀─── Result (request id, status, payload | error) ◀─ respond()
//!   Frame / Gap ◀──── Frame (stream, sequence, payload) ◀───── publish()
//!   disconnected() ─▶ sent requests: resend or fail;  connected() ─▶ Register again, first
//! ```
//!
//! The sessions are sans-IO, like `wharf-core`: they never touch a socket or
//! read a clock. Feed them what arrives and the time; drain
//! `poll_transmit` (messages to send) and `poll_event` after every call;
//! call `handle_timeout` when `poll_timeout` says. With the `tokio`
//! feature, `Client` and `Server` drive them on `wharf-tokio` over ws or
//! wss, with a reconnecting client.
//!
//! ## In memory
//!
//! ```
//! use std::time::{Duration, Instant};
//! use wharf_proto::{
//!     ClientEvent, ClientSession, ClientSessionConfig, RequestResult, ServerEvent,
//!     ServerSession, ServerSessionConfig,
//! };
//!
//! let mut now = Instant::now(); // the caller owns the clock
//! let mut client = ClientSession::new(ClientSessionConfig::new("c1").with_stream("ticks"));
//! let mut server = ServerSession::new(ServerSessionConfig::new(), 1);
//!
//! // A connection opened (a real program: a WebSocket reached Open).
//! let conn = server.connect()?;
//! client.connected();
//! let id = client.request(now, "echo", "hello")?;
//!
//! let mut results = Vec::new();
//! let mut frames = Vec::new();
//! for _round in 0..4 {
//!     // client ──▶ server
//!     while let Some(message) = client.poll_transmit() {
//!         server.handle_message(conn, &message)?;
//!     }
//!     while let Some(event) = server.poll_event() {
//!         match event {
//!             ServerEvent::Register { connection, register } => {
//!                 assert_eq!(register.client_id, "c1"); // check the token here
//!                 server.accept_registration(connection)?;
//!                 server.publish("ticks", "tick 1")?;
//!             }
//!             ServerEvent::Request { connection, request, .. } => {
//!                 let answer = RequestResult::ok(request.id, request.payload);
//!                 server.respond(connection, answer)?;
//!             }
//!             _ => {}
//!         }
//!     }
//!     // server ──▶ client
//!     while let Some((_conn, message)) = server.poll_transmit() {
//!         client.handle_message(now, &message)?;
//!     }
//!     while let Some(event) = client.poll_event() {
//!         match event {
//!             ClientEvent::Result(result) => results.push(result),
//!             ClientEvent::Frame(frame) => frames.push(frame.payload),
//!             ClientEvent::Failed { error, .. } => panic!("{error}"),
//!             _ => {}
//!         }
//!     }
//!     now += Duration::from_millis(1);
//!     client.handle_timeout(now);
//! }
//! assert_eq!(results, vec![RequestResult::ok(id, "hello")]);
//! assert_eq!(frames, vec!["tick 1"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The wire
//!
//! The schema is `proto/wharf.proto` (package `wharf.v1`); its Rust types
//! are generated at build time (prost, parsed by protox: no `protoc`
//! needed) into [`wire`], and the common ones re-exported here. Every
//! envelope carries [`PROTOCOL_VERSION`]; a message of another version, a
//! malformed one or one of an unknown kind is refused with a typed
//! [`ProtoError`], answered with an error `Result` when it carried a
//! request id (unless a request with that id is already in flight: a
//! duplicate, dropped), and the connection stays up.
//!
//! ## Reconnects
//!
//! After a reconnect the registration goes out first, again, with where
//! each stream left off; requests wait for its ack. Requests sent on the
//! lost connection are resent or failed ([`OnReconnect`]); none is dropped
//! silently. The server replays what a resuming client missed from a
//! bounded history; a hole it cannot fill is reported as
//! [`ClientEvent::Gap`], a server restart (new epoch) as
//! [`ClientEvent::StreamReset`].

/// The workspace README's examples, compiled and run as this crate's doc
/// tests so that they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct WorkspaceReadme;

/// This crate's README's examples, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct Readme;

mod client;
mod codec;
mod error;
mod server;
#[cfg(feature = "tokio")]
mod tokio_client;
#[cfg(feature = "tokio")]
mod tokio_server;

/// The protobuf types of `proto/wharf.proto` (package `wharf.v1`),
/// generated by prost at build time.
pub mod wire {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/wharf.v1.rs"));

    /// The protocol version this crate speaks, sent in every envelope.
    /// An envelope with any other version is refused
    /// ([`ProtoError::UnsupportedVersion`](crate::ProtoError::UnsupportedVersion)).
    pub const PROTOCOL_VERSION: u32 = 1;
}

pub use client::{ClientEvent, ClientSession, ClientSessionConfig, OnReconnect};
pub use codec::{decode, encode};
pub use error::{ProtoError, RequestError, ServerError, SubmitError};
pub use server::{ConnectionId, ServerEvent, ServerSession, ServerSessionConfig};
#[cfg(feature = "tokio")]
pub use tokio_client::{Client, ClientBuilder, ClientStatus, FrameEvent, Frames};
#[cfg(feature = "tokio")]
pub use tokio_server::{Publisher, Server, ServerBuilder};
pub use wire::envelope::Body;
pub use wire::result::Outcome;
pub use wire::PROTOCOL_VERSION;
pub use wire::{
    Envelope, Frame, Register, RegisterAck, Request, Result as RequestResult, Status,
    StreamPosition, Subscription,
};
