//! Reaching the server: name resolution and the TCP connect (SPEC §1 step 1), with the
//! failures an administrator needs told apart: 502 for a name that does not resolve or a
//! refused connection, 504 for a timeout, 508 for a loop back into sluice, 403 for an
//! address `proxy.deny_destinations` forbids (SPEC §3 Destinations).
//!
//! The deny list is checked on the resolved addresses, so a name that resolves to
//! loopback is denied as the literal is. Denied addresses of a name are skipped; only a
//! name with no other address is refused.

pub(crate) mod aia;
pub(crate) mod local_addrs;
pub(crate) mod pool;
pub(crate) mod resolve;
pub(crate) mod tls;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::Uri;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use sluice_policy::{destination_denied, IpSet, ParentAddr, ParentCredentials, UpstreamProxy};

use crate::dial::local_addrs::LocalAddrs;
use crate::dial::resolve::Resolver;
use crate::outcome::{Failure, Kind, Phase};
use crate::telemetry::metrics::PhaseEnd;

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{host} has no address")]
    NoAddress { host: String },
    #[error("connection to {addr} failed: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("connection to {host} port {port} timed out after {seconds} s")]
    Timeout {
        host: String,
        port: u16,
        seconds: u64,
    },
    #[error("{addr} is this proxy itself (request loop)")]
    Loop { addr: SocketAddr },
    #[error("{host} is {addr}, which this proxy does not connect to (proxy.deny_destinations)")]
    Denied { host: String, addr: IpAddr },
    #[error("the parent proxy {parent} refused with status {status}")]
    ParentRefused { parent: String, status: u16 },
    #[error("no URL of the parent proxy {parent} could be used: {reason}")]
    ParentUnreachable { parent: String, reason: String },
}

impl DialError {
    /// The HTTP status the client is answered with.
    pub fn status(&self) -> u16 {
        match self {
            DialError::Timeout { .. } => 504,
            DialError::Loop { .. } => 508,
            DialError::Denied { .. } => 403,
            _ => 502,
        }
    }

    /// The status a parent proxy refused with (the record's `parent_status`).
    pub fn parent_status(&self) -> Option<u16> {
        match self {
            DialError::ParentRefused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What kind of failure this is (the access log's `error`).
    pub fn kind(&self) -> Kind {
        match self {
            DialError::Resolve { .. } | DialError::NoAddress { .. } => Kind::ResolveFailed,
            DialError::Connect { .. } => Kind::ConnectFailed,
            DialError::Timeout { .. } => Kind::ConnectTimeout,
            DialError::Loop { .. } => Kind::LoopDetected,
            DialError::Denied { .. } => Kind::DestinationDenied,
            DialError::ParentRefused { .. } => Kind::ParentRefused,
            DialError::ParentUnreachable { .. } => Kind::ParentUnreachable,
        }
    }

    /// The failure of the dial phase this error is.
    pub fn failure(&self) -> Failure {
        self.kind().at(Phase::Dial)
    }
}

// A dial's failures have no handshake label: timed, not counted.
impl<T> PhaseEnd for Result<T, DialError> {
    fn failure(&self) -> Option<&Failure> {
        None
    }
}

/// Reaches servers: resolution, loop and destination checks, and TCP connect within
/// `connect_timeout`. One per configuration generation, shared by CONNECT and plain HTTP.
pub struct Dialer {
    resolver: Resolver,
    local: LocalAddrs,
    /// `proxy.deny_destinations`.
    deny: IpSet,
    timeout: Duration,
}

impl Dialer {
    pub fn new(resolver: Resolver, local: LocalAddrs, deny: IpSet, timeout: Duration) -> Self {
        Dialer {
            resolver,
            local,
            deny,
            timeout,
        }
    }

    /// The addresses of `host` that may be dialled, in the order to try, resolved within
    /// the connect timeout (plain HTTP resolves first: the `ips` rules need the address).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
        match tokio::time::timeout(self.timeout, self.allowed_addrs(host, port)).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(host, port)),
        }
    }

    fn timed_out(&self, host: &str, port: u16) -> DialError {
        DialError::Timeout {
            host: host.to_string(),
            port,
            seconds: self.timeout.as_secs(),
        }
    }

    /// Resolve `host` and connect to the first address that answers, all within the
    /// connect timeout. Returns the stream and the address it reached.
    pub async fn dial(&self, host: &str, port: u16) -> Result<(TcpStream, IpAddr), DialError> {
        match tokio::time::timeout(self.timeout, self.resolve_and_connect(host, port)).await {
            Ok(result) => result,
            Err(_) => Err(self.timed_out(host, port)),
        }
    }

    /// Whether `name` resolves to `ip` (SPEC §1.3: is a ClientHello's SNI the server the
    /// client CONNECTed to by address?). A lookup that fails or takes longer than the
    /// connect timeout is a no.
    pub async fn resolves_to(&self, name: &str, ip: IpAddr) -> bool {
        let lookup = Box::pin(self.resolver.lookup(name));
        match tokio::time::timeout(self.timeout, lookup).await {
            Ok(Ok(addrs)) => addrs.contains(&ip),
            _ => false,
        }
    }

    async fn resolve_and_connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<(TcpStream, IpAddr), DialError> {
        let addrs = self.allowed_addrs(host, port).await?;
        let mut last_error = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    // Latency matters more than packet count for interactive HTTPS.
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, addr.ip()));
                }
                Err(e) => {
                    last_error = Some(DialError::Connect {
                        addr,
                        reason: e.to_string(),
                    })
                }
            }
        }
        Err(last_error.unwrap_or_else(|| DialError::NoAddress {
            host: host.to_string(),
        }))
    }

    /// Reach a parent proxy (SPEC §11): its URLs in order, each resolved and connected
    /// within the connect timeout, the next one only when one cannot be reached. Its
    /// addresses are the operator's own choice, so `proxy.deny_destinations` does not
    /// apply to them; a loop into sluice is still refused.
    pub async fn dial_parent(&self, parent: &UpstreamProxy) -> Result<TcpStream, DialError> {
        let mut failures = Vec::new();
        for url in &parent.urls {
            let connecting = self.connect_parent_addr(url);
            match tokio::time::timeout(self.timeout, connecting).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => failures.push(format!("{url}: {e}")),
                Err(_) => failures.push(format!(
                    "{url}: timed out after {} s",
                    self.timeout.as_secs()
                )),
            }
        }
        Err(DialError::ParentUnreachable {
            parent: parent.name.clone(),
            reason: failures.join("; "),
        })
    }

    /// A TCP connection to `host:port` through `parent` (`CONNECT`, with the parent's
    /// credentials), ready for the client's bytes; the parent's answer must come within
    /// the connect timeout. A parent that answers with another status refuses (no other
    /// URL is tried: it was reached, and decided); one that answers nothing usable is
    /// unreachable.
    pub async fn tunnel_via(
        &self,
        parent: &UpstreamProxy,
        host: &str,
        port: u16,
    ) -> Result<TcpStream, DialError> {
        self.check_literal(host, port)?;
        let mut stream = self.dial_parent(parent).await?;
        let request = parent_connect_request(parent, host, port);
        let exchange = async {
            stream.write_all(request.as_bytes()).await?;
            read_parent_status(&mut stream).await
        };
        let unreachable = |reason: String| DialError::ParentUnreachable {
            parent: parent.name.clone(),
            reason,
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(200..=299)) => Ok(stream),
            Ok(Ok(status)) => Err(DialError::ParentRefused {
                parent: parent.name.clone(),
                status,
            }),
            Ok(Err(e)) => Err(unreachable(format!("its answer to CONNECT: {e}"))),
            Err(_) => Err(unreachable(format!(
                "no answer to CONNECT within {} s",
                self.timeout.as_secs()
            ))),
        }
    }

    /// Would a connection to `dest` reach one of sluice's own sockets?
    pub fn is_own(&self, dest: SocketAddr) -> bool {
        self.local.is_own(dest)
    }

    /// The checks an IP literal gets even when a parent dials it (SPEC §11: sluice sees
    /// a destination IP only where it is a literal): a loop, `proxy.deny_destinations`.
    pub fn check_literal(&self, host: &str, port: u16) -> Result<(), DialError> {
        let Ok(ip) = host.parse::<IpAddr>() else {
            return Ok(());
        };
        let addr = SocketAddr::new(ip, port);
        if self.local.is_own(addr) {
            return Err(DialError::Loop { addr });
        }
        if destination_denied(&self.deny, ip) {
            return Err(DialError::Denied {
                host: host.to_string(),
                addr: ip,
            });
        }
        Ok(())
    }

    async fn connect_parent_addr(&self, url: &ParentAddr) -> Result<TcpStream, DialError> {
        let ips = match url.host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => Box::pin(self.resolver.lookup(&url.host))
                .await
                .map_err(|e| DialError::Resolve {
                    host: url.host.clone(),
                    reason: e.to_string(),
                })?,
        };
        let mut last_error = DialError::NoAddress {
            host: url.host.clone(),
        };
        for ip in ips {
            let addr = SocketAddr::new(ip, url.port);
            if self.local.is_own(addr) {
                return Err(DialError::Loop { addr });
            }
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Err(e) => {
                    last_error = DialError::Connect {
                        addr,
                        reason: e.to_string(),
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Resolve `host` (unless it is a literal), refuse a loop into sluice, and drop the
    /// addresses `proxy.deny_destinations` forbids (refused when none is left).
    async fn allowed_addrs(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, DialError> {
        let ips = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            // Boxed: a DNS lookup's state is large, and it would otherwise stay in the
            // connection's future for as long as the connection lasts.
            Err(_) => {
                Box::pin(self.resolver.lookup(host))
                    .await
                    .map_err(|e| DialError::Resolve {
                        host: host.to_string(),
                        reason: e.to_string(),
                    })?
            }
        };
        let addrs: Vec<SocketAddr> = ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        // A loop is the more specific answer for our own (loopback) listeners.
        if let Some(own) = addrs.iter().find(|a| self.local.is_own(**a)) {
            return Err(DialError::Loop { addr: *own });
        }
        let Some(first) = addrs.first().copied() else {
            return Err(DialError::NoAddress {
                host: host.to_string(),
            });
        };
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|addr| !destination_denied(&self.deny, addr.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(DialError::Denied {
                host: host.to_string(),
                addr: first.ip(),
            });
        }
        Ok(allowed)
    }
}

/// The largest answer head a parent may send to `CONNECT`.
const MAX_PARENT_HEAD: usize = 16 * 1024;

/// `CONNECT host:port`, with `Proxy-Authorization: Basic` when the parent has credentials.
fn parent_connect_request(parent: &UpstreamProxy, host: &str, port: u16) -> String {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = &parent.credentials {
        request.push_str("Proxy-Authorization: ");
        request.push_str(&basic_authorization(credentials));
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

/// `Basic base64(user:password)`.
pub fn basic_authorization(credentials: &ParentCredentials) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials.user_password());
    format!("Basic {encoded}")
}

/// Read the parent's answer head to `CONNECT` (byte by byte: nothing after the head may
/// be taken from the stream, it is the server's) and return its status.
async fn read_parent_status(stream: &mut TcpStream) -> std::io::Result<u16> {
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_PARENT_HEAD {
            return Err(invalid("a head larger than 16 KiB"));
        }
        let byte = stream.read_u8().await?;
        head.push(byte);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => response.code.ok_or_else(|| invalid("no status")),
        _ => Err(invalid("not an HTTP response")),
    }
}

/// The host of a URI without IPv6 brackets.
pub fn uri_host(uri: &Uri) -> String {
    let host = uri.host().unwrap_or_default();
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialer(local: LocalAddrs) -> Dialer {
        let nothing_denied = IpSet::default();
        Dialer::new(
            Resolver::new(std::path::Path::new("/etc/hosts")),
            local,
            nothing_denied,
            Duration::from_secs(5),
        )
    }

    fn denying_loopback() -> Dialer {
        let deny = sluice_policy::Config::embedded_default()
            .settings
            .deny_destinations;
        Dialer::new(
            Resolver::new(std::path::Path::new("/etc/hosts")),
            LocalAddrs::default(),
            deny,
            Duration::from_secs(5),
        )
    }

    #[tokio::test]
    async fn a_denied_destination_is_a_403_for_names_and_literals() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        for host in [
            "127.0.0.1",
            "localhost",
            "::ffff:127.0.0.1",
            "169.254.169.254",
        ] {
            let err = denying_loopback().dial(host, port).await.unwrap_err();
            assert_eq!(err.status(), 403, "{host}");
            assert_eq!(err.kind(), Kind::DestinationDenied, "{host}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_502() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = dialer(LocalAddrs::default())
            .dial("127.0.0.1", port)
            .await
            .unwrap_err();
        assert_eq!(err.status(), 502);
        assert_eq!(err.kind(), Kind::ConnectFailed);
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_502() {
        let err = dialer(LocalAddrs::default())
            .dial("no-such-host.invalid", 443)
            .await
            .unwrap_err();
        assert_eq!(err.status(), 502);
        assert_eq!(err.kind(), Kind::ResolveFailed);
    }

    #[tokio::test]
    async fn our_own_listener_is_a_loop() {
        let local = LocalAddrs::new(vec!["127.0.0.1:3128".parse().unwrap()]);
        let err = dialer(local).dial("127.0.0.1", 3128).await.unwrap_err();
        assert_eq!(err.status(), 508);
    }

    #[tokio::test]
    async fn a_name_in_the_hosts_file_reaches_its_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (_, ip) = dialer(LocalAddrs::default())
            .dial("localhost", port)
            .await
            .unwrap();
        assert!(ip.is_loopback());
    }
}
