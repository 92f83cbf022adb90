//! Pure policy for sluice: the configuration model, its validation with line numbers,
//! the SSL-rule decisions of SPEC §1 and §4, the HTTP-rule decisions and the
//! anti-phishing lists of §3.
//!
//! The data path learns facts about a connection ([`SslFacts`]: client, CONNECT host or
//! SNI, destination IP, port, User-Agent) or a request ([`HttpFacts`]) and asks
//! [`Policy`] what to do; this crate never sees a socket. It must not depend on tokio or
//! do any I/O other than reading the configuration file and the files it names (category
//! lists, phishing lists, the block-page template), all at load time only.
//!
//! - [`Config::load`] / [`Config::from_str`] parse TOML into [`Settings`] (plain values for
//!   the data path) and a compiled, immutable [`Policy`], or return every problem found as
//!   a [`ConfigError`] printed `FILE:LINE: msg`.
//! - [`Policy::decide_connect`] and [`Policy::decide_hello`] are the two decision stages
//!   (the SNI check, an unverified SNI and the learned bypass included; a client that
//!   does not speak TLS is [`Policy::decide_non_tls`]); [`Policy::explain`] runs both for
//!   `sluice explain` and `/explain`.
//! - [`TlsSettings::accept_upstream`] decides whether a bump goes on after the server's
//!   certificate is verified.
//! - [`Policy::decide_http_request`] and [`Policy::decide_http_response`] apply the HTTP
//!   rules; [`Policy::phishing`] is the [`PhishingList`] a request URL is checked against.
//! - [`admin_access`] decides whether the admin endpoint serves a request (`Host`,
//!   `Origin`, bearer token); [`Settings::may_send_proxy_header`] whether a peer's PROXY
//!   header is believed.
//! - [`DomainSet`] holds domain patterns (`example.com`, `*.example.com`, `.example.com`)
//!   and answers a lookup with one hash probe per label, so a category of a million
//!   entries matches in well under a microsecond.
//!
//! Where the SPEC is silent, this crate decides:
//! - an empty condition list (`domains = []`) is an error, since it would never match;
//! - rule names `default` and `learned-bypass` are reserved (the access log uses them);
//! - `domain_regex` is unanchored and case-insensitive, on the normalized name (punycode);
//!   `user_agents` is unanchored and case-sensitive (write `(?i)` to change that);
//! - a destination name that is not a valid DNS name matches no domain condition;
//! - IPv4-mapped IPv6 addresses match IPv4 `clients` / `ips` ranges;
//! - host names may contain `_` (real ones do); labels are at most 63, names 253 bytes;
//! - a list file in the wrong format reports its first 20 bad lines and a count;
//! - `methods` compare ASCII case-insensitively; `url_regex` is unanchored and
//!   case-sensitive, on the absolute URL; `content_types` entries are `type/subtype` or
//!   `type/*` (not `*/*`), compared case-insensitively without parameters;
//! - `[anti_virus] url` is ignored with `engine = "none"`; sizes take decimal (`MB`) and
//!   binary (`MiB`) units, case-insensitive, always bytes.

mod action;
mod admin;
mod alt_svc;
mod anti_virus;
mod authority;
mod categories;
mod cluster;
mod compile;
mod conditions;
mod config;
mod diagnostics;
mod domain;
mod explain;
mod first_bytes;
mod hello;
mod host;
mod keytab;
mod learn;
mod list_file;
mod net;
mod pac;
mod phishing;
mod policy;
mod raw;
mod recover;
mod regexes;
mod rules;
mod settings;
mod size;
mod upstream_cert;
mod upstream_proxies;

pub use action::{CertErrorPolicy, HttpAction, SslAction, Stage};
pub use admin::{admin_access, AdminAccess, AdminRequest, AdminToken};
pub use alt_svc::{strip_alt_svc_h3, AltSvcEdit};
pub use authority::{split_port, unbracketed, SplitError};
pub use cluster::{ClusterSettings, RedisSettings};
pub use config::Config;
pub use diagnostics::ConfigError;
pub use domain::{normalize_domain, same_domain, DomainSet};
pub use explain::Explanation;
pub use first_bytes::{classify as classify_first_bytes, FirstBytes};
pub use hello::{DecidedBy, HelloDecision, HelloError, HelloFacts, NonTlsStep};
pub use host::{decide_host, Authority, HostDecision, HostError, HostFacts};
pub use keytab::{first_http_principal, keytab_principals, principal_short_name, KeytabError};
pub use learn::BypassEvidence;
pub use net::{destination_denied, IpSet};
pub use pac::{is_pac_path, PAC_CONTENT_TYPE, PAC_PATHS};
pub use phishing::{PhishingList, PhishingMatch};
pub use policy::{ConnectStep, HttpDecision, HttpFacts, Policy, SslDecision, SslFacts};
pub use rules::{DEFAULT_RULE, LEARNED_BYPASS_RULE};
pub use settings::{
    AntiVirusSettings, AuthSettings, AvEngine, BlockPageSettings, BlockTemplate, ClamdAddress,
    HostMismatch, IcapService, KerberosSettings, LdapSettings, LeafKey, Limits, LogSettings,
    LogTarget, NonTls, OnOversize, OnScanError, Secret, Settings, SniMismatch, SyslogFormat,
    SyslogTarget, SyslogTransport, TlsSettings, DEFAULT_LDAP_USER_FILTER,
};
pub use upstream_cert::{CertAcceptance, UpstreamCertFacts};
pub use upstream_proxies::{ParentAddr, ParentCredentials, UpstreamProxy, Via, DIRECT};
