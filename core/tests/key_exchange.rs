//! Which TLS key exchange a wharf client and server agree on: the
//! post-quantum hybrid X25519MLKEM768 between two wharf endpoints with the
//! default provider (AWS-LC), and a classical group with a peer that offers
//! or accepts only classical groups. With the `ring` provider instead, every
//! handshake is classical.

mod support;

use support::Pair;
use wharf_core::rustls::{NamedGroup, ProtocolVersion};
use wharf_core::test_certs::TestPki;
use wharf_core::{ClientTls, Config, Connection, Message, ServerTls};

fn group(conn: &Connection) -> Option<NamedGroup> {
    conn.tls_info().and_then(|info| info.key_exchange_group)
}

/// Opens a wss pair, checks that both sides agree on what TLS negotiated,
/// and that a message goes through.
fn open_and_agree(client: &ClientTls, server: &ServerTls) -> Option<NamedGroup> {
    let mut p = Pair::tls(Config::default(), "wss://localhost/", client, server);
    assert!(
        p.client.tls_info().is_none(),
        "nothing is agreed before the handshake"
    );
    p.open();
    let (c, s) = (p.client.tls_info().unwrap(), p.server.tls_info().unwrap());
    assert_eq!(c, s, "both sides report the same session");
    assert_eq!(c.protocol_version, ProtocolVersion::TLSv1_3);
    p.client
        .send(Message::text("over the agreed keys"))
        .unwrap();
    p.drive();
    assert_eq!(
        p.server_messages(),
        vec![Message::text("over the agreed keys")]
    );
    assert_eq!(group(&p.client), group(&p.server));
    group(&p.client)
}

#[test]
fn plaintext_has_no_tls_info() {
    let mut p = Pair::plain(Config::default());
    p.open();
    assert_eq!(p.client.tls_info(), None);
    assert_eq!(p.server.tls_info(), None);
}

#[cfg(feature = "aws-lc-rs")]
mod aws_lc_rs {
    use super::*;
    use std::sync::Arc;
    use wharf_core::rustls::crypto::aws_lc_rs::{self, kx_group};
    use wharf_core::rustls::crypto::CryptoProvider;

    /// AWS-LC with only the classical groups, as an older peer offers them.
    fn classical_only() -> Arc<CryptoProvider> {
        Arc::new(CryptoProvider {
            kx_groups: vec![kx_group::X25519, kx_group::SECP256R1],
            ..aws_lc_rs::default_provider()
        })
    }

    #[test]
    fn two_wharf_endpoints_agree_on_the_hybrid_group() {
        let pki = TestPki::new();
        let server = pki.server_tls(&["localhost"]);
        assert_eq!(
            open_and_agree(&pki.client_tls(), &server),
            Some(NamedGroup::X25519MLKEM768)
        );
    }

    #[test]
    fn a_client_offering_only_classical_groups_still_connects() {
        let pki = TestPki::new();
        let client = ClientTls::builder()
            .with_pem_roots(pki.ca_pem().as_bytes())
            .unwrap()
            .with_crypto_provider(classical_only())
            .build()
            .unwrap();
        assert_eq!(
            open_and_agree(&client, &pki.server_tls(&["localhost"])),
            Some(NamedGroup::X25519)
        );
    }

    #[test]
    fn a_server_accepting_only_classical_groups_still_connects() {
        // The wharf client's first key share is the hybrid one; the server
        // asks it again (HelloRetryRequest) for a group it accepts.
        let pki = TestPki::new();
        let (chain, key) = pki.server_cert(&["localhost"]);
        let server = ServerTls::builder(chain.as_bytes(), key.as_bytes())
            .unwrap()
            .with_crypto_provider(Arc::new(CryptoProvider {
                kx_groups: vec![kx_group::SECP256R1],
                ..aws_lc_rs::default_provider()
            }))
            .build()
            .unwrap();
        assert_eq!(
            open_and_agree(&pki.client_tls(), &server),
            Some(NamedGroup::secp256r1)
        );
    }

    #[test]
    fn a_provider_without_common_groups_fails_typed() {
        let pki = TestPki::new();
        let client = ClientTls::builder()
            .with_pem_roots(pki.ca_pem().as_bytes())
            .unwrap()
            .with_crypto_provider(Arc::new(CryptoProvider {
                kx_groups: vec![kx_group::SECP384R1],
                ..aws_lc_rs::default_provider()
            }))
            .build()
            .unwrap();
        let (chain, key) = pki.server_cert(&["localhost"]);
        let server = ServerTls::builder(chain.as_bytes(), key.as_bytes())
            .unwrap()
            .with_crypto_provider(classical_only())
            .build()
            .unwrap();
        let mut p = Pair::tls(Config::default(), "wss://localhost/", &client, &server);
        p.drive();
        let (c, s) = (p.client_closed().unwrap(), p.server_closed().unwrap());
        assert!(matches!(c.error, Some(wharf_core::Error::Tls(_))), "{c:?}");
        assert!(matches!(s.error, Some(wharf_core::Error::Tls(_))), "{s:?}");
    }
}

#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
#[test]
fn ring_agrees_on_a_classical_group() {
    let pki = TestPki::new();
    let g = open_and_agree(&pki.client_tls(), &pki.server_tls(&["localhost"]));
    assert!(
        matches!(
            g,
            Some(NamedGroup::X25519 | NamedGroup::secp256r1 | NamedGroup::secp384r1)
        ),
        "{g:?}"
    );
}
