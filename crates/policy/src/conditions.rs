//! The conditions of SPEC §4, shared by `[[ssl_rules]]` and `[[http_rules]]`: compiling
//! what a rule lists, and matching it against what is known (AND across conditions, OR
//! within one). The three HTTP-only conditions (`methods`, `url_regex`, `content_types`)
//! are refused in SSL rules by the serde model, so they are simply absent there.

use std::net::IpAddr;
use std::sync::Arc;

use regex::RegexSet;

use crate::categories::Categories;
use crate::diagnostics::Diagnostics;
use crate::domain::DomainSet;
use crate::keytab::principal_short_name;
use crate::net::{parse_net, parse_ports, IpSet, PortSet, PortValue};
use crate::raw::SpannedList;
use crate::regexes::{self, Case};

/// A rule's conditions as written, borrowed from either kind of rule.
pub(crate) struct RawConditions<'a> {
    pub(crate) clients: Option<&'a SpannedList<String>>,
    pub(crate) users: Option<&'a SpannedList<String>>,
    pub(crate) groups: Option<&'a SpannedList<String>>,
    pub(crate) user_agents: Option<&'a SpannedList<String>>,
    pub(crate) domains: Option<&'a SpannedList<String>>,
    pub(crate) domain_regex: Option<&'a SpannedList<String>>,
    pub(crate) categories: Option<&'a SpannedList<String>>,
    pub(crate) ips: Option<&'a SpannedList<String>>,
    pub(crate) ports: Option<&'a SpannedList<PortValue>>,
    pub(crate) methods: Option<&'a SpannedList<String>>,
    pub(crate) url_regex: Option<&'a SpannedList<String>>,
    pub(crate) content_types: Option<&'a SpannedList<String>>,
}

/// The conditions a rule lists; `None` is a condition not listed (it always holds).
#[derive(Debug)]
pub(crate) struct Conditions {
    ports: Option<PortSet>,
    clients: Option<IpSet>,
    users: Option<Vec<String>>,
    /// Lowercase group common names or DNs.
    groups: Option<Vec<String>>,
    ips: Option<IpSet>,
    methods: Option<Vec<String>>,
    domains: Option<DomainSet>,
    categories: Option<Vec<Arc<DomainSet>>>,
    domain_regex: Option<RegexSet>,
    user_agents: Option<RegexSet>,
    url_regex: Option<RegexSet>,
    content_types: Option<ContentTypes>,
}

/// What a rule is matched against. `name` is already normalized and `content_type` is
/// a response's media type, lowercase, without parameters (see [`media_type`]). The
/// HTTP fields are `None` for SSL decisions.
pub(crate) struct Subject<'a> {
    pub(crate) client: IpAddr,
    pub(crate) user: Option<&'a str>,
    /// The DNs of the user's groups.
    pub(crate) groups: &'a [String],
    pub(crate) user_agent: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
    pub(crate) dest_ip: Option<IpAddr>,
    pub(crate) port: u16,
    pub(crate) method: Option<&'a str>,
    pub(crate) url: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
}

impl Conditions {
    /// Whether every listed condition holds. Cheap conditions are tested first.
    pub(crate) fn matches(&self, subject: &Subject<'_>) -> bool {
        holds(&self.ports, |ports| ports.contains(subject.port))
            && holds(&self.clients, |nets| nets.contains(subject.client))
            && holds(&self.users, |users| {
                subject
                    .user
                    .is_some_and(|u| users.iter().any(|x| user_matches(x, u)))
            })
            && holds(&self.groups, |wanted| {
                subject
                    .groups
                    .iter()
                    .any(|dn| wanted.iter().any(|w| group_matches(w, dn)))
            })
            && holds(&self.ips, |nets| {
                subject.dest_ip.is_some_and(|ip| nets.contains(ip))
            })
            && holds(&self.methods, |methods| {
                subject
                    .method
                    .is_some_and(|m| methods.iter().any(|x| x.eq_ignore_ascii_case(m)))
            })
            && holds(&self.content_types, |types| {
                subject.content_type.is_some_and(|t| types.matches(t))
            })
            && holds(&self.domains, |set| {
                subject.name.is_some_and(|n| set.matches(n))
            })
            && holds(&self.categories, |sets| {
                subject
                    .name
                    .is_some_and(|n| sets.iter().any(|set| set.matches(n)))
            })
            && holds(&self.domain_regex, |re| {
                subject.name.is_some_and(|n| re.is_match(n))
            })
            && holds(&self.user_agents, |re| {
                subject.user_agent.is_some_and(|ua| re.is_match(ua))
            })
            && holds(&self.url_regex, |re| {
                subject.url.is_some_and(|url| re.is_match(url))
            })
    }

    /// Whether the rule lists `content_types`, so that it can only match a response.
    pub(crate) fn needs_response(&self) -> bool {
        self.content_types.is_some()
    }

    /// Whether a destination name condition (`domains`, `domain_regex`, `categories`)
    /// is listed: such a rule is matched on what the client claims the name is.
    pub(crate) fn matches_on_name(&self) -> bool {
        self.domains.is_some() || self.domain_regex.is_some() || self.categories.is_some()
    }
}

/// Whether the `users` entry `wanted` names `user`: the same name, or the short name of
/// a Kerberos principal (`alice` names `alice@CORP.EXAMPLE`; SPEC §10).
pub(crate) fn user_matches(wanted: &str, user: &str) -> bool {
    wanted == user || (!wanted.contains('@') && principal_short_name(user) == wanted)
}

/// Whether a group DN is the group a rule names (`wanted`, lowercase): its full DN, or
/// the value of its first RDN when that is a `cn` (`Finance` for `cn=Finance,ou=groups,…`),
/// ASCII case-insensitively.
pub(crate) fn group_matches(wanted: &str, dn: &str) -> bool {
    let dn = dn.trim();
    if dn.eq_ignore_ascii_case(wanted) {
        return true;
    }
    let first = dn.split(',').next().unwrap_or_default();
    first.split_once('=').is_some_and(|(attr, value)| {
        attr.trim().eq_ignore_ascii_case("cn") && value.trim().eq_ignore_ascii_case(wanted)
    })
}

fn holds<T>(condition: &Option<T>, test: impl FnOnce(&T) -> bool) -> bool {
    condition.as_ref().is_none_or(test)
}

/// Compile a rule's conditions, reporting every bad value as `SECTION.KEY: msg` at its
/// line; `None` if any was bad.
pub(crate) fn compile(
    raw: &RawConditions<'_>,
    section: &str,
    categories: &Categories,
    diag: &mut Diagnostics<'_>,
) -> Option<Conditions> {
    let before = diag.count();
    let mut compiler = Compiler { section, diag };
    let conditions = Conditions {
        ports: compiler
            .each(raw.ports, "ports", parse_ports)
            .map(PortSet::new),
        clients: compiler
            .each(raw.clients, "clients", |v| parse_net(v))
            .map(IpSet::new),
        users: compiler.each(raw.users, "users", |name| {
            let name = name.trim();
            if name.is_empty() {
                Err("empty user name".to_string())
            } else {
                Ok(name.to_string())
            }
        }),
        groups: compiler.each(raw.groups, "groups", |name| {
            let name = name.trim();
            if name.is_empty() {
                Err("empty group name".to_string())
            } else {
                Ok(name.to_ascii_lowercase())
            }
        }),
        ips: compiler
            .each(raw.ips, "ips", |v| parse_net(v))
            .map(IpSet::new),
        methods: compiler.each(raw.methods, "methods", |v| method(v)),
        domains: compiler.domains(raw.domains),
        categories: compiler.each(raw.categories, "categories", |name| {
            categories
                .get(name.trim())
                .cloned()
                .ok_or_else(|| format!("unknown category `{name}`"))
        }),
        domain_regex: compiler.regexes(raw.domain_regex, "domain_regex", Case::Insensitive),
        user_agents: compiler.regexes(raw.user_agents, "user_agents", Case::Sensitive),
        url_regex: compiler.regexes(raw.url_regex, "url_regex", Case::Sensitive),
        content_types: compiler
            .each(raw.content_types, "content_types", |v| content_type(v))
            .map(ContentTypes::new),
    };
    (diag.count() == before).then_some(conditions)
}

/// Reports errors under one section name (`ssl_rules` or `http_rules`).
struct Compiler<'s, 'd, 'a> {
    section: &'s str,
    diag: &'d mut Diagnostics<'a>,
}

impl Compiler<'_, '_, '_> {
    /// Parse each entry of a listed condition, reporting each bad one at its line.
    /// An empty list is an error: it would make the rule never match.
    fn each<T, U>(
        &mut self,
        list: Option<&SpannedList<T>>,
        key: &str,
        mut parse: impl FnMut(&T) -> Result<U, String>,
    ) -> Option<Vec<U>> {
        let list = list?;
        self.not_empty(list, key);
        let mut out = Vec::with_capacity(list.get_ref().len());
        for entry in list.get_ref() {
            match parse(entry.get_ref()) {
                Ok(value) => out.push(value),
                Err(e) => self
                    .diag
                    .at(entry.span(), format!("{}.{key}: {e}", self.section)),
            }
        }
        Some(out)
    }

    fn domains(&mut self, list: Option<&SpannedList<String>>) -> Option<DomainSet> {
        let mut set = DomainSet::new();
        self.each(list, "domains", |pattern| set.insert_pattern(pattern))?;
        Some(set)
    }

    fn regexes(
        &mut self,
        list: Option<&SpannedList<String>>,
        key: &str,
        case: Case,
    ) -> Option<RegexSet> {
        let list = list?;
        self.not_empty(list, key);
        let key = format!("{}.{key}", self.section);
        regexes::compile(list.get_ref(), case, &key, self.diag)
    }

    fn not_empty<T>(&mut self, list: &SpannedList<T>, key: &str) {
        if list.get_ref().is_empty() {
            self.diag.at(
                list.span(),
                format!(
                    "{}.{key}: empty list; it would never match (remove the key to not test it)",
                    self.section
                ),
            );
        }
    }
}

/// An HTTP method as configured: a token (RFC 9110 §5.6.2). Matched ASCII
/// case-insensitively, so `post` also matches `POST`.
fn method(text: &str) -> Result<String, String> {
    let method = text.trim();
    if !method.is_empty() && method.bytes().all(is_tchar) {
        Ok(method.to_owned())
    } else {
        Err(format!("invalid HTTP method `{text}`"))
    }
}

/// A `content_types` entry: `type/subtype` or `type/*`, lowercased.
fn content_type(text: &str) -> Result<String, String> {
    let lowered = text.trim().to_ascii_lowercase();
    let plain = |part: &str| is_token(part) && !part.contains('*');
    let valid = match lowered.split_once('/') {
        Some((kind, "*")) => plain(kind),
        Some((kind, subtype)) => plain(kind) && plain(subtype),
        None => false,
    };
    if valid {
        Ok(lowered)
    } else {
        Err(format!(
            "invalid media type `{text}`, expected like \"application/pdf\" or \"image/*\""
        ))
    }
}

/// The media type of a `Content-Type` header value: `type/subtype` lowercased, without
/// parameters or surrounding spaces. `None` when the value has no such shape.
pub(crate) fn media_type(value: &str) -> Option<String> {
    let essence = value.split(';').next().unwrap_or("").trim();
    let (kind, subtype) = essence.split_once('/')?;
    (is_token(kind) && is_token(subtype)).then(|| essence.to_ascii_lowercase())
}

fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Compiled `content_types`: exact media types and `type/*` wildcards, all lowercase.
#[derive(Debug)]
struct ContentTypes {
    exact: Vec<String>,
    /// `type/` of each `type/*` entry, slash included.
    wildcards: Vec<String>,
}

impl ContentTypes {
    fn new(entries: Vec<String>) -> Self {
        let (wildcards, exact): (Vec<String>, Vec<String>) =
            entries.into_iter().partition(|e| e.ends_with("/*"));
        ContentTypes {
            exact,
            wildcards: wildcards
                .into_iter()
                .map(|mut w| {
                    w.pop();
                    w
                })
                .collect(),
        }
    }

    /// `media_type` as returned by [`media_type`].
    fn matches(&self, media_type: &str) -> bool {
        self.exact.iter().any(|e| e == media_type)
            || self.wildcards.iter().any(|w| media_type.starts_with(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_match_a_kerberos_principal_by_full_or_short_name() {
        assert!(user_matches("alice", "alice"));
        assert!(user_matches("alice", "alice@TEST.REALM"));
        assert!(user_matches("alice@TEST.REALM", "alice@TEST.REALM"));
        assert!(!user_matches("alice@TEST.REALM", "alice"));
        assert!(!user_matches("alice@OTHER.REALM", "alice@TEST.REALM"));
        assert!(!user_matches("alice", "alice/admin@TEST.REALM"));
        assert!(!user_matches("bob", "alice@TEST.REALM"));
        assert!(!user_matches("TEST.REALM", "alice@TEST.REALM"));
    }

    #[test]
    fn media_types_drop_parameters_and_case() {
        assert_eq!(
            media_type(" Text/HTML ; charset=UTF-8").as_deref(),
            Some("text/html")
        );
        assert_eq!(
            media_type("application/octet-stream").as_deref(),
            Some("application/octet-stream")
        );
        for bad in ["", "text", "text/", "/html", "text/ht ml", "a/b/c"] {
            assert_eq!(media_type(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_type_entries_are_exact_or_wildcard() {
        let types = ContentTypes::new(
            ["Application/X-MSDownload", "image/*"]
                .iter()
                .map(|t| content_type(t).unwrap())
                .collect(),
        );
        assert!(types.matches("application/x-msdownload"));
        assert!(types.matches("image/png"));
        assert!(!types.matches("application/pdf"));
        assert!(!types.matches("imagex/png"));
        for bad in [
            "*/*", "*/html", "image", "image/", "*", "a b/c", "text/*/x", "",
        ] {
            assert!(content_type(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_are_tokens() {
        assert_eq!(method(" post ").unwrap(), "post");
        assert!(method("PROPFIND").is_ok());
        for bad in ["", "GET POST", "GE(T"] {
            assert!(method(bad).is_err(), "{bad}");
        }
    }
}
