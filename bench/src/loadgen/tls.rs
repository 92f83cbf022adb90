//! The one rustls client configuration of a run, built once and shared by every
//! connection: aws-lc-rs restricted to X25519 (what Squid's OpenSSL 3.0 also offers, so
//! both proxies pay for the same key exchange), AES-128-GCM offered first as Chrome and
//! Firefox do, TLS 1.3 and 1.2, roots from the `--ca` files only, normal chain and name
//! verification, no session resumption (every connection is a full handshake) and ALPN
//! for the one protocol spoken.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs;
use rustls::{CipherSuite, ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::cli::HttpVersion;

/// Builds the client configuration, or says which root file is unusable.
pub fn client_config(ca_files: &[PathBuf], http: HttpVersion) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for path in ca_files {
        let certs =
            CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{}: no certificate", path.display()));
        }
    }
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    // rustls offers AES-256-GCM first; browsers offer AES-128-GCM first, and servers
    // (and proxies) follow the client's order. A stable sort keeps the rest in place.
    provider.cipher_suites.sort_by_key(|suite| {
        matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        )
    });
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![http.alpn().to_vec()];
    Ok(Arc::new(config))
}
