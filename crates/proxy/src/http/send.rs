//! Where a request goes once the pipeline lets it: the [`Upstream`] the exchange sends
//! through, which knows how to reach the server (the plain pool, a parent proxy, or a
//! bump's connection to the server), and how a failed send is told.

use std::future::Future;
use std::net::SocketAddr;

use http::header::{HOST, PROXY_AUTHORIZATION};
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use sluice_policy::ParentCredentials;

use crate::body::{boxed, ProxyBody};
use crate::dial::pool::PlainClient;
use crate::dial::{basic_authorization, DialError};
use crate::outcome::{Failure, Kind, Phase};
use crate::telemetry::metrics::PhaseEnd;

/// What a send comes to: the response head (its body still to come), or the failure.
pub type Sent = Result<Response<ProxyBody>, UpstreamFailure>;

/// A way to the server for one request. The exchange calls it once the request may go,
/// within the response timeout; a failure carries the status and one-line reason for
/// the client.
pub trait Upstream {
    fn send(self, request: Request<ProxyBody>) -> impl Future<Output = Sent> + Send;
}

/// Why an upstream exchange failed: the status, the one-line reason for the client, the
/// failure for the log, and the status a parent proxy refused with.
pub struct UpstreamFailure {
    pub status: StatusCode,
    pub why: String,
    pub failure: Failure,
    pub parent_status: Option<u16>,
}

impl UpstreamFailure {
    /// A request that could not be sent or got no answer; `why` is also the log's.
    pub fn request_failed(status: StatusCode, why: String) -> Self {
        let failure = Kind::UpstreamRequestFailed
            .at(Phase::FirstByte)
            .with_detail(why.clone());
        UpstreamFailure {
            status,
            why,
            failure,
            parent_status: None,
        }
    }
}

impl<T> PhaseEnd for Result<T, UpstreamFailure> {
    fn failure(&self) -> Option<&Failure> {
        self.as_ref().err().map(|failed| &failed.failure)
    }
}

/// The [`UpstreamFailure`] of a failed upstream exchange.
pub fn upstream_failure(error: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(dial) = e.downcast_ref::<DialError>() {
            let status = StatusCode::from_u16(dial.status()).unwrap_or(StatusCode::BAD_GATEWAY);
            return UpstreamFailure {
                status,
                why: dial.to_string(),
                failure: dial.failure(),
                parent_status: dial.parent_status(),
            };
        }
        source = e.source();
    }
    UpstreamFailure::request_failed(StatusCode::BAD_GATEWAY, format!("upstream failed: {error}"))
}

/// A plain request's upstream: a server over the pool, or a parent proxy.
pub enum PlainUpstream<'a> {
    /// Over the pool, to the address the policy judged; `authority` goes in `Host`.
    Server {
        client: &'a PlainClient,
        addr: SocketAddr,
        authority: &'a str,
    },
    /// Through a parent proxy (SPEC §11), in absolute form, with the parent's
    /// credentials; `authority` goes in the URL and in `Host`.
    Parent {
        client: &'a PlainClient,
        credentials: Option<&'a ParentCredentials>,
        authority: &'a str,
    },
}

impl Upstream for PlainUpstream<'_> {
    async fn send(self, request: Request<ProxyBody>) -> Sent {
        let bad_request = |why| UpstreamFailure::request_failed(StatusCode::BAD_REQUEST, why);
        match self {
            PlainUpstream::Server {
                client,
                addr,
                authority,
            } => {
                let mut request = request;
                to_address(&mut request, addr, authority).map_err(bad_request)?;
                client
                    .send(request)
                    .await
                    .map(|response| response.map(boxed))
                    .map_err(|e| upstream_failure(&e))
            }
            PlainUpstream::Parent {
                client,
                credentials,
                authority,
            } => {
                let mut request = request;
                to_parent(&mut request, authority, credentials).map_err(bad_request)?;
                let response = client
                    .send(request)
                    .await
                    .map_err(|e| upstream_failure(&e))?;
                // The parent's own challenge is not the client's to answer: its
                // credentials are sluice's (any other answer may be the server's).
                if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                    return Err(UpstreamFailure {
                        status: StatusCode::BAD_GATEWAY,
                        why: "the parent proxy refused with status 407".into(),
                        failure: Kind::ParentRefused.at(Phase::FirstByte),
                        parent_status: Some(407),
                    });
                }
                Ok(response.map(boxed))
            }
        }
    }
}

/// Point a plain request at `addr` (the pool dials exactly what was judged, and pools
/// by address) with the target's authority as its `Host`.
fn to_address<B>(
    request: &mut Request<B>,
    addr: SocketAddr,
    authority: &str,
) -> Result<(), String> {
    retarget(request, addr, authority)
}

/// Send `request` to `http://{to}` with `authority` as its `Host`.
fn retarget<B>(
    request: &mut Request<B>,
    to: impl std::fmt::Display,
    authority: &str,
) -> Result<(), String> {
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = format!("http://{to}{path}")
        .parse::<Uri>()
        .map_err(|e| format!("bad request target: {e}"))?;
    let host = HeaderValue::from_str(authority).map_err(|e| format!("bad authority: {e}"))?;
    request.headers_mut().insert(HOST, host);
    Ok(())
}

/// Address a plain request to a parent: the absolute URL of the server, its authority
/// as `Host`, and `Proxy-Authorization` when the parent has credentials (the client's
/// own went with the hop-by-hop headers).
fn to_parent<B>(
    request: &mut Request<B>,
    authority: &str,
    credentials: Option<&ParentCredentials>,
) -> Result<(), String> {
    retarget(request, authority, authority)?;
    if let Some(credentials) = credentials {
        let value = HeaderValue::from_str(&basic_authorization(credentials))
            .map_err(|e| format!("bad parent credentials: {e}"))?;
        request.headers_mut().insert(PROXY_AUTHORIZATION, value);
    }
    Ok(())
}
