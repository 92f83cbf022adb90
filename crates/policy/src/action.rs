//! The small vocabularies shared by configuration, decisions and logs.

use std::fmt;

use serde::Deserialize;

/// What happens to an encrypted connection (SPEC §1, "Actions at a glance").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslAction {
    /// Pass the bytes through; decided on the CONNECT host/IP (or on the SNI).
    Tunnel,
    /// Pass the bytes through, but only after looking at the SNI of the ClientHello.
    TunnelSni,
    /// Decrypt, inspect and re-encrypt with a replacement certificate.
    Bump,
    /// Close the connection; nothing is sent upstream.
    Terminate,
}

impl SslAction {
    /// The name used in the configuration and in the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            SslAction::Tunnel => "tunnel",
            SslAction::TunnelSni => "tunnel-sni",
            SslAction::Bump => "bump",
            SslAction::Terminate => "terminate",
        }
    }
}

impl fmt::Display for SslAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to an HTTP request or response (SPEC §3 step 1): the action of an
/// `[[http_rules]]` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HttpAction {
    /// Go on: anti-phishing and anti-virus still apply.
    Allow,
    /// Answer with the block page (403, reason `rule`).
    Block,
    /// Go on and skip anti-phishing and anti-virus. Whatever the server sends reaches the
    /// client unscanned: keep it to trusted destinations.
    AllowUnscanned,
}

impl HttpAction {
    /// The name used in the configuration and in the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpAction::Allow => "allow",
            HttpAction::Block => "block",
            HttpAction::AllowUnscanned => "allow-unscanned",
        }
    }
}

impl fmt::Display for HttpAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a bumped connection does when the server's certificate fails verification
/// (`tls.on_cert_error`, or an SSL rule's `cert_errors`; SPEC §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertErrorPolicy {
    /// Serve a trusted replacement and answer every request with the block page.
    Block,
    /// Sign the replacement with an untrusted CA so that the client shows its own warning.
    Untrusted,
    /// Proceed as if the chain were valid. Only for known internal servers.
    Allow,
}

impl CertErrorPolicy {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            CertErrorPolicy::Block => "block",
            CertErrorPolicy::Untrusted => "untrusted",
            CertErrorPolicy::Allow => "allow",
        }
    }
}

impl fmt::Display for CertErrorPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The point in a connection's life at which a decision is made (the log's `stage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// After the CONNECT request, before anything is answered (SPEC §1 step 2).
    Connect,
    /// After the client's ClientHello has been read (SPEC §1 step 4).
    ClientHello,
}

impl Stage {
    /// The name used in the access log and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::ClientHello => "client_hello",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
