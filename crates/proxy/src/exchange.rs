//! One HTTP request from the client to the server and back, plain or bumped: the
//! inspection pipeline around the upstream exchange, the WebSocket switch, and the
//! request's access-log record with its verdict.

use std::time::Instant;

use http::{request, Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;

use crate::access_log::Record;
use crate::block_page::BlockPage;
use crate::bump::UpstreamLink;
use crate::context::Proxy;
use crate::forward::{self, boxed, PlainClient, ProxyBody};
use crate::inspection::{self, Blocked, RequestInfo, ScanNote};
use crate::metrics::Phase;
use crate::upgrade;

/// Where a request goes once the pipeline lets it.
pub enum Upstream<'a> {
    /// Plain HTTP, over the pool.
    Plain(&'a PlainClient),
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
    ) -> Result<Response<ProxyBody>, (StatusCode, String)> {
        match self {
            Upstream::Plain(client) => client
                .send(request)
                .await
                .map(|response| response.map(boxed))
                .map_err(|e| forward::upstream_failure(&e)),
            Upstream::Bumped {
                link,
                authority,
                path,
            } => link
                .send(request, authority, path)
                .await
                .map_err(|why| (StatusCode::BAD_GATEWAY, why)),
        }
    }
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
    let mut request = request.map(boxed);
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
    let sent = upstream.send(request).await;
    proxy.metrics.phase(Phase::FirstByte, sending.elapsed());
    let mut response = match sent {
        Ok(response) => response,
        Err((status, why)) => return forward::refuse(log, record, status, &why),
    };
    if let Some(client_upgrade) = client_upgrade {
        let idle = proxy.config.settings.limits.idle_timeout;
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
