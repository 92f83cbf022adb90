//! Plain values for the data path: everything in the configuration that is not a rule.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::action::{CertErrorPolicy, SslAction};

/// Validated settings, paths already resolved against the configuration's folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `proxy.listen`: the proxy's listening sockets.
    pub listen: Vec<SocketAddr>,
    /// `proxy.connect_ports`: ports a CONNECT may reach (others: 403).
    pub connect_ports: Vec<u16>,
    /// `[tls]`.
    pub tls: TlsSettings,
    /// `[log]`.
    pub log: LogSettings,
    /// `[limits]`.
    pub limits: Limits,
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
    /// Client rejections of the replacement certificate, within ten minutes, that make
    /// a name bypassed (at least 1).
    pub learn_after: u32,
    /// How long a learned bypass lasts.
    pub learn_ttl: Duration,
    /// SHA-256 fingerprints of server leaf certificates treated as valid. Each one
    /// disables verification for that certificate: keep the list short and reviewed.
    pub trusted_server_certs: Vec<[u8; 32]>,
    /// Capacity of the replacement-certificate cache (at least 1).
    pub cert_cache_size: u64,
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

/// `[log]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// Where access-log records go.
    pub access: LogTarget,
    /// Diagnostics level on stderr: `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
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
    /// Time without a byte after which tunnels and keep-alive connections close.
    pub idle_timeout: Duration,
    /// Largest request or response head; more is answered 431.
    pub max_header_bytes: usize,
}
