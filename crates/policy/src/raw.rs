//! The configuration file as written: serde structs that reject unknown keys and keep
//! the span of every value a later check may complain about. Defaults are applied when
//! compiling (see `compile.rs`), so a missing key is `None` here.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::action::{CertErrorPolicy, SslAction};
use crate::anti_virus::EngineKind;
use crate::conditions::RawConditions;
use crate::net::PortValue;
use crate::settings::{
    HostMismatch, LeafKey, NonTls, OnOversize, OnScanError, SniMismatch, SyslogFormat,
};
use crate::size::SizeValue;

/// A list whose entries, and the list itself, carry their spans.
pub(crate) type SpannedList<T> = Spanned<Vec<Spanned<T>>>;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawConfig {
    pub proxy: RawProxy,
    pub auth: RawAuth,
    pub admin: RawAdmin,
    pub tls: RawTls,
    pub upstream_proxies: Vec<RawUpstreamProxy>,
    pub ssl_rules: Vec<RawSslRule>,
    pub http_rules: Vec<RawHttpRule>,
    pub categories: BTreeMap<String, RawCategory>,
    pub anti_phishing: RawAntiPhishing,
    pub anti_virus: RawAntiVirus,
    pub block_page: RawBlockPage,
    pub pac: RawPac,
    pub log: RawLog,
    pub limits: RawLimits,
    pub cluster: RawCluster,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAuth {
    pub users_file: Option<Spanned<String>>,
    pub realm: Option<Spanned<String>>,
    pub ldap_url: Option<Spanned<String>>,
    pub ldap_starttls: Option<bool>,
    pub ldap_ca: Option<Spanned<String>>,
    pub ldap_bind_dn: Option<Spanned<String>>,
    pub ldap_bind_password_file: Option<Spanned<String>>,
    pub ldap_user_base: Option<Spanned<String>>,
    pub ldap_user_filter: Option<Spanned<String>>,
    pub ldap_group_base: Option<Spanned<String>>,
    pub kerberos_keytab: Option<Spanned<String>>,
    pub kerberos_principal: Option<Spanned<String>>,
    pub cache_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCluster {
    pub redis: Option<Spanned<String>>,
    pub redis_password_file: Option<Spanned<String>>,
    pub redis_ca: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAdmin {
    pub listen: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawProxy {
    pub listen: Option<SpannedList<String>>,
    pub transparent_listen: Option<SpannedList<String>>,
    pub connect_ports: Option<Vec<Spanned<i64>>>,
    pub proxy_protocol: Option<bool>,
    pub hosts_file: Option<Spanned<String>>,
    pub proxy_protocol_from: Option<SpannedList<String>>,
    pub deny_destinations: Option<SpannedList<String>>,
    pub default_via: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTls {
    pub decryption: Option<bool>,
    pub default_action: Option<SslAction>,
    pub ca_cert: Option<Spanned<String>>,
    pub ca_key: Option<Spanned<String>>,
    pub leaf_key: Option<LeafKey>,
    pub upstream_roots: Option<Vec<Spanned<String>>>,
    pub crl_files: Option<Vec<Spanned<String>>>,
    pub on_cert_error: Option<CertErrorPolicy>,
    pub on_sni_mismatch: Option<SniMismatch>,
    pub on_non_tls: Option<NonTls>,
    pub on_host_mismatch: Option<HostMismatch>,
    pub learn_bypass: Option<bool>,
    pub learn_after: Option<Spanned<i64>>,
    pub learn_ttl: Option<Spanned<String>>,
    pub learn_max_names: Option<Spanned<i64>>,
    pub learn_state: Option<Spanned<String>>,
    pub trusted_server_certs: Option<Vec<Spanned<String>>>,
    pub cert_cache_size: Option<Spanned<i64>>,
    pub strip_alt_svc_h3: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSslRule {
    pub name: Spanned<String>,
    /// Read as text and checked when compiling, so an unknown action does not hide the
    /// rest of its rule's errors.
    pub action: Spanned<String>,
    pub cert_errors: Option<CertErrorPolicy>,
    pub clients: Option<SpannedList<String>>,
    pub user_agents: Option<SpannedList<String>>,
    pub domains: Option<SpannedList<String>>,
    pub domain_regex: Option<SpannedList<String>>,
    pub categories: Option<SpannedList<String>>,
    pub ips: Option<SpannedList<String>>,
    pub ports: Option<SpannedList<PortValue>>,
    pub users: Option<SpannedList<String>>,
    pub groups: Option<SpannedList<String>>,
    pub via: Option<Spanned<String>>,
}

impl RawSslRule {
    pub(crate) fn conditions(&self) -> RawConditions<'_> {
        RawConditions {
            clients: self.clients.as_ref(),
            users: self.users.as_ref(),
            groups: self.groups.as_ref(),
            user_agents: self.user_agents.as_ref(),
            domains: self.domains.as_ref(),
            domain_regex: self.domain_regex.as_ref(),
            categories: self.categories.as_ref(),
            ips: self.ips.as_ref(),
            ports: self.ports.as_ref(),
            methods: None,
            url_regex: None,
            content_types: None,
        }
    }
}

/// One `[[http_rules]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttpRule {
    pub name: Spanned<String>,
    /// Checked when compiling, like [`RawSslRule::action`].
    pub action: Spanned<String>,
    pub clients: Option<SpannedList<String>>,
    pub user_agents: Option<SpannedList<String>>,
    pub domains: Option<SpannedList<String>>,
    pub domain_regex: Option<SpannedList<String>>,
    pub categories: Option<SpannedList<String>>,
    pub ips: Option<SpannedList<String>>,
    pub ports: Option<SpannedList<PortValue>>,
    pub users: Option<SpannedList<String>>,
    pub groups: Option<SpannedList<String>>,
    pub methods: Option<SpannedList<String>>,
    pub url_regex: Option<SpannedList<String>>,
    pub content_types: Option<SpannedList<String>>,
    pub via: Option<Spanned<String>>,
}

impl RawHttpRule {
    pub(crate) fn conditions(&self) -> RawConditions<'_> {
        RawConditions {
            clients: self.clients.as_ref(),
            users: self.users.as_ref(),
            groups: self.groups.as_ref(),
            user_agents: self.user_agents.as_ref(),
            domains: self.domains.as_ref(),
            domain_regex: self.domain_regex.as_ref(),
            categories: self.categories.as_ref(),
            ips: self.ips.as_ref(),
            ports: self.ports.as_ref(),
            methods: self.methods.as_ref(),
            url_regex: self.url_regex.as_ref(),
            content_types: self.content_types.as_ref(),
        }
    }
}

/// One `[[upstream_proxies]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreamProxy {
    pub name: Spanned<String>,
    pub urls: SpannedList<String>,
    pub credentials_file: Option<Spanned<String>>,
}

/// `name = ["pattern", ...]` or `name = { file = "lists/x.txt" }`.
pub(crate) enum RawCategory {
    Inline(Vec<Spanned<String>>),
    File(Spanned<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategoryFile {
    file: Spanned<String>,
}

impl<'de> Deserialize<'de> for RawCategory {
    // Not `#[serde(untagged)]`: that buffers the value and loses the entries' spans.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CategoryVisitor;
        impl<'de> Visitor<'de> for CategoryVisitor {
            type Value = RawCategory;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of domain patterns or a table `{ file = \"...\" }`")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawCategory, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(RawCategory::Inline)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawCategory, A::Error> {
                RawCategoryFile::deserialize(MapAccessDeserializer::new(map))
                    .map(|raw| RawCategory::File(raw.file))
            }
        }
        deserializer.deserialize_any(CategoryVisitor)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAntiPhishing {
    pub lists: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAntiVirus {
    pub engine: Option<Spanned<EngineKind>>,
    pub url: Option<Spanned<String>>,
    pub max_scan_size: Option<Spanned<SizeValue>>,
    pub on_oversize: Option<OnOversize>,
    pub on_error: Option<OnScanError>,
    pub scan_uploads: Option<bool>,
    pub timeout: Option<Spanned<String>>,
    pub max_spool_total: Option<Spanned<SizeValue>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawBlockPage {
    pub template: Option<Spanned<String>>,
}

/// `[pac]`: a PAC file, or the proxy address a generated one names.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPac {
    pub file: Option<Spanned<String>>,
    pub proxy: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLog {
    pub access: Option<Spanned<String>>,
    pub level: Option<Spanned<String>>,
    pub syslog: Option<Spanned<String>>,
    pub syslog_format: Option<SyslogFormat>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawLimits {
    pub max_connections: Option<Spanned<i64>>,
    pub client_hello_timeout: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub upstream_response_timeout: Option<Spanned<String>>,
}
