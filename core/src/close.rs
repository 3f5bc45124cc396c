//! Close codes and Close frame bodies (RFC 6455 §5.5.1, §7.4).

use crate::error::{ConfigError, ProtocolError};
use std::fmt;

/// A close status code (§7.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: closed without a Close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: data inconsistent with the message type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: an unexpected condition (also used for a missed keepalive deadline).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway (IANA registry).
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);
    /// 1015: TLS handshake failure (never sent on the wire).
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether the code may appear in a Close frame on the wire (§7.4.1, §7.4.2
    /// and the IANA registry): 1000-1003, 1007-1014 and 3000-4999.
    #[must_use]
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

/// The longest close reason that fits a control frame: 125 - 2 bytes of code.
pub const MAX_CLOSE_REASON: usize = 123;

/// Checks a close this side wants to send: a code that may appear on the
/// wire (§7.4) and a reason that fits a control frame (at most 123 bytes).
pub fn validate_close(code: CloseCode, reason: &str) -> Result<(), ConfigError> {
    if !code.is_sendable() {
        return Err(ConfigError::InvalidClose(format!(
            "code {code} may not be sent (§7.4)"
        )));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(ConfigError::InvalidClose(format!(
            "reason of {} bytes (at most {MAX_CLOSE_REASON})",
            reason.len()
        )));
    }
    Ok(())
}

/// Parses a Close frame body (§5.5.1): empty, or a 2-byte code followed by a
/// UTF-8 reason. Returns `None` for an empty body.
pub(crate) fn parse_close_body(body: &[u8]) -> Result<Option<(CloseCode, &str)>, ProtocolError> {
    match body {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseBodyOneByte),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            let reason = simdutf8::basic::from_utf8(reason)
                .map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some((code, reason)))
        }
    }
}

/// Writes a Close body into `out` (code and reason); returns its length.
/// The caller has already checked the code and that `reason` fits.
pub(crate) fn encode_close_body(code: CloseCode, reason: &str, out: &mut [u8; 125]) -> usize {
    out[..2].copy_from_slice(&code.0.to_be_bytes());
    let n = reason.len().min(MAX_CLOSE_REASON);
    out[2..2 + n].copy_from_slice(&reason.as_bytes()[..n]);
    2 + n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_body_rules() {
        assert_eq!(parse_close_body(b""), Ok(None));
        assert_eq!(
            parse_close_body(b"\x03"),
            Err(ProtocolError::CloseBodyOneByte)
        );
        assert_eq!(
            parse_close_body(b"\x03\xe8bye"),
            Ok(Some((CloseCode::NORMAL, "bye")))
        );
        for bad in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
        ] {
            let b = bad.to_be_bytes();
            assert_eq!(
                parse_close_body(&b),
                Err(ProtocolError::InvalidCloseCode(bad)),
                "{bad}"
            );
        }
        for good in [
            1000u16, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(parse_close_body(&good.to_be_bytes()).is_ok(), "{good}");
        }
        assert_eq!(
            parse_close_body(b"\x03\xe8\xce\xba\xed\xa0\x80"),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn encode_truncates_to_fit() {
        let mut buf = [0u8; 125];
        let long = "x".repeat(200);
        let n = encode_close_body(CloseCode::GOING_AWAY, &long, &mut buf);
        assert_eq!(n, 125);
        assert_eq!(&buf[..2], &[0x03, 0xe9]);
    }
}
