//! The only module that touches rustls. SKELETON: to be implemented.

use crate::error::{ConfigError, TlsError};
use bytes::BytesMut;
use std::sync::Arc;

/// Client TLS settings: trusted roots, optional client certificate, ALPN `http/1.1`.
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

/// Server TLS settings: certificate chain and key, optional client authentication.
#[derive(Debug, Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

/// What a read of TLS records produced besides plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TlsRead {
    /// The peer sent close_notify.
    pub(crate) peer_closed: bool,
}

/// A rustls client or server session, buffered.
#[derive(Debug)]
pub(crate) struct TlsSession {
    conn: rustls::Connection,
}

impl TlsSession {
    pub(crate) fn client(tls: &ClientTls, server_name: &str) -> Result<TlsSession, ConfigError> {
        let _ = (tls, server_name);
        todo!()
    }
    pub(crate) fn server(tls: &ServerTls) -> Result<TlsSession, ConfigError> {
        let _ = tls;
        todo!()
    }
    pub(crate) fn read_tls(&mut self, data: &[u8], plain: &mut BytesMut) -> Result<TlsRead, TlsError> {
        let _ = (data, plain, &self.conn);
        todo!()
    }
    pub(crate) fn is_handshaking(&self) -> bool {
        todo!()
    }
    pub(crate) fn write_plaintext(&mut self, data: &[u8]) {
        let _ = data;
        todo!()
    }
    pub(crate) fn wants_write(&self) -> bool {
        todo!()
    }
    pub(crate) fn write_tls(&mut self, out: &mut Vec<u8>) {
        let _ = out;
        todo!()
    }
    pub(crate) fn send_close_notify(&mut self) {
        todo!()
    }
}
