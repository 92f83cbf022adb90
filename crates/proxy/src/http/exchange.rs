//! One HTTP request from the client to the server and back, plain or bumped: the
//! inspection pipeline around the upstream exchange, the WebSocket switch, and the
//! request's access-log record with its verdict.

use std::time::Duration;

use http::{request, Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;

use crate::body::{boxed, ProxyBody};
use crate::context::Proxy;
use crate::http::inspection::{self, Blocked, Inspector, Passed, RequestInfo, ScanNote};
use crate::http::progress;
use crate::http::respond::Block;
use crate::http::send::{Sent, Upstream, UpstreamFailure};
use crate::http::upgrade;
use crate::http::{message, respond};
use crate::outcome::{Kind, Phase};
use crate::telemetry::access_log::Record;
use crate::telemetry::metrics::timed;

/// Inspect `request`, send it `upstream` when it may go, inspect the response, and
/// answer.
pub async fn exchange(
    proxy: &Proxy,
    mut record: Record,
    info: RequestInfo,
    mut request: Request<Incoming>,
    upstream: impl Upstream,
) -> Response<ProxyBody> {
    let log = &proxy.log;
    let inspector = Inspector::of(proxy);
    let passed = match inspector.check_request(&info) {
        Ok(passed) => passed,
        Err(blocked) => return block(proxy, record, &info, blocked),
    };
    record.rule = Some(passed.rule.clone());
    let upgrading = upgrade::is_websocket(&request) || upgrade::is_extended_connect(&request);
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut request));
    message::prepare_request(&mut request, upgrading);
    if passed.scan {
        inspection::request_whole_entity(request.headers_mut());
    }
    // ICAP sends the request head along with the response it scans; copy it only then.
    let head = passed.scan.then(|| head_of(&request));
    let idle = proxy.config.settings.limits.idle_timeout;
    let request = request.map(|body| progress::bounded(boxed(body), idle));
    let (request, upload) = match scan_upload(&inspector, request, &passed).await {
        Ok(scanned) => scanned,
        Err(blocked) => return block(proxy, record, &info, blocked),
    };
    let within = proxy.config.settings.limits.upstream_response_timeout;
    let sending = first_byte(upstream, request, within);
    let mut response = match timed(&proxy.metrics, Phase::FirstByte, sending).await {
        Ok(response) => response.map(|body| progress::bounded(body, idle)),
        Err(failure) => {
            record.parent_status = failure.parent_status;
            let (status, why) = (failure.status, &failure.why);
            return respond::refuse(log, record, status, &failure.failure, why);
        }
    };
    if proxy.config.settings.tls.strip_alt_svc_h3 {
        message::strip_alt_svc_h3(response.headers_mut());
    }
    if let Some(client_upgrade) = client_upgrade {
        upgrade::relay_if_switched(client_upgrade, &mut response, idle);
        return respond::relay_response(log, record, response, upgrading);
    }
    match inspector
        .check_response(&info, passed, head.as_ref(), response)
        .await
    {
        Ok((response, note, rule)) => {
            record.rule = Some(rule);
            let unscanned = note.unscanned || upload.unscanned;
            record.verdict = Some(if unscanned { "unscanned" } else { "allowed" });
            if let Some(failure) = note.failure.or(upload.failure) {
                record.fail(&failure);
            }
            respond::relay_response(log, record, response, false)
        }
        Err(blocked) => block(proxy, record, &info, blocked),
    }
}

/// Hold an upload until the engine has seen it, when the rule scans and
/// `anti_virus.scan_uploads` is on.
async fn scan_upload(
    inspector: &Inspector<'_>,
    request: Request<ProxyBody>,
    passed: &Passed,
) -> Result<(Request<ProxyBody>, ScanNote), Blocked> {
    let scan_upload = passed.scan && inspector.anti_virus.scan_uploads;
    if !scan_upload || request.body().is_end_stream() {
        return Ok((request, ScanNote::default()));
    }
    inspector.scan_upload(request, &passed.rule).await
}

/// The first-byte phase: the request goes upstream, and its response head must arrive
/// `within` the response timeout.
async fn first_byte(
    upstream: impl Upstream,
    request: Request<ProxyBody>,
    within: Duration,
) -> Sent {
    match tokio::time::timeout(within, upstream.send(request)).await {
        Ok(sent) => sent,
        Err(_) => Err(UpstreamFailure {
            status: StatusCode::GATEWAY_TIMEOUT,
            why: format!(
                "the server sent no response headers within {} s",
                within.as_secs()
            ),
            failure: Kind::UpstreamResponseTimeout.at(Phase::FirstByte),
            parent_status: None,
        }),
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
    if let Some(failure) = &blocked.failure {
        record.fail(failure);
    }
    let page = Block {
        reason: blocked.reason,
        status: blocked.status,
        detail: &blocked.detail,
        url: &info.url,
        rule: &blocked.rule,
    };
    respond::block(proxy, record, page)
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

#[cfg(test)]
mod tests {
    //! The first-byte phase against servers the test starts on loopback: one that
    //! answers, one that answers garbage, and a tarpit. Built from a pool and a dialer
    //! alone (no configuration generation).

    use std::net::SocketAddr;
    use std::sync::Arc;

    use sluice_policy::IpSet;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::body::full;
    use crate::dial::local_addrs::LocalAddrs;
    use crate::dial::pool::PlainClient;
    use crate::dial::resolve::Resolver;
    use crate::dial::Dialer;
    use crate::http::send::PlainUpstream;

    fn pool() -> PlainClient {
        let dialer = Dialer::new(
            Resolver::new(std::path::Path::new("/etc/hosts")),
            LocalAddrs::default(),
            IpSet::default(),
            Duration::from_secs(5),
        );
        PlainClient::new(Arc::new(dialer))
    }

    /// A server that reads one request head and writes `answer` (nothing when empty,
    /// holding the connection open).
    async fn server(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = vec![0; 4096];
            let _ = stream.read(&mut head).await;
            if answer.is_empty() {
                // A tarpit: the connection stays open, silent, until the test ends.
                let _ = stream.read(&mut head).await;
            } else {
                let _ = stream.write_all(answer).await;
            }
        });
        addr
    }

    async fn send(addr: SocketAddr, within: Duration) -> Sent {
        let pool = pool();
        let upstream = PlainUpstream::Server {
            client: &pool,
            addr,
            authority: "plain.test",
        };
        let request = Request::get("http://plain.test/").body(full("")).unwrap();
        first_byte(upstream, request, within).await
    }

    #[tokio::test]
    async fn a_server_that_answers_ends_the_phase_with_its_response() {
        let addr = server(b"HTTP/1.1 204 No Content\r\n\r\n").await;
        let response = send(addr, Duration::from_secs(5)).await;
        assert_eq!(
            response.ok().map(|r| r.status()),
            Some(StatusCode::NO_CONTENT)
        );
    }

    // A server that answers garbage is a 502 whose log text is the error's own.
    #[tokio::test]
    async fn a_garbage_answer_is_an_upstream_request_failure() {
        let addr = server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        let Err(failed) = send(addr, Duration::from_secs(5)).await else {
            panic!("garbage is no response");
        };
        assert_eq!(failed.status, StatusCode::BAD_GATEWAY);
        assert_eq!(failed.failure.kind, Kind::UpstreamRequestFailed);
        assert!(failed.failure.log_text().starts_with("upstream failed: "));
    }

    // A tarpit that never answers ends the phase at the response timeout (504).
    #[tokio::test]
    async fn a_silent_server_is_an_upstream_response_timeout() {
        let addr = server(b"").await;
        let Err(failed) = send(addr, Duration::from_millis(100)).await else {
            panic!("a tarpit gives no response");
        };
        assert_eq!(failed.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(failed.failure.log_text(), "upstream_response_timeout");
    }
}
