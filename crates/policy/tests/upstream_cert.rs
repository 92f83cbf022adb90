//! Whether a bump goes on after the server's certificate is verified (SPEC §2.3): a
//! valid chain, a pinned leaf (`tls.trusted_server_certs`), the rule's `cert_errors`
//! over `tls.on_cert_error`; with the facts a server controls.

use std::path::Path;

use sluice_policy::{CertAcceptance, CertErrorPolicy, Config, TlsSettings, UpstreamCertFacts};

const PINNED: [u8; 32] = [0x0a; 32];

fn tls(text: &str) -> TlsSettings {
    let pin = "sha256:".to_owned() + &["0A"; 32].join(":");
    let text = format!("[tls]\ntrusted_server_certs = [\"{pin}\"]\n{text}");
    Config::from_str(&text, "sluice.toml", Path::new("."))
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"))
        .settings
        .tls
}

fn failed(leaf: Option<[u8; 32]>, policy: CertErrorPolicy) -> UpstreamCertFacts {
    UpstreamCertFacts {
        chain_ok: false,
        leaf_sha256: leaf,
        policy,
    }
}

#[test]
fn a_valid_chain_is_trusted_whatever_the_policy() {
    let tls = tls("");
    for policy in [
        CertErrorPolicy::Block,
        CertErrorPolicy::Untrusted,
        CertErrorPolicy::Allow,
    ] {
        let facts = UpstreamCertFacts {
            chain_ok: true,
            leaf_sha256: None,
            policy,
        };
        assert_eq!(tls.accept_upstream(&facts), CertAcceptance::Trusted);
    }
}

#[test]
fn a_failed_chain_goes_to_the_policy() {
    let tls = tls("");
    let other_leaf = Some([0x0b; 32]);
    assert_eq!(
        tls.accept_upstream(&failed(other_leaf, CertErrorPolicy::Block)),
        CertAcceptance::Blocked
    );
    assert_eq!(
        tls.accept_upstream(&failed(other_leaf, CertErrorPolicy::Untrusted)),
        CertAcceptance::Untrusted
    );
    assert_eq!(
        tls.accept_upstream(&failed(other_leaf, CertErrorPolicy::Allow)),
        CertAcceptance::Trusted
    );
}

/// Only the leaf's own fingerprint counts: a leaf that differs by one bit, or no leaf
/// at all, earns nothing from the pin.
#[test]
fn a_pinned_leaf_is_trusted_and_nothing_else_is() {
    let tls = tls("");
    assert_eq!(
        tls.accept_upstream(&failed(Some(PINNED), CertErrorPolicy::Block)),
        CertAcceptance::Trusted
    );
    let mut near = PINNED;
    near[31] ^= 1;
    assert_eq!(
        tls.accept_upstream(&failed(Some(near), CertErrorPolicy::Block)),
        CertAcceptance::Blocked
    );
    assert_eq!(
        tls.accept_upstream(&failed(None, CertErrorPolicy::Untrusted)),
        CertAcceptance::Untrusted
    );
}

#[test]
fn a_rules_cert_errors_overrides_on_cert_error() {
    let tls = tls("on_cert_error = \"untrusted\"\n");
    assert_eq!(tls.cert_error_policy(None), CertErrorPolicy::Untrusted);
    assert_eq!(
        tls.cert_error_policy(Some(CertErrorPolicy::Allow)),
        CertErrorPolicy::Allow
    );
    assert_eq!(
        tls.cert_error_policy(Some(CertErrorPolicy::Block)),
        CertErrorPolicy::Block
    );
}
