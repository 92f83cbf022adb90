//! TLS to a server, for a bump: one client configuration per ALPN offer, each accepting
//! any chain during the handshake and recording what the server showed (its chain, its
//! OCSP staple, whether it asked for a client certificate), so that the chain is
//! classified by the policy before a byte is sent.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sluice_tls::verify::UpstreamVerifier;

pub(crate) const H2: &[u8] = b"h2";
pub(crate) const HTTP11: &[u8] = b"http/1.1";

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

    pub(crate) fn from_client(client_alpn: &[Vec<u8>]) -> Self {
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
    /// The verifier accepts any chain during the handshake and records it (with the
    /// staple and whether a client certificate was asked for), to be classified before a
    /// byte is sent.
    pub(crate) fn new(verifier: &UpstreamVerifier) -> Self {
        let mut base = (*verifier.client_config(Vec::new())).clone();
        base.client_auth_cert_resolver = Arc::new(CertificateRequestSeen);
        base.dangerous()
            .set_certificate_verifier(Arc::new(ChainSeen(verifier.handshake_verifier())));
        UpstreamConfigs(AlpnOffer::ALL.map(|offer| {
            let mut config = base.clone();
            config.alpn_protocols = offer.protocols();
            Arc::new(config)
        }))
    }

    pub(crate) fn get(&self, offer: AlpnOffer) -> Arc<ClientConfig> {
        self.0[offer as usize].clone()
    }
}

/// What the server showed during one handshake.
pub(crate) struct Seen {
    /// The server sent a CertificateRequest.
    pub certificate_requested: bool,
    /// The chain the server presented (leaf first); empty when it sent none.
    pub chain: Vec<CertificateDer<'static>>,
    /// The OCSP response the server stapled (empty when none).
    pub staple: Vec<u8>,
}

/// Run `handshake` (one made with an [`UpstreamConfigs`] configuration) and say what the
/// server showed during it, whether it completed or not.
pub(crate) async fn watching<F: Future>(handshake: F) -> (F::Output, Seen) {
    let seen = Arc::new(HandshakeSeen::default());
    let output = SEEN.scope(seen.clone(), handshake).await;
    let shown = Seen {
        certificate_requested: seen.certificate_requested.load(Ordering::Relaxed),
        chain: std::mem::take(&mut *lock(&seen.chain)),
        staple: std::mem::take(&mut *lock(&seen.staple)),
    };
    (output, shown)
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
struct CertificateRequestSeen;

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
struct ChainSeen(Arc<dyn ServerCertVerifier>);

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

#[cfg(test)]
mod tests {
    use super::*;

    // `UpstreamConfigs::get` indexes by the enum's value: `ALL` must list the offers in
    // that order, and each configuration must offer its own protocols.
    #[test]
    fn each_alpn_offer_gets_its_own_configuration() {
        let verifier = sluice_tls::verify::UpstreamVerifier::new(&[], &[]).unwrap();
        let configs = UpstreamConfigs::new(&verifier);
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
