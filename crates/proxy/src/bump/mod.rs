//! Bump (SPEC §2): be the client to the server and the server to the client. The phases
//! run in order, each with its own timeout: upstream TLS and verification, the policy on
//! certificate errors, minting the replacement, the client handshake, then HTTP/1.1 or
//! HTTP/2 — whichever the server selected — served to the client, each request relayed
//! upstream or answered with the block page.

mod client_side;
mod h1_link;
mod h2_settings;
mod http;
mod learn;
mod upstream;

pub(crate) use self::upstream::{CertificateRequestSeen, ChainSeen, UpstreamConfigs};

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use sluice_policy::CertErrorPolicy;
use sluice_tls::mint::Minter;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

pub(crate) use self::http::Route;
pub(crate) use self::http::UpstreamLink;
use self::http::{BumpedHttp, Mode, Redial};
use self::upstream::{
    Acceptance, AlpnOffer, HandshakeFailure, UpstreamStream, Verified, H2, HTTP11,
};
use crate::access_log::Record;
use crate::block_page::BlockReason;
use crate::context::Proxy;
use crate::counting::{ByteCounts, Counted};
use crate::forward;
use crate::graceful::{until_drained, Graceful};
use crate::metrics::Phase;
use crate::progress::{self, StreamTracker};
use crate::read_ahead::ReadAhead;

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
    /// Every request gets the block page; nothing reaches the server.
    Block { reason: BlockReason, detail: String },
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

/// Upstream TLS, the certificate policy, the replacement certificate and the client
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
        record.error = Some("bad_server_name".into());
        return None;
    };
    let policy = target
        .cert_errors
        .unwrap_or(proxy.config.settings.tls.on_cert_error);
    let server = target.sni.unwrap_or(target.host).to_string();
    let offer = AlpnOffer::from_client(target.client_alpn);

    let started = Instant::now();
    let handshake = upstream::handshake(proxy, upstream, server_name.clone(), offer).await;
    proxy.metrics.phase(Phase::UpstreamTls, started.elapsed());
    match &handshake {
        Err(_) => proxy.metrics.handshake_failure("upstream", "handshake"),
        Ok(verified) => {
            if let Err(kind) = verified.outcome {
                proxy.metrics.handshake_failure("upstream", kind.as_str());
            }
        }
    }
    // Some(whether the chain verified ok) when the server asked for a client certificate.
    let certificate_requested = match &handshake {
        Err(failure) => failure.certificate_requested.then_some(failure.chain_ok),
        Ok(verified) => verified
            .certificate_requested
            .then_some(verified.outcome.is_ok()),
    };
    let (plan, leaf) = plan(proxy, record, &server, policy, handshake);
    if let Some(chain_ok) = certificate_requested {
        learn::certificate_requested(proxy, target, chain_ok).await;
    }

    let untrusted = matches!(
        plan,
        Plan::Forward {
            untrusted: true,
            ..
        }
    );
    let minter: &Minter = if untrusted {
        &proxy.untrusted_minter
    } else {
        &proxy.minter
    };
    // Without SNI the client still expects the CONNECT name in the certificate.
    let name = target
        .sni
        .or(target.connect_ip.is_none().then_some(target.host));
    let minting = Instant::now();
    let minted = minter
        .certified_key(leaf.as_deref(), name, target.connect_ip)
        .await;
    proxy.metrics.phase(Phase::Mint, minting.elapsed());
    let certified = match minted {
        Ok(certified) => certified,
        Err(e) => {
            tracing::error!(error = %e, server, "minting a replacement certificate failed");
            record.error = Some("mint_failed".into());
            return None;
        }
    };

    let selected = match &plan {
        Plan::Forward { alpn, .. } => {
            client_side::select_alpn(target.client_alpn, Some(alpn.as_deref().unwrap_or(HTTP11)))
        }
        Plan::Block { .. } => client_side::select_alpn(target.client_alpn, None),
    };
    // The upstream HTTP connection opens while the client handshakes, so that the
    // server's HTTP/2 SETTINGS are known by the time the client's connection starts.
    let mode = match plan {
        Plan::Block { reason, detail } => Mode::Block { reason, detail },
        Plan::Forward { upstream, .. } => {
            let redial = Redial {
                proxy: proxy.clone(),
                route: target.route.clone(),
                server_name,
                alpn: offer,
                policy,
            };
            match UpstreamLink::open(*upstream, redial).await {
                Ok(link) => Mode::Forward(link),
                Err(e) => {
                    record.error = Some(format!("upstream_http_failed: {e}"));
                    return None;
                }
            }
        }
    };

    let counts = Arc::new(ByteCounts::default());
    let held_len = held.len() as u64;
    let client_io = ReadAhead::with_prefix(held, Counted::new(client, counts.clone()));
    let config = client_side::config(proxy, certified, selected, untrusted);
    let timeout = proxy.config.settings.limits.client_hello_timeout;
    let accepting = Instant::now();
    let accepted = tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(client_io)).await;
    proxy.metrics.phase(Phase::ClientTls, accepting.elapsed());
    let client_tls = match accepted {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let error = client_side::handshake_error(&e);
            let kind = if error == client_side::REJECTED {
                error
            } else {
                "handshake"
            };
            proxy.metrics.handshake_failure("client", kind);
            if error == client_side::REJECTED {
                learn::client_rejected(proxy, record, target);
            }
            record.error = Some(error.into());
            record_counts(record, &counts, held_len);
            return None;
        }
        Err(_) => {
            record.error = Some("client_handshake_timeout".into());
            record_counts(record, &counts, held_len);
            return None;
        }
    };
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
    Some(Box::new(Established {
        client_tls,
        counts,
        held_len,
        mode,
        client_h2,
        extended_connect,
        server,
    }))
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
    // An IPv6 CONNECT host needs its brackets back to be an authority.
    let host = if server.contains(':') {
        format!("[{server}]")
    } else {
        server.clone()
    };
    let default_authority = match target.port {
        443 => host,
        port => format!("{host}:{port}"),
    };
    let bumped = Arc::new(BumpedHttp {
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
    });
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
        let mut http2 = forward::client_http2(limits);
        if extended_connect {
            http2.enable_connect_protocol();
        }
        let connection = http2.serve_connection(io, service);
        let connection = until_drained(connection, draining);
        tokio::pin!(connection);
        // Closed with GOAWAY once it carries no stream for idle_timeout (SPEC §2.6);
        // streams still open then are served to their end.
        tokio::select! {
            served = connection.as_mut() => served,
            () = streams.idle_for(limits.idle_timeout) => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        }
    } else {
        let connection = forward::client_http1(limits)
            .serve_connection(io, service)
            .with_upgrades();
        until_drained(connection, draining).await
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, server, "bumped connection ended with an error");
    }
    record_counts(record, &counts, held_len);
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
            record.error = Some("upstream_tls_failed".into());
            let detail = if failure.certificate_requested {
                format!("{server} asks for a client certificate, which sluice cannot present.")
            } else {
                format!("The TLS handshake with {server} failed: {}", failure.detail)
            };
            let reason = BlockReason::UpstreamTlsFailed;
            return (Plan::Block { reason, detail }, None);
        }
        Ok(verified) => verified,
    };
    record.upstream_cert = Some(upstream::outcome_str(verified.outcome));
    if verified.certificate_requested {
        record.error = Some("upstream_tls_failed".into());
        let detail =
            format!("{server} asks for a client certificate, which sluice cannot present.");
        let reason = BlockReason::UpstreamTlsFailed;
        return (Plan::Block { reason, detail }, verified.leaf);
    }
    let plan = match upstream::accept(proxy, verified.outcome, verified.leaf.as_deref(), policy) {
        acceptance @ (Acceptance::Trusted | Acceptance::Untrusted) => Plan::Forward {
            untrusted: matches!(acceptance, Acceptance::Untrusted),
            alpn: verified.alpn,
            upstream: Box::new(verified.stream),
        },
        Acceptance::Blocked(kind) => {
            record.error = Some("cert_error".into());
            let detail = format!(
                "The certificate of {server} failed verification: {}.",
                kind.as_str()
            );
            Plan::Block {
                reason: BlockReason::CertError,
                detail,
            }
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
