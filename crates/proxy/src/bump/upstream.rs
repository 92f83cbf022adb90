//! The upstream leg of a bump: TLS to the server with the client's SNI and ALPN offer,
//! then the classification of the server's chain, and whether the server asked for a
//! client certificate (which sluice cannot provide: such names are learned as bypassed).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ClientConfig, DigitallySignedStruct, SignatureScheme};
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
    /// The chain the server presented before the handshake failed verified `ok` (a
    /// TLS 1.2 server that demands a client certificate fails after its chain).
    pub chain_ok: bool,
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
    let seen = Arc::new(HandshakeSeen::default());
    let connector = TlsConnector::from(proxy.upstream_tls.get(offer));
    let timeout = proxy.config.settings.limits.connect_timeout;
    let connecting = connector.connect(server_name.clone(), ReadAhead::new(tcp));
    let result = SEEN
        .scope(seen.clone(), tokio::time::timeout(timeout, connecting))
        .await;
    let certificate_requested = seen.certificate_requested.load(Ordering::Relaxed);
    let failure = |detail: String| {
        let chain = std::mem::take(&mut *lock(&seen.chain));
        let chain_ok = certificate_requested
            && !chain.is_empty()
            && proxy
                .verifier
                .classify(&chain, &server_name, UnixTime::now())
                .is_ok();
        HandshakeFailure {
            detail,
            certificate_requested,
            chain_ok,
        }
    };
    let stream = match result {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(failure(describe_failure(&e))),
        Err(_) => {
            return Err(failure(format!(
                "the server did not finish the TLS handshake within {} s",
                timeout.as_secs()
            )))
        }
    };
    let session = stream.get_ref().1;
    let certs = session.peer_certificates().unwrap_or_default();
    let staple = std::mem::take(&mut *lock(&seen.staple));
    let outcome = proxy
        .issuers
        .classify(&proxy.verifier, certs, &server_name)
        .await
        .and_then(|()| proxy.verifier.check_staple(certs, &staple, UnixTime::now()));
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

/// What one upstream handshake showed before it completed or failed.
#[derive(Default)]
struct HandshakeSeen {
    /// The server sent a CertificateRequest.
    certificate_requested: AtomicBool,
    /// The chain the server presented (leaf first).
    chain: Mutex<Vec<CertificateDer<'static>>>,
    /// The OCSP response the server stapled (empty when none).
    staple: Mutex<Vec<u8>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

tokio::task_local! {
    /// Set while one upstream handshake runs: rustls calls the client-certificate
    /// resolver and the certificate verifier from inside that handshake's task.
    static SEEN: Arc<HandshakeSeen>;
}

/// Records, for the handshake running in this task, that the server sent a
/// CertificateRequest, and answers with no certificate. One instance serves every
/// connection: rustls resumes a session only with the resolver that made it.
#[derive(Debug)]
pub(crate) struct CertificateRequestSeen;

impl ResolvesClientCert for CertificateRequestSeen {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let _ = SEEN.try_with(|seen| seen.certificate_requested.store(true, Ordering::Relaxed));
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The accept-then-classify verifier, keeping the chain presented for the handshake
/// running in this task: a handshake that fails after it (a TLS 1.2 server that demands
/// a client certificate) can still be classified, for the learned bypass.
#[derive(Debug)]
pub(crate) struct ChainSeen(pub(crate) Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for ChainSeen {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let _ = SEEN.try_with(|seen| {
            *lock(&seen.chain) = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|cert| cert.clone().into_owned())
                .collect();
            *lock(&seen.staple) = ocsp_response.to_vec();
        });
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
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
        let verifier = sluice_tls::verify::UpstreamVerifier::new(&[], &[]).unwrap();
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
