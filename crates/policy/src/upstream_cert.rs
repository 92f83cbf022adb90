//! Whether a bump goes on after verifying the server's certificate (SPEC §2.3): the
//! verdict, the fingerprints of `tls.trusted_server_certs`, the deciding rule's
//! `cert_errors` and `tls.on_cert_error`. The data path verifies and hashes; this
//! decides.

use crate::action::CertErrorPolicy;
use crate::settings::TlsSettings;

/// What verifying the server's certificate showed.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamCertFacts {
    /// The chain verified `ok` for the name (any error kind is `false`).
    pub chain_ok: bool,
    /// SHA-256 of the server's leaf certificate, when it sent one.
    pub leaf_sha256: Option<[u8; 32]>,
    /// The connection's certificate-error policy
    /// ([`TlsSettings::cert_error_policy`]).
    pub policy: CertErrorPolicy,
}

/// How the bump goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertAcceptance {
    /// As for a valid chain: a trusted replacement, requests relayed.
    Trusted,
    /// Relayed, but under a replacement the client does not trust (`untrusted`).
    Untrusted,
    /// A trusted replacement and the block page for every request (`block`).
    Blocked,
}

impl TlsSettings {
    /// The certificate-error policy of a connection: its rule's `cert_errors`, else
    /// `tls.on_cert_error`.
    pub fn cert_error_policy(&self, rule_cert_errors: Option<CertErrorPolicy>) -> CertErrorPolicy {
        rule_cert_errors.unwrap_or(self.on_cert_error)
    }

    /// A valid chain, or a leaf whose fingerprint is listed in
    /// `tls.trusted_server_certs`, is trusted; any other verdict goes to the
    /// certificate-error policy. Only the leaf's own fingerprint counts: a listed
    /// intermediate or another name's leaf earns nothing.
    pub fn accept_upstream(&self, facts: &UpstreamCertFacts) -> CertAcceptance {
        let pinned = facts
            .leaf_sha256
            .is_some_and(|leaf| self.trusted_server_certs.contains(&leaf));
        if facts.chain_ok || pinned {
            return CertAcceptance::Trusted;
        }
        match facts.policy {
            CertErrorPolicy::Allow => CertAcceptance::Trusted,
            CertErrorPolicy::Untrusted => CertAcceptance::Untrusted,
            CertErrorPolicy::Block => CertAcceptance::Blocked,
        }
    }
}
