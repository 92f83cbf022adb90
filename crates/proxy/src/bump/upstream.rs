//! The upstream leg of a bump: TLS to the server with the client's SNI and ALPN offer,
//! then the classification of the server's chain, and whether the server asked for a
//! client certificate (which sluice cannot provide: such names are learned as bypassed).

use std::io;

use rustls::pki_types::{ServerName, UnixTime};
use rustls::AlertDescription;
use sluice_policy::{CertAcceptance, CertErrorPolicy, TlsSettings, UpstreamCertFacts};
use sluice_tls::verify::{cert_sha256, CertErrorKind};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::context::Proxy;
use crate::dial::tls::{self, AlpnOffer};
use crate::http::read_ahead::ReadAhead;
use crate::outcome::{Failure, Kind, Phase};
use crate::telemetry::metrics::PhaseEnd;

pub(super) use crate::dial::tls::{H2, HTTP11};

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
    /// `upstream_tls_failed`, with the detail.
    pub failure: Failure,
    /// For the block page and the diagnostics.
    pub detail: String,
    pub certificate_requested: bool,
    /// The chain the server presented before the handshake failed verified `ok` (a
    /// TLS 1.2 server that demands a client certificate fails after its chain).
    pub chain_ok: bool,
}

impl PhaseEnd for Result<Verified, HandshakeFailure> {
    fn failure(&self) -> Option<&Failure> {
        self.as_ref().err().map(|failed| &failed.failure)
    }
}

/// TLS to the server (within `connect_timeout`), then the classification of its chain.
/// The handshake accepts any chain: nothing is sent before the policy saw the outcome.
pub(super) async fn connect_tls(
    proxy: &Proxy,
    tcp: TcpStream,
    server_name: ServerName<'static>,
    offer: AlpnOffer,
) -> Result<Verified, HandshakeFailure> {
    let connector = TlsConnector::from(proxy.upstream_tls.get(offer));
    let timeout = proxy.config.settings.limits.connect_timeout;
    let connecting = connector.connect(server_name.clone(), ReadAhead::new(tcp));
    let (result, seen) = tls::watching(tokio::time::timeout(timeout, connecting)).await;
    let certificate_requested = seen.certificate_requested;
    let failure = |detail: String| {
        let chain_ok = certificate_requested
            && !seen.chain.is_empty()
            && proxy
                .verifier
                .classify(&seen.chain, &server_name, UnixTime::now())
                .is_ok();
        HandshakeFailure {
            failure: Kind::UpstreamTlsFailed
                .at(Phase::UpstreamTls)
                .with_detail(detail.clone()),
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
    let outcome = proxy
        .issuers
        .classify(&proxy.verifier, certs, &server_name)
        .await
        .and_then(|()| {
            proxy
                .verifier
                .check_staple(certs, &seen.staple, UnixTime::now())
        });
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

/// The certificate-error policy's verdict on one verification outcome.
pub(super) enum Acceptance {
    Trusted,
    /// Go on, but with a replacement the client will not trust.
    Untrusted,
    Blocked(CertErrorKind),
}

/// The facts of `outcome` and the server's `leaf`, decided by the policy.
pub(super) fn accept(
    tls: &TlsSettings,
    outcome: Result<(), CertErrorKind>,
    leaf: Option<&[u8]>,
    policy: CertErrorPolicy,
) -> Acceptance {
    let facts = UpstreamCertFacts {
        chain_ok: outcome.is_ok(),
        // Hashed only when it can matter: a valid chain needs no pin.
        leaf_sha256: leaf.filter(|_| outcome.is_err()).map(cert_sha256),
        policy,
    };
    match (tls.accept_upstream(&facts), outcome) {
        (CertAcceptance::Blocked, Err(kind)) => Acceptance::Blocked(kind),
        (CertAcceptance::Untrusted, _) => Acceptance::Untrusted,
        (CertAcceptance::Trusted | CertAcceptance::Blocked, _) => Acceptance::Trusted,
    }
}

pub(super) fn outcome_str(outcome: Result<(), CertErrorKind>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(kind) => kind.as_str(),
    }
}
