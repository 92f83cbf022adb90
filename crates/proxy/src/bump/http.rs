//! HTTP inside a bump: one request hook for HTTP/1.1 and HTTP/2 alike. Each request is
//! checked against the SNI (domain fronting), then relayed to the server over the one
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
use sluice_policy::{same_domain, CertErrorPolicy, HostMismatch};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::h1_link::{H1Link, NeedsConnection};
use super::h2_settings::{ExtendedConnect, SettingsWatch};
use super::upstream::{self, Acceptance, AlpnOffer, UpstreamStream, H2};
use crate::access_log::Record;
use crate::block_page::{BlockPage, BlockReason};
use crate::context::Proxy;
use crate::exchange::{exchange, Upstream};
use crate::forward::{self, boxed, ProxyBody};
use crate::inspection::RequestInfo;

/// How the requests of a bumped connection are answered.
pub(super) enum Mode {
    Forward(UpstreamLink),
    Block { reason: BlockReason, detail: String },
}

/// The HTTP side of one bumped connection.
pub(super) struct BumpedHttp {
    pub proxy: Arc<Proxy>,
    /// The connect record so far: per-request records copy its connection fields.
    pub template: Record,
    /// The SNI, for the domain-fronting check.
    pub sni: Option<String>,
    /// For the HTTP rules: the client, and the server the connection reached.
    pub client: IpAddr,
    pub dest_ip: IpAddr,
    pub port: u16,
    /// `host[:port]` for requests that name no authority.
    pub default_authority: String,
    pub mode: Mode,
}

impl BumpedHttp {
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let authority =
            request_authority(&request).unwrap_or_else(|| self.default_authority.clone());
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let url = forward::absolute_url("https", &authority, &path);
        let record = forward::http_record(&self.template, &request, url.clone());
        let block = |reason: BlockReason, detail: &str, status: StatusCode, record: Record| {
            let rule = self.template.rule.as_deref().unwrap_or("default");
            let request_id = record.request_id.clone().unwrap_or_default();
            let page = BlockPage {
                reason,
                detail,
                url: &url,
                rule,
                request_id: &request_id,
            };
            forward::block(&self.proxy, record, &page, status)
        };
        let link = match &self.mode {
            Mode::Block { reason, detail } => {
                return block(*reason, detail, StatusCode::BAD_GATEWAY, record);
            }
            Mode::Forward(link) => link,
        };
        if let Some(sni) = &self.sni {
            let host = authority_host(&authority);
            if !same_domain(host, sni)
                && self.proxy.config.settings.tls.on_host_mismatch == HostMismatch::Block
            {
                let detail = format!(
                    "The request names {host}, but the secure connection was opened for {sni} (domain fronting)."
                );
                return block(
                    BlockReason::HostMismatch,
                    &detail,
                    StatusCode::MISDIRECTED_REQUEST,
                    record,
                );
            }
        }
        let host = authority_host(&authority).to_string();
        let info = RequestInfo::new(
            &request,
            self.client,
            self.template.user.clone(),
            Some(host),
            Some(self.dest_ip),
            self.port,
            url,
        );
        let upstream = Upstream::Bumped {
            link,
            authority: &authority,
            path: &path,
        };
        // Boxed: the exchange's state is large, and HTTP/1.1 connections keep room for
        // this future while they wait for the next request.
        Box::pin(exchange(&self.proxy, record, info, request, upstream)).await
    }
}

/// `Host`, or the URI's authority (HTTP/2's `:authority`, absolute-form HTTP/1.1).
fn request_authority<B>(request: &Request<B>) -> Option<String> {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            request
                .headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
}

/// The host of `host[:port]` or `[v6]:port`.
fn authority_host(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(host, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                host
            } else {
                authority
            }
        })
}

/// The server's side of the link, in the protocol it selected.
enum Link {
    H1(H1Link),
    H2(http2::SendRequest<ProxyBody>),
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
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    pub alpn: AlpnOffer,
    pub policy: CertErrorPolicy,
}

impl UpstreamLink {
    pub(super) async fn open(stream: UpstreamStream, redial: Redial) -> Result<Self, String> {
        let (link, extended_connect) = handshake(stream, &redial.proxy).await?;
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
    pub(crate) async fn send(
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
    if !request.headers().contains_key(HOST) {
        let host = HeaderValue::from_str(authority).map_err(|e| format!("bad authority: {e}"))?;
        request.headers_mut().insert(HOST, host);
    }
    Ok(())
}

/// The HTTP connection over the upstream TLS stream, in the protocol the server
/// selected; for HTTP/2 also what its SETTINGS say of extended CONNECT.
async fn handshake(
    stream: UpstreamStream,
    proxy: &Proxy,
) -> Result<(Link, Option<ExtendedConnect>), String> {
    let selected_h2 = stream.get_ref().1.alpn_protocol() == Some(H2);
    let failed = |e: hyper::Error| format!("upstream HTTP handshake failed: {e}");
    if selected_h2 {
        let (stream, extended_connect) = SettingsWatch::new(stream);
        let io = TokioIo::new(stream);
        let limits = &proxy.config.settings.limits;
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

impl Redial {
    async fn connect(&self) -> Result<(Link, Option<ExtendedConnect>), String> {
        let timeout = self.proxy.config.settings.limits.connect_timeout;
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("reconnecting to {} failed: {e}", self.addr)),
            Err(_) => return Err(format!("reconnecting to {} timed out", self.addr)),
        };
        let verified = upstream::handshake(&self.proxy, tcp, self.server_name.clone(), self.alpn)
            .await
            .map_err(|failure| failure.detail)?;
        let acceptance = upstream::accept(
            &self.proxy,
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
                handshake(verified.stream, &self.proxy).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_of_an_authority_drops_the_port_and_brackets() {
        assert_eq!(authority_host("example.com"), "example.com");
        assert_eq!(authority_host("example.com:8443"), "example.com");
        assert_eq!(authority_host("[2001:db8::1]:443"), "2001:db8::1");
        assert_eq!(authority_host("[2001:db8::1]"), "2001:db8::1");
    }
}
