//! Missing intermediates (SPEC §11, "Upstream trust as browsers do it"): where a
//! certificate says its issuer can be fetched (the Authority Information Access
//! `caIssuers` URL), and what such a fetch answered (one DER certificate, or a PKCS#7
//! "certs-only" bundle). Pure: the data path does the fetching.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS;

use crate::der::{Tlv, CONTEXT_0, OID, SEQUENCE, SET};

/// The `http://` `caIssuers` URLs of a certificate, in its order. Other schemes (ldap,
/// https, which would need the very trust being established) are left out.
pub fn ca_issuers_urls(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for extension in cert.extensions() {
        let ParsedExtension::AuthorityInfoAccess(access) = extension.parsed_extension() else {
            continue;
        };
        for description in access.iter() {
            if description.access_method != OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS {
                continue;
            }
            if let GeneralName::URI(uri) = description.access_location {
                if uri
                    .get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
                {
                    urls.push(uri.to_string());
                }
            }
        }
    }
    urls
}

/// The certificates in a `caIssuers` answer: a single DER certificate, or the
/// `certificates` of a PKCS#7 SignedData (RFC 5280 §4.2.2.1 allows both). Anything else
/// is no certificate at all.
pub fn parse_issuers(body: &[u8]) -> Vec<CertificateDer<'static>> {
    if x509_parser::parse_x509_certificate(body).is_ok_and(|(rest, _)| rest.is_empty()) {
        return vec![CertificateDer::from(body.to_vec())];
    }
    pkcs7_certificates(body).unwrap_or_default()
}

/// 1.2.840.113549.1.7.2, id-signedData.
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];

/// ContentInfo { id-signedData, [0] SignedData { version, digestAlgorithms SET,
/// encapContentInfo, [0] IMPLICIT certificates, … } } (RFC 5652 §5.1).
fn pkcs7_certificates(body: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let (content_info, _) = Tlv::read(body, SEQUENCE)?;
    let (oid, rest) = Tlv::read(content_info.value, OID)?;
    if oid.value != SIGNED_DATA {
        return None;
    }
    let (explicit, _) = Tlv::read(rest, CONTEXT_0)?;
    let (signed_data, _) = Tlv::read(explicit.value, SEQUENCE)?;
    let (_version, rest) = Tlv::read(signed_data.value, 0x02)?;
    let (_digests, rest) = Tlv::read(rest, SET)?;
    let (_content, rest) = Tlv::read(rest, SEQUENCE)?;
    let (certificates, _) = Tlv::read(rest, CONTEXT_0)?;
    let mut certs = Vec::new();
    let mut rest = certificates.value;
    while !rest.is_empty() {
        let (cert, after) = Tlv::read(rest, SEQUENCE)?;
        if x509_parser::parse_x509_certificate(cert.whole).is_ok() {
            certs.push(CertificateDer::from(cert.whole.to_vec()));
        }
        rest = after;
    }
    Some(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{CertificateParams, CustomExtension, KeyPair};

    /// A self-signed certificate whose AIA lists `urls` as caIssuers.
    fn cert_with_ca_issuers(urls: &[&str]) -> Vec<u8> {
        let mut descriptions = Vec::new();
        for url in urls {
            let method = der(OID, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02]);
            let location = der(0x86, url.as_bytes());
            descriptions.extend(der(SEQUENCE, &[method, location].concat()));
        }
        let aia = der(SEQUENCE, &descriptions);
        let mut params = CertificateParams::new(vec!["leaf.test".into()]).unwrap();
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            aia,
        )];
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn der(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if value.len() < 0x80 {
            out.push(value.len() as u8);
        } else {
            out.push(0x82);
            out.extend((value.len() as u16).to_be_bytes());
        }
        out.extend(value);
        out
    }

    fn pkcs7(certs: &[&[u8]]) -> Vec<u8> {
        let signed_data = [
            der(0x02, &[1]),
            der(SET, &[]),
            der(
                SEQUENCE,
                &der(OID, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01]),
            ),
            der(CONTEXT_0, &certs.concat()),
            der(SET, &[]),
        ]
        .concat();
        der(
            SEQUENCE,
            &[
                der(OID, SIGNED_DATA),
                der(CONTEXT_0, &der(SEQUENCE, &signed_data)),
            ]
            .concat(),
        )
    }

    #[test]
    fn only_http_ca_issuers_urls_are_taken() {
        let cert = cert_with_ca_issuers(&[
            "ldap://ldap.test/cn=ca",
            "http://aia.test/int.der",
            "https://aia.test/int.der",
            "HTTP://aia.test/other.p7c",
        ]);
        assert_eq!(
            ca_issuers_urls(&cert),
            ["http://aia.test/int.der", "HTTP://aia.test/other.p7c"]
        );
        assert!(ca_issuers_urls(&cert_with_ca_issuers(&[])).is_empty());
        assert!(ca_issuers_urls(b"garbage").is_empty());
    }

    #[test]
    fn der_and_pkcs7_answers_are_read() {
        let a = cert_with_ca_issuers(&[]);
        let b = cert_with_ca_issuers(&["http://x.test/"]);
        assert_eq!(parse_issuers(&a), [CertificateDer::from(a.clone())]);
        assert_eq!(
            parse_issuers(&pkcs7(&[&a, &b])),
            [CertificateDer::from(a.clone()), CertificateDer::from(b)]
        );
    }

    proptest::proptest! {
        // Whatever a caIssuers server answers, parsing it never panics.
        #[test]
        fn any_answer_is_parsed_without_panicking(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_issuers(&body);
            let mut wrapped = vec![SEQUENCE, 0x82];
            wrapped.extend((body.len() as u16).to_be_bytes());
            wrapped.extend(&body);
            let _ = parse_issuers(&wrapped);
        }
    }

    #[test]
    fn garbage_answers_are_no_certificate() {
        let a = cert_with_ca_issuers(&[]);
        let mut trailing = a.clone();
        trailing.push(0);
        let truncated = &pkcs7(&[&a])[..40];
        for body in [
            &b""[..],
            b"<html>not found</html>",
            &trailing,
            truncated,
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(parse_issuers(body).is_empty(), "{body:?}");
        }
    }
}
