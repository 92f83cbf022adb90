//! The upstream leg of a bump: TLS to the server with the client's SNI and ALPN offer,
//! then the classification of the server's chain, and whether the server asked for a
//! client certificate (which sluice cannot provide: such names are learned as bypassed).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, SignatureScheme};
use sluice_policy::CertErrorPolicy;
use sluice_tls::verify::{cert_sha256, CertErrorKind};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::context::Proxy;
use crate::read_ahead::ReadAhead;

pub(super) const H2: &[u8] = b"h2";
pub(super) const HTTP11: &[u8] = b"http/1.1";

/// The TLS connection to the server.
pub(super) type UpstreamStream = TlsStream<ReadAhead<TcpStream>>;

/// A completed upstream handshake, not yet judged.
pub(super) struct Verified {
    pub stream: UpstreamStream,
    pub outcome: Result<(), CertErrorKind>,
    pub leaf: Option<Vec<u8>>,
    /// The protocol the server selected.
    pub alpn: Option<Vec<u8>>,
    pub certificate_requested: bool,
}

pub(super) struct HandshakeFailure {
    /// For the block page and the diagnostics.
    pub detail: String,
    pub certificate_requested: bool,
}

/// What sluice offers upstream (SPEC §2.1): the client's offer ∩ {h2, http/1.1}, in the
/// client's order; just http/1.1 when that leaves nothing. There are four such offers,
/// so each has its TLS configuration built once ([`UpstreamConfigs`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AlpnOffer {
    Http11,
    H2,
    H2ThenHttp11,
    Http11ThenH2,
}

impl AlpnOffer {
    const ALL: [AlpnOffer; 4] = [
        AlpnOffer::Http11,
        AlpnOffer::H2,
        AlpnOffer::H2ThenHttp11,
        AlpnOffer::Http11ThenH2,
    ];

    pub(super) fn from_client(client_alpn: &[Vec<u8>]) -> Self {
        let mut wanted = client_alpn.iter().filter_map(|p| match p.as_slice() {
            H2 => Some(AlpnOffer::H2),
            HTTP11 => Some(AlpnOffer::Http11),
            _ => None,
        });
        let first = wanted.next();
        let second = wanted.find(|p| Some(*p) != first);
        match (first, second) {
            (None, _) => AlpnOffer::Http11,
            (Some(AlpnOffer::H2), Some(_)) => AlpnOffer::H2ThenHttp11,
            (Some(_), Some(_)) => AlpnOffer::Http11ThenH2,
            (Some(only), None) => only,
        }
    }

    fn protocols(self) -> Vec<Vec<u8>> {
        let protocols: &[&[u8]] = match self {
            AlpnOffer::Http11 => &[HTTP11],
            AlpnOffer::H2 => &[H2],
            AlpnOffer::H2ThenHttp11 => &[H2, HTTP11],
            AlpnOffer::Http11ThenH2 => &[HTTP11, H2],
        };
        protocols.iter().map(|p| p.to_vec()).collect()
    }
}

/// The upstream TLS client configurations, one per [`AlpnOffer`]. They share the session
/// cache, the verifier and the client-certificate resolver, so a session made under one
/// offer resumes under another.
pub(crate) struct UpstreamConfigs([Arc<ClientConfig>; 4]);

impl UpstreamConfigs {
    pub(crate) fn new(base: &ClientConfig) -> Self {
        UpstreamConfigs(AlpnOffer::ALL.map(|offer| {
            let mut config = base.clone();
            config.alpn_protocols = offer.protocols();
            Arc::new(config)
        }))
    }

    fn get(&self, offer: AlpnOffer) -> Arc<ClientConfig> {
        self.0[offer as usize].clone()
    }
}

/// TLS to the server (within `connect_timeout`), then the classification of its chain.
/// The handshake accepts any chain: nothing is sent before the policy saw the outcome.
pub(super) async fn handshake(
    proxy: &Proxy,
    tcp: TcpStream,
    server_name: ServerName<'static>,
    offer: AlpnOffer,
) -> Result<Verified, HandshakeFailure> {
    let requested = Arc::new(AtomicBool::new(false));
    let connector = TlsConnector::from(proxy.upstream_tls.get(offer));
    let timeout = proxy.config.settings.limits.connect_timeout;
    let connecting = connector.connect(server_name.clone(), ReadAhead::new(tcp));
    let result = CERTIFICATE_REQUESTED
        .scope(requested.clone(), tokio::time::timeout(timeout, connecting))
        .await;
    let certificate_requested = requested.load(Ordering::Relaxed);
    let stream = match result {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(HandshakeFailure {
                detail: describe_failure(&e),
                certificate_requested,
            })
        }
        Err(_) => {
            return Err(HandshakeFailure {
                detail: format!(
                    "the server did not finish the TLS handshake within {} s",
                    timeout.as_secs()
                ),
                certificate_requested,
            })
        }
    };
    let session = stream.get_ref().1;
    let certs = session.peer_certificates().unwrap_or_default();
    let outcome = proxy
        .verifier
        .classify(certs, &server_name, UnixTime::now());
    Ok(Verified {
        leaf: certs.first().map(|c| c.as_ref().to_vec()),
        alpn: session.alpn_protocol().map(<[u8]>::to_vec),
        outcome,
        certificate_requested,
        stream,
    })
}

/// Explain a failed upstream handshake in words an administrator can act on.
fn describe_failure(e: &io::Error) -> String {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(
            rustls::Error::PeerIncompatible(_)
            | rustls::Error::AlertReceived(
                AlertDescription::ProtocolVersion
                | AlertDescription::InsufficientSecurity
                | AlertDescription::HandshakeFailure,
            ),
        ) => format!(
            "the server offers no TLS version and cipher suite that sluice accepts \
             (TLS 1.2 or 1.3 with forward secrecy; TLS 1.0 and 1.1 are never used): {e}"
        ),
        _ => e.to_string(),
    }
}

tokio::task_local! {
    /// Set while one upstream handshake runs: rustls calls the client-certificate
    /// resolver from inside that handshake's task.
    static CERTIFICATE_REQUESTED: Arc<AtomicBool>;
}

/// Records, for the handshake running in this task, that the server sent a
/// CertificateRequest, and answers with no certificate. One instance serves every
/// connection: rustls resumes a session only with the resolver that made it.
#[derive(Debug)]
pub(crate) struct CertificateRequestSeen;

impl ResolvesClientCert for CertificateRequestSeen {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let _ =
            CERTIFICATE_REQUESTED.try_with(|requested| requested.store(true, Ordering::Relaxed));
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The certificate-error policy's verdict on one verification outcome.
pub(super) enum Acceptance {
    Trusted,
    /// Go on, but with a replacement the client will not trust.
    Untrusted,
    Blocked(CertErrorKind),
}

pub(super) fn accept(
    proxy: &Proxy,
    outcome: Result<(), CertErrorKind>,
    leaf: Option<&[u8]>,
    policy: CertErrorPolicy,
) -> Acceptance {
    let Err(kind) = outcome else {
        return Acceptance::Trusted;
    };
    let pinned = leaf.is_some_and(|der| proxy.trusted_server_certs.contains(&cert_sha256(der)));
    match policy {
        _ if pinned => Acceptance::Trusted,
        CertErrorPolicy::Allow => Acceptance::Trusted,
        CertErrorPolicy::Untrusted => Acceptance::Untrusted,
        CertErrorPolicy::Block => Acceptance::Blocked(kind),
    }
}

pub(super) fn outcome_str(outcome: Result<(), CertErrorKind>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(kind) => kind.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `UpstreamConfigs::get` indexes by the enum's value: `ALL` must list the offers in
    // that order, and each configuration must offer its own protocols.
    #[test]
    fn each_alpn_offer_gets_its_own_configuration() {
        let verifier = sluice_tls::verify::UpstreamVerifier::new(&[]).unwrap();
        let configs = UpstreamConfigs::new(&verifier.client_config(Vec::new()));
        for (index, offer) in AlpnOffer::ALL.into_iter().enumerate() {
            assert_eq!(offer as usize, index, "{offer:?}");
            assert_eq!(
                configs.get(offer).alpn_protocols,
                offer.protocols(),
                "{offer:?}"
            );
        }
    }

    #[test]
    fn the_alpn_offer_keeps_h2_and_http11_in_the_clients_order() {
        let offer = |client: &[&[u8]]| {
            AlpnOffer::from_client(&client.iter().map(|p| p.to_vec()).collect::<Vec<_>>())
                .protocols()
        };
        assert_eq!(
            offer(&[b"h2", b"http/1.1"]),
            vec![H2.to_vec(), HTTP11.to_vec()]
        );
        assert_eq!(
            offer(&[b"http/1.1", b"spdy/3", b"h2"]),
            vec![HTTP11.to_vec(), H2.to_vec()]
        );
        assert_eq!(offer(&[b"h2", b"h2"]), vec![H2.to_vec()]);
        assert_eq!(offer(&[b"acme-tls/1", b"http/1.1"]), vec![HTTP11.to_vec()]);
        assert_eq!(offer(&[]), vec![HTTP11.to_vec()]);
        assert_eq!(offer(&[b"acme-tls/1"]), vec![HTTP11.to_vec()]);
    }
}
