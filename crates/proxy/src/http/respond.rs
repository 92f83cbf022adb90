//! How sluice answers a request itself, and when a request's record is written: the
//! text and block-page answers (each writes the record), and the response relayed to
//! the client with its record written when its body ends.

use crate::body::{full, ProxyBody};

use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::context::Proxy;
use crate::dial::DialError;
use crate::http::message::prepare_response;
use crate::http::observe::{BodyEnd, BodyWatch, Watched};
use crate::outcome::block_page::{BlockPage, BlockReason};
use crate::outcome::{Failure, Kind, Phase};
use crate::telemetry::access_log::Record;
use crate::telemetry::recorder::Recorder;

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

/// What a block page says, but for the request id, which is the record's.
pub struct Block<'a> {
    pub reason: BlockReason,
    pub status: StatusCode,
    pub detail: &'a str,
    pub url: &'a str,
    pub rule: &'a str,
}

/// Answer with the block page (the configured template, or the built-in page) and log
/// the request as blocked, unless a more specific verdict is already set. The one place
/// a block page is made.
pub fn block(proxy: &Proxy, mut record: Record, block: Block<'_>) -> Response<ProxyBody> {
    let template = proxy.config.settings.block_page.template.as_ref();
    let request_id = record.request_id.clone().unwrap_or_default();
    let page = BlockPage {
        reason: block.reason,
        detail: block.detail,
        url: block.url,
        rule: block.rule,
        request_id: &request_id,
    };
    let (parts, body) = page
        .response(block.status, template.map(|t| t.text.as_str()))
        .into_parts();
    record.verdict.get_or_insert("blocked");
    record.bytes_down = Some(body.len() as u64);
    answered(&proxy.log, record, Response::from_parts(parts, full(body)))
}

/// Log a request that sluice answered itself (a refusal, a block page, the PAC script)
/// with its status: the one place such records are written; relayed responses write
/// theirs when their body ends ([`relay_response`]).
pub fn answered(
    log: &Recorder,
    mut record: Record,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    record.status = Some(response.status().as_u16());
    log.write(&record);
    response
}

/// Log a request that sluice answered itself with an error: `failure` is the log's
/// `error`, `why` the one-line body.
pub fn refuse(
    log: &Recorder,
    mut record: Record,
    status: StatusCode,
    failure: &Failure,
    why: &str,
) -> Response<ProxyBody> {
    record.fail(failure);
    answered(log, record, text_response(status, why))
}

/// [`refuse`] with the failure's own text as the body.
pub fn refuse_plainly(
    log: &Recorder,
    record: Record,
    status: StatusCode,
    failure: &Failure,
) -> Response<ProxyBody> {
    refuse(log, record, status, failure, &failure.log_text())
}

/// Refuse a request whose server could not be dialled (or may not be).
pub fn refuse_dial(log: &Recorder, record: Record, error: &DialError) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    refuse(log, record, status, &error.failure(), &error.to_string())
}

/// Refuse a request the parser, the target check or the host check rejected for
/// `reason` (400).
pub fn bad_request(log: &Recorder, record: Record, reason: &'static str) -> Response<ProxyBody> {
    let why = format!("bad request: {reason}");
    let failure = Kind::BadRequest(reason).at(Phase::Request);
    refuse(log, record, StatusCode::BAD_REQUEST, &failure, &why)
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
    let logged = LogAtEnd {
        record,
        log: log.clone(),
        started: Instant::now(),
        bytes: 0,
    };
    response.map(|body| Watched::new(body, logged).boxed_unsync())
}

/// Counts a response body's bytes and writes the request's record when it is finished
/// or dropped (client gone), exactly once.
struct LogAtEnd {
    record: Record,
    log: Recorder,
    started: Instant,
    bytes: u64,
}

impl BodyWatch for LogAtEnd {
    fn data(&mut self, len: usize) {
        self.bytes += len as u64;
    }

    fn ended(mut self, end: BodyEnd<'_>) {
        let failure = match end {
            BodyEnd::Finished | BodyEnd::Dropped { at_end: true } => None,
            BodyEnd::Failed(e) => Some(
                Kind::UpstreamBody
                    .at(Phase::Http)
                    .with_detail(e.to_string()),
            ),
            BodyEnd::Dropped { at_end: false } => Some(Kind::ClientClosed.at(Phase::Http)),
        };
        self.record.bytes_down = Some(self.bytes);
        self.record.duration_ms = Some(self.started.elapsed().as_millis() as u64);
        if let Some(failure) = failure {
            self.record.fail(&failure);
        }
        self.log.write(&self.record);
    }
}
