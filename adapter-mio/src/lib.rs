//! # wharf-mio
//!
//! Drives [`wharf_core`] WebSocket connections on mio sockets inside **your**
//! `mio::Poll`, beside your other sockets: the adapter moves bytes between
//! sockets and the sans-IO core and never parses them itself.
//!
//! - [`WsStream`]: one connection (client or server) on a `TcpStream`, under
//!   your `Token`, with its interest kept in step with what the core wants.
//! - [`WsServer`]: a listener and its connections (ws or wss) in one `Poll`,
//!   with the application's accept/reject decision on every upgrade request.
//! - [`ReconnectingClient`]: a client that reconnects forever by the core's
//!   [`Reconnect`](wharf_core::Reconnect) policy, runs a registration hook on
//!   every Open before queued messages, and holds no socket between attempts.
//!
//! ## The loop
//!
//! Every type has the same three entry points: `handle_event` for mio events
//! with its token(s), `handle_timeout` when the deadline from `poll_timeout`
//! passes, and `poll_event` to drain what happened. Pass the earliest deadline
//! of everything you drive to `Poll::poll`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use mio::{Events, Poll, Token};
//! use wharf_core::{Accept, ClientRequest, Event, Message};
//! use wharf_mio::{ClientEvent, ClientOptions, ReconnectingClient, ServerOptions, WsServer};
//!
//! let mut poll = Poll::new()?;
//! let mut server = WsServer::bind("127.0.0.1:0".parse()?, ServerOptions::default())?;
//! server.register(poll.registry())?;
//!
//! let url = format!("ws://{}/", server.local_addr());
//! let mut options = ClientOptions::new(ClientRequest::new(&url)?);
//! options.registration = Some(Box::new(|_open| vec![Message::text("hello, I am client 7")]));
//! let mut client = ReconnectingClient::new(options, Token(1), Instant::now())?;
//! client.start(poll.registry(), Instant::now());
//!
//! let mut events = Events::with_capacity(256);
//! let mut echoed = None;
//! let give_up = Instant::now() + Duration::from_secs(10);
//! while echoed.is_none() && Instant::now() < give_up {
//!     // Sleep until the earliest deadline of everything in the loop.
//!     let now = Instant::now();
//!     let deadline = [server.poll_timeout(), client.poll_timeout()].into_iter().flatten().min();
//!     let wait = deadline.map_or(Duration::from_millis(100), |d| d.saturating_duration_since(now));
//!     poll.poll(&mut events, Some(wait))?;
//!
//!     let now = Instant::now();
//!     for event in events.iter() {
//!         if server.owns(event.token()) {
//!             server.handle_event(poll.registry(), event, now);
//!         } else if event.token() == client.token() {
//!             client.handle_event(poll.registry(), event, now);
//!         }
//!     }
//!     server.handle_timeout(poll.registry(), now);
//!     client.handle_timeout(poll.registry(), now);
//!
//!     while let Some((id, event)) = server.poll_event(poll.registry()) {
//!         match event {
//!             Event::Request(_) => server.accept(poll.registry(), now, id, Accept::default())?,
//!             Event::Message(m) => { let _ = server.send(poll.registry(), now, id, m); }
//!             _ => {}
//!         }
//!     }
//!     while let Some(event) = client.poll_event(poll.registry()) {
//!         if let ClientEvent::Message(m) = event {
//!             echoed = Some(m);
//!         }
//!     }
//! }
//! assert_eq!(echoed, Some(Message::text("hello, I am client 7")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// This crate's README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct Readme;

mod client;
mod server;
mod socket;
mod stream;

pub use client::ReconnectingClient;
pub use server::{ServerOptions, WsServer};
pub use stream::{ConnectError, WsStream};
pub use wharf_core;
pub use wharf_core::{
    ClientEvent, ClientOptions, ConnId, Disconnect, Disconnected, RegistrationHook,
};
