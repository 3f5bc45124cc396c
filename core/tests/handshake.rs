//! The opening handshake in both roles over ws and wss (real rustls, rcgen
//! certificates), the application's accept/reject decision, and every
//! rejected certificate case with its typed error.

mod support;

use std::sync::Arc;
use std::time::Instant;

use support::Pair;
use wharf_core::test_certs::TestPki;
use wharf_core::{
    Accept, ClientRequest, ClientTls, Config, Connection, Error, Event, HandshakeError, Message,
    Reject, ServerTls, TlsError,
};

fn echo_round_trip(p: &mut Pair) {
    p.client.send(Message::text("ping?")).unwrap();
    p.drive();
    assert_eq!(p.server_messages(), vec![Message::text("ping?")]);
    p.server.send(Message::binary(vec![1, 2, 3])).unwrap();
    p.drive();
    assert_eq!(p.client_messages(), vec![Message::binary(vec![1, 2, 3])]);
}

#[test]
fn ws_handshake_both_roles() {
    let mut p = Pair::plain(Config::default());
    p.open();
    let req = p
        .server_events
        .iter()
        .find_map(|e| match e {
            Event::Request(r) => Some(r.clone()),
            _ => None,
        })
        .expect("server saw the request");
    assert_eq!(req.path(), "/");
    assert_eq!(req.host(), Some("localhost"));
    let open = p
        .client_events
        .iter()
        .find_map(|e| match e {
            Event::Open(o) => Some(o.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(open.response.unwrap().status, 101);
    echo_round_trip(&mut p);
}

#[test]
fn wss_handshake_both_roles_dns_and_ip() {
    let pki = TestPki::new();
    let server_tls = pki.server_tls(&["localhost", "127.0.0.1", "::1"]);
    let client_tls = pki.client_tls();
    for url in [
        "wss://localhost/feed?x=1",
        "wss://127.0.0.1:9443/",
        "wss://[::1]/",
    ] {
        let mut p = Pair::tls(Config::default(), url, &client_tls, &server_tls);
        p.open();
        echo_round_trip(&mut p);
    }
}

#[test]
fn subprotocol_negotiation_and_extra_headers() {
    let request = ClientRequest::new("ws://localhost/chat")
        .unwrap()
        .subprotocol("v2.wharf")
        .subprotocol("v1.wharf")
        .header("Authorization", "Bearer t0ken");
    let mut p = Pair::with_request(Config::default(), &request, None, None);
    p.accept = Some(Accept {
        subprotocol: Some("v1.wharf".into()),
        headers: vec![("X-Server".into(), "wharf".into())],
    });
    p.open();
    let Some(Event::Request(req)) = p.server_events.first() else {
        panic!("no request")
    };
    assert_eq!(req.subprotocols(), ["v2.wharf", "v1.wharf"]);
    assert_eq!(req.header("authorization"), Some(&b"Bearer t0ken"[..]));
    let Some(Event::Open(open)) = p.client_events.first() else {
        panic!("no open")
    };
    assert_eq!(open.subprotocol.as_deref(), Some("v1.wharf"));
    assert_eq!(
        open.response
            .as_ref()
            .unwrap()
            .headers
            .iter()
            .find(|(n, _)| n == "X-Server")
            .map(|(_, v)| v.as_slice()),
        Some(&b"wharf"[..])
    );
}

#[test]
fn accepting_an_unoffered_subprotocol_is_refused_to_the_caller() {
    let mut p = Pair::plain(Config::default());
    p.accept = None;
    p.drive();
    let err = p
        .server
        .accept(Accept {
            subprotocol: Some("never-offered".into()),
            headers: vec![],
        })
        .unwrap_err();
    assert!(matches!(
        err,
        wharf_core::ConfigError::InvalidSubprotocol(_)
    ));
    // The request is still waiting: a proper answer works.
    p.server.accept(Accept::default()).unwrap();
    p.open();
}

#[test]
fn application_rejection_reaches_the_client_as_a_status() {
    let mut p = Pair::plain(Config::default());
    p.accept = None;
    p.drive();
    p.server
        .reject(Reject {
            status: 403,
            headers: vec![],
            body: b"no entry".to_vec(),
        })
        .unwrap();
    p.drive();
    let c = p.client_closed().expect("client ended");
    assert!(matches!(
        c.error,
        Some(Error::Handshake(HandshakeError::Rejected {
            status: 403,
            ..
        }))
    ));
    assert_eq!(
        p.server_closed().unwrap().error,
        Some(Error::Handshake(HandshakeError::RejectedByApplication(403)))
    );
}

fn raw_server_answer(request: &[u8], config: Config) -> (String, Vec<Event>) {
    let now = Instant::now();
    let mut server = Connection::server(Arc::new(config), None, now).unwrap();
    server.handle_input(now, request);
    let mut out = Vec::new();
    while server.poll_transmit(&mut out) > 0 {}
    let mut events = Vec::new();
    while let Some(e) = server.poll_event() {
        events.push(e);
    }
    (String::from_utf8_lossy(&out).into_owned(), events)
}

#[test]
fn wrong_version_gets_426_with_supported_version() {
    let (answer, events) = raw_server_answer(
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
        Config::default(),
    );
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Version: 13"));
    assert!(matches!(
        support::closed(&events).unwrap().error,
        Some(Error::Handshake(HandshakeError::UnsupportedVersion(_)))
    ));
}

#[test]
fn bad_requests_get_http_errors() {
    let cases: [(&[u8], &str); 4] = [
        (b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 405"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", "HTTP/1.1 400"),
        (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", "HTTP/1.1 400"),
        (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", "HTTP/1.1 400"),
    ];
    for (req, status) in cases {
        let (answer, events) = raw_server_answer(req, Config::default());
        assert!(answer.starts_with(status), "{answer}");
        assert!(support::closed(&events).is_some());
    }
}

#[test]
fn huge_head_is_rejected_after_the_limit_not_buffered() {
    let config = Config::default();
    let now = Instant::now();
    let mut server = Connection::server(Arc::new(config), None, now).unwrap();
    server.handle_input(now, b"GET / HTTP/1.1\r\nX-Big: ");
    let piece = vec![b'a'; 64 * 1024];
    let mut fed = 0usize;
    // 20 MB offered; the server must give up within the first 16 KiB + one piece.
    while fed < 20_000_000 && !server.is_closed() {
        server.handle_input(now, &piece);
        fed += piece.len();
    }
    assert!(server.is_closed());
    assert!(fed <= 64 * 1024, "read {fed} bytes before refusing");
    let mut out = Vec::new();
    while server.poll_transmit(&mut out) > 0 {}
    assert!(out.starts_with(b"HTTP/1.1 431"));
}

#[test]
fn ten_thousand_headers_are_rejected() {
    let mut config = Config::default();
    config.max_header_bytes = 1 << 20;
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..10_000 {
        req.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let (answer, events) = raw_server_answer(&req, config);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(matches!(
        support::closed(&events).unwrap().error,
        Some(Error::Handshake(HandshakeError::TooManyHeaders { .. }))
    ));
}

#[test]
fn head_delivered_one_byte_at_a_time_is_parsed_once() {
    let mut p = Pair::plain(Config::default());
    p.chunk = 1;
    p.open();
    assert_eq!(
        p.server_events
            .iter()
            .filter(|e| matches!(e, Event::Request(_)))
            .count(),
        1
    );
}

#[test]
fn wss_url_without_tls_config_is_a_caller_error() {
    let req = ClientRequest::new("wss://localhost/").unwrap();
    let err =
        Connection::client(Arc::new(Config::default()), &req, None, Instant::now()).unwrap_err();
    assert_eq!(err, wharf_core::ConfigError::TlsRequired);
}

// ---- rejected certificates ----

/// Runs a TLS pair that must fail; returns the client's and server's errors.
fn tls_failure(url: &str, client_tls: &ClientTls, server_tls: &ServerTls) -> (Error, Error) {
    let mut p = Pair::tls(Config::default(), url, client_tls, server_tls);
    p.drive();
    let c = p.client_closed().expect("client failed").clone();
    let s = p
        .server_closed()
        .expect("server failed (the alert reached it)")
        .clone();
    assert!(!p.client.is_open() && !p.server.is_open());
    (c.error.unwrap(), s.error.unwrap())
}

fn server_tls_from(cert: (String, String)) -> ServerTls {
    ServerTls::builder(cert.0.as_bytes(), cert.1.as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

#[test]
fn untrusted_issuer_is_unknown_issuer() {
    let trusted = TestPki::new();
    let other = TestPki::new();
    let (c, s) = tls_failure(
        "wss://localhost/",
        &trusted.client_tls(),
        &other.server_tls(&["localhost"]),
    );
    assert_eq!(c, Error::Tls(TlsError::UnknownIssuer));
    assert!(matches!(s, Error::Tls(TlsError::AlertReceived(_))), "{s:?}");
}

#[test]
fn self_signed_is_unknown_issuer() {
    let pki = TestPki::new();
    let (c, s) = tls_failure(
        "wss://localhost/",
        &pki.client_tls(),
        &server_tls_from(TestPki::self_signed_server_cert(&["localhost"])),
    );
    assert_eq!(c, Error::Tls(TlsError::UnknownIssuer));
    assert!(matches!(s, Error::Tls(TlsError::AlertReceived(_))));
}

#[test]
fn expired_certificate() {
    let pki = TestPki::new();
    let (c, _) = tls_failure(
        "wss://localhost/",
        &pki.client_tls(),
        &server_tls_from(pki.expired_server_cert(&["localhost"])),
    );
    assert_eq!(c, Error::Tls(TlsError::Expired));
}

#[test]
fn not_yet_valid_certificate() {
    let pki = TestPki::new();
    let (c, _) = tls_failure(
        "wss://localhost/",
        &pki.client_tls(),
        &server_tls_from(pki.not_yet_valid_server_cert(&["localhost"])),
    );
    assert_eq!(c, Error::Tls(TlsError::NotValidYet));
}

#[test]
fn wrong_name() {
    let pki = TestPki::new();
    let (c, s) = tls_failure(
        "wss://localhost/",
        &pki.client_tls(),
        &pki.server_tls(&["example.org"]),
    );
    assert_eq!(c, Error::Tls(TlsError::WrongName));
    assert!(matches!(s, Error::Tls(TlsError::AlertReceived(_))));
}

#[test]
fn client_certificate_missing_when_required() {
    let pki = TestPki::new();
    let (chain, key) = pki.server_cert(&["localhost"]);
    let server_tls = ServerTls::builder(chain.as_bytes(), key.as_bytes())
        .unwrap()
        .client_auth_required(pki.ca_pem().as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let (c, s) = tls_failure("wss://localhost/", &pki.client_tls(), &server_tls);
    assert_eq!(s, Error::Tls(TlsError::ClientCertificateRequired));
    assert!(matches!(c, Error::Tls(TlsError::AlertReceived(_))), "{c:?}");

    // With a certificate from the trusted CA the same server accepts.
    let mut p = Pair::tls(
        Config::default(),
        "wss://localhost/",
        &pki.client_tls_with_cert("device-17"),
        &server_tls,
    );
    p.open();
    echo_round_trip(&mut p);
}
