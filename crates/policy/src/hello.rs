//! Stage `client_hello` as one decision (SPEC §1 steps 3 and 4): the SNI check, real
//! ECH, an unverified SNI, the learned bypass and the rules, in that order, over the
//! facts the data path read. The proxy and `explain` both call [`Policy::decide_hello`],
//! so what explain says is what a connection gets; a client that does not speak TLS is
//! [`Policy::decide_non_tls`].

use crate::action::SslAction;
use crate::domain::same_domain;
use crate::policy::{Policy, SslDecision, SslFacts};
use crate::rules::{DEFAULT_RULE, LEARNED_BYPASS_RULE};
use crate::settings::{NonTls, SniMismatch};

/// What is known once the ClientHello has been read.
#[derive(Clone, Copy, Debug)]
pub struct HelloFacts<'a> {
    /// The facts of stage `connect`: `dest_name` is the CONNECT host when it is a name
    /// (`None` for an IP literal), `dest_ip` the address dialled.
    pub connect: SslFacts<'a>,
    /// The SNI as the client sent it.
    pub sni: Option<&'a str>,
    /// The ClientHello carries `encrypted_client_hello`.
    pub ech: bool,
    /// `false` when the CONNECT host is an IP literal and the SNI does not resolve to
    /// it; `true` otherwise (also when there is nothing to verify).
    pub sni_verified: bool,
    /// Whether the learned-bypass table holds [`HelloFacts::name`] now.
    pub learned_bypass: bool,
}

impl<'a> HelloFacts<'a> {
    /// The name stage `client_hello` decides on: the SNI, or the CONNECT host name
    /// without one (the name the learned-bypass table is asked about).
    pub fn name(&self) -> Option<&'a str> {
        self.sni.or(self.connect.dest_name)
    }

    /// The SNI and the CONNECT host name differ (ASCII case and a trailing dot aside).
    pub(crate) fn sni_differs(&self) -> bool {
        matches!(
            (self.sni, self.connect.dest_name),
            (Some(sni), Some(host)) if !same_domain(sni, host)
        )
    }
}

/// Which mechanism settled stage `client_hello` (the `by` of `/explain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecidedBy {
    /// An SSL rule matched.
    Rule,
    /// No rule matched: `tls.default_action`.
    Default,
    /// No rule matched and the name is a learned bypass.
    LearnedBypass,
    /// `tls.decryption = false`.
    DecryptionDisabled,
    /// The SNI differs from the CONNECT host and `tls.on_sni_mismatch = "terminate"`.
    SniMismatch,
    /// Real ECH and no rule matched: bumped for its outer name.
    Ech,
}

impl DecidedBy {
    /// The name `/explain` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Rule => "rule",
            DecidedBy::Default => "default",
            DecidedBy::LearnedBypass => "learned_bypass",
            DecidedBy::DecryptionDisabled => "decryption_disabled",
            DecidedBy::SniMismatch => "sni_mismatch",
            DecidedBy::Ech => "ech",
        }
    }
}

/// Why stage `client_hello` marks the connection, whatever comes after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloError {
    /// The SNI differs from the CONNECT host and `tls.on_sni_mismatch = "terminate"`.
    SniMismatch,
    /// The SNI of a CONNECT to an address does not resolve to it.
    SniUnverified,
}

/// The outcome of stage `client_hello`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloDecision {
    /// The action, the rule and its `cert_errors`. For [`DecidedBy::SniMismatch`] the
    /// action is `terminate` and no rule decided (see [`HelloDecision::rule`]).
    pub decision: SslDecision,
    pub by: DecidedBy,
    /// The record's `error` once the connection ends (it replaces whatever error came
    /// after, SPEC §1.3).
    pub error: Option<HelloError>,
}

impl HelloDecision {
    /// The rule the access log names: none when the SNI check closed the connection.
    pub fn rule(&self) -> Option<&str> {
        (self.by != DecidedBy::SniMismatch).then_some(self.decision.rule.as_str())
    }
}

impl Policy {
    /// Stage `client_hello`, whole: an SNI that differs from the CONNECT host name is
    /// terminated under `tls.on_sni_mismatch = "terminate"` (unless it is real ECH,
    /// bumped for its outer name: [`Policy::decide_client_hello_ech`]); an unverified
    /// SNI earns no tunnel by name and consults no learned bypass
    /// ([`Policy::decide_client_hello_unverified`]); otherwise the rules decide with
    /// the learned bypass as a fact ([`Policy::decide_client_hello_learned`]).
    pub fn decide_hello(&self, facts: &HelloFacts<'_>) -> HelloDecision {
        let stage_facts = SslFacts {
            dest_name: facts.name(),
            ..facts.connect
        };
        let differs = facts.sni_differs();
        let decided = |decision: SslDecision, error| HelloDecision {
            by: self.decided_by(&decision),
            decision,
            error,
        };
        if differs && facts.ech {
            let decision = self.decide_client_hello_ech(&stage_facts);
            let by = match decision.rule.as_str() {
                DEFAULT_RULE if self.decryption() => DecidedBy::Ech,
                _ => self.decided_by(&decision),
            };
            // A differing SNI implies a CONNECT name: nothing is unverified here.
            return HelloDecision {
                decision,
                by,
                error: None,
            };
        }
        if differs && self.on_sni_mismatch() == SniMismatch::Terminate {
            return HelloDecision {
                decision: SslDecision {
                    action: SslAction::Terminate,
                    rule: DEFAULT_RULE.to_owned(),
                    cert_errors: None,
                },
                by: DecidedBy::SniMismatch,
                error: Some(HelloError::SniMismatch),
            };
        }
        if !facts.sni_verified && facts.sni.is_some() && facts.connect.dest_name.is_none() {
            let decision = self.decide_client_hello_unverified(&stage_facts);
            return decided(decision, Some(HelloError::SniUnverified));
        }
        decided(
            self.decide_client_hello_learned(&stage_facts, facts.learned_bypass),
            None,
        )
    }

    fn decided_by(&self, decision: &SslDecision) -> DecidedBy {
        match decision.rule.as_str() {
            _ if !self.decryption() => DecidedBy::DecryptionDisabled,
            DEFAULT_RULE => DecidedBy::Default,
            LEARNED_BYPASS_RULE => DecidedBy::LearnedBypass,
            _ => DecidedBy::Rule,
        }
    }

    /// A client that sent no ClientHello (SPEC §1.3, `tls.on_non_tls`), on the facts of
    /// stage `connect`.
    pub fn decide_non_tls(&self, facts: &SslFacts<'_>) -> NonTlsStep {
        match self.on_non_tls {
            NonTls::Terminate => NonTlsStep::Terminate(None),
            NonTls::Tunnel => match self.decide_non_tls_tunnel(facts) {
                Some(rule) => NonTlsStep::Terminate(Some(rule)),
                None => NonTlsStep::Tunnel,
            },
        }
    }
}

/// What happens to a client that does not speak TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NonTlsStep {
    /// Relay its bytes (`on_non_tls = "tunnel"`, no `terminate` rule matched).
    Tunnel,
    /// Close it: by the rule that says `terminate`, or by `on_non_tls = "terminate"`
    /// (`None`: no rule decided).
    Terminate(Option<SslDecision>),
}
