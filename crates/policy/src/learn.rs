//! The learned bypass (SPEC §1): which evidence may teach that a name cannot be bumped,
//! and how a learned bypass enters the `client_hello` decision. The table that counts
//! and remembers lives in the data path; these are the decisions it carries out.

use crate::action::SslAction;
use crate::domain::normalize;
use crate::policy::{Policy, SslDecision, SslFacts};
use crate::rules::{DEFAULT_RULE, LEARNED_BYPASS_RULE};

/// What a bumped connection showed about its SNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BypassEvidence {
    /// The client aborted the handshake against the replacement certificate. It counts
    /// once per client address; the table learns at `learn_after` distinct addresses.
    ClientRejected,
    /// The server sent a CertificateRequest.
    CertificateRequested {
        /// The server's chain verified `ok` for the SNI.
        chain_ok: bool,
        /// The address dialled is one the SNI resolves to (so the server is the SNI's,
        /// not one a client picked with `CONNECT <ip>`).
        dialled_resolves: bool,
    },
}

impl Policy {
    /// Whether `evidence` about `sni` may count towards a learned bypass: learning is on
    /// (`tls.learn_bypass`), the SNI is a valid name that no anti-phishing list names,
    /// and a CertificateRequest came from a server that proved to be the SNI's (a chain
    /// verified `ok` on an address the name resolves to). Anything else teaches nothing,
    /// so no client can make an arbitrary name go uninspected.
    pub fn may_learn_bypass(&self, sni: &str, evidence: BypassEvidence) -> bool {
        let Ok(name) = normalize(sni) else {
            return false;
        };
        let proven = match evidence {
            BypassEvidence::ClientRejected => true,
            BypassEvidence::CertificateRequested {
                chain_ok,
                dialled_resolves,
            } => chain_ok && dialled_resolves,
        };
        self.learn_bypass && proven && !self.phishing().lists_name(&name)
    }

    /// Stage `client_hello` with the learned-bypass table's answer: `learned_bypass` is
    /// whether the table holds `facts.dest_name` (the SNI, or the CONNECT host name
    /// without one) now. [`Policy::decide_hello`] does not call it for an unverified SNI
    /// (SPEC §1 step 3: the table is not consulted).
    ///
    /// A learned bypass overrides only the default action `bump`: a name an SSL rule
    /// matches is decided by that rule. It then decides `tunnel-sni` with rule
    /// [`LEARNED_BYPASS_RULE`]. With `tls.learn_bypass = false`, or for a name an
    /// anti-phishing list names, the table is ignored.
    pub fn decide_client_hello_learned(
        &self,
        facts: &SslFacts<'_>,
        learned_bypass: bool,
    ) -> SslDecision {
        let decision = self.decide_client_hello(facts);
        let by_default_bump = decision.action == SslAction::Bump && decision.rule == DEFAULT_RULE;
        // A list reloaded after the name was learned still wins.
        let listed = facts
            .dest_name
            .and_then(|name| normalize(name).ok())
            .is_some_and(|name| self.phishing().lists_name(&name));
        if self.learn_bypass && learned_bypass && by_default_bump && !listed {
            return SslDecision {
                action: SslAction::TunnelSni,
                rule: LEARNED_BYPASS_RULE.to_owned(),
                cert_errors: None,
            };
        }
        decision
    }
}
