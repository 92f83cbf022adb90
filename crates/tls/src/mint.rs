//! Replacement certificates for bumped connections (SPEC §2.4): minted on demand from the
//! server's own leaf, signed by the proxy CA, and cached.
//!
//! Security-sensitive: every certificate minted here is trusted by the clients, so
//!
//! - each certificate gets its own fresh key (never the CA's) and a random 128-bit
//!   serial, so no two certificates share a key or a serial;
//! - its lifetime never exceeds the server's leaf (while that is valid), 397 days, or
//!   the CA's own lifetime; a cache entry is dropped before its certificate expires;
//! - it is an end-entity certificate for server authentication only (CA:false, EKU
//!   serverAuth), so it cannot be used to sign other certificates;
//! - it carries only the names of the server's own leaf plus the SNI (or the CONNECT
//!   address), and the cache key holds the leaf's fingerprint, the SNI and the address,
//!   so a connection never receives a certificate minted for another connection's server.
//!
//! Key generation and signing run on tokio's blocking threads; RSA leaf keys come from a
//! pool filled by a background thread, because generating one takes tens of milliseconds.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use moka::future::Cache;
use moka::Expiry;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

use crate::ca::{random_serial, CertificateAuthority, BACKDATE};
use crate::verify::cert_sha256;

/// Longest lifetime of a minted certificate; Apple's clients reject longer ones.
const MAX_LIFETIME: Duration = Duration::days(397);

/// A cached certificate is dropped this long before it expires, so it is never handed
/// to a client just before it stops being valid.
const EXPIRY_MARGIN: Duration = Duration::minutes(5);

/// How many pre-generated RSA keys wait for handshakes.
const RSA_POOL_CAPACITY: usize = 32;

/// Type of key of the minted certificates (`tls.leaf_key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafKeyKind {
    /// ECDSA P-256 (the default): cheap to generate per certificate.
    EcdsaP256,
    /// RSA 2048 bits, for clients without ECDSA; keys come from a background pool.
    Rsa2048,
}

/// Why a replacement certificate could not be minted.
#[derive(Clone, Debug, thiserror::Error)]
pub enum MintError {
    /// Neither the server's certificate, the SNI nor the CONNECT address gives a name.
    #[error(
        "no name for the certificate: no usable server certificate, no SNI and no CONNECT address"
    )]
    NoName,
    /// The SNI is not a valid DNS name.
    #[error("the SNI {0:?} is not a valid DNS name")]
    InvalidSni(String),
    /// The leaf key could not be generated.
    #[error("cannot generate the certificate key: {0}")]
    KeyGeneration(rcgen::Error),
    /// The certificate could not be signed.
    #[error("cannot sign the certificate: {0}")]
    Sign(rcgen::Error),
    /// rustls refused the leaf key.
    #[error("rustls cannot use the certificate key: {0}")]
    SigningKey(rustls::Error),
    /// The blocking task that mints panicked or was cancelled.
    #[error("the minting task failed: {0}")]
    Task(String),
}

/// Mints and caches replacement certificates. Send + Sync: one per CA, shared by all
/// connections behind an `Arc`.
pub struct Minter {
    context: Arc<MintContext>,
    cache: Cache<CacheKey, Minted>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Minter {
    /// `cache_size` is `tls.cert_cache_size`. For [`LeafKeyKind::Rsa2048`] this starts a
    /// background thread that keeps a pool of RSA keys filled; it stops when the minter
    /// is dropped.
    pub fn new(ca: Arc<CertificateAuthority>, leaf_key: LeafKeyKind, cache_size: u64) -> Self {
        Self::with_rsa_pool_capacity(ca, leaf_key, cache_size, RSA_POOL_CAPACITY)
    }

    fn with_rsa_pool_capacity(
        ca: Arc<CertificateAuthority>,
        leaf_key: LeafKeyKind,
        cache_size: u64,
        rsa_pool_capacity: usize,
    ) -> Self {
        let keys = match leaf_key {
            LeafKeyKind::EcdsaP256 => LeafKeys::EcdsaP256,
            LeafKeyKind::Rsa2048 => LeafKeys::Rsa2048(RsaKeyPool::start(rsa_pool_capacity)),
        };
        let cache = Cache::builder()
            .max_capacity(cache_size)
            .expire_after(ExpireWithCertificate)
            .build();
        Self {
            context: Arc::new(MintContext { ca, keys }),
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The replacement certificate for a server, with the chain `[leaf, CA]`.
    ///
    /// `upstream_leaf` is the server's leaf (DER), `None` when the upstream handshake
    /// failed and only a block page will be shown; a leaf that does not parse is treated
    /// as absent. `sni` is the client's SNI; `ip` the CONNECT address when the client
    /// connected to an IP literal. Cached by (leaf fingerprint, SNI, IP); concurrent
    /// requests for the same key mint once.
    pub async fn certified_key(
        &self,
        upstream_leaf: Option<&[u8]>,
        sni: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Arc<CertifiedKey>, MintError> {
        let sni = sni.map(normalize_dns_name);
        let key = CacheKey {
            upstream_leaf: upstream_leaf.map(cert_sha256),
            sni: sni.clone(),
            ip,
        };
        let mut minted_here = false;
        let result = self
            .cache
            .try_get_with(key, async {
                minted_here = true;
                let request = MintRequest {
                    upstream_leaf: upstream_leaf.map(<[u8]>::to_vec),
                    sni,
                    ip,
                };
                mint_on_blocking_thread(Arc::clone(&self.context), request).await
            })
            .await;
        let counter = if minted_here {
            &self.misses
        } else {
            &self.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
            .map(|minted| minted.certified_key)
            .map_err(Arc::unwrap_or_clone)
    }

    /// Requests answered from the cache (including requests that waited for a
    /// concurrent mint of the same certificate).
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Requests that minted a certificate.
    pub fn cache_misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Certificates in the cache, after applying pending insertions and evictions
    /// (the cache does that lazily).
    pub async fn cache_size(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CacheKey {
    upstream_leaf: Option<[u8; 32]>,
    sni: Option<String>,
    ip: Option<IpAddr>,
}

#[derive(Clone)]
struct Minted {
    certified_key: Arc<CertifiedKey>,
    /// How long the cache may keep it (until shortly before the certificate expires).
    cache_for: std::time::Duration,
}

struct ExpireWithCertificate;

impl Expiry<CacheKey, Minted> for ExpireWithCertificate {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        minted: &Minted,
        _created_at: Instant,
    ) -> Option<std::time::Duration> {
        Some(minted.cache_for)
    }
}

/// Inputs of one mint, owned so it can move to a blocking thread.
struct MintRequest {
    upstream_leaf: Option<Vec<u8>>,
    sni: Option<String>,
    ip: Option<IpAddr>,
}

/// What minting needs, shared with the blocking threads.
struct MintContext {
    ca: Arc<CertificateAuthority>,
    keys: LeafKeys,
}

enum LeafKeys {
    EcdsaP256,
    Rsa2048(RsaKeyPool),
}

async fn mint_on_blocking_thread(
    context: Arc<MintContext>,
    request: MintRequest,
) -> Result<Minted, MintError> {
    tokio::task::spawn_blocking(move || context.mint(&request, OffsetDateTime::now_utc()))
        .await
        .map_err(|err| MintError::Task(err.to_string()))?
}

impl MintContext {
    fn mint(&self, request: &MintRequest, now: OffsetDateTime) -> Result<Minted, MintError> {
        let upstream = request
            .upstream_leaf
            .as_deref()
            .and_then(UpstreamLeaf::parse);
        let names = LeafNames::new(upstream.as_ref(), request.sni.as_deref(), request.ip)?;
        let not_after = leaf_not_after(
            upstream.map(|leaf| leaf.not_after),
            now,
            self.ca.not_after(),
        );
        let key = self.keys.generate()?;
        let cert = self
            .params(names, now, not_after)
            .signed_by(&key, self.ca.issuer())
            .map_err(MintError::Sign)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&der)
            .map_err(MintError::SigningKey)?;
        let chain = vec![
            cert.der().clone(),
            CertificateDer::from(self.ca.cert_der().to_vec()),
        ];
        Ok(Minted {
            certified_key: Arc::new(CertifiedKey::new(chain, signing_key)),
            cache_for: cache_lifetime(not_after, now),
        })
    }

    fn params(
        &self,
        names: LeafNames,
        now: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = names.subject;
        params.subject_alt_names = names.alt_names;
        params.serial_number = Some(random_serial());
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        // ExplicitNoCa writes basicConstraints CA:false and the leaf's own subject key id.
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = self.keys.key_usages();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // The issuer was built from the CA certificate, so rcgen writes the CA's
        // subjectKeyIdentifier as written there; without one there is nothing to copy.
        params.use_authority_key_identifier_extension = self.ca.subject_key_id().is_some();
        params
    }
}

impl LeafKeys {
    fn generate(&self) -> Result<KeyPair, MintError> {
        match self {
            LeafKeys::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(MintError::KeyGeneration),
            LeafKeys::Rsa2048(pool) => pool.take(),
        }
    }

    fn key_usages(&self) -> Vec<KeyUsagePurpose> {
        match self {
            LeafKeys::EcdsaP256 => vec![KeyUsagePurpose::DigitalSignature],
            LeafKeys::Rsa2048(_) => vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ],
        }
    }
}

/// notAfter = the earliest of the server leaf's notAfter (while it is in the future),
/// now + 397 days, and the CA's notAfter.
fn leaf_not_after(
    upstream: Option<OffsetDateTime>,
    now: OffsetDateTime,
    ca_not_after: OffsetDateTime,
) -> OffsetDateTime {
    let cap = (now + MAX_LIFETIME).min(ca_not_after);
    match upstream {
        Some(leaf_not_after) if leaf_not_after > now => cap.min(leaf_not_after),
        _ => cap,
    }
}

fn cache_lifetime(not_after: OffsetDateTime, now: OffsetDateTime) -> std::time::Duration {
    (not_after - now - EXPIRY_MARGIN)
        .try_into()
        .unwrap_or(std::time::Duration::ZERO)
}

/// Lower-case, without the trailing dot: the form used in the cache key and the SAN.
fn normalize_dns_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// What is copied from the server's leaf.
struct UpstreamLeaf {
    common_name: Option<String>,
    organization: Option<String>,
    dns_names: Vec<String>,
    ips: Vec<IpAddr>,
    not_after: OffsetDateTime,
}

impl UpstreamLeaf {
    fn parse(der: &[u8]) -> Option<Self> {
        let (_, x509) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = x509.subject();
        let common_name = subject
            .iter_common_name()
            .find_map(|attr| attr.as_str().ok())
            .map(str::to_owned);
        let organization = subject
            .iter_organization()
            .find_map(|attr| attr.as_str().ok())
            .map(str::to_owned);
        let mut leaf = Self {
            common_name,
            organization,
            dns_names: Vec::new(),
            ips: Vec::new(),
            not_after: x509.validity().not_after.to_datetime(),
        };
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            for name in &san.value.general_names {
                leaf.add_alt_name(name);
            }
        }
        Some(leaf)
    }

    fn add_alt_name(&mut self, name: &GeneralName<'_>) {
        match name {
            GeneralName::DNSName(dns) => self.dns_names.push((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => {
                if let Some(ip) = ip_from_bytes(bytes) {
                    self.ips.push(ip);
                }
            }
            _ => {}
        }
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Subject and subject alternative names of a minted certificate.
struct LeafNames {
    subject: DistinguishedName,
    alt_names: Vec<SanType>,
}

impl LeafNames {
    /// The server leaf's CN, O and DNS/IP SANs; plus the SNI as a SAN when missing, or,
    /// without SNI, the CONNECT address. The CN falls back to the SNI, then the address.
    fn new(
        upstream: Option<&UpstreamLeaf>,
        sni: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<Self, MintError> {
        let mut dns_names = upstream
            .map(|leaf| leaf.dns_names.clone())
            .unwrap_or_default();
        let mut ips = upstream.map(|leaf| leaf.ips.clone()).unwrap_or_default();
        // An SNI that is an IP literal (against RFC 6066, but seen) names an address.
        let (sni_dns, ip) = match sni.map(|name| (name, name.parse::<IpAddr>())) {
            Some((_, Ok(sni_ip))) => (None, Some(sni_ip)),
            Some((name, Err(_))) => (Some(checked_dns_name(name)?), None),
            None => (None, ip),
        };
        if let Some(name) = sni_dns {
            if !dns_names
                .iter()
                .any(|known| known.eq_ignore_ascii_case(name))
            {
                dns_names.push(name.to_owned());
            }
        }
        if let Some(ip) = ip.filter(|ip| !ips.contains(ip)) {
            ips.push(ip);
        }
        let common_name = upstream
            .and_then(|leaf| leaf.common_name.clone())
            .or_else(|| sni_dns.map(str::to_owned))
            .or_else(|| ip.map(|ip| ip.to_string()));
        let organization = upstream.and_then(|leaf| leaf.organization.clone());
        let alt_names: Vec<SanType> = dns_names
            .into_iter()
            .filter_map(|name| name.try_into().ok().map(SanType::DnsName))
            .chain(ips.into_iter().map(SanType::IpAddress))
            .collect();
        if alt_names.is_empty() && common_name.is_none() {
            return Err(MintError::NoName);
        }
        Ok(Self {
            subject: subject(common_name, organization),
            alt_names,
        })
    }
}

fn checked_dns_name(name: &str) -> Result<&str, MintError> {
    rustls_pki_types::DnsName::try_from(name)
        .map(|_| name)
        .map_err(|_| MintError::InvalidSni(name.to_owned()))
}

fn subject(common_name: Option<String>, organization: Option<String>) -> DistinguishedName {
    let mut subject = DistinguishedName::new();
    if let Some(organization) = organization {
        subject.push(DnType::OrganizationName, organization);
    }
    if let Some(common_name) = common_name {
        subject.push(DnType::CommonName, common_name);
    }
    subject
}

/// RSA keys generated ahead of time by a background thread. The thread stops when the
/// pool (and so the receiving end of the queue) is dropped.
struct RsaKeyPool {
    /// The receiving end of a bounded queue; the generating thread blocks while it is full.
    keys: Mutex<Receiver<KeyPair>>,
}

impl RsaKeyPool {
    fn start(capacity: usize) -> Self {
        let (sender, receiver) = mpsc::sync_channel(capacity);
        let spawned = std::thread::Builder::new()
            .name("sluice-rsa-keys".to_owned())
            .spawn(move || fill_rsa_pool(&sender));
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "cannot start the RSA key pool; RSA keys will be generated on demand");
        }
        Self {
            keys: Mutex::new(receiver),
        }
    }

    /// A key from the pool, if one is ready.
    fn try_take(&self) -> Option<KeyPair> {
        let keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.try_recv().ok()
    }

    /// A key from the pool, or a new one when the pool is empty (slow: callers run on a
    /// blocking thread).
    fn take(&self) -> Result<KeyPair, MintError> {
        match self.try_take() {
            Some(key) => Ok(key),
            None => generate_rsa_key().map_err(MintError::KeyGeneration),
        }
    }
}

fn fill_rsa_pool(sender: &SyncSender<KeyPair>) {
    loop {
        match generate_rsa_key() {
            Ok(key) => {
                if sender.send(key).is_err() {
                    return;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot generate RSA keys in the background; they will be generated on demand");
                return;
            }
        }
    }
}

fn generate_rsa_key() -> Result<KeyPair, rcgen::Error> {
    KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::OnceLock;

    use rcgen::{BasicConstraints, Issuer, KeyIdMethod};
    use rustls_pki_types::ServerName;
    use sha2::{Digest, Sha256};
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::oid_registry;

    use crate::ca::KeyKind;

    const SNI: &str = "www.example.test";

    fn shared_ca(kind: KeyKind) -> Arc<CertificateAuthority> {
        static ECDSA: OnceLock<Arc<CertificateAuthority>> = OnceLock::new();
        static RSA: OnceLock<Arc<CertificateAuthority>> = OnceLock::new();
        let cell = match kind {
            KeyKind::EcdsaP256 => &ECDSA,
            KeyKind::Rsa2048 => &RSA,
        };
        Arc::clone(cell.get_or_init(|| {
            Arc::new(CertificateAuthority::generate("Mint test CA", kind).expect("generate CA"))
        }))
    }

    /// A minter whose RSA pool stays small, so tests do not spend their CPU filling it.
    fn minter(ca: Arc<CertificateAuthority>, leaf_key: LeafKeyKind) -> Minter {
        Minter::with_rsa_pool_capacity(ca, leaf_key, 1000, 1)
    }

    /// A CA made with rcgen directly, for the cases `generate` never produces.
    fn custom_ca(adjust: impl FnOnce(&mut CertificateParams)) -> Arc<CertificateAuthority> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Custom CA");
        params.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(3650);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        adjust(&mut params);
        let cert = params.self_signed(&key).unwrap();
        Arc::new(CertificateAuthority::from_rcgen(cert.der().clone(), key).expect("usable CA"))
    }

    /// What a real server might present: CN, O, two DNS names and an IP, issued by some
    /// public CA (irrelevant here).
    fn upstream_leaf(not_after: OffsetDateTime) -> Vec<u8> {
        let issuer_key = KeyPair::generate().unwrap();
        let issuer = Issuer::new(CertificateParams::default(), issuer_key);
        let mut params = CertificateParams::new(vec![
            "upstream.example.test".to_string(),
            "*.upstream.example.test".to_string(),
            "192.0.2.10".to_string(),
        ])
        .unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CountryName, "SE");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Upstream Org");
        params
            .distinguished_name
            .push(DnType::CommonName, "upstream.example.test");
        params.not_before = OffsetDateTime::now_utc() - Duration::days(30);
        params.not_after = not_after;
        let leaf_key = KeyPair::generate().unwrap();
        params.signed_by(&leaf_key, &issuer).unwrap().der().to_vec()
    }

    fn in_days(days: i64) -> OffsetDateTime {
        OffsetDateTime::now_utc() + Duration::days(days)
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der)
            .expect("minted DER parses")
            .1
    }

    fn leaf_of(key: &CertifiedKey) -> X509Certificate<'_> {
        parse(key.cert[0].as_ref())
    }

    fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
        alt_names(cert)
            .into_iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect()
    }

    fn ip_names(cert: &X509Certificate<'_>) -> Vec<IpAddr> {
        alt_names(cert)
            .into_iter()
            .filter_map(|name| match name {
                GeneralName::IPAddress(bytes) => ip_from_bytes(bytes),
                _ => None,
            })
            .collect()
    }

    fn alt_names<'a>(cert: &'a X509Certificate<'_>) -> Vec<&'a GeneralName<'a>> {
        cert.subject_alternative_name()
            .unwrap()
            .map(|san| san.value.general_names.iter().collect())
            .unwrap_or_default()
    }

    fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
        let attr = cert.subject().iter_common_name().next()?;
        Some(attr.as_str().unwrap().to_string())
    }

    fn organization(cert: &X509Certificate<'_>) -> Option<String> {
        let attr = cert.subject().iter_organization().next()?;
        Some(attr.as_str().unwrap().to_string())
    }

    fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
        cert.iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|id| id.0.to_vec())
                }
                _ => None,
            })
    }

    fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
        cert.iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
    }

    /// The chain verifies with webpki, the CA as the only root, for `name`.
    fn assert_chain_verifies(key: &CertifiedKey, name: &ServerName<'_>) {
        let anchor = webpki::anchor_from_trusted_cert(&key.cert[1]).expect("CA is a trust anchor");
        let leaf = webpki::EndEntityCert::try_from(&key.cert[0]).expect("leaf parses");
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &key.cert[1..],
            UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .expect("chain verifies");
        leaf.verify_is_valid_for_subject_name(name)
            .expect("valid for the name");
    }

    use rustls_pki_types::UnixTime;

    /// Every field of SPEC §2.4 on a certificate minted from `upstream_leaf` + `SNI`.
    fn assert_replacement_fields(
        ca: &CertificateAuthority,
        leaf_kind: LeafKeyKind,
        key: &CertifiedKey,
        upstream_not_after: OffsetDateTime,
    ) {
        let minted_at = OffsetDateTime::now_utc();
        assert_eq!(key.cert.len(), 2);
        assert_eq!(key.cert[1].as_ref(), ca.cert_der(), "chain = [leaf, CA]");
        let cert = leaf_of(key);
        let ca_cert = parse(ca.cert_der());

        assert_eq!(common_name(&cert).as_deref(), Some("upstream.example.test"));
        assert_eq!(organization(&cert).as_deref(), Some("Upstream Org"));
        assert_eq!(
            dns_names(&cert),
            ["upstream.example.test", "*.upstream.example.test", SNI]
        );
        assert_eq!(ip_names(&cert), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]);
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());

        let serial = cert.raw_serial();
        assert!(serial.len() <= 16 && serial[0] & 0x80 == 0 && serial.iter().any(|&b| b != 0));

        let not_before = cert.validity().not_before.to_datetime();
        assert!((minted_at - BACKDATE - not_before).abs() < Duration::seconds(5));
        let not_after = cert.validity().not_after.to_datetime();
        assert!((not_after - upstream_not_after).abs() < Duration::seconds(1));

        let basic = cert
            .basic_constraints()
            .unwrap()
            .expect("basicConstraints present");
        assert!(!basic.value.ca);
        let usage = cert.key_usage().unwrap().expect("keyUsage present").value;
        assert!(usage.digital_signature());
        assert_eq!(usage.key_encipherment(), leaf_kind == LeafKeyKind::Rsa2048);
        assert!(!usage.key_cert_sign() && !usage.crl_sign());
        let eku = cert
            .extended_key_usage()
            .unwrap()
            .expect("EKU present")
            .value;
        assert!(eku.server_auth && !eku.client_auth && !eku.any && eku.other.is_empty());

        let spki_hash = Sha256::digest(cert.public_key().raw);
        assert_eq!(subject_key_id(&cert).as_deref(), Some(&spki_hash[..20]));
        assert_eq!(authority_key_id(&cert).as_deref(), ca.subject_key_id());
        assert_ne!(
            cert.public_key().raw,
            ca_cert.public_key().raw,
            "own key, never the CA's"
        );

        let key_oid = &cert.public_key().algorithm.algorithm;
        match leaf_kind {
            LeafKeyKind::EcdsaP256 => {
                assert_eq!(*key_oid, oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY)
            }
            LeafKeyKind::Rsa2048 => assert_eq!(*key_oid, oid_registry::OID_PKCS1_RSAENCRYPTION),
        }
        assert_eq!(
            cert.signature_algorithm.algorithm,
            ca_cert.signature_algorithm.algorithm
        );
        key.keys_match().expect("the signing key is the leaf's key");
        assert_chain_verifies(key, &ServerName::try_from(SNI).unwrap());
    }

    // Every field of §2.4, for ECDSA and RSA CAs and both leaf key kinds.
    #[tokio::test]
    async fn replacement_has_every_field_for_all_key_kinds() {
        let upstream_not_after = in_days(60);
        let upstream = upstream_leaf(upstream_not_after);
        for ca_kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            for leaf_kind in [LeafKeyKind::EcdsaP256, LeafKeyKind::Rsa2048] {
                let ca = shared_ca(ca_kind);
                let minter = minter(Arc::clone(&ca), leaf_kind);
                let key = minter
                    .certified_key(Some(&upstream), Some(SNI), None)
                    .await
                    .expect("mint");
                let expected_sig = match ca_kind {
                    KeyKind::EcdsaP256 => oid_registry::OID_SIG_ECDSA_WITH_SHA256,
                    KeyKind::Rsa2048 => oid_registry::OID_PKCS1_SHA256WITHRSA,
                };
                assert_eq!(leaf_of(&key).signature_algorithm.algorithm, expected_sig);
                assert_replacement_fields(&ca, leaf_kind, &key, upstream_not_after);
            }
        }
    }

    // Without a server leaf, the SNI is the CN and the only SAN.
    #[tokio::test]
    async fn without_upstream_leaf_the_sni_names_the_certificate() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        let ip = Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)));
        let key = minter
            .certified_key(None, Some("Block.Example.Test."), ip)
            .await
            .unwrap();
        let cert = leaf_of(&key);
        assert_eq!(common_name(&cert).as_deref(), Some("block.example.test"));
        assert_eq!(organization(&cert), None);
        assert_eq!(dns_names(&cert), ["block.example.test"]);
        assert!(
            ip_names(&cert).is_empty(),
            "with an SNI the CONNECT IP is not added"
        );
        let not_after = cert.validity().not_after.to_datetime();
        assert!(
            (not_after - (OffsetDateTime::now_utc() + MAX_LIFETIME)).abs() < Duration::seconds(5)
        );
        assert_chain_verifies(&key, &ServerName::try_from("block.example.test").unwrap());
    }

    // Without leaf and SNI, the CONNECT IP is the CN and the only SAN (v4 and v6).
    #[tokio::test]
    async fn without_sni_the_connect_ip_names_the_certificate() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        for ip in [
            IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ] {
            let key = minter.certified_key(None, None, Some(ip)).await.unwrap();
            let cert = leaf_of(&key);
            assert_eq!(common_name(&cert), Some(ip.to_string()));
            assert!(dns_names(&cert).is_empty());
            assert_eq!(ip_names(&cert), [ip]);
            assert_chain_verifies(&key, &ServerName::IpAddress(ip.into()));
        }
    }

    // With a leaf but no SNI, the CONNECT IP is added when the leaf lacks it, once.
    #[tokio::test]
    async fn connect_ip_added_to_upstream_names_when_missing() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        let upstream = upstream_leaf(in_days(60));
        let other_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
        let key = minter
            .certified_key(Some(&upstream), None, Some(other_ip))
            .await
            .unwrap();
        let cert = leaf_of(&key);
        assert_eq!(common_name(&cert).as_deref(), Some("upstream.example.test"));
        assert_eq!(
            ip_names(&cert),
            [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), other_ip]
        );

        let present_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let key = minter
            .certified_key(Some(&upstream), None, Some(present_ip))
            .await
            .unwrap();
        assert_eq!(ip_names(&leaf_of(&key)), [present_ip]);
    }

    // An SNI already among the leaf's names (in another case) is not added twice.
    #[tokio::test]
    async fn sni_present_in_leaf_is_not_duplicated() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        let upstream = upstream_leaf(in_days(60));
        let key = minter
            .certified_key(Some(&upstream), Some("UPSTREAM.example.test"), None)
            .await
            .unwrap();
        assert_eq!(
            dns_names(&leaf_of(&key)),
            ["upstream.example.test", "*.upstream.example.test"]
        );
    }

    // A server leaf that does not parse is ignored: the certificate is made from the SNI.
    #[tokio::test]
    async fn unparsable_upstream_leaf_mints_from_sni() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        let key = minter
            .certified_key(Some(b"\x30\x03garbage"), Some(SNI), None)
            .await
            .unwrap();
        let cert = leaf_of(&key);
        assert_eq!(common_name(&cert).as_deref(), Some(SNI));
        assert_eq!(dns_names(&cert), [SNI]);
    }

    // No name at all, or an SNI that is not a DNS name: an error, not a nameless cert.
    #[tokio::test]
    async fn refuses_to_mint_without_a_valid_name() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        let err = minter.certified_key(None, None, None).await.unwrap_err();
        assert!(matches!(err, MintError::NoName), "{err}");
        let err = minter
            .certified_key(None, Some("bad name!"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, MintError::InvalidSni(_)), "{err}");
    }

    // An SNI that is an IP literal becomes an IP SAN.
    #[tokio::test]
    async fn ip_literal_sni_becomes_an_ip_name() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        let key = minter
            .certified_key(None, Some("192.0.2.44"), None)
            .await
            .unwrap();
        let cert = leaf_of(&key);
        assert!(dns_names(&cert).is_empty());
        assert_eq!(ip_names(&cert), [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 44))]);
    }

    // Serials and keys differ from one certificate to the next.
    #[tokio::test]
    async fn serials_and_keys_differ_across_mints() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        let mut serials = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for i in 0..20 {
            let sni = format!("host{i}.example.test");
            let key = minter.certified_key(None, Some(&sni), None).await.unwrap();
            let cert = leaf_of(&key);
            serials.insert(cert.raw_serial().to_vec());
            keys.insert(cert.public_key().raw.to_vec());
        }
        assert_eq!((serials.len(), keys.len()), (20, 20));
    }

    // notAfter is capped by the leaf (when still valid), by 397 days, and by the CA.
    #[tokio::test]
    async fn not_after_takes_the_earliest_limit() {
        let ca = shared_ca(KeyKind::EcdsaP256);
        let minter = minter(Arc::clone(&ca), LeafKeyKind::EcdsaP256);
        let not_after = |key: &CertifiedKey| leaf_of(key).validity().not_after.to_datetime();
        let near = |a: OffsetDateTime, b: OffsetDateTime| (a - b).abs() < Duration::seconds(5);

        let soon = in_days(10);
        let key = minter
            .certified_key(Some(&upstream_leaf(soon)), Some(SNI), None)
            .await
            .unwrap();
        assert!(near(not_after(&key), soon), "leaf expires sooner");

        let expired = upstream_leaf(in_days(-1));
        let key = minter
            .certified_key(Some(&expired), Some(SNI), None)
            .await
            .unwrap();
        assert!(
            near(not_after(&key), in_days(397)),
            "expired leaf: 397 days"
        );

        let long = upstream_leaf(in_days(800));
        let key = minter
            .certified_key(Some(&long), Some(SNI), None)
            .await
            .unwrap();
        assert!(
            near(not_after(&key), in_days(397)),
            "long-lived leaf: 397 days"
        );

        let short_ca = custom_ca(|params| params.not_after = in_days(30));
        let minter = Minter::new(Arc::clone(&short_ca), LeafKeyKind::EcdsaP256, 10);
        let key = minter
            .certified_key(Some(&long), Some(SNI), None)
            .await
            .unwrap();
        assert!(
            near(not_after(&key), short_ca.not_after()),
            "CA expires sooner"
        );
    }

    // The AKI is the CA's SKI as written, even when that is not a SHA-256 of its key;
    // without an SKI in the CA there is no AKI. Both chains verify.
    #[tokio::test]
    async fn authority_key_id_copies_the_ca_subject_key_id() {
        let sha1_like = vec![0x5a; 20];
        let ca = custom_ca(|params| {
            params.key_identifier_method = KeyIdMethod::PreSpecified(sha1_like.clone());
        });
        assert_eq!(ca.subject_key_id(), Some(&sha1_like[..]));
        let key = Minter::new(Arc::clone(&ca), LeafKeyKind::EcdsaP256, 10)
            .certified_key(None, Some(SNI), None)
            .await
            .unwrap();
        assert_eq!(authority_key_id(&leaf_of(&key)), Some(sha1_like));
        assert_chain_verifies(&key, &ServerName::try_from(SNI).unwrap());

        // rcgen writes an SKI into every CA it marks as one, so spell CA:TRUE by hand.
        let no_ski = custom_ca(|params| {
            params.is_ca = IsCa::NoCa;
            let basic_constraints = vec![0x30, 0x03, 0x01, 0x01, 0xff];
            let mut ext =
                rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 19], basic_constraints);
            ext.set_criticality(true);
            params.custom_extensions = vec![ext];
        });
        assert_eq!(no_ski.subject_key_id(), None);
        let key = Minter::new(no_ski, LeafKeyKind::EcdsaP256, 10)
            .certified_key(None, Some(SNI), None)
            .await
            .unwrap();
        assert_eq!(authority_key_id(&leaf_of(&key)), None);
        assert_chain_verifies(&key, &ServerName::try_from(SNI).unwrap());
    }

    // The second request for the same server is the same Arc; other inputs are not.
    #[tokio::test]
    async fn cache_returns_the_same_certificate_for_the_same_key() {
        let minter = minter(shared_ca(KeyKind::EcdsaP256), LeafKeyKind::EcdsaP256);
        let upstream = upstream_leaf(in_days(60));
        let first = minter
            .certified_key(Some(&upstream), Some(SNI), None)
            .await
            .unwrap();
        let again = minter
            .certified_key(Some(&upstream), Some(SNI), None)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let same_name = minter
            .certified_key(Some(&upstream), Some("WWW.example.test."), None)
            .await
            .unwrap();
        assert!(
            Arc::ptr_eq(&first, &same_name),
            "SNI compared case-insensitively"
        );
        assert_eq!((minter.cache_hits(), minter.cache_misses()), (2, 1));

        let other_sni = minter
            .certified_key(Some(&upstream), Some("other.example.test"), None)
            .await
            .unwrap();
        let other_leaf = upstream_leaf(in_days(61));
        let other_upstream = minter
            .certified_key(Some(&other_leaf), Some(SNI), None)
            .await
            .unwrap();
        let no_leaf = minter.certified_key(None, Some(SNI), None).await.unwrap();
        for other in [&other_sni, &other_upstream, &no_leaf] {
            assert!(!Arc::ptr_eq(&first, other));
        }
        assert_eq!(minter.cache_misses(), 4);
        minter.cache.run_pending_tasks().await;
        assert_eq!(minter.cache_size().await, 4);
    }

    // 50 concurrent requests for one key mint exactly once and share the result.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_mint_once() {
        let minter = Arc::new(minter(shared_ca(KeyKind::Rsa2048), LeafKeyKind::EcdsaP256));
        let upstream = Arc::new(upstream_leaf(in_days(60)));
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (minter, upstream, barrier) = (
                    Arc::clone(&minter),
                    Arc::clone(&upstream),
                    Arc::clone(&barrier),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    minter.certified_key(Some(&upstream), Some(SNI), None).await
                })
            })
            .collect();
        let mut keys = Vec::new();
        for task in tasks {
            keys.push(task.await.unwrap().unwrap());
        }
        assert!(keys.iter().all(|key| Arc::ptr_eq(key, &keys[0])));
        assert_eq!(minter.cache_misses(), 1, "minted exactly once");
        assert_eq!(minter.cache_hits(), 49);
    }

    // The background pool hands out ready RSA-2048 keys, each different.
    #[test]
    fn rsa_pool_serves_keys() {
        let pool = RsaKeyPool::start(2);
        let mut taken = Vec::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        while taken.len() < 2 {
            assert!(Instant::now() < deadline, "the pool never filled");
            match pool.try_take() {
                Some(key) => taken.push(key),
                None => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
        for key in &taken {
            assert_eq!(key.algorithm(), &rcgen::PKCS_RSA_SHA256);
            // 2048-bit modulus: PKCS#1 RSAPublicKey of about 270 bytes.
            assert!((260..280).contains(&key.public_key_raw().len()));
        }
        assert_ne!(taken[0].public_key_raw(), taken[1].public_key_raw());
    }

    // A cached certificate leaves the cache before it expires.
    #[test]
    fn cache_lifetime_ends_before_the_certificate() {
        let now = OffsetDateTime::now_utc();
        let lifetime = cache_lifetime(now + Duration::hours(1), now);
        assert_eq!(lifetime, std::time::Duration::from_secs(55 * 60));
        assert_eq!(
            cache_lifetime(now + Duration::minutes(1), now),
            std::time::Duration::ZERO
        );
        assert_eq!(
            cache_lifetime(now - Duration::days(1), now),
            std::time::Duration::ZERO
        );
    }

    // A minted certificate completes a real handshake with a client trusting the CA.
    #[tokio::test]
    async fn minted_certificate_completes_a_handshake() {
        for leaf_kind in [LeafKeyKind::EcdsaP256, LeafKeyKind::Rsa2048] {
            let ca = shared_ca(KeyKind::EcdsaP256);
            let minter = minter(Arc::clone(&ca), leaf_kind);
            let key = minter.certified_key(None, Some(SNI), None).await.unwrap();
            handshake_with(&ca, key).await;
        }
    }

    #[derive(Debug)]
    struct Fixed(Arc<CertifiedKey>);

    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }
    }

    async fn handshake_with(ca: &CertificateAuthority, key: Arc<CertifiedKey>) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(key)));
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der().to_vec()))
            .unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let server_task = tokio::spawn(async move { acceptor.accept(server_io).await });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let _client = connector
            .connect(ServerName::try_from(SNI).unwrap(), client_io)
            .await
            .expect("client accepts the minted certificate");
        server_task.await.unwrap().expect("server handshake");
    }

    #[test]
    fn minter_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Minter>();
    }
}
