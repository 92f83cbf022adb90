//! The inspection pipeline of SPEC §3, the same for plain HTTP and for requests inside
//! bumped connections: HTTP rules on the request, Anti-Phishing, Anti-Virus on uploads
//! (with `scan_uploads`), HTTP rules on the response's content type, Anti-Virus on the
//! response body. A scanned body is held in a spool until the engine's verdict: not a
//! byte of it reaches the other side before.
//!
//! What is scanned is what the client would get: a scanned request asks for the whole
//! entity (no `Range`), and an encoded body is decoded for the engine while the client
//! gets it as it came.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, IF_RANGE, RANGE, USER_AGENT};
use http::{request, response, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use sluice_inspect::decode::{self, DecodeError};
use sluice_inspect::{
    AvVerdict, BlockCause, ScanError, ScanOutcome, Scanner, SpoolError, SpoolReader, SpooledBody,
    Spooler,
};
use sluice_policy::{AntiVirusSettings, HttpAction, HttpFacts, Policy};

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

/// What the inspection phase needs of a configuration generation: the HTTP rules and
/// the anti-phishing lists, `[anti_virus]`, its engine, and the spool bodies wait in for
/// the verdict. Borrowed, so that a component test builds it without a whole generation.
#[derive(Clone, Copy)]
pub struct Inspector<'a> {
    pub policy: &'a Policy,
    pub anti_virus: &'a AntiVirusSettings,
    pub scanner: &'a Scanner,
    pub spooler: &'a Spooler,
}

impl<'a> Inspector<'a> {
    /// The inspection of `proxy`'s generation.
    pub fn of(proxy: &'a Proxy) -> Self {
        Inspector {
            policy: &proxy.config.policy,
            anti_virus: &proxy.config.settings.anti_virus,
            scanner: &proxy.scanner,
            spooler: &proxy.spooler,
        }
    }

    /// HTTP rules then Anti-Phishing (SPEC §3 steps 1–2).
    pub fn check_request(&self, info: &RequestInfo) -> Result<Passed, Blocked> {
        let decision = self.policy.decide_http_request(&info.facts(None));
        match decision.action {
            HttpAction::Block => Err(Blocked::by_rule(decision.rule)),
            HttpAction::AllowUnscanned => Ok(Passed {
                scan: false,
                skipped_by_rule: true,
                rule: decision.rule,
            }),
            HttpAction::Allow => {
                if let Some(entry) = self.policy.phishing().check(&info.url) {
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
                    scan: self.scanner.is_enabled(),
                    skipped_by_rule: false,
                    rule: decision.rule,
                })
            }
        }
    }

    /// Hold an upload until the engine has seen it (`anti_virus.scan_uploads`).
    pub async fn scan_upload(
        &self,
        request: Request<ProxyBody>,
        rule: &str,
    ) -> Result<(Request<ProxyBody>, ScanNote), Blocked> {
        let (mut parts, body) = request.into_parts();
        let (body, note, _) = self.scan_body(&mut parts, body, rule).await?;
        Ok((Request::from_parts(parts, body), note))
    }

    /// HTTP rules on the content type, then Anti-Virus on the body (SPEC §3 steps 1 and
    /// 3). `request`: the request's head, which ICAP sends along; present when
    /// `passed.scan`.
    pub async fn check_response(
        &self,
        info: &RequestInfo,
        mut passed: Passed,
        request: Option<&request::Parts>,
        response: Response<ProxyBody>,
    ) -> Result<(Response<ProxyBody>, ScanNote, String), Blocked> {
        self.apply_content_type_rules(info, &mut passed, response.headers())?;
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
        let (parts, body) = response.into_parts();
        let mut head = ResponseHead { request, parts };
        let (body, note, scanned_len) = self.scan_body(&mut head, body, &passed.rule).await?;
        if let Some(len) = scanned_len {
            // The length is known now: say so rather than chunk it.
            head.parts.headers.insert(CONTENT_LENGTH, len.into());
        }
        Ok((Response::from_parts(head.parts, body), note, passed.rule))
    }

    /// The HTTP rules on the response's content type: a block, or `passed` with the rule
    /// that decided (and no scan when it is `allow-unscanned`). No rule matching leaves
    /// `passed` as the request's rules made it.
    fn apply_content_type_rules(
        &self,
        info: &RequestInfo,
        passed: &mut Passed,
        headers: &HeaderMap,
    ) -> Result<(), Blocked> {
        let content_type = header(headers, CONTENT_TYPE.as_str());
        let facts = info.facts(content_type.as_deref());
        let Some(decision) = self.policy.decide_http_response(&facts) else {
            return Ok(());
        };
        match decision.action {
            HttpAction::Block => return Err(Blocked::by_rule(decision.rule)),
            HttpAction::AllowUnscanned => {
                passed.scan = false;
                passed.skipped_by_rule = true;
            }
            HttpAction::Allow => {}
        }
        passed.rule = decision.rule;
        Ok(())
    }

    /// Hold `body` until the engine's verdict on it, and apply `on_oversize` and
    /// `on_error`: the body to pass on, what the log notes, and the body's length when
    /// it was held whole.
    async fn scan_body(
        &self,
        head: &mut impl ScannedHead,
        body: ProxyBody,
        rule: &str,
    ) -> Result<(ProxyBody, ScanNote, Option<u64>), Blocked> {
        let held = hold(self.spooler, body)
            .await
            .map_err(|e| Blocked::by_scan(BlockCause::ScanFailed(ScanError::Spool(e)), rule))?;
        match held {
            Held::Whole(spooled) => {
                let outcome = self.scan_decoded(head, &spooled).await;
                let note = judge(self.anti_virus, outcome, rule)?;
                Ok((boxed(spooled.reader()), note, Some(spooled.len())))
            }
            Held::Unspooled { rest, outcome } => {
                Ok((rest, judge(self.anti_virus, outcome, rule)?, None))
            }
        }
    }

    /// The engine's outcome on `spooled` as the client would get it: decoded, with the
    /// head's `Content-Encoding` taken out for the scan and put back after it.
    async fn scan_decoded(
        &self,
        head: &mut impl ScannedHead,
        spooled: &SpooledBody,
    ) -> ScanOutcome {
        match decoded(self.spooler, head.headers_mut(), spooled).await {
            Ok((scanned, encoding)) => {
                let outcome = head.scan(self.scanner, &scanned).await;
                restore(head.headers_mut(), encoding);
                outcome
            }
            Err(outcome) => outcome,
        }
    }
}

/// A message head whose body the engine scans: an upload (ICAP `REQMOD`), or a response
/// with the request it answers (`RESPMOD`).
trait ScannedHead {
    fn headers_mut(&mut self) -> &mut HeaderMap;

    /// Boxed: the engine's future is large and would otherwise sit in every request's.
    fn scan<'s>(
        &'s self,
        scanner: &'s Scanner,
        body: &'s SpooledBody,
    ) -> Pin<Box<dyn Future<Output = ScanOutcome> + Send + 's>>;
}

impl ScannedHead for request::Parts {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    fn scan<'s>(
        &'s self,
        scanner: &'s Scanner,
        body: &'s SpooledBody,
    ) -> Pin<Box<dyn Future<Output = ScanOutcome> + Send + 's>> {
        Box::pin(scanner.scan_request(self, body))
    }
}

struct ResponseHead<'r> {
    request: &'r request::Parts,
    parts: response::Parts,
}

impl ScannedHead for ResponseHead<'_> {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.parts.headers
    }

    fn scan<'s>(
        &'s self,
        scanner: &'s Scanner,
        body: &'s SpooledBody,
    ) -> Pin<Box<dyn Future<Output = ScanOutcome> + Send + 's>> {
        Box::pin(scanner.scan_response(self.request, &self.parts, body))
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

/// What the engine is to scan of `spooled`: the body itself, or, when `headers` say it
/// is encoded, the body decoded, with `Content-Encoding` taken out of `headers` (the
/// engine gets the message as decoded; [`restore`] puts the header back). A body that
/// cannot be decoded, or decodes to more than `max_scan_size`, is an outcome at once.
async fn decoded(
    spooler: &Spooler,
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
    let body = decode::decode(spooled, &codings, spooler)
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

#[cfg(test)]
mod tests {
    //! The inspection phase built from a configuration text and a clamd of the test's
    //! own on loopback (no configuration generation, no proxy): what the engine flags is
    //! blocked after it has seen the whole body, `on_error` for an engine that is
    //! unreachable or answers garbage, `on_oversize`, and the rules that skip the scan.

    use std::net::Ipv4Addr;
    use std::path::Path;

    use http_body_util::StreamBody;
    use sluice_policy::Config;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;

    const RULES: &str = r#"
[[http_rules]]
name = "no executables"
content_types = ["application/x-msdownload"]
action = "block"

[[http_rules]]
name = "updates"
domains = ["updates.test"]
action = "allow-unscanned"

[[http_rules]]
name = "videos"
content_types = ["video/*"]
action = "allow-unscanned"
"#;

    /// Chunks of one scan the test clamd reads at the most.
    const MAX_CHUNKS: usize = 64;

    /// What an [`Inspector`] borrows, made from `[anti_virus]` with clamd at `port`,
    /// `av` (more `[anti_virus]` keys) and [`RULES`].
    struct Setup {
        config: Config,
        scanner: Scanner,
        spooler: Spooler,
    }

    impl Setup {
        fn new(port: u16, av: &str) -> Setup {
            let text = format!(
                "[anti_virus]\nengine = \"clamd\"\nurl = \"tcp://127.0.0.1:{port}\"\n\
                 timeout = \"5s\"\n{av}\n{RULES}"
            );
            let config = Config::from_str(&text, "inspection.toml", Path::new(""))
                .unwrap_or_else(|errors| panic!("{errors:?}"));
            let anti_virus = &config.settings.anti_virus;
            Setup {
                scanner: Scanner::new(anti_virus),
                spooler: Spooler::new(anti_virus.max_scan_size)
                    .with_total(anti_virus.max_spool_total),
                config,
            }
        }

        fn inspector(&self) -> Inspector<'_> {
            Inspector {
                policy: &self.config.policy,
                anti_virus: &self.config.settings.anti_virus,
                scanner: &self.scanner,
                spooler: &self.spooler,
            }
        }
    }

    /// A clamd on loopback that takes one `INSTREAM` scan, answers `reply`, and hands
    /// back the bytes it was sent.
    async fn clamd(reply: &'static str) -> (u16, oneshot::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sent, received) = oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut command = [0; 10];
            stream.read_exact(&mut command).await.unwrap();
            assert_eq!(&command, b"zINSTREAM\0");
            let mut body = Vec::new();
            for _ in 0..MAX_CHUNKS {
                let len = stream.read_u32().await.unwrap() as usize;
                if len == 0 {
                    stream.write_all(reply.as_bytes()).await.unwrap();
                    stream.write_all(b"\0").await.unwrap();
                    let _ = sent.send(body);
                    return;
                }
                let start = body.len();
                body.resize(start + len, 0);
                stream.read_exact(&mut body[start..]).await.unwrap();
            }
            panic!("no end of the stream within {MAX_CHUNKS} chunks");
        });
        (port, received)
    }

    /// The bytes the test clamd was sent, within the scan's timeout.
    async fn what_the_engine_saw(seen: oneshot::Receiver<Vec<u8>>) -> Vec<u8> {
        let within = std::time::Duration::from_secs(5);
        let seen = tokio::time::timeout(within, seen).await;
        seen.expect("the engine was not asked")
            .expect("the engine saw the whole scan")
    }

    /// A loopback port where nothing listens.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn info(host: &str) -> RequestInfo {
        RequestInfo {
            client: Ipv4Addr::LOCALHOST.into(),
            user: None,
            groups: Vec::new(),
            user_agent: None,
            host: Some(host.to_string()),
            dest_ip: None,
            port: 80,
            method: "GET".to_string(),
            url: format!("http://{host}/file"),
        }
    }

    fn request_head(info: &RequestInfo) -> request::Parts {
        Request::get(&info.url).body(()).unwrap().into_parts().0
    }

    /// A body in `chunks`, as a peer sends it (its length unknown).
    fn streamed(chunks: &[&'static str]) -> ProxyBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|&chunk| Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
            .collect();
        boxed(StreamBody::new(futures_util::stream::iter(frames)))
    }

    fn response(content_type: &str, chunks: &[&'static str]) -> Response<ProxyBody> {
        let mut response = Response::new(streamed(chunks));
        let value = HeaderValue::from_str(content_type).unwrap();
        response.headers_mut().insert(CONTENT_TYPE, value);
        response
    }

    /// The request rules, then the response's content-type rules and scan.
    async fn inspect(
        setup: &Setup,
        host: &str,
        response: Response<ProxyBody>,
    ) -> Result<(Response<ProxyBody>, ScanNote, String), Blocked> {
        let inspector = setup.inspector();
        let info = info(host);
        let passed = inspector.check_request(&info)?;
        let head = request_head(&info);
        inspector
            .check_response(&info, passed, Some(&head), response)
            .await
    }

    async fn body_of(response: Response<ProxyBody>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    /// The block page's reason and status, and the log's verdict.
    fn shown(blocked: &Blocked) -> (BlockReason, u16, &'static str) {
        (blocked.reason, blocked.status.as_u16(), blocked.verdict)
    }

    /// The engine's failure that an `on_error = "block"` block carries (503, `scan_failed`).
    fn engine_failure(blocked: Blocked) -> Failure {
        assert_eq!(
            shown(&blocked),
            (BlockReason::ScanFailed, 503, "scan_failed")
        );
        let failure = *blocked.failure.expect("the engine's error");
        assert_eq!(failure.kind, Kind::ScanFailed);
        failure
    }

    const EICAR: [&str; 2] = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR",
        "-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*",
    ];

    // The engine sees the whole body before the verdict, and its threat is the block's.
    #[tokio::test]
    async fn a_body_the_engine_flags_is_blocked_as_infected() {
        let (port, seen) = clamd("stream: Eicar-Test-Signature FOUND").await;
        let setup = Setup::new(port, "");
        let Err(blocked) = inspect(&setup, "www.test", response("text/plain", &EICAR)).await else {
            panic!("an infected body passed");
        };
        assert_eq!(shown(&blocked), (BlockReason::Virus, 403, "infected"));
        assert_eq!(blocked.threat.as_deref(), Some("Eicar-Test-Signature"));
        assert_eq!(blocked.rule, "default");
        assert!(blocked.failure.is_none());
        assert_eq!(what_the_engine_saw(seen).await, EICAR.concat().as_bytes());
    }

    // A clean body goes on whole, with the length it turned out to have.
    #[tokio::test]
    async fn a_clean_body_passes_with_its_length() {
        let (port, seen) = clamd("stream: OK").await;
        let setup = Setup::new(port, "");
        let chunks = ["clean ", "text"];
        let Ok((passed, note, rule)) =
            inspect(&setup, "www.test", response("text/plain", &chunks)).await
        else {
            panic!("a clean body was blocked");
        };
        assert_eq!(
            (note.unscanned, note.failure, rule.as_str()),
            (false, None, "default")
        );
        assert_eq!(passed.headers()[CONTENT_LENGTH], "10");
        assert_eq!(body_of(passed).await, "clean text");
        assert_eq!(what_the_engine_saw(seen).await, b"clean text");
    }

    // The upload scan holds a flagged upload back (REQMOD's counterpart on clamd).
    #[tokio::test]
    async fn an_upload_the_engine_flags_is_blocked() {
        let (port, seen) = clamd("stream: Eicar-Test-Signature FOUND").await;
        let setup = Setup::new(port, "scan_uploads = true");
        let upload = Request::post("http://www.test/upload")
            .body(streamed(&EICAR))
            .unwrap();
        let Err(blocked) = setup.inspector().scan_upload(upload, "default").await else {
            panic!("an infected upload passed");
        };
        assert_eq!(shown(&blocked), (BlockReason::Virus, 403, "infected"));
        assert_eq!(what_the_engine_saw(seen).await, EICAR.concat().as_bytes());
    }

    // `on_error`: an engine nobody answers at blocks (503) or lets the body through
    // unscanned, the engine's error in the log either way.
    #[tokio::test]
    async fn an_unreachable_engine_blocks_or_passes_per_on_error() {
        let port = closed_port().await;
        let cannot_connect = "scan_failed: cannot connect to the scan engine at 127.0.0.1:";

        let strict = Setup::new(port, "on_error = \"block\"");
        let Err(blocked) = inspect(&strict, "www.test", response("text/plain", &["x"])).await
        else {
            panic!("passed without an engine");
        };
        let failure = engine_failure(blocked);
        assert!(
            failure.log_text().starts_with(cannot_connect),
            "{}",
            failure.log_text()
        );

        let lenient = Setup::new(port, "on_error = \"allow\"");
        let Ok((passed, note, _)) =
            inspect(&lenient, "www.test", response("text/plain", &["x"])).await
        else {
            panic!("on_error = allow blocked");
        };
        assert!(note.unscanned);
        let failure = note.failure.expect("the engine's error");
        assert!(
            failure.log_text().starts_with(cannot_connect),
            "{}",
            failure.log_text()
        );
        assert_eq!(body_of(passed).await, "x");
    }

    // An engine that answers what clamd never says has failed: `on_error` decides.
    #[tokio::test]
    async fn a_garbage_answer_is_an_engine_failure() {
        let (port, _seen) = clamd("HELLO").await;
        let setup = Setup::new(port, "on_error = \"block\"");
        let Err(blocked) = inspect(&setup, "www.test", response("text/plain", &["x"])).await else {
            panic!("garbage passed for a verdict");
        };
        let failure = engine_failure(blocked);
        assert!(
            failure
                .log_text()
                .contains("unexpected clamd reply `HELLO`"),
            "{}",
            failure.log_text()
        );
    }

    // Over `max_scan_size` the engine is not asked (it is unreachable, with
    // `on_error = "block"`): `on_oversize` passes the whole body on, unscanned and in
    // order, or blocks it.
    #[tokio::test]
    async fn an_oversize_body_passes_unscanned_or_is_blocked_per_on_oversize() {
        let port = closed_port().await;
        let chunks = ["0123456789", "abcdefghij", "KLMNOPQRST"];
        let av = "on_error = \"block\"\nmax_scan_size = 16";

        let lenient = Setup::new(port, &format!("{av}\non_oversize = \"allow\""));
        let Ok((passed, note, _)) =
            inspect(&lenient, "www.test", response("text/plain", &chunks)).await
        else {
            panic!("on_oversize = allow blocked");
        };
        assert_eq!((note.unscanned, note.failure), (true, None));
        assert!(passed.headers().get(CONTENT_LENGTH).is_none());
        assert_eq!(body_of(passed).await, chunks.concat());

        let strict = Setup::new(port, &format!("{av}\non_oversize = \"block\""));
        let Err(blocked) = inspect(&strict, "www.test", response("text/plain", &chunks)).await
        else {
            panic!("on_oversize = block passed");
        };
        assert_eq!(shown(&blocked), (BlockReason::Oversize, 403, "blocked"));
    }

    // `allow-unscanned`, on the request or on the content type, keeps the body from
    // the engine (here unreachable, with `on_error = "block"`) and says `unscanned`.
    #[tokio::test]
    async fn allow_unscanned_rules_skip_the_engine() {
        let setup = Setup::new(closed_port().await, "on_error = \"block\"");
        let passed = setup.inspector().check_request(&info("updates.test")).ok();
        let passed = passed.expect("the updates rule allows");
        assert_eq!(
            (passed.scan, passed.skipped_by_rule, passed.rule.as_str()),
            (false, true, "updates")
        );
        for (host, content_type, rule) in [
            ("updates.test", "text/plain", "updates"),
            ("www.test", "video/mp4", "videos"),
        ] {
            let Ok((passed, note, decided)) =
                inspect(&setup, host, response(content_type, &["x"])).await
            else {
                panic!("{host} {content_type} was scanned");
            };
            assert_eq!((note.unscanned, decided.as_str()), (true, rule));
            assert_eq!(body_of(passed).await, "x");
        }
    }

    // A content-type rule blocks the response before any engine is asked.
    #[tokio::test]
    async fn a_content_type_rule_blocks_the_response() {
        let setup = Setup::new(closed_port().await, "on_error = \"allow\"");
        let download = response("application/x-msdownload", &["MZ"]);
        let Err(blocked) = inspect(&setup, "www.test", download).await else {
            panic!("the executable passed");
        };
        assert_eq!(shown(&blocked), (BlockReason::Rule, 403, "blocked"));
        assert_eq!(blocked.rule, "no executables");
    }
}
