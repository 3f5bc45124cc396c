//! TLS for `wss://`: the only module of the crate that touches rustls.
//!
//! The public half is configuration: [`ClientTls`] and [`ServerTls`] wrap a
//! shared rustls config, built from PEM with the `ring` crypto provider named
//! explicitly (the process-wide default provider is never consulted) and ALPN
//! `http/1.1`, the protocol the opening handshake speaks (RFC 6455 §4.1).
//!
//! The private half is [`TlsSession`], a thin layer over rustls' buffered
//! [`rustls::Connection`]: ciphertext in through [`TlsSession::read_tls`],
//! plaintext out into a `BytesMut`; plaintext in through
//! [`TlsSession::write_plaintext`], ciphertext out through
//! [`TlsSession::write_tls`]. rustls' errors are mapped once, here, into
//! [`TlsError`], so a rustls API change stays local to this file.

use crate::error::{ConfigError, TlsError};
use bytes::BytesMut;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore};
use std::fmt;
use std::io::{self, BufRead, IoSlice, Write};
use std::sync::Arc;

/// The one ALPN protocol wharf offers and accepts: the opening handshake is an
/// HTTP/1.1 Upgrade (RFC 6455 §4.1).
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The crypto provider every config built here uses. Named explicitly so that
/// no process-wide default provider needs to be installed.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client TLS settings: trusted roots, optional client certificate, ALPN `http/1.1`.
///
/// Cheap to clone (an `Arc` inside); share one value between connections so
/// that they also share rustls' session-resumption cache.
///
/// ```
/// # fn main() -> Result<(), wharf_core::ConfigError> {
/// let tls = wharf_core::ClientTls::builder().with_mozilla_roots().build()?;
/// # let _ = tls;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// Starts building a client configuration. At least one source of trusted
    /// roots must be added before [`ClientTlsBuilder::build`].
    #[must_use]
    pub fn builder() -> ClientTlsBuilder {
        ClientTlsBuilder {
            roots: RootCertStore::empty(),
            client_cert: None,
        }
    }

    /// Wraps a rustls configuration built by the caller. It is used as given:
    /// in particular its ALPN list is not changed (offer `http/1.1` or nothing).
    #[must_use]
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> ClientTls {
        ClientTls { config }
    }

    /// The rustls configuration in use.
    #[must_use]
    pub fn rustls_config(&self) -> &Arc<rustls::ClientConfig> {
        &self.config
    }
}

/// Builds a [`ClientTls`]; made by [`ClientTls::builder`].
pub struct ClientTlsBuilder {
    roots: RootCertStore,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl fmt::Debug for ClientTlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("ClientTlsBuilder")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

impl ClientTlsBuilder {
    /// Trusts the Mozilla root program's CAs (compiled in from `webpki-roots`).
    #[must_use]
    pub fn with_mozilla_roots(mut self) -> Self {
        self.roots
            .extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        self
    }

    /// Trusts the operating system's root store (via `rustls-native-certs`).
    ///
    /// Certificates that fail to load or parse are skipped; this fails only
    /// when not a single root could be loaded.
    pub fn with_native_roots(mut self) -> Result<Self, ConfigError> {
        let loaded = rustls_native_certs::load_native_certs();
        let (added, _ignored) = self.roots.add_parsable_certificates(loaded.certs);
        if added == 0 {
            let why = match loaded.errors.first() {
                Some(e) => format!("no usable root certificate in the system store ({e})"),
                None => "no usable root certificate in the system store".to_owned(),
            };
            return Err(ConfigError::Tls(why));
        }
        Ok(self)
    }

    /// Trusts every `CERTIFICATE` block of `pem` (other blocks are ignored).
    ///
    /// Fails if the PEM is malformed, holds no certificate, or a certificate
    /// cannot serve as a trust anchor.
    pub fn with_pem_roots(mut self, pem: &[u8]) -> Result<Self, ConfigError> {
        add_pem_roots(&mut self.roots, pem)?;
        Ok(self)
    }

    /// Trusts the roots of a ready-made rustls store (added to any others).
    #[must_use]
    pub fn with_root_store(mut self, roots: RootCertStore) -> Self {
        self.roots.roots.extend(roots.roots);
        self
    }

    /// Presents a client certificate (mutual TLS) when the server asks for one.
    ///
    /// `chain_pem` holds the leaf certificate first, then any intermediates;
    /// `key_pem` holds its private key (PKCS#8, PKCS#1 or SEC1). Replaces a
    /// certificate set earlier. Fails if either cannot be parsed or the key is
    /// of a kind the crypto provider cannot sign with; a key that does not
    /// match the certificate is reported by [`ClientTlsBuilder::build`].
    pub fn with_client_cert_pem(
        mut self,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, ConfigError> {
        let chain = parse_certs(chain_pem, "client certificate chain")?;
        let key = parse_key(key_pem)?;
        check_key(&key, "client private key")?;
        self.client_cert = Some((chain, key));
        Ok(self)
    }

    /// Builds the configuration (ALPN `http/1.1`, TLS 1.2 and 1.3).
    ///
    /// Fails with [`ConfigError::Tls`] when no trusted root was added, or when
    /// the client certificate and key are unusable or do not match.
    pub fn build(self) -> Result<ClientTls, ConfigError> {
        if self.roots.is_empty() {
            return Err(ConfigError::Tls(
                "no trusted root certificates configured".to_owned(),
            ));
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("protocol versions", &e))?
            .with_root_certificates(self.roots);
        let mut config = match self.client_cert {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error("client certificate", &e))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }
}

/// Server TLS settings: certificate chain and key, optional client authentication.
///
/// Cheap to clone (an `Arc` inside); one value serves every accepted connection.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// Starts building a server configuration from the server's certificate
    /// chain (leaf first, then intermediates) and its private key (PKCS#8,
    /// PKCS#1 or SEC1), both PEM.
    ///
    /// Fails with [`ConfigError::Tls`] if either cannot be parsed or the key
    /// is of a kind the crypto provider cannot sign with.
    pub fn builder(chain_pem: &[u8], key_pem: &[u8]) -> Result<ServerTlsBuilder, ConfigError> {
        let chain = parse_certs(chain_pem, "server certificate chain")?;
        let key = parse_key(key_pem)?;
        check_key(&key, "server private key")?;
        Ok(ServerTlsBuilder {
            chain,
            key,
            client_verifier: None,
        })
    }

    /// Wraps a rustls configuration built by the caller. It is used as given:
    /// in particular its ALPN list is not changed (accept `http/1.1` or nothing).
    #[must_use]
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> ServerTls {
        ServerTls { config }
    }

    /// The rustls configuration in use.
    #[must_use]
    pub fn rustls_config(&self) -> &Arc<rustls::ServerConfig> {
        &self.config
    }
}

/// Builds a [`ServerTls`]; made by [`ServerTls::builder`].
pub struct ServerTlsBuilder {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl fmt::Debug for ServerTlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("ServerTlsBuilder")
            .field("chain", &self.chain.len())
            .field("client_auth", &self.client_verifier.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTlsBuilder {
    /// Asks clients for a certificate signed by one of the CAs in `ca_pem`,
    /// but also accepts clients that present none. A certificate that is
    /// presented must verify.
    pub fn client_auth_optional(self, ca_pem: &[u8]) -> Result<Self, ConfigError> {
        self.client_auth(ca_pem, true)
    }

    /// Requires every client to present a certificate signed by one of the
    /// CAs in `ca_pem`; a client without one fails the TLS handshake with
    /// [`TlsError::ClientCertificateRequired`] on this side.
    pub fn client_auth_required(self, ca_pem: &[u8]) -> Result<Self, ConfigError> {
        self.client_auth(ca_pem, false)
    }

    fn client_auth(mut self, ca_pem: &[u8], optional: bool) -> Result<Self, ConfigError> {
        let mut roots = RootCertStore::empty();
        add_pem_roots(&mut roots, ca_pem)?;
        let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        if optional {
            builder = builder.allow_unauthenticated();
        }
        let verifier = builder
            .build()
            .map_err(|e| ConfigError::Tls(format!("client certificate verifier: {e}")))?;
        self.client_verifier = Some(verifier);
        Ok(self)
    }

    /// Builds the configuration (ALPN `http/1.1`, TLS 1.2 and 1.3).
    ///
    /// Fails with [`ConfigError::Tls`] if the key does not match the
    /// certificate.
    pub fn build(self) -> Result<ServerTls, ConfigError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("protocol versions", &e))?;
        let builder = match self.client_verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(self.chain, self.key)
            .map_err(|e| config_error("server certificate", &e))?;
        config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }
}

fn config_error(what: &str, e: &rustls::Error) -> ConfigError {
    ConfigError::Tls(format!("{what}: {e}"))
}

/// Parses every `CERTIFICATE` block of `pem`; at least one is required.
fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::Tls(format!("{what}: invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::Tls(format!(
            "{what}: no CERTIFICATE block found"
        )));
    }
    Ok(certs)
}

/// Parses the first private key block (PKCS#8, PKCS#1 or SEC1) of `pem`.
fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => ConfigError::Tls(
            "private key: no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block found".to_owned(),
        ),
        e => ConfigError::Tls(format!("private key: invalid PEM: {e}")),
    })
}

/// Checks that the crypto provider can sign with `key` (that it matches its
/// certificate is checked when the config is built).
fn check_key(key: &PrivateKeyDer<'static>, what: &str) -> Result<(), ConfigError> {
    provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map(|_| ())
        .map_err(|e| config_error(what, &e))
}

/// Adds every certificate of `pem` to `roots` as a trust anchor.
fn add_pem_roots(roots: &mut RootCertStore, pem: &[u8]) -> Result<(), ConfigError> {
    for cert in parse_certs(pem, "root certificates")? {
        roots
            .add(cert)
            .map_err(|e| config_error("root certificate", &e))?;
    }
    Ok(())
}

/// What a read of TLS records produced besides plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TlsRead {
    /// The peer sent close_notify: no more plaintext will arrive. Stays true
    /// on every later read.
    pub(crate) peer_closed: bool,
}

/// A rustls client or server session, buffered.
///
/// The outgoing buffers of rustls are unbounded here: the connection bounds
/// what it writes, so [`TlsSession::write_plaintext`] takes all of its input
/// while the session can send (before the handshake completes rustls keeps
/// it, and encrypts it as soon as the handshake ends).
///
/// Errors are sticky: once [`TlsSession::read_tls`] has failed it returns the
/// same error forever. After a failure, [`TlsSession::wants_write`] may still
/// be true: rustls has queued an alert for the peer, which
/// [`TlsSession::write_tls`] hands out.
#[derive(Debug)]
pub(crate) struct TlsSession {
    conn: rustls::Connection,
    error: Option<TlsError>,
    /// rustls' buffered API would still encrypt plaintext written after
    /// close_notify; the peer must ignore it, so it is never sent.
    close_notify_sent: bool,
}

impl TlsSession {
    /// Starts a client session to `server_name`, which is sent as SNI and is
    /// the name the server's certificate must be valid for. A DNS name or an
    /// IP address (IPv6 with or without brackets); IP addresses are not sent
    /// as SNI but are checked against the certificate's IP SANs.
    pub(crate) fn client(tls: &ClientTls, server_name: &str) -> Result<TlsSession, ConfigError> {
        let host = server_name
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(server_name);
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| ConfigError::Tls(format!("invalid server name {host:?}: {e}")))?;
        let conn = rustls::ClientConnection::new(Arc::clone(&tls.config), name)
            .map_err(|e| config_error("client session", &e))?;
        Ok(TlsSession::new(conn.into()))
    }

    /// Starts a server session.
    pub(crate) fn server(tls: &ServerTls) -> Result<TlsSession, ConfigError> {
        let conn = rustls::ServerConnection::new(Arc::clone(&tls.config))
            .map_err(|e| config_error("server session", &e))?;
        Ok(TlsSession::new(conn.into()))
    }

    fn new(mut conn: rustls::Connection) -> TlsSession {
        conn.set_buffer_limit(None);
        TlsSession {
            conn,
            error: None,
            close_notify_sent: false,
        }
    }

    /// Feeds all of `data` (bytes from the socket, any chunking) to rustls and
    /// appends every plaintext byte it yields to `plain`.
    ///
    /// An empty `data` is allowed (it only reports the close state); it is
    /// never taken as EOF. Bytes after the peer's close_notify are ignored
    /// (RFC 8446 §6.1). On error, rustls has usually queued an alert: call
    /// [`TlsSession::write_tls`] to send it. Errors are sticky. Plaintext from
    /// records before the failing one may already have been appended to
    /// `plain`; the caller may use it or drop it.
    pub(crate) fn read_tls(
        &mut self,
        mut data: &[u8],
        plain: &mut BytesMut,
    ) -> Result<TlsRead, TlsError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut peer_closed = self.drain_plaintext(plain)?;
        while !data.is_empty() && !peer_closed {
            let mut reader = crate::copy::Reader(data);
            let read = self.conn.read_tls(&mut reader);
            data = reader.0;
            match read {
                Ok(0) => {
                    // rustls accepts no bytes only after close_notify, which
                    // `peer_closed` already covers: never spin.
                    return Err(self.fail(TlsError::Other(
                        "TLS record layer accepted no input".to_owned(),
                    )));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(self.fail(TlsError::Other(format!("TLS record layer: {e}"))));
                }
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Err(self.fail(map_error(e)));
            }
            peer_closed = self.drain_plaintext(plain)?;
        }
        Ok(TlsRead { peer_closed })
    }

    /// Moves all decrypted plaintext into `plain`. True once the peer has
    /// sent close_notify and everything before it has been drained.
    fn drain_plaintext(&mut self, plain: &mut BytesMut) -> Result<bool, TlsError> {
        let mut reader = self.conn.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => return Ok(true),
                Ok(chunk) => {
                    let n = chunk.len();
                    crate::copy::append(plain, chunk);
                    reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                // Only an EOF fed to rustls leads here, and `read_tls` never
                // feeds one; treated as a failure rather than trusted.
                Err(e) => return Err(self.fail(TlsError::Other(e.to_string()))),
            }
        }
    }

    fn fail(&mut self, e: TlsError) -> TlsError {
        self.error = Some(e.clone());
        e
    }

    /// The error that ended the session, if any.
    #[allow(dead_code, reason = "accessor for the connection and adapters")]
    pub(crate) fn error(&self) -> Option<&TlsError> {
        self.error.as_ref()
    }

    /// True until the TLS handshake has completed (both directions keyed).
    #[allow(dead_code, reason = "accessor for the connection and adapters")]
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// Queues `data` to be encrypted and sent, and returns how many bytes were
    /// taken: all of `data` while the session can send, 0 once it has failed
    /// or sent close_notify (nothing can be sent any more, so nothing is
    /// taken). Before the handshake completes rustls holds the plaintext back
    /// and encrypts it as soon as the handshake ends.
    pub(crate) fn write_plaintext(&mut self, data: &[u8]) -> usize {
        if self.error.is_some() || self.close_notify_sent {
            return 0;
        }
        // With no buffer limit rustls takes everything; it refuses only when
        // its own state has failed (an error `read_tls` is about to report).
        match self.conn.writer().write_all(data) {
            Ok(()) => data.len(),
            Err(_) => 0,
        }
    }

    /// Like [`TlsSession::write_plaintext`] for `head` followed by `body`,
    /// without joining them first; returns how many bytes were taken (all,
    /// or none when the session can send nothing more).
    pub(crate) fn write_plaintext_parts(&mut self, head: &[u8], body: &[u8]) -> usize {
        if self.error.is_some() || self.close_notify_sent {
            return 0;
        }
        let mut parts = [IoSlice::new(head), IoSlice::new(body)];
        let mut parts = &mut parts[..];
        let total = head.len() + body.len();
        let mut taken = 0;
        while taken < total {
            match self.conn.writer().write_vectored(parts) {
                Ok(0) | Err(_) => return 0,
                Ok(n) => {
                    taken += n;
                    IoSlice::advance_slices(&mut parts, n);
                }
            }
        }
        total
    }

    /// True when [`TlsSession::write_tls`] has bytes for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// True when rustls would accept more input (false after close_notify).
    #[allow(dead_code, reason = "accessor for the connection and adapters")]
    pub(crate) fn wants_read(&self) -> bool {
        self.conn.wants_read()
    }

    /// Appends every pending TLS record (handshake, application data, alerts)
    /// to `out`.
    pub(crate) fn write_tls(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut crate::copy::Writer(out)) {
                Ok(n) if n > 0 => {}
                // Writing into a Vec cannot fail or stall; stop rather than spin.
                _ => break,
            }
        }
    }

    /// Writes pending TLS records into `sink` (one call; it may take part).
    pub(crate) fn write_tls_to(&mut self, sink: &mut dyn io::Write) -> io::Result<usize> {
        self.conn.write_tls(sink)
    }

    /// Queues a close_notify alert: no more plaintext will be sent (later
    /// [`TlsSession::write_plaintext`] calls take nothing). Call
    /// [`TlsSession::write_tls`] afterwards.
    pub(crate) fn send_close_notify(&mut self) {
        self.close_notify_sent = true;
        self.conn.send_close_notify();
    }

    /// True for a client session.
    #[allow(dead_code, reason = "accessor for the connection and adapters")]
    pub(crate) fn is_client(&self) -> bool {
        matches!(self.conn, rustls::Connection::Client(_))
    }

    /// The ALPN protocol agreed in the handshake (`b"http/1.1"` with configs
    /// built here), or `None` if the peer did not negotiate ALPN.
    #[allow(dead_code, reason = "accessor for the connection and adapters")]
    pub(crate) fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// How many certificates the peer presented (0 before the handshake, and
    /// for a client that presented none).
    #[allow(dead_code, reason = "accessor for the connection and adapters")]
    pub(crate) fn peer_certificate_count(&self) -> usize {
        self.conn.peer_certificates().map_or(0, <[_]>::len)
    }

    /// The peer's certificate chain, leaf first, once known.
    #[allow(dead_code, reason = "accessor for the connection and adapters")]
    pub(crate) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }
}

/// Maps a rustls error to the crate's typed TLS error.
fn map_error(e: rustls::Error) -> TlsError {
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => TlsError::UnknownIssuer,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                TlsError::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                TlsError::NotValidYet
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsError::WrongName
            }
            CertificateError::Revoked => TlsError::Revoked,
            other => TlsError::BadCertificate(other.to_string()),
        },
        rustls::Error::NoCertificatesPresented => TlsError::ClientCertificateRequired,
        rustls::Error::AlertReceived(desc) => TlsError::AlertReceived(format!("{desc:?}")),
        other => TlsError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_certs::TestPki;

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
            assert!(
                matches!(
                    ServerTls::builder(chain.as_bytes(), bad),
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
                .with_client_cert_pem(chain.as_bytes(), not_a_key.as_bytes()),
            Err(ConfigError::Tls(_))
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
}
