//! Bump (SPEC §2): be the client to the server and the server to the client. The phases
//! run in order, each with its own timeout: upstream TLS and verification, the policy on
//! certificate errors, minting the replacement, the client handshake, then HTTP/1.1 or
//! HTTP/2 — whichever the server selected — served to the client, each request relayed
//! upstream or answered with the block page.

mod client_side;
mod counting;
mod h1_link;
mod h2_settings;
mod http;
mod learn;
mod upstream;

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sluice_policy::CertErrorPolicy;
use sluice_tls::mint::Minter;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

pub(crate) use self::http::Route;
use self::http::UpstreamLink;
use self::http::{BumpedHttp, Mode, Redial};
use self::upstream::{Acceptance, HandshakeFailure, UpstreamStream, Verified, H2, HTTP11};
use crate::bump::counting::{ByteCounts, Counted};
use crate::context::Proxy;
use crate::dial::tls::AlpnOffer;
use crate::http::graceful::{until_drained, Graceful};
use crate::http::progress::{self, StreamTracker};
use crate::http::read_ahead::ReadAhead;
use crate::http::serve;
use crate::outcome::{Failure, Kind, Phase};
use crate::telemetry::access_log::Record;
use crate::telemetry::metrics::timed;

/// What the CONNECT flow learned, handed to bump.
pub struct BumpTarget<'a> {
    /// The CONNECT host.
    pub host: &'a str,
    /// The CONNECT host when it is an IP literal.
    pub connect_ip: Option<IpAddr>,
    pub port: u16,
    /// The server address the TCP connection reached; through a parent proxy only the
    /// CONNECT host's literal, if it is one (the parent resolved the name).
    pub dest_ip: Option<IpAddr>,
    /// How the server was reached, to reach it again.
    pub route: Route,
    pub sni: Option<&'a str>,
    /// The SNI is not one the CONNECT to an address vouches for (SPEC §1.3): it teaches
    /// no learned bypass either.
    pub sni_unverified: bool,
    pub client_alpn: &'a [Vec<u8>],
    /// The deciding rule's `cert_errors` override.
    pub cert_errors: Option<CertErrorPolicy>,
}

/// How the requests of the bumped connection will be answered, decided before the
/// client handshake.
enum Plan {
    Forward {
        upstream: Box<UpstreamStream>,
        /// The replacement must not be trusted (`on_cert_error = "untrusted"`).
        untrusted: bool,
        /// The protocol the server selected (none: HTTP/1.1).
        alpn: Option<Vec<u8>>,
    },
    /// Every request gets the block page of the failure; nothing reaches the server.
    Block { failure: Failure, detail: String },
}

pub async fn bump(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    client: TcpStream,
    held: Vec<u8>,
    upstream: TcpStream,
    target: &BumpTarget<'_>,
) {
    // The handshakes run in a future of their own, freed once they are done: their
    // state is large, and what serves the requests lives as long as the connection.
    let established = Box::pin(establish(proxy, record, client, held, upstream, target)).await;
    if let Some(established) = established {
        serve(proxy, record, target, established).await;
    }
}

/// A bumped connection whose handshakes are done, ready to serve HTTP.
struct Established {
    client_tls: tokio_rustls::server::TlsStream<ReadAhead<Counted<TcpStream>>>,
    counts: Arc<ByteCounts>,
    /// The ClientHello bytes read before the handshake (counted as `bytes_up`).
    held_len: u64,
    mode: Mode,
    client_h2: bool,
    /// The client may be offered WebSocket over HTTP/2 (RFC 8441).
    extended_connect: bool,
    /// The SNI, or the CONNECT host.
    server: String,
}

/// The bump's phases in SPEC order: upstream TLS and verification, the certificate
/// policy, the replacement certificate, the upstream HTTP connection, the client
/// handshake. `None`: the connection ends here (the record says why).
async fn establish(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    client: TcpStream,
    held: Vec<u8>,
    upstream: TcpStream,
    target: &BumpTarget<'_>,
) -> Option<Box<Established>> {
    let Some(server_name) = upstream_server_name(target) else {
        record.fail(&Kind::BadServerName.at(Phase::UpstreamTls));
        return None;
    };
    let policy = proxy
        .config
        .settings
        .tls
        .cert_error_policy(target.cert_errors);
    let server = target.sni.unwrap_or(target.host).to_string();
    let offer = AlpnOffer::from_client(target.client_alpn);
    let handshake = upstream::connect_tls(proxy, upstream, server_name.clone(), offer);
    let handshake = timed(&proxy.metrics, Phase::UpstreamTls, handshake).await;
    learn_from_handshake(proxy, target, &handshake).await;
    let (plan, leaf) = plan(proxy, record, &server, policy, handshake);
    let minting = mint(plan.minter(proxy), leaf.as_deref(), target);
    let certified = match timed(&proxy.metrics, Phase::Mint, minting).await {
        Ok(certified) => certified,
        Err(failure) => return fail(record, &failure),
    };
    let selected = plan.client_alpn(target.client_alpn);
    let untrusted = plan.untrusted();
    let redial = || Redial {
        proxy: proxy.clone(),
        route: target.route.clone(),
        server_name,
        alpn: offer,
        policy,
    };
    let mode = match plan.into_mode(redial).await {
        Ok(mode) => mode,
        Err(failure) => return fail(record, &failure),
    };
    let config = client_side::config(proxy, certified, selected, untrusted);
    let (client_tls, counts, held_len) =
        accept_client(proxy, record, target, client, held, config).await?;
    let served = Served {
        counts,
        held_len,
        server,
    };
    Some(established(proxy, record, client_tls, mode, served).await)
}

/// The client handshake phase against the replacement certificate, its bytes counted
/// from the held ClientHello on. `None`: it failed (the record says why); a client that
/// rejected the replacement teaches the learned bypass.
async fn accept_client(
    proxy: &Proxy,
    record: &mut Record,
    target: &BumpTarget<'_>,
    client: TcpStream,
    held: Vec<u8>,
    config: Arc<ServerConfig>,
) -> Option<(ClientTls, Arc<ByteCounts>, u64)> {
    let counts = Arc::new(ByteCounts::default());
    let held_len = held.len() as u64;
    let client_io = ReadAhead::with_prefix(held, Counted::new(client, counts.clone()));
    let timeout = proxy.config.settings.limits.client_hello_timeout;
    let accepting = client_tls(config, client_io, timeout);
    match timed(&proxy.metrics, Phase::ClientTls, accepting).await {
        Ok(tls) => Some((tls, counts, held_len)),
        Err(failure) => {
            if failure.kind == Kind::ClientRejectedCertificate {
                learn::client_rejected(proxy, record, target);
            }
            record_counts(record, &counts, held_len);
            fail(record, &failure)
        }
    }
}

/// The client leg of a bump: TLS over the client socket, its bytes counted.
type ClientTls = tokio_rustls::server::TlsStream<ReadAhead<Counted<TcpStream>>>;

/// The connection ends with `failure`.
fn fail<T>(record: &mut Record, failure: &Failure) -> Option<T> {
    record.fail(failure);
    None
}

/// A server that asked for a client certificate teaches the learned bypass (SPEC §1).
/// Its verification outcome is counted here too, whatever the policy does with it.
async fn learn_from_handshake(
    proxy: &Proxy,
    target: &BumpTarget<'_>,
    handshake: &Result<Verified, HandshakeFailure>,
) {
    // Some(whether the chain verified ok) when the server asked for a client certificate.
    let certificate_requested = match handshake {
        Err(failure) => failure.certificate_requested.then_some(failure.chain_ok),
        Ok(verified) => {
            if let Err(kind) = verified.outcome {
                proxy.metrics.upstream_cert_error(kind.as_str());
            }
            verified
                .certificate_requested
                .then_some(verified.outcome.is_ok())
        }
    };
    if let Some(chain_ok) = certificate_requested {
        learn::certificate_requested(proxy, target, chain_ok).await;
    }
}

/// The mint phase: the replacement certificate for the server's `leaf`, by the trusted
/// CA's minter or, under `on_cert_error = "untrusted"`, the untrusted one's.
async fn mint(
    minter: &Minter,
    leaf: Option<&[u8]>,
    target: &BumpTarget<'_>,
) -> Result<Arc<CertifiedKey>, Failure> {
    // Without SNI the client still expects the CONNECT name in the certificate.
    let name = target
        .sni
        .or(target.connect_ip.is_none().then_some(target.host));
    minter
        .certified_key(leaf, name, target.connect_ip)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, host = target.host, "minting a replacement certificate failed");
            Kind::MintFailed.at(Phase::Mint)
        })
}

/// The client TLS phase: the client's handshake with the replacement certificate,
/// within `timeout`.
async fn client_tls<IO>(
    config: Arc<ServerConfig>,
    client: IO,
    timeout: Duration,
) -> Result<tokio_rustls::server::TlsStream<IO>, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(client)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(e)) => Err(client_side::handshake_error(&e).at(Phase::ClientTls)),
        Err(_) => Err(Kind::ClientHandshakeTimeout.at(Phase::ClientTls)),
    }
}

/// What a served connection reports at its end.
struct Served {
    counts: Arc<ByteCounts>,
    /// The ClientHello bytes read before the handshake (counted as `bytes_up`).
    held_len: u64,
    /// The SNI, or the CONNECT host.
    server: String,
}

/// The handshakes are done: the record learns the client's TLS, and an HTTP/2 client
/// may be offered WebSocket if the server allows it.
async fn established(
    proxy: &Proxy,
    record: &mut Record,
    client_tls: ClientTls,
    mode: Mode,
    served: Served,
) -> Box<Established> {
    let session = client_tls.get_ref().1;
    record.tls_version = session.protocol_version().map(client_side::version_str);
    record.alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let client_h2 = session.alpn_protocol() == Some(H2);
    let extended_connect = match &mode {
        Mode::Forward(link) if client_h2 => {
            link.extended_connect(proxy.config.settings.limits.connect_timeout)
                .await
        }
        _ => false,
    };
    // Boxed: moved twice on its way to `serve`, it would otherwise take its size twice
    // in the connection's future for as long as the connection lasts.
    Box::new(Established {
        client_tls,
        counts: served.counts,
        held_len: served.held_len,
        mode,
        client_h2,
        extended_connect,
        server: served.server,
    })
}

impl Plan {
    /// The replacement must not be trusted (`on_cert_error = "untrusted"`).
    fn untrusted(&self) -> bool {
        matches!(
            self,
            Plan::Forward {
                untrusted: true,
                ..
            }
        )
    }

    /// Who mints the replacement: the untrusted CA when it must not be trusted.
    fn minter<'a>(&self, proxy: &'a Proxy) -> &'a Minter {
        if self.untrusted() {
            &proxy.untrusted_minter
        } else {
            &proxy.minter
        }
    }

    /// The protocol to select for the client: the server's (HTTP/1.1 without one); a
    /// blocked connection serves whichever the client offers.
    fn client_alpn<'a>(&self, offered: &'a [Vec<u8>]) -> Option<&'a [u8]> {
        match self {
            Plan::Forward { alpn, .. } => {
                client_side::select_alpn(offered, Some(alpn.as_deref().unwrap_or(HTTP11)))
            }
            Plan::Block { .. } => client_side::select_alpn(offered, None),
        }
    }

    /// How requests will be answered. The upstream HTTP connection opens before the
    /// client handshakes, so that the server's HTTP/2 SETTINGS are known by the time the
    /// client's connection starts.
    async fn into_mode(self, redial: impl FnOnce() -> Redial) -> Result<Mode, Failure> {
        match self {
            Plan::Block { failure, detail } => Ok(Mode::Block { failure, detail }),
            Plan::Forward { upstream, .. } => UpstreamLink::open(*upstream, redial())
                .await
                .map(Mode::Forward)
                .map_err(|e| {
                    let failure = Kind::UpstreamHttpFailed.at(Phase::FirstByte);
                    failure.with_detail(e.to_string())
                }),
        }
    }
}

/// Serve the client's HTTP/1.1 or HTTP/2 requests until the connection ends.
async fn serve(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    target: &BumpTarget<'_>,
    established: Box<Established>,
) {
    let Established {
        client_tls,
        counts,
        held_len,
        mode,
        client_h2,
        extended_connect,
        server,
    } = unbox(established);
    let bumped = Arc::new(bumped_http(proxy, record, target, &server, mode));
    let streams = StreamTracker::new();
    let tracked = streams.clone();
    let service = service_fn(move |request| {
        let bumped = bumped.clone();
        let stream = tracked.open();
        async move {
            let response = bumped.handle(request).await;
            Ok::<_, Infallible>(response.map(|body| progress::guarded(body, stream)))
        }
    });
    let limits = &proxy.config.settings.limits;
    let io = TokioIo::new(client_tls);
    let draining = proxy.draining.clone();
    let served = if client_h2 {
        let mut http2 = serve::client_http2(limits);
        if extended_connect {
            http2.enable_connect_protocol();
        }
        let connection = until_drained(http2.serve_connection(io, service), draining);
        // Closed with GOAWAY once it carries no stream for idle_timeout (SPEC §2.6);
        // streams still open then are served to their end.
        tokio::pin!(connection);
        tokio::select! {
            served = connection.as_mut() => served,
            () = streams.idle_for(limits.idle_timeout) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    } else {
        let connection = serve::client_http1(limits)
            .serve_connection(io, service)
            .with_upgrades();
        until_drained(connection, draining).await
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, server, "bumped connection ended with an error");
    }
    record_counts(record, &counts, held_len);
}

/// The HTTP side of a bumped connection, for the request hook.
fn bumped_http(
    proxy: &Arc<Proxy>,
    record: &Record,
    target: &BumpTarget<'_>,
    server: &str,
    mode: Mode,
) -> BumpedHttp {
    // An IPv6 CONNECT host needs its brackets back to be an authority.
    let host = if server.contains(':') {
        format!("[{server}]")
    } else {
        server.to_string()
    };
    let default_authority = match target.port {
        443 => host,
        port => format!("{host}:{port}"),
    };
    BumpedHttp {
        proxy: proxy.clone(),
        template: record.clone(),
        sni: target.sni.map(str::to_string),
        connect_host: target.host.to_string(),
        client: record
            .client
            .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        dest_ip: target.dest_ip,
        port: target.port,
        default_authority,
        mode,
    }
}

/// Moves the value out and frees the box now, not when the caller's scope ends (which
/// for `serve` is the end of the connection).
#[allow(clippy::boxed_local)]
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// Decide, from the upstream handshake, how requests will be answered; returns the
/// server's leaf for minting.
fn plan(
    proxy: &Proxy,
    record: &mut Record,
    server: &str,
    policy: CertErrorPolicy,
    handshake: Result<Verified, HandshakeFailure>,
) -> (Plan, Option<Vec<u8>>) {
    let verified = match handshake {
        Err(failure) => {
            tracing::warn!(
                server,
                detail = failure.detail,
                "upstream TLS handshake failed"
            );
            let tls_failed = failure.failure;
            record.fail(&tls_failed);
            let detail = if failure.certificate_requested {
                format!("{server} asks for a client certificate, which sluice cannot present.")
            } else {
                format!("The TLS handshake with {server} failed: {}", failure.detail)
            };
            let failure = tls_failed;
            return (Plan::Block { failure, detail }, None);
        }
        Ok(verified) => verified,
    };
    record.upstream_cert = Some(upstream::outcome_str(verified.outcome));
    if verified.certificate_requested {
        let failure = Kind::UpstreamTlsFailed.at(Phase::UpstreamTls);
        record.fail(&failure);
        let detail =
            format!("{server} asks for a client certificate, which sluice cannot present.");
        return (Plan::Block { failure, detail }, verified.leaf);
    }
    let plan = match upstream::accept(
        &proxy.config.settings.tls,
        verified.outcome,
        verified.leaf.as_deref(),
        policy,
    ) {
        acceptance @ (Acceptance::Trusted | Acceptance::Untrusted) => Plan::Forward {
            untrusted: matches!(acceptance, Acceptance::Untrusted),
            alpn: verified.alpn,
            upstream: Box::new(verified.stream),
        },
        Acceptance::Blocked(kind) => {
            let failure = Kind::CertError.at(Phase::UpstreamTls);
            record.fail(&failure);
            let detail = format!(
                "The certificate of {server} failed verification: {}.",
                kind.as_str()
            );
            Plan::Block { failure, detail }
        }
    };
    (plan, verified.leaf)
}

fn record_counts(record: &mut Record, counts: &ByteCounts, held: u64) {
    record.bytes_up = Some(held + counts.read.load(Ordering::Relaxed));
    record.bytes_down = Some(counts.written.load(Ordering::Relaxed));
}

/// The name sluice presents and verifies upstream: the client's SNI; without one, the
/// CONNECT IP (no SNI is sent) or the CONNECT host name.
fn upstream_server_name(target: &BumpTarget<'_>) -> Option<ServerName<'static>> {
    match (target.sni, target.connect_ip) {
        (Some(sni), _) => ServerName::try_from(sni.to_string()).ok(),
        (None, Some(ip)) => Some(ServerName::IpAddress(ip.into())),
        (None, None) => ServerName::try_from(target.host.to_string()).ok(),
    }
}

#[cfg(test)]
mod tests {
    //! The client TLS phase over an in-memory stream, with a server configuration of
    //! its own (no configuration generation, no proxy).

    use rustls::server::ResolvesServerCertUsingSni;
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn server_config() -> Arc<ServerConfig> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(ResolvesServerCertUsingSni::new()));
        Arc::new(config)
    }

    const LONG: Duration = Duration::from_secs(5);

    fn target<'a>(host: &'a str, sni: Option<&'a str>) -> BumpTarget<'a> {
        BumpTarget {
            host,
            connect_ip: host.parse().ok(),
            port: 443,
            dest_ip: None,
            route: Route::Direct("127.0.0.1:443".parse().unwrap()),
            sni,
            sni_unverified: false,
            client_alpn: &[],
            cert_errors: None,
        }
    }

    // The mint phase signs with the minter it is given (the chain sent is the leaf and
    // that minter's CA), for a name or, without SNI, for the CONNECT's address.
    #[tokio::test]
    async fn the_mint_phase_signs_with_the_minter_it_is_given() {
        use sluice_tls::ca::{CertificateAuthority, KeyKind};
        use sluice_tls::mint::LeafKeyKind;
        let ca = CertificateAuthority::generate("test CA", KeyKind::EcdsaP256).unwrap();
        let ca_der = ca.cert_der().to_vec();
        let minter = Minter::new(Arc::new(ca), LeafKeyKind::EcdsaP256, 10);
        for (host, sni) in [("bump.test", Some("bump.test")), ("192.0.2.1", None)] {
            let key = mint(&minter, None, &target(host, sni)).await.unwrap();
            assert_eq!(key.cert.len(), 2, "{host}");
            assert_eq!(key.cert[1].as_ref(), ca_der.as_slice(), "{host}");
        }
    }

    // A client that closes as soon as it sees the handshake begin is a pinning app
    // rejecting the certificate (SPEC §2.5).
    #[tokio::test]
    async fn a_client_that_hangs_up_rejected_the_certificate() {
        let (client, proxy_side) = tokio::io::duplex(1 << 16);
        drop(client);
        let Err(failure) = client_tls(server_config(), proxy_side, LONG).await else {
            panic!("no handshake");
        };
        assert_eq!(failure.kind, Kind::ClientRejectedCertificate);
        assert_eq!(failure.log_text(), "client_rejected_certificate");
    }

    // Bytes that are not TLS fail the handshake, which is not a rejection.
    #[tokio::test]
    async fn garbage_fails_the_client_handshake() {
        let (mut client, proxy_side) = tokio::io::duplex(1 << 16);
        client
            .write_all(b"\x16\x03\x01\x00\x05garbage and more garbage")
            .await
            .unwrap();
        let Err(failure) = client_tls(server_config(), proxy_side, LONG).await else {
            panic!("no handshake");
        };
        assert_eq!(failure.kind, Kind::ClientHandshakeFailed);
        assert_eq!(failure.phase, Phase::ClientTls);
    }

    // A tarpit: a client that says nothing ends the phase at its timeout.
    #[tokio::test]
    async fn a_silent_client_times_out() {
        let (_client, proxy_side) = tokio::io::duplex(1 << 16);
        let short = Duration::from_millis(50);
        let Err(failure) = client_tls(server_config(), proxy_side, short).await else {
            panic!("no handshake");
        };
        assert_eq!(failure.kind, Kind::ClientHandshakeTimeout);
    }
}
