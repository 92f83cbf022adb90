//! The two SSL decision stages of SPEC §1 over the compiled rules.

use std::net::IpAddr;

use crate::action::{CertErrorPolicy, SslAction};
use crate::domain::normalize;
use crate::rules::{SslRule, Subject};
use crate::settings::{SniMismatch, TlsSettings};

/// The `rule` of a decision no SSL rule made.
pub const DEFAULT_RULE: &str = "default";

/// What is known about a connection when a decision is made.
#[derive(Clone, Copy, Debug)]
pub struct SslFacts<'a> {
    /// Client address (after PROXY protocol, when that exists).
    pub client: IpAddr,
    /// Authenticated user. Not matched yet (no `users` condition); always `None` for now.
    pub user: Option<&'a str>,
    /// `User-Agent` header of the CONNECT request.
    pub user_agent: Option<&'a str>,
    /// The CONNECT host (stage `connect`) or the SNI (stage `client_hello`) when it is a
    /// DNS name; `None` for an IP literal without SNI. Given as received: the policy
    /// normalizes it (lowercase, trailing dot, IDN → punycode). A name that does not
    /// normalize is treated like no name.
    pub dest_name: Option<&'a str>,
    /// Destination address (the literal, or the resolved one).
    pub dest_ip: Option<IpAddr>,
    /// Destination port.
    pub port: u16,
}

/// The outcome of a decision stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SslDecision {
    /// What to do with the connection.
    pub action: SslAction,
    /// The deciding rule's name, or [`DEFAULT_RULE`].
    pub rule: String,
    /// The deciding rule's `cert_errors` override of `tls.on_cert_error`.
    pub cert_errors: Option<CertErrorPolicy>,
}

impl SslDecision {
    fn by_default(action: SslAction) -> Self {
        SslDecision {
            action,
            rule: DEFAULT_RULE.to_owned(),
            cert_errors: None,
        }
    }

    fn by_rule(rule: &SslRule) -> Self {
        SslDecision {
            action: rule.action,
            rule: rule.name.clone(),
            cert_errors: rule.cert_errors,
        }
    }
}

/// The outcome of stage `connect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectStep {
    /// Tunnel now; the ClientHello is not needed to decide.
    Tunnel(SslDecision),
    /// Answer the CONNECT, read the ClientHello, and decide again at stage `client_hello`.
    PeekClientHello,
}

/// The compiled SSL rules and the settings that bear on decisions. Immutable; built
/// once per configuration load.
#[derive(Debug)]
pub struct Policy {
    decryption: bool,
    default_action: SslAction,
    on_sni_mismatch: SniMismatch,
    rules: Vec<SslRule>,
}

impl Policy {
    pub(crate) fn new(tls: &TlsSettings, rules: Vec<SslRule>) -> Self {
        Policy {
            decryption: tls.decryption,
            default_action: tls.default_action,
            on_sni_mismatch: tls.on_sni_mismatch,
            rules,
        }
    }

    /// Stage `connect` (SPEC §1 step 2): decryption disabled → tunnel with rule
    /// `default`, whatever the rules say; first matching rule has action `tunnel` →
    /// tunnel on that rule; anything else (`tunnel-sni`, `bump`, `terminate`, no match)
    /// → read the ClientHello.
    pub fn decide_connect(&self, facts: &SslFacts<'_>) -> ConnectStep {
        if !self.decryption {
            return ConnectStep::Tunnel(SslDecision::by_default(SslAction::Tunnel));
        }
        match self.first_match(facts) {
            Some(rule) if rule.action == SslAction::Tunnel => {
                ConnectStep::Tunnel(SslDecision::by_rule(rule))
            }
            _ => ConnectStep::PeekClientHello,
        }
    }

    /// Stage `client_hello` (SPEC §1 step 4), `dest_name` being the SNI (or the CONNECT
    /// host when there is none): the first matching rule decides; no match → the default
    /// action with rule `default`. With decryption disabled this is tunnel with rule
    /// `default`, as at stage `connect`.
    pub fn decide_client_hello(&self, facts: &SslFacts<'_>) -> SslDecision {
        if !self.decryption {
            return SslDecision::by_default(SslAction::Tunnel);
        }
        match self.first_match(facts) {
            Some(rule) => SslDecision::by_rule(rule),
            None => SslDecision::by_default(self.default_action),
        }
    }

    /// Whether decryption is enabled (`tls.decryption`).
    pub fn decryption(&self) -> bool {
        self.decryption
    }

    /// `tls.on_sni_mismatch`, for [`Policy::explain`].
    pub(crate) fn on_sni_mismatch(&self) -> SniMismatch {
        self.on_sni_mismatch
    }

    /// The first rule whose conditions all hold, in configuration order.
    fn first_match(&self, facts: &SslFacts<'_>) -> Option<&SslRule> {
        let name = facts.dest_name.and_then(|n| normalize(n).ok());
        let subject = Subject {
            client: facts.client,
            user_agent: facts.user_agent,
            name: name.as_deref(),
            dest_ip: facts.dest_ip,
            port: facts.port,
        };
        self.rules.iter().find(|rule| rule.matches(&subject))
    }

    /// The decision of the first rule that matches, whatever its action (for explain).
    pub(crate) fn first_match_decision(&self, facts: &SslFacts<'_>) -> Option<SslDecision> {
        self.first_match(facts).map(SslDecision::by_rule)
    }
}
