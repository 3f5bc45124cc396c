//! TLS configuration: what [`ClientTls`] and [`ServerTls`] hold, built from
//! PEM with the crypto provider of [`super::provider`] (or one the caller
//! gives) and ALPN `http/1.1`, the protocol the opening handshake speaks
//! (RFC 6455 §4.1).

use super::provider;
use crate::error::ConfigError;
use crate::handshake::ClientRequest;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::fmt;
use std::sync::Arc;

/// The one ALPN protocol wharf offers and accepts: the opening handshake is an
/// HTTP/1.1 Upgrade (RFC 6455 §4.1).
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

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
            provider: None,
        }
    }

    /// The TLS for a client of `request`: `tls` when given; for a
    /// `wss://` URL without one, the Mozilla root set (no client
    /// certificate); for `ws://`, none. The default of the reconnecting
    /// [`Client`](crate::Client) and of the adapters' `connect`.
    ///
    /// # Errors
    ///
    /// Building the default failed (no crypto provider).
    pub fn for_request(
        tls: Option<&ClientTls>,
        request: &ClientRequest,
    ) -> Result<Option<ClientTls>, ConfigError> {
        match tls {
            Some(tls) => Ok(Some(tls.clone())),
            None if request.is_tls() => Ok(Some(Self::builder().with_mozilla_roots().build()?)),
            None => Ok(None),
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
    provider: Option<Arc<CryptoProvider>>,
}

impl fmt::Debug for ClientTlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("ClientTlsBuilder")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.client_cert.is_some())
            .field("custom_provider", &self.provider.is_some())
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
    /// certificate set earlier. Fails if either cannot be parsed; a key the
    /// crypto provider cannot sign with, or one that does not match the
    /// certificate, is reported by [`ClientTlsBuilder::build`].
    pub fn with_client_cert_pem(
        mut self,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, ConfigError> {
        let chain = parse_certs(chain_pem, "client certificate chain")?;
        let key = parse_key(key_pem)?;
        self.client_cert = Some((chain, key));
        Ok(self)
    }

    /// Uses `provider` instead of the one the crate's features select (see
    /// the crate docs, "TLS"): a FIPS build of AWS-LC, a hardware-backed
    /// provider, or a narrower set of cipher suites or key exchange groups.
    #[must_use]
    pub fn with_crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Builds the configuration (ALPN `http/1.1`, TLS 1.2 and 1.3).
    ///
    /// Fails with [`ConfigError::Tls`] when no trusted root was added, when
    /// no crypto provider is available (neither crate feature and none
    /// given), or when the client certificate and key are unusable or do not
    /// match.
    pub fn build(self) -> Result<ClientTls, ConfigError> {
        if self.roots.is_empty() {
            return Err(ConfigError::Tls(
                "no trusted root certificates configured".to_owned(),
            ));
        }
        let provider = chosen_provider(self.provider)?;
        if let Some((_, key)) = &self.client_cert {
            check_key(&provider, key, "client private key")?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
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
    /// Fails with [`ConfigError::Tls`] if either cannot be parsed; a key the
    /// crypto provider cannot sign with is reported by
    /// [`ServerTlsBuilder::build`].
    pub fn builder(chain_pem: &[u8], key_pem: &[u8]) -> Result<ServerTlsBuilder, ConfigError> {
        let chain = parse_certs(chain_pem, "server certificate chain")?;
        let key = parse_key(key_pem)?;
        Ok(ServerTlsBuilder {
            chain,
            key,
            client_auth: None,
            provider: None,
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
    /// The CAs client certificates must chain to, and whether a client may
    /// present none.
    client_auth: Option<(RootCertStore, bool)>,
    provider: Option<Arc<CryptoProvider>>,
}

impl fmt::Debug for ServerTlsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("ServerTlsBuilder")
            .field("chain", &self.chain.len())
            .field("client_auth", &self.client_auth.is_some())
            .field("custom_provider", &self.provider.is_some())
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
    /// [`TlsError::ClientCertificateRequired`](crate::TlsError::ClientCertificateRequired) on this side.
    pub fn client_auth_required(self, ca_pem: &[u8]) -> Result<Self, ConfigError> {
        self.client_auth(ca_pem, false)
    }

    fn client_auth(mut self, ca_pem: &[u8], optional: bool) -> Result<Self, ConfigError> {
        let mut roots = RootCertStore::empty();
        add_pem_roots(&mut roots, ca_pem)?;
        self.client_auth = Some((roots, optional));
        Ok(self)
    }

    /// Uses `provider` instead of the one the crate's features select; see
    /// [`ClientTlsBuilder::with_crypto_provider`].
    #[must_use]
    pub fn with_crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Builds the configuration (ALPN `http/1.1`, TLS 1.2 and 1.3).
    ///
    /// Fails with [`ConfigError::Tls`] if no crypto provider is available
    /// (neither crate feature and none given), if the provider cannot sign
    /// with the key, or if the key does not match the certificate.
    pub fn build(self) -> Result<ServerTls, ConfigError> {
        let provider = chosen_provider(self.provider)?;
        check_key(&provider, &self.key, "server private key")?;
        let verifier = match self.client_auth {
            Some((roots, optional)) => {
                let mut builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                if optional {
                    builder = builder.allow_unauthenticated();
                }
                Some(
                    builder.build().map_err(|e| {
                        ConfigError::Tls(format!("client certificate verifier: {e}"))
                    })?,
                )
            }
            None => None,
        };
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error("protocol versions", &e))?;
        let builder = match verifier {
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

pub(super) fn config_error(what: &str, e: &rustls::Error) -> ConfigError {
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

/// The provider given to a builder, else the one the features select.
fn chosen_provider(given: Option<Arc<CryptoProvider>>) -> Result<Arc<CryptoProvider>, ConfigError> {
    given.or_else(provider::default_provider).ok_or_else(|| {
        ConfigError::Tls(
            "no crypto provider: enable the `aws-lc-rs` or `ring` feature, \
             or give one with `with_crypto_provider`"
                .to_owned(),
        )
    })
}

/// Checks that `provider` can sign with `key`, for an error that names the
/// key (rustls checks again, and that it matches its certificate, when the
/// config is built).
fn check_key(
    provider: &CryptoProvider,
    key: &PrivateKeyDer<'static>,
    what: &str,
) -> Result<(), ConfigError> {
    provider
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
