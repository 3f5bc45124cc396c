//! The settings of a [`Client`](super::Client).

use std::fmt;
use std::sync::Arc;

use crate::config::Config;
use crate::event::Open;
use crate::handshake::ClientRequest;
use crate::message::Message;
use crate::reconnect::ReconnectConfig;
use crate::tls::ClientTls;

/// Produces the messages that go first on every new connection (the
/// application's registration), before anything queued. Runs on every
/// Open, with what the handshake agreed.
pub type RegistrationHook = Box<dyn FnMut(&Open) -> Vec<Message> + Send>;

/// Settings of a [`Client`](super::Client).
///
/// ```
/// use std::time::Duration;
/// use wharf_core::{ClientOptions, ClientRequest, Message, ReconnectConfig};
///
/// let mut options = ClientOptions::new(ClientRequest::new("ws://example.com/feed")?);
/// options.reconnect = ReconnectConfig::fixed(Duration::from_secs(5)); // every 5 s
/// options.registration = Some(Box::new(|_open| vec![Message::text("hello, I am sensor 7")]));
/// # Ok::<(), wharf_core::ConfigError>(())
/// ```
#[non_exhaustive]
pub struct ClientOptions {
    /// What to connect to (URL, subprotocols, headers).
    pub request: ClientRequest,
    /// Connection settings (limits, timeouts, keepalive, compression).
    pub config: Arc<Config>,
    /// TLS settings for `wss://`; `None`: the Mozilla root set, no client
    /// certificate.
    pub tls: Option<ClientTls>,
    /// When to try again, and whether rejections are retried.
    pub reconnect: ReconnectConfig,
    /// Most messages waiting for a connection. Default 1,024.
    pub max_queued_messages: usize,
    /// Most bytes of messages waiting for a connection. Default 16 MiB (a
    /// larger message is taken when the queue is empty).
    pub max_queued_bytes: usize,
    /// Runs on every Open; its messages go out before the queued ones.
    pub registration: Option<RegistrationHook>,
}

impl ClientOptions {
    /// Options for `request` with every default.
    #[must_use]
    pub fn new(request: ClientRequest) -> Self {
        ClientOptions {
            request,
            config: Arc::new(Config::default()),
            tls: None,
            reconnect: ReconnectConfig::default(),
            max_queued_messages: 1024,
            max_queued_bytes: 16 << 20,
            registration: None,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("url", &self.request.url().as_str())
            .field("tls", &self.tls.is_some())
            .field("reconnect", &self.reconnect)
            .field("max_queued_messages", &self.max_queued_messages)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("registration", &self.registration.is_some())
            .finish_non_exhaustive()
    }
}
