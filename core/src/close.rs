//! Close codes and Close frame bodies (RFC 6455 §5.5.1, §7.4).

pub use crate::close_code::CloseCode;

use crate::error::{ConfigError, ProtocolError};

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
