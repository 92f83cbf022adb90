//! `[[ssl_rules]]`: compiling each rule's conditions, and matching them against what is
//! known about a connection (SPEC §4: AND across conditions, OR within one).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use regex::RegexSet;

use crate::action::{CertErrorPolicy, SslAction};
use crate::categories::Categories;
use crate::diagnostics::Diagnostics;
use crate::domain::DomainSet;
use crate::net::{parse_net, parse_ports, IpSet, PortSet};
use crate::policy::DEFAULT_RULE;
use crate::raw::{RawSslRule, SpannedList};
use crate::regexes::{self, Case};

/// Rule names the access log already uses for decisions no rule made.
const RESERVED_NAMES: [&str; 2] = [DEFAULT_RULE, "learned-bypass"];

/// One compiled SSL rule.
#[derive(Debug)]
pub(crate) struct SslRule {
    pub(crate) name: String,
    pub(crate) action: SslAction,
    pub(crate) cert_errors: Option<CertErrorPolicy>,
    conditions: Conditions,
}

/// The conditions a rule lists; `None` is a condition not listed (it always holds).
#[derive(Debug)]
struct Conditions {
    ports: Option<PortSet>,
    clients: Option<IpSet>,
    ips: Option<IpSet>,
    domains: Option<DomainSet>,
    categories: Option<Vec<Arc<DomainSet>>>,
    domain_regex: Option<RegexSet>,
    user_agents: Option<RegexSet>,
}

/// What a rule is matched against; `name` is already normalized.
pub(crate) struct Subject<'a> {
    pub(crate) client: IpAddr,
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
    pub(crate) dest_ip: Option<IpAddr>,
    pub(crate) port: u16,
}

impl SslRule {
    /// Whether every listed condition holds. Cheap conditions are tested first.
    pub(crate) fn matches(&self, subject: &Subject<'_>) -> bool {
        let c = &self.conditions;
        holds(&c.ports, |ports| ports.contains(subject.port))
            && holds(&c.clients, |nets| nets.contains(subject.client))
            && holds(&c.ips, |nets| {
                subject.dest_ip.is_some_and(|ip| nets.contains(ip))
            })
            && holds(&c.domains, |set| {
                subject.name.is_some_and(|n| set.matches(n))
            })
            && holds(&c.categories, |sets| {
                subject
                    .name
                    .is_some_and(|n| sets.iter().any(|set| set.matches(n)))
            })
            && holds(&c.domain_regex, |re| {
                subject.name.is_some_and(|n| re.is_match(n))
            })
            && holds(&c.user_agents, |re| {
                subject.user_agent.is_some_and(|ua| re.is_match(ua))
            })
    }
}

fn holds<T>(condition: &Option<T>, test: impl FnOnce(&T) -> bool) -> bool {
    condition.as_ref().is_none_or(test)
}

/// Compile all rules, in order. Rules with errors are left out (the load fails anyway).
pub(crate) fn compile(
    raw: Vec<RawSslRule>,
    categories: &Categories,
    diag: &mut Diagnostics<'_>,
) -> Vec<SslRule> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rules = Vec::with_capacity(raw.len());
    for (index, rule) in raw.into_iter().enumerate() {
        let name = rule.name.get_ref().trim().to_owned();
        if name.is_empty() {
            diag.at(rule.name.span(), "ssl_rules: name must not be empty");
        } else if RESERVED_NAMES.contains(&name.as_str()) {
            diag.at(
                rule.name.span(),
                format!("ssl_rules: the name `{name}` is reserved for the access log"),
            );
        } else if let Some(first) = seen.insert(name.clone(), index + 1) {
            diag.at(
                rule.name.span(),
                format!("ssl_rules: duplicate rule name `{name}` (also rule #{first})"),
            );
        }
        if let Some(conditions) = conditions(&rule, categories, diag) {
            rules.push(SslRule {
                name,
                action: rule.action,
                cert_errors: rule.cert_errors,
                conditions,
            });
        }
    }
    rules
}

/// Compile a rule's conditions, reporting every bad value; `None` if any was bad.
fn conditions(
    rule: &RawSslRule,
    categories: &Categories,
    diag: &mut Diagnostics<'_>,
) -> Option<Conditions> {
    let before = diag.count();
    let conditions = Conditions {
        ports: each(&rule.ports, "ports", diag, parse_ports).map(PortSet::new),
        clients: each(&rule.clients, "clients", diag, |v| parse_net(v)).map(IpSet::new),
        ips: each(&rule.ips, "ips", diag, |v| parse_net(v)).map(IpSet::new),
        domains: domains(&rule.domains, diag),
        categories: each(&rule.categories, "categories", diag, |name| {
            categories
                .get(name.trim())
                .cloned()
                .ok_or_else(|| format!("unknown category `{name}`"))
        }),
        domain_regex: regexes(&rule.domain_regex, "domain_regex", Case::Insensitive, diag),
        user_agents: regexes(&rule.user_agents, "user_agents", Case::Sensitive, diag),
    };
    (diag.count() == before).then_some(conditions)
}

/// Parse each entry of a listed condition, reporting each bad one at its line.
/// An empty list is an error: it would make the rule never match.
fn each<T, U>(
    list: &Option<SpannedList<T>>,
    key: &str,
    diag: &mut Diagnostics<'_>,
    mut parse: impl FnMut(&T) -> Result<U, String>,
) -> Option<Vec<U>> {
    let list = list.as_ref()?;
    if list.get_ref().is_empty() {
        diag.at(list.span(), empty_condition(key));
    }
    let mut out = Vec::with_capacity(list.get_ref().len());
    for entry in list.get_ref() {
        match parse(entry.get_ref()) {
            Ok(value) => out.push(value),
            Err(e) => diag.at(entry.span(), format!("ssl_rules.{key}: {e}")),
        }
    }
    Some(out)
}

fn domains(list: &Option<SpannedList<String>>, diag: &mut Diagnostics<'_>) -> Option<DomainSet> {
    let mut set = DomainSet::new();
    each(list, "domains", diag, |pattern| set.insert_pattern(pattern))?;
    Some(set)
}

fn regexes(
    list: &Option<SpannedList<String>>,
    key: &str,
    case: Case,
    diag: &mut Diagnostics<'_>,
) -> Option<RegexSet> {
    let list = list.as_ref()?;
    if list.get_ref().is_empty() {
        diag.at(list.span(), empty_condition(key));
    }
    regexes::compile(list.get_ref(), case, key, diag)
}

fn empty_condition(key: &str) -> String {
    format!("ssl_rules.{key}: empty list; it would never match (remove the key to not test it)")
}
