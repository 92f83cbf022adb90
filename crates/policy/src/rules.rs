//! `[[ssl_rules]]` and `[[http_rules]]`: each rule's name, action and compiled
//! [`Conditions`]. Names are checked per list: not empty, not reserved, unique.

use std::collections::HashMap;

use toml::Spanned;

use crate::action::{CertErrorPolicy, HttpAction, SslAction};
use crate::categories::Categories;
use crate::conditions::{self, Conditions, Subject};
use crate::diagnostics::Diagnostics;
use crate::raw::{RawHttpRule, RawSslRule};
use crate::recover;
use crate::upstream_proxies::{resolve_via, UpstreamProxy, Via};

/// The `rule` of a decision no SSL rule made.
pub const DEFAULT_RULE: &str = "default";

/// The `rule` of a decision made by a learned bypass.
pub const LEARNED_BYPASS_RULE: &str = "learned-bypass";

/// Rule names the access log already uses for decisions no rule made.
const RESERVED_NAMES: [&str; 2] = [DEFAULT_RULE, LEARNED_BYPASS_RULE];

/// One compiled SSL rule.
#[derive(Debug)]
pub(crate) struct SslRule {
    pub(crate) name: String,
    pub(crate) action: SslAction,
    pub(crate) cert_errors: Option<CertErrorPolicy>,
    /// `via`: where the connection leaves; `None`: `proxy.default_via`.
    pub(crate) via: Option<Via>,
    conditions: Conditions,
}

impl SslRule {
    /// Whether every listed condition holds.
    pub(crate) fn matches(&self, subject: &Subject<'_>) -> bool {
        self.conditions.matches(subject)
    }

    /// Whether an unverified SNI could make this rule pass the connection through
    /// uninspected (SPEC §1.3): it matches on the name and tunnels.
    pub(crate) fn tunnels_on_name(&self) -> bool {
        matches!(self.action, SslAction::Tunnel | SslAction::TunnelSni)
            && self.conditions.matches_on_name()
    }
}

/// One compiled HTTP rule.
#[derive(Debug)]
pub(crate) struct HttpRule {
    pub(crate) name: String,
    pub(crate) action: HttpAction,
    /// `via`: where a plain request leaves; `None`: `proxy.default_via`.
    pub(crate) via: Option<Via>,
    conditions: Conditions,
}

impl HttpRule {
    /// Whether every listed condition holds.
    pub(crate) fn matches(&self, subject: &Subject<'_>) -> bool {
        self.conditions.matches(subject)
    }

    /// Whether the rule lists `content_types` (it can only match a response).
    pub(crate) fn needs_response(&self) -> bool {
        self.conditions.needs_response()
    }
}

/// Compile the SSL rules, in order. Rules with errors are left out (the load fails
/// anyway).
pub(crate) fn compile_ssl(
    raw: Vec<RawSslRule>,
    categories: &Categories,
    parents: &[UpstreamProxy],
    diag: &mut Diagnostics<'_>,
) -> Vec<SslRule> {
    let mut names = Names::new("ssl_rules");
    raw.into_iter()
        .filter_map(|rule| {
            let name = names.check(&rule.name, diag);
            let action = action::<SslAction>(&rule.action, diag);
            let via = rule_via(rule.via.as_ref(), parents, "ssl_rules.via", diag)?;
            let conditions =
                conditions::compile(&rule.conditions(), "ssl_rules", categories, diag)?;
            Some(SslRule {
                name,
                action: action?,
                cert_errors: rule.cert_errors,
                via,
                conditions,
            })
        })
        .collect()
}

/// Compile the HTTP rules, in order. Rules with errors are left out.
pub(crate) fn compile_http(
    raw: Vec<RawHttpRule>,
    categories: &Categories,
    parents: &[UpstreamProxy],
    diag: &mut Diagnostics<'_>,
) -> Vec<HttpRule> {
    let mut names = Names::new("http_rules");
    raw.into_iter()
        .filter_map(|rule| {
            let name = names.check(&rule.name, diag);
            let action = action::<HttpAction>(&rule.action, diag);
            let via = rule_via(rule.via.as_ref(), parents, "http_rules.via", diag)?;
            let conditions =
                conditions::compile(&rule.conditions(), "http_rules", categories, diag)?;
            Some(HttpRule {
                name,
                action: action?,
                via,
                conditions,
            })
        })
        .collect()
}

/// A rule's `via`: `Some(None)` when it has none, `None` when it names no parent.
fn rule_via(
    via: Option<&Spanned<String>>,
    parents: &[UpstreamProxy],
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> Option<Option<Via>> {
    match via {
        None => Some(None),
        Some(via) => resolve_via(via, parents, key, diag).map(Some),
    }
}

/// A rule's `action`, reported at its line when it names no action of this list.
fn action<T: for<'de> serde::Deserialize<'de>>(
    raw: &Spanned<String>,
    diag: &mut Diagnostics<'_>,
) -> Option<T> {
    recover::variant(raw)
        .map_err(|message| diag.at(raw.span(), message))
        .ok()
}

/// The names seen so far in one rule list.
struct Names {
    section: &'static str,
    /// Name → 1-based index of the rule that first used it.
    seen: HashMap<String, usize>,
    count: usize,
}

impl Names {
    fn new(section: &'static str) -> Self {
        Names {
            section,
            seen: HashMap::new(),
            count: 0,
        }
    }

    /// The rule's trimmed name, reporting it if empty, reserved or a duplicate.
    fn check(&mut self, name: &Spanned<String>, diag: &mut Diagnostics<'_>) -> String {
        self.count += 1;
        let section = self.section;
        let text = name.get_ref().trim().to_owned();
        if text.is_empty() {
            diag.at(name.span(), format!("{section}: name must not be empty"));
        } else if RESERVED_NAMES.contains(&text.as_str()) {
            diag.at(
                name.span(),
                format!("{section}: the name `{text}` is reserved for the access log"),
            );
        } else if let Some(first) = self.seen.insert(text.clone(), self.count) {
            diag.at(
                name.span(),
                format!("{section}: duplicate rule name `{text}` (also rule #{first})"),
            );
        }
        text
    }
}
