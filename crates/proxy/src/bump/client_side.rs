//! The client leg of a bump: sluice's TLS server with the minted certificate, the ALPN
//! protocol the server selected, and session resumption shared by every certificate of
//! the same CA so that a returning client costs no full handshake (never across the
//! trusted and the untrusted CA).

use std::io;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ProtocolVersion, ServerConfig};

use crate::context::Proxy;
use crate::outcome::Kind;

/// Serves the one minted certificate of this connection.
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// TLS 1.2/1.3 with rustls' defaults: AEAD, forward-secret suites only (SPEC §2.7).
/// `alpn`: the one protocol to select, if any. `untrusted`: the certificate comes from
/// the untrusted CA, whose sessions are kept apart.
pub(super) fn config(
    proxy: &Proxy,
    certified: Arc<CertifiedKey>,
    alpn: Option<&[u8]>,
    untrusted: bool,
) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(proxy.crypto.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(certified)));
    config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
    let resumption = if untrusted {
        &proxy.untrusted_resumption
    } else {
        &proxy.trusted_resumption
    };
    config.ticketer = resumption.tickets.clone();
    config.session_storage = resumption.sessions.clone();
    Arc::new(config)
}

/// The protocol to select with the client: what the server selected, when the client
/// offered it. Without an upstream (a block page), http/1.1 if offered, else h2.
pub(super) fn select_alpn<'a>(
    client_offer: &'a [Vec<u8>],
    upstream: Option<&[u8]>,
) -> Option<&'a [u8]> {
    let offered = |p: &[u8]| {
        client_offer
            .iter()
            .find(|o| o.as_slice() == p)
            .map(Vec::as_slice)
    };
    match upstream {
        Some(selected) => offered(selected),
        None => offered(super::upstream::HTTP11).or_else(|| offered(super::upstream::H2)),
    }
}

/// What kind of failure a failed client handshake is.
pub(super) fn handshake_error(e: &io::Error) -> Kind {
    let alert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match alert {
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown,
        )) => Kind::ClientRejectedCertificate,
        Some(_) => Kind::ClientHandshakeFailed,
        // A reset or a close in the middle of the handshake: typical of pinning apps.
        None => match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe => Kind::ClientRejectedCertificate,
            _ => Kind::ClientHandshakeFailed,
        },
    }
}

pub(super) fn version_str(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_gets_what_the_server_selected_if_it_offered_it() {
        let offer = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        assert_eq!(select_alpn(&offer, Some(b"h2")), Some(&b"h2"[..]));
        assert_eq!(
            select_alpn(&offer, Some(b"http/1.1")),
            Some(&b"http/1.1"[..])
        );
        assert_eq!(select_alpn(&[b"h2".to_vec()], Some(b"http/1.1")), None);
        assert_eq!(select_alpn(&offer, None), Some(&b"http/1.1"[..]));
        assert_eq!(select_alpn(&[b"h2".to_vec()], None), Some(&b"h2"[..]));
        assert_eq!(select_alpn(&[], None), None);
    }
}
