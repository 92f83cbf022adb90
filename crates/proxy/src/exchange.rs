//! One HTTP request from the client to the server and back, plain or bumped: the
//! inspection pipeline around the upstream exchange, the WebSocket switch, and the
//! request's access-log record with its verdict.

use std::net::SocketAddr;
use std::time::Instant;

use http::header::{HOST, PROXY_AUTHORIZATION};
use http::{request, HeaderValue, Request, Response, StatusCode, Uri};
use http_body::Body;
use hyper::body::Incoming;
use sluice_policy::ParentCredentials;

use crate::access_log::Record;
use crate::block_page::BlockPage;
use crate::bump::UpstreamLink;
use crate::context::Proxy;
use crate::forward::{self, boxed, PlainClient, ProxyBody, UpstreamFailure};
use crate::inspection::{self, Blocked, RequestInfo, ScanNote};
use crate::metrics::Phase;
use crate::progress;
use crate::upgrade;
use crate::upstream::basic_authorization;

/// Where a request goes once the pipeline lets it.
pub enum Upstream<'a> {
    /// Plain HTTP, over the pool, to the address the policy judged; `authority` goes in
    /// `Host`.
    Plain {
        client: &'a PlainClient,
        addr: SocketAddr,
        authority: &'a str,
    },
    /// Plain HTTP through a parent proxy (SPEC §11), in absolute form, with the parent's
    /// credentials; `authority` goes in the URL and in `Host`.
    Parent {
        client: &'a PlainClient,
        credentials: Option<&'a ParentCredentials>,
        authority: &'a str,
    },
    /// The upstream connection of a bump.
    Bumped {
        link: &'a UpstreamLink,
        authority: &'a str,
        path: &'a str,
    },
}

impl Upstream<'_> {
    /// A failure is the status and one-line reason for the client.
    async fn send(
        self,
        request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, UpstreamFailure> {
        let bad_request = |why: String| UpstreamFailure {
            status: StatusCode::BAD_REQUEST,
            why,
            kind: None,
            parent_status: None,
        };
        match self {
            Upstream::Plain {
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
                    .map_err(|e| forward::upstream_failure(&e))
            }
            Upstream::Parent {
                client,
                credentials,
                authority,
            } => {
                let mut request = request;
                to_parent(&mut request, authority, credentials).map_err(bad_request)?;
                let response = client
                    .send(request)
                    .await
                    .map_err(|e| forward::upstream_failure(&e))?;
                // The parent's own challenge is not the client's to answer: its
                // credentials are sluice's (any other answer may be the server's).
                if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                    return Err(UpstreamFailure {
                        status: StatusCode::BAD_GATEWAY,
                        why: "the parent proxy refused with status 407".into(),
                        kind: Some("parent_refused"),
                        parent_status: Some(407),
                    });
                }
                Ok(response.map(boxed))
            }
            Upstream::Bumped {
                link,
                authority,
                path,
            } => link
                .send(request, authority, path)
                .await
                .map_err(|why| UpstreamFailure {
                    status: StatusCode::BAD_GATEWAY,
                    why,
                    kind: None,
                    parent_status: None,
                }),
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
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = format!("http://{addr}{path}")
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
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = format!("http://{authority}{path}")
        .parse::<Uri>()
        .map_err(|e| format!("bad request target: {e}"))?;
    let host = HeaderValue::from_str(authority).map_err(|e| format!("bad authority: {e}"))?;
    request.headers_mut().insert(HOST, host);
    if let Some(credentials) = credentials {
        let value = HeaderValue::from_str(&basic_authorization(credentials))
            .map_err(|e| format!("bad parent credentials: {e}"))?;
        request.headers_mut().insert(PROXY_AUTHORIZATION, value);
    }
    Ok(())
}

/// Inspect `request`, send it `upstream` when it may go, inspect the response, and
/// answer.
pub async fn exchange(
    proxy: &Proxy,
    mut record: Record,
    info: RequestInfo,
    mut request: Request<Incoming>,
    upstream: Upstream<'_>,
) -> Response<ProxyBody> {
    let log = &proxy.log;
    let passed = match inspection::check_request(proxy, &info) {
        Ok(passed) => passed,
        Err(blocked) => return block(proxy, record, &info, blocked),
    };
    record.rule = Some(passed.rule.clone());
    let upgrading = upgrade::is_websocket(&request) || upgrade::is_extended_connect(&request);
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut request));
    forward::prepare_request(&mut request, upgrading);
    if passed.scan {
        inspection::request_whole_entity(request.headers_mut());
    }
    // ICAP sends the request head along with the response it scans; copy it only then.
    let head = passed.scan.then(|| head_of(&request));
    let idle = proxy.config.settings.limits.idle_timeout;
    let mut request = request.map(|body| progress::bounded(boxed(body), idle));
    let mut upload = ScanNote::default();
    let scan_upload = passed.scan && proxy.config.settings.anti_virus.scan_uploads;
    if scan_upload && !request.body().is_end_stream() {
        match inspection::scan_upload(proxy, request, &passed.rule).await {
            Ok((scanned, note)) => {
                request = scanned;
                upload = note;
            }
            Err(blocked) => return block(proxy, record, &info, blocked),
        }
    }
    let sending = Instant::now();
    let limits = &proxy.config.settings.limits;
    let sent = tokio::time::timeout(limits.upstream_response_timeout, upstream.send(request)).await;
    proxy.metrics.phase(Phase::FirstByte, sending.elapsed());
    let mut response = match sent {
        Ok(Ok(response)) => response.map(|body| progress::bounded(body, idle)),
        Ok(Err(failure)) => {
            let UpstreamFailure {
                status,
                why,
                kind,
                parent_status,
            } = failure;
            record.parent_status = parent_status;
            return match kind {
                Some(kind) => forward::refuse_with(log, record, status, kind, &why),
                None => forward::refuse(log, record, status, &why),
            };
        }
        Err(_) => {
            let why = format!(
                "the server sent no response headers within {} s",
                limits.upstream_response_timeout.as_secs()
            );
            let status = StatusCode::GATEWAY_TIMEOUT;
            return forward::refuse_with(log, record, status, "upstream_response_timeout", &why);
        }
    };
    if proxy.config.settings.tls.strip_alt_svc_h3 {
        forward::strip_alt_svc_h3(response.headers_mut());
    }
    if let Some(client_upgrade) = client_upgrade {
        upgrade::relay_if_switched(client_upgrade, &mut response, idle);
        return forward::relay_response(log, record, response, upgrading);
    }
    match inspection::check_response(proxy, &info, passed, head.as_ref(), response).await {
        Ok((response, note, rule)) => {
            record.rule = Some(rule);
            let unscanned = note.unscanned || upload.unscanned;
            record.verdict = Some(if unscanned { "unscanned" } else { "allowed" });
            record.error = note.error.or(upload.error);
            forward::relay_response(log, record, response, false)
        }
        Err(blocked) => block(proxy, record, &info, blocked),
    }
}

/// Answer with the block page and log why.
pub fn block(
    proxy: &Proxy,
    mut record: Record,
    info: &RequestInfo,
    blocked: Blocked,
) -> Response<ProxyBody> {
    record.rule = Some(blocked.rule.clone());
    record.verdict = Some(blocked.verdict);
    record.threat = blocked.threat;
    record.error = blocked.error;
    let request_id = record.request_id.clone().unwrap_or_default();
    let page = BlockPage {
        reason: blocked.reason,
        detail: &blocked.detail,
        url: &info.url,
        rule: &blocked.rule,
        request_id: &request_id,
    };
    forward::block(proxy, record, &page, blocked.status)
}

/// The request's head, which ICAP encapsulates with a response it scans.
fn head_of<B>(request: &Request<B>) -> request::Parts {
    let mut head = Request::new(());
    *head.method_mut() = request.method().clone();
    *head.uri_mut() = request.uri().clone();
    *head.version_mut() = request.version();
    *head.headers_mut() = request.headers().clone();
    head.into_parts().0
}
