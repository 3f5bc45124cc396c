//! Server side of the opening handshake (§4.2). SKELETON.

use crate::error::{ConfigError, HandshakeError};

/// A validated upgrade request, for the application to accept or reject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    key: String,
    subprotocols: Vec<String>,
}

/// The application's yes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accept {
    /// One of the subprotocols the client offered, or none.
    pub subprotocol: Option<String>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

/// The application's no: an HTTP error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// HTTP status (400-599).
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
}

/// Parses and validates an upgrade request head.
pub(crate) fn parse_request(head: &[u8], max_headers: usize) -> Result<Request, HandshakeError> {
    let _ = (head, max_headers);
    todo!()
}

/// Writes the 101 response.
pub(crate) fn encode_accept(req: &Request, accept: &Accept, out: &mut Vec<u8>) -> Result<(), ConfigError> {
    let _ = (req, accept, out);
    todo!()
}

/// Writes the application's error response.
pub(crate) fn encode_reject(reject: &Reject, out: &mut Vec<u8>) -> Result<(), ConfigError> {
    let _ = (reject, out);
    todo!()
}

/// Writes the HTTP error for a request that failed validation.
pub(crate) fn encode_refusal(err: &HandshakeError, out: &mut Vec<u8>) {
    let _ = (err, out);
    todo!()
}
