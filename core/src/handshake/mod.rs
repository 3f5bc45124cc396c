//! The opening handshake (RFC 6455 §4): an HTTP/1.1 `Upgrade` exchange.
//!
//! Everything here is pure: heads come in as byte slices, answers go out by
//! appending to a `Vec<u8>`. [`HeadScanner`] finds where a head ends in the
//! incoming byte stream; the `client` and `server` modules encode and
//! validate the heads themselves.

mod client;
mod deflate;
mod server;

pub use client::{ClientRequest, Response};
pub use deflate::DeflateParams;
pub use server::{Accept, Reject, Request};

pub(crate) use deflate::{negotiate as negotiate_deflate, ClientOffer};

pub(crate) use client::{encode_request, parse_response};
pub(crate) use server::{encode_accept, encode_refusal, encode_reject, parse_request};

use crate::error::{ConfigError, HandshakeError};
use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// The GUID appended to `Sec-WebSocket-Key` to form `Sec-WebSocket-Accept`
/// (§1.3, §4.2.2 item 5.4).
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))` (§1.3, §4.2.2).
///
/// `key` is used as the string that was sent, not base64-decoded (§4.1 item 4).
pub(crate) fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Finds the end of an HTTP head (`\r\n\r\n`) in a growing buffer, scanning
/// each byte once.
///
/// The scanner is a small automaton over the terminator: it remembers how
/// many bytes of `\r\n\r\n` the bytes seen so far end with, so a call never
/// looks at a byte an earlier call already examined. Feeding a head one byte
/// at a time therefore costs the same as feeding it at once.
#[derive(Debug, Default)]
pub(crate) struct HeadScanner {
    /// How many bytes of the buffer have been examined. Every examined byte
    /// is counted once, so this is also the total work done.
    scanned: usize,
    /// How many bytes of `\r\n\r\n` the examined prefix ends with (0..=3), or
    /// 4 once the terminator was found (the head is then `scanned` bytes).
    matched: u8,
}

impl HeadScanner {
    /// `buf` is everything received so far (it only grows between calls).
    /// Returns the head's length including the blank line once complete.
    ///
    /// Only the head is limited: `Err(HeadTooLarge)` comes as soon as more
    /// than `max` bytes have arrived and the head did not end within the
    /// first `max`. Bytes after the head (a server may send its first frames
    /// right behind the 101, §4.1) are never examined. Once the head was found,
    /// later calls return the same length.
    pub(crate) fn scan(&mut self, buf: &[u8], max: usize) -> Result<Option<usize>, HandshakeError> {
        if self.matched == 4 {
            return Ok(Some(self.scanned));
        }
        let limit = buf.len().min(max);
        // `get` instead of indexing: a caller that broke the "only grows"
        // contract gets `None` here, not a panic.
        let fresh = buf.get(self.scanned..limit).unwrap_or_default();
        for &byte in fresh {
            self.scanned += 1;
            self.matched = match (self.matched, byte) {
                (2, b'\r') => 3,
                (_, b'\r') => 1,
                (1, b'\n') => 2,
                (3, b'\n') => 4,
                _ => 0,
            };
            if self.matched == 4 {
                return Ok(Some(self.scanned));
            }
        }
        if buf.len() > max {
            return Err(HandshakeError::HeadTooLarge { max });
        }
        Ok(None)
    }
}

/// Headers the handshake writes itself. Extra headers may not repeat them,
/// since a second copy would contradict (or smuggle past) the handshake
/// (§4.1, §4.2.2). `Content-Length` and `Transfer-Encoding` are included
/// because a body on the upgrade request or the 101 would swallow the first
/// frames.
const HANDSHAKE_HEADERS: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Extensions",
    "Content-Length",
    "Transfer-Encoding",
];

/// True for a non-empty HTTP token (RFC 7230 §3.2.6 `1*tchar`), the syntax of
/// header names and of subprotocol names (§4.1, §11.3.4).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// `tchar` of RFC 7230 §3.2.6: a visible ASCII character that is not a separator.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Checks caller-supplied headers before they are written: names must be
/// tokens, values may not hold CR, LF or NUL (they would end the header line
/// and let the value inject headers or a body), and none may be one of
/// `reserved` (compared ASCII case-insensitively, as header names are).
fn validate_headers(headers: &[(String, String)], reserved: &[&str]) -> Result<(), ConfigError> {
    for (name, value) in headers {
        if !is_token(name) {
            return Err(ConfigError::InvalidHeader(name.clone()));
        }
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | b'\0')) {
            return Err(ConfigError::InvalidHeader(name.clone()));
        }
        if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(ConfigError::InvalidHeader(name.clone()));
        }
    }
    Ok(())
}

/// Appends `name: value\r\n`.
fn write_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the caller's extra headers (validated beforehand).
fn write_headers(out: &mut Vec<u8>, headers: &[(String, String)]) {
    for (name, value) in headers {
        write_header(out, name, value.as_bytes());
    }
}

/// Strips optional whitespace (SP / HTAB, RFC 7230 §3.2.3) from both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The values of every header called `name` (ASCII case-insensitive, §4.1),
/// in order.
fn values<'h: 'n, 'n>(
    headers: &'h [(String, Vec<u8>)],
    name: &'n str,
) -> impl Iterator<Item = &'h [u8]> + 'n {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// How often a header that may appear only once was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occurs<'h> {
    /// Not at all.
    Never,
    /// Once, with this value.
    Once(&'h [u8]),
    /// More than once.
    More,
}

/// Looks up a header that may appear only once (ASCII case-insensitive).
fn occurs<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Occurs<'h> {
    let mut found = values(headers, name);
    match (found.next(), found.next()) {
        (None, _) => Occurs::Never,
        (Some(v), None) => Occurs::Once(v),
        (Some(_), Some(_)) => Occurs::More,
    }
}

/// The elements of a comma-separated header list (`#rule`, RFC 7230 §7) over
/// all headers called `name`, trimmed, empty elements skipped.
fn list_elements<'h: 'n, 'n>(
    headers: &'h [(String, Vec<u8>)],
    name: &'n str,
) -> impl Iterator<Item = &'h [u8]> + 'n {
    values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// True when a list header called `name` holds `token` (ASCII
/// case-insensitive), as §4.1 and §4.2.1 require of `Connection: Upgrade`.
fn has_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    list_elements(headers, name).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses HTTP headers out of httparse's array into owned pairs, names as sent.
fn own_headers(parsed: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    parsed
        .iter()
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

/// How many header slots httparse needs for `head`: `max_headers`, but never
/// more than the head could possibly hold (each header line takes at least
/// three bytes, `a:\n`), so a generous limit does not cost a huge allocation.
fn header_slots(head: &[u8], max_headers: usize) -> usize {
    max_headers.min(head.len() / 3 + 1)
}

/// Maps an httparse failure to the handshake error.
fn http_error(err: httparse::Error, max_headers: usize) -> HandshakeError {
    match err {
        httparse::Error::TooManyHeaders => HandshakeError::TooManyHeaders { max: max_headers },
        other => HandshakeError::MalformedHttp(other.to_string()),
    }
}

/// Shortens peer bytes for an error message: lossy UTF-8, at most 64 chars.
fn excerpt(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    if s.chars().count() > 64 {
        let mut short: String = s.chars().take(64).collect();
        short.push('…');
        short
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";

    #[test]
    fn accept_key_matches_rfc_example() {
        // §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn scanner_whole_head_at_once() {
        let mut s = HeadScanner::default();
        assert_eq!(s.scan(HEAD, 1024), Ok(Some(HEAD.len())));
        // Asking again gives the same answer without more work.
        assert_eq!(s.scan(HEAD, 1024), Ok(Some(HEAD.len())));
        assert_eq!(s.scanned, HEAD.len());
    }

    #[test]
    fn scanner_one_byte_at_a_time_finds_end_once() {
        // Frames right behind the head must not be examined nor counted.
        let mut stream = HEAD.to_vec();
        stream.extend_from_slice(b"\x81\x05hello\r\n\r\n");
        let mut s = HeadScanner::default();
        let mut found = Vec::new();
        for n in 0..=stream.len() {
            let before = s.scanned;
            let r = s.scan(&stream[..n], 1024);
            if let Ok(Some(len)) = r {
                if found.is_empty() {
                    found.push((n, len));
                }
            } else {
                assert_eq!(r, Ok(None));
            }
            // At most the one new byte was examined.
            assert!(s.scanned <= before + 1);
        }
        assert_eq!(found, vec![(HEAD.len(), HEAD.len())]);
        assert_eq!(s.scanned, HEAD.len());
    }

    #[test]
    fn scanner_terminator_split_across_every_boundary() {
        for cut in 0..=HEAD.len() {
            let mut s = HeadScanner::default();
            let first = s.scan(&HEAD[..cut], 1024);
            let expected_first = if cut == HEAD.len() {
                Some(HEAD.len())
            } else {
                None
            };
            assert_eq!(first, Ok(expected_first), "cut {cut}");
            assert_eq!(s.scan(HEAD, 1024), Ok(Some(HEAD.len())), "cut {cut}");
        }
    }

    #[test]
    fn scanner_partial_terminators_do_not_confuse_it() {
        let head = b"GET / HTTP/1.1\r\nA: \r\r\n\r\r\nB: x\n\r\n\r\r\n\r\n";
        let mut s = HeadScanner::default();
        assert_eq!(s.scan(head, 1024), Ok(Some(head.len())));
        let bare_lf = b"GET / HTTP/1.1\n\nmore";
        let mut s = HeadScanner::default();
        assert_eq!(s.scan(bare_lf, 1024), Ok(None));
    }

    #[test]
    fn scanner_limit_applies_to_the_head_only() {
        // Exactly `max` bytes of head is allowed.
        let mut s = HeadScanner::default();
        assert_eq!(s.scan(HEAD, HEAD.len()), Ok(Some(HEAD.len())));
        // One byte less is not, once more bytes have arrived.
        let mut s = HeadScanner::default();
        assert_eq!(s.scan(&HEAD[..HEAD.len() - 1], HEAD.len() - 1), Ok(None));
        assert_eq!(
            s.scan(HEAD, HEAD.len() - 1),
            Err(HandshakeError::HeadTooLarge {
                max: HEAD.len() - 1
            })
        );
        // A short head followed by lots of frame bytes is fine.
        let mut stream = HEAD.to_vec();
        stream.resize(HEAD.len() + 100_000, 0x82);
        let mut s = HeadScanner::default();
        assert_eq!(s.scan(&stream, 1024), Ok(Some(HEAD.len())));
        assert_eq!(s.scanned, HEAD.len());
    }

    #[test]
    fn scanner_rejects_endless_head_after_at_most_max_bytes() {
        const TOTAL: usize = 20 * 1024 * 1024;
        const PIECE: usize = 4096;
        let max = 64 * 1024;
        let line = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        let mut s = HeadScanner::default();
        let mut buf = Vec::new();
        let mut result = Ok(None);
        while buf.len() < TOTAL {
            let start = buf.len();
            buf.extend((start..start + PIECE).map(|i| line[i % line.len()]));
            result = s.scan(&buf, max);
            assert!(s.scanned <= buf.len(), "a byte was examined twice");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(HandshakeError::HeadTooLarge { max }));
        assert!(
            buf.len() <= max + PIECE,
            "rejected only after {} bytes",
            buf.len()
        );
        assert!(s.scanned <= max + 3);
    }

    #[test]
    fn scanner_is_linear_on_a_20_mb_head() {
        // With a limit above the stream, every byte is examined exactly once.
        const TOTAL: usize = 20 * 1024 * 1024;
        let mut s = HeadScanner::default();
        let mut buf = Vec::with_capacity(TOTAL);
        let mut calls = 0usize;
        while buf.len() < TOTAL {
            let start = buf.len();
            // Near misses everywhere: "\r\n\rx" never completes the terminator.
            buf.extend((start..start + 4096).map(|i| b"\r\n\rx"[i % 4]));
            assert_eq!(s.scan(&buf, usize::MAX), Ok(None));
            assert!(s.scanned <= buf.len() + 3);
            calls += 1;
        }
        assert_eq!(calls, TOTAL / 4096);
        assert_eq!(s.scanned, TOTAL);
    }

    #[test]
    fn scanner_survives_a_shrinking_buffer() {
        let mut s = HeadScanner::default();
        assert_eq!(s.scan(b"GET / HTTP/1.1\r\n", 1024), Ok(None));
        assert_eq!(s.scan(b"GE", 1024), Ok(None));
        assert_eq!(s.scan(b"", 0), Ok(None));
    }

    #[test]
    fn header_validation() {
        let ok = vec![("Authorization".to_owned(), "Bearer x".to_owned())];
        assert_eq!(validate_headers(&ok, HANDSHAKE_HEADERS), Ok(()));
        for (name, value) in [
            ("X-A", "a\r\nX-Injected: 1"),
            ("X-A", "a\nb"),
            ("X-A", "a\rb"),
            ("X-A", "a\0b"),
            ("", "v"),
            ("Bad Name", "v"),
            ("Bad:Name", "v"),
            ("X-A\r\nX-B", "v"),
            ("sec-websocket-key", "v"),
            ("HOST", "v"),
        ] {
            let h = vec![(name.to_owned(), value.to_owned())];
            assert_eq!(
                validate_headers(&h, HANDSHAKE_HEADERS),
                Err(ConfigError::InvalidHeader(name.to_owned())),
                "{name:?}: {value:?}"
            );
        }
    }

    #[test]
    fn list_helpers() {
        let h = vec![
            ("connection".to_owned(), b"keep-alive, \tUpgrade ".to_vec()),
            ("X".to_owned(), b",,".to_vec()),
        ];
        assert!(has_token(&h, "Connection", "upgrade"));
        assert!(!has_token(&h, "Connection", "close"));
        assert_eq!(list_elements(&h, "x").count(), 0);
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
        assert_eq!(excerpt(&[b'a'; 100]).chars().count(), 65);
    }
}

/// A whole client ↔ server exchange through the public-to-the-crate functions.
#[cfg(test)]
mod round_trip {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// Runs encode_request → parse_request → encode_accept → parse_response.
    fn run(req: &ClientRequest, accept: &Accept) -> (Vec<u8>, Request, Vec<u8>, Response) {
        let mut wire = Vec::new();
        encode_request(req, KEY, None, &mut wire).expect("request encodes");
        let mut scanner = HeadScanner::default();
        let len = scanner.scan(&wire, 8192).expect("fits").expect("complete");
        assert_eq!(len, wire.len());
        let server_req = parse_request(&wire, 64).expect("server accepts the request");
        let mut answer = Vec::new();
        encode_accept(&server_req, accept, None, &mut answer).expect("accept encodes");
        let mut scanner = HeadScanner::default();
        assert_eq!(scanner.scan(&answer, 8192), Ok(Some(answer.len())));
        let resp = parse_response(&answer, KEY, req.subprotocols(), None, 64)
            .expect("client accepts the 101");
        (wire, server_req, answer, resp)
    }

    #[test]
    fn with_subprotocols_and_headers() {
        let req = ClientRequest::new("ws://127.0.0.1:9001/a?b=c")
            .expect("valid URL")
            .subprotocol("chat.v2")
            .subprotocol("chat")
            .header("Authorization", "Bearer t0ken")
            .header("Origin", "http://example.com");
        let accept = Accept {
            subprotocol: Some("chat".to_owned()),
            headers: vec![("Set-Cookie".to_owned(), "id=1".to_owned())],
        };
        let (wire, server_req, _, resp) = run(&req, &accept);
        let text = String::from_utf8(wire).expect("ASCII");
        assert!(
            text.starts_with("GET /a?b=c HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"),
            "{text}"
        );
        assert_eq!(server_req.method(), "GET");
        assert_eq!(server_req.target(), "/a?b=c");
        assert_eq!(server_req.path(), "/a");
        assert_eq!(server_req.query(), Some("b=c"));
        assert_eq!(server_req.host(), Some("127.0.0.1:9001"));
        assert_eq!(server_req.origin(), Some("http://example.com"));
        assert_eq!(server_req.key(), KEY);
        assert_eq!(server_req.subprotocols(), ["chat.v2", "chat"]);
        assert_eq!(
            server_req.header("authorization"),
            Some(&b"Bearer t0ken"[..])
        );
        assert_eq!(resp.status, 101);
        assert_eq!(resp.subprotocol.as_deref(), Some("chat"));
        assert!(resp
            .headers
            .iter()
            .any(|(n, v)| n == "Set-Cookie" && v == b"id=1"));
        assert!(resp
            .headers
            .iter()
            .any(|(n, v)| n == "Sec-WebSocket-Accept" && v == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }

    #[test]
    fn ipv6_with_port() {
        let req = ClientRequest::new("wss://[::1]:8443/").expect("valid URL");
        assert_eq!(req.host(), "::1");
        assert_eq!(req.port(), 8443);
        assert!(req.is_tls());
        let (wire, server_req, _, resp) = run(&req, &Accept::default());
        assert!(wire.starts_with(b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\n"));
        assert_eq!(server_req.host(), Some("[::1]:8443"));
        assert_eq!(server_req.subprotocols(), [] as [String; 0]);
        assert_eq!(resp.subprotocol, None);
    }

    #[test]
    fn default_ports_are_left_out_of_host() {
        for (url, host, port, host_header) in [
            ("ws://example.com", "example.com", 80, "example.com"),
            ("ws://example.com:80/x", "example.com", 80, "example.com"),
            ("wss://Example.COM/chat", "example.com", 443, "example.com"),
            ("wss://example.com:443", "example.com", 443, "example.com"),
            (
                "ws://example.com:443/",
                "example.com",
                443,
                "example.com:443",
            ),
            ("wss://example.com:80/", "example.com", 80, "example.com:80"),
            ("wss://[2001:db8::1]/", "2001:db8::1", 443, "[2001:db8::1]"),
        ] {
            let req = ClientRequest::new(url).expect("valid URL");
            assert_eq!((req.host(), req.port()), (host, port), "{url}");
            let (_, server_req, _, _) = run(&req, &Accept::default());
            assert_eq!(server_req.host(), Some(host_header), "{url}");
        }
    }

    #[test]
    fn server_choosing_nothing_when_offered_is_fine() {
        let req = ClientRequest::new("ws://h/")
            .expect("valid URL")
            .subprotocol("a");
        let (_, _, _, resp) = run(&req, &Accept::default());
        assert_eq!(resp.subprotocol, None);
    }
}
