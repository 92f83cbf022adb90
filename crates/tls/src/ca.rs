//! The proxy's certificate authority: the CA certificate and key that sign every
//! replacement certificate (SPEC §2.4), created on first run or by `sluice ca init` (§6).
//!
//! Security-sensitive: every client that trusts this CA trusts any certificate signed with
//! its key, so the key is handled with care here and nowhere else:
//!
//! - it is written once, with mode 0600 from the moment the file is created, and never
//!   overwrites an existing file;
//! - a key file readable by group or others is refused, not silently used;
//! - no `Debug` output, error message or log line of this module contains key material
//!   (errors about the key name the file and say what is wrong, never what is inside);
//! - on load, the pair is checked before use (the key belongs to the certificate, the
//!   certificate is an unexpired CA allowed to sign certificates, and certificates signed
//!   with it name it exactly as issuer), so a bad pair stops sluice at start instead of
//!   producing certificates that no client accepts.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

/// Common name of the CA that `load_or_create` generates on first run.
pub const DEFAULT_COMMON_NAME: &str = "sluice proxy CA";

/// Organisation written in the subject of every CA that sluice generates.
const ORGANIZATION: &str = "sluice";

/// Lifetime of a generated CA certificate (ten years, leap days included).
const CA_LIFETIME: Duration = Duration::days(3653);

/// How far in the past a new certificate's notBefore is set, so that clients whose clock
/// is a little behind still accept it.
pub(crate) const BACKDATE: Duration = Duration::hours(1);

/// Mode of the key file: read and write for the owner only.
const KEY_FILE_MODE: u32 = 0o600;

/// Mode of the certificate file: public.
const CERT_FILE_MODE: u32 = 0o644;

/// Type of key for a newly generated CA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256, certificates signed with ECDSA-SHA256 (the default).
    EcdsaP256,
    /// RSA 2048 bits, certificates signed with RSA PKCS#1 v1.5 SHA-256.
    Rsa2048,
}

impl KeyKind {
    fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

/// Why the CA could not be created, loaded or written. Messages name the files involved
/// and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Key generation or self-signing failed.
    #[error("cannot generate the CA: {0}")]
    Generate(#[from] rcgen::Error),
    /// A freshly generated CA failed the checks every CA goes through (a bug).
    #[error("the generated CA failed its self-check: {0}")]
    SelfCheck(#[source] Unusable),
    /// A file or folder could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file or folder could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Writing would replace an existing file.
    #[error(
        "{} already exists; sluice never overwrites a CA file (move it away or choose another folder)",
        path.display()
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// The certificate and key paths are the same file.
    #[error("the CA certificate and key must be two different files, both are {}", path.display())]
    SamePath {
        /// The path given for both.
        path: PathBuf,
    },
    /// The key file can be read by users other than its owner.
    #[error(
        "{} is readable by group or others (mode {mode:03o}); the CA key must be private: run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The certificate file holds no PEM certificate.
    #[error("{} does not contain a PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// The key file holds no private key sluice can use.
    #[error(
        "{} does not contain a usable private key (expected an unencrypted PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\")",
        path.display()
    )]
    BadKey {
        /// The key file.
        path: PathBuf,
    },
    /// The pair was read but cannot serve as the proxy CA.
    #[error("the CA in {} and {} cannot be used: {reason}", cert_path.display(), key_path.display())]
    Unusable {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
        /// What is wrong.
        #[source]
        reason: Unusable,
    },
    /// Only one of the two files exists, so neither loading nor creating is safe.
    #[error(
        "{} is missing but {} exists; sluice refuses to start rather than replace half of a CA (restore the missing file, or remove both to create a new CA)",
        missing.display(),
        present.display()
    )]
    HalfPresent {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
}

/// Why a certificate and key cannot serve as the proxy CA.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// The certificate is not valid DER X.509.
    #[error("the certificate cannot be parsed")]
    BadCertificate,
    /// basicConstraints CA:TRUE is missing.
    #[error("the certificate is not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotCa,
    /// keyUsage is present without keyCertSign.
    #[error("the certificate's keyUsage does not allow signing certificates (keyCertSign)")]
    NoKeyCertSign,
    /// The certificate has expired.
    #[error("the certificate expired on {0}")]
    Expired(OffsetDateTime),
    /// The key is of a type clients do not accept for a CA.
    #[error("unsupported key type (use ECDSA P-256, ECDSA P-384 or RSA)")]
    KeyType,
    /// The key is not the certificate's key.
    #[error("the key does not belong to the certificate")]
    KeyMismatch,
    /// Certificates signed with this CA would not name it exactly as their issuer.
    #[error(
        "its subject cannot be reproduced exactly as the issuer of new certificates (repeated or multi-valued attributes are not supported)"
    )]
    IssuerName,
    /// rcgen rejected the certificate as an issuer.
    #[error("{0}")]
    Issuer(rcgen::Error),
}

/// The proxy CA: its certificate and the key that signs replacement certificates.
pub struct CertificateAuthority {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    /// Owns the signing key; built from the CA certificate itself so that issued
    /// certificates copy its subject and subject key identifier.
    issuer: Issuer<'static, KeyPair>,
    /// PEM label of the key's DER encoding (PKCS#8, SEC1 or PKCS#1), for `write_new`.
    key_label: &'static str,
    subject_key_id: Option<Vec<u8>>,
    subject: String,
    fingerprint: String,
    not_after: OffsetDateTime,
}

impl CertificateAuthority {
    /// New self-signed CA: CN = `common_name`, O = "sluice", basicConstraints CA:true
    /// pathlen 0, keyUsage keyCertSign + cRLSign + digitalSignature, a subject key
    /// identifier, valid from one hour ago for ten years, random positive serial.
    pub fn generate(common_name: &str, kind: KeyKind) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(kind.signature_algorithm())?;
        let cert = ca_params(common_name, OffsetDateTime::now_utc()).self_signed(&key)?;
        Self::from_parts(cert.der().clone(), key, PKCS8_LABEL).map_err(CaError::SelfCheck)
    }

    /// Loads a PEM certificate and a PEM key (PKCS#8, SEC1 or PKCS#1, unencrypted).
    /// Refuses a key file readable by group or others, and a pair that cannot work as
    /// the proxy CA (see [`Unusable`]).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let cert_der = read_certificate(cert_path)?;
        let (key, key_label) = read_key(key_path)?;
        Self::from_parts(cert_der, key, key_label).map_err(|reason| CaError::Unusable {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            reason,
        })
    }

    /// Writes the certificate (mode 0644) and the key (mode 0600 from creation on),
    /// creating the parent folders. Refuses to overwrite either file; when the second
    /// file cannot be written the first is removed again.
    pub fn write_new(&self, cert_path: &Path, key_path: &Path) -> Result<(), CaError> {
        if cert_path == key_path {
            return Err(CaError::SamePath {
                path: cert_path.to_owned(),
            });
        }
        for path in [cert_path, key_path] {
            if exists(path)? {
                return Err(CaError::Exists {
                    path: path.to_owned(),
                });
            }
        }
        create_parent(key_path)?;
        create_parent(cert_path)?;
        write_new_file(key_path, self.key_pem().as_bytes(), KEY_FILE_MODE)?;
        if let Err(err) = write_new_file(cert_path, self.cert_pem.as_bytes(), CERT_FILE_MODE) {
            if let Err(remove) = fs::remove_file(key_path) {
                tracing::warn!(path = %key_path.display(), error = %remove, "cannot remove the CA key written before the failure");
            }
            return Err(err);
        }
        Ok(())
    }

    /// First-run logic of `sluice run`: both files exist → load them; neither exists →
    /// generate an ECDSA P-256 CA named [`DEFAULT_COMMON_NAME`], write it, and return
    /// `true` as "created"; exactly one exists → an error naming the missing one.
    pub fn load_or_create(cert_path: &Path, key_path: &Path) -> Result<(Self, bool), CaError> {
        match (exists(cert_path)?, exists(key_path)?) {
            (true, true) => Ok((Self::load(cert_path, key_path)?, false)),
            (false, false) => {
                let ca = Self::generate(DEFAULT_COMMON_NAME, KeyKind::EcdsaP256)?;
                ca.write_new(cert_path, key_path)?;
                Ok((ca, true))
            }
            (true, false) => Err(CaError::HalfPresent {
                present: cert_path.to_owned(),
                missing: key_path.to_owned(),
            }),
            (false, true) => Err(CaError::HalfPresent {
                present: key_path.to_owned(),
                missing: cert_path.to_owned(),
            }),
        }
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM (only the certificate, whatever else its file held).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the certificate DER as upper-case hex pairs joined by `:`, as printed by
    /// `openssl x509 -fingerprint -sha256`.
    pub fn fingerprint_sha256(&self) -> String {
        self.fingerprint.clone()
    }

    /// End of the CA certificate's validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The signer of replacement certificates.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    /// The CA certificate's subjectKeyIdentifier value, as written in it (not recomputed:
    /// a CA made by openssl uses SHA-1 key identifiers).
    pub(crate) fn subject_key_id(&self) -> Option<&[u8]> {
        self.subject_key_id.as_deref()
    }

    /// Builds a CA from a certificate and key made elsewhere (tests of other modules).
    #[cfg(test)]
    pub(crate) fn from_rcgen(
        cert_der: CertificateDer<'static>,
        key: KeyPair,
    ) -> Result<Self, Unusable> {
        Self::from_parts(cert_der, key, PKCS8_LABEL)
    }

    fn from_parts(
        cert_der: CertificateDer<'static>,
        key: KeyPair,
        key_label: &'static str,
    ) -> Result<Self, Unusable> {
        let (_, x509) =
            x509_parser::parse_x509_certificate(&cert_der).map_err(|_| Unusable::BadCertificate)?;
        check_can_issue(&x509)?;
        check_key(&x509, &key)?;
        let not_after = x509.validity().not_after.to_datetime();
        if not_after <= OffsetDateTime::now_utc() {
            return Err(Unusable::Expired(not_after));
        }
        let subject_key_id = subject_key_identifier(&x509);
        let subject = x509.subject().to_string();
        let subject_raw = x509.subject().as_raw().to_vec();
        drop(x509);

        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(Unusable::Issuer)?;
        check_issuer_name(&issuer, &subject_raw)?;
        Ok(Self {
            cert_pem: encode_pem(CERT_LABEL, &cert_der),
            fingerprint: colon_hex(&Sha256::digest(&cert_der)),
            cert_der,
            issuer,
            key_label,
            subject_key_id,
            subject,
            not_after,
        })
    }

    /// A 32-byte secret derived from the CA key for `purpose` (HKDF-SHA256): what every
    /// node holding this CA can compute and nobody without its key can. The key itself
    /// never leaves this module.
    pub fn derive_secret(&self, purpose: &[u8]) -> [u8; 32] {
        use ring::hkdf::{Salt, HKDF_SHA256};
        let salt = Salt::new(HKDF_SHA256, b"sluice CA-derived secret v1");
        let prk = salt.extract(self.issuer.key().serialized_der());
        let mut secret = [0u8; 32];
        // 32 bytes is within HKDF-SHA256's limit (255 * 32), so neither step can fail.
        if let Ok(okm) = prk.expand(&[purpose], HKDF_SHA256) {
            let _ = okm.fill(&mut secret);
        }
        secret
    }

    fn key_pem(&self) -> String {
        encode_pem(self.key_label, self.issuer.key().serialized_der())
    }
}

impl fmt::Debug for CertificateAuthority {
    /// Subject and fingerprint only: the key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &self.subject)
            .field("fingerprint_sha256", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

const CERT_LABEL: &str = "CERTIFICATE";
const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";
const PKCS1_LABEL: &str = "RSA PRIVATE KEY";

fn ca_params(common_name: &str, now: OffsetDateTime) -> CertificateParams {
    let mut distinguished_name = DistinguishedName::new();
    distinguished_name.push(DnType::CommonName, common_name);
    distinguished_name.push(DnType::OrganizationName, ORGANIZATION);
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name;
    params.serial_number = Some(random_serial());
    params.not_before = now - BACKDATE;
    params.not_after = now + CA_LIFETIME;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A random positive 128-bit serial number: 16 random bytes, top bit cleared, never zero.
pub(crate) fn random_serial() -> SerialNumber {
    loop {
        let mut bytes: [u8; 16] = rand::random();
        bytes[0] &= 0x7f;
        if bytes.iter().any(|&b| b != 0) {
            return SerialNumber::from_slice(&bytes);
        }
    }
}

fn check_can_issue(x509: &X509Certificate<'_>) -> Result<(), Unusable> {
    let basic = x509
        .basic_constraints()
        .map_err(|_| Unusable::BadCertificate)?;
    if !basic.is_some_and(|ext| ext.value.ca) {
        return Err(Unusable::NotCa);
    }
    let usage = x509.key_usage().map_err(|_| Unusable::BadCertificate)?;
    if usage.is_some_and(|ext| !ext.value.key_cert_sign()) {
        return Err(Unusable::NoKeyCertSign);
    }
    Ok(())
}

/// The key must be the certificate's key, of a type browsers accept for a CA.
fn check_key(x509: &X509Certificate<'_>, key: &KeyPair) -> Result<(), Unusable> {
    let supported = [
        &rcgen::PKCS_ECDSA_P256_SHA256,
        &rcgen::PKCS_ECDSA_P384_SHA384,
        &rcgen::PKCS_RSA_SHA256,
    ];
    if !supported.contains(&key.algorithm()) {
        return Err(Unusable::KeyType);
    }
    if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
        return Err(Unusable::KeyMismatch);
    }
    Ok(())
}

fn subject_key_identifier(x509: &X509Certificate<'_>) -> Option<Vec<u8>> {
    x509.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

/// rcgen re-encodes the issuer name from a parsed copy of the CA subject; clients chain
/// a certificate to its issuer by comparing names byte for byte, so sign a throwaway
/// certificate and check that its issuer is exactly the CA subject.
fn check_issuer_name(issuer: &Issuer<'_, KeyPair>, ca_subject: &[u8]) -> Result<(), Unusable> {
    let probe = CertificateParams::default()
        .signed_by(issuer.key(), issuer)
        .map_err(Unusable::Issuer)?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(probe.der()).map_err(|_| Unusable::IssuerName)?;
    if parsed.issuer().as_raw() == ca_subject {
        Ok(())
    } else {
        Err(Unusable::IssuerName)
    }
}

fn read_certificate(path: &Path) -> Result<CertificateDer<'static>, CaError> {
    let pem = fs::read(path).map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })?;
    CertificateDer::from_pem_slice(&pem).map_err(|_| CaError::NoCertificate {
        path: path.to_owned(),
    })
}

/// Reads the key after checking, on the open file, that only its owner can read it.
fn read_key(path: &Path) -> Result<(KeyPair, &'static str), CaError> {
    let read_error = |source| CaError::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    let mut pem = Vec::new();
    file.read_to_end(&mut pem).map_err(read_error)?;
    let bad_key = || CaError::BadKey {
        path: path.to_owned(),
    };
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| bad_key())?;
    let label = match der {
        PrivateKeyDer::Pkcs1(_) => PKCS1_LABEL,
        PrivateKeyDer::Sec1(_) => SEC1_LABEL,
        _ => PKCS8_LABEL,
    };
    let key = KeyPair::try_from(&der).map_err(|_| bad_key())?;
    Ok((key, label))
}

fn exists(path: &Path) -> Result<bool, CaError> {
    path.try_exists().map_err(|source| CaError::Read {
        path: path.to_owned(),
        source,
    })
}

fn create_parent(path: &Path) -> Result<(), CaError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            fs::create_dir_all(parent).map_err(|source| CaError::Write {
                path: parent.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// Creates `path` with `mode` (further restricted by the umask), failing if it exists, so
/// the file is never readable more widely than `mode` allows, not even for an instant.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let write_error = |source: io::Error| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            CaError::Exists {
                path: path.to_owned(),
            }
        } else {
            CaError::Write {
                path: path.to_owned(),
                source,
            }
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    file.write_all(contents).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

fn encode_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der)
            .expect("valid DER")
            .1
    }

    #[test]
    fn a_derived_secret_is_the_same_for_every_holder_of_the_ca_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(&dir);
        let (ca, _) = CertificateAuthority::load_or_create(&cert, &key).unwrap();
        let again = CertificateAuthority::load(&cert, &key).unwrap();
        let other = CertificateAuthority::generate("other", KeyKind::EcdsaP256).unwrap();
        assert_eq!(ca.derive_secret(b"a"), again.derive_secret(b"a"));
        assert_ne!(ca.derive_secret(b"a"), ca.derive_secret(b"b"));
        assert_ne!(ca.derive_secret(b"a"), other.derive_secret(b"a"));
        assert_ne!(ca.derive_secret(b"a"), [0u8; 32]);
    }

    fn paths(dir: &tempfile::TempDir) -> (PathBuf, PathBuf) {
        (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"))
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    fn write_key_file(path: &Path, pem: &str) {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .expect("create key file");
        file.write_all(pem.as_bytes()).expect("write key file");
    }

    /// The inner private key of a PKCS#8 document: SEC1 for EC keys, PKCS#1 for RSA.
    fn pkcs8_inner(pkcs8: &[u8]) -> Vec<u8> {
        use x509_parser::der_parser::ber::BerObjectContent;
        let (_, info) = x509_parser::der_parser::parse_der(pkcs8).expect("PKCS#8 DER");
        let fields = info.as_sequence().expect("sequence");
        match &fields[2].content {
            BerObjectContent::OctetString(inner) => inner.to_vec(),
            other => panic!("unexpected PKCS#8 field {other:?}"),
        }
    }

    // A generated CA has every field §6 promises, for both key types.
    #[test]
    fn generate_fills_every_field() {
        for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            let before = OffsetDateTime::now_utc();
            let ca = CertificateAuthority::generate("Test CA", kind).expect("generate");
            let x509 = parse(ca.cert_der());
            let subject = x509.subject();
            let cn = subject.iter_common_name().next().unwrap().as_str().unwrap();
            let org = subject
                .iter_organization()
                .next()
                .unwrap()
                .as_str()
                .unwrap();
            assert_eq!((cn, org), ("Test CA", "sluice"));
            assert_eq!(x509.subject().as_raw(), x509.issuer().as_raw());

            let basic = x509.basic_constraints().unwrap().unwrap();
            assert!(basic.critical && basic.value.ca);
            assert_eq!(basic.value.path_len_constraint, Some(0));
            let usage = x509.key_usage().unwrap().unwrap().value;
            assert!(usage.key_cert_sign() && usage.crl_sign() && usage.digital_signature());
            assert!(!usage.key_encipherment());
            assert_eq!(ca.subject_key_id().map(<[u8]>::len), Some(20));

            let not_before = x509.validity().not_before.to_datetime();
            let not_after = x509.validity().not_after.to_datetime();
            assert!((before - BACKDATE - not_before).abs() < Duration::seconds(5));
            assert!((before + CA_LIFETIME - not_after).abs() < Duration::seconds(5));
            assert!(not_after - not_before > Duration::days(3650));
            assert_eq!(ca.not_after(), not_after);

            let serial = x509.raw_serial();
            assert!(serial[0] & 0x80 == 0 && serial.iter().any(|&b| b != 0));
            assert!(serial.len() <= 16, "serial has {} bytes", serial.len());

            let expected_oid = match kind {
                KeyKind::EcdsaP256 => x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256,
                KeyKind::Rsa2048 => x509_parser::oid_registry::OID_PKCS1_SHA256WITHRSA,
            };
            assert_eq!(x509.signature_algorithm.algorithm, expected_oid);
        }
    }

    // Two CAs never share a serial or a key.
    #[test]
    fn generated_cas_differ() {
        let a = CertificateAuthority::generate("A", KeyKind::EcdsaP256).unwrap();
        let b = CertificateAuthority::generate("A", KeyKind::EcdsaP256).unwrap();
        assert_ne!(
            parse(a.cert_der()).raw_serial(),
            parse(b.cert_der()).raw_serial()
        );
        assert_ne!(a.subject_key_id(), b.subject_key_id());
    }

    // The fingerprint has openssl's format and is the SHA-256 of the DER.
    #[test]
    fn fingerprint_matches_openssl_format() {
        let ca = CertificateAuthority::generate("F", KeyKind::EcdsaP256).unwrap();
        let fingerprint = ca.fingerprint_sha256();
        assert_eq!(fingerprint.len(), 32 * 3 - 1);
        let digest = Sha256::digest(ca.cert_der());
        let expected: Vec<String> = digest.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(fingerprint, expected.join(":"));
        assert!(!fingerprint.chars().any(|c| c.is_ascii_lowercase()));
    }

    // Written files have the promised modes and load back into the same CA.
    #[test]
    fn write_then_load_round_trips() {
        for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
            let dir = tempfile::tempdir().unwrap();
            let cert = dir.path().join("nested/folder/ca.pem");
            let key = dir.path().join("nested/folder/ca-key.pem");
            let ca = CertificateAuthority::generate("Round trip", kind).unwrap();
            ca.write_new(&cert, &key).expect("write");
            assert_eq!(mode_of(&key), 0o600);
            assert_eq!(mode_of(&cert) & 0o600, 0o600);
            assert_eq!(fs::read_to_string(&cert).unwrap(), ca.cert_pem());
            assert!(fs::read_to_string(&key)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----\n"));

            let loaded = CertificateAuthority::load(&cert, &key).expect("load");
            assert_eq!(loaded.cert_der(), ca.cert_der());
            assert_eq!(loaded.fingerprint_sha256(), ca.fingerprint_sha256());
            assert_eq!(loaded.subject_key_id(), ca.subject_key_id());
            assert_eq!(
                loaded.issuer().key().algorithm(),
                ca.issuer().key().algorithm()
            );
        }
    }

    // write_new never replaces an existing file, and leaves nothing half-written.
    #[test]
    fn write_new_refuses_to_overwrite() {
        let ca = CertificateAuthority::generate("W", KeyKind::EcdsaP256).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(&dir);

        fs::write(&cert, "old certificate").unwrap();
        let err = ca.write_new(&cert, &key).unwrap_err();
        assert!(
            matches!(&err, CaError::Exists { path } if *path == cert),
            "{err}"
        );
        assert!(err.to_string().contains("ca.pem"));
        assert!(!key.exists(), "no key may be left behind");
        assert_eq!(fs::read_to_string(&cert).unwrap(), "old certificate");

        fs::remove_file(&cert).unwrap();
        fs::write(&key, "old key").unwrap();
        let err = ca.write_new(&cert, &key).unwrap_err();
        assert!(
            matches!(&err, CaError::Exists { path } if *path == key),
            "{err}"
        );
        assert!(!cert.exists());
        assert_eq!(fs::read_to_string(&key).unwrap(), "old key");

        let err = ca.write_new(&cert, &cert).unwrap_err();
        assert!(matches!(err, CaError::SamePath { .. }), "{err}");
    }

    // A failure writing the certificate removes the key just written. The failure here
    // is a dangling symlink at the certificate path: create_new never follows it.
    #[test]
    fn write_new_removes_key_when_certificate_fails() {
        let ca = CertificateAuthority::generate("W", KeyKind::EcdsaP256).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(&dir);
        let target = dir.path().join("elsewhere.pem");
        std::os::unix::fs::symlink(&target, &cert).unwrap();
        let err = ca.write_new(&cert, &key).unwrap_err();
        assert!(matches!(err, CaError::Exists { .. }), "{err}");
        assert!(!key.exists(), "the key written first must be removed");
        assert!(!target.exists(), "nothing is written through the symlink");
    }

    // A key readable by group or others is refused with a chmod hint.
    #[test]
    fn load_refuses_readable_key() {
        let ca = CertificateAuthority::generate("P", KeyKind::EcdsaP256).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(&dir);
        ca.write_new(&cert, &key).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
            let err = CertificateAuthority::load(&cert, &key).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, CaError::KeyPermissions { .. }), "{message}");
            assert!(
                message.contains("chmod 600") && message.contains("ca-key.pem"),
                "{message}"
            );
        }
        fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
        CertificateAuthority::load(&cert, &key).expect("0400 is private");
    }

    // SEC1 ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY") keys load too, and are
    // written back with their own label.
    #[test]
    fn load_accepts_sec1_and_pkcs1_keys() {
        for (kind, label) in [
            (KeyKind::EcdsaP256, SEC1_LABEL),
            (KeyKind::Rsa2048, PKCS1_LABEL),
        ] {
            let ca = CertificateAuthority::generate("Legacy", kind).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (cert, key) = paths(&dir);
            fs::write(&cert, ca.cert_pem()).unwrap();
            let inner = pkcs8_inner(ca.issuer().key().serialized_der());
            write_key_file(&key, &encode_pem(label, &inner));

            let loaded = CertificateAuthority::load(&cert, &key).expect("load legacy key");
            assert_eq!(loaded.fingerprint_sha256(), ca.fingerprint_sha256());
            assert!(loaded
                .key_pem()
                .starts_with(&format!("-----BEGIN {label}-----")));
        }
    }

    // The certificate file may hold text and other PEM blocks; cert_pem is just the CA.
    #[test]
    fn load_takes_the_certificate_out_of_a_noisy_file() {
        let ca = CertificateAuthority::generate("Noisy", KeyKind::EcdsaP256).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(&dir);
        ca.write_new(&dir.path().join("x.pem"), &key).unwrap();
        fs::write(&cert, format!("Subject: Noisy\n{}", ca.cert_pem())).unwrap();
        let loaded = CertificateAuthority::load(&cert, &key).unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
    }

    // A key of another CA, a leaf certificate, an expired CA and garbage are all refused
    // with a message naming the files and what is wrong.
    #[test]
    fn load_refuses_unusable_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::generate("Real", KeyKind::EcdsaP256).unwrap();
        let other = CertificateAuthority::generate("Other", KeyKind::EcdsaP256).unwrap();
        let (cert, key) = paths(&dir);
        fs::write(&cert, ca.cert_pem()).unwrap();
        write_key_file(&key, &other.key_pem());
        let err = CertificateAuthority::load(&cert, &key).unwrap_err();
        assert!(
            matches!(
                err,
                CaError::Unusable {
                    reason: Unusable::KeyMismatch,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("ca.pem") && err.to_string().contains("ca-key.pem"));

        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["leaf.test".to_string()])
            .unwrap()
            .self_signed(&leaf_key)
            .unwrap();
        let err = CertificateAuthority::from_rcgen(leaf.der().clone(), leaf_key).unwrap_err();
        assert!(matches!(err, Unusable::NotCa), "{err}");

        let old_key = KeyPair::generate().unwrap();
        let mut params = ca_params("Old", OffsetDateTime::now_utc() - Duration::days(4000));
        params.not_after = OffsetDateTime::now_utc() - Duration::days(1);
        let old = params.self_signed(&old_key).unwrap();
        let err = CertificateAuthority::from_rcgen(old.der().clone(), old_key).unwrap_err();
        assert!(matches!(err, Unusable::Expired(_)), "{err}");

        let no_sign_key = KeyPair::generate().unwrap();
        let mut params = ca_params("No sign", OffsetDateTime::now_utc());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let no_sign = params.self_signed(&no_sign_key).unwrap();
        let err = CertificateAuthority::from_rcgen(no_sign.der().clone(), no_sign_key).unwrap_err();
        assert!(matches!(err, Unusable::NoKeyCertSign), "{err}");

        fs::write(&cert, "not a certificate").unwrap();
        let err = CertificateAuthority::load(&cert, &key).unwrap_err();
        assert!(matches!(err, CaError::NoCertificate { .. }), "{err}");
    }

    // A CA whose subject repeats an attribute type cannot be reproduced by rcgen as an
    // issuer name; it is refused at load instead of minting certificates that never chain.
    #[test]
    fn load_refuses_subject_that_cannot_be_reproduced() {
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params("Repeated", OffsetDateTime::now_utc());
        // Two O attributes: rcgen keys names by type, so spell the second one as a custom
        // type with the same OID.
        params
            .distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 10]), "second org");
        let cert = params.self_signed(&key).unwrap();
        let organizations = parse(cert.der()).subject().iter_organization().count();
        assert_eq!(organizations, 2);
        let err = CertificateAuthority::from_rcgen(cert.der().clone(), key).unwrap_err();
        assert!(matches!(err, Unusable::IssuerName), "{err}");
    }

    // Exactly one file present: refuse, naming the missing one. Neither: create. Both: load.
    #[test]
    fn load_or_create_handles_first_run_and_half_present() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("sluice-data/ca.pem");
        let key = dir.path().join("sluice-data/ca-key.pem");

        let (created, was_created) = CertificateAuthority::load_or_create(&cert, &key).unwrap();
        assert!(was_created);
        assert_eq!(mode_of(&key), 0o600);
        let x509 = parse(created.cert_der());
        let cn = x509
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, DEFAULT_COMMON_NAME);
        assert_eq!(
            created.issuer().key().algorithm(),
            &rcgen::PKCS_ECDSA_P256_SHA256
        );

        let (loaded, was_created) = CertificateAuthority::load_or_create(&cert, &key).unwrap();
        assert!(!was_created);
        assert_eq!(loaded.fingerprint_sha256(), created.fingerprint_sha256());

        fs::remove_file(&key).unwrap();
        let err = CertificateAuthority::load_or_create(&cert, &key).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(&err, CaError::HalfPresent { missing, .. } if *missing == key),
            "{message}"
        );
        assert!(message.contains("ca-key.pem is missing") && message.contains("refuses to start"));

        fs::rename(&cert, &key).unwrap();
        let err = CertificateAuthority::load_or_create(&cert, &key).unwrap_err();
        assert!(
            matches!(&err, CaError::HalfPresent { missing, .. } if *missing == cert),
            "{err}"
        );
        assert!(
            key.exists() && !cert.exists(),
            "nothing is created or removed"
        );
    }

    // Neither Debug nor any error shows key material.
    #[test]
    fn key_material_never_printed() {
        let ca = CertificateAuthority::generate("Secret", KeyKind::EcdsaP256).unwrap();
        let key_pem = ca.key_pem();
        let body: Vec<&str> = key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let debug = format!("{ca:?}");
        assert!(debug.contains("Secret") && debug.contains(&ca.fingerprint_sha256()));

        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(&dir);
        fs::write(&cert, ca.cert_pem()).unwrap();
        // A damaged key: valid base64 lines of the real key, truncated.
        let damaged = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            body[0]
        );
        write_key_file(&key, &damaged);
        let err = CertificateAuthority::load(&cert, &key).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(matches!(err, CaError::BadKey { .. }), "{shown}");
        for text in [debug, shown] {
            for line in &body {
                assert!(!text.contains(line), "key material printed: {text}");
            }
        }
    }

    // The serial helper never yields zero or a negative number.
    #[test]
    fn random_serials_are_positive_and_distinct() {
        let serials: Vec<Vec<u8>> = (0..200).map(|_| random_serial().to_bytes()).collect();
        for serial in &serials {
            assert_eq!(serial.len(), 16);
            assert_eq!(serial[0] & 0x80, 0);
        }
        let unique: std::collections::HashSet<_> = serials.iter().collect();
        assert_eq!(unique.len(), serials.len());
    }
}
