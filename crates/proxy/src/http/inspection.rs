//! The inspection pipeline of SPEC §3, the same for plain HTTP and for requests inside
//! bumped connections: HTTP rules on the request, Anti-Phishing, Anti-Virus on uploads
//! (with `scan_uploads`), HTTP rules on the response's content type, Anti-Virus on the
//! response body. A scanned body is held in a spool until the engine's verdict: not a
//! byte of it reaches the other side before.
//!
//! What is scanned is what the client would get: a scanned request asks for the whole
//! entity (no `Range`), and an encoded body is decoded for the engine while the client
//! gets it as it came.

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, IF_RANGE, RANGE, USER_AGENT};
use http::{request, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use sluice_inspect::decode::{self, DecodeError};
use sluice_inspect::{
    AvVerdict, BlockCause, ScanError, ScanOutcome, SpoolError, SpoolReader, SpooledBody, Spooler,
};
use sluice_policy::{AntiVirusSettings, HttpAction, HttpFacts};

use crate::body::{boxed, BoxError, ProxyBody};
use crate::context::Proxy;
use crate::outcome::block_page::BlockReason;
use crate::outcome::{Failure, Kind, Phase};

/// What the HTTP rules see of one request, owned so that it outlives the request.
pub struct RequestInfo {
    pub client: IpAddr,
    pub user: Option<String>,
    /// The DNs of the user's directory groups.
    pub groups: Vec<String>,
    pub user_agent: Option<String>,
    /// The host without port or brackets.
    pub host: Option<String>,
    pub dest_ip: Option<IpAddr>,
    pub port: u16,
    pub method: String,
    /// The absolute URL, as logged.
    pub url: String,
}

impl RequestInfo {
    pub fn new<B>(
        request: &Request<B>,
        client: IpAddr,
        user: Option<String>,
        host: Option<String>,
        dest_ip: Option<IpAddr>,
        port: u16,
        url: String,
    ) -> Self {
        RequestInfo {
            client,
            user,
            groups: Vec::new(),
            user_agent: header(request.headers(), USER_AGENT.as_str()),
            host,
            dest_ip,
            port,
            method: request.method().to_string(),
            url,
        }
    }

    /// With the user's directory groups.
    pub fn with_groups(mut self, groups: Vec<String>) -> Self {
        self.groups = groups;
        self
    }

    pub(crate) fn facts<'a>(&'a self, content_type: Option<&'a str>) -> HttpFacts<'a> {
        HttpFacts {
            client: self.client,
            user: self.user.as_deref(),
            groups: &self.groups,
            user_agent: self.user_agent.as_deref(),
            host: self.host.as_deref(),
            dest_ip: self.dest_ip,
            port: self.port,
            method: &self.method,
            url: &self.url,
            content_type,
        }
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Why the pipeline answers with the block page, and what the log says.
#[derive(Debug)]
pub struct Blocked {
    pub reason: BlockReason,
    pub status: StatusCode,
    pub detail: String,
    pub rule: String,
    pub verdict: &'static str,
    pub threat: Option<String>,
    /// Boxed: rare, and the whole `Blocked` travels in `Result`s.
    pub failure: Option<Box<Failure>>,
}

impl Blocked {
    fn by_rule(rule: String) -> Self {
        Blocked {
            reason: BlockReason::Rule,
            status: StatusCode::FORBIDDEN,
            detail: format!("An HTTP rule of your organisation (\u{201c}{rule}\u{201d}) does not allow this request."),
            rule,
            verdict: "blocked",
            threat: None,
            failure: None,
        }
    }

    fn by_scan(cause: BlockCause, rule: &str) -> Self {
        let (detail, threat, failure) = match &cause {
            BlockCause::Virus { threat } => (
                format!("The content contains the threat {threat}."),
                Some(threat.clone()),
                None,
            ),
            BlockCause::Oversize => (
                "The content is too large to be scanned for viruses.".to_string(),
                None,
                None,
            ),
            BlockCause::ScanFailed(e) => (
                "The virus scanner could not check this content, so it was held back.".to_string(),
                None,
                Some(Box::new(scan_failed(e))),
            ),
        };
        Blocked {
            reason: match cause {
                BlockCause::Virus { .. } => BlockReason::Virus,
                BlockCause::Oversize => BlockReason::Oversize,
                BlockCause::ScanFailed(_) => BlockReason::ScanFailed,
            },
            status: cause.status(),
            detail,
            rule: rule.to_string(),
            verdict: cause.verdict(),
            threat,
            failure,
        }
    }
}

/// The request passed: whether its bodies are to be scanned, and the deciding rule.
pub struct Passed {
    pub scan: bool,
    /// An `allow-unscanned` rule decided: the record says `unscanned` whether or not an
    /// engine is configured (SPEC §3.1).
    pub skipped_by_rule: bool,
    pub rule: String,
}

/// HTTP rules then Anti-Phishing (SPEC §3 steps 1–2).
pub fn check_request(proxy: &Proxy, info: &RequestInfo) -> Result<Passed, Blocked> {
    let policy = &proxy.config.policy;
    let decision = policy.decide_http_request(&info.facts(None));
    match decision.action {
        HttpAction::Block => Err(Blocked::by_rule(decision.rule)),
        HttpAction::AllowUnscanned => Ok(Passed {
            scan: false,
            skipped_by_rule: true,
            rule: decision.rule,
        }),
        HttpAction::Allow => {
            if let Some(entry) = policy.phishing().check(&info.url) {
                return Err(Blocked {
                    reason: BlockReason::Phishing,
                    status: StatusCode::FORBIDDEN,
                    detail: format!("This address is on a phishing list ({entry})."),
                    rule: decision.rule,
                    verdict: "phishing",
                    threat: None,
                    failure: None,
                });
            }
            Ok(Passed {
                scan: proxy.scanner.is_enabled(),
                skipped_by_rule: false,
                rule: decision.rule,
            })
        }
    }
}

/// Ask for the whole entity when its body is to be scanned: with `Range` a client could
/// fetch a file past the engine in pieces, none of which is the threat.
pub fn request_whole_entity(headers: &mut HeaderMap) {
    headers.remove(RANGE);
    headers.remove(IF_RANGE);
}

/// What a passed body carries into the log.
#[derive(Debug, Default)]
pub struct ScanNote {
    /// The scan was skipped (oversize allowed, engine failure allowed).
    pub unscanned: bool,
    pub failure: Option<Failure>,
}

/// Hold an upload until the engine has seen it (`anti_virus.scan_uploads`).
pub async fn scan_upload(
    proxy: &Proxy,
    request: Request<ProxyBody>,
    rule: &str,
) -> Result<(Request<ProxyBody>, ScanNote), Blocked> {
    let (mut parts, body) = request.into_parts();
    let held = hold(&proxy.spooler, body)
        .await
        .map_err(|e| Blocked::by_scan(BlockCause::ScanFailed(ScanError::Spool(e)), rule))?;
    let (body, note) = match held {
        Held::Whole(spooled) => {
            let outcome = match decoded(proxy, &mut parts.headers, &spooled).await {
                Ok((scanned, encoding)) => {
                    let scanning: Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
                        Box::pin(proxy.scanner.scan_request(&parts, &scanned));
                    let outcome = scanning.await;
                    restore(&mut parts.headers, encoding);
                    outcome
                }
                Err(outcome) => outcome,
            };
            let note = judge(&proxy.config.settings.anti_virus, outcome, rule)?;
            (boxed(spooled.reader()), note)
        }
        Held::Unspooled { rest, outcome } => (
            rest,
            judge(&proxy.config.settings.anti_virus, outcome, rule)?,
        ),
    };
    Ok((Request::from_parts(parts, body), note))
}

/// HTTP rules on the content type, then Anti-Virus on the body (SPEC §3 steps 1 and 3).
/// `request`: the request's head, which ICAP sends along; present when `passed.scan`.
pub async fn check_response(
    proxy: &Proxy,
    info: &RequestInfo,
    mut passed: Passed,
    request: Option<&request::Parts>,
    response: Response<ProxyBody>,
) -> Result<(Response<ProxyBody>, ScanNote, String), Blocked> {
    let content_type = header(response.headers(), CONTENT_TYPE.as_str());
    if let Some(decision) = proxy
        .config
        .policy
        .decide_http_response(&info.facts(content_type.as_deref()))
    {
        match decision.action {
            HttpAction::Block => return Err(Blocked::by_rule(decision.rule)),
            HttpAction::AllowUnscanned => {
                passed.scan = false;
                passed.skipped_by_rule = true;
            }
            HttpAction::Allow => {}
        }
        passed.rule = decision.rule;
    }
    // An empty body has nothing to scan; a rule that skips scanning leaves it unscanned.
    let request = match request {
        Some(request) if passed.scan && !response.body().is_end_stream() => request,
        _ => {
            let note = ScanNote {
                unscanned: passed.skipped_by_rule,
                failure: None,
            };
            return Ok((response, note, passed.rule));
        }
    };
    let (mut parts, body) = response.into_parts();
    let held = hold(&proxy.spooler, body)
        .await
        .map_err(|e| Blocked::by_scan(BlockCause::ScanFailed(ScanError::Spool(e)), &passed.rule))?;
    let (body, note) = match held {
        Held::Whole(spooled) => {
            let outcome = match decoded(proxy, &mut parts.headers, &spooled).await {
                Ok((scanned, encoding)) => {
                    let scanning: Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> =
                        Box::pin(proxy.scanner.scan_response(request, &parts, &scanned));
                    let outcome = scanning.await;
                    restore(&mut parts.headers, encoding);
                    outcome
                }
                Err(outcome) => outcome,
            };
            let note = judge(&proxy.config.settings.anti_virus, outcome, &passed.rule)?;
            // The length is known now: say so rather than chunk it.
            parts.headers.insert(CONTENT_LENGTH, spooled.len().into());
            (boxed(spooled.reader()), note)
        }
        Held::Unspooled { rest, outcome } => (
            rest,
            judge(&proxy.config.settings.anti_virus, outcome, &passed.rule)?,
        ),
    };
    Ok((Response::from_parts(parts, body), note, passed.rule))
}

/// What the engine is to scan of `spooled`: the body itself, or, when `headers` say it
/// is encoded, the body decoded, with `Content-Encoding` taken out of `headers` (the
/// engine gets the message as decoded; [`restore`] puts the header back). A body that
/// cannot be decoded, or decodes to more than `max_scan_size`, is an outcome at once.
async fn decoded(
    proxy: &Proxy,
    headers: &mut HeaderMap,
    spooled: &SpooledBody,
) -> Result<(SpooledBody, Vec<HeaderValue>), ScanOutcome> {
    let codings = decode::codings(
        headers
            .get_all(CONTENT_ENCODING)
            .iter()
            .map(|v| v.as_bytes()),
    )
    .map_err(decode_failed)?;
    if codings.is_empty() {
        return Ok((spooled.clone(), Vec::new()));
    }
    let body = decode::decode(spooled, &codings, &proxy.spooler)
        .await
        .map_err(decode_failed)?;
    let encoding = headers.get_all(CONTENT_ENCODING).iter().cloned().collect();
    headers.remove(CONTENT_ENCODING);
    Ok((body, encoding))
}

fn decode_failed(e: DecodeError) -> ScanOutcome {
    match e {
        DecodeError::TooLarge(_) => ScanOutcome::Oversize,
        DecodeError::Full(SpoolError::Full { total, .. }) => {
            ScanOutcome::Failed(ScanError::SpoolFull { total })
        }
        e => ScanOutcome::Failed(ScanError::Encoding(e.to_string())),
    }
}

/// Put back the `Content-Encoding` values [`decoded`] took out.
fn restore(headers: &mut HeaderMap, encoding: Vec<HeaderValue>) {
    for value in encoding {
        headers.append(CONTENT_ENCODING, value);
    }
}

/// An engine failure (SPEC §3.3 `on_error`), its error in the log.
fn scan_failed(error: &impl std::fmt::Display) -> Failure {
    Kind::ScanFailed
        .at(Phase::Http)
        .with_detail(error.to_string())
}

fn judge(av: &AntiVirusSettings, outcome: ScanOutcome, rule: &str) -> Result<ScanNote, Blocked> {
    match AvVerdict::decide(outcome, av) {
        AvVerdict::Pass { unscanned, error } => Ok(ScanNote {
            unscanned,
            failure: error.map(|e| scan_failed(&e)),
        }),
        AvVerdict::Block(cause) => Err(Blocked::by_scan(cause, rule)),
    }
}

enum Held {
    /// The whole body, within `max_scan_size`.
    Whole(SpooledBody),
    /// Over `max_scan_size` (outcome `Oversize`), or more than the spool has room for
    /// (an engine failure): what was held, then the rest, to pass on unscanned if the
    /// policy allows.
    Unspooled {
        rest: ProxyBody,
        outcome: ScanOutcome,
    },
}

/// Spool a body up to `max_scan_size`, within `max_spool_total`.
async fn hold(spooler: &Spooler, mut body: ProxyBody) -> std::io::Result<Held> {
    let mut writer = spooler.writer();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        let Ok(data) = frame.into_data() else {
            // Trailers of a scanned body are not relayed.
            continue;
        };
        let (rejected, outcome) = match writer.push(data).await {
            Ok(()) => continue,
            Err(SpoolError::TooLarge { rejected, .. }) => (rejected, ScanOutcome::Oversize),
            Err(SpoolError::Full { rejected, total }) => (
                rejected,
                ScanOutcome::Failed(ScanError::SpoolFull { total }),
            ),
            Err(SpoolError::Io(e)) => return Err(e),
        };
        let held = writer.finish().await?;
        let rest = Chain {
            held: Some(held.reader()),
            rejected: Some(rejected),
            rest: body,
        };
        return Ok(Held::Unspooled {
            rest: boxed(rest),
            outcome,
        });
    }
    Ok(Held::Whole(writer.finish().await?))
}

/// An oversize body passed on: the spooled start, the chunk that overflowed, the rest.
struct Chain {
    held: Option<SpoolReader>,
    rejected: Option<Bytes>,
    rest: ProxyBody,
}

impl Body for Chain {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(held) = self.held.as_mut() {
            match Pin::new(held).poll_frame(cx) {
                Poll::Ready(None) => self.held = None,
                Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame.map_err(Into::into))),
                Poll::Pending => return Poll::Pending,
            }
        }
        if let Some(rejected) = self.rejected.take() {
            return Poll::Ready(Some(Ok(Frame::data(rejected))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}
