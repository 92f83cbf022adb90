//! HTTP inside a bump: one request hook for HTTP/1.1 and HTTP/2 alike. Each request's
//! framing and authority are checked, the authority against the SNI (domain fronting,
//! [`decide_host`]), then it is relayed to the server over the one
//! upstream connection of this bump (re-opened and re-verified if the server closes it),
//! or answered with the block page. WebSocket upgrades become a raw relay after `101`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::header::HOST;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use sluice_policy::{decide_host, CertErrorPolicy, HostDecision, HostFacts, Limits, UpstreamProxy};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::h1_link::{H1Link, NeedsConnection};
use super::h2_settings::{watch_settings, ExtendedConnect};
use super::upstream::{self, Acceptance, UpstreamStream, H2};
use crate::body::{boxed, ProxyBody};
use crate::context::Proxy;
use crate::dial::tls::AlpnOffer;
use crate::http::exchange::exchange;
use crate::http::inspection::RequestInfo;
use crate::http::respond::Block;
use crate::http::send::{Sent, Upstream, UpstreamFailure};
use crate::http::{message, respond};
use crate::outcome::block_page::BlockReason;
use crate::outcome::Failure;
use crate::telemetry::access_log::Record;

/// How the requests of a bumped connection are answered.
pub(super) enum Mode {
    Forward(UpstreamLink),
    /// Every request gets the block page of `failure`, saying `detail`.
    Block {
        failure: Failure,
        detail: String,
    },
}

/// The HTTP side of one bumped connection.
pub(super) struct BumpedHttp {
    pub proxy: Arc<Proxy>,
    /// The connect record so far: per-request records copy its connection fields.
    pub template: Record,
    /// The SNI and the CONNECT host, for the domain-fronting check.
    pub sni: Option<String>,
    pub connect_host: String,
    /// For the HTTP rules: the client, and the server the connection reached.
    pub client: IpAddr,
    pub dest_ip: Option<IpAddr>,
    pub port: u16,
    /// `host[:port]` for requests that name no authority.
    pub default_authority: String,
    pub mode: Mode,
}

impl BumpedHttp {
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let decision = self.decide_host(&request);
        let authority = match &decision {
            Ok(HostDecision::Forward(authority) | HostDecision::Misdirected(authority)) => {
                authority.to_string()
            }
            _ => self.default_authority.clone(),
        };
        let url = message::absolute_url("https", &authority, &path);
        let record = respond::http_record(&self.template, &request, url.clone());
        let link = match &self.mode {
            Mode::Block { failure, detail } => {
                // Only failures that have a block page make a blocking bump.
                let reason = failure
                    .kind
                    .block_reason()
                    .unwrap_or(BlockReason::CertError);
                return self.block(record, &url, reason, detail, StatusCode::BAD_GATEWAY);
            }
            Mode::Forward(link) => link,
        };
        let (host, record) = match self.host(decision, record, &url) {
            Ok(host) => host,
            Err(answered) => return answered,
        };
        let info = RequestInfo::new(
            &request,
            self.client,
            self.template.user.clone(),
            Some(host),
            self.dest_ip,
            self.port,
            url,
        )
        .with_groups(self.template.groups.clone());
        let upstream = ToServer {
            link,
            authority: &authority,
            path: &path,
        };
        // Boxed: the exchange's state is large, and HTTP/1.1 connections keep room for
        // this future while they wait for the next request.
        Box::pin(exchange(&self.proxy, record, info, request, upstream)).await
    }

    /// The host the request is for, or the answer to a request for another host than
    /// the TLS connection's (421 block page) or a bad one (400).
    // The answer is returned to hyper at once, never held or passed along.
    #[allow(clippy::result_large_err)]
    fn host(
        &self,
        decision: Result<HostDecision, &'static str>,
        record: Record,
        url: &str,
    ) -> Result<(String, Record), Response<ProxyBody>> {
        match decision {
            Ok(HostDecision::Forward(authority)) => Ok((authority.host, record)),
            Ok(HostDecision::Misdirected(authority)) => {
                let detail = format!(
                    "The request names {}, but the secure connection was opened for {} (domain fronting).",
                    authority.host,
                    self.tls_name()
                );
                let status = StatusCode::MISDIRECTED_REQUEST;
                Err(self.block(record, url, BlockReason::HostMismatch, &detail, status))
            }
            Ok(HostDecision::BadRequest(error)) => Err(self.bad_request(record, error.as_str())),
            Err(kind) => Err(self.bad_request(record, kind)),
        }
    }

    /// The block page, naming the connection's deciding rule.
    fn block(
        &self,
        record: Record,
        url: &str,
        reason: BlockReason,
        detail: &str,
        status: StatusCode,
    ) -> Response<ProxyBody> {
        let rule = self.template.rule.as_deref().unwrap_or("default");
        let page = Block {
            reason,
            status,
            detail,
            url,
            rule,
        };
        respond::block(&self.proxy, record, page)
    }

    fn bad_request(&self, record: Record, reason: &'static str) -> Response<ProxyBody> {
        respond::bad_request(&self.proxy.log, record, reason)
    }

    /// The name the client's TLS connection was opened for: the SNI, or without one the
    /// CONNECT host (SPEC §2.6).
    fn tls_name(&self) -> &str {
        self.sni.as_deref().unwrap_or(&self.connect_host)
    }

    /// The framing checks of every request (SPEC §9), then which authority the request
    /// is for and whether it is the TLS connection's (§2.6). `Err`: the framing reason.
    fn decide_host<B>(&self, request: &Request<B>) -> Result<HostDecision, &'static str> {
        message::check_framing(request)?;
        let hosts = message::host_headers(request);
        Ok(decide_host(&HostFacts {
            target: request.uri().authority().map(|a| a.as_str()),
            host_headers: &hosts,
            default_port: 443,
            tls_name: Some(self.tls_name()),
            on_mismatch: self.proxy.config.settings.tls.on_host_mismatch,
            implied: Some(&self.default_authority),
        }))
    }
}

/// The server's side of the link, in the protocol it selected.
enum Link {
    H1(H1Link),
    H2(http2::SendRequest<ProxyBody>),
}

/// One request's way to the server: over the bump's link, with the request's
/// authority and path put in the form the link's protocol needs.
struct ToServer<'a> {
    link: &'a UpstreamLink,
    authority: &'a str,
    path: &'a str,
}

impl Upstream for ToServer<'_> {
    async fn send(self, request: Request<ProxyBody>) -> Sent {
        let sent = self.link.send(request, self.authority, self.path).await;
        sent.map_err(|why| UpstreamFailure::request_failed(StatusCode::BAD_GATEWAY, why))
    }
}

/// The connection to the server, HTTP/1.1 or HTTP/2 as the server selected.
pub(crate) struct UpstreamLink {
    /// `None` after a failed redial; the next request tries again.
    link: Mutex<Option<Link>>,
    /// Whether the HTTP/2 server allows extended CONNECT (RFC 8441); `None` for HTTP/1.1.
    extended_connect: Option<ExtendedConnect>,
    redial: Redial,
}

/// What it takes to open the upstream connection again.
pub(super) struct Redial {
    pub proxy: Arc<Proxy>,
    pub route: Route,
    pub server_name: ServerName<'static>,
    pub alpn: AlpnOffer,
    pub policy: CertErrorPolicy,
}

impl UpstreamLink {
    pub(super) async fn open(stream: UpstreamStream, redial: Redial) -> Result<Self, String> {
        let (link, extended_connect) =
            open_http(stream, &redial.proxy.config.settings.limits).await?;
        Ok(UpstreamLink {
            link: Mutex::new(Some(link)),
            extended_connect,
            redial,
        })
    }

    /// May the client be offered WebSocket over HTTP/2 (RFC 8441)? Only when the server
    /// offers it to us: waits (at most `timeout`) for the server's SETTINGS, which every
    /// HTTP/2 server sends first and which have usually arrived already.
    pub(super) async fn extended_connect(&self, timeout: Duration) -> bool {
        let Some(mut verdict) = self.extended_connect.clone() else {
            return false;
        };
        let settled = tokio::time::timeout(timeout, verdict.wait_for(Option::is_some)).await;
        matches!(settled, Ok(Ok(allowed)) if *allowed == Some(true))
    }

    /// Send one request in the form the upstream protocol needs. HTTP/2 requests are
    /// multiplexed; HTTP/1.1 ones wait for the previous exchange to end. A connection
    /// the server closed is opened again (and its certificate judged again).
    async fn send(
        &self,
        request: Request<ProxyBody>,
        authority: &str,
        path: &str,
    ) -> Result<Response<ProxyBody>, String> {
        let mut slot = self.link.lock().await;
        let mut request = request;
        // The connection as it is, then (if it cannot carry the request) a new one.
        for attempt in 0..2 {
            if attempt == 1 || slot.is_none() {
                *slot = None;
                let (link, _) = self.redial.connect().await?;
                *slot = Some(link);
            }
            match slot.as_mut() {
                Some(Link::H2(sender)) if !sender.is_closed() => {
                    let mut sender = sender.clone();
                    drop(slot);
                    to_http2(&mut request, authority, path)?;
                    let failed = |e: hyper::Error| format!("upstream request failed: {e}");
                    let response = sender.send_request(request).await.map_err(failed)?;
                    return Ok(response.map(boxed));
                }
                Some(Link::H1(link)) => {
                    to_http1(&mut request, authority, path)?;
                    match link.send(request).await {
                        Ok(sent) => return sent,
                        Err(NeedsConnection(back)) => request = back,
                    }
                }
                _ => {}
            }
        }
        Err("the server closed every connection offered".into())
    }
}

/// HTTP/2 carries the authority in the URI (`:authority`), not in `Host`.
fn to_http2<B>(request: &mut Request<B>, authority: &str, path: &str) -> Result<(), String> {
    *request.uri_mut() = format!("https://{authority}{path}")
        .parse::<Uri>()
        .map_err(|e| format!("bad request target: {e}"))?;
    *request.version_mut() = Version::HTTP_2;
    request.headers_mut().remove(HOST);
    Ok(())
}

/// HTTP/1.1 upstream: origin form and a `Host` header.
fn to_http1<B>(request: &mut Request<B>, authority: &str, path: &str) -> Result<(), String> {
    *request.uri_mut() = path
        .parse::<Uri>()
        .map_err(|e| format!("bad request target: {e}"))?;
    *request.version_mut() = Version::HTTP_11;
    // The target's authority, whatever the client wrote (SPEC §2.6).
    let host = HeaderValue::from_str(authority).map_err(|e| format!("bad authority: {e}"))?;
    request.headers_mut().insert(HOST, host);
    Ok(())
}

/// The HTTP connection over the upstream TLS stream, in the protocol the server
/// selected; for HTTP/2 also what its SETTINGS say of extended CONNECT.
async fn open_http(
    stream: UpstreamStream,
    limits: &Limits,
) -> Result<(Link, Option<ExtendedConnect>), String> {
    let selected_h2 = stream.get_ref().1.alpn_protocol() == Some(H2);
    let failed = |e: hyper::Error| format!("upstream HTTP handshake failed: {e}");
    if selected_h2 {
        let (stream, extended_connect) = watch_settings(stream);
        let io = TokioIo::new(stream);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .handshake(io)
            .await
            .map_err(failed)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok((Link::H2(sender), Some(extended_connect)))
    } else {
        Ok((Link::H1(H1Link::new(stream)), None))
    }
}

/// How a bump's server was reached: directly at an address, or through a parent proxy
/// (SPEC §11) by name.
#[derive(Clone)]
pub(crate) enum Route {
    Direct(SocketAddr),
    /// Shared, not copied: a bump's link is kept as long as its connection.
    Parent {
        parent: Arc<UpstreamProxy>,
        host: Arc<str>,
        port: u16,
    },
}

impl Route {
    /// A new TCP connection to the server, within the connect timeout.
    async fn connect(&self, proxy: &Proxy) -> Result<TcpStream, String> {
        match self {
            Route::Direct(addr) => {
                let timeout = proxy.config.settings.limits.connect_timeout;
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(tcp)) => Ok(tcp),
                    Ok(Err(e)) => Err(format!("reconnecting to {addr} failed: {e}")),
                    Err(_) => Err(format!("reconnecting to {addr} timed out")),
                }
            }
            Route::Parent { parent, host, port } => proxy
                .dialer
                .tunnel_via(parent, host, *port)
                .await
                .map_err(|e| format!("reconnecting: {e}")),
        }
    }
}

impl Redial {
    async fn connect(&self) -> Result<(Link, Option<ExtendedConnect>), String> {
        let tcp = self.route.connect(&self.proxy).await?;
        let verified = upstream::connect_tls(&self.proxy, tcp, self.server_name.clone(), self.alpn)
            .await
            .map_err(|failure| failure.detail)?;
        let acceptance = upstream::accept(
            &self.proxy.config.settings.tls,
            verified.outcome,
            verified.leaf.as_deref(),
            self.policy,
        );
        match acceptance {
            Acceptance::Blocked(kind) => Err(format!(
                "the server's certificate failed verification on reconnect: {}",
                kind.as_str()
            )),
            Acceptance::Trusted | Acceptance::Untrusted => {
                open_http(verified.stream, &self.proxy.config.settings.limits).await
            }
        }
    }
}
