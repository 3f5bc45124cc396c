//! Certificates for every server (one test CA, one server certificate for
//! `localhost`), as wharf's `ServerTls` and as a rustls `ServerConfig` for
//! the peers and the floors, and the load client's rustls `ClientConfig`.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use wharf_core::test_certs::TestPki;
use wharf_tokio::ServerTls;

pub(crate) struct Tls {
    pub(crate) wharf: ServerTls,
    /// For the `core` section's in-memory client `Connection`.
    pub(crate) wharf_client: wharf_core::ClientTls,
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: tokio_rustls::TlsConnector,
    /// The load client's config, for the `core` section's in-memory floor.
    pub(crate) client_config: Arc<rustls::ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

impl Tls {
    pub(crate) fn new() -> Tls {
        let pki = TestPki::new();
        let (chain, key) = pki.server_cert(&["localhost"]);
        let wharf = ServerTls::builder(chain.as_bytes(), key.as_bytes())
            .and_then(|b| b.build())
            .expect("rcgen certificates are valid");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain.as_bytes())
            .collect::<Result<_, _>>()
            .expect("rcgen writes valid PEM");
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("rcgen writes valid PEM");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("rcgen certificates are valid");
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(pki.ca_pem().as_bytes()) {
            roots
                .add(ca.expect("rcgen writes valid PEM"))
                .expect("a valid CA");
        }
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("aws-lc-rs supports TLS 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every handshake is a full one: no server is helped by resumption.
        client.resumption = rustls::client::Resumption::disabled();
        let client_config = Arc::new(client);
        Tls {
            wharf,
            wharf_client: pki.client_tls(),
            server: Arc::new(server),
            client: tokio_rustls::TlsConnector::from(client_config.clone()),
            client_config,
            name: ServerName::try_from("localhost").expect("a DNS name"),
        }
    }
}
