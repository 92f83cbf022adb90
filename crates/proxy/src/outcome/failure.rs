//! Every way a connection or a request can fail, as a value: who failed ([`Side`]), in
//! which [`Phase`], and what [`Kind`] of failure it was. [`Kind::code`] is the stable
//! name (the vocabulary of the access log's `error`, documented in
//! docs/configuration.md and checked against [`Kind::ALL`] by a test);
//! [`Failure::log_text`] is what the record's `error` says.

use std::borrow::Cow;

use crate::outcome::block_page::BlockReason;

/// Who failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    /// sluice itself, or a service it depends on (the directory, a missing pool).
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Internal => "internal",
        }
    }
}

/// A phase of a connection or a request, in the SPEC's order. The first six are timed
/// into `sluice_phase_seconds` (see [`Phase::TIMED`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Phase {
    /// Name resolution and TCP connect to the server (or through a parent).
    Dial,
    /// Reading the ClientHello.
    ClientHello,
    /// The TLS handshake with the server and the verification of its chain.
    UpstreamTls,
    /// Minting (or finding in the cache) the replacement certificate.
    Mint,
    /// The TLS handshake with the client.
    ClientTls,
    /// From sending a request upstream to the response head.
    FirstByte,
    /// Reading and checking a request head, authentication, the CONNECT target.
    Request,
    /// Relaying a tunnel's raw bytes.
    Relay,
    /// Serving a request's bodies: inspection, upload and download.
    Http,
}

impl Phase {
    /// The phases with a histogram, in the enum's order.
    pub const TIMED: [Phase; 6] = [
        Phase::Dial,
        Phase::ClientHello,
        Phase::UpstreamTls,
        Phase::Mint,
        Phase::ClientTls,
        Phase::FirstByte,
    ];

    /// The `phase` label of `sluice_phase_seconds`.
    pub fn as_str(self) -> &'static str {
        match self {
            // The metric's label predates the name of the phase.
            Phase::Dial => "connect",
            Phase::ClientHello => "client_hello",
            Phase::UpstreamTls => "upstream_tls",
            Phase::Mint => "mint",
            Phase::ClientTls => "client_tls",
            Phase::FirstByte => "first_byte",
            Phase::Request => "request",
            Phase::Relay => "relay",
            Phase::Http => "http",
        }
    }
}

/// What failed. Each kind has one side; the phase depends on where it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request parser's, the CONNECT target's or the host check's reason; always one
    /// of [`BAD_REQUEST_REASONS`].
    BadRequest(&'static str),
    /// A plain request that is a second CONNECT on its connection.
    ConnectNotFirst,
    /// A plain request whose target is not an absolute `http://` URL.
    NotProxyRequest,
    /// A CONNECT on a transparently intercepted connection.
    ConnectOnTransparent,
    /// A CONNECT without valid proxy credentials (407).
    AuthRequired,
    /// A plain request without valid proxy credentials (407).
    ProxyAuthRequired,
    AuthUnavailable,
    PortNotAllowed,
    ResolveFailed,
    ConnectFailed,
    ConnectTimeout,
    LoopDetected,
    DestinationDenied,
    ParentRefused,
    ParentUnreachable,
    /// A parent proxy named by the policy has no pool (a configuration the checks let by).
    NoParentPool,
    ClientClosed,
    ClientReset,
    NotTls,
    ClientHelloMalformed,
    ClientHelloTooLarge,
    ClientHelloTimeout,
    SniMismatch,
    SniUnverified,
    /// The held ClientHello could not be sent to the server of a tunnel.
    UpstreamWriteFailed,
    IdleTimeout,
    /// A tunnel's relay ended with an I/O error.
    RelayFailed,
    /// Neither the SNI nor the CONNECT host is a name or address TLS can verify.
    BadServerName,
    UpstreamTlsFailed,
    CertError,
    MintFailed,
    /// The HTTP connection over a bump's upstream TLS could not be opened.
    UpstreamHttpFailed,
    ClientRejectedCertificate,
    ClientHandshakeFailed,
    ClientHandshakeTimeout,
    UpstreamResponseTimeout,
    /// A request could not be sent upstream or got no response.
    UpstreamRequestFailed,
    /// The upstream response body ended with an error.
    UpstreamBody,
    ScanFailed,
}

/// How a kind is written in the record's `error`.
enum Form {
    /// The code alone.
    Code,
    /// A fixed sentence (older records wrote these; kept as they were).
    Sentence(&'static str),
    /// `prefix: detail` (the code alone without a detail).
    Prefixed(&'static str),
    /// The detail alone (the error's own text).
    Detail,
}

/// Every reason [`Kind::BadRequest`] carries: the request-head parser's
/// (`http/head.rs`), the CONNECT target's, and the host check's
/// ([`sluice_policy::HostError`]).
pub const BAD_REQUEST_REASONS: [&str; 21] = [
    "bad_request_line",
    "bad_version",
    "bad_header_name",
    "bad_header_value",
    "bad_line_ending",
    "bad_target",
    "bare_lf",
    "too_many_headers",
    "bad_content_length",
    "header_too_large",
    "ambiguous_length",
    "missing_port",
    "bad_port",
    "bad_host",
    "empty_host",
    "bad_ipv6",
    "unbracketed_ipv6",
    "duplicate_host",
    "host_target_mismatch",
    "bad_authority",
    "missing_host",
];

impl Kind {
    /// Every kind but [`Kind::BadRequest`], whose codes are [`Kind::bad_request_codes`].
    pub const ALL: [Kind; 38] = [
        Kind::ConnectNotFirst,
        Kind::NotProxyRequest,
        Kind::ConnectOnTransparent,
        Kind::AuthRequired,
        Kind::ProxyAuthRequired,
        Kind::AuthUnavailable,
        Kind::PortNotAllowed,
        Kind::ResolveFailed,
        Kind::ConnectFailed,
        Kind::ConnectTimeout,
        Kind::LoopDetected,
        Kind::DestinationDenied,
        Kind::ParentRefused,
        Kind::ParentUnreachable,
        Kind::NoParentPool,
        Kind::ClientClosed,
        Kind::ClientReset,
        Kind::NotTls,
        Kind::ClientHelloMalformed,
        Kind::ClientHelloTooLarge,
        Kind::ClientHelloTimeout,
        Kind::SniMismatch,
        Kind::SniUnverified,
        Kind::UpstreamWriteFailed,
        Kind::IdleTimeout,
        Kind::RelayFailed,
        Kind::BadServerName,
        Kind::UpstreamTlsFailed,
        Kind::CertError,
        Kind::MintFailed,
        Kind::UpstreamHttpFailed,
        Kind::ClientRejectedCertificate,
        Kind::ClientHandshakeFailed,
        Kind::ClientHandshakeTimeout,
        Kind::UpstreamResponseTimeout,
        Kind::UpstreamRequestFailed,
        Kind::UpstreamBody,
        Kind::ScanFailed,
    ];

    /// Every code of [`Kind::BadRequest`].
    pub fn bad_request_codes() -> impl Iterator<Item = &'static str> {
        BAD_REQUEST_REASONS.into_iter()
    }

    /// The stable name of the kind: the log's `error` (or the start of it, see
    /// [`Failure::log_text`]).
    pub fn code(self) -> &'static str {
        match self {
            Kind::BadRequest(reason) => reason,
            Kind::ConnectNotFirst => "connect_not_first",
            Kind::NotProxyRequest => "not_proxy_request",
            Kind::ConnectOnTransparent => "connect_on_transparent",
            Kind::AuthRequired => "auth_required",
            Kind::ProxyAuthRequired => "proxy_auth_required",
            Kind::AuthUnavailable => "auth_unavailable",
            Kind::PortNotAllowed => "port_not_allowed",
            Kind::ResolveFailed => "resolve_failed",
            Kind::ConnectFailed => "connect_failed",
            Kind::ConnectTimeout => "connect_timeout",
            Kind::LoopDetected => "loop_detected",
            Kind::DestinationDenied => "destination_denied",
            Kind::ParentRefused => "parent_refused",
            Kind::ParentUnreachable => "parent_unreachable",
            Kind::NoParentPool => "no_parent_pool",
            Kind::ClientClosed => "client_closed",
            Kind::ClientReset => "client_reset",
            Kind::NotTls => "not_tls",
            Kind::ClientHelloMalformed => "client_hello_malformed",
            Kind::ClientHelloTooLarge => "client_hello_too_large",
            Kind::ClientHelloTimeout => "client_hello_timeout",
            Kind::SniMismatch => "sni_mismatch",
            Kind::SniUnverified => "sni_unverified",
            Kind::UpstreamWriteFailed => "upstream_write_failed",
            Kind::IdleTimeout => "idle_timeout",
            Kind::RelayFailed => "relay_failed",
            Kind::BadServerName => "bad_server_name",
            Kind::UpstreamTlsFailed => "upstream_tls_failed",
            Kind::CertError => "cert_error",
            Kind::MintFailed => "mint_failed",
            Kind::UpstreamHttpFailed => "upstream_http_failed",
            Kind::ClientRejectedCertificate => "client_rejected_certificate",
            Kind::ClientHandshakeFailed => "client_handshake_failed",
            Kind::ClientHandshakeTimeout => "client_handshake_timeout",
            Kind::UpstreamResponseTimeout => "upstream_response_timeout",
            Kind::UpstreamRequestFailed => "upstream_request_failed",
            Kind::UpstreamBody => "upstream_body",
            Kind::ScanFailed => "scan_failed",
        }
    }

    /// Who failed.
    pub fn side(self) -> Side {
        match self {
            Kind::BadRequest(_)
            | Kind::ConnectNotFirst
            | Kind::NotProxyRequest
            | Kind::ConnectOnTransparent
            | Kind::AuthRequired
            | Kind::ProxyAuthRequired
            | Kind::PortNotAllowed
            | Kind::LoopDetected
            | Kind::DestinationDenied
            | Kind::ClientClosed
            | Kind::ClientReset
            | Kind::NotTls
            | Kind::ClientHelloMalformed
            | Kind::ClientHelloTooLarge
            | Kind::ClientHelloTimeout
            | Kind::SniMismatch
            | Kind::SniUnverified
            | Kind::BadServerName
            | Kind::ClientRejectedCertificate
            | Kind::ClientHandshakeFailed
            | Kind::ClientHandshakeTimeout => Side::Client,
            Kind::ResolveFailed
            | Kind::ConnectFailed
            | Kind::ConnectTimeout
            | Kind::ParentRefused
            | Kind::ParentUnreachable
            | Kind::UpstreamWriteFailed
            | Kind::IdleTimeout
            | Kind::RelayFailed
            | Kind::UpstreamTlsFailed
            | Kind::CertError
            | Kind::UpstreamHttpFailed
            | Kind::UpstreamResponseTimeout
            | Kind::UpstreamRequestFailed
            | Kind::UpstreamBody => Side::Upstream,
            Kind::AuthUnavailable | Kind::NoParentPool | Kind::MintFailed | Kind::ScanFailed => {
                Side::Internal
            }
        }
    }

    fn form(self) -> Form {
        match self {
            Kind::ConnectNotFirst => {
                Form::Sentence("CONNECT must be the first request on its connection")
            }
            Kind::NotProxyRequest => Form::Sentence(
                "not a proxy request: the target must be an absolute http:// URL (use CONNECT for https)",
            ),
            Kind::ConnectOnTransparent => {
                Form::Sentence("CONNECT is not accepted on a transparent connection")
            }
            Kind::ProxyAuthRequired => Form::Sentence("proxy authentication required"),
            Kind::UpstreamWriteFailed => Form::Prefixed("upstream write failed"),
            Kind::UpstreamBody => Form::Prefixed("upstream body"),
            Kind::UpstreamHttpFailed => Form::Prefixed("upstream_http_failed"),
            Kind::ScanFailed => Form::Prefixed("scan_failed"),
            Kind::RelayFailed | Kind::UpstreamRequestFailed | Kind::NoParentPool => Form::Detail,
            _ => Form::Code,
        }
    }

    /// The `kind` label of `sluice_handshake_failures_total` (SPEC §8), for the TLS
    /// failures of a bump it counts.
    pub fn handshake_label(self) -> Option<&'static str> {
        match self {
            Kind::UpstreamTlsFailed | Kind::ClientHandshakeFailed => Some("handshake"),
            Kind::ClientRejectedCertificate => Some("client_rejected_certificate"),
            _ => None,
        }
    }

    /// The block page a bumped request gets for this failure (SPEC §2.3, §3), if any.
    pub fn block_reason(self) -> Option<BlockReason> {
        match self {
            Kind::UpstreamTlsFailed => Some(BlockReason::UpstreamTlsFailed),
            Kind::CertError => Some(BlockReason::CertError),
            Kind::ScanFailed => Some(BlockReason::ScanFailed),
            _ => None,
        }
    }

    /// A failure of this kind in `phase`.
    pub fn at(self, phase: Phase) -> Failure {
        Failure::new(phase, self)
    }
}

/// One failure: who, when, what, and the error text that goes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub side: Side,
    pub phase: Phase,
    pub kind: Kind,
    /// The underlying error's text, for the kinds whose log line carries it.
    pub detail: Option<String>,
}

impl Failure {
    pub fn new(phase: Phase, kind: Kind) -> Self {
        debug_assert!(
            !matches!(kind, Kind::BadRequest(reason) if !Kind::bad_request_codes().any(|r| r == reason)),
            "{kind:?} is not in the vocabulary"
        );
        Failure {
            side: kind.side(),
            phase,
            kind,
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// What the access log's `error` says.
    pub fn log_text(&self) -> Cow<'static, str> {
        let detail = self.detail.as_deref();
        match (self.kind.form(), detail) {
            (Form::Sentence(sentence), _) => Cow::Borrowed(sentence),
            (Form::Prefixed(prefix), Some(detail)) => Cow::Owned(format!("{prefix}: {detail}")),
            (Form::Detail, Some(detail)) => Cow::Owned(detail.to_string()),
            (Form::Code | Form::Prefixed(_) | Form::Detail, _) => Cow::Borrowed(self.kind.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_text_is_the_code_or_the_code_with_its_detail() {
        let failure = Kind::SniMismatch.at(Phase::ClientHello);
        assert_eq!(failure.log_text(), "sni_mismatch");
        assert_eq!(failure.side, Side::Client);
        let scan = Kind::ScanFailed.at(Phase::Http).with_detail("engine down");
        assert_eq!(scan.log_text(), "scan_failed: engine down");
        let write = Kind::UpstreamWriteFailed
            .at(Phase::Relay)
            .with_detail("broken pipe");
        assert_eq!(write.log_text(), "upstream write failed: broken pipe");
        let relay = Kind::RelayFailed.at(Phase::Relay).with_detail("reset");
        assert_eq!(relay.log_text(), "reset");
        assert_eq!(
            Kind::RelayFailed.at(Phase::Relay).log_text(),
            "relay_failed"
        );
        let bad = Kind::BadRequest("bare_lf").at(Phase::Request);
        assert_eq!(bad.log_text(), "bare_lf");
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut codes: Vec<&str> = Kind::ALL
            .iter()
            .map(|k| k.code())
            .chain(Kind::bad_request_codes())
            .collect();
        let all = codes.len();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all, "a code is listed twice");
        for code in codes {
            assert!(
                code.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{code}"
            );
        }
    }

    // docs/configuration.md lists the `error` values in a table whose first column is the
    // code: every kind is documented, and nothing documented is not a kind.
    #[test]
    fn the_documented_error_values_are_the_vocabulary() {
        let docs = include_str!("../../../../docs/configuration.md");
        let section = docs
            .split("### `error` values")
            .nth(1)
            .expect("docs/configuration.md has an `error` values section");
        let documented: std::collections::BTreeSet<&str> = section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .filter_map(|line| line.split('`').nth(1))
            .collect();
        let vocabulary: std::collections::BTreeSet<&str> = Kind::ALL
            .iter()
            .map(|k| k.code())
            .chain(Kind::bad_request_codes())
            .collect();
        let missing: Vec<_> = vocabulary.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&vocabulary).collect();
        assert!(missing.is_empty(), "undocumented error codes: {missing:?}");
        assert!(
            stale.is_empty(),
            "documented codes that do not exist: {stale:?}"
        );
    }
}
