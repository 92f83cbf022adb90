//! The one interface the data path calls to scan a body, whatever the engine
//! (`anti_virus.engine`), and what it does with the outcome (SPEC §3 step 3).
//!
//! [`Scanner`] is built from [`AntiVirusSettings`]; its scans never return an error,
//! only a [`ScanOutcome`] (the engine's failures are an outcome, decided by
//! `on_error`), and never take longer than `anti_virus.timeout`. [`AvVerdict::decide`]
//! turns an outcome into what the data path does: forward the body or answer with a
//! block page, with the log's verdict.

use http::{request, response};
use sluice_policy::{AntiVirusSettings, AvEngine, OnOversize, OnScanError};

use crate::clamd::ClamdClient;
use crate::icap::IcapClient;
use crate::scan::{ScanError, ScanOutcome};
use crate::spool::SpooledBody;

/// The configured engine. Cheap to clone (clients share their connections and cached
/// options); build one per configuration load.
#[derive(Clone, Debug)]
pub enum Scanner {
    /// `engine = "none"`: nothing is scanned.
    None,
    /// An ICAP client.
    Icap(IcapClient),
    /// A clamd client.
    Clamd(ClamdClient),
}

impl Scanner {
    /// The scanner for `[anti_virus]`. Nothing is contacted yet: see
    /// [`Scanner::check`].
    pub fn new(settings: &AntiVirusSettings) -> Scanner {
        match &settings.engine {
            AvEngine::None => Scanner::None,
            AvEngine::Icap(service) => Scanner::Icap(IcapClient::new(service, settings.timeout)),
            AvEngine::Clamd(address) => {
                Scanner::Clamd(ClamdClient::new(address.clone(), settings.timeout))
            }
        }
    }

    /// Whether bodies are scanned at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(self, Scanner::None)
    }

    /// Contact the engine once, at start or reload, so that a misconfiguration shows in
    /// the diagnostics: ICAP `OPTIONS` (cached for the scans that follow), clamd `PING`.
    pub async fn check(&self) -> Result<(), ScanError> {
        match self {
            Scanner::None => Ok(()),
            Scanner::Icap(client) => client.refresh_options().await.map(drop),
            Scanner::Clamd(client) => client.ping().await,
        }
    }

    /// Scan a response body before any of it is forwarded (ICAP `RESPMOD`).
    pub async fn scan_response(
        &self,
        request: &request::Parts,
        response: &response::Parts,
        body: &SpooledBody,
    ) -> ScanOutcome {
        match self {
            Scanner::None => ScanOutcome::Clean,
            Scanner::Icap(client) => client.scan_response(request, response, body).await,
            Scanner::Clamd(client) => client.scan(body).await,
        }
    }

    /// Scan a request body, an upload, before any of it is sent upstream (ICAP
    /// `REQMOD`; only with `anti_virus.scan_uploads`).
    pub async fn scan_request(&self, request: &request::Parts, body: &SpooledBody) -> ScanOutcome {
        match self {
            Scanner::None => ScanOutcome::Clean,
            Scanner::Icap(client) => client.scan_request(request, body).await,
            Scanner::Clamd(client) => client.scan(body).await,
        }
    }
}

/// What the data path does with a body after the scan, per SPEC §3 step 3.
#[derive(Debug)]
pub enum AvVerdict {
    /// Forward the body.
    Pass {
        /// Whether it was let through unscanned (log verdict `unscanned`, else
        /// `allowed`).
        unscanned: bool,
        /// The engine's failure when `on_error = "allow"` let it through (the log's
        /// `error`).
        error: Option<ScanError>,
    },
    /// Answer with the block page.
    Block(BlockCause),
}

/// Why a scan blocks a body.
#[derive(Debug)]
pub enum BlockCause {
    /// Infected: 403, reason `virus`, verdict `infected`.
    Virus {
        /// The threat's name, for the page and the log's `threat`.
        threat: String,
    },
    /// Too large and `on_oversize = "block"`: 403, reason `oversize`, verdict
    /// `blocked`.
    Oversize,
    /// The engine failed and `on_error = "block"`: 503, reason `scan_failed`, verdict
    /// `scan_failed`.
    ScanFailed(ScanError),
}

impl BlockCause {
    /// The block page's HTTP status.
    pub fn status(&self) -> http::StatusCode {
        match self {
            BlockCause::Virus { .. } | BlockCause::Oversize => http::StatusCode::FORBIDDEN,
            BlockCause::ScanFailed(_) => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The block reason (`X-Sluice-Block`, `{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            BlockCause::Virus { .. } => "virus",
            BlockCause::Oversize => "oversize",
            BlockCause::ScanFailed(_) => "scan_failed",
        }
    }

    /// The access log's `verdict`.
    pub fn verdict(&self) -> &'static str {
        match self {
            BlockCause::Virus { .. } => "infected",
            BlockCause::Oversize => "blocked",
            BlockCause::ScanFailed(_) => "scan_failed",
        }
    }
}

impl AvVerdict {
    /// Apply `on_oversize` and `on_error` to an outcome. The data path also calls this
    /// with [`ScanOutcome::Oversize`] when a body is over `max_scan_size` (it is then not
    /// sent to the engine at all).
    pub fn decide(outcome: ScanOutcome, settings: &AntiVirusSettings) -> AvVerdict {
        match outcome {
            ScanOutcome::Clean => AvVerdict::Pass {
                unscanned: false,
                error: None,
            },
            ScanOutcome::Infected { threat } => AvVerdict::Block(BlockCause::Virus { threat }),
            ScanOutcome::Oversize => match settings.on_oversize {
                OnOversize::Allow => AvVerdict::Pass {
                    unscanned: true,
                    error: None,
                },
                OnOversize::Block => AvVerdict::Block(BlockCause::Oversize),
            },
            ScanOutcome::Failed(error) => match settings.on_error {
                OnScanError::Allow => AvVerdict::Pass {
                    unscanned: true,
                    error: Some(error),
                },
                OnScanError::Block => AvVerdict::Block(BlockCause::ScanFailed(error)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::time::Duration;

    use super::*;

    fn settings(on_oversize: OnOversize, on_error: OnScanError) -> AntiVirusSettings {
        AntiVirusSettings {
            engine: AvEngine::None,
            max_scan_size: 1,
            on_oversize,
            on_error,
            scan_uploads: false,
            timeout: Duration::from_secs(1),
            max_spool_total: 1,
        }
    }

    fn failed() -> ScanOutcome {
        ScanOutcome::Failed(ScanError::Timeout(Duration::from_secs(1)))
    }

    #[test]
    fn verdicts_follow_on_oversize_and_on_error() {
        let lenient = settings(OnOversize::Allow, OnScanError::Allow);
        let strict = settings(OnOversize::Block, OnScanError::Block);
        assert!(matches!(
            AvVerdict::decide(ScanOutcome::Clean, &strict),
            AvVerdict::Pass {
                unscanned: false,
                error: None
            }
        ));
        let infected = || ScanOutcome::Infected {
            threat: "Eicar".into(),
        };
        for s in [&lenient, &strict] {
            match AvVerdict::decide(infected(), s) {
                AvVerdict::Block(cause) => {
                    assert_eq!(
                        (cause.status().as_u16(), cause.reason(), cause.verdict()),
                        (403, "virus", "infected")
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            AvVerdict::decide(ScanOutcome::Oversize, &lenient),
            AvVerdict::Pass {
                unscanned: true,
                error: None
            }
        ));
        match AvVerdict::decide(ScanOutcome::Oversize, &strict) {
            AvVerdict::Block(cause) => assert_eq!(
                (cause.status().as_u16(), cause.reason(), cause.verdict()),
                (403, "oversize", "blocked")
            ),
            other => panic!("{other:?}"),
        }
        match AvVerdict::decide(failed(), &lenient) {
            AvVerdict::Pass {
                unscanned: true,
                error: Some(e),
            } => assert!(e.is_timeout()),
            other => panic!("{other:?}"),
        }
        match AvVerdict::decide(failed(), &strict) {
            AvVerdict::Block(cause) => assert_eq!(
                (cause.status().as_u16(), cause.reason(), cause.verdict()),
                (503, "scan_failed", "scan_failed")
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_kinds_are_stable_names() {
        let connect = ScanError::Connect {
            address: "127.0.0.1:1344".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(connect.kind(), "connect");
        assert!(connect
            .to_string()
            .starts_with("cannot connect to the scan engine at 127.0.0.1:1344: "));
        assert_eq!(ScanError::Protocol("x".into()).kind(), "protocol");
        assert_eq!(ScanError::Refused("x".into()).kind(), "refused");
        assert_eq!(ScanError::Io(io::ErrorKind::BrokenPipe.into()).kind(), "io");
        assert_eq!(
            ScanError::Spool(io::ErrorKind::NotFound.into()).kind(),
            "spool"
        );
        assert!(!Scanner::new(&settings(OnOversize::Allow, OnScanError::Allow)).is_enabled());
    }
}
