//! The opening handshake (RFC 6455 §4). SKELETON: to be implemented.

mod client;
mod server;

pub use client::{ClientRequest, Response};
pub use server::{Accept, Reject, Request};

pub(crate) use client::{encode_request, parse_response};
pub(crate) use server::{encode_accept, encode_refusal, encode_reject, parse_request};

use crate::error::HandshakeError;

/// `base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))` (§1.3, §4.2.2).
pub(crate) fn accept_key(key: &str) -> String {
    let _ = key;
    todo!()
}

/// Finds the end of an HTTP head (`\r\n\r\n`) in a growing buffer, scanning
/// each byte once.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    scanned: usize,
}

impl HeadScanner {
    /// `buf` is everything received so far (it only grows between calls).
    /// Returns the head's length including the blank line once complete.
    pub(crate) fn scan(&mut self, buf: &[u8], max: usize) -> Result<Option<usize>, HandshakeError> {
        let _ = (buf, max, self.scanned);
        todo!()
    }
}
