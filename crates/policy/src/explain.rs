//! `sluice explain`: both decision stages for one hypothetical connection, in words.

use std::fmt;

use crate::action::Stage;
use crate::domain::normalize;
use crate::hello::{DecidedBy, HelloFacts};
use crate::policy::{ConnectStep, Policy, SslDecision, SslFacts};
use crate::rules::{DEFAULT_RULE, LEARNED_BYPASS_RULE};
use crate::settings::SniMismatch;

/// How a connection would be decided, stage by stage. `Display` writes it for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// Stage `connect`.
    pub connect: ConnectStep,
    /// Stage `client_hello`, as [`Policy::decide_hello`] decides it; `None` when decided
    /// at stage `connect`.
    pub client_hello: Option<SslDecision>,
    /// Which mechanism settled stage `client_hello` (a rule, the default, a learned
    /// bypass, the SNI check); `None` when decided at stage `connect`.
    pub client_hello_by: Option<DecidedBy>,
    /// `tls.decryption`; when `false` the rules are not consulted.
    pub decryption: bool,
    /// The first rule matching at stage `connect`, whatever its action (a `tunnel-sni`
    /// or `bump` rule matching there only means "read the ClientHello"). `None` when no
    /// rule matches or decryption is disabled.
    pub connect_match: Option<SslDecision>,
    /// The name evaluated at stage `connect` (normalized when valid); `None` for an IP.
    pub connect_name: Option<String>,
    /// The name evaluated at stage `client_hello`: the SNI, or the CONNECT host when
    /// there is no SNI.
    pub client_hello_name: Option<String>,
    /// Whether the SNI came from the ClientHello (`false`: no SNI).
    pub sni_present: bool,
    /// Set when the SNI and the CONNECT host name differ: what `tls.on_sni_mismatch`
    /// does about it. With `Terminate` the connection is closed before stage
    /// `client_hello` decides, whatever `client_hello` says.
    pub sni_mismatch: Option<SniMismatch>,
}

impl Policy {
    /// Run both stages for `sluice explain`. `sni` `None` means the ClientHello carries
    /// no SNI; the CONNECT host is then the name at stage `client_hello`.
    pub fn explain(&self, connect_facts: &SslFacts<'_>, sni: Option<&str>) -> Explanation {
        self.explain_learned(connect_facts, sni, false)
    }

    /// [`Policy::explain`] with the learned-bypass table's answer for the name of stage
    /// `client_hello` (the SNI, or the CONNECT host without one), as
    /// [`Policy::decide_client_hello_learned`] takes it: the same decision as a
    /// connection would get.
    pub fn explain_learned(
        &self,
        connect_facts: &SslFacts<'_>,
        sni: Option<&str>,
        learned_bypass: bool,
    ) -> Explanation {
        let connect = self.decide_connect(connect_facts);
        let connect_match = if self.decryption() {
            self.first_match_decision(connect_facts)
        } else {
            None
        };
        let hello_facts = HelloFacts {
            connect: *connect_facts,
            sni,
            // Explain resolves nothing, so whether an SNI given with an IP address
            // resolves to it is unknown: the rules are explained as if it did, and the
            // learned bypass (the one fact a client could exploit) as if it did not.
            sni_verified: true,
            ech: false,
            learned_bypass: learned_bypass && connect_facts.dest_name.is_some(),
        };
        let hello = match connect {
            ConnectStep::Tunnel(_) => None,
            ConnectStep::PeekClientHello => Some(self.decide_hello(&hello_facts)),
        };
        let sni_mismatch = hello_facts.sni_differs().then(|| self.on_sni_mismatch());
        Explanation {
            connect,
            client_hello_by: hello.as_ref().map(|h| h.by),
            client_hello: hello.map(|h| h.decision),
            decryption: self.decryption(),
            connect_match,
            connect_name: connect_facts.dest_name.map(shown_name),
            client_hello_name: hello_facts.name().map(shown_name),
            sni_present: sni.is_some(),
            sni_mismatch,
        }
    }
}

fn shown_name(name: &str) -> String {
    normalize(name).map_or_else(|_| name.to_owned(), |n| n.into_owned())
}

impl Explanation {
    /// The stage and decision that settle the connection by the rules (`None` only for
    /// an `Explanation` not built by [`Policy::explain`]). An SNI mismatch with
    /// `terminate` overrides it: see [`Explanation::sni_mismatch`].
    pub fn decided(&self) -> Option<(Stage, &SslDecision)> {
        match (&self.connect, &self.client_hello) {
            (ConnectStep::Tunnel(decision), _) => Some((Stage::Connect, decision)),
            (ConnectStep::PeekClientHello, Some(decision)) => Some((Stage::ClientHello, decision)),
            (ConnectStep::PeekClientHello, None) => None,
        }
    }

    /// Which mechanism settles the connection (`None` only for an `Explanation` not
    /// built by [`Policy::explain`]).
    pub fn decided_by(&self) -> Option<DecidedBy> {
        match (&self.connect, self.client_hello_by) {
            (ConnectStep::Tunnel(_), _) if !self.decryption => Some(DecidedBy::DecryptionDisabled),
            (ConnectStep::Tunnel(_), _) => Some(DecidedBy::Rule),
            (ConnectStep::PeekClientHello, by) => by,
        }
    }

    /// The rule the access log would name: none when the SNI check closes the
    /// connection before any rule decides.
    pub fn rule(&self) -> Option<&str> {
        match self.decided_by()? {
            DecidedBy::SniMismatch => None,
            _ => self.decided().map(|(_, decision)| decision.rule.as_str()),
        }
    }
}

/// `rule "name"`, or `rule default` / `rule learned-bypass`.
fn rule(decision: &SslDecision) -> String {
    if decision.rule == DEFAULT_RULE || decision.rule == LEARNED_BYPASS_RULE {
        decision.rule.clone()
    } else {
        format!("{:?}", decision.rule)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.connect_name {
            Some(name) => writeln!(f, "stage connect (name {name}):")?,
            None => writeln!(
                f,
                "stage connect (no name: the CONNECT host is an IP address):"
            )?,
        }
        match (&self.connect, &self.connect_match) {
            (ConnectStep::Tunnel(_), _) if !self.decryption => writeln!(
                f,
                "  decryption is disabled (tls.decryption = false): tunnel"
            )?,
            (ConnectStep::Tunnel(d), _) => writeln!(f, "  rule {} matches: tunnel", rule(d))?,
            (ConnectStep::PeekClientHello, Some(d)) => writeln!(
                f,
                "  rule {} matches, action {}: read the ClientHello",
                rule(d),
                d.action
            )?,
            (ConnectStep::PeekClientHello, None) => {
                writeln!(f, "  no rule matches: read the ClientHello")?
            }
        }
        if let Some(decision) = &self.client_hello {
            let source = if self.sni_present {
                "the SNI"
            } else {
                "the CONNECT host, no SNI"
            };
            match &self.client_hello_name {
                Some(name) => writeln!(f, "stage client_hello (name {name}, from {source}):")?,
                None => writeln!(f, "stage client_hello (no name: no SNI and an IP address)")?,
            }
            match self.sni_mismatch {
                Some(SniMismatch::Terminate) => {
                    writeln!(
                        f,
                        "  the SNI differs from the CONNECT host and tls.on_sni_mismatch = \"terminate\": the connection is closed"
                    )?;
                    return write!(f, "result: terminate at stage client_hello (SNI mismatch)");
                }
                Some(SniMismatch::Ignore) => writeln!(
                    f,
                    "  the SNI differs from the CONNECT host; tls.on_sni_mismatch = \"ignore\": deciding on the SNI"
                )?,
                None => {}
            }
            if decision.rule == DEFAULT_RULE {
                writeln!(f, "  no rule matches: default action {}", decision.action)?;
            } else if decision.rule == LEARNED_BYPASS_RULE {
                writeln!(
                    f,
                    "  no rule matches and the SNI is a learned bypass: {}",
                    decision.action
                )?;
            } else {
                write!(f, "  rule {} matches: {}", rule(decision), decision.action)?;
                if let Some(policy) = decision.cert_errors {
                    write!(f, " (cert_errors = {policy})")?;
                }
                writeln!(f)?;
            }
        }
        if let Some((stage, decision)) = self.decided() {
            write!(
                f,
                "result: {} at stage {stage}, rule {}",
                decision.action,
                rule(decision)
            )?;
        }
        Ok(())
    }
}
