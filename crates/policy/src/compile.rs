//! From the file's [`RawConfig`] sections to [`Settings`]: SPEC §5 defaults, value checks
//! with the offending line, and paths resolved against the configuration's folder.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use crate::action::{CertErrorPolicy, SslAction};
use crate::admin::AdminToken;
use crate::authority::configured_host_port;
use crate::diagnostics::{ConfigError, Diagnostics};
use crate::keytab::{first_http_principal, keytab_principals};
use crate::net::{parse_net, port_number, IpSet};
use crate::raw::{
    RawAdmin, RawAuth, RawBlockPage, RawLimits, RawLog, RawProxy, RawTls, SpannedList,
};
use crate::settings::{
    AuthSettings, BlockPageSettings, BlockTemplate, HostMismatch, KerberosSettings, LdapSettings,
    LeafKey, Limits, LogSettings, LogTarget, NonTls, Secret, SniMismatch, SyslogTarget,
    SyslogTransport, TlsSettings, DEFAULT_LDAP_USER_FILTER,
};

// SPEC §5 defaults; those of booleans and enums are written where they are applied.
const DEFAULT_LISTEN: (Ipv4Addr, u16) = (Ipv4Addr::LOCALHOST, 3128);
const DEFAULT_CONNECT_PORT: u16 = 443;
const DEFAULT_ADMIN_PORT: u16 = 3129;
const DEFAULT_PROXY_PROTOCOL_FROM: [&str; 2] = ["127.0.0.0/8", "::1/128"];
const DEFAULT_CA_CERT: &str = "sluice-data/ca.pem";
const DEFAULT_CA_KEY: &str = "sluice-data/ca-key.pem";
const DEFAULT_CERT_CACHE_SIZE: u64 = 10_000;
const DEFAULT_LEARN_AFTER: u64 = 3;
const DEFAULT_LEARN_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_LEARN_MAX_NAMES: u64 = 10_000;
const DEFAULT_LEARN_STATE: &str = "sluice-data/bypass.json";
const DEFAULT_LOG_LEVEL: &str = "info";
const DEFAULT_MAX_CONNECTIONS: u64 = 10_000;
const DEFAULT_CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_MAX_HEADER_BYTES: u64 = 65_536;
const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Loopback, link-local (the cloud metadata address) and "this network".
const DEFAULT_DENY_DESTINATIONS: [&str; 5] = [
    "127.0.0.0/8",
    "::1/128",
    "169.254.0.0/16",
    "fe80::/10",
    "0.0.0.0/8",
];

const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// How long a successful check is reused by default (`auth.cache_ttl`).
const DEFAULT_AUTH_CACHE_TTL: Duration = Duration::from_secs(300);

/// `[auth]`: the users file and the LDAP service account's password are read now, so
/// that a bad line or an unreadable file is a load error.
pub(crate) fn auth(mut raw: RawAuth, base_dir: &Path, diag: &mut Diagnostics<'_>) -> AuthSettings {
    let realm = match raw.realm.take() {
        None => "sluice".to_string(),
        Some(realm) => {
            let text = realm.get_ref();
            if text.is_empty() || text.contains(['"', '\\', '\r', '\n']) {
                diag.at(
                    realm.span(),
                    "auth.realm: must be non-empty, without quotes, backslashes or line breaks",
                );
            }
            text.clone()
        }
    };
    let cache_ttl = duration(
        raw.cache_ttl.take(),
        DEFAULT_AUTH_CACHE_TTL,
        "auth.cache_ttl",
        diag,
    );
    let ldap = ldap(&mut raw, base_dir, diag);
    let kerberos = kerberos(&mut raw, base_dir, diag);
    let (users_file, users) = users_file(raw.users_file, base_dir, diag);
    AuthSettings {
        kerberos,
        ldap,
        cache_ttl,
        users_file,
        users,
        realm,
    }
}

/// `auth.users_file`, resolved, and its users; `None` when absent or empty.
fn users_file(
    value: Option<Spanned<String>>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> (Option<PathBuf>, Vec<(String, String)>) {
    let Some(value) = value.filter(|v| !v.get_ref().trim().is_empty()) else {
        return (None, Vec::new());
    };
    let Some(path) = path(&value, base_dir, "auth.users_file", diag) else {
        return (None, Vec::new());
    };
    let users = match std::fs::read_to_string(&path) {
        Ok(text) => users(&text, &path, diag),
        // A file that does not exist yet is an empty one (`sluice user add` creates it).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            diag.at(
                value.span(),
                format!("auth.users_file: cannot read {}: {e}", path.display()),
            );
            Vec::new()
        }
    };
    (Some(path), users)
}

/// The `auth.ldap_*` keys; `None` without `auth.ldap_url`. A URL needs a user base, a
/// bind DN needs a readable password file, StartTLS needs `ldap://`.
fn ldap(raw: &mut RawAuth, base_dir: &Path, diag: &mut Diagnostics<'_>) -> Option<LdapSettings> {
    let url = raw
        .ldap_url
        .take()
        .filter(|v| !v.get_ref().trim().is_empty())?;
    let text = url.get_ref().trim().to_string();
    let starttls = raw.ldap_starttls.unwrap_or(false);
    let ldaps = text.starts_with("ldaps://");
    if !(ldaps || text.starts_with("ldap://")) || text.contains(char::is_whitespace) {
        diag.at(
            url.span(),
            "auth.ldap_url: expected ldap://HOST[:PORT] or ldaps://HOST[:PORT]",
        );
    } else if ldaps && starttls {
        diag.at(
            url.span(),
            "auth.ldap_starttls: StartTLS is for ldap:// URLs (ldaps:// is TLS already)",
        );
    }
    let user_base = match raw.ldap_user_base.take() {
        Some(base) if !base.get_ref().trim().is_empty() => base.get_ref().trim().to_string(),
        _ => {
            diag.at(
                url.span(),
                "auth.ldap_url: needs auth.ldap_user_base, where users are searched",
            );
            String::new()
        }
    };
    let user_filter = match raw.ldap_user_filter.take() {
        None => DEFAULT_LDAP_USER_FILTER.to_string(),
        Some(filter) => {
            let text = filter.get_ref().trim();
            if !(text.starts_with('(') && text.ends_with(')') && text.contains("{user}")) {
                diag.at(
                    filter.span(),
                    "auth.ldap_user_filter: expected an LDAP filter in parentheses containing {user}",
                );
            }
            text.to_string()
        }
    };
    let ca = raw
        .ldap_ca
        .take()
        .filter(|v| !v.get_ref().trim().is_empty())
        .and_then(|v| readable(&v, base_dir, "auth.ldap_ca", diag));
    let bind_dn = raw
        .ldap_bind_dn
        .take()
        .map(|v| v.get_ref().trim().to_string())
        .unwrap_or_default();
    let bind_password = match raw.ldap_bind_password_file.take() {
        Some(file) if !file.get_ref().trim().is_empty() => {
            let path = base_dir.join(file.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(text) => Secret(text.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => {
                    diag.at(
                        file.span(),
                        format!(
                            "auth.ldap_bind_password_file: cannot read {}: {e}",
                            path.display()
                        ),
                    );
                    Secret::default()
                }
            }
        }
        _ if !bind_dn.is_empty() => {
            diag.at(
                url.span(),
                "auth.ldap_bind_dn: needs auth.ldap_bind_password_file",
            );
            Secret::default()
        }
        _ => Secret::default(),
    };
    let group_base = raw
        .ldap_group_base
        .take()
        .map(|v| v.get_ref().trim().to_string())
        .unwrap_or_default();
    Some(LdapSettings {
        url: text,
        starttls,
        ca,
        bind_dn,
        bind_password,
        user_base,
        user_filter,
        group_base,
    })
}

/// `auth.kerberos_keytab` and `auth.kerberos_principal`; `None` without a keytab. The
/// keytab is read now: one that cannot be read, or that holds no key for the principal
/// (by default its first `HTTP/` one), could verify no ticket.
fn kerberos(
    raw: &mut RawAuth,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> Option<KerberosSettings> {
    let principal = raw.kerberos_principal.take();
    let Some(keytab) = raw
        .kerberos_keytab
        .take()
        .filter(|v| !v.get_ref().trim().is_empty())
    else {
        if let Some(principal) = principal.filter(|p| !p.get_ref().is_empty()) {
            diag.at(
                principal.span(),
                "auth.kerberos_principal: needs auth.kerberos_keytab, which holds its key",
            );
        }
        return None;
    };
    let path = path(&keytab, base_dir, "auth.kerberos_keytab", diag)?;
    let principals = match std::fs::read(&path) {
        Ok(bytes) => keytab_principals(&bytes).map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    };
    let principals = match principals {
        Ok(principals) => principals,
        Err(e) => {
            diag.at(keytab.span(), format!("auth.kerberos_keytab: {e}"));
            return None;
        }
    };
    let principal = match principal.filter(|p| !p.get_ref().trim().is_empty()) {
        Some(wanted) if principals.contains(wanted.get_ref()) => wanted.get_ref().clone(),
        Some(wanted) => {
            diag.at(
                wanted.span(),
                format!(
                    "auth.kerberos_principal: {} holds no key for {} (it holds: {})",
                    path.display(),
                    wanted.get_ref(),
                    principals.join(", ")
                ),
            );
            return None;
        }
        None => match first_http_principal(&principals) {
            Some(first) => first.to_string(),
            None => {
                diag.at(
                    keytab.span(),
                    format!(
                        "auth.kerberos_keytab: {} holds no HTTP/ service principal (it holds: {})",
                        path.display(),
                        principals.join(", ")
                    ),
                );
                return None;
            }
        },
    };
    Some(KerberosSettings {
        keytab: path,
        principal,
    })
}

/// A path that must name a readable file now.
fn readable(
    value: &Spanned<String>,
    base_dir: &Path,
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> Option<PathBuf> {
    let path = path(value, base_dir, key, diag)?;
    match std::fs::read(&path) {
        Ok(_) => Some(path),
        Err(e) => {
            diag.at(
                value.span(),
                format!("{key}: cannot read {}: {e}", path.display()),
            );
            None
        }
    }
}

/// `NAME:HASH` lines; `#` comments and blank lines skipped.
fn users(text: &str, path: &Path, diag: &mut Diagnostics<'_>) -> Vec<(String, String)> {
    let mut users: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let problem = match line.split_once(':') {
            None => Some("expected NAME:HASH".to_string()),
            Some(("", _)) => Some("empty user name".to_string()),
            Some((name, _)) if users.iter().any(|(n, _)| n == name) => {
                Some(format!("user `{name}` is listed twice"))
            }
            Some((_, hash)) if !(hash.starts_with("$2") || hash.starts_with("$argon2")) => {
                Some("unsupported hash: use bcrypt ($2y$...) or argon2 ($argon2id$...)".to_string())
            }
            Some((name, hash)) => {
                users.push((name.to_string(), hash.to_string()));
                None
            }
        };
        if let Some(problem) = problem {
            diag.extend([ConfigError {
                file: path.display().to_string(),
                line: Some(index + 1),
                message: format!("auth.users_file: {problem}"),
            }]);
        }
    }
    users
}

/// `[admin]`: the listening address (`""` disables the endpoint) and the token, read
/// now. An endpoint other machines can reach must have a token: it reloads the
/// configuration and tells which names go uninspected.
pub(crate) fn admin(
    raw: RawAdmin,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> (Option<SocketAddr>, Option<AdminToken>) {
    let token = raw
        .token_file
        .filter(|v| !v.get_ref().trim().is_empty())
        .and_then(|value| admin_token(&value, base_dir, diag));
    let Some(value) = raw.listen else {
        let default = SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_ADMIN_PORT));
        return (Some(default), token);
    };
    let text = value.get_ref().trim();
    if text.is_empty() {
        return (None, token);
    }
    let Ok(addr) = text.parse::<SocketAddr>() else {
        diag.at(
            value.span(),
            format!("admin.listen: invalid address `{text}`, expected IP:PORT like \"127.0.0.1:3129\", or \"\" to disable"),
        );
        return (None, token);
    };
    if !addr.ip().to_canonical().is_loopback() && token.is_none() {
        diag.at(
            value.span(),
            format!("admin.listen: {addr} is not a loopback address; set admin.token_file to require a bearer token"),
        );
    }
    (Some(addr), token)
}

/// `admin.token_file`: the token is the file's content without its trailing line end.
fn admin_token(
    value: &Spanned<String>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> Option<AdminToken> {
    let path = path(value, base_dir, "admin.token_file", diag)?;
    let problem = match std::fs::read_to_string(&path) {
        Ok(text) => match AdminToken::from_file_content(&text) {
            Some(token) => return Some(token),
            None => "the token must be one line of visible ASCII characters".to_string(),
        },
        Err(e) => format!("cannot read {}: {e}", path.display()),
    };
    diag.at(value.span(), format!("admin.token_file: {problem}"));
    None
}

/// `proxy.proxy_protocol_from`: address ranges; with `proxy.proxy_protocol`, an empty
/// list would close every connection, so it is an error.
pub(crate) fn proxy_protocol_from(
    raw: Option<SpannedList<String>>,
    proxy_protocol: bool,
    diag: &mut Diagnostics<'_>,
) -> Vec<IpNet> {
    let Some(list) = raw else {
        return DEFAULT_PROXY_PROTOCOL_FROM
            .iter()
            .filter_map(|net| net.parse().ok())
            .collect();
    };
    if proxy_protocol && list.get_ref().is_empty() {
        diag.at(
            list.span(),
            "proxy.proxy_protocol_from: empty, so every connection would be closed; list the load balancers' addresses",
        );
    }
    list.get_ref()
        .iter()
        .filter_map(|entry| {
            parse_net(entry.get_ref())
                .map_err(|e| diag.at(entry.span(), format!("proxy.proxy_protocol_from: {e}")))
                .ok()
        })
        .collect()
}

/// `proxy.listen`, `proxy.transparent_listen` and `proxy.connect_ports`.
pub(crate) fn proxy(raw: RawProxy, diag: &mut Diagnostics<'_>) -> ProxySockets {
    let listen = match raw.listen {
        None => vec![SocketAddr::from(DEFAULT_LISTEN)],
        Some(list) => {
            if list.get_ref().is_empty() {
                diag.at(list.span(), "proxy.listen: at least one address is needed");
            }
            socket_list("proxy.listen", list, diag)
        }
    };
    let transparent_listen = raw
        .transparent_listen
        .map(|list| socket_list("proxy.transparent_listen", list, diag))
        .unwrap_or_default();
    let connect_ports = match raw.connect_ports {
        None => vec![DEFAULT_CONNECT_PORT],
        Some(ports) => ports
            .iter()
            .filter_map(|port| {
                port_number(*port.get_ref())
                    .map_err(|e| diag.at(port.span(), format!("proxy.connect_ports: {e}")))
                    .ok()
            })
            .collect(),
    };
    ProxySockets {
        listen,
        transparent_listen,
        connect_ports,
    }
}

/// What [`proxy`] compiles.
pub(crate) struct ProxySockets {
    pub listen: Vec<SocketAddr>,
    pub transparent_listen: Vec<SocketAddr>,
    pub connect_ports: Vec<u16>,
}

fn socket_list(
    key: &str,
    list: Spanned<Vec<Spanned<String>>>,
    diag: &mut Diagnostics<'_>,
) -> Vec<SocketAddr> {
    let mut seen = HashSet::new();
    let mut addrs = Vec::new();
    for text in list.get_ref() {
        match text.get_ref().trim().parse::<SocketAddr>() {
            Ok(addr) if !seen.insert(addr) => {
                diag.at(text.span(), format!("{key}: duplicate address {addr}"));
            }
            Ok(addr) => addrs.push(addr),
            Err(_) => diag.at(
                text.span(),
                format!(
                    "{key}: invalid address `{}`, expected IP:PORT like \"127.0.0.1:3128\" or \"[::1]:3128\"",
                    text.get_ref()
                ),
            ),
        }
    }
    addrs
}

/// `proxy.deny_destinations`: CIDRs or single addresses; `[]` allows every address.
pub(crate) fn deny_destinations(
    raw: Option<SpannedList<String>>,
    diag: &mut Diagnostics<'_>,
) -> IpSet {
    let Some(list) = raw else {
        let nets = DEFAULT_DENY_DESTINATIONS
            .iter()
            .filter_map(|text| parse_net(text).ok());
        return IpSet::new(nets.collect());
    };
    let nets = list.get_ref().iter().filter_map(|text| {
        parse_net(text.get_ref())
            .map_err(|e| diag.at(text.span(), format!("proxy.deny_destinations: {e}")))
            .ok()
    });
    IpSet::new(nets.collect())
}

/// `[tls]`.
pub(crate) fn tls(raw: RawTls, base_dir: &Path, diag: &mut Diagnostics<'_>) -> TlsSettings {
    let upstream_roots = raw
        .upstream_roots
        .unwrap_or_default()
        .iter()
        .filter_map(|root| path(root, base_dir, "tls.upstream_roots", diag))
        .collect();
    let crl_files = raw
        .crl_files
        .unwrap_or_default()
        .iter()
        .filter_map(|crl| path(crl, base_dir, "tls.crl_files", diag))
        .collect();
    let trusted_server_certs = raw
        .trusted_server_certs
        .unwrap_or_default()
        .iter()
        .filter_map(|fp| {
            fingerprint(fp.get_ref())
                .map_err(|e| diag.at(fp.span(), format!("tls.trusted_server_certs: {e}")))
                .ok()
        })
        .collect();
    TlsSettings {
        decryption: raw.decryption.unwrap_or(true),
        default_action: raw.default_action.unwrap_or(SslAction::Bump),
        ca_cert: path_or(raw.ca_cert, DEFAULT_CA_CERT, base_dir, "tls.ca_cert", diag),
        ca_key: path_or(raw.ca_key, DEFAULT_CA_KEY, base_dir, "tls.ca_key", diag),
        leaf_key: raw.leaf_key.unwrap_or(LeafKey::EcdsaP256),
        upstream_roots,
        crl_files,
        on_cert_error: raw.on_cert_error.unwrap_or(CertErrorPolicy::Block),
        on_sni_mismatch: raw.on_sni_mismatch.unwrap_or(SniMismatch::Terminate),
        on_non_tls: raw.on_non_tls.unwrap_or(NonTls::Terminate),
        on_host_mismatch: raw.on_host_mismatch.unwrap_or(HostMismatch::Block),
        learn_bypass: raw.learn_bypass.unwrap_or(true),
        learn_after: u32::try_from(positive(
            raw.learn_after,
            DEFAULT_LEARN_AFTER,
            "tls.learn_after",
            diag,
        ))
        .unwrap_or(u32::MAX),
        learn_ttl: duration(raw.learn_ttl, DEFAULT_LEARN_TTL, "tls.learn_ttl", diag),
        learn_max_names: to_usize(positive(
            raw.learn_max_names,
            DEFAULT_LEARN_MAX_NAMES,
            "tls.learn_max_names",
            diag,
        )),
        learn_state: path_or(
            raw.learn_state,
            DEFAULT_LEARN_STATE,
            base_dir,
            "tls.learn_state",
            diag,
        ),
        trusted_server_certs,
        strip_alt_svc_h3: raw.strip_alt_svc_h3.unwrap_or(true),
        cert_cache_size: positive(
            raw.cert_cache_size,
            DEFAULT_CERT_CACHE_SIZE,
            "tls.cert_cache_size",
            diag,
        ),
    }
}

/// `proxy.hosts_file`: `/etc/hosts` unless configured (a test or a split-horizon
/// deployment names its own).
pub(crate) fn hosts_file(
    value: Option<Spanned<String>>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> PathBuf {
    path_or(value, "/etc/hosts", base_dir, "proxy.hosts_file", diag)
}

/// A path value resolved against `base_dir`; `None`, with an error, when it is empty.
fn path(
    value: &Spanned<String>,
    base_dir: &Path,
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> Option<PathBuf> {
    if value.get_ref().trim().is_empty() {
        diag.at(value.span(), format!("{key}: empty path"));
        return None;
    }
    Some(base_dir.join(value.get_ref()))
}

/// [`path`], or `default` resolved against `base_dir` when the key is absent.
fn path_or(
    value: Option<Spanned<String>>,
    default: &str,
    base_dir: &Path,
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> PathBuf {
    match value {
        None => base_dir.join(default),
        Some(value) => path(&value, base_dir, key, diag).unwrap_or_default(),
    }
}

/// `sha256:<64 hex digits>`, hex in either case, optionally separated by colons.
fn fingerprint(text: &str) -> Result<[u8; 32], String> {
    let bad = |why: &str| format!("invalid fingerprint `{text}`: {why}");
    let hex = text
        .trim()
        .strip_prefix("sha256:")
        .ok_or_else(|| bad("expected \"sha256:<hex>\""))?;
    let digits: Vec<u8> = hex.bytes().filter(|&b| b != b':').collect();
    if digits.len() != 64 {
        return Err(bad("a SHA-256 fingerprint is 32 bytes (64 hex digits)"));
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = hex_value(pair[0]).ok_or_else(|| bad("not a hex digit"))?;
        let low = hex_value(pair[1]).ok_or_else(|| bad("not a hex digit"))?;
        *byte = high << 4 | low;
    }
    Ok(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// `[block_page]`: the template is read now, so that a missing file is a load error
/// rather than a broken page later; an empty path means the built-in page.
pub(crate) fn block_page(
    raw: RawBlockPage,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> BlockPageSettings {
    let Some(value) = raw.template.filter(|t| !t.get_ref().trim().is_empty()) else {
        return BlockPageSettings::default();
    };
    let path = base_dir.join(value.get_ref());
    match std::fs::read_to_string(&path) {
        Ok(text) => BlockPageSettings {
            template: Some(BlockTemplate { path, text }),
        },
        Err(e) => {
            diag.at(
                value.span(),
                format!("block_page.template: cannot read {}: {e}", path.display()),
            );
            BlockPageSettings::default()
        }
    }
}

/// `[log]`.
pub(crate) fn log(raw: RawLog, base_dir: &Path, diag: &mut Diagnostics<'_>) -> LogSettings {
    let access = match &raw.access {
        Some(v) if v.get_ref() != "stdout" => {
            path(v, base_dir, "log.access", diag).map_or(LogTarget::Stdout, LogTarget::File)
        }
        _ => LogTarget::Stdout,
    };
    let level = match raw.level {
        None => DEFAULT_LOG_LEVEL.to_owned(),
        Some(level) => {
            let name = level.get_ref().trim().to_ascii_lowercase();
            if !LOG_LEVELS.contains(&name.as_str()) {
                diag.at(
                    level.span(),
                    format!(
                        "log.level: unknown level `{}`, expected one of error, warn, info, debug, trace",
                        level.get_ref()
                    ),
                );
            }
            name
        }
    };
    let syslog = raw.syslog.and_then(|value| {
        let text = value.get_ref().trim();
        if text.is_empty() {
            return None;
        }
        syslog_target(text)
            .map_err(|why| diag.at(value.span(), format!("log.syslog: {why}")))
            .ok()
    });
    LogSettings {
        access,
        level,
        syslog,
        syslog_format: raw.syslog_format.unwrap_or_default(),
    }
}

/// `udp://host[:port]` or `tcp://host[:port]`; IPv6 hosts in brackets.
fn syslog_target(text: &str) -> Result<SyslogTarget, String> {
    let (transport, rest, default_port) = if let Some(rest) = text.strip_prefix("udp://") {
        (SyslogTransport::Udp, rest, 514)
    } else if let Some(rest) = text.strip_prefix("tcp://") {
        (SyslogTransport::Tcp, rest, 601)
    } else {
        return Err(format!(
            "`{text}` is not udp://host:port or tcp://host:port"
        ));
    };
    if rest.is_empty() {
        return Err(format!("`{text}` names no host"));
    }
    let (host, port) = configured_host_port(rest, default_port)?;
    Ok(SyslogTarget {
        transport,
        host,
        port,
    })
}

/// `[limits]`.
pub(crate) fn limits(raw: RawLimits, diag: &mut Diagnostics<'_>) -> Limits {
    Limits {
        max_connections: to_usize(positive(
            raw.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            "limits.max_connections",
            diag,
        )),
        client_hello_timeout: duration(
            raw.client_hello_timeout,
            DEFAULT_CLIENT_HELLO_TIMEOUT,
            "limits.client_hello_timeout",
            diag,
        ),
        connect_timeout: duration(
            raw.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
            "limits.connect_timeout",
            diag,
        ),
        idle_timeout: duration(
            raw.idle_timeout,
            DEFAULT_IDLE_TIMEOUT,
            "limits.idle_timeout",
            diag,
        ),
        max_header_bytes: to_usize(positive(
            raw.max_header_bytes,
            DEFAULT_MAX_HEADER_BYTES,
            "limits.max_header_bytes",
            diag,
        )),
        upstream_response_timeout: duration(
            raw.upstream_response_timeout,
            DEFAULT_UPSTREAM_RESPONSE_TIMEOUT,
            "limits.upstream_response_timeout",
            diag,
        ),
    }
}

/// An integer that must be at least 1; `default` when absent or invalid (with an error).
fn positive(
    value: Option<Spanned<i64>>,
    default: u64,
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> u64 {
    let Some(value) = value else { return default };
    match u64::try_from(*value.get_ref()) {
        Ok(n) if n >= 1 => n,
        _ => {
            diag.at(
                value.span(),
                format!("{key}: must be at least 1, got {}", value.get_ref()),
            );
            default
        }
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A humantime duration ("10s", "5m", "1h 30m") that must be positive.
pub(crate) fn duration(
    value: Option<Spanned<String>>,
    default: Duration,
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> Duration {
    let Some(value) = value else { return default };
    match humantime::parse_duration(value.get_ref().trim()) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            diag.at(value.span(), format!("{key}: must be greater than zero"));
            default
        }
        Err(e) => {
            diag.at(
                value.span(),
                format!(
                    "{key}: invalid duration `{}` ({e}), expected like \"10s\", \"5m\" or \"1h 30m\"",
                    value.get_ref()
                ),
            );
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_accept_either_case_and_colons() {
        let lower = format!("sha256:{}", "ab".repeat(32));
        let upper_colons = format!("sha256:{}", vec!["AB"; 32].join(":"));
        assert_eq!(fingerprint(&lower).unwrap(), [0xab; 32]);
        assert_eq!(fingerprint(&upper_colons).unwrap(), [0xab; 32]);
        let mixed = format!("sha256:0123456789abcdefABCDEF{}", "0".repeat(42));
        let fp = fingerprint(&mixed).unwrap();
        assert_eq!(
            &fp[..11],
            &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xab, 0xcd, 0xef]
        );
    }

    #[test]
    fn bad_fingerprints_are_rejected() {
        for bad in [
            "ab".repeat(32),
            format!("sha1:{}", "ab".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
            format!("sha256:{}", "ab".repeat(33)),
            format!("sha256:{}zz", "ab".repeat(31)),
            format!("sha256:{}é", "a".repeat(63)),
        ] {
            assert!(fingerprint(&bad).is_err(), "{bad}");
        }
    }
}
