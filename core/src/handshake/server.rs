//! Server side of the opening handshake (§4.2): validating the client's
//! upgrade request and writing the answer, a 101 or an HTTP error.

use super::{
    accept_key, excerpt, has_token, header_slots, http_error, is_token, list_elements, occurs,
    own_headers, trim_ows, validate_headers, values, write_header, write_headers, Occurs,
    HANDSHAKE_HEADERS,
};
use crate::error::{ConfigError, HandshakeError};
use base64::Engine as _;

/// A validated upgrade request, for the application to accept or reject.
///
/// Everything §4.2.1 requires has been checked by the time the application
/// sees one; the accessors expose the request as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    key: String,
    subprotocols: Vec<String>,
    host: String,
    origin: Option<String>,
}

impl Request {
    /// The request method (always `GET`, §4.2.1 item 1).
    #[must_use]
    pub fn method(&self) -> &str {
        &self.method
    }
    /// The request-target as sent: a path with optional `?query`, or an
    /// absolute URI (§4.2.1 item 1).
    #[must_use]
    pub fn target(&self) -> &str {
        &self.target
    }
    /// The path part of the target (the /resource name/ of §3 without its
    /// query), `/` when an absolute URI has no path.
    #[must_use]
    pub fn path(&self) -> &str {
        split_target(&self.target).0
    }
    /// The query part of the target, without the `?`.
    #[must_use]
    pub fn query(&self) -> Option<&str> {
        split_target(&self.target).1
    }
    /// All headers, in order, names as sent and values as bytes.
    #[must_use]
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }
    /// The first header called `name` (header names are ASCII
    /// case-insensitive, §4.2.1).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    /// The `Sec-WebSocket-Key` (§4.2.1 item 5), whitespace trimmed.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }
    /// The subprotocols the client offered, in its order of preference,
    /// from every `Sec-WebSocket-Protocol` header (§4.2.1 item 8).
    #[must_use]
    pub fn subprotocols(&self) -> &[String] {
        &self.subprotocols
    }
    /// The `Host` header: the authority the client asked for (§4.2.1 item 2).
    ///
    /// A validated request always has one, so this is `Some`; the `Option`
    /// matches [`Request::origin`] and [`Request::header`].
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        Some(&self.host)
    }
    /// The `Origin` header, sent by browsers (§4.2.1 item 7, §10.2). A
    /// request without one SHOULD NOT be taken as coming from a browser.
    #[must_use]
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }
}

/// Splits a request-target into path and query. An absolute URI loses its
/// `scheme://authority`; an empty path reads as `/`.
fn split_target(target: &str) -> (&str, Option<&str>) {
    let rest = if target.starts_with('/') {
        target
    } else {
        match target.split_once("://") {
            Some((_, after)) => after
                .find(['/', '?'])
                .and_then(|i| after.get(i..))
                .unwrap_or(""),
            None => target,
        }
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    (if path.is_empty() { "/" } else { path }, query)
}

/// True for the request-target forms §4.2.1 item 1 allows: a path
/// (origin-form) or an absolute `http`, `https`, `ws` or `wss` URI. HTTP has
/// no fragment in a request-target.
fn valid_target(target: &str) -> bool {
    if target.contains('#') {
        return false;
    }
    if target.starts_with('/') {
        return true;
    }
    match target.split_once("://") {
        Some((scheme, after)) => {
            ["http", "https", "ws", "wss"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme))
                && !after.is_empty()
        }
        None => false,
    }
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

/// Headers [`encode_reject`] and [`encode_refusal`] write themselves.
const REJECT_HEADERS: &[&str] = &["Connection", "Content-Length", "Transfer-Encoding"];

/// Parses and validates an upgrade request head (§4.2.1).
///
/// In order: the head must be HTTP ([`HandshakeError::MalformedHttp`], at
/// most `max_headers` headers or [`HandshakeError::TooManyHeaders`]); the
/// method `GET` ([`HandshakeError::NotGet`]) and the version HTTP/1.1
/// ([`HandshakeError::NotHttp11`]) with a path or absolute URI as target
/// (item 1); then exactly one non-empty `Host` (item 2), `Upgrade` holding
/// `websocket` (item 3), `Connection` holding `Upgrade` (item 4), both ASCII
/// case-insensitive, and a `Sec-WebSocket-Key` that base64-decodes to 16
/// bytes (item 5), else [`HandshakeError::BadHeader`]; and
/// `Sec-WebSocket-Version: 13` (item 6), else
/// [`HandshakeError::UnsupportedVersion`] (empty when missing), which is
/// answered with 426 (§4.4). Offered subprotocols must be tokens (item 8) and
/// `Origin`, if sent, must be one UTF-8 value (item 7). Offered extensions
/// (item 9) stay in the headers; permessage-deflate is negotiated from them
/// when the request is accepted.
pub(crate) fn parse_request(head: &[u8], max_headers: usize) -> Result<Request, HandshakeError> {
    let mut slots = vec![httparse::EMPTY_HEADER; header_slots(head, max_headers)];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HandshakeError::MalformedHttp(
                "incomplete HTTP head".to_owned(),
            ))
        }
        Err(e) => return Err(http_error(e, max_headers)),
    }
    let incomplete = || HandshakeError::MalformedHttp("incomplete request line".to_owned());
    let method = parsed.method.ok_or_else(incomplete)?;
    let target = parsed.path.ok_or_else(incomplete)?;
    let version = parsed.version.ok_or_else(incomplete)?;
    let headers = own_headers(parsed.headers);

    // Item 1.
    if method != "GET" {
        return Err(HandshakeError::NotGet(method.to_owned()));
    }
    if version != 1 {
        return Err(HandshakeError::NotHttp11);
    }
    if !valid_target(target) {
        return Err(HandshakeError::MalformedHttp(format!(
            "request-target {:?} is neither a path nor an absolute URI",
            excerpt(target.as_bytes())
        )));
    }

    // Item 2. RFC 7230 §5.4: more than one Host is a 400.
    let host = match occurs(&headers, "Host") {
        Occurs::Never => return Err(bad("Host", "missing")),
        Occurs::More => return Err(bad("Host", "sent more than once")),
        Occurs::Once(v) => {
            let v = trim_ows(v);
            if v.is_empty() || !v.iter().all(u8::is_ascii_graphic) {
                return Err(bad("Host", "not a valid authority"));
            }
            String::from_utf8_lossy(v).into_owned()
        }
    };

    // Item 3.
    if !has_token(&headers, "Upgrade", "websocket") {
        return Err(missing_or(
            "Upgrade",
            &headers,
            "does not include websocket",
        ));
    }
    // Item 4.
    if !has_token(&headers, "Connection", "upgrade") {
        return Err(missing_or(
            "Connection",
            &headers,
            "does not include Upgrade",
        ));
    }

    // Item 5.
    let key = match occurs(&headers, "Sec-WebSocket-Key") {
        Occurs::Never => return Err(bad("Sec-WebSocket-Key", "missing")),
        Occurs::More => return Err(bad("Sec-WebSocket-Key", "sent more than once")),
        Occurs::Once(v) => {
            let v = trim_ows(v);
            match base64::engine::general_purpose::STANDARD.decode(v) {
                Ok(nonce) if nonce.len() == 16 => {}
                _ => return Err(bad("Sec-WebSocket-Key", "not the base64 of 16 bytes")),
            }
            // Valid base64 is ASCII, so this is lossless.
            String::from_utf8_lossy(v).into_owned()
        }
    };

    // Item 6.
    let versions: Vec<&[u8]> = values(&headers, "Sec-WebSocket-Version").collect();
    match versions.as_slice() {
        [v] if trim_ows(v) == b"13" => {}
        [] => return Err(HandshakeError::UnsupportedVersion(String::new())),
        several => {
            let sent: Vec<String> = several.iter().map(|v| excerpt(trim_ows(v))).collect();
            return Err(HandshakeError::UnsupportedVersion(sent.join(", ")));
        }
    }

    // Item 8.
    let mut subprotocols = Vec::new();
    for element in list_elements(&headers, "Sec-WebSocket-Protocol") {
        match std::str::from_utf8(element) {
            Ok(name) if is_token(name) => subprotocols.push(name.to_owned()),
            _ => {
                return Err(bad(
                    "Sec-WebSocket-Protocol",
                    "an offered subprotocol is not a token",
                ))
            }
        }
    }

    // Item 7. One value, or an application's origin check could be
    // sidestepped by the copy it does not look at.
    let origin = match occurs(&headers, "Origin") {
        Occurs::Never => None,
        Occurs::More => return Err(bad("Origin", "sent more than once")),
        Occurs::Once(v) => match std::str::from_utf8(trim_ows(v)) {
            Ok(o) => Some(o.to_owned()),
            Err(_) => return Err(bad("Origin", "not UTF-8")),
        },
    };

    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        key,
        subprotocols,
        host,
        origin,
    })
}

/// `BadHeader` for `name`.
fn bad(name: &'static str, detail: &str) -> HandshakeError {
    HandshakeError::BadHeader {
        name,
        detail: detail.to_owned(),
    }
}

/// `BadHeader` for `name`: "missing" if absent, else `wrong`.
fn missing_or(name: &'static str, headers: &[(String, Vec<u8>)], wrong: &str) -> HandshakeError {
    match values(headers, name).next() {
        None => bad(name, "missing"),
        Some(_) => bad(name, wrong),
    }
}

/// Writes the 101 response (§4.2.2 item 5): `Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Accept` computed from the key, the
/// chosen subprotocol, the accepted extensions (`extensions`, a
/// `Sec-WebSocket-Extensions` value built by this crate), then the
/// application's headers.
///
/// The subprotocol must be one the client offered (§4.2.2 item 5.4: "one of
/// the values provided by the client"), else
/// [`ConfigError::InvalidSubprotocol`]; extra headers must be well-formed and
/// may not replace the handshake's own, else [`ConfigError::InvalidHeader`].
/// Nothing is appended to `out` on error.
pub(crate) fn encode_accept(
    req: &Request,
    accept: &Accept,
    extensions: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<(), ConfigError> {
    if let Some(chosen) = &accept.subprotocol {
        if !req.subprotocols.iter().any(|offered| offered == chosen) {
            return Err(ConfigError::InvalidSubprotocol(chosen.clone()));
        }
    }
    validate_headers(&accept.headers, HANDSHAKE_HEADERS)?;

    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    write_header(out, "Upgrade", b"websocket");
    write_header(out, "Connection", b"Upgrade");
    write_header(out, "Sec-WebSocket-Accept", accept_key(&req.key).as_bytes());
    if let Some(chosen) = &accept.subprotocol {
        write_header(out, "Sec-WebSocket-Protocol", chosen.as_bytes());
    }
    if let Some(extensions) = extensions {
        write_header(out, "Sec-WebSocket-Extensions", extensions.as_bytes());
    }
    write_headers(out, &accept.headers);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Writes the application's error response (§4.2.2 items 2 and 3: the server
/// may answer with any HTTP status instead of 101).
///
/// The status must be 4xx or 5xx, else [`ConfigError::InvalidState`].
/// `Content-Length` and `Connection: close` are written here, so extra
/// headers may not set them (nor `Transfer-Encoding`); they must be
/// well-formed, else [`ConfigError::InvalidHeader`]. Nothing is appended to
/// `out` on error.
pub(crate) fn encode_reject(reject: &Reject, out: &mut Vec<u8>) -> Result<(), ConfigError> {
    if !(400..=599).contains(&reject.status) {
        return Err(ConfigError::InvalidState(
            "reject status must be 4xx or 5xx",
        ));
    }
    validate_headers(&reject.headers, REJECT_HEADERS)?;
    write_error(out, reject.status, &reject.headers, &reject.body);
    Ok(())
}

/// Writes the HTTP error for a request that failed validation (§4.2.1: "return
/// an HTTP response with an appropriate error code").
///
/// An unsupported version gets `426 Upgrade Required` with
/// `Sec-WebSocket-Version: 13` (§4.2.2 item 4, §4.4); a method other than GET
/// gets `405` with `Allow: GET`; an oversized head `431`; anything else
/// `400`. The plain-text body names the problem without echoing peer bytes.
pub(crate) fn encode_refusal(err: &HandshakeError, out: &mut Vec<u8>) {
    let (status, extra, body): (u16, Option<(&str, &str)>, String) = match err {
        HandshakeError::UnsupportedVersion(_) => (
            426,
            Some(("Sec-WebSocket-Version", "13")),
            "unsupported WebSocket version: this server speaks version 13".to_owned(),
        ),
        HandshakeError::NotGet(_) => (
            405,
            Some(("Allow", "GET")),
            "a WebSocket upgrade must use GET".to_owned(),
        ),
        HandshakeError::HeadTooLarge { .. } => (431, None, "request head too large".to_owned()),
        HandshakeError::TooManyHeaders { .. } => (431, None, "too many request headers".to_owned()),
        HandshakeError::NotHttp11 => (400, None, "a WebSocket upgrade needs HTTP/1.1".to_owned()),
        HandshakeError::MalformedHttp(_) => (400, None, "malformed HTTP request".to_owned()),
        // `name` is one of this crate's static names, never peer data.
        HandshakeError::BadHeader { name, .. } => {
            (400, None, format!("bad or missing {name} header"))
        }
        _ => (400, None, "bad WebSocket upgrade request".to_owned()),
    };
    let mut headers = vec![(
        "Content-Type".to_owned(),
        "text/plain; charset=utf-8".to_owned(),
    )];
    if let Some((name, value)) = extra {
        headers.push((name.to_owned(), value.to_owned()));
    }
    let mut body = body.into_bytes();
    body.push(b'\n');
    write_error(out, status, &headers, &body);
}

/// Appends an error response: status line, `Content-Length`,
/// `Connection: close` (the connection ends after it), `headers`, body.
fn write_error(out: &mut Vec<u8>, status: u16, headers: &[(String, String)], body: &[u8]) {
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    write_header(out, "Content-Length", body.len().to_string().as_bytes());
    write_header(out, "Connection", b"close");
    write_headers(out, headers);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// The reason phrase for common 4xx / 5xx codes (RFC 9110 §15).
fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        s if s < 500 => "Client Error",
        _ => "Server Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// The §1.3 example request with `extra` header lines spliced in.
    fn request(extra: impl AsRef<[u8]>) -> Vec<u8> {
        let start = format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        [start.as_bytes(), extra.as_ref(), b"\r\n"].concat()
    }

    /// The same without the header called `drop`.
    fn request_without(drop: &str) -> Vec<u8> {
        let full = String::from_utf8(request("")).expect("ASCII");
        full.split_inclusive("\r\n")
            .filter(|line| !line.starts_with(&format!("{drop}:")))
            .collect::<String>()
            .into_bytes()
    }

    fn parse(head: &[u8]) -> Result<Request, HandshakeError> {
        parse_request(head, 32)
    }

    fn bad_header(head: &[u8]) -> &'static str {
        match parse(head) {
            Err(HandshakeError::BadHeader { name, .. }) => name,
            other => panic!("expected BadHeader, got {other:?}"),
        }
    }

    /// Parses an encoded response back with httparse and checks its framing.
    /// Status, headers and body of an encoded response.
    type Answer = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

    fn parse_answer(bytes: &[u8]) -> Answer {
        let mut slots = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut slots);
        let len = match resp.parse(bytes) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("not a complete response: {other:?}"),
        };
        let headers = own_headers(resp.headers);
        let body = bytes[len..].to_vec();
        let declared = values(&headers, "Content-Length")
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        if let Some(declared) = declared {
            assert_eq!(declared, body.len().to_string());
        }
        (resp.code.unwrap_or_default(), headers, body)
    }

    #[test]
    fn parses_the_rfc_example() {
        let req = parse(&request(
            "Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
        ))
        .expect("valid");
        assert_eq!(req.method(), "GET");
        assert_eq!(req.target(), "/chat");
        assert_eq!(req.path(), "/chat");
        assert_eq!(req.query(), None);
        assert_eq!(req.host(), Some("server.example.com"));
        assert_eq!(req.key(), KEY);
        assert_eq!(req.origin(), Some("http://example.com"));
        assert_eq!(req.subprotocols(), ["chat", "superchat"]);
        assert_eq!(req.headers().len(), 8);
        assert_eq!(
            req.header("SEC-WEBSOCKET-EXTENSIONS"),
            Some(&b"permessage-deflate"[..])
        );
        assert_eq!(req.header("X-Missing"), None);
    }

    #[test]
    fn tolerant_where_http_is() {
        let head = format!(
            "GET /a?b=c&d HTTP/1.1\r\nhost: h:1\r\nupgrade: h2c, WebSocket\r\nconnection: keep-alive\r\nCONNECTION: UPGRADE\r\nsec-websocket-key:  {KEY} \r\nsec-websocket-version: 13\r\nSec-WebSocket-Protocol: a,, b \r\nSec-WebSocket-Protocol: c\r\n\r\n"
        );
        let req = parse(head.as_bytes()).expect("valid");
        assert_eq!((req.path(), req.query()), ("/a", Some("b=c&d")));
        assert_eq!(req.key(), KEY);
        assert_eq!(req.subprotocols(), ["a", "b", "c"]);
        assert_eq!(req.origin(), None);
        assert_eq!(req.headers()[0].0, "host");
    }

    #[test]
    fn target_forms() {
        for (target, path, query) in [
            ("/", "/", None),
            ("/?", "/", Some("")),
            ("/x/y?q=1?2", "/x/y", Some("q=1?2")),
            ("http://h/p?q", "/p", Some("q")),
            ("wss://h:1", "/", None),
            ("ws://h?q", "/", Some("q")),
        ] {
            let head = request("").into_iter().skip(9).collect::<Vec<u8>>();
            let head = [format!("GET {target}").as_bytes(), &head].concat();
            let req = parse(&head).unwrap_or_else(|e| panic!("{target}: {e}"));
            assert_eq!(
                (req.target(), req.path(), req.query()),
                (target, path, query)
            );
        }
        for target in ["*", "chat", "/a#b", "ftp://h/", "http://"] {
            let head = request("").into_iter().skip(9).collect::<Vec<u8>>();
            let head = [format!("GET {target}").as_bytes(), &head].concat();
            assert!(
                matches!(parse(&head), Err(HandshakeError::MalformedHttp(_))),
                "{target}"
            );
        }
    }

    #[test]
    fn method_and_version() {
        let post = [&b"POST"[..], request("").get(3..).expect("long")].concat();
        assert_eq!(parse(&post), Err(HandshakeError::NotGet("POST".to_owned())));
        let lower = [&b"get"[..], request("").get(3..).expect("long")].concat();
        assert_eq!(parse(&lower), Err(HandshakeError::NotGet("get".to_owned())));
        let old = String::from_utf8(request(""))
            .expect("ASCII")
            .replace("HTTP/1.1", "HTTP/1.0");
        assert_eq!(parse(old.as_bytes()), Err(HandshakeError::NotHttp11));
    }

    #[test]
    fn required_headers() {
        assert_eq!(bad_header(&request_without("Host")), "Host");
        assert_eq!(bad_header(&request("Host: other\r\n")), "Host");
        let empty = String::from_utf8(request(""))
            .expect("ASCII")
            .replace("Host: server.example.com", "Host: ");
        assert_eq!(bad_header(empty.as_bytes()), "Host");
        assert_eq!(bad_header(&request_without("Upgrade")), "Upgrade");
        let h2c = String::from_utf8(request(""))
            .expect("ASCII")
            .replace("Upgrade: websocket", "Upgrade: h2c");
        assert_eq!(bad_header(h2c.as_bytes()), "Upgrade");
        assert_eq!(bad_header(&request_without("Connection")), "Connection");
        let close = String::from_utf8(request(""))
            .expect("ASCII")
            .replace("Connection: Upgrade", "Connection: close");
        assert_eq!(bad_header(close.as_bytes()), "Connection");
        assert_eq!(
            bad_header(&request_without("Sec-WebSocket-Key")),
            "Sec-WebSocket-Key"
        );
        assert_eq!(
            bad_header(&request(format!("Sec-WebSocket-Key: {KEY}\r\n"))),
            "Sec-WebSocket-Key"
        );
        for key in [
            "",
            "not base64!",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZXg=",
            "AAAA",
            "dGhlIHNhbXBsZSBub25jZQ==AAAA",
        ] {
            let head = String::from_utf8(request(""))
                .expect("ASCII")
                .replace(KEY, key);
            assert_eq!(bad_header(head.as_bytes()), "Sec-WebSocket-Key", "{key:?}");
        }
        assert_eq!(
            bad_header(&request("Sec-WebSocket-Protocol: a b\r\n")),
            "Sec-WebSocket-Protocol"
        );
        assert_eq!(
            bad_header(&request(b"Sec-WebSocket-Protocol: \xff\r\n")),
            "Sec-WebSocket-Protocol"
        );
        assert_eq!(bad_header(&request("Origin: a\r\nOrigin: b\r\n")), "Origin");
        assert_eq!(bad_header(&request(b"Origin: \xff\r\n")), "Origin");
    }

    #[test]
    fn version_must_be_13() {
        assert_eq!(
            parse(&request_without("Sec-WebSocket-Version")),
            Err(HandshakeError::UnsupportedVersion(String::new()))
        );
        for (value, reported) in [("8", "8"), ("13, 8", "13, 8"), ("", ""), (" 25 ", "25")] {
            let head = String::from_utf8(request("")).expect("ASCII").replace(
                "Sec-WebSocket-Version: 13",
                &format!("Sec-WebSocket-Version: {value}"),
            );
            assert_eq!(
                parse(head.as_bytes()),
                Err(HandshakeError::UnsupportedVersion(reported.to_owned())),
                "{value:?}"
            );
        }
        assert_eq!(
            parse(&request("Sec-WebSocket-Version: 13\r\n")),
            Err(HandshakeError::UnsupportedVersion("13, 13".to_owned()))
        );
    }

    #[test]
    fn malformed_partial_and_too_many() {
        for head in [
            &b""[..],
            b"GET / HTTP/1.1\r\nHost: h\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET  HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            assert!(
                matches!(parse(head), Err(HandshakeError::MalformedHttp(_))),
                "{head:?}"
            );
        }
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..10_000 {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_request(&head, 100),
            Err(HandshakeError::TooManyHeaders { max: 100 })
        );
        assert_eq!(
            parse_request(&head, 9_999),
            Err(HandshakeError::TooManyHeaders { max: 9_999 })
        );
        // Five headers fit a limit of five, not four.
        assert_eq!(
            parse_request(&request(""), 4),
            Err(HandshakeError::TooManyHeaders { max: 4 })
        );
        assert!(parse_request(&request(""), 5).is_ok());
        assert!(parse_request(&request(""), usize::MAX).is_ok());
    }

    #[test]
    fn never_panics_on_garbage() {
        let valid = request(b"Sec-WebSocket-Protocol: a\r\nOrigin: o\r\nX: \xfe\r\n");
        for n in 0..=valid.len() {
            let _ = parse_request(&valid[..n], 8);
        }
        let alphabet = b"GET / HTTP/1.1:\r\n,\t\xffHostUpgradewebsocketConnection?#";
        let mut state = 0x9e37_79b9_u32;
        for _ in 0..2_000 {
            let len = (state % 96) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    alphabet[state as usize % alphabet.len()]
                })
                .collect();
            if let Err(e) = parse_request(&bytes, 8) {
                let mut out = Vec::new();
                encode_refusal(&e, &mut out);
                assert!(out.starts_with(b"HTTP/1.1 4"));
            }
        }
    }

    #[test]
    fn encodes_the_rfc_accept() {
        let req = parse(&request("Sec-WebSocket-Protocol: chat, superchat\r\n")).expect("valid");
        let accept = Accept {
            subprotocol: Some("chat".to_owned()),
            headers: vec![("X-Server".to_owned(), "wharf".to_owned())],
        };
        let mut out = Vec::new();
        encode_accept(&req, &accept, None, &mut out).expect("encodes");
        assert_eq!(
            String::from_utf8(out).expect("ASCII"),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             X-Server: wharf\r\n\
             \r\n"
        );
    }

    #[test]
    fn accept_validates_its_input() {
        let req = parse(&request("Sec-WebSocket-Protocol: chat\r\n")).expect("valid");
        let mut out = Vec::new();
        for chosen in ["superchat", "Chat", "", "chat\r\nX: y"] {
            let accept = Accept {
                subprotocol: Some(chosen.to_owned()),
                headers: Vec::new(),
            };
            assert_eq!(
                encode_accept(&req, &accept, None, &mut out),
                Err(ConfigError::InvalidSubprotocol(chosen.to_owned()))
            );
        }
        for (name, value) in [
            ("X-A", "v\r\nSet-Cookie: stolen"),
            ("X-A", "v\n"),
            ("X-A", "\0"),
            ("X A", "v"),
            ("Sec-WebSocket-Accept", "forged"),
            ("sec-websocket-protocol", "other"),
            ("Upgrade", "h2c"),
            ("Connection", "close"),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ("Content-Length", "0"),
        ] {
            let accept = Accept {
                subprotocol: None,
                headers: vec![(name.to_owned(), value.to_owned())],
            };
            assert_eq!(
                encode_accept(&req, &accept, None, &mut out),
                Err(ConfigError::InvalidHeader(name.to_owned())),
                "{name:?}"
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn encodes_a_reject() {
        let reject = Reject {
            status: 403,
            headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
            body: b"go away".to_vec(),
        };
        let mut out = Vec::new();
        encode_reject(&reject, &mut out).expect("encodes");
        assert_eq!(
            String::from_utf8(out.clone()).expect("ASCII"),
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\ngo away"
        );
        let (status, _, body) = parse_answer(&out);
        assert_eq!((status, body.as_slice()), (403, &b"go away"[..]));
        // Unusual codes still get a phrase; upgrade-related headers are allowed.
        let reject = Reject {
            status: 599,
            headers: vec![("Sec-WebSocket-Version".to_owned(), "13".to_owned())],
            body: Vec::new(),
        };
        let mut out = Vec::new();
        encode_reject(&reject, &mut out).expect("encodes");
        assert!(out.starts_with(b"HTTP/1.1 599 Server Error\r\nContent-Length: 0\r\n"));
    }

    #[test]
    fn reject_validates_its_input() {
        let mut out = Vec::new();
        for status in [0, 101, 200, 302, 399, 600, 999] {
            let reject = Reject {
                status,
                headers: Vec::new(),
                body: Vec::new(),
            };
            assert_eq!(
                encode_reject(&reject, &mut out),
                Err(ConfigError::InvalidState(
                    "reject status must be 4xx or 5xx"
                ))
            );
        }
        for name in [
            "Content-Length",
            "connection",
            "Transfer-Encoding",
            "X\r\nY",
            "X-A",
        ] {
            let reject = Reject {
                status: 400,
                headers: vec![(name.to_owned(), "1\r\n\r\n<html>".to_owned())],
                body: Vec::new(),
            };
            assert_eq!(
                encode_reject(&reject, &mut out),
                Err(ConfigError::InvalidHeader(name.to_owned()))
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn refusals() {
        for (err, status, header) in [
            (
                HandshakeError::UnsupportedVersion("8".to_owned()),
                426,
                Some(("Sec-WebSocket-Version", &b"13"[..])),
            ),
            (
                HandshakeError::NotGet("POST".to_owned()),
                405,
                Some(("Allow", &b"GET"[..])),
            ),
            (HandshakeError::HeadTooLarge { max: 10 }, 431, None),
            (HandshakeError::TooManyHeaders { max: 10 }, 431, None),
            (HandshakeError::NotHttp11, 400, None),
            (HandshakeError::MalformedHttp("x".to_owned()), 400, None),
            (
                HandshakeError::BadHeader {
                    name: "Sec-WebSocket-Key",
                    detail: "\r\n<script>".to_owned(),
                },
                400,
                None,
            ),
            (HandshakeError::Eof, 400, None),
        ] {
            let mut out = Vec::new();
            encode_refusal(&err, &mut out);
            let (got, headers, body) = parse_answer(&out);
            assert_eq!(got, status, "{err:?}");
            assert_eq!(values(&headers, "Connection").next(), Some(&b"close"[..]));
            if let Some((name, value)) = header {
                assert_eq!(values(&headers, name).next(), Some(value), "{err:?}");
            }
            assert!(
                !body.is_empty()
                    && body
                        .iter()
                        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\n')
            );
            assert!(
                !body.windows(8).any(|w| w == b"<script>"),
                "peer data must not be echoed"
            );
        }
        let mut out = Vec::new();
        encode_refusal(
            &HandshakeError::BadHeader {
                name: "Host",
                detail: String::new(),
            },
            &mut out,
        );
        assert!(out.ends_with(b"\r\n\r\nbad or missing Host header\n"));
    }

    #[test]
    fn refusal_for_every_parse_failure_round_trips() {
        // Whatever parse_request reports, encode_refusal turns into valid HTTP.
        let heads: Vec<Vec<u8>> = vec![
            request_without("Host"),
            request_without("Sec-WebSocket-Version"),
            [&b"PUT"[..], request("").get(3..).expect("long")].concat(),
            b"garbage\r\n\r\n".to_vec(),
        ];
        for head in heads {
            let err = parse(&head).expect_err("invalid");
            let mut out = Vec::new();
            encode_refusal(&err, &mut out);
            let (status, _, _) = parse_answer(&out);
            assert!((400..=499).contains(&status));
        }
    }
}
