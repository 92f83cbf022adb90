//! Verification of upstream servers' certificates, classified into the SPEC's error kinds
//! (§2.2): `expired`, `not_yet_valid`, `unknown_issuer`, `name_mismatch`,
//! `bad_signature`, `revoked`, `other`.
//!
//! Security-sensitive: the client configuration built here **accepts every certificate
//! chain during the handshake**. The proxy's policy decides what a certificate error
//! means (`block`, `untrusted`, `allow`, `tls.trusted_server_certs`), and a rustls client
//! configuration is shared by all connections, so a handshake failure would lose both the
//! error kind and the chance to show a block page. The consequence: code that completes an
//! upstream handshake with [`UpstreamVerifier::client_config`] **must** call
//! [`UpstreamVerifier::classify`] on the peer's certificates and act on the result before
//! it sends a single byte of the client's data upstream.
//!
//! What the handshake still checks: the server's handshake signature is verified against
//! the public key of the leaf it presented (the real webpki implementations), so the
//! server proves it holds that leaf's key, and `classify` judges the same leaf.
//!
//! Revocation: the CRLs of `tls.crl_files`, and a stapled OCSP response
//! ([`UpstreamVerifier::check_staple`]). Not checked: certificate transparency.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::{
    CertificateError, CipherSuite, ClientConfig, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::ocsp::{stapled_status, CertStatus, IssuerKey};

/// Why an upstream certificate is not valid, in the SPEC's words (§2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertErrorKind {
    /// The leaf or a certificate of its chain has expired.
    Expired,
    /// The leaf or a certificate of its chain is not valid yet.
    NotYetValid,
    /// The chain does not lead to a trusted root; includes self-signed leaves.
    UnknownIssuer,
    /// The leaf is not valid for the SNI (or the CONNECT IP).
    NameMismatch,
    /// A signature in the chain is invalid or uses an unsupported algorithm.
    BadSignature,
    /// A certificate of the chain is revoked (a CRL of `tls.crl_files`, or the leaf by
    /// the server's stapled OCSP response).
    Revoked,
    /// Anything else: malformed certificate, wrong key usage, no certificate…
    Other,
}

impl CertErrorKind {
    /// The name used in logs, metrics and block pages.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertErrorKind::Expired => "expired",
            CertErrorKind::NotYetValid => "not_yet_valid",
            CertErrorKind::UnknownIssuer => "unknown_issuer",
            CertErrorKind::NameMismatch => "name_mismatch",
            CertErrorKind::BadSignature => "bad_signature",
            CertErrorKind::Revoked => "revoked",
            CertErrorKind::Other => "other",
        }
    }

    fn of(error: &rustls::Error) -> Self {
        let rustls::Error::InvalidCertificate(error) = error else {
            return CertErrorKind::Other;
        };
        match error {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                CertErrorKind::Expired
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                CertErrorKind::NotYetValid
            }
            CertificateError::UnknownIssuer => CertErrorKind::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CertErrorKind::NameMismatch
            }
            // rustls still reports webpki's deprecated unit variants with this one.
            #[allow(deprecated)]
            CertificateError::BadSignature
            | CertificateError::UnsupportedSignatureAlgorithm
            | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                CertErrorKind::BadSignature
            }
            CertificateError::Revoked => CertErrorKind::Revoked,
            _ => CertErrorKind::Other,
        }
    }
}

impl std::fmt::Display for CertErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the verifier could not be built. Each error names the file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A `tls.upstream_roots` file could not be read or is not PEM.
    #[error("cannot read the upstream root certificates in {}: {source}", path.display())]
    ReadRoots {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: rustls_pki_types::pem::Error,
    },
    /// A `tls.upstream_roots` file holds no certificate.
    #[error("{} contains no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificates {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in a `tls.upstream_roots` file cannot be a trust anchor.
    #[error("a certificate in {} cannot be used as a root: {source}", path.display())]
    BadRoot {
        /// The file.
        path: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// A `tls.crl_files` file could not be read.
    #[error("cannot read the CRL file {}: {source}", path.display())]
    ReadCrl {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A `tls.crl_files` file is not a CRL in PEM or DER.
    #[error("{} is not a certificate revocation list (PEM or DER): {why}", path.display())]
    BadCrl {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The TLS client configuration could not be built.
    #[error("cannot build the upstream TLS configuration: {0}")]
    Config(#[source] rustls::Error),
}

/// Verifies upstream certificate chains against the system roots plus
/// `tls.upstream_roots`, and builds the upstream TLS client configuration.
pub struct UpstreamVerifier {
    roots: Arc<RootCertStore>,
    /// The chain and name verifier, with the CRLs.
    webpki: Arc<WebPkiServerVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Shared by every configuration handed out, so TLS sessions resume across them.
    base_config: ClientConfig,
    /// Recent verdicts, by chain and name: a server that is connected to again (a
    /// resumed session presents the same chain) is not verified again for a while.
    verdicts: moka::sync::Cache<[u8; 32], Verdict>,
    /// Leaves a believed stapled OCSP response said were revoked, by fingerprint: a
    /// resumed session, which carries no staple, is still refused.
    revoked: moka::sync::Cache<[u8; 32], ()>,
}

impl std::fmt::Debug for UpstreamVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamVerifier")
            .field("roots", &self.roots.len())
            .field("verdicts", &self.verdicts.entry_count())
            .finish_non_exhaustive()
    }
}

/// How long a verdict on a chain is reused: an expiry, or a changed chain, is noticed
/// at most this late.
const VERDICT_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a leaf that a staple said was revoked stays refused without a staple.
const REVOKED_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Chains and names whose verdicts are kept.
const VERDICTS_KEPT: u64 = 10_000;

#[derive(Clone, Copy, Debug)]
struct Verdict {
    outcome: Result<(), CertErrorKind>,
    /// The time the chain was judged at.
    at: UnixTime,
}

impl UpstreamVerifier {
    /// Trusts the system roots plus every certificate of the PEM files in `extra_roots`,
    /// and checks the chains against the CRLs in `crl_files` (PEM or DER). A missing or
    /// unreadable system store is logged, not fatal; with no root at all, every chain is
    /// `unknown_issuer`.
    pub fn new(extra_roots: &[PathBuf], crl_files: &[PathBuf]) -> Result<Arc<Self>, VerifyError> {
        let mut roots = RootCertStore::empty();
        add_system_roots(&mut roots);
        for path in extra_roots {
            add_root_file(&mut roots, path)?;
        }
        if roots.is_empty() {
            tracing::warn!("no trusted root certificate: every upstream certificate will be classified unknown_issuer");
        }
        let mut crls = Vec::new();
        for path in crl_files {
            crls.extend(read_crl_file(path)?);
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(upstream_provider());
        let algorithms = provider.signature_verification_algorithms;
        let webpki = webpki_verifier(&roots, &provider, crls)?;
        let base_config = accept_then_classify_config(provider)?;
        Ok(Arc::new(Self {
            roots,
            webpki,
            algorithms,
            base_config,
            verdicts: moka::sync::Cache::builder()
                .max_capacity(VERDICTS_KEPT)
                .time_to_live(VERDICT_TTL)
                .build(),
            revoked: moka::sync::Cache::builder()
                .max_capacity(VERDICTS_KEPT)
                .time_to_live(REVOKED_TTL)
                .build(),
        }))
    }

    /// Verifies the chain (`certs[0]` is the leaf, the rest intermediates, as received)
    /// and the name. `server_name` is the SNI, or the CONNECT IP as
    /// [`ServerName::IpAddress`].
    ///
    /// A verdict is reused for [`VERDICT_TTL`] for the same chain and name, if `now` is
    /// within that time after it was reached.
    pub fn classify(
        &self,
        certs: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), CertErrorKind> {
        let key = verdict_key(certs, server_name);
        let fresh = |verdict: &Verdict| {
            now.as_secs() >= verdict.at.as_secs()
                && now.as_secs() < verdict.at.as_secs() + VERDICT_TTL.as_secs()
        };
        if let Some(verdict) = self.verdicts.get(&key).filter(fresh) {
            return verdict.outcome;
        }
        let outcome = self.verify(certs, server_name, now);
        self.verdicts.insert(key, Verdict { outcome, at: now });
        outcome
    }

    fn verify(
        &self,
        certs: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), CertErrorKind> {
        let Some((leaf, intermediates)) = certs.split_first() else {
            return Err(CertErrorKind::Other);
        };
        let verdict = self
            .webpki
            .verify_server_cert(leaf, intermediates, server_name, &[], now);
        verdict.map(|_| ()).map_err(|error| {
            tracing::debug!(%error, server = ?server_name, "upstream certificate not valid");
            match CertErrorKind::of(&error) {
                // A self-signed leaf carrying CA:TRUE (openssl's default) is rejected by
                // webpki as a CA used as an end entity; to users it is self-signed.
                CertErrorKind::Other if is_self_issued(leaf) => CertErrorKind::UnknownIssuer,
                kind => kind,
            }
        })
    }

    /// What the server's stapled OCSP response (`staple`, empty when none) says of the
    /// leaf of `certs`: `revoked` when a response signed by the leaf's issuer (from the
    /// chain or the roots) or its delegated responder, fresh, says so; or when such a
    /// response said so earlier. A staple that cannot be believed is ignored, as
    /// browsers do.
    pub fn check_staple(
        &self,
        certs: &[CertificateDer<'_>],
        staple: &[u8],
        now: UnixTime,
    ) -> Result<(), CertErrorKind> {
        let Some(leaf) = certs.first() else {
            return Ok(());
        };
        let fingerprint = cert_sha256(leaf);
        if self.revoked.contains_key(&fingerprint) {
            return Err(CertErrorKind::Revoked);
        }
        if staple.is_empty() {
            return Ok(());
        }
        let parsed: Vec<_> = certs[1..]
            .iter()
            .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
            .map(|(_, cert)| cert)
            .collect();
        let mut issuers: Vec<IssuerKey<'_>> = parsed
            .iter()
            .filter_map(|cert| {
                Some(IssuerKey {
                    subject: crate::ocsp::contents(cert.subject().as_raw())?,
                    spki: crate::ocsp::contents(cert.public_key().raw)?,
                })
            })
            .collect();
        issuers.extend(self.roots.roots.iter().map(|anchor| IssuerKey {
            subject: anchor.subject.as_ref(),
            spki: anchor.subject_public_key_info.as_ref(),
        }));
        match stapled_status(staple, leaf, &issuers, self.algorithms.all, now) {
            Ok(CertStatus::Revoked) => {
                self.revoked.insert(fingerprint, ());
                Err(CertErrorKind::Revoked)
            }
            Ok(_) => Ok(()),
            Err(why) => {
                tracing::debug!(why, "stapled OCSP response ignored");
                Ok(())
            }
        }
    }

    /// The verifier that [`client_config`](Self::client_config)'s handshakes use
    /// (accepts any chain, checks the handshake signature), for a caller that wraps it
    /// to see the chain presented.
    pub fn handshake_verifier(&self) -> Arc<dyn ServerCertVerifier> {
        Arc::new(AcceptThenClassify {
            algorithms: self.algorithms,
        })
    }

    /// A client configuration (TLS 1.2 and 1.3, aws-lc-rs) offering `alpn`, whose
    /// handshakes accept any certificate chain: the caller must [`classify`] the peer's
    /// certificates before sending data (see the module documentation).
    ///
    /// [`classify`]: Self::classify
    pub fn client_config(&self, alpn: Vec<Vec<u8>>) -> Arc<ClientConfig> {
        let mut config = self.base_config.clone();
        config.alpn_protocols = alpn;
        Arc::new(config)
    }
}

/// What a verdict is kept under: SHA-256 over the name and every certificate of the chain
/// (each with its length, so that no two chains share a key).
fn verdict_key(certs: &[CertificateDer<'_>], server_name: &ServerName<'_>) -> [u8; 32] {
    let mut hash = Sha256::new();
    let name = server_name.to_str();
    hash.update((name.len() as u64).to_be_bytes());
    hash.update(name.as_bytes());
    for cert in certs {
        hash.update((cert.len() as u64).to_be_bytes());
        hash.update(cert.as_ref());
    }
    hash.finalize().into()
}

/// SHA-256 of a certificate's DER (for `tls.trusted_server_certs` and cache keys).
pub fn cert_sha256(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

fn add_system_roots(roots: &mut RootCertStore) {
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::warn!(%error, "cannot load some of the system's root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "ignored unparsable system root certificates");
    }
    if added == 0 {
        tracing::warn!("no system root certificate found; only tls.upstream_roots are trusted");
    }
}

/// The chain and name verifier: rustls' webpki one, with the CRLs. A certificate that no
/// CRL covers is not an error (CRLs are for internal PKIs; public ones have none here).
fn webpki_verifier(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<WebPkiServerVerifier>, VerifyError> {
    // rustls refuses to build a verifier without roots; one that trusts a root nobody
    // holds the key of classifies every chain as unknown_issuer, as wanted.
    let roots = match roots.is_empty() {
        true => Arc::new(placeholder_roots()),
        false => Arc::clone(roots),
    };
    WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(provider))
        .with_crls(crls)
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| VerifyError::Config(rustls::Error::General(e.to_string())))
}

/// A trust store holding one root whose key was thrown away.
fn placeholder_roots() -> RootCertStore {
    let key = rcgen::KeyPair::generate().expect("a P-256 key can be generated");
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("a root can be self-signed");
    let mut roots = RootCertStore::empty();
    roots
        .add(cert.der().clone())
        .expect("an rcgen root is a valid trust anchor");
    roots
}

/// The CRLs of one file: every PEM `X509 CRL` block, or the whole file as one DER CRL.
/// Each is parsed here so that a broken file is an error at load, naming it.
fn read_crl_file(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, VerifyError> {
    let bytes = std::fs::read(path).map_err(|source| VerifyError::ReadCrl {
        path: path.to_owned(),
        source,
    })?;
    let bad = |why: String| VerifyError::BadCrl {
        path: path.to_owned(),
        why,
    };
    let crls: Vec<CertificateRevocationListDer<'static>> = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?
    } else {
        vec![CertificateRevocationListDer::from(bytes)]
    };
    if crls.is_empty() {
        return Err(bad("no X509 CRL block".into()));
    }
    for crl in &crls {
        webpki::OwnedCertRevocationList::from_der(crl.as_ref())
            .map_err(|e| bad(format!("{e:?}")))?;
    }
    Ok(crls)
}

fn add_root_file(roots: &mut RootCertStore, path: &Path) -> Result<(), VerifyError> {
    let read_error = |source| VerifyError::ReadRoots {
        path: path.to_owned(),
        source,
    };
    let mut count = 0_usize;
    for cert in CertificateDer::pem_file_iter(path).map_err(read_error)? {
        roots
            .add(cert.map_err(read_error)?)
            .map_err(|source| VerifyError::BadRoot {
                path: path.to_owned(),
                source,
            })?;
        count += 1;
    }
    if count == 0 {
        return Err(VerifyError::NoCertificates {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// The TLS implementation of the upstream leg: [`crate::crypto::provider`], offering
/// AES-128-GCM before AES-256-GCM as browsers do (servers follow the client's order in
/// TLS 1.3). For the security margin browsers accept, AES-128-GCM with SHA-256 costs
/// markedly less CPU per byte and per handshake: SHA-256 has instructions of its own on
/// x86 and ARM, the SHA-384 of the AES-256 suites does not.
fn upstream_provider() -> CryptoProvider {
    let mut provider = crate::crypto::provider();
    // A stable sort: the order within each group stays rustls' own.
    provider
        .cipher_suites
        .sort_by_key(|suite| is_aes_256(suite.suite()));
    provider
}

fn is_aes_256(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
    )
}

fn accept_then_classify_config(provider: Arc<CryptoProvider>) -> Result<ClientConfig, VerifyError> {
    let verifier = Arc::new(AcceptThenClassify {
        algorithms: provider.signature_verification_algorithms,
    });
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(VerifyError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn is_self_issued(der: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(der)
        .is_ok_and(|(_, cert)| cert.subject().as_raw() == cert.issuer().as_raw())
}

/// The handshake-time verifier: accepts the chain (it is classified afterwards) but
/// checks the handshake signature against the presented leaf's key.
#[derive(Debug)]
struct AcceptThenClassify {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptThenClassify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{IpAddr, Ipv4Addr};

    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
        DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams,
        SerialNumber,
    };
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use rustls::ServerConfig;
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use time::{Duration, OffsetDateTime};

    const NAME: &str = "server.example.test";

    /// A CA made with rcgen: `trusted` ones go into the verifier's extra roots.
    struct TestCa {
        issuer: Issuer<'static, KeyPair>,
        der: CertificateDer<'static>,
    }

    impl TestCa {
        fn new(common_name: &str) -> Self {
            Self::with_key(common_name, KeyPair::generate().unwrap())
        }

        fn with_key(common_name: &str, key: KeyPair) -> Self {
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = days_from_now(-365);
            params.not_after = days_from_now(365);
            let der = params.self_signed(&key).unwrap().der().clone();
            Self {
                issuer: Issuer::new(params, key),
                der,
            }
        }

        fn intermediate(&self, common_name: &str) -> Self {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, common_name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            params.not_before = days_from_now(-365);
            params.not_after = days_from_now(365);
            let der = params.signed_by(&key, &self.issuer).unwrap().der().clone();
            Self {
                issuer: Issuer::new(params, key),
                der,
            }
        }

        fn leaf(&self, params: &CertificateParams) -> Leaf {
            let key = KeyPair::generate().unwrap();
            let der = params.signed_by(&key, &self.issuer).unwrap().der().clone();
            Leaf { der, key }
        }
    }

    struct Leaf {
        der: CertificateDer<'static>,
        key: KeyPair,
    }

    fn days_from_now(days: i64) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::days(days)
    }

    fn leaf_params(names: &[&str]) -> CertificateParams {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.not_before = days_from_now(-1);
        params.not_after = days_from_now(90);
        params
    }

    fn self_signed(params: &CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().clone();
        Leaf { der, key }
    }

    fn write_pem(dir: &tempfile::TempDir, file: &str, certs: &[&CertificateDer<'_>]) -> PathBuf {
        let path = dir.path().join(file);
        let pem: String = certs
            .iter()
            .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
            .collect();
        std::fs::write(&path, pem).unwrap();
        path
    }

    /// A verifier trusting the system roots plus `ca`.
    fn verifier_trusting(ca: &TestCa) -> (Arc<UpstreamVerifier>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let roots = write_pem(&dir, "roots.pem", &[&ca.der]);
        (UpstreamVerifier::new(&[roots], &[]).expect("verifier"), dir)
    }

    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl ResolvesServerCert for Fixed {
        fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }
    }

    /// A server presenting `chain` and signing the handshake with `key`, which need not
    /// belong to the chain's leaf.
    fn server_config(
        chain: Vec<CertificateDer<'static>>,
        key: &KeyPair,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> ServerConfig {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(CertifiedKey::new(
                chain,
                signing_key,
            )))));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    fn serve(leaf: &Leaf, intermediates: &[&CertificateDer<'static>]) -> Arc<ServerConfig> {
        let mut chain = vec![leaf.der.clone()];
        chain.extend(intermediates.iter().map(|der| (*der).clone()));
        Arc::new(server_config(chain, &leaf.key, rustls::DEFAULT_VERSIONS))
    }

    /// What the proxy sees after an upstream handshake.
    struct Handshake {
        certs: Vec<CertificateDer<'static>>,
        alpn: Option<Vec<u8>>,
        resumed: bool,
    }

    async fn handshake(
        verifier: &Arc<UpstreamVerifier>,
        alpn: Vec<Vec<u8>>,
        server: Arc<ServerConfig>,
        name: ServerName<'static>,
    ) -> std::io::Result<Handshake> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let server_task = tokio::spawn(async move {
            let mut stream = acceptor.accept(server_io).await?;
            stream.shutdown().await
        });
        let connector = tokio_rustls::TlsConnector::from(verifier.client_config(alpn));
        let mut stream = match connector.connect(name, client_io).await {
            Ok(stream) => stream,
            Err(err) => {
                server_task.abort();
                return Err(err);
            }
        };
        server_task.await.unwrap().expect("server side");
        // Reading to the end processes the session tickets and the close_notify.
        stream.read_to_end(&mut Vec::new()).await?;
        let (_, connection) = stream.get_ref();
        Ok(Handshake {
            certs: connection.peer_certificates().unwrap_or_default().to_vec(),
            alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
            resumed: connection.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        })
    }

    fn dns(name: &'static str) -> ServerName<'static> {
        ServerName::try_from(name).unwrap()
    }

    /// Handshake with `server` (which succeeds whatever the chain), then classify.
    async fn classify_against(
        verifier: &Arc<UpstreamVerifier>,
        server: Arc<ServerConfig>,
        name: ServerName<'static>,
    ) -> Result<(), CertErrorKind> {
        let seen = handshake(verifier, vec![b"http/1.1".to_vec()], server, name.clone())
            .await
            .expect("the handshake accepts the chain");
        verifier.classify(&seen.certs, &name, UnixTime::now())
    }

    // A chain root → intermediate → leaf, root trusted as an extra root: ok, TLS 1.3 and 1.2.
    #[tokio::test]
    async fn valid_chain_is_ok_over_tls13_and_tls12() {
        let root = TestCa::new("Test Root");
        let intermediate = root.intermediate("Test Intermediate");
        let leaf = intermediate.leaf(&leaf_params(&[NAME]));
        let (verifier, _dir) = verifier_trusting(&root);
        assert_eq!(
            classify_against(&verifier, serve(&leaf, &[&intermediate.der]), dns(NAME)).await,
            Ok(())
        );

        let tls12 = server_config(
            vec![leaf.der.clone(), intermediate.der.clone()],
            &leaf.key,
            &[&rustls::version::TLS12],
        );
        assert_eq!(
            classify_against(&verifier, Arc::new(tls12), dns(NAME)).await,
            Ok(())
        );
    }

    // Each certificate problem is a handshake that succeeds and a classification.
    #[tokio::test]
    async fn each_error_kind_is_classified() {
        let root = TestCa::new("Test Root");
        let (verifier, _dir) = verifier_trusting(&root);

        let mut expired = leaf_params(&[NAME]);
        expired.not_before = days_from_now(-30);
        expired.not_after = days_from_now(-1);
        let mut not_yet_valid = leaf_params(&[NAME]);
        not_yet_valid.not_before = days_from_now(1);
        let mut self_signed_ca = leaf_params(&[NAME]);
        self_signed_ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Same subject as the trusted root, but another key: the signature cannot verify.
        let impostor = TestCa::with_key("Test Root", KeyPair::generate().unwrap());
        let stranger = TestCa::new("Unknown Root");

        let cases = [
            ("expired", root.leaf(&expired), CertErrorKind::Expired),
            (
                "not yet valid",
                root.leaf(&not_yet_valid),
                CertErrorKind::NotYetValid,
            ),
            (
                "self-signed",
                self_signed(&leaf_params(&[NAME])),
                CertErrorKind::UnknownIssuer,
            ),
            (
                "self-signed CA:TRUE",
                self_signed(&self_signed_ca),
                CertErrorKind::UnknownIssuer,
            ),
            (
                "unknown issuer",
                stranger.leaf(&leaf_params(&[NAME])),
                CertErrorKind::UnknownIssuer,
            ),
            (
                "wrong name",
                root.leaf(&leaf_params(&["other.example.test"])),
                CertErrorKind::NameMismatch,
            ),
            (
                "bad signature",
                impostor.leaf(&leaf_params(&[NAME])),
                CertErrorKind::BadSignature,
            ),
        ];
        for (case, leaf, expected) in cases {
            let verdict = classify_against(&verifier, serve(&leaf, &[]), dns(NAME)).await;
            assert_eq!(verdict, Err(expected), "{case}");
        }
    }

    // A server that presents a certificate without holding its key fails the handshake.
    #[tokio::test]
    async fn handshake_fails_when_the_server_cannot_prove_the_key() {
        let root = TestCa::new("Test Root");
        let (verifier, _dir) = verifier_trusting(&root);
        let leaf = root.leaf(&leaf_params(&[NAME]));
        let wrong_key = KeyPair::generate().unwrap();
        for versions in [rustls::DEFAULT_VERSIONS, &[&rustls::version::TLS12]] {
            let server = server_config(vec![leaf.der.clone()], &wrong_key, versions);
            let result = handshake(&verifier, Vec::new(), Arc::new(server), dns(NAME)).await;
            let err = result
                .err()
                .expect("a stolen certificate must not complete a handshake");
            let rustls_error = err
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            assert_eq!(
                rustls_error,
                Some(&rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                )),
                "{err}"
            );
        }
    }

    // An IP address as the server name: the certificate must carry it as an IP SAN.
    #[tokio::test]
    async fn ip_address_server_name() {
        let root = TestCa::new("Test Root");
        let (verifier, _dir) = verifier_trusting(&root);
        let leaf = root.leaf(&leaf_params(&["192.0.2.1"]));
        let ip = |octet| ServerName::IpAddress(IpAddr::V4(Ipv4Addr::new(192, 0, 2, octet)).into());
        assert_eq!(
            classify_against(&verifier, serve(&leaf, &[]), ip(1)).await,
            Ok(())
        );
        let seen = handshake(&verifier, Vec::new(), serve(&leaf, &[]), ip(1))
            .await
            .unwrap();
        assert_eq!(
            verifier.classify(&seen.certs, &ip(2), UnixTime::now()),
            Err(CertErrorKind::NameMismatch)
        );
        assert_eq!(
            verifier.classify(&seen.certs, &dns(NAME), UnixTime::now()),
            Err(CertErrorKind::NameMismatch)
        );
    }

    #[test]
    fn upstream_offers_aes_128_before_aes_256_and_keeps_every_suite() {
        let verifier = UpstreamVerifier::new(&[], &[]).unwrap();
        let config = verifier.client_config(Vec::new());
        let offered: Vec<CipherSuite> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let position = |suite| offered.iter().position(|s| *s == suite).unwrap();
        assert!(
            position(CipherSuite::TLS13_AES_128_GCM_SHA256)
                < position(CipherSuite::TLS13_AES_256_GCM_SHA384)
        );
        assert!(
            position(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
                < position(CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)
        );
        assert_eq!(
            offered.len(),
            rustls::crypto::aws_lc_rs::default_provider()
                .cipher_suites
                .len()
        );
    }

    // `now` is the caller's: the same chain is expired later and not yet valid earlier.
    #[test]
    fn classify_uses_the_given_time() {
        let root = TestCa::new("Test Root");
        let (verifier, _dir) = verifier_trusting(&root);
        let leaf = root.leaf(&leaf_params(&[NAME]));
        let at = |days: i64| {
            let seconds = (days_from_now(days) - OffsetDateTime::UNIX_EPOCH).whole_seconds();
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds as u64))
        };
        let certs = [leaf.der.clone()];
        assert_eq!(verifier.classify(&certs, &dns(NAME), at(0)), Ok(()));
        assert_eq!(
            verifier.classify(&certs, &dns(NAME), at(100)),
            Err(CertErrorKind::Expired)
        );
        assert_eq!(
            verifier.classify(&certs, &dns(NAME), at(-2)),
            Err(CertErrorKind::NotYetValid)
        );
    }

    // A verdict is reused for a minute for the same chain and name: an expiry is noticed
    // at most that late; another name, or a time before the verdict, is judged afresh.
    #[test]
    fn a_verdict_is_reused_for_the_same_chain_and_name_for_a_minute() {
        let root = TestCa::new("Test Root");
        let (verifier, _dir) = verifier_trusting(&root);
        let mut params = leaf_params(&[NAME]);
        params.not_after = days_from_now(1);
        let not_after = params.not_after;
        let leaf = root.leaf(&params);
        let certs = [leaf.der.clone()];
        let at = |seconds_after_expiry: i64| {
            let t = not_after + Duration::seconds(seconds_after_expiry);
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                (t - OffsetDateTime::UNIX_EPOCH).whole_seconds() as u64,
            ))
        };
        assert_eq!(verifier.classify(&certs, &dns(NAME), at(-10)), Ok(()));
        assert_eq!(
            verifier.classify(&certs, &dns(NAME), at(20)),
            Ok(()),
            "the verdict of 30 s ago stands"
        );
        assert_eq!(
            verifier.classify(&certs, &dns(NAME), at(60)),
            Err(CertErrorKind::Expired),
            "70 s later the chain is judged again"
        );
        assert_eq!(
            verifier.classify(&certs, &dns("other.test"), at(61)),
            Err(CertErrorKind::Expired),
            "each name has its own verdict"
        );
        assert_eq!(
            verifier.classify(&certs, &dns(NAME), at(-100)),
            Ok(()),
            "a time before the verdict is judged afresh"
        );
    }

    // No certificate, or bytes that are not one: other.
    #[test]
    fn missing_or_garbage_chain_is_other() {
        let verifier = UpstreamVerifier::new(&[], &[]).unwrap();
        let now = UnixTime::now();
        assert_eq!(
            verifier.classify(&[], &dns(NAME), now),
            Err(CertErrorKind::Other)
        );
        let garbage = [CertificateDer::from(b"not a certificate".to_vec())];
        assert_eq!(
            verifier.classify(&garbage, &dns(NAME), now),
            Err(CertErrorKind::Other)
        );
    }

    // ALPN is offered as configured; TLS sessions resume across configurations, and a
    // resumed handshake still exposes the chain for classify.
    #[tokio::test]
    async fn client_config_offers_alpn_and_resumes_with_the_chain() {
        let root = TestCa::new("Test Root");
        let (verifier, _dir) = verifier_trusting(&root);
        let leaf = root.leaf(&leaf_params(&[NAME]));
        let server = serve(&leaf, &[]);
        let alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let first = handshake(&verifier, alpn, Arc::clone(&server), dns(NAME))
            .await
            .unwrap();
        assert_eq!(first.alpn.as_deref(), Some(&b"h2"[..]));
        assert!(!first.resumed);

        let http1 = vec![b"http/1.1".to_vec()];
        let second = handshake(&verifier, http1, server, dns(NAME))
            .await
            .unwrap();
        assert_eq!(second.alpn.as_deref(), Some(&b"http/1.1"[..]));
        assert!(
            second.resumed,
            "the session cache is shared by all client configs"
        );
        assert_eq!(second.certs, first.certs);
        assert_eq!(
            verifier.classify(&second.certs, &dns(NAME), UnixTime::now()),
            Ok(())
        );
    }

    // Extra roots: several per file; errors name the file.
    #[test]
    fn extra_root_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (TestCa::new("Root A"), TestCa::new("Root B"));
        let both = write_pem(&dir, "both.pem", &[&a.der, &b.der]);
        let verifier = UpstreamVerifier::new(&[both], &[]).unwrap();
        for ca in [&a, &b] {
            let leaf = ca.leaf(&leaf_params(&[NAME]));
            assert_eq!(
                verifier.classify(&[leaf.der], &dns(NAME), UnixTime::now()),
                Ok(())
            );
        }

        let missing = dir.path().join("missing.pem");
        let err = UpstreamVerifier::new(&[missing], &[]).unwrap_err();
        assert!(matches!(err, VerifyError::ReadRoots { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = UpstreamVerifier::new(&[empty], &[]).unwrap_err();
        assert!(matches!(err, VerifyError::NoCertificates { .. }), "{err}");
        assert!(err.to_string().contains("empty.pem"), "{err}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = UpstreamVerifier::new(&[broken], &[]).unwrap_err();
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }

    // tls.crl_files: a leaf its CA revoked is `revoked`, another leaf of the same CA is
    // ok; PEM and DER files both load; a file that is no CRL is an error naming it.
    #[test]
    fn a_leaf_revoked_by_a_crl_is_revoked() {
        let root = TestCa::new("Test Root");
        let mut revoked_params = leaf_params(&[NAME]);
        revoked_params.serial_number = Some(SerialNumber::from(vec![0x01, 0x42]));
        let revoked = root.leaf(&revoked_params);
        let mut good_params = leaf_params(&[NAME]);
        good_params.serial_number = Some(SerialNumber::from(vec![0x01, 0x43]));
        let good = root.leaf(&good_params);
        let crl = CertificateRevocationListParams {
            this_update: days_from_now(-1),
            next_update: days_from_now(7),
            crl_number: SerialNumber::from(1_u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(vec![0x01, 0x42]),
                revocation_time: days_from_now(-1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        }
        .signed_by(&root.issuer)
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let roots = write_pem(&dir, "roots.pem", &[&root.der]);
        let pem_file = dir.path().join("crl.pem");
        std::fs::write(&pem_file, crl.pem().unwrap()).unwrap();
        let der_file = dir.path().join("crl.der");
        std::fs::write(&der_file, crl.der()).unwrap();
        for file in [pem_file, der_file] {
            let verifier = UpstreamVerifier::new(std::slice::from_ref(&roots), &[file]).unwrap();
            let now = UnixTime::now();
            let classify =
                |leaf: &Leaf| verifier.classify(std::slice::from_ref(&leaf.der), &dns(NAME), now);
            assert_eq!(classify(&revoked), Err(CertErrorKind::Revoked));
            assert_eq!(classify(&good), Ok(()));
        }
        let not_crl = dir.path().join("not-a-crl.der");
        std::fs::write(&not_crl, b"garbage").unwrap();
        let err = UpstreamVerifier::new(&[roots], &[not_crl]).unwrap_err();
        assert!(matches!(err, VerifyError::BadCrl { .. }), "{err}");
        assert!(err.to_string().contains("not-a-crl.der"), "{err}");
    }

    #[test]
    fn kind_names_are_the_spec_names() {
        let names = [
            (CertErrorKind::Expired, "expired"),
            (CertErrorKind::NotYetValid, "not_yet_valid"),
            (CertErrorKind::UnknownIssuer, "unknown_issuer"),
            (CertErrorKind::NameMismatch, "name_mismatch"),
            (CertErrorKind::BadSignature, "bad_signature"),
            (CertErrorKind::Revoked, "revoked"),
            (CertErrorKind::Other, "other"),
        ];
        for (kind, name) in names {
            assert_eq!((kind.as_str(), kind.to_string()), (name, name.to_string()));
        }
    }

    // rustls' error variants, including the *Context ones, map to the SPEC kinds.
    #[test]
    fn rustls_errors_map_to_kinds() {
        let time = UnixTime::now();
        let cases = [
            (CertificateError::Expired, CertErrorKind::Expired),
            (
                CertificateError::ExpiredContext {
                    time,
                    not_after: time,
                },
                CertErrorKind::Expired,
            ),
            (CertificateError::NotValidYet, CertErrorKind::NotYetValid),
            (
                CertificateError::NotValidYetContext {
                    time,
                    not_before: time,
                },
                CertErrorKind::NotYetValid,
            ),
            (
                CertificateError::UnknownIssuer,
                CertErrorKind::UnknownIssuer,
            ),
            (
                CertificateError::NotValidForName,
                CertErrorKind::NameMismatch,
            ),
            (
                CertificateError::NotValidForNameContext {
                    expected: dns(NAME),
                    presented: Vec::new(),
                },
                CertErrorKind::NameMismatch,
            ),
            (CertificateError::BadSignature, CertErrorKind::BadSignature),
            (
                CertificateError::UnsupportedSignatureAlgorithmContext {
                    signature_algorithm_id: Vec::new(),
                    supported_algorithms: Vec::new(),
                },
                CertErrorKind::BadSignature,
            ),
            (CertificateError::Revoked, CertErrorKind::Revoked),
            (CertificateError::InvalidPurpose, CertErrorKind::Other),
            (CertificateError::BadEncoding, CertErrorKind::Other),
        ];
        for (error, kind) in cases {
            assert_eq!(CertErrorKind::of(&error.clone().into()), kind, "{error:?}");
        }
        assert_eq!(
            CertErrorKind::of(&rustls::Error::DecryptError),
            CertErrorKind::Other
        );
    }

    #[test]
    fn cert_sha256_is_the_digest_of_the_der() {
        let digest = cert_sha256(b"");
        assert_eq!(digest[..4], [0xe3, 0xb0, 0xc4, 0x42]);
        assert_eq!(digest[28..], [0x78, 0x52, 0xb8, 0x55]);
    }
}
