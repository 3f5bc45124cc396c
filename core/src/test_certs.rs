//! Certificates for tests, made with rcgen at run time: a private CA and
//! leaves signed by it, including broken ones (expired, not yet valid,
//! self-signed) for the failure paths.
//!
//! Compiled in this crate's own tests and, for other crates and integration
//! tests, behind the internal `_internal` feature:
//!
//! ```toml
//! [dev-dependencies]
//! wharf-core = { path = "../core", features = ["_internal"] }
//! ```
//!
//! Not part of the stable API. Keys are ECDSA P-256; every PEM is a `String`.
//!
//! # Panics
//!
//! Every function here panics if rcgen fails, which only happens when the
//! system random number generator fails or a name given is not a valid DNS
//! name or IP address: acceptable in test support code, and documented here
//! once rather than on every function.

use crate::tls::{ClientTls, ServerTls};
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use std::fmt;

/// A certificate chain and its private key, both PEM: `(chain_pem, key_pem)`.
pub type CertAndKey = (String, String);

/// A private certificate authority for tests.
///
/// ```
/// use wharf_core::test_certs::TestPki;
///
/// let pki = TestPki::new();
/// let (chain_pem, key_pem) = pki.server_cert(&["localhost", "127.0.0.1"]);
/// let server = wharf_core::ServerTls::builder(chain_pem.as_bytes(), key_pem.as_bytes())
///     .unwrap()
///     .build()
///     .unwrap();
/// let client = pki.client_tls(); // trusts this CA only
/// # let _ = (server, client);
/// ```
pub struct TestPki {
    cert: Certificate,
    key: KeyPair,
}

impl fmt::Debug for TestPki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

impl TestPki {
    /// Creates a fresh CA (self-signed, valid from 1975 to 4096). Each call
    /// makes a new, unrelated CA with a name of its own, so two `TestPki`s do
    /// not trust each other (an untrusted chain fails as an unknown issuer).
    #[must_use]
    pub fn new() -> TestPki {
        let key = new_key();
        let mut params = CertificateParams::default();
        // A name of its own: a verifier that finds a root with the issuer's
        // name tries its key, so two CAs with one name would make an untrusted
        // chain fail as a bad signature instead of an unknown issuer.
        let id: String = key
            .public_key_raw()
            .iter()
            .skip(1)
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("wharf test CA {id}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .expect("rcgen signs a CA certificate with a fresh key (test support)");
        TestPki { cert, key }
    }

    /// The CA certificate, PEM: the root a client (or an mTLS server) trusts.
    #[must_use]
    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate signed by this CA, valid now and for a long time,
    /// for `names` (DNS names and/or IP addresses, e.g. `["localhost",
    /// "127.0.0.1"]`). Connecting to a name not listed gives
    /// [`TlsError::WrongName`](crate::TlsError::WrongName).
    #[must_use]
    pub fn server_cert(&self, names: &[&str]) -> CertAndKey {
        self.sign(server_params(names))
    }

    /// A client certificate (mTLS) signed by this CA, with common name `name`.
    #[must_use]
    pub fn client_cert(&self, name: &str) -> CertAndKey {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        self.sign(params)
    }

    /// A server certificate signed by this CA that expired in 2001.
    #[must_use]
    pub fn expired_server_cert(&self, names: &[&str]) -> CertAndKey {
        let mut params = server_params(names);
        params.not_before = date_time_ymd(2000, 1, 1);
        params.not_after = date_time_ymd(2001, 1, 1);
        self.sign(params)
    }

    /// A server certificate signed by this CA that becomes valid in 2200.
    #[must_use]
    pub fn not_yet_valid_server_cert(&self, names: &[&str]) -> CertAndKey {
        let mut params = server_params(names);
        params.not_before = date_time_ymd(2200, 1, 1);
        params.not_after = date_time_ymd(2201, 1, 1);
        self.sign(params)
    }

    /// A self-signed server certificate for `names`, trusted by no `TestPki`.
    #[must_use]
    pub fn self_signed_server_cert(names: &[&str]) -> CertAndKey {
        let key = new_key();
        let cert = server_params(names)
            .self_signed(&key)
            .expect("rcgen signs a certificate with a fresh key (test support)");
        (cert.pem(), key.serialize_pem())
    }

    /// A [`ClientTls`] that trusts this CA only, without a client certificate.
    #[must_use]
    pub fn client_tls(&self) -> ClientTls {
        ClientTls::builder()
            .with_pem_roots(self.ca_pem().as_bytes())
            .and_then(|b| b.build())
            .expect("a CA certificate made by rcgen is a valid root")
    }

    /// A [`ClientTls`] that trusts this CA and presents a client certificate
    /// signed by it (common name `name`).
    #[must_use]
    pub fn client_tls_with_cert(&self, name: &str) -> ClientTls {
        let (chain, key) = self.client_cert(name);
        ClientTls::builder()
            .with_pem_roots(self.ca_pem().as_bytes())
            .and_then(|b| b.with_client_cert_pem(chain.as_bytes(), key.as_bytes()))
            .and_then(|b| b.build())
            .expect("certificates made by rcgen are valid")
    }

    /// A [`ServerTls`] with a certificate for `names` signed by this CA.
    #[must_use]
    pub fn server_tls(&self, names: &[&str]) -> ServerTls {
        let (chain, key) = self.server_cert(names);
        ServerTls::builder(chain.as_bytes(), key.as_bytes())
            .and_then(|b| b.build())
            .expect("certificates made by rcgen are valid")
    }

    fn sign(&self, params: CertificateParams) -> CertAndKey {
        let key = new_key();
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("rcgen signs a certificate with a fresh key (test support)");
        (cert.pem(), key.serialize_pem())
    }
}

fn new_key() -> KeyPair {
    KeyPair::generate().expect("generating a P-256 key fails only if the system RNG fails")
}

fn server_params(names: &[&str]) -> CertificateParams {
    let sans: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
    let mut params =
        CertificateParams::new(sans).expect("test certificate names are DNS names or IP addresses");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("wharf test server"),
    );
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params
}
