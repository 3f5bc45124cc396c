//! Settings for client and server connections: the core's [`Config`], TLS,
//! the bound of the messages waiting for a connection's task, and (server)
//! the application's accept / reject decision.

use std::fmt;
use std::sync::Arc;

use wharf_core::{
    Accept, ClientOptions, ClientRequest, ClientTls, Config, MessageMode, Reject, Request,
    ServerTls,
};

use crate::error::Error;

/// Messages waiting between the application's writer and a connection's
/// task, by default. What arrives is bounded by the core
/// ([`Config::max_receive_queue`], [`Config::max_receive_events`]).
const OUTGOING: usize = 128;

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
/// core.max_receive_queue = 4 << 20; // what may wait for the reader
/// let config = ClientConfig::new()
///     .with_config(core)
///     .with_outgoing_buffer(64);
/// assert_eq!(config.config().ping_interval, Some(Duration::from_secs(15)));
/// ```
#[derive(Clone)]
pub struct ClientConfig {
    pub(crate) core: Arc<Config>,
    pub(crate) tls: Option<ClientTls>,
    pub(crate) outgoing: usize,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("core", &self.core)
            .field("tls", &self.tls.is_some())
            .field("outgoing", &self.outgoing)
            .finish()
    }
}

impl ClientConfig {
    /// The defaults: the core's [`Config::default`], Mozilla roots for
    /// `wss://`, 128 messages waiting for the connection's task.
    #[must_use]
    pub fn new() -> Self {
        ClientConfig {
            core: Arc::default(),
            tls: None,
            outgoing: OUTGOING,
        }
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

    /// Bounds the messages waiting for the connection's task (at least 1).
    /// Behind it, the core's `max_send_queue` bounds the bytes not yet
    /// written.
    #[must_use]
    pub fn with_outgoing_buffer(mut self, messages: usize) -> Self {
        self.outgoing = messages.max(1);
        self
    }

    /// The protocol settings.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.core
    }

    /// Options for a [`ReconnectingClient`](crate::ReconnectingClient) of
    /// `request` with these settings (the core's config and the TLS).
    #[must_use]
    pub fn client_options(&self, request: ClientRequest) -> ClientOptions {
        let mut options = ClientOptions::new(request);
        options.config = self.core.clone();
        options.tls = self.tls.clone();
        options
    }
}

/// Settings for server connections ([`accept`](crate::accept) and
/// [`Server`](crate::Server)): the core's [`Config`], optional TLS (then
/// the connections are `wss`), the outgoing bound, and the application's decision
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
#[derive(Clone)]
pub struct ServerConfig {
    pub(crate) core: Arc<Config>,
    pub(crate) tls: Option<ServerTls>,
    pub(crate) outgoing: usize,
    pub(crate) decide: Option<Decider>,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("core", &self.core)
            .field("tls", &self.tls.is_some())
            .field("outgoing", &self.outgoing)
            .field("on_request", &self.decide.is_some())
            .finish()
    }
}

impl ServerConfig {
    /// The defaults: plaintext, the core's [`Config::default`], every
    /// request accepted without a subprotocol.
    #[must_use]
    pub fn new() -> Self {
        ServerConfig {
            core: Arc::default(),
            tls: None,
            outgoing: OUTGOING,
            decide: None,
        }
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

    /// Bounds the messages waiting for the connection's task (see
    /// [`ClientConfig::with_outgoing_buffer`]).
    #[must_use]
    pub fn with_outgoing_buffer(mut self, messages: usize) -> Self {
        self.outgoing = messages.max(1);
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

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig::new()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig::new()
    }
}
