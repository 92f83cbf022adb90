//! What one scan gives, whatever the engine: an outcome, or why the engine could not
//! scan. The engines (clamd, ICAP) produce it; [`crate::engine`] decides on it.

use std::io;
use std::time::Duration;

/// The threat name when an ICAP server changed the content without naming a threat.
pub const UNNAMED_THREAT: &str = "unknown";

/// The result of one scan.
#[derive(Debug)]
pub enum ScanOutcome {
    /// Nothing found (or nothing to scan: an empty body, or an ICAP server that asked not
    /// to be sent this file type with `Transfer-Ignore`).
    Clean,
    /// The engine found a threat.
    Infected {
        /// Its name as the engine gives it (`Eicar-Test-Signature`), or
        /// [`UNNAMED_THREAT`].
        threat: String,
    },
    /// The engine refused the body as too large (clamd's `StreamMaxLength`).
    Oversize,
    /// The engine could not scan: down, timing out, or answering nonsense.
    Failed(ScanError),
}

/// Why an engine could not scan. The `Display` text is for the access log's `error`
/// field and diagnostics; callers branch on [`ScanError::kind`].
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The engine could not be reached.
    #[error("cannot connect to the scan engine at {address}: {source}")]
    Connect {
        /// Where it was expected.
        address: String,
        /// The connect error.
        source: io::Error,
    },
    /// No verdict within `anti_virus.timeout`.
    #[error("the scan engine gave no verdict within {0:?}")]
    Timeout(Duration),
    /// The connection failed while scanning (reset, closed early).
    #[error("scan engine connection: {0}")]
    Io(#[from] io::Error),
    /// The engine's answer is not the protocol.
    #[error("the scan engine answered nonsense: {0}")]
    Protocol(String),
    /// The engine answered with an error (an ICAP error status, a clamd `ERROR`, a
    /// service without the needed method).
    #[error("the scan engine refused the scan: {0}")]
    Refused(String),
    /// The spooled body could not be read back.
    #[error("reading the spooled body: {0}")]
    Spool(io::Error),
    /// The body did not fit in `anti_virus.max_spool_total` with the others held.
    #[error("the spool is full: all bodies held together may take at most {total} bytes")]
    SpoolFull {
        /// `anti_virus.max_spool_total`.
        total: u64,
    },
    /// The body's `Content-Encoding` could not be undone for the scan: a coding sluice
    /// does not know, or bytes that are not what the coding says.
    #[error("{0}")]
    Encoding(String),
}

impl ScanError {
    /// A short, stable name of the failure: `connect`, `timeout`, `io`, `protocol`,
    /// `refused`, `spool`, `spool_full` or `encoding`.
    pub fn kind(&self) -> &'static str {
        match self {
            ScanError::Connect { .. } => "connect",
            ScanError::Timeout(_) => "timeout",
            ScanError::Io(_) => "io",
            ScanError::Protocol(_) => "protocol",
            ScanError::Refused(_) => "refused",
            ScanError::Spool(_) => "spool",
            ScanError::SpoolFull { .. } => "spool_full",
            ScanError::Encoding(_) => "encoding",
        }
    }

    /// Whether the engine did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, ScanError::Timeout(_))
    }
}

/// `work`, or [`ScanError::Timeout`] when it takes longer than `timeout`: every engine
/// bounds each exchange with its configured timeout.
pub(crate) async fn within_timeout<T>(
    timeout: Duration,
    work: impl std::future::Future<Output = Result<T, ScanError>>,
) -> Result<T, ScanError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(ScanError::Timeout(timeout)))
}
