//! What plain and bumped HTTP share: the body type handed to hyper, the per-request
//! access-log record written when the response body ends, header hygiene on both
//! messages, small text and block-page responses, and the pooled client that carries
//! plain HTTP upstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{header, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use sluice_policy::{AltSvcEdit, Limits, UpstreamProxy};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::access_log::{Record, Recorder};
use crate::block_page::BlockPage;
use crate::context::Proxy;
use crate::head::check_body_framing;
use crate::hop_by_hop::{add_via, strip_hop_by_hop};
use crate::upstream::{DialError, Dialer};

/// The HTTP/1.1 server side of a client connection, with the `[limits]` that apply to
/// it: `idle_timeout` between requests and `max_header_bytes` (hyper's floor is 8 KiB).
pub fn client_http1(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
}

/// Streams one client may open at once on an HTTP/2 connection.
const MAX_CONCURRENT_STREAMS: u32 = 250;

/// The HTTP/2 server side of a bumped client connection: bounded concurrent streams and
/// header lists, and a cap on streams reset before they were served (rapid-reset floods).
pub fn client_http2(limits: &Limits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(50)
        .max_local_error_reset_streams(1024);
    builder
}

/// Errors of the bodies sluice relays (hyper's, the spool file's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body sluice relays, either way: straight from the peer, from a scan spool, or
/// made in memory.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Box any body as a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body made in memory (block pages, errors).
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    boxed(Full::new(bytes.into()))
}

/// A fresh id shown on block pages and logged, so a user's report finds the log line.
pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A per-request record with what the connection already knows.
pub fn http_record<B>(template: &Record, request: &Request<B>, url: String) -> Record {
    let mut record = Record::new("http");
    record.mode = template.mode;
    record.client = template.client;
    record.client_port = template.client_port;
    record.user = template.user.clone();
    record.groups = template.groups.clone();
    record.host = template.host.clone();
    record.sni = template.sni.clone();
    record.dest_ip = template.dest_ip;
    record.port = template.port;
    record.via = template.via.clone();
    record.method = Some(request.method().to_string());
    record.url = Some(url);
    record.request_id = Some(new_request_id());
    record
}

/// The absolute URL of a request as logged and matched by `url_regex` and the phishing
/// lists: scheme and host lowercase, no default port.
pub fn absolute_url(scheme: &str, authority: &str, path: &str) -> String {
    let authority = authority.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    format!("{scheme}://{authority}{path}")
}

/// Prepare a request for the upstream leg (`upgrade`: a WebSocket handshake).
pub fn prepare_request<B>(request: &mut Request<B>, upgrade: bool) {
    let version = request.version();
    strip_hop_by_hop(request.headers_mut(), upgrade);
    add_via(request.headers_mut(), version);
}

/// Prepare a response for the client leg.
pub fn prepare_response<B>(response: &mut Response<B>, upgrade: bool) {
    let version = response.version();
    strip_hop_by_hop(response.headers_mut(), upgrade);
    add_via(response.headers_mut(), version);
}

/// Remove the HTTP/3 entries of every `Alt-Svc` field (SPEC §11 QUIC), dropping a field
/// left empty; the decision on each value is [`sluice_policy::strip_alt_svc_h3`]'s.
pub fn strip_alt_svc_h3(headers: &mut HeaderMap) {
    let header::Entry::Occupied(entry) = headers.entry(header::ALT_SVC) else {
        return;
    };
    let (_, values) = entry.remove_entry_mult();
    let edited: Vec<HeaderValue> = values
        .filter_map(
            |value| match sluice_policy::strip_alt_svc_h3(value.as_bytes()) {
                AltSvcEdit::Keep => Some(value),
                AltSvcEdit::Remove => None,
                AltSvcEdit::Replace(kept) => HeaderValue::from_bytes(kept.as_bytes()).ok(),
            },
        )
        .collect();
    for value in edited {
        headers.append(header::ALT_SVC, value);
    }
}

/// A one-line text answer from sluice itself (bad request, upstream unreachable).
pub fn text_response(status: StatusCode, why: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(format!("{why}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().unwrap(),
    );
    response
}

/// Answer with the block page (the configured template, or the built-in page) and log
/// the request as blocked, unless a more specific verdict is already set.
pub fn block(
    proxy: &Proxy,
    mut record: Record,
    page: &BlockPage<'_>,
    status: StatusCode,
) -> Response<ProxyBody> {
    let template = proxy.config.settings.block_page.template.as_ref();
    let (parts, body) = page
        .response(status, template.map(|t| t.text.as_str()))
        .into_parts();
    let log = &proxy.log;
    record.status = Some(status.as_u16());
    record.verdict.get_or_insert("blocked");
    record.bytes_down = Some(body.len() as u64);
    log.write(&record);
    Response::from_parts(parts, full(body))
}

/// Log a request that sluice answered itself with an error.
pub fn refuse(
    log: &Recorder,
    mut record: Record,
    status: StatusCode,
    why: &str,
) -> Response<ProxyBody> {
    record.status = Some(status.as_u16());
    record.error = Some(why.to_string());
    log.write(&record);
    text_response(status, why)
}

/// Log a request that sluice answered itself with an error: `kind` is the log's `error`,
/// `why` the one-line body.
pub fn refuse_with(
    log: &Recorder,
    mut record: Record,
    status: StatusCode,
    kind: &str,
    why: &str,
) -> Response<ProxyBody> {
    record.status = Some(status.as_u16());
    record.error = Some(kind.to_string());
    log.write(&record);
    text_response(status, why)
}

/// SPEC §9 on every request, not only a connection's first (hyper parses the later
/// ones, and accepts `Transfer-Encoding: gzip, chunked`): ambiguous framing → 400.
pub fn check_framing<B>(request: &Request<B>) -> Result<(), &'static str> {
    let values = |name| {
        request
            .headers()
            .get_all(name)
            .into_iter()
            .map(|v| v.as_bytes())
    };
    check_body_framing(
        values(header::CONTENT_LENGTH),
        values(header::TRANSFER_ENCODING),
        request.version() == Version::HTTP_10,
    )
    .map_err(|e| e.reason())
}

/// Every `Host` header of a request, for [`sluice_policy::decide_host`].
pub fn host_headers<B>(request: &Request<B>) -> Vec<&[u8]> {
    request
        .headers()
        .get_all(header::HOST)
        .into_iter()
        .map(|v| v.as_bytes())
        .collect()
}

/// Relay an upstream response; its record is written when the body has been sent.
pub fn relay_response(
    log: &Recorder,
    mut record: Record,
    mut response: Response<ProxyBody>,
    upgrade: bool,
) -> Response<ProxyBody> {
    let switching = upgrade && response.status() == StatusCode::SWITCHING_PROTOCOLS;
    prepare_response(&mut response, switching);
    record.status = Some(response.status().as_u16());
    record.verdict.get_or_insert("allowed");
    response.map(|body| {
        LoggedBody {
            inner: body,
            bytes: 0,
            pending: Some((record, log.clone(), Instant::now())),
        }
        .boxed_unsync()
    })
}

/// A response body that counts its bytes and writes the request's record when it is
/// finished or dropped (client gone), exactly once.
struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    pending: Option<(Record, Recorder, Instant)>,
}

impl LoggedBody {
    fn finish(&mut self, error: Option<String>) {
        if let Some((mut record, log, started)) = self.pending.take() {
            record.bytes_down = Some(self.bytes);
            record.duration_ms = Some(started.elapsed().as_millis() as u64);
            if error.is_some() {
                record.error = error;
            }
            log.write(&record);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let error = format!("upstream body: {e}");
                self.finish(Some(error));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        let error = (!self.inner.is_end_stream()).then(|| "client_closed".to_string());
        self.finish(error);
    }
}

/// Why an upstream exchange failed: the status, the one-line reason for the client, and
/// for a failure to dial its kind (the log's `error`, as for a CONNECT).
pub struct UpstreamFailure {
    pub status: StatusCode,
    pub why: String,
    pub kind: Option<&'static str>,
    /// The status a parent proxy refused with.
    pub parent_status: Option<u16>,
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
                kind: Some(dial.kind()),
                parent_status: dial.parent_status(),
            };
        }
        source = e.source();
    }
    UpstreamFailure {
        status: StatusCode::BAD_GATEWAY,
        why: format!("upstream failed: {error}"),
        kind: None,
        parent_status: None,
    }
}

/// Pooled upstream connections for plain HTTP: to servers, or to one parent proxy.
pub struct PlainClient {
    client: Client<UpstreamConnector, ProxyBody>,
}

impl PlainClient {
    pub fn new(dialer: Arc<Dialer>) -> Self {
        Self::with_connector(UpstreamConnector {
            dialer,
            parent: None,
        })
    }

    /// Connections to `parent` (SPEC §11), which get requests in absolute form: pooled
    /// per server as hyper keys them, each dialled to the parent's first reachable URL.
    pub fn via_parent(dialer: Arc<Dialer>, parent: UpstreamProxy) -> Self {
        Self::with_connector(UpstreamConnector {
            dialer,
            parent: Some(Arc::new(parent)),
        })
    }

    fn with_connector(connector: UpstreamConnector) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        PlainClient { client }
    }

    pub async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(request).await
    }
}

/// Opens plain-HTTP upstream connections with sluice's own resolution, timeout and loop
/// check, so their failures map to the same statuses as CONNECT's.
#[derive(Clone)]
struct UpstreamConnector {
    dialer: Arc<Dialer>,
    /// Dial this parent proxy instead of the request's server.
    parent: Option<Arc<UpstreamProxy>>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<UpstreamConnection, DialError>> + Send + 'static>>;

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamConnection;
    type Error = DialError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> ConnectFuture {
        let this = self.clone();
        Box::pin(async move {
            if let Some(parent) = &this.parent {
                let stream = this.dialer.dial_parent(parent).await?;
                return Ok(UpstreamConnection {
                    io: TokioIo::new(stream),
                    to_parent: true,
                });
            }
            let host = uri_host(&uri);
            let port = uri.port_u16().unwrap_or(80);
            let (stream, _) = this.dialer.dial(&host, port).await?;
            Ok(UpstreamConnection {
                io: TokioIo::new(stream),
                to_parent: false,
            })
        })
    }
}

/// A plain-HTTP upstream connection. One to a parent proxy says so, so that hyper keeps
/// the request target in absolute form (a proxy needs to know the server).
struct UpstreamConnection {
    io: TokioIo<TcpStream>,
    to_parent: bool,
}

impl Connection for UpstreamConnection {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.to_parent)
    }
}

impl hyper::rt::Read for UpstreamConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The host of a URI without IPv6 brackets.
pub fn uri_host(uri: &Uri) -> String {
    let host = uri.host().unwrap_or_default();
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_logged_with_a_lowercase_host_and_no_default_port() {
        assert_eq!(
            absolute_url("https", "Bank.Example:443", "/A?b=C"),
            "https://bank.example/A?b=C"
        );
        assert_eq!(absolute_url("http", "[::1]:80", "/"), "http://[::1]/");
        assert_eq!(
            absolute_url("http", "example.com:8080", "/x"),
            "http://example.com:8080/x"
        );
        assert_eq!(
            absolute_url("https", "example.com:80", "/"),
            "https://example.com:80/"
        );
    }
}
