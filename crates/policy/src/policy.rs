//! The decisions over the compiled rules: the two SSL stages of SPEC §1, and the HTTP
//! rules of §3 step 1 on a request and then on its response.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv6Addr};

use crate::action::{CertErrorPolicy, HttpAction, SslAction};
use crate::conditions::{media_type, Subject};
use crate::domain::normalize;
use crate::phishing::PhishingList;
use crate::rules::{HttpRule, SslRule, DEFAULT_RULE};
use crate::settings::{NonTls, SniMismatch, TlsSettings};
use crate::upstream_proxies::Via;

/// What is known about a connection when a decision is made.
#[derive(Clone, Copy, Debug)]
pub struct SslFacts<'a> {
    /// Client address (after PROXY protocol, when that exists).
    pub client: IpAddr,
    /// Authenticated user.
    pub user: Option<&'a str>,
    /// The DNs of the user's directory groups (`groups` condition); empty without.
    pub groups: &'a [String],
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

/// What is known about an HTTP request (plain, or inside a bumped connection) when the
/// HTTP rules are evaluated.
#[derive(Clone, Copy, Debug)]
pub struct HttpFacts<'a> {
    /// Client address (after PROXY protocol, when that exists).
    pub client: IpAddr,
    /// Authenticated user.
    pub user: Option<&'a str>,
    /// The DNs of the user's directory groups (`groups` condition); empty without.
    pub groups: &'a [String],
    /// The request's own `User-Agent` header.
    pub user_agent: Option<&'a str>,
    /// The request's host (from the URL, `Host` or `:authority`), without the port, as
    /// received: the policy normalizes it like [`SslFacts::dest_name`]. An IP literal
    /// (`192.0.2.1`, `[2001:db8::1]`) is no name and matches no domain condition.
    pub host: Option<&'a str>,
    /// Destination address (the literal, or the resolved one), when known.
    pub dest_ip: Option<IpAddr>,
    /// Destination port.
    pub port: u16,
    /// The request method, as sent (`methods` compare ASCII case-insensitively).
    pub method: &'a str,
    /// The absolute URL (`https://host/path?query`) that `url_regex` is matched against,
    /// as the access log writes it: scheme and host lowercase, no default port.
    pub url: &'a str,
    /// The response's `Content-Type` header value, for
    /// [`Policy::decide_http_response`]; parameters and case do not matter.
    pub content_type: Option<&'a str>,
}

/// The outcome of the HTTP rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpDecision {
    /// What to do with the request or response.
    pub action: HttpAction,
    /// The deciding rule's name, or [`DEFAULT_RULE`].
    pub rule: String,
}

impl HttpDecision {
    fn by_default() -> Self {
        HttpDecision {
            action: HttpAction::Allow,
            rule: DEFAULT_RULE.to_owned(),
        }
    }

    fn by_rule(rule: &HttpRule) -> Self {
        HttpDecision {
            action: rule.action,
            rule: rule.name.clone(),
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

/// The compiled rules, the anti-phishing lists and the settings that bear on
/// decisions. Immutable; built once per configuration load.
#[derive(Debug)]
pub struct Policy {
    decryption: bool,
    /// `tls.learn_bypass`.
    pub(crate) learn_bypass: bool,
    default_action: SslAction,
    on_sni_mismatch: SniMismatch,
    /// `tls.on_non_tls`.
    pub(crate) on_non_tls: NonTls,
    /// `proxy.default_via`.
    default_via: Via,
    /// Whether any rule or the default names a parent: otherwise every connection is
    /// direct and no rule needs matching for it.
    any_parent: bool,
    rules: Vec<SslRule>,
    http_rules: Vec<HttpRule>,
    /// Whether some HTTP rule lists `content_types`: otherwise responses need no decision.
    response_rules: bool,
    phishing: PhishingList,
}

impl Policy {
    pub(crate) fn new(
        tls: &TlsSettings,
        default_via: Via,
        rules: Vec<SslRule>,
        http_rules: Vec<HttpRule>,
        phishing: PhishingList,
    ) -> Self {
        Policy {
            decryption: tls.decryption,
            learn_bypass: tls.learn_bypass,
            default_action: tls.default_action,
            on_sni_mismatch: tls.on_sni_mismatch,
            on_non_tls: tls.on_non_tls,
            any_parent: default_via != Via::Direct
                || rules.iter().any(|r| matches!(r.via, Some(Via::Parent(_))))
                || http_rules
                    .iter()
                    .any(|r| matches!(r.via, Some(Via::Parent(_)))),
            default_via,
            rules,
            response_rules: http_rules.iter().any(HttpRule::needs_response),
            http_rules,
            phishing,
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

    /// Stage `client_hello` for an SNI that is *unverified* (SPEC §1.3: the CONNECT host
    /// is an IP literal the SNI does not resolve to). The SNI can never earn a tunnel:
    /// rules that match on the name and would `tunnel` or `tunnel-sni` are skipped, while
    /// restrictive rules and the default action still apply. (Nor is the learned bypass
    /// consulted: [`Policy::decide_hello`] never asks it for such a name.)
    pub fn decide_client_hello_unverified(&self, facts: &SslFacts<'_>) -> SslDecision {
        if !self.decryption {
            return SslDecision::by_default(SslAction::Tunnel);
        }
        let subject = ssl_subject(facts);
        let subject = subject.as_subject();
        self.rules
            .iter()
            .filter(|rule| !rule.tunnels_on_name())
            .find(|rule| rule.matches(&subject))
            .map_or_else(
                || SslDecision::by_default(self.default_action),
                SslDecision::by_rule,
            )
    }

    /// Stage `client_hello` for real ECH (SPEC §1.3): a ClientHello carrying
    /// `encrypted_client_hello` whose outer SNI differs from the CONNECT host. It is bumped
    /// for its outer name (sluice holds no ECH keys, so the client falls back and retries
    /// without ECH, and that retry is decided as usual). The rules see the outer name:
    /// one that would `terminate` (or `bump`, with its `cert_errors`) applies, while one
    /// that would tunnel is skipped — a tunnel would carry the hidden inner name past
    /// every rule; otherwise bump, whatever the default action.
    pub fn decide_client_hello_ech(&self, facts: &SslFacts<'_>) -> SslDecision {
        if !self.decryption {
            return SslDecision::by_default(SslAction::Tunnel);
        }
        let subject = ssl_subject(facts);
        let subject = subject.as_subject();
        self.rules
            .iter()
            .filter(|rule| matches!(rule.action, SslAction::Terminate | SslAction::Bump))
            .find(|rule| rule.matches(&subject))
            .map_or_else(
                || SslDecision::by_default(SslAction::Bump),
                SslDecision::by_rule,
            )
    }

    /// A client that does not speak TLS under `tls.on_non_tls = "tunnel"` (SPEC §1.3):
    /// the SSL rules are still evaluated on what is known (CONNECT host, IP, port, client,
    /// user), and a rule that says `terminate` terminates it (`Some`, with that rule);
    /// otherwise `None`: it is tunneled. A `bump` rule cannot apply to what is not TLS.
    pub fn decide_non_tls_tunnel(&self, facts: &SslFacts<'_>) -> Option<SslDecision> {
        self.first_match(facts)
            .filter(|rule| rule.action == SslAction::Terminate)
            .map(SslDecision::by_rule)
    }

    /// Where a CONNECT leaves (SPEC §11), decided with the facts of stage `connect` since
    /// the server is dialled before the ClientHello: the `via` of the first SSL rule that
    /// matches, when it has one, else `proxy.default_via`. Through a parent sluice does
    /// not resolve the name, so `facts.dest_ip` is the literal or nothing.
    pub fn via_connect(&self, facts: &SslFacts<'_>) -> Via {
        if !self.any_parent {
            return Via::Direct;
        }
        self.first_match(facts)
            .and_then(|rule| rule.via.clone())
            .unwrap_or_else(|| self.default_via.clone())
    }

    /// Where a plain HTTP request leaves: the `via` of the HTTP rule that decides the
    /// request (as [`Policy::decide_http_request`] finds it), when it has one, else
    /// `proxy.default_via`. (A bumped request goes where its CONNECT went.)
    pub fn via_http(&self, facts: &HttpFacts<'_>) -> Via {
        if !self.any_parent {
            return Via::Direct;
        }
        let name = http_name(facts.host);
        let subject = http_subject(facts, name.as_deref(), None);
        self.http_rules
            .iter()
            .filter(|rule| !rule.needs_response())
            .find(|rule| rule.matches(&subject))
            .and_then(|rule| rule.via.clone())
            .unwrap_or_else(|| self.default_via.clone())
    }

    /// Whether decryption is enabled (`tls.decryption`).
    pub fn decryption(&self) -> bool {
        self.decryption
    }

    /// `tls.on_sni_mismatch`.
    pub(crate) fn on_sni_mismatch(&self) -> SniMismatch {
        self.on_sni_mismatch
    }

    /// The first rule whose conditions all hold, in configuration order.
    fn first_match(&self, facts: &SslFacts<'_>) -> Option<&SslRule> {
        let subject = ssl_subject(facts);
        let subject = subject.as_subject();
        self.rules.iter().find(|rule| rule.matches(&subject))
    }

    /// The decision of the first rule that matches, whatever its action (for explain).
    pub(crate) fn first_match_decision(&self, facts: &SslFacts<'_>) -> Option<SslDecision> {
        self.first_match(facts).map(SslDecision::by_rule)
    }
}

impl Policy {
    /// The HTTP rules on a request (SPEC §3 step 1): the first matching rule among
    /// those without `content_types` decides (a rule with `content_types` cannot be
    /// evaluated before the response exists; see [`Policy::decide_http_response`]); no
    /// match → `allow` with rule `default`. `facts.content_type` is ignored.
    pub fn decide_http_request(&self, facts: &HttpFacts<'_>) -> HttpDecision {
        let name = http_name(facts.host);
        let subject = http_subject(facts, name.as_deref(), None);
        self.http_rules
            .iter()
            .filter(|rule| !rule.needs_response())
            .find(|rule| rule.matches(&subject))
            .map_or_else(HttpDecision::by_default, HttpDecision::by_rule)
    }

    /// The HTTP rules on the response to a request that
    /// [`decide_http_request`](Policy::decide_http_request) let through, once its
    /// `Content-Type` is known (in `facts.content_type`; the other facts are the
    /// request's).
    ///
    /// All rules are evaluated again in order, now with the content type. When the first
    /// match lists `content_types`, that rule "is then applied to the response" (SPEC §4)
    /// and its decision replaces the request's: `Some`. Otherwise the first match is the
    /// rule that decided the request (or none matches, as for the request), and `None`
    /// means that the request's decision stands. So a `content_types` rule overrides the
    /// request's decision exactly when it comes before the rule that made it (or that
    /// decision was `default`); for instance a `block` on `application/x-msdownload`
    /// before an `allow-unscanned` rule for a domain blocks that domain's executables,
    /// and an `allow-unscanned` on `video/*` spares videos the anti-virus scan.
    ///
    /// A response without a usable `Content-Type` matches no `content_types` rule.
    pub fn decide_http_response(&self, facts: &HttpFacts<'_>) -> Option<HttpDecision> {
        if !self.response_rules {
            return None;
        }
        let name = http_name(facts.host);
        let media = facts.content_type.and_then(media_type);
        let subject = http_subject(facts, name.as_deref(), media.as_deref());
        let rule = self.http_rules.iter().find(|rule| rule.matches(&subject))?;
        rule.needs_response().then(|| HttpDecision::by_rule(rule))
    }

    /// The anti-phishing lists (`[anti_phishing] lists`; empty when none is configured).
    pub fn phishing(&self) -> &PhishingList {
        &self.phishing
    }
}

/// SSL facts with the destination name normalized, ready to match rules against.
struct SslSubject<'a> {
    facts: &'a SslFacts<'a>,
    name: Option<Cow<'a, str>>,
}

fn ssl_subject<'a>(facts: &'a SslFacts<'a>) -> SslSubject<'a> {
    SslSubject {
        facts,
        name: facts.dest_name.and_then(|n| normalize(n).ok()),
    }
}

impl SslSubject<'_> {
    fn as_subject(&self) -> Subject<'_> {
        Subject {
            client: self.facts.client,
            user: self.facts.user,
            groups: self.facts.groups,
            user_agent: self.facts.user_agent,
            name: self.name.as_deref(),
            dest_ip: self.facts.dest_ip,
            port: self.facts.port,
            method: None,
            url: None,
            content_type: None,
        }
    }
}

/// The normalized request host; `None` for an IP literal or a name that does not
/// normalize.
fn http_name(host: Option<&str>) -> Option<Cow<'_, str>> {
    let host = host?;
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .map(str::parse::<Ipv6Addr>);
    if matches!(unbracketed, Some(Ok(_))) || host.parse::<IpAddr>().is_ok() {
        return None;
    }
    normalize(host).ok()
}

fn http_subject<'a>(
    facts: &HttpFacts<'a>,
    name: Option<&'a str>,
    content_type: Option<&'a str>,
) -> Subject<'a> {
    Subject {
        client: facts.client,
        user: facts.user,
        groups: facts.groups,
        user_agent: facts.user_agent,
        name,
        dest_ip: facts.dest_ip,
        port: facts.port,
        method: Some(facts.method),
        url: Some(facts.url),
        content_type,
    }
}
