//! [`TlsSession`], a thin layer over rustls' buffered [`rustls::Connection`]:
//! ciphertext in through [`TlsSession::read_tls`], plaintext out into a
//! `BytesMut`; plaintext in through [`TlsSession::write_plaintext`],
//! ciphertext out through [`TlsSession::write_tls`]. rustls' errors are
//! mapped once, here, into [`TlsError`].

use super::config::{config_error, ClientTls, ServerTls};
use crate::error::{ConfigError, TlsError};
use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::CertificateError;
use std::io::{self, BufRead, IoSlice, Write};
use std::sync::Arc;

/// What a TLS session agreed, once its handshake is done: see
/// [`Connection::tls_info`](crate::Connection::tls_info).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// TLS 1.3 or 1.2.
    pub protocol_version: rustls::ProtocolVersion,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: rustls::CipherSuite,
    /// The key exchange group: `X25519MLKEM768` when both sides support the
    /// post-quantum hybrid (the default provider prefers it), else a classical
    /// group such as `X25519`. `None` for a TLS 1.2 session resumed without a
    /// key exchange.
    pub key_exchange_group: Option<rustls::NamedGroup>,
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
        let conn = rustls::ClientConnection::new(Arc::clone(tls.rustls_config()), name)
            .map_err(|e| config_error("client session", &e))?;
        Ok(TlsSession::new(conn.into()))
    }

    /// Starts a server session.
    pub(crate) fn server(tls: &ServerTls) -> Result<TlsSession, ConfigError> {
        let conn = rustls::ServerConnection::new(Arc::clone(tls.rustls_config()))
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

    /// What the handshake agreed; `None` until it is done.
    pub(crate) fn info(&self) -> Option<TlsInfo> {
        if self.conn.is_handshaking() {
            return None;
        }
        Some(TlsInfo {
            protocol_version: self.conn.protocol_version()?,
            cipher_suite: self.conn.negotiated_cipher_suite()?.suite(),
            key_exchange_group: self.conn.negotiated_key_exchange_group().map(|g| g.name()),
        })
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
pub(super) fn map_error(e: rustls::Error) -> TlsError {
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
