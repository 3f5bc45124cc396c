//! The TLS layer's own tests: in-memory sessions over real rustls with
//! rcgen-made certificates.

use super::session::{map_error, TlsRead, TlsSession};
use super::*;
use crate::error::{ConfigError, TlsError};
use crate::test_certs::TestPki;
use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, RootCertStore};
use std::sync::Arc;

const HOST: &str = "localhost";

fn client_tls(ca_pem: &str) -> ClientTls {
    ClientTls::builder()
        .with_pem_roots(ca_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

fn server_tls((chain, key): &(String, String)) -> ServerTls {
    ServerTls::builder(chain.as_bytes(), key.as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

/// One side of an in-memory pair: its session, what it decrypted, its
/// last read result.
struct Side {
    tls: TlsSession,
    plain: BytesMut,
    result: Result<TlsRead, TlsError>,
}

impl Side {
    fn new(tls: TlsSession) -> Side {
        Side {
            tls,
            plain: BytesMut::new(),
            result: Ok(TlsRead::default()),
        }
    }
}

struct Pair {
    client: Side,
    server: Side,
}

impl Pair {
    fn new(client: &ClientTls, host: &str, server: &ServerTls) -> Pair {
        Pair {
            client: Side::new(TlsSession::client(client, host).unwrap()),
            server: Side::new(TlsSession::server(server).unwrap()),
        }
    }

    /// Shuttles bytes both ways until neither side wants to write.
    /// `chunk` limits how many bytes are fed per `read_tls` call.
    fn run_chunked(&mut self, chunk: usize) {
        for _ in 0..100 {
            let mut progressed = false;
            for from_client in [true, false] {
                let (from, to) = if from_client {
                    (&mut self.client, &mut self.server)
                } else {
                    (&mut self.server, &mut self.client)
                };
                if !from.tls.wants_write() {
                    continue;
                }
                let mut wire = Vec::new();
                from.tls.write_tls(&mut wire);
                assert!(!from.tls.wants_write());
                progressed = true;
                for piece in wire.chunks(chunk.max(1)) {
                    let r = to.tls.read_tls(piece, &mut to.plain);
                    let failed = r.is_err();
                    to.result = r;
                    if failed {
                        break;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("the pair did not settle");
    }

    fn run(&mut self) {
        self.run_chunked(usize::MAX);
    }
}

fn handshake_ok(pair: &Pair) {
    assert_eq!(pair.client.result, Ok(TlsRead::default()));
    assert_eq!(pair.server.result, Ok(TlsRead::default()));
    assert!(!pair.client.tls.is_handshaking());
    assert!(!pair.server.tls.is_handshaking());
}

#[test]
fn handshake_carries_early_plaintext_and_alpn() {
    let pki = TestPki::new();
    let mut pair = Pair::new(
        &client_tls(&pki.ca_pem()),
        HOST,
        &server_tls(&pki.server_cert(&["localhost", "127.0.0.1"])),
    );
    assert!(pair.client.tls.is_client());
    assert!(!pair.server.tls.is_client());
    assert!(pair.client.tls.is_handshaking());
    // Written before a single byte moved: rustls must hold it back.
    assert_eq!(
        pair.client.tls.write_plaintext(b"GET / HTTP/1.1\r\n\r\n"),
        18
    );
    pair.run();
    handshake_ok(&pair);
    assert_eq!(&pair.server.plain[..], b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(pair.client.tls.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(pair.server.tls.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(pair.client.tls.peer_certificate_count(), 1);
    assert_eq!(pair.server.tls.peer_certificate_count(), 0);

    pair.server
        .tls
        .write_plaintext(b"HTTP/1.1 101 Switching Protocols\r\n\r\n");
    pair.run();
    assert_eq!(
        &pair.client.plain[..],
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
    );
}

#[test]
fn server_plaintext_written_mid_handshake_is_flushed() {
    let pki = TestPki::new();
    let mut pair = Pair::new(
        &client_tls(&pki.ca_pem()),
        HOST,
        &server_tls(&pki.server_cert(&["localhost"])),
    );
    // Client hello only, then the server writes while still handshaking.
    let mut wire = Vec::new();
    pair.client.tls.write_tls(&mut wire);
    pair.server
        .tls
        .read_tls(&wire, &mut pair.server.plain)
        .unwrap();
    pair.server.tls.write_plaintext(b"early");
    pair.run();
    handshake_ok(&pair);
    assert_eq!(&pair.client.plain[..], b"early");
}

#[test]
fn one_byte_chunks_and_large_payloads() {
    let pki = TestPki::new();
    let mut pair = Pair::new(
        &client_tls(&pki.ca_pem()),
        HOST,
        &server_tls(&pki.server_cert(&["localhost"])),
    );
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(pair.client.tls.write_plaintext(&big), big.len());
    pair.run_chunked(1);
    handshake_ok(&pair);
    assert_eq!(&pair.server.plain[..], &big[..]);
    pair.server.tls.write_plaintext(&big);
    pair.run_chunked(7000);
    assert_eq!(&pair.client.plain[..], &big[..]);
}

#[test]
fn empty_input_is_not_eof() {
    let pki = TestPki::new();
    let mut pair = Pair::new(
        &client_tls(&pki.ca_pem()),
        HOST,
        &server_tls(&pki.server_cert(&["localhost"])),
    );
    pair.run();
    assert_eq!(
        pair.server.tls.read_tls(&[], &mut pair.server.plain),
        Ok(TlsRead { peer_closed: false })
    );
    pair.client.tls.write_plaintext(b"still open");
    pair.run();
    assert_eq!(&pair.server.plain[..], b"still open");
}

#[test]
fn ip_address_server_name() {
    let pki = TestPki::new();
    let mut pair = Pair::new(
        &client_tls(&pki.ca_pem()),
        "127.0.0.1",
        &server_tls(&pki.server_cert(&["localhost", "127.0.0.1"])),
    );
    pair.run();
    handshake_ok(&pair);
}

#[test]
fn ipv6_server_name_with_brackets() {
    let pki = TestPki::new();
    let mut pair = Pair::new(
        &client_tls(&pki.ca_pem()),
        "[::1]",
        &server_tls(&pki.server_cert(&["::1"])),
    );
    pair.run();
    handshake_ok(&pair);
}

#[test]
fn invalid_server_name_is_config_error() {
    let pki = TestPki::new();
    let tls = client_tls(&pki.ca_pem());
    for bad in ["", "not a host", "exa mple.com", "-bad-.com.."] {
        assert!(
            matches!(TlsSession::client(&tls, bad), Err(ConfigError::Tls(_))),
            "{bad:?}"
        );
    }
}

/// Runs a handshake that the client must reject, and checks both sides.
fn client_rejects(server_cert: &(String, String), host: &str, trusted_ca: &str) -> TlsError {
    let mut pair = Pair::new(&client_tls(trusted_ca), host, &server_tls(server_cert));
    pair.client.tls.write_plaintext(b"never seen");
    pair.run();
    let err = pair.client.result.clone().unwrap_err();
    assert!(
        matches!(pair.server.result, Err(TlsError::AlertReceived(_))),
        "server got {:?}",
        pair.server.result
    );
    assert!(pair.server.plain.is_empty());
    // Sticky: the same error again, even for valid-looking input.
    assert_eq!(
        pair.client
            .tls
            .read_tls(b"\x17\x03\x03", &mut pair.client.plain),
        Err(err.clone())
    );
    assert_eq!(pair.client.tls.error(), Some(&err));
    err
}

#[test]
fn untrusted_ca_is_unknown_issuer() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let err = client_rejects(&other.server_cert(&["localhost"]), HOST, &pki.ca_pem());
    assert_eq!(err, TlsError::UnknownIssuer);
}

#[test]
fn self_signed_is_unknown_issuer() {
    let pki = TestPki::new();
    let cert = TestPki::self_signed_server_cert(&["localhost"]);
    assert_eq!(
        client_rejects(&cert, HOST, &pki.ca_pem()),
        TlsError::UnknownIssuer
    );
}

#[test]
fn expired_certificate() {
    let pki = TestPki::new();
    let cert = pki.expired_server_cert(&["localhost"]);
    assert_eq!(
        client_rejects(&cert, HOST, &pki.ca_pem()),
        TlsError::Expired
    );
}

#[test]
fn not_yet_valid_certificate() {
    let pki = TestPki::new();
    let cert = pki.not_yet_valid_server_cert(&["localhost"]);
    assert_eq!(
        client_rejects(&cert, HOST, &pki.ca_pem()),
        TlsError::NotValidYet
    );
}

#[test]
fn wrong_name() {
    let pki = TestPki::new();
    let cert = pki.server_cert(&["example.com"]);
    assert_eq!(
        client_rejects(&cert, HOST, &pki.ca_pem()),
        TlsError::WrongName
    );
    // An IP not among the SANs is a wrong name too.
    assert_eq!(
        client_rejects(&cert, "127.0.0.1", &pki.ca_pem()),
        TlsError::WrongName
    );
}

fn mtls_server(pki: &TestPki, required: bool) -> ServerTls {
    let (chain, key) = pki.server_cert(&["localhost"]);
    let builder = ServerTls::builder(chain.as_bytes(), key.as_bytes()).unwrap();
    let builder = if required {
        builder.client_auth_required(pki.ca_pem().as_bytes())
    } else {
        builder.client_auth_optional(pki.ca_pem().as_bytes())
    };
    builder.unwrap().build().unwrap()
}

fn mtls_client(pki: &TestPki, cert_from: &TestPki) -> ClientTls {
    let (chain, key) = cert_from.client_cert("client-1");
    ClientTls::builder()
        .with_pem_roots(pki.ca_pem().as_bytes())
        .unwrap()
        .with_client_cert_pem(chain.as_bytes(), key.as_bytes())
        .unwrap()
        .build()
        .unwrap()
}

#[test]
fn mtls_required_without_certificate() {
    let pki = TestPki::new();
    let mut pair = Pair::new(&client_tls(&pki.ca_pem()), HOST, &mtls_server(&pki, true));
    pair.client.tls.write_plaintext(b"never seen");
    pair.run();
    assert_eq!(pair.server.result, Err(TlsError::ClientCertificateRequired));
    assert!(
        matches!(&pair.client.result, Err(TlsError::AlertReceived(a)) if a == "CertificateRequired"),
        "client got {:?}",
        pair.client.result
    );
    assert!(pair.server.plain.is_empty());
}

#[test]
fn mtls_required_with_certificate() {
    let pki = TestPki::new();
    let mut pair = Pair::new(&mtls_client(&pki, &pki), HOST, &mtls_server(&pki, true));
    pair.client.tls.write_plaintext(b"hello");
    pair.run();
    handshake_ok(&pair);
    assert_eq!(&pair.server.plain[..], b"hello");
    assert_eq!(pair.server.tls.peer_certificate_count(), 1);
}

#[test]
fn mtls_required_with_untrusted_certificate() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let mut pair = Pair::new(&mtls_client(&pki, &other), HOST, &mtls_server(&pki, true));
    pair.run();
    assert_eq!(pair.server.result, Err(TlsError::UnknownIssuer));
    assert!(matches!(
        pair.client.result,
        Err(TlsError::AlertReceived(_))
    ));
}

#[test]
fn mtls_optional_without_certificate() {
    let pki = TestPki::new();
    let mut pair = Pair::new(&client_tls(&pki.ca_pem()), HOST, &mtls_server(&pki, false));
    pair.client.tls.write_plaintext(b"anonymous");
    pair.run();
    handshake_ok(&pair);
    assert_eq!(&pair.server.plain[..], b"anonymous");
    assert_eq!(pair.server.tls.peer_certificates(), None);
}

#[test]
fn mtls_optional_with_certificate() {
    let pki = TestPki::new();
    let mut pair = Pair::new(&mtls_client(&pki, &pki), HOST, &mtls_server(&pki, false));
    pair.run();
    handshake_ok(&pair);
    assert_eq!(pair.server.tls.peer_certificate_count(), 1);
}

#[test]
fn close_notify_reports_peer_closed() {
    let pki = TestPki::new();
    let mut pair = Pair::new(
        &client_tls(&pki.ca_pem()),
        HOST,
        &server_tls(&pki.server_cert(&["localhost"])),
    );
    pair.run();
    pair.client.tls.write_plaintext(b"last words");
    pair.client.tls.send_close_notify();
    // Written after close_notify: never sent.
    assert_eq!(pair.client.tls.write_plaintext(b"too late"), 0);
    pair.run();
    assert_eq!(pair.server.result, Ok(TlsRead { peer_closed: true }));
    assert_eq!(&pair.server.plain[..], b"last words");
    assert!(!pair.server.tls.wants_read());
    // Stays closed, and bytes after close_notify are ignored.
    assert_eq!(
        pair.server.tls.read_tls(&[], &mut pair.server.plain),
        Ok(TlsRead { peer_closed: true })
    );
    assert_eq!(
        pair.server.tls.read_tls(b"garbage", &mut pair.server.plain),
        Ok(TlsRead { peer_closed: true })
    );
    // The server answers with its own close_notify.
    pair.server.tls.send_close_notify();
    pair.run();
    assert_eq!(pair.client.result, Ok(TlsRead { peer_closed: true }));
}

#[test]
fn garbage_from_peer_is_sticky_error_with_alert() {
    let pki = TestPki::new();
    let mut server = TlsSession::server(&server_tls(&pki.server_cert(&["localhost"]))).unwrap();
    let mut plain = BytesMut::new();
    let err = server
        .read_tls(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut plain)
        .unwrap_err();
    assert!(matches!(err, TlsError::Other(_)), "{err:?}");
    assert_eq!(server.read_tls(b"", &mut plain), Err(err.clone()));
    assert_eq!(server.read_tls(b"\x16\x03\x01", &mut plain), Err(err));
    assert!(plain.is_empty());
    // The alert for the peer is queued.
    assert!(server.wants_write());
    let mut out = Vec::new();
    server.write_tls(&mut out);
    assert_eq!(out.first(), Some(&0x15)); // ContentType::Alert
                                          // Writing after the failure is ignored, not a panic.
    assert_eq!(server.write_plaintext(b"ignored"), 0);
}

#[test]
fn bad_pem_is_config_error() {
    let pki = TestPki::new();
    let (chain, key) = pki.server_cert(&["localhost"]);
    let truncated = &chain.as_bytes()[..chain.len() / 2];
    let mangled = chain.replace("MII", "M!I");
    let not_a_cert = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";

    for bad in [
        &b""[..],
        b"hello",
        truncated,
        mangled.as_bytes(),
        key.as_bytes(),
        not_a_cert.as_bytes(),
    ] {
        assert!(
            matches!(
                ClientTls::builder().with_pem_roots(bad),
                Err(ConfigError::Tls(_))
            ),
            "{bad:?}"
        );
        assert!(matches!(
            ServerTls::builder(chain.as_bytes(), key.as_bytes())
                .unwrap()
                .client_auth_required(bad),
            Err(ConfigError::Tls(_))
        ));
    }
    for bad in [&b""[..], b"hello", truncated, key.as_bytes()] {
        assert!(matches!(
            ServerTls::builder(bad, key.as_bytes()),
            Err(ConfigError::Tls(_))
        ));
        assert!(matches!(
            ClientTls::builder().with_client_cert_pem(bad, key.as_bytes()),
            Err(ConfigError::Tls(_))
        ));
    }
    let key_truncated = &key.as_bytes()[..key.len() / 2];
    let not_a_key = "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n";
    for bad in [
        &b""[..],
        b"hello",
        key_truncated,
        chain.as_bytes(),
        not_a_key.as_bytes(),
    ] {
        // Unparsable keys fail at once; a parsable block the provider
        // cannot load (`not_a_key`) fails when the config is built.
        assert!(
            matches!(
                ServerTls::builder(chain.as_bytes(), bad).and_then(ServerTlsBuilder::build),
                Err(ConfigError::Tls(_))
            ),
            "{bad:?}"
        );
    }
    for bad in [&b""[..], b"hello", key_truncated, chain.as_bytes()] {
        assert!(matches!(
            ClientTls::builder().with_client_cert_pem(chain.as_bytes(), bad),
            Err(ConfigError::Tls(_))
        ));
    }
    // A parsable key that does not sign for this certificate.
    let (_, other_key) = pki.server_cert(&["localhost"]);
    assert!(matches!(
        ServerTls::builder(chain.as_bytes(), other_key.as_bytes())
            .unwrap()
            .build(),
        Err(ConfigError::Tls(_))
    ));
    assert!(matches!(
        ClientTls::builder()
            .with_pem_roots(pki.ca_pem().as_bytes())
            .unwrap()
            .with_client_cert_pem(chain.as_bytes(), not_a_key.as_bytes())
            .and_then(ClientTlsBuilder::build),
        Err(ConfigError::Tls(e)) if e.contains("client private key")
    ));
}

#[test]
fn client_without_roots_is_config_error() {
    assert!(matches!(
        ClientTls::builder().build(),
        Err(ConfigError::Tls(_))
    ));
    assert!(matches!(
        ClientTls::builder()
            .with_root_store(RootCertStore::empty())
            .build(),
        Err(ConfigError::Tls(_))
    ));
}

#[test]
fn root_sources() {
    let mozilla = ClientTls::builder().with_mozilla_roots().build().unwrap();
    assert_eq!(
        mozilla.rustls_config().alpn_protocols,
        vec![b"http/1.1".to_vec()]
    );
    // Several CAs in one PEM, then a ready-made store.
    let (a, b) = (TestPki::new(), TestPki::new());
    let both = format!("{}{}", a.ca_pem(), b.ca_pem());
    let tls = ClientTls::builder()
        .with_pem_roots(both.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    for pki in [&a, &b] {
        let mut pair = Pair::new(&tls, HOST, &server_tls(&pki.server_cert(&["localhost"])));
        pair.run();
        handshake_ok(&pair);
    }
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(
        CertificateDer::pem_slice_iter(a.ca_pem().as_bytes()).map(Result::unwrap),
    );
    let tls = ClientTls::builder().with_root_store(store).build().unwrap();
    let mut pair = Pair::new(&tls, HOST, &server_tls(&a.server_cert(&["localhost"])));
    pair.run();
    handshake_ok(&pair);
    // The system store may be empty on a build machine: either outcome is
    // fine, but never a panic.
    match ClientTls::builder().with_native_roots() {
        Ok(b) => assert!(b.build().is_ok()),
        Err(e) => assert!(matches!(e, ConfigError::Tls(_))),
    }
}

#[test]
fn from_rustls_is_used_as_given() {
    let pki = TestPki::new();
    let built = client_tls(&pki.ca_pem());
    let mut config = (**built.rustls_config()).clone();
    config.alpn_protocols.clear();
    let tls = ClientTls::from_rustls(Arc::new(config));
    assert!(tls.rustls_config().alpn_protocols.is_empty());
    let server = server_tls(&pki.server_cert(&["localhost"]));
    let server = ServerTls::from_rustls(Arc::clone(server.rustls_config()));
    let mut pair = Pair::new(&tls, HOST, &server);
    pair.run();
    handshake_ok(&pair);
    assert_eq!(pair.client.tls.alpn_protocol(), None);
}

#[test]
fn error_mapping() {
    use rustls::AlertDescription;
    assert_eq!(
        map_error(rustls::Error::InvalidCertificate(CertificateError::Revoked)),
        TlsError::Revoked
    );
    assert_eq!(
        map_error(rustls::Error::InvalidCertificate(CertificateError::Expired)),
        TlsError::Expired
    );
    assert!(matches!(
        map_error(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
        )),
        TlsError::BadCertificate(_)
    ));
    assert_eq!(
        map_error(rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure
        )),
        TlsError::AlertReceived("HandshakeFailure".to_owned())
    );
    assert!(matches!(
        map_error(rustls::Error::DecryptError),
        TlsError::Other(_)
    ));
}

/// Without a provider feature, only a provider given to the builder works.
#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
#[test]
fn without_a_provider_feature_the_builders_say_so() {
    let pki = TestPki::new();
    let (chain, key) = pki.server_cert(&["localhost"]);
    let no_provider =
        |e: ConfigError| matches!(e, ConfigError::Tls(m) if m.contains("no crypto provider"));
    assert!(no_provider(
        ClientTls::builder()
            .with_pem_roots(pki.ca_pem().as_bytes())
            .unwrap()
            .build()
            .unwrap_err()
    ));
    assert!(no_provider(
        ServerTls::builder(chain.as_bytes(), key.as_bytes())
            .unwrap()
            .build()
            .unwrap_err()
    ));
}
