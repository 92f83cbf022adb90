//! Stapled OCSP responses (RFC 6960), as a browser reads them (SPEC §11): a response is
//! believed only when it is signed by the leaf's issuer or by a responder certificate
//! that issuer delegated (extended key usage OCSPSigning), names the leaf's serial, and
//! is fresh. Pure: the bytes come from the handshake.

use rustls_pki_types::{SignatureVerificationAlgorithm, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::time::ASN1Time;

use crate::der::{
    Tlv, BIT_STRING, CONTEXT_0, ENUMERATED, GENERALIZED_TIME, INTEGER, OCTET_STRING, OID, SEQUENCE,
};

/// What a believed response says of the leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertStatus {
    Good,
    Revoked,
    Unknown,
}

/// A key that may have issued the leaf: its subject Name and its SubjectPublicKeyInfo,
/// both as DER contents (without the outer SEQUENCE header, as webpki's trust anchors
/// hold them).
#[derive(Clone, Copy, Debug)]
pub struct IssuerKey<'a> {
    pub subject: &'a [u8],
    pub spki: &'a [u8],
}

/// How far clocks may disagree.
const SKEW_SECS: u64 = 300;
/// How old a response without a nextUpdate may be.
const MAX_AGE_WITHOUT_NEXT_UPDATE_SECS: u64 = 4 * 24 * 3600;

/// 1.3.6.1.5.5.7.48.1.1, id-pkix-ocsp-basic.
const OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];

const GOOD: u8 = 0x80;
const REVOKED: u8 = 0xa1;
const UNKNOWN: u8 = 0x82;

/// The status a stapled response gives the leaf (DER), or why it is not believed.
pub fn stapled_status(
    staple: &[u8],
    leaf: &[u8],
    issuers: &[IssuerKey<'_>],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    now: UnixTime,
) -> Result<CertStatus, &'static str> {
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf).map_err(|_| "bad leaf")?;
    let leaf_issuer = contents(leaf.issuer().as_raw()).ok_or("bad leaf issuer")?;
    let issuer = issuers
        .iter()
        .find(|key| key.subject == leaf_issuer)
        .ok_or("the leaf's issuer is not known")?;
    let basic = basic_response(staple).ok_or("not a successful basic OCSP response")?;
    let signer_ok = verify(issuer.spki, &basic, algorithms)
        || basic.certs.iter().any(|cert| {
            delegated_responder(cert, leaf_issuer, issuer.spki, algorithms, now)
                .is_some_and(|spki| verify(spki, &basic, algorithms))
        });
    if !signer_ok {
        return Err("not signed by the issuer or a responder it delegated");
    }
    single_status(basic.tbs_contents, leaf.raw_serial(), now)
}

/// The parts of a BasicOCSPResponse that are checked.
struct Basic<'a> {
    /// The signed bytes (the whole tbsResponseData).
    tbs: &'a [u8],
    tbs_contents: &'a [u8],
    signature_algorithm: &'a [u8],
    signature: &'a [u8],
    /// Certificates the responder sent along (a delegated responder's).
    certs: Vec<&'a [u8]>,
}

/// OCSPResponse { responseStatus successful(0), [0] { id-pkix-ocsp-basic, OCTET STRING
/// BasicOCSPResponse } }.
fn basic_response(staple: &[u8]) -> Option<Basic<'_>> {
    let (response, _) = Tlv::read(staple, SEQUENCE)?;
    let (status, rest) = Tlv::read(response.value, ENUMERATED)?;
    if status.value != [0] {
        return None;
    }
    let (bytes, _) = Tlv::read(rest, CONTEXT_0)?;
    let (bytes, _) = Tlv::read(bytes.value, SEQUENCE)?;
    let (kind, rest) = Tlv::read(bytes.value, OID)?;
    if kind.value != OCSP_BASIC {
        return None;
    }
    let (octets, _) = Tlv::read(rest, OCTET_STRING)?;
    let (basic, _) = Tlv::read(octets.value, SEQUENCE)?;
    let (tbs, rest) = Tlv::read(basic.value, SEQUENCE)?;
    let (algorithm, rest) = Tlv::read(rest, SEQUENCE)?;
    let (signature, rest) = Tlv::read(rest, BIT_STRING)?;
    let (certs_field, _) = Tlv::optional(rest, CONTEXT_0);
    let mut certs = Vec::new();
    if let Some(field) = certs_field {
        let (list, _) = Tlv::read(field.value, SEQUENCE)?;
        let mut rest = list.value;
        while !rest.is_empty() {
            let (cert, after) = Tlv::read(rest, SEQUENCE)?;
            certs.push(cert.whole);
            rest = after;
        }
    }
    Some(Basic {
        tbs: tbs.whole,
        tbs_contents: tbs.value,
        signature_algorithm: algorithm.value,
        signature: bit_string(signature.value)?,
        certs,
    })
}

/// Whether the key `spki` (contents) made the response's signature.
fn verify(
    spki: &[u8],
    basic: &Basic<'_>,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> bool {
    signed_by(
        spki,
        basic.tbs,
        basic.signature_algorithm,
        basic.signature,
        algorithms,
    )
}

fn signed_by(
    spki: &[u8],
    message: &[u8],
    signature_algorithm: &[u8],
    signature: &[u8],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> bool {
    let Some((key_algorithm, key)) = spki_parts(spki) else {
        return false;
    };
    algorithms.iter().any(|algorithm| {
        algorithm.signature_alg_id().as_ref() == signature_algorithm
            && algorithm.public_key_alg_id().as_ref() == key_algorithm
            && algorithm.verify_signature(key, message, signature).is_ok()
    })
}

/// A responder certificate's key (SPKI contents), when the issuer signed it for OCSP
/// signing and it is valid now.
fn delegated_responder<'a>(
    der: &'a [u8],
    issuer_name: &[u8],
    issuer_spki: &[u8],
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    now: UnixTime,
) -> Option<&'a [u8]> {
    let (_, cert): (_, X509Certificate<'a>) = x509_parser::parse_x509_certificate(der).ok()?;
    if contents(cert.issuer().as_raw())? != issuer_name {
        return None;
    }
    let at = ASN1Time::from_timestamp(i64::try_from(now.as_secs()).ok()?).ok()?;
    if !cert.validity().is_valid_at(at) {
        return None;
    }
    let ocsp_signing = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| eku.value.ocsp_signing);
    if !ocsp_signing {
        return None;
    }
    // Certificate { tbsCertificate, signatureAlgorithm, signatureValue }.
    let (whole, _) = Tlv::read(der, SEQUENCE)?;
    let (tbs, rest) = Tlv::read(whole.value, SEQUENCE)?;
    let (algorithm, rest) = Tlv::read(rest, SEQUENCE)?;
    let (signature, _) = Tlv::read(rest, BIT_STRING)?;
    let signature = bit_string(signature.value)?;
    if !signed_by(
        issuer_spki,
        tbs.whole,
        algorithm.value,
        signature,
        algorithms,
    ) {
        return None;
    }
    let spki: &'a [u8] = cert.tbs_certificate.subject_pki.raw;
    contents(spki)
}

/// ResponseData { [0] version OPTIONAL, responderID, producedAt, responses, … }: the
/// status of the response for `serial`, if it is fresh.
fn single_status(tbs: &[u8], serial: &[u8], now: UnixTime) -> Result<CertStatus, &'static str> {
    const MALFORMED: &str = "malformed response data";
    let (_, rest) = Tlv::optional(tbs, CONTEXT_0);
    let (_, _responder, rest) = Tlv::read_any(rest).ok_or(MALFORMED)?;
    let (_, rest) = Tlv::read(rest, GENERALIZED_TIME).ok_or(MALFORMED)?;
    let (responses, _) = Tlv::read(rest, SEQUENCE).ok_or(MALFORMED)?;
    let mut rest = responses.value;
    while !rest.is_empty() {
        let (single, after) = Tlv::read(rest, SEQUENCE).ok_or(MALFORMED)?;
        rest = after;
        let (cert_id, fields) = Tlv::read(single.value, SEQUENCE).ok_or(MALFORMED)?;
        if cert_id_serial(cert_id.value) != Some(serial) {
            continue;
        }
        let (tag, _, fields) = Tlv::read_any(fields).ok_or(MALFORMED)?;
        let (this_update, fields) = Tlv::read(fields, GENERALIZED_TIME).ok_or(MALFORMED)?;
        let this_update = generalized_time(this_update.value).ok_or(MALFORMED)?;
        let (next_update, _) = Tlv::optional(fields, CONTEXT_0);
        let next_update = match next_update {
            Some(explicit) => {
                let (time, _) = Tlv::read(explicit.value, GENERALIZED_TIME).ok_or(MALFORMED)?;
                Some(generalized_time(time.value).ok_or(MALFORMED)?)
            }
            None => None,
        };
        let now = now.as_secs();
        let stale = match next_update {
            Some(next) => now > next + SKEW_SECS,
            None => now > this_update + MAX_AGE_WITHOUT_NEXT_UPDATE_SECS,
        };
        if this_update > now + SKEW_SECS || stale {
            return Err("not fresh");
        }
        return match tag {
            GOOD => Ok(CertStatus::Good),
            REVOKED => Ok(CertStatus::Revoked),
            UNKNOWN => Ok(CertStatus::Unknown),
            _ => Err(MALFORMED),
        };
    }
    Err("no response for the leaf's serial")
}

/// CertID { hashAlgorithm, issuerNameHash, issuerKeyHash, serialNumber }: the serial.
/// (The hashes name the issuer, whose signature was checked instead.)
fn cert_id_serial(cert_id: &[u8]) -> Option<&[u8]> {
    let (_, rest) = Tlv::read(cert_id, SEQUENCE)?;
    let (_, rest) = Tlv::read(rest, OCTET_STRING)?;
    let (_, rest) = Tlv::read(rest, OCTET_STRING)?;
    let (serial, _) = Tlv::read(rest, INTEGER)?;
    Some(serial.value)
}

/// `YYYYMMDDHHMMSS[.fff]Z` as seconds since the epoch.
fn generalized_time(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text.strip_suffix('Z')?;
    let whole = text.split('.').next()?;
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| whole[range].parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(number(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(
        i32::try_from(number(0..4)?).ok()?,
        month,
        u8::try_from(number(6..8)?).ok()?,
    )
    .ok()?;
    let time = time::Time::from_hms(
        u8::try_from(number(8..10)?).ok()?,
        u8::try_from(number(10..12)?).ok()?,
        u8::try_from(number(12..14)?).ok()?,
    )
    .ok()?;
    u64::try_from(date.with_time(time).assume_utc().unix_timestamp()).ok()
}

/// A BIT STRING's bits, which must be whole bytes.
fn bit_string(value: &[u8]) -> Option<&[u8]> {
    match value.split_first() {
        Some((0, bits)) => Some(bits),
        _ => None,
    }
}

/// The contents of a DER SEQUENCE (a Name, a SubjectPublicKeyInfo).
pub(crate) fn contents(whole: &[u8]) -> Option<&[u8]> {
    Tlv::read(whole, SEQUENCE).map(|(tlv, _)| tlv.value)
}

/// SubjectPublicKeyInfo contents: the algorithm identifier's contents and the key bits.
fn spki_parts(spki: &[u8]) -> Option<(&[u8], &[u8])> {
    let (algorithm, rest) = Tlv::read(spki, SEQUENCE)?;
    let (key, _) = Tlv::read(rest, BIT_STRING)?;
    Some((algorithm.value, bit_string(key.value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times_are_read() {
        assert_eq!(generalized_time(b"19700101000000Z"), Some(0));
        assert_eq!(generalized_time(b"20261204193000Z"), Some(1_796_412_600));
        assert_eq!(
            generalized_time(b"20261204193000.123Z"),
            Some(1_796_412_600)
        );
        for bad in [
            &b"20261204193000"[..],
            b"2026120419300Z",
            b"20261304193000Z",
            b"",
        ] {
            assert_eq!(generalized_time(bad), None, "{bad:?}");
        }
    }

    proptest::proptest! {
        // Bytes from a server never panic the parser, whatever they are.
        #[test]
        fn any_staple_is_judged_without_panicking(staple in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let algorithms = crate::crypto::provider().signature_verification_algorithms.all;
            let _ = stapled_status(&staple, &[], &[], algorithms, UnixTime::now());
            let _ = basic_response(&staple);
            let _ = single_status(&staple, &[1], UnixTime::now());
        }
    }

    #[test]
    fn garbage_is_not_a_response() {
        assert!(basic_response(b"").is_none());
        assert!(
            basic_response(&[0x30, 0x03, 0x0a, 0x01, 0x06]).is_none(),
            "unauthorized"
        );
        assert!(basic_response(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
