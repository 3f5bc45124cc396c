//! Client side of the opening handshake (§4.1): the upgrade request we send
//! and the checks the server's answer must pass.

use super::deflate::{self, ClientOffer, DeflateParams};
use super::{
    accept_key, excerpt, has_token, header_slots, http_error, is_token, occurs, own_headers,
    trim_ows, validate_headers, values, write_header, write_headers, Occurs, HANDSHAKE_HEADERS,
};
use crate::error::{ConfigError, HandshakeError};

/// What a client asks for: the URL plus optional subprotocols and headers.
///
/// The builder methods never fail; everything is checked when the request is
/// encoded, so a bad subprotocol or header surfaces as a [`ConfigError`] then.
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
    /// Parses a `ws://` or `wss://` URL (§3).
    ///
    /// The scheme must be `ws` or `wss` and a host is required. A fragment is
    /// refused (§3: fragment identifiers MUST NOT be used; a `#` in the
    /// resource name must be written `%23`), and so is user information,
    /// which the `ws-URI` grammar has no room for. The port defaults to 80
    /// for `ws` and 443 for `wss`.
    pub fn new(url: &str) -> Result<ClientRequest, ConfigError> {
        let parsed = url::Url::parse(url).map_err(|e| ConfigError::InvalidUrl(e.to_string()))?;
        let tls = match parsed.scheme() {
            "ws" => false,
            "wss" => true,
            other => {
                return Err(ConfigError::InvalidUrl(format!(
                    "scheme must be ws or wss, not {other}"
                )))
            }
        };
        if parsed.fragment().is_some() {
            return Err(ConfigError::InvalidUrl(
                "a WebSocket URI must not have a fragment (RFC 6455 §3)".to_owned(),
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(ConfigError::InvalidUrl(
                "a WebSocket URI has no user information (RFC 6455 §3)".to_owned(),
            ));
        }
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(ConfigError::InvalidUrl("the URL has no host".to_owned())),
        };
        if host.is_empty() {
            return Err(ConfigError::InvalidUrl("the URL has no host".to_owned()));
        }
        let port = parsed.port().unwrap_or(default_port(tls));
        let req = ClientRequest {
            url: parsed,
            host,
            port,
            tls,
            subprotocols: Vec::new(),
            headers: Vec::new(),
        };
        // The url crate percent-encodes spaces and controls; this only guards
        // the request line should that ever change.
        if !req
            .target()
            .bytes()
            .all(|b| b.is_ascii_graphic() || b >= 0x80)
        {
            return Err(ConfigError::InvalidUrl(
                "the resource name holds whitespace or control characters".to_owned(),
            ));
        }
        Ok(req)
    }
    /// Offers a subprotocol (`Sec-WebSocket-Protocol`), in preference order.
    ///
    /// The name must be a non-empty HTTP token, offered once (§4.1 item 10);
    /// this is checked when the request is encoded.
    #[must_use]
    pub fn subprotocol(mut self, name: impl Into<String>) -> Self {
        self.subprotocols.push(name.into());
        self
    }
    /// Adds a header (e.g. `Authorization`).
    ///
    /// The name must be an HTTP token, the value may not contain CR, LF or
    /// NUL, and the handshake's own headers (`Host`, `Upgrade`,
    /// `Connection`, `Sec-WebSocket-*`, `Content-Length`,
    /// `Transfer-Encoding`) cannot be set this way; this is checked when the
    /// request is encoded.
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
    /// Extra headers, in the order they were added.
    #[must_use]
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The request-target: the path (`/` if empty) plus `?query` (§4.1 item 3).
    fn target(&self) -> String {
        let path = self.url.path();
        let mut target = String::with_capacity(path.len() + 1);
        target.push_str(if path.is_empty() { "/" } else { path });
        if let Some(query) = self.url.query() {
            target.push('?');
            target.push_str(query);
        }
        target
    }

    /// The `Host` header value: the host, IPv6 in brackets, with `:port` only
    /// when it is not the scheme's default (§4.1 item 4).
    fn host_header(&self) -> String {
        let mut value = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port != default_port(self.tls) {
            value.push(':');
            value.push_str(&self.port.to_string());
        }
        value
    }
}

/// 80 for `ws`, 443 for `wss` (§3).
fn default_port(tls: bool) -> u16 {
    if tls {
        443
    } else {
        80
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
    deflate: Option<DeflateParams>,
}

impl Response {
    /// The permessage-deflate parameters the server accepted, if it did
    /// (RFC 7692 §7.1).
    #[must_use]
    pub fn deflate(&self) -> Option<&DeflateParams> {
        self.deflate.as_ref()
    }
}

/// Writes the upgrade request (§4.1): `GET` with `Host`, `Upgrade: websocket`,
/// `Connection: Upgrade`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`,
/// the offered subprotocols, the permessage-deflate offer (RFC 7692 §5.1),
/// then the caller's headers.
///
/// Subprotocols must be distinct non-empty tokens
/// ([`ConfigError::InvalidSubprotocol`]); extra headers must be well-formed
/// and may not replace the handshake's own ([`ConfigError::InvalidHeader`]).
/// Nothing is appended to `out` on error.
pub(crate) fn encode_request(
    req: &ClientRequest,
    key: &str,
    deflate: Option<&ClientOffer>,
    out: &mut Vec<u8>,
) -> Result<(), ConfigError> {
    for (i, proto) in req.subprotocols.iter().enumerate() {
        if !is_token(proto) || req.subprotocols.iter().take(i).any(|p| p == proto) {
            return Err(ConfigError::InvalidSubprotocol(proto.clone()));
        }
    }
    validate_headers(&req.headers, HANDSHAKE_HEADERS)?;
    // The key comes from this crate's RNG, base64 by construction; checking it
    // keeps a bug elsewhere from turning into header injection.
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err(ConfigError::InvalidHeader("Sec-WebSocket-Key".to_owned()));
    }

    out.extend_from_slice(b"GET ");
    out.extend_from_slice(req.target().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_header(out, "Host", req.host_header().as_bytes());
    write_header(out, "Upgrade", b"websocket");
    write_header(out, "Connection", b"Upgrade");
    write_header(out, "Sec-WebSocket-Key", key.as_bytes());
    write_header(out, "Sec-WebSocket-Version", b"13");
    if !req.subprotocols.is_empty() {
        write_header(
            out,
            "Sec-WebSocket-Protocol",
            req.subprotocols.join(", ").as_bytes(),
        );
    }
    if let Some(offer) = deflate {
        write_header(
            out,
            "Sec-WebSocket-Extensions",
            offer.header_value().as_bytes(),
        );
    }
    write_headers(out, &req.headers);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Validates the server's response head (§4.1, "the client MUST validate the
/// server's response as follows").
///
/// `head` is the whole head including the blank line. A status other than 101
/// is [`HandshakeError::Rejected`], carrying the headers (item 1). Then:
/// `Upgrade` must be `websocket` (item 2), `Connection` must hold the token
/// `upgrade` (item 3), both ASCII case-insensitive; `Sec-WebSocket-Accept`
/// must be [`accept_key`]`(key)`, whitespace aside (item 4); an extension
/// must be the permessage-deflate of `deflate`, answered as RFC 7692 allows
/// (item 5, see [`deflate::accept_response`]), and none may be named when
/// `deflate` is `None`; and a `Sec-WebSocket-Protocol`, if present, must be
/// exactly one of `offered` (item 6).
pub(crate) fn parse_response(
    head: &[u8],
    key: &str,
    offered: &[String],
    deflate: Option<&ClientOffer>,
    max_headers: usize,
) -> Result<Response, HandshakeError> {
    let mut slots = vec![httparse::EMPTY_HEADER; header_slots(head, max_headers)];
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(HandshakeError::MalformedHttp(
                "incomplete HTTP head".to_owned(),
            ))
        }
        Err(e) => return Err(http_error(e, max_headers)),
    }
    let status = parsed
        .code
        .ok_or_else(|| HandshakeError::MalformedHttp("no status code".to_owned()))?;
    let headers = own_headers(parsed.headers);
    if status != 101 {
        return Err(HandshakeError::Rejected { status, headers });
    }

    // Item 2: Upgrade: websocket.
    match occurs(&headers, "Upgrade") {
        Occurs::Once(v) if trim_ows(v).eq_ignore_ascii_case(b"websocket") => {}
        Occurs::Never => return Err(bad("Upgrade", "missing".to_owned())),
        Occurs::Once(v) => {
            return Err(bad(
                "Upgrade",
                format!("expected websocket, got {:?}", excerpt(v)),
            ))
        }
        Occurs::More => return Err(bad("Upgrade", "sent more than once".to_owned())),
    }

    // Item 3: Connection includes the token Upgrade.
    if !has_token(&headers, "Connection", "upgrade") {
        let detail = match values(&headers, "Connection").next() {
            None => "missing".to_owned(),
            Some(v) => format!("does not include upgrade: {:?}", excerpt(v)),
        };
        return Err(bad("Connection", detail));
    }

    // Item 4: Sec-WebSocket-Accept.
    match occurs(&headers, "Sec-WebSocket-Accept") {
        Occurs::Never => return Err(bad("Sec-WebSocket-Accept", "missing".to_owned())),
        Occurs::More => {
            return Err(bad(
                "Sec-WebSocket-Accept",
                "sent more than once".to_owned(),
            ))
        }
        Occurs::Once(v) => {
            if trim_ows(v) != accept_key(key).as_bytes() {
                return Err(HandshakeError::AcceptMismatch);
            }
        }
    }

    // Item 5: only what we offered.
    let deflate = match deflate {
        Some(offer) => deflate::accept_response(&headers, offer)?,
        None => {
            if let Some(ext) = deflate::first_extension(&headers) {
                return Err(HandshakeError::UnofferedExtension(excerpt(ext)));
            }
            None
        }
    };

    // Item 6: at most one subprotocol, one we offered (compared exactly).
    let subprotocol = match occurs(&headers, "Sec-WebSocket-Protocol") {
        Occurs::Never => None,
        Occurs::Once(v) => {
            let chosen = std::str::from_utf8(trim_ows(v))
                .ok()
                .and_then(|name| offered.iter().find(|o| o.as_str() == name));
            match chosen {
                Some(name) => Some(name.clone()),
                None => return Err(HandshakeError::UnofferedSubprotocol(excerpt(trim_ows(v)))),
            }
        }
        Occurs::More => {
            let all: Vec<String> = values(&headers, "Sec-WebSocket-Protocol")
                .map(|v| excerpt(trim_ows(v)))
                .collect();
            return Err(HandshakeError::UnofferedSubprotocol(all.join(", ")));
        }
    };

    Ok(Response {
        status,
        subprotocol,
        headers,
        deflate,
    })
}

/// `BadHeader` for `name`.
fn bad(name: &'static str, detail: String) -> HandshakeError {
    HandshakeError::BadHeader { name, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn encode(req: &ClientRequest) -> Result<String, ConfigError> {
        let mut out = Vec::new();
        let r = encode_request(req, KEY, None, &mut out);
        if r.is_err() {
            assert!(out.is_empty(), "nothing may be written on error");
        }
        r.map(|()| String::from_utf8(out).expect("ASCII"))
    }

    fn req(url: &str) -> ClientRequest {
        ClientRequest::new(url).expect("valid URL")
    }

    /// A valid 101 with `extra` header lines spliced in.
    fn response(extra: impl AsRef<[u8]>) -> Vec<u8> {
        let start = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n"
        );
        [start.as_bytes(), extra.as_ref(), b"\r\n"].concat()
    }

    fn parse(head: &[u8], offered: &[&str]) -> Result<Response, HandshakeError> {
        let offered: Vec<String> = offered.iter().map(|s| (*s).to_owned()).collect();
        parse_response(head, KEY, &offered, None, 32)
    }

    #[test]
    fn url_parsing() {
        let r = req("ws://example.com/chat");
        assert_eq!((r.host(), r.port(), r.is_tls()), ("example.com", 80, false));
        let r = req("wss://example.com");
        assert_eq!((r.host(), r.port(), r.is_tls()), ("example.com", 443, true));
        let r = req("ws://127.0.0.1:9001/a?b=c");
        assert_eq!((r.host(), r.port()), ("127.0.0.1", 9001));
        let r = req("wss://[::1]:8443/");
        assert_eq!((r.host(), r.port()), ("::1", 8443));
        assert_eq!(r.url().as_str(), "wss://[::1]:8443/");
    }

    #[test]
    fn bad_urls() {
        for url in [
            "http://example.com/",
            "https://example.com/",
            "ftp://example.com/",
            "ws://example.com/#frag",
            "ws://example.com/#",
            "ws://user:pw@example.com/",
            "ws://user@example.com/",
            "ws://",
            "ws:",
            "not a url",
            "",
            "ws://[::1/",
            "ws://example.com:99999/",
        ] {
            assert!(
                matches!(ClientRequest::new(url), Err(ConfigError::InvalidUrl(_))),
                "{url:?} should be refused"
            );
        }
    }

    #[test]
    fn encodes_the_exact_request() {
        let text = encode(&req("ws://server.example.com/chat")).expect("encodes");
        assert_eq!(
            text,
            "GET /chat HTTP/1.1\r\n\
             Host: server.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             \r\n"
        );
    }

    #[test]
    fn encodes_subprotocols_headers_target_and_host() {
        let r = req("wss://example.com:8443/a/b?x=1&y=%20")
            .subprotocol("chat")
            .subprotocol("superchat")
            .header("Authorization", "Basic Zm9vOmJhcg==")
            .header("X-Empty", "");
        let text = encode(&r).expect("encodes");
        assert!(text.starts_with("GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com:8443\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Protocol: chat, superchat\r\n"));
        assert!(text.ends_with("\r\nAuthorization: Basic Zm9vOmJhcg==\r\nX-Empty: \r\n\r\n"));
        // Spaces in the URL are percent-encoded by the parser.
        let text = encode(&req("ws://h/a b?c d")).expect("encodes");
        assert!(text.starts_with("GET /a%20b?c%20d HTTP/1.1\r\n"), "{text}");
        let text = encode(&req("ws://h?q")).expect("encodes");
        assert!(
            text.starts_with("GET /?q HTTP/1.1\r\nHost: h\r\n"),
            "{text}"
        );
        let text = encode(&req("ws://[fe80::1]:80")).expect("encodes");
        assert!(
            text.starts_with("GET / HTTP/1.1\r\nHost: [fe80::1]\r\n"),
            "{text}"
        );
    }

    #[test]
    fn refuses_bad_subprotocols() {
        for (protos, bad_one) in [
            (&["chat", ""][..], ""),
            (&["chat", "chat"][..], "chat"),
            (&["a b"][..], "a b"),
            (&["a,b"][..], "a,b"),
            (&["a\r\nX-Evil: 1"][..], "a\r\nX-Evil: 1"),
            (&["caf\u{e9}"][..], "caf\u{e9}"),
        ] {
            let mut r = req("ws://h/");
            for p in protos {
                r = r.subprotocol(*p);
            }
            assert_eq!(
                encode(&r),
                Err(ConfigError::InvalidSubprotocol(bad_one.to_owned()))
            );
        }
    }

    #[test]
    fn refuses_header_injection_and_overrides() {
        for (name, value) in [
            ("X-A", "ok\r\nX-Injected: yes"),
            ("X-A", "ok\n\nGET / HTTP/1.1"),
            ("X-A", "ok\r"),
            ("X-A", "nul\0"),
            ("X A", "v"),
            ("X-A:", "v"),
            ("", "v"),
            ("host", "evil.example"),
            ("Upgrade", "h2c"),
            ("CONNECTION", "close"),
            ("Sec-WebSocket-Key", "x"),
            ("Sec-WebSocket-Version", "8"),
            ("Sec-WebSocket-Protocol", "x"),
            ("Sec-WebSocket-Accept", "x"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("Content-Length", "5"),
            ("Transfer-Encoding", "chunked"),
        ] {
            let r = req("ws://h/").header(name, value);
            assert_eq!(
                encode(&r),
                Err(ConfigError::InvalidHeader(name.to_owned())),
                "{name:?}"
            );
        }
    }

    #[test]
    fn refuses_a_broken_key() {
        let mut out = Vec::new();
        let err = encode_request(&req("ws://h/"), "a\r\nb", None, &mut out);
        assert_eq!(
            err,
            Err(ConfigError::InvalidHeader("Sec-WebSocket-Key".to_owned()))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn appends_to_existing_output() {
        let mut out = b"already".to_vec();
        encode_request(&req("ws://h/"), KEY, None, &mut out).expect("encodes");
        assert!(out.starts_with(b"alreadyGET / HTTP/1.1\r\n"));
    }

    #[test]
    fn accepts_a_valid_response() {
        let resp = parse(&response(""), &[]).expect("valid");
        assert_eq!(resp.status, 101);
        assert_eq!(resp.subprotocol, None);
        assert_eq!(resp.headers.len(), 3);
        assert_eq!(
            resp.headers[0],
            ("Upgrade".to_owned(), b"websocket".to_vec())
        );
        // Case, list syntax and surrounding whitespace are tolerated.
        let head = format!(
            "HTTP/1.1 101 OK\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive,  UPGRADE \r\nsec-websocket-accept:   {ACCEPT}  \r\nSec-WebSocket-Protocol: chat\r\nSec-WebSocket-Extensions: \r\n\r\n"
        );
        let resp = parse(head.as_bytes(), &["superchat", "chat"]).expect("valid");
        assert_eq!(resp.subprotocol.as_deref(), Some("chat"));
        assert_eq!(resp.headers[0].0, "upgrade");
        // Connection spread over two headers.
        let head = format!(
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        assert!(parse(head.as_bytes(), &[]).is_ok());
    }

    #[test]
    fn non_101_is_rejected_with_headers() {
        let head =
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            parse(head, &[]),
            Err(HandshakeError::Rejected {
                status: 401,
                headers: vec![
                    ("WWW-Authenticate".to_owned(), b"Basic".to_vec()),
                    ("Content-Length".to_owned(), b"0".to_vec()),
                ],
            })
        );
        let head = b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\n\r\n";
        assert!(matches!(
            parse(head, &[]),
            Err(HandshakeError::Rejected { status: 200, .. })
        ));
    }

    #[test]
    fn upgrade_header_is_checked() {
        let missing = format!(
            "HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
        );
        for head in [
            missing,
            format!("HTTP/1.1 101 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"),
            format!("HTTP/1.1 101 OK\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"),
            format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"),
        ] {
            assert!(
                matches!(parse(head.as_bytes(), &[]), Err(HandshakeError::BadHeader { name: "Upgrade", .. })),
                "{head}"
            );
        }
    }

    #[test]
    fn connection_header_is_checked() {
        for conn in [
            "",
            "Connection: close\r\n",
            "Connection: upgraded\r\n",
            "Connection: \r\n",
        ] {
            let head = format!("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n{conn}Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n");
            assert!(
                matches!(
                    parse(head.as_bytes(), &[]),
                    Err(HandshakeError::BadHeader {
                        name: "Connection",
                        ..
                    })
                ),
                "{conn:?}"
            );
        }
    }

    #[test]
    fn accept_header_is_checked() {
        let head = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        assert!(matches!(
            parse(head, &[]),
            Err(HandshakeError::BadHeader {
                name: "Sec-WebSocket-Accept",
                ..
            })
        ));
        let head = b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n";
        assert_eq!(parse(head, &[]), Err(HandshakeError::AcceptMismatch));
        // The key must be used as sent, not decoded, and compared exactly.
        let lower = format!(
            "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            ACCEPT.to_ascii_lowercase()
        );
        assert_eq!(
            parse(lower.as_bytes(), &[]),
            Err(HandshakeError::AcceptMismatch)
        );
        let twice = response(format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"));
        assert!(matches!(
            parse(&twice, &[]),
            Err(HandshakeError::BadHeader {
                name: "Sec-WebSocket-Accept",
                ..
            })
        ));
    }

    #[test]
    fn extensions_are_refused() {
        let head = response("Sec-WebSocket-Extensions: permessage-deflate\r\n");
        assert_eq!(
            parse(&head, &[]),
            Err(HandshakeError::UnofferedExtension(
                "permessage-deflate".to_owned()
            ))
        );
        let head = response("Sec-WebSocket-Extensions: , x-foo; a=1\r\n");
        assert_eq!(
            parse(&head, &[]),
            Err(HandshakeError::UnofferedExtension("x-foo; a=1".to_owned()))
        );
        assert!(parse(&response("Sec-WebSocket-Extensions:\r\n"), &[]).is_ok());
    }

    #[test]
    fn subprotocol_must_be_offered() {
        let head = response("Sec-WebSocket-Protocol: chat\r\n");
        assert_eq!(
            parse(&head, &[]),
            Err(HandshakeError::UnofferedSubprotocol("chat".to_owned()))
        );
        assert_eq!(
            parse(&head, &["Chat"]),
            Err(HandshakeError::UnofferedSubprotocol("chat".to_owned()))
        );
        assert_eq!(
            parse(&head, &["a", "chat"]).map(|r| r.subprotocol),
            Ok(Some("chat".to_owned()))
        );
        let head = response("Sec-WebSocket-Protocol: a, chat\r\n");
        assert_eq!(
            parse(&head, &["a", "chat"]),
            Err(HandshakeError::UnofferedSubprotocol("a, chat".to_owned()))
        );
        let head = response("Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: chat\r\n");
        assert!(matches!(
            parse(&head, &["a", "chat"]),
            Err(HandshakeError::UnofferedSubprotocol(_))
        ));
        let head = response("Sec-WebSocket-Protocol:\r\n");
        assert_eq!(
            parse(&head, &["a"]),
            Err(HandshakeError::UnofferedSubprotocol(String::new()))
        );
        let head = response(b"Sec-WebSocket-Protocol: \xff\r\n");
        assert!(matches!(
            parse(&head, &["a"]),
            Err(HandshakeError::UnofferedSubprotocol(_))
        ));
    }

    #[test]
    fn malformed_and_partial_heads() {
        for head in [
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"[..],
            b"",
            b"HTTP/1.1 101",
            b"HTTP/2 101 OK\r\n\r\n",
            b"HTTP/1.1 1x1 OK\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 101 OK\r\nBad Header: x\r\n\r\n",
            b"HTTP/1.1 101 OK\r\n folded: x\r\n\r\n",
        ] {
            assert!(
                matches!(parse(head, &[]), Err(HandshakeError::MalformedHttp(_))),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn too_many_headers() {
        let mut head = b"HTTP/1.1 101 Switching Protocols\r\n".to_vec();
        for i in 0..10_000 {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        assert_eq!(
            parse_response(&head, KEY, &[], None, 100),
            Err(HandshakeError::TooManyHeaders { max: 100 })
        );
        // The limit is exact.
        let three = response("");
        assert!(parse_response(&three, KEY, &[], None, 3).is_ok());
        assert_eq!(
            parse_response(&three, KEY, &[], None, 2),
            Err(HandshakeError::TooManyHeaders { max: 2 })
        );
        // A huge limit does not allocate a huge array.
        assert!(parse_response(&three, KEY, &[], None, usize::MAX).is_ok());
    }

    #[test]
    fn never_panics_on_garbage() {
        let valid = response(b"Sec-WebSocket-Protocol: chat\r\nX: \xfe\xff\r\n");
        let offered = vec!["chat".to_owned()];
        for n in 0..=valid.len() {
            let _ = parse_response(&valid[..n], KEY, &offered, None, 8);
        }
        // A cheap deterministic generator over bytes that matter to HTTP.
        let alphabet = b"HTTP/1.1 101:\r\n,\t\xffabcUpgradewebsocket";
        let mut state = 0x2545_f491_u32;
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
            let _ = parse_response(&bytes, KEY, &offered, None, 8);
            let _ = parse_response(&bytes, KEY, &offered, None, 0);
        }
    }
}
