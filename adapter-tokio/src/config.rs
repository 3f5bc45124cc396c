//! Settings for client and server connections: the core's [`Config`], TLS,
//! the bounds of the buffers between a connection's task and its handles,
//! and (server) the application's accept / reject decision.

use std::fmt;
use std::sync::Arc;

use wharf_core::{Accept, ClientTls, Config, MessageMode, Reject, Request, ServerTls};

use crate::error::Error;

/// The bounds of the buffers between a connection's task and its handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buffers {
    /// Most whole messages waiting for the reader.
    pub(crate) incoming_messages: usize,
    /// Most payload bytes waiting for the reader.
    pub(crate) incoming_bytes: usize,
    /// Most messages waiting for the connection's task.
    pub(crate) outgoing_messages: usize,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            incoming_messages: 128,
            incoming_bytes: 16 << 20,
            outgoing_messages: 128,
        }
    }
}

/// The application's decision on an upgrade request (server side).
pub(crate) type Decider = Arc<dyn Fn(&Request) -> Result<Accept, Reject> + Send + Sync>;

/// Settings for client connections ([`connect`](crate::connect) and the
/// [`ReconnectingClient`](crate::ReconnectingClient)).
///
/// Cheap to clone. For `wss://` URLs the [`ClientTls`] given with
/// [`with_tls`](Self::with_tls) is used; without one, the Mozilla root set.
///
/// ```
/// use std::time::Duration;
/// use wharf_tokio::{ClientConfig, Config};
///
/// let mut core = Config::default();
/// core.ping_interval = Some(Duration::from_secs(15));
/// let config = ClientConfig::new()
///     .with_config(core)
///     .with_incoming_buffer(64, 4 << 20)
///     .with_outgoing_buffer(64);
/// assert_eq!(config.config().ping_interval, Some(Duration::from_secs(15)));
/// ```
#[derive(Clone, Default)]
pub struct ClientConfig {
    pub(crate) core: Arc<Config>,
    pub(crate) tls: Option<ClientTls>,
    pub(crate) buffers: Buffers,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("core", &self.core)
            .field("tls", &self.tls.is_some())
            .field("buffers", &self.buffers)
            .finish()
    }
}

impl ClientConfig {
    /// The defaults: the core's [`Config::default`], Mozilla roots for
    /// `wss://`, 128 messages (and 16 MiB) buffered each way.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `config` for the protocol: limits, timeouts, keepalive.
    #[must_use]
    pub fn with_config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.core = config.into();
        self
    }

    /// Uses `tls` (trusted roots, client certificate) for `wss://` URLs.
    #[must_use]
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Bounds what waits for the reader: at most `messages` messages and
    /// `bytes` payload bytes (at least 1 of each). While either is reached
    /// the connection stops reading its socket and decoding what it has
    /// read; the last message taken may pass the byte bound.
    #[must_use]
    pub fn with_incoming_buffer(mut self, messages: usize, bytes: usize) -> Self {
        self.buffers.incoming_messages = messages.max(1);
        self.buffers.incoming_bytes = bytes.max(1);
        self
    }

    /// Bounds the messages waiting for the connection's task (at least 1).
    /// Behind it, the core's `max_send_queue` bounds the bytes not yet
    /// written.
    #[must_use]
    pub fn with_outgoing_buffer(mut self, messages: usize) -> Self {
        self.buffers.outgoing_messages = messages.max(1);
        self
    }

    /// The protocol settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.core
    }

    /// The TLS for `wss://`: the one given, or the Mozilla roots.
    pub(crate) fn tls_or_default(&self) -> Result<ClientTls, Error> {
        match &self.tls {
            Some(tls) => Ok(tls.clone()),
            None => Ok(ClientTls::builder().with_mozilla_roots().build()?),
        }
    }
}

/// Settings for server connections ([`accept`](crate::accept) and
/// [`Server`](crate::Server)): the core's [`Config`], optional TLS (then
/// the connections are `wss`), buffer bounds, and the application's decision
/// on every upgrade request.
///
/// ```
/// use wharf_tokio::{Accept, Reject, ServerConfig};
///
/// let config = ServerConfig::new().on_request(|request| {
///     if request.path() == "/chat" {
///         Ok(Accept::default())
///     } else {
///         Err(Reject { status: 404, headers: Vec::new(), body: b"no such room".to_vec() })
///     }
/// });
/// # let _ = config;
/// ```
#[derive(Clone, Default)]
pub struct ServerConfig {
    pub(crate) core: Arc<Config>,
    pub(crate) tls: Option<ServerTls>,
    pub(crate) buffers: Buffers,
    pub(crate) decide: Option<Decider>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("core", &self.core)
            .field("tls", &self.tls.is_some())
            .field("buffers", &self.buffers)
            .field("on_request", &self.decide.is_some())
            .finish()
    }
}

impl ServerConfig {
    /// The defaults: plaintext, the core's [`Config::default`], every
    /// request accepted without a subprotocol.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `config` for the protocol: limits, timeouts, keepalive.
    #[must_use]
    pub fn with_config(mut self, config: impl Into<Arc<Config>>) -> Self {
        self.core = config.into();
        self
    }

    /// Serves `wss`: every connection runs TLS with `tls`.
    #[must_use]
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Bounds what waits for the reader (see
    /// [`ClientConfig::with_incoming_buffer`]).
    #[must_use]
    pub fn with_incoming_buffer(mut self, messages: usize, bytes: usize) -> Self {
        self.buffers.incoming_messages = messages.max(1);
        self.buffers.incoming_bytes = bytes.max(1);
        self
    }

    /// Bounds the messages waiting for the connection's task (see
    /// [`ClientConfig::with_outgoing_buffer`]).
    #[must_use]
    pub fn with_outgoing_buffer(mut self, messages: usize) -> Self {
        self.buffers.outgoing_messages = messages.max(1);
        self
    }

    /// Decides on every upgrade request: `Ok(Accept)` (optionally with a
    /// subprotocol the client offered and extra headers) or `Err(Reject)`
    /// (an HTTP error response; the connection then ends). It runs on the
    /// connection's task and should not block.
    #[must_use]
    pub fn on_request(
        mut self,
        decide: impl Fn(&Request) -> Result<Accept, Reject> + Send + Sync + 'static,
    ) -> Self {
        self.decide = Some(Arc::new(decide));
        self
    }

    /// The protocol settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.core
    }
}

/// This adapter reports whole messages; chunked delivery is not offered.
pub(crate) fn check_supported(config: &Config) -> Result<(), Error> {
    if config.message_mode == MessageMode::Stream {
        return Err(Error::Unsupported(
            "MessageMode::Stream (wharf-tokio delivers whole messages)",
        ));
    }
    Ok(())
}
