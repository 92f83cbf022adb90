//! Everything a connection needs that outlives it: the configuration snapshot, the
//! certificate minters, the upstream TLS configuration, the access log and the pool of
//! plain-HTTP upstream connections. Built once per configuration.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use sluice_inspect::{Scanner, Spooler};
use sluice_policy::{Config, LeafKey, LogSettings, TlsSettings, UpstreamProxy};
use sluice_tls::ca::{CertificateAuthority, KeyKind};
use sluice_tls::mint::{LeafKeyKind, Minter};
use sluice_tls::verify::UpstreamVerifier;

use crate::dial::aia::IssuerFetcher;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::bypass::{BypassTable, LearnedBypass};
use crate::cluster::{Cluster, Node};
use crate::dial::local_addrs::LocalAddrs;
use crate::dial::pool::PlainClient;
use crate::dial::resolve::Resolver;
use crate::dial::tls::UpstreamConfigs;
use crate::dial::Dialer;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::recorder::Recorder;
use crate::telemetry::syslog::Syslog;

/// TLS sessions of returning clients kept for resumption.
const CLIENT_SESSIONS: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("upstream roots: {0}")]
    UpstreamRoots(String),
    #[error("creating the per-process untrusted CA: {0}")]
    UntrustedCa(String),
    #[error("setting up TLS session resumption: {0}")]
    Tls(String),
    /// `[auth]` could not be set up; the message names the key.
    #[error("{0}")]
    Auth(String),
}

/// What outlives a configuration generation: one per process.
pub struct Shared {
    /// Names learned as not bumpable.
    pub bypass: Arc<BypassTable>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// One permit per accepted proxy connection (`limits.max_connections` as started;
    /// a reload does not change it).
    pub(crate) connection_slots: Arc<Semaphore>,
    pub(crate) max_connections: usize,
    /// Cancelled when the drain starts (SIGTERM): `/readyz` answers 503 and served HTTP
    /// connections close once idle. Set by `server::serve`; every configuration
    /// generation watches it.
    pub(crate) draining: CancellationToken,
    /// The fleet (`[cluster]`, as started: a reload does not change it).
    pub(crate) cluster: Cluster,
}

impl Shared {
    pub fn new(max_connections: usize, cluster: Cluster) -> Arc<Self> {
        Arc::new(Shared {
            cluster,
            bypass: Arc::new(BypassTable::default()),
            metrics: Arc::new(Metrics::default()),
            connection_slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            draining: CancellationToken::new(),
        })
    }

    /// Whether the proxy has stopped accepting and is draining its connections.
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Share with the fleet from now on (a task for the life of the process); nothing
    /// when alone. `current`: the generation in force, whose access log records the
    /// bypasses the fleet learns through this node.
    pub fn start_cluster(&self, current: Arc<ArcSwap<Proxy>>) {
        tokio::spawn(crate::cluster::run_link(
            self.cluster.clone(),
            self.bypass.clone(),
            self.metrics.clone(),
            current,
        ));
    }

    pub(crate) fn start_draining(&self) {
        self.draining.cancel();
    }
}

/// One configuration generation of a running proxy. Each connection holds an `Arc` to
/// the generation it started in for its whole life, so a reload never changes the rules
/// under a running connection.
pub struct Proxy {
    pub(crate) config: Arc<Config>,
    /// Signs replacement certificates with the configured (trusted) CA.
    pub(crate) minter: Minter,
    /// Signs with a CA made for this process only, which no client trusts: used for
    /// `on_cert_error = "untrusted"` so the client shows its own warning.
    pub(crate) untrusted_minter: Minter,
    pub(crate) verifier: Arc<UpstreamVerifier>,
    /// Missing intermediates, fetched from `caIssuers` URLs.
    pub(crate) issuers: IssuerFetcher,
    /// The TLS implementation used on both legs.
    pub(crate) crypto: Arc<rustls::crypto::CryptoProvider>,
    /// Upstream TLS for bumped connections, one configuration per ALPN offer.
    pub(crate) upstream_tls: UpstreamConfigs,
    /// Session resumption for clients of certificates minted by the trusted CA, and
    /// apart from it for those of the untrusted CA: a session never crosses verdicts
    /// (SPEC §2.3), so a client cannot resume its way past an `untrusted` warning.
    pub(crate) trusted_resumption: Resumption,
    pub(crate) untrusted_resumption: Resumption,
    /// Names learned as not bumpable; shared with later configuration generations.
    pub(crate) bypass: Arc<BypassTable>,
    /// The proxy CA certificate, for the admin endpoint.
    pub(crate) ca_pem: String,
    pub(crate) ca_der: Vec<u8>,
    /// The access log, and the metrics that count its records.
    pub(crate) log: Recorder,
    pub(crate) metrics: Arc<Metrics>,
    /// Resolution and TCP connect to servers, for CONNECT and plain HTTP.
    pub(crate) dialer: Arc<Dialer>,
    pub(crate) plain: PlainClient,
    /// One pool per `[[upstream_proxies]]` entry, by name, for plain HTTP sent `via` it.
    pub(crate) parent_plain: Vec<(String, PlainClient)>,
    /// Basic proxy authentication; `None` when `[auth]` names no users file.
    pub(crate) auth: Option<Authenticator>,
    /// The anti-virus engine (`[anti_virus]`), and where bodies wait for its verdict.
    pub(crate) scanner: Scanner,
    pub(crate) spooler: Spooler,
    /// The drain signal of [`Shared::draining`].
    pub(crate) draining: CancellationToken,
    /// The fleet: told what this node learns, without waiting.
    pub(crate) cluster: Cluster,
}

/// The fleet's link asks the generation in force.
impl Node for Arc<ArcSwap<Proxy>> {
    fn learn_max_names(&self) -> usize {
        self.load().config.settings.tls.learn_max_names
    }

    fn record_learned(&self, learned: &LearnedBypass) {
        self.load().log.write_learned(learned);
    }
}

/// A ticket key and a session cache for the client leg of bumps.
pub(crate) struct Resumption {
    pub(crate) tickets: Arc<dyn rustls::server::ProducesTickets>,
    pub(crate) sessions: Arc<dyn rustls::server::StoresServerSessions>,
}

impl Resumption {
    /// With `tickets` (the fleet's), or a ticket key of this generation's own.
    fn new(tickets: Option<Arc<dyn rustls::server::ProducesTickets>>) -> Result<Self, ProxyError> {
        let tickets = match tickets {
            Some(tickets) => tickets,
            None => rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| ProxyError::Tls(e.to_string()))?,
        };
        Ok(Resumption {
            tickets,
            sessions: rustls::server::ServerSessionMemoryCache::new(CLIENT_SESSIONS),
        })
    }
}

impl Proxy {
    /// Where this generation keeps the learned bypasses (`tls.learn_state`).
    pub fn learn_state(&self) -> &std::path::Path {
        &self.config.settings.tls.learn_state
    }

    /// `listeners`: the addresses actually bound, for loop detection. `shared`: what is
    /// kept across configuration generations.
    pub fn new(
        config: Arc<Config>,
        ca: Arc<CertificateAuthority>,
        log: AccessLog,
        listeners: Vec<SocketAddr>,
        shared: &Shared,
    ) -> Result<Arc<Self>, ProxyError> {
        let tls = &config.settings.tls;
        let (ca_pem, ca_der) = (ca.cert_pem().to_string(), ca.cert_der().to_vec());
        let (minter, untrusted_minter) = minters(ca, tls)?;
        let verifier = UpstreamVerifier::new(&tls.upstream_roots, &tls.crl_files)
            .map_err(|e| ProxyError::UpstreamRoots(e.to_string()))?;
        let dialer = Arc::new(Dialer::new(
            Resolver::new(&config.settings.hosts_file),
            LocalAddrs::new(listeners),
            config.settings.deny_destinations.clone(),
            config.settings.limits.connect_timeout,
        ));
        let log = recorder(log, &config.settings.log, shared);
        // In a fleet, the ticket keys are the fleet's, per verdict (cluster/tickets.rs).
        let fleet_tickets = shared.cluster.ticketers();
        let anti_virus = &config.settings.anti_virus;
        Ok(Arc::new(Proxy {
            minter,
            untrusted_minter,
            upstream_tls: UpstreamConfigs::new(&verifier),
            verifier,
            issuers: IssuerFetcher::new(dialer.clone()),
            crypto: Arc::new(sluice_tls::crypto::provider()),
            trusted_resumption: Resumption::new(fleet_tickets.as_ref().map(|t| t.0.clone() as _))?,
            untrusted_resumption: Resumption::new(fleet_tickets.map(|t| t.1 as _))?,
            cluster: shared.cluster.clone(),
            bypass: shared.bypass.clone(),
            ca_pem,
            ca_der,
            log,
            metrics: shared.metrics.clone(),
            plain: PlainClient::new(dialer.clone()),
            parent_plain: parent_pools(&config.settings.upstream_proxies, &dialer),
            auth: Authenticator::new(&config.settings.auth)
                .map_err(|e| ProxyError::Auth(e.to_string()))?
                .map(|auth| auth.in_fleet(shared.cluster.clone())),
            scanner: Scanner::new(anti_virus),
            spooler: Spooler::new(anti_virus.max_scan_size).with_total(anti_virus.max_spool_total),
            draining: shared.draining.clone(),
            dialer,
            config,
        }))
    }
}

/// The minter of the configured CA, and that of a CA made for this process only (the
/// `untrusted` verdict's), with `tls.leaf_key` and `tls.cert_cache_size`.
fn minters(
    ca: Arc<CertificateAuthority>,
    tls: &TlsSettings,
) -> Result<(Minter, Minter), ProxyError> {
    let leaf_key = match tls.leaf_key {
        LeafKey::EcdsaP256 => LeafKeyKind::EcdsaP256,
        LeafKey::Rsa2048 => LeafKeyKind::Rsa2048,
    };
    let untrusted_ca = CertificateAuthority::generate("sluice untrusted CA", KeyKind::EcdsaP256)
        .map_err(|e| ProxyError::UntrustedCa(e.to_string()))?;
    Ok((
        Minter::new(ca, leaf_key, tls.cert_cache_size),
        Minter::new(Arc::new(untrusted_ca), leaf_key, tls.cert_cache_size),
    ))
}

/// The access log, with the syslog copy of `[log]` when it names one, counted in the
/// process's metrics.
fn recorder(log: AccessLog, settings: &LogSettings, shared: &Shared) -> Recorder {
    let syslog = settings
        .syslog
        .as_ref()
        .map(|target| Arc::new(Syslog::start(target, settings.syslog_format)));
    Recorder::new(log, syslog, shared.metrics.clone())
}

/// One pool of plain-HTTP connections per parent proxy, by name.
fn parent_pools(parents: &[UpstreamProxy], dialer: &Arc<Dialer>) -> Vec<(String, PlainClient)> {
    parents
        .iter()
        .map(|parent| {
            let client = PlainClient::via_parent(dialer.clone(), parent.clone());
            (parent.name.clone(), client)
        })
        .collect()
}
