//! What every worker of a run shares, prepared once before the clock starts: the targets
//! (one per host name, each with its CONNECT and GET bytes, its TLS name, its HTTP/2 URI
//! and the address to dial), the TLS connector and the error log.

use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Uri;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::cli::{HostPort, HttpVersion, LoadArgs};
use super::stats::ErrorLog;
use super::{connect, http1, tls};

/// One origin host name and everything needed to reach it.
pub struct Target {
    /// The name for SNI and certificate verification.
    pub server_name: ServerName<'static>,
    /// `CONNECT host:port ...`, sent to the proxy.
    pub connect_request: Box<[u8]>,
    /// `GET path ...` with `Host: host:port`.
    pub get_request: Box<[u8]>,
    /// `https://host:port/path`, for HTTP/2.
    pub uri: Uri,
    /// Where the TCP connection goes: the proxy, or the resolved origin.
    pub dial: SocketAddr,
}

/// The shared, read-only part of a run (plus the round-robin counter and error log).
pub struct Plan {
    /// One target per host name (`--names`), or the one of `--target`.
    targets: Box<[Target]>,
    /// Whether connections go through `--proxy` with CONNECT.
    pub via_proxy: bool,
    /// The TLS client, holding the run's one `ClientConfig`.
    pub connector: TlsConnector,
    /// The protocol spoken.
    pub http: HttpVersion,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--duration`.
    pub duration: Duration,
    /// Failures shown so far.
    pub errors: ErrorLog,
    /// Connections started so far: connection `i` uses target `i mod N`.
    next: AtomicUsize,
}

impl Plan {
    /// Prepares a run: reads the names and the roots, resolves the proxy or the origins.
    pub fn new(args: &LoadArgs) -> Result<Self, String> {
        if !args.path.starts_with('/') {
            return Err(format!("--path {:?} must start with /", args.path));
        }
        let hosts = match &args.names {
            Some(path) => read_names(path)?,
            None => vec![args.target.host.clone()],
        };
        let proxy = args.proxy.as_ref().map(resolve).transpose()?;
        let targets = hosts
            .into_iter()
            .map(|host| {
                let origin = HostPort {
                    host,
                    port: args.target.port,
                };
                let dial = match proxy {
                    Some(proxy) => proxy,
                    None => resolve(&origin)?,
                };
                Target::new(&origin, &args.path, dial)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            targets,
            via_proxy: proxy.is_some(),
            connector: TlsConnector::from(tls::client_config(&args.cas, args.http)?),
            http: args.http,
            concurrency: usize::try_from(args.concurrency).unwrap_or(usize::MAX),
            duration: args.duration,
            errors: ErrorLog::default(),
            next: AtomicUsize::new(0),
        })
    }

    /// The target of the next new connection.
    pub fn next_target(&self) -> &Target {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        &self.targets[i % self.targets.len()]
    }
}

impl Target {
    fn new(origin: &HostPort, path: &str, dial: SocketAddr) -> Result<Self, String> {
        let authority = origin.authority();
        let server_name = ServerName::try_from(origin.host.clone())
            .map_err(|_| format!("{:?} is not a valid TLS server name", origin.host))?;
        let uri = format!("https://{authority}{path}")
            .parse()
            .map_err(|e| format!("https://{authority}{path}: {e}"))?;
        Ok(Self {
            server_name,
            connect_request: connect::request(&authority),
            get_request: http1::request(path, &authority),
            uri,
            dial,
        })
    }
}

/// The host names of `--names`: one a line, blank lines skipped.
fn read_names(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(format!("{}: no host names", path.display()));
    }
    Ok(names)
}

/// The first address of `host:port` from the system resolver (/etc/hosts first).
fn resolve(hp: &HostPort) -> Result<SocketAddr, String> {
    (hp.host.as_str(), hp.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {}: {e}", hp.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", hp.host))
}
