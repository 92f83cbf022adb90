//! Certificates made in the test: a root the proxy trusts upstream, and server leaves
//! that are valid, expired, not yet valid, self-signed, from an unknown issuer, or for
//! the wrong name.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    CustomExtension, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A server certificate and its key, DER and PEM.
pub struct Leaf {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Names every valid test leaf covers.
pub const SERVER_NAMES: &[&str] = &[
    "localhost",
    "bump.test",
    "tunnel.test",
    "terminate.test",
    "allow.test",
    UNRESOLVED_NAME,
    "127.0.0.1",
];

/// A name every valid leaf covers but no test hosts file maps: a server with a valid
/// chain for a name that does not resolve to the address a client CONNECTed to.
pub const UNRESOLVED_NAME: &str = "elsewhere.test";

pub struct TestPki {
    root: CertifiedIssuer<'static, KeyPair>,
    /// A CA nobody trusts, for `unknown_issuer`.
    stranger: CertifiedIssuer<'static, KeyPair>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf_params(
    names: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "origin.test");
    dn.push(DnType::OrganizationName, "Origin Test Org");
    params.distinguished_name = dn;
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

impl TestPki {
    pub fn new() -> Self {
        TestPki {
            root: ca("sluice test upstream root"),
            stranger: ca("a CA nobody trusts"),
        }
    }

    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The root's certificate (DER), e.g. to require client certificates signed by it.
    pub fn root_der(&self) -> Vec<u8> {
        self.root.der().to_vec()
    }

    pub fn write_root(&self, path: &Path) {
        std::fs::write(path, self.root_pem()).unwrap();
    }

    fn signed(
        &self,
        issuer: &CertifiedIssuer<'static, KeyPair>,
        params: CertificateParams,
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        Leaf {
            chain: vec![cert.der().to_vec()],
            key: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn valid(&self) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.signed(
            &self.root,
            leaf_params(
                SERVER_NAMES,
                now - Duration::days(1),
                now + Duration::days(90),
            ),
        )
    }

    pub fn with_names(&self, names: &[&str]) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.signed(
            &self.root,
            leaf_params(names, now - Duration::days(1), now + Duration::days(90)),
        )
    }

    pub fn expired(&self) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.signed(
            &self.root,
            leaf_params(
                SERVER_NAMES,
                now - Duration::days(60),
                now - Duration::days(1),
            ),
        )
    }

    pub fn not_yet_valid(&self) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.signed(
            &self.root,
            leaf_params(
                SERVER_NAMES,
                now + Duration::days(2),
                now + Duration::days(60),
            ),
        )
    }

    pub fn unknown_issuer(&self) -> Leaf {
        let now = OffsetDateTime::now_utc();
        self.signed(
            &self.stranger,
            leaf_params(
                SERVER_NAMES,
                now - Duration::days(1),
                now + Duration::days(90),
            ),
        )
    }

    pub fn wrong_name(&self) -> Leaf {
        self.with_names(&["somewhere-else.test"])
    }

    pub fn self_signed(&self) -> Leaf {
        let now = OffsetDateTime::now_utc();
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params(
            SERVER_NAMES,
            now - Duration::days(1),
            now + Duration::days(90),
        )
        .self_signed(&key)
        .unwrap();
        Leaf {
            chain: vec![cert.der().to_vec()],
            key: key.serialize_der(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A leaf issued by an intermediate of the trusted root, the leaf alone in its chain
    /// (a server that omits its intermediate), naming `ca_issuers` in its Authority
    /// Information Access. Returns the leaf and the intermediate (DER).
    pub fn leaf_via_intermediate(&self, ca_issuers: &str) -> (Leaf, Vec<u8>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "sluice test intermediate");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let intermediate =
            CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), &self.root).unwrap();
        let now = OffsetDateTime::now_utc();
        let mut leaf = leaf_params(
            SERVER_NAMES,
            now - Duration::days(1),
            now + Duration::days(90),
        );
        leaf.custom_extensions = vec![ca_issuers_extension(ca_issuers)];
        (
            self.signed(&intermediate, leaf),
            intermediate.der().to_vec(),
        )
    }

    /// Two leaves of the trusted root and a CRL (PEM) of the root revoking the first.
    pub fn revoked_good_and_crl(&self) -> (Leaf, Leaf, String) {
        let now = OffsetDateTime::now_utc();
        let leaf_with_serial = |serial: u8| {
            let mut params = leaf_params(
                SERVER_NAMES,
                now - Duration::days(1),
                now + Duration::days(90),
            );
            params.serial_number = Some(SerialNumber::from(vec![0x01, serial]));
            self.signed(&self.root, params)
        };
        let crl = CertificateRevocationListParams {
            this_update: now - Duration::days(1),
            next_update: now + Duration::days(7),
            crl_number: SerialNumber::from(1_u64),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from(vec![0x01, 0x01]),
                revocation_time: now - Duration::days(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.root)
        .unwrap();
        (leaf_with_serial(1), leaf_with_serial(2), crl.pem().unwrap())
    }
}

/// An Authority Information Access extension naming one `caIssuers` URL (RFC 5280
/// §4.2.2.1), DER-encoded by hand: rcgen has no builder for it.
fn ca_issuers_extension(url: &str) -> CustomExtension {
    fn der(tag: u8, value: &[u8]) -> Vec<u8> {
        assert!(value.len() < 0x80, "short values only");
        [&[tag, value.len() as u8][..], value].concat()
    }
    const CA_ISSUERS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    let description = der(
        0x30,
        &[der(0x06, CA_ISSUERS), der(0x86, url.as_bytes())].concat(),
    );
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], der(0x30, &description))
}
