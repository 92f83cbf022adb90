//! Plain values for the data path: everything in the configuration that is not a rule.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::action::{CertErrorPolicy, SslAction};
use crate::admin::AdminToken;
use crate::net::IpSet;
use crate::upstream_proxies::{UpstreamProxy, Via};

/// Validated settings, paths already resolved against the configuration's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `proxy.listen`: the proxy's listening sockets.
    pub listen: Vec<SocketAddr>,
    /// `proxy.transparent_listen`: sockets for connections the kernel redirected
    /// (`REDIRECT` or `TPROXY`), whose original destination stands for the CONNECT target.
    pub transparent_listen: Vec<SocketAddr>,
    /// `proxy.connect_ports`: ports a CONNECT may reach (others: 403).
    pub connect_ports: Vec<u16>,
    /// `proxy.proxy_protocol`: every proxy connection starts with a PROXY v1/v2 header
    /// (behind HAProxy) whose source address is the client's.
    pub proxy_protocol: bool,
    /// `proxy.hosts_file`: the hosts file names are looked up in before DNS (default
    /// `/etc/hosts`).
    pub hosts_file: PathBuf,
    /// `proxy.proxy_protocol_from`: the peers whose PROXY header is believed; a
    /// connection from any other peer is closed (see [`Settings::may_send_proxy_header`]).
    pub proxy_protocol_from: Vec<IpNet>,
    /// `proxy.deny_destinations`: addresses sluice never dials (SPEC §3 Destinations);
    /// test one with [`destination_denied`](crate::destination_denied).
    pub deny_destinations: IpSet,
    /// `[[upstream_proxies]]`: the parent proxies `via` may name.
    pub upstream_proxies: Vec<UpstreamProxy>,
    /// `proxy.default_via`: where a connection no rule's `via` sends elsewhere leaves.
    pub default_via: Via,
    /// `[auth]`.
    pub auth: AuthSettings,
    /// `admin.listen`: the admin endpoint's socket; `None` when disabled (`""`).
    pub admin_listen: Option<SocketAddr>,
    /// `admin.token_file`, read at load time: the bearer token every admin route but
    /// `/healthz`, `/readyz`, `/ca.pem` and `/ca.der` requires; `None`: no token.
    pub admin_token: Option<AdminToken>,
    /// `[tls]`.
    pub tls: TlsSettings,
    /// `[anti_virus]`.
    pub anti_virus: AntiVirusSettings,
    /// `[block_page]`.
    pub block_page: BlockPageSettings,
    /// `[pac]`: the proxy auto-configuration script served as `/proxy.pac` and
    /// `/wpad.dat` (`pac.file` read at load time, or written from `pac.proxy`); `None`
    /// when neither is set (those paths are then not found).
    pub pac: Option<String>,
    /// `[log]`.
    pub log: LogSettings,
    /// `[limits]`.
    pub limits: Limits,
    /// `[cluster]`.
    pub cluster: crate::cluster::ClusterSettings,
}

impl Settings {
    /// The parent a [`Via`] names (`None` for [`Via::Direct`]).
    pub fn parent(&self, via: &Via) -> Option<&UpstreamProxy> {
        match via {
            Via::Direct => None,
            Via::Parent(name) => self.upstream_proxies.iter().find(|p| &p.name == name),
        }
    }

    /// Whether a connection from `peer` may open with a PROXY header (with
    /// `proxy.proxy_protocol`). Anyone else who could send one would choose the client
    /// address that `clients` rules and the logs see. IPv4-mapped IPv6 peers (dual-stack
    /// sockets) are compared as the IPv4 address they carry.
    pub fn may_send_proxy_header(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.proxy_protocol_from
            .iter()
            .any(|net| net.contains(&peer))
    }
}

/// `[tls]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `false` tunnels every connection whatever the rules say.
    pub decryption: bool,
    /// The action when no SSL rule matches at stage `client_hello`.
    pub default_action: SslAction,
    /// Proxy CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// Proxy CA private key (PEM). Whoever reads it can impersonate any site to every
    /// client that trusts the CA.
    pub ca_key: PathBuf,
    /// Key type of minted replacement certificates.
    pub leaf_key: LeafKey,
    /// PEM files trusted in addition to the system roots for upstream verification.
    pub upstream_roots: Vec<PathBuf>,
    /// Certificate revocation lists (PEM or DER) checked for upstream chains, for
    /// internal PKIs.
    pub crl_files: Vec<PathBuf>,
    /// What a bump does on an upstream certificate error, unless a rule overrides it.
    pub on_cert_error: CertErrorPolicy,
    /// SNI differing from a CONNECT host name.
    pub on_sni_mismatch: SniMismatch,
    /// A client that does not speak TLS after the CONNECT.
    pub on_non_tls: NonTls,
    /// A bumped request whose `Host`/`:authority` names another host than the SNI.
    pub on_host_mismatch: HostMismatch,
    /// Learn which names cannot be bumped (pinning clients, client certificates) and
    /// tunnel them for `learn_ttl`.
    pub learn_bypass: bool,
    /// Distinct client addresses that rejected the replacement certificate within ten
    /// minutes and so make a name bypassed (at least 1).
    pub learn_after: u32,
    /// How long a learned bypass lasts.
    pub learn_ttl: Duration,
    /// Names counted or learned at most (at least 1); the least recently seen go first.
    pub learn_max_names: usize,
    /// Where the learned bypasses are kept across restarts.
    pub learn_state: PathBuf,
    /// SHA-256 fingerprints of server leaf certificates treated as valid. Each one
    /// disables verification for that certificate: keep the list short and reviewed.
    pub trusted_server_certs: Vec<[u8; 32]>,
    /// Capacity of the replacement-certificate cache (at least 1).
    pub cert_cache_size: u64,
    /// Remove `h3` and `h3-*` entries from `Alt-Svc` in relayed responses (default), so
    /// clients do not move to QUIC, which sluice cannot see (see
    /// [`strip_alt_svc_h3`](crate::strip_alt_svc_h3)).
    pub strip_alt_svc_h3: bool,
}

/// `tls.leaf_key`: the key type of minted certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
pub enum LeafKey {
    /// `ecdsa-p256` (default).
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// `rsa-2048`, for clients that cannot do ECDSA.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
}

impl LeafKey {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            LeafKey::EcdsaP256 => "ecdsa-p256",
            LeafKey::Rsa2048 => "rsa-2048",
        }
    }
}

/// `tls.on_sni_mismatch` (SPEC §1 step 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SniMismatch {
    /// Close the connection (default): closes the CONNECT-one-name, speak-TLS-to-another
    /// bypass.
    Terminate,
    /// Decide on the SNI as if there were no mismatch. Reopens that bypass.
    Ignore,
}

impl SniMismatch {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            SniMismatch::Terminate => "terminate",
            SniMismatch::Ignore => "ignore",
        }
    }
}

/// `tls.on_host_mismatch` (SPEC §2.6): domain fronting inside a bumped connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostMismatch {
    /// Answer with the block page, status 421, reason `host_mismatch` (default).
    Block,
    /// Relay the request anyway. Lets a client reach one site under another's name.
    Ignore,
}

impl HostMismatch {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            HostMismatch::Block => "block",
            HostMismatch::Ignore => "ignore",
        }
    }
}

/// `tls.on_non_tls`: a client that sends something other than a ClientHello, or nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NonTls {
    /// Close the connection (default).
    Terminate,
    /// Relay the bytes uninspected (SSH, SMTP and other server-speaks-first protocols).
    Tunnel,
}

impl NonTls {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            NonTls::Terminate => "terminate",
            NonTls::Tunnel => "tunnel",
        }
    }
}

/// `[anti_virus]` (SPEC §3 step 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AntiVirusSettings {
    /// The engine bodies are sent to, with its address.
    pub engine: AvEngine,
    /// Largest body scanned, in bytes (at least 1); a larger one is `on_oversize`.
    pub max_scan_size: u64,
    /// A body larger than `max_scan_size`.
    pub on_oversize: OnOversize,
    /// The engine down, timing out or answering nonsense.
    pub on_error: OnScanError,
    /// Whether request bodies (uploads) are scanned too.
    pub scan_uploads: bool,
    /// Time allowed for one scan: connecting to the engine, sending it the body and
    /// receiving its verdict. Exceeding it is an engine error (`on_error`).
    pub timeout: Duration,
    /// Bytes of all bodies held for a verdict at once, in memory and on disk (at least
    /// 1); a body that does not fit is `on_error`.
    pub max_spool_total: u64,
}

/// `anti_virus.engine` with its `anti_virus.url`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AvEngine {
    /// `none` (default): nothing is scanned.
    None,
    /// `icap`: an ICAP server (RFC 3507), such as c-icap with ClamAV.
    Icap(IcapService),
    /// `clamd`: ClamAV's daemon, `INSTREAM`.
    Clamd(ClamdAddress),
}

impl AvEngine {
    /// The name used in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            AvEngine::None => "none",
            AvEngine::Icap(_) => "icap",
            AvEngine::Clamd(_) => "clamd",
        }
    }
}

/// An ICAP service: `icap://host[:port]/service` (port 1344 by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcapService {
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The service path, with its leading `/` and any query (`/avscan`,
    /// `/virus_scan?allow204=on`).
    pub service: String,
}

impl IcapService {
    /// `host:port`, with brackets around an IPv6 address: the `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `icap://host:port/service`: the request target of every ICAP request.
    pub fn uri(&self) -> String {
        format!("icap://{}{}", self.authority(), self.service)
    }
}

/// Where clamd listens: `tcp://host[:port]` (port 3310 by default) or `unix:/path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClamdAddress {
    /// A TCP socket.
    Tcp {
        /// Host name or IP address (an IPv6 address without brackets).
        host: String,
        /// TCP port.
        port: u16,
    },
    /// A Unix socket; a relative path is resolved against the configuration's folder.
    Unix(PathBuf),
}

/// `anti_virus.on_oversize`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOversize {
    /// Pass the body unscanned (default; verdict `unscanned`).
    Allow,
    /// Answer with the block page (403, reason `oversize`). Large downloads then fail.
    Block,
}

impl OnOversize {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnOversize::Allow => "allow",
            OnOversize::Block => "block",
        }
    }
}

/// `anti_virus.on_error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnScanError {
    /// Answer with the block page (default; 503, reason `scan_failed`).
    Block,
    /// Pass the body unscanned (verdict `unscanned`). An attacker who can slow the engine
    /// down gets content through unscanned.
    Allow,
}

impl OnScanError {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            OnScanError::Block => "block",
            OnScanError::Allow => "allow",
        }
    }
}

/// `[block_page]`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BlockPageSettings {
    /// `block_page.template`, read at load time; `None` for the built-in page.
    pub template: Option<BlockTemplate>,
}

/// A custom block-page template, with the `{reason}`, `{detail}`, `{url}`, `{rule}`
/// and `{request_id}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockTemplate {
    /// Where it was read from, resolved against the configuration's folder.
    pub path: PathBuf,
    /// Its content (UTF-8).
    pub text: String,
}

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Where access-log records go.
    pub access: LogTarget,
    /// Diagnostics level on stderr: `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// `log.syslog`: the same records sent to a syslog server too.
    pub syslog: Option<SyslogTarget>,
    /// `log.syslog_format`.
    pub syslog_format: SyslogFormat,
}

/// `log.syslog`: `udp://host:port` or `tcp://host:port` (ports 514 and 601 by default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogTarget {
    pub transport: SyslogTransport,
    pub host: String,
    pub port: u16,
}

/// How syslog records travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyslogTransport {
    /// RFC 5426: one message per datagram.
    Udp,
    /// RFC 6587: octet-counting framing.
    Tcp,
}

/// `log.syslog_format`: the message body of each syslog record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SyslogFormat {
    /// The access-log JSON object (default).
    #[default]
    Json,
    /// ArcSight Common Event Format.
    Cef,
}

/// `[auth]`: Basic proxy authentication, against the users file and/or LDAP, and
/// Negotiate (Kerberos) single sign-on.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AuthSettings {
    /// `auth.kerberos_keytab` and the principal it serves; `None`: no Negotiate.
    pub kerberos: Option<KerberosSettings>,
    /// `auth.ldap_url` and the keys that go with it; `None`: no LDAP.
    pub ldap: Option<LdapSettings>,
    /// `auth.cache_ttl`: how long a successful check is reused.
    pub cache_ttl: Duration,
    /// `auth.users_file`, resolved; `None`: no authentication.
    pub users_file: Option<PathBuf>,
    /// Its users and their password hashes (bcrypt `$2y$`/`$2b$`/`$2a$`, or argon2 PHC
    /// strings), read at load time.
    pub users: Vec<(String, String)>,
    /// `auth.realm`, sent in `Proxy-Authenticate`.
    pub realm: String,
}

/// Basic credentials checked against a directory (SPEC §10): the user's entry is found
/// with the service account, then a bind as that entry decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapSettings {
    /// `auth.ldap_url`: `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// `auth.ldap_starttls`: StartTLS on an `ldap://` URL.
    pub starttls: bool,
    /// `auth.ldap_ca`: PEM certificates trusted besides the system roots.
    pub ca: Option<PathBuf>,
    /// `auth.ldap_bind_dn`: the service account; empty: an anonymous search.
    pub bind_dn: String,
    /// The contents of `auth.ldap_bind_password_file`, without its final line break.
    pub bind_password: Secret,
    /// `auth.ldap_user_base`: where users are searched (subtree).
    pub user_base: String,
    /// `auth.ldap_user_filter`, with `{user}` where the escaped user name goes.
    pub user_filter: String,
    /// `auth.ldap_group_base`: where groups naming the user as `member`/`uniqueMember`
    /// are searched; empty: only the user entry's `memberOf`.
    pub group_base: String,
}

/// Negotiate (SPNEGO) single sign-on (SPEC §10): tickets for `principal`, verified with
/// the keys of `keytab`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosSettings {
    /// `auth.kerberos_keytab`, resolved; read when the configuration is loaded.
    pub keytab: PathBuf,
    /// `auth.kerberos_principal`, or the keytab's first `HTTP/` principal
    /// (`HTTP/proxy.corp.example@CORP.EXAMPLE`).
    pub principal: String,
}

/// The default `auth.ldap_user_filter`.
pub const DEFAULT_LDAP_USER_FILTER: &str =
    "(|(uid={user})(sAMAccountName={user})(userPrincipalName={user}))";

/// A secret read from a file: shown as `***` by `Debug`, so it never reaches a log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `log.access`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// `"stdout"`.
    Stdout,
    /// Any other value: a file, appended to.
    File(PathBuf),
}

/// `[limits]`. Every value is positive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Accepted proxy client connections at once; more are answered 503.
    pub max_connections: usize,
    /// Time allowed for a complete ClientHello after `200 Connection established`.
    pub client_hello_timeout: Duration,
    /// Time allowed for the TCP connection to a server.
    pub connect_timeout: Duration,
    /// Time without a byte after which tunnels, keep-alive connections and bodies close,
    /// and without a stream after which a bumped HTTP/2 client connection is closed.
    pub idle_timeout: Duration,
    /// Largest request or response head; more is answered 431.
    pub max_header_bytes: usize,
    /// Time allowed for a server's response headers once the request is sent; more is
    /// answered 504. (A body that then moves no byte for `idle_timeout` ends its
    /// exchange.)
    pub upstream_response_timeout: Duration,
}
