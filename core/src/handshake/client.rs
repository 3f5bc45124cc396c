//! Client side of the opening handshake (§4.1). SKELETON.

use crate::error::{ConfigError, HandshakeError};

/// What a client asks for: the URL plus optional subprotocols and headers.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    url: url::Url,
    host: String,
    port: u16,
    tls: bool,
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// Parses a `ws://` or `wss://` URL.
    pub fn new(url: &str) -> Result<ClientRequest, ConfigError> {
        let _ = url;
        todo!()
    }
    /// Offers a subprotocol (`Sec-WebSocket-Protocol`), in preference order.
    #[must_use]
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocols.push(name.into());
        self
    }
    /// Adds a header (e.g. `Authorization`).
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// The URL.
    #[must_use]
    pub fn url(&self) -> &url::Url {
        &self.url
    }
    /// Host for TCP and TLS SNI (IPv6 without brackets).
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }
    /// Port (explicit or 80 / 443).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }
    /// `wss://`.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.tls
    }
    /// Offered subprotocols.
    #[must_use]
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }
}

/// The server's `101 Switching Protocols` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Always 101 once accepted.
    pub status: u16,
    /// The subprotocol the server chose.
    pub subprotocol: Option<String>,
    /// All headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Writes the upgrade request.
pub(crate) fn encode_request(req: &ClientRequest, key: &str, out: &mut Vec<u8>) -> Result<(), ConfigError> {
    let _ = (req, key, out);
    todo!()
}

/// Validates the server's response head.
pub(crate) fn parse_response(
    head: &[u8],
    key: &str,
    offered: &[String],
    max_headers: usize,
) -> Result<Response, HandshakeError> {
    let _ = (head, key, offered, max_headers);
    todo!()
}
