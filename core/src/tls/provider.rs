//! Which rustls crypto provider the configs built here use.
//!
//! - Feature `aws-lc-rs` (on by default): rustls' own default, AWS-LC, whose
//!   key exchange prefers the post-quantum hybrid X25519MLKEM768 and falls
//!   back to X25519, P-384 and P-256 for peers that offer only those.
//! - Feature `ring` (with `aws-lc-rs` off): *ring*, for targets where AWS-LC
//!   does not build. It has no post-quantum key exchange: X25519, P-384 and
//!   P-256 only.
//!
//! With both on, AWS-LC is used. With neither, only a provider given to the
//! builders (`with_crypto_provider`) or a ready-made rustls config
//! (`from_rustls`) can be used. The process-wide default provider of rustls
//! is never consulted nor installed.

use rustls::crypto::CryptoProvider;
use std::sync::Arc;

/// The provider of the enabled features, or `None` when neither is enabled.
pub(crate) fn default_provider() -> Option<Arc<CryptoProvider>> {
    #[cfg(feature = "aws-lc-rs")]
    {
        Some(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    {
        Some(Arc::new(ring::provider()))
    }
    #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
    {
        None
    }
}

/// The *ring* provider, assembled from the public pieces of
/// `rustls::crypto::ring` (its cipher suites, key exchange groups and key
/// loading) and of `webpki::ring` (signature verification), with *ring*'s
/// system random source.
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
mod ring {
    use rustls::crypto::ring as rustls_ring;
    use rustls::crypto::{
        CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms,
    };
    use rustls::pki_types::PrivateKeyDer;
    use rustls::sign::SigningKey;
    use rustls::SignatureScheme;
    use std::sync::Arc;
    use webpki::ring as alg;

    pub(super) fn provider() -> CryptoProvider {
        CryptoProvider {
            cipher_suites: rustls_ring::DEFAULT_CIPHER_SUITES.to_vec(),
            kx_groups: rustls_ring::DEFAULT_KX_GROUPS.to_vec(),
            signature_verification_algorithms: SIGNATURES,
            secure_random: &Ring,
            key_provider: &Ring,
        }
    }

    #[derive(Debug)]
    struct Ring;

    impl SecureRandom for Ring {
        fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
            use ::ring::rand::SecureRandom as _;
            ::ring::rand::SystemRandom::new()
                .fill(buf)
                .map_err(|_| GetRandomFailed)
        }
    }

    impl KeyProvider for Ring {
        fn load_private_key(
            &self,
            key: PrivateKeyDer<'static>,
        ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
            rustls_ring::sign::any_supported_type(&key)
        }
    }

    /// What webpki verifies with *ring*: ECDSA P-256 / P-384, Ed25519, RSA
    /// PKCS#1 v1.5 and PSS (2048-8192 bits). For TLS 1.3 the scheme fixes the
    /// curve; for TLS 1.2 it does not, so each ECDSA scheme maps to both curves.
    static SIGNATURES: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
        all: &[
            alg::ECDSA_P256_SHA256,
            alg::ECDSA_P256_SHA384,
            alg::ECDSA_P384_SHA256,
            alg::ECDSA_P384_SHA384,
            alg::ED25519,
            alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
            alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
            alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
            alg::RSA_PKCS1_2048_8192_SHA256,
            alg::RSA_PKCS1_2048_8192_SHA384,
            alg::RSA_PKCS1_2048_8192_SHA512,
            alg::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
            alg::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
            alg::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
        ],
        mapping: &[
            (
                SignatureScheme::ECDSA_NISTP384_SHA384,
                &[alg::ECDSA_P384_SHA384, alg::ECDSA_P256_SHA384],
            ),
            (
                SignatureScheme::ECDSA_NISTP256_SHA256,
                &[alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
            ),
            (SignatureScheme::ED25519, &[alg::ED25519]),
            (
                SignatureScheme::RSA_PSS_SHA512,
                &[alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
            ),
            (
                SignatureScheme::RSA_PSS_SHA384,
                &[alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
            ),
            (
                SignatureScheme::RSA_PSS_SHA256,
                &[alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA512,
                &[alg::RSA_PKCS1_2048_8192_SHA512],
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA384,
                &[alg::RSA_PKCS1_2048_8192_SHA384],
            ),
            (
                SignatureScheme::RSA_PKCS1_SHA256,
                &[alg::RSA_PKCS1_2048_8192_SHA256],
            ),
        ],
    };
}
