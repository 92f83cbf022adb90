//! What every worker shares: the proxy's address, the TLS clients (h1 and h2), the
//! credentials and the clock; and the steps of a connection through the proxy (TCP from a
//! chosen loopback address, CONNECT, TLS), built on the load generator's.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::cli::CommonArgs;
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::cli::{HostPort, HttpVersion};
use crate::loadgen::connect;
use crate::loadgen::error::Error;
use crate::loadgen::tls;

/// How long a connection step (TCP, CONNECT, TLS) may take before it counts as unanswered.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The shared, read-only part of a run; cheap to clone.
#[derive(Clone)]
pub struct Wire(Arc<Inner>);

struct Inner {
    proxy: SocketAddr,
    h1: TlsConnector,
    h2: TlsConnector,
    credentials: Option<String>,
    origin: HostPort,
    plain_origin: HostPort,
    start: Instant,
    duration: Duration,
}

impl Wire {
    /// Reads the roots and resolves the proxy; the clock starts now.
    pub fn new(args: &CommonArgs) -> Result<Self, String> {
        let proxy = (args.proxy.host.as_str(), args.proxy.port)
            .to_socket_addrs()
            .map_err(|e| format!("resolving {}: {e}", args.proxy.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", args.proxy.host))?;
        Ok(Self(Arc::new(Inner {
            proxy,
            h1: TlsConnector::from(tls::client_config(&args.cas, HttpVersion::Http1)?),
            h2: TlsConnector::from(tls::client_config(&args.cas, HttpVersion::Http2)?),
            credentials: args.user.clone(),
            origin: args.origin.clone(),
            plain_origin: args.plain_origin.clone(),
            start: Instant::now(),
            duration: args.duration,
        })))
    }

    /// Whether work may still be started.
    pub fn running(&self) -> bool {
        self.0.start.elapsed() < self.0.duration
    }

    /// Time left of the run.
    pub fn left(&self) -> Duration {
        self.0.duration.saturating_sub(self.0.start.elapsed())
    }

    /// The run's length.
    pub fn duration(&self) -> Duration {
        self.0.duration
    }

    /// The HTTPS origin.
    pub fn origin(&self) -> &HostPort {
        &self.0.origin
    }

    /// The plain HTTP origin.
    pub fn plain_origin(&self) -> &HostPort {
        &self.0.plain_origin
    }

    /// The `user:password` of normal traffic.
    pub fn credentials(&self) -> Option<&str> {
        self.0.credentials.as_deref()
    }

    /// A TCP connection to the proxy from `from` (any port), or from the default address.
    pub async fn tcp(&self, from: Option<IpAddr>) -> Result<TcpStream, Error> {
        let failed = |source| Error::Connect {
            addr: self.0.proxy,
            source,
        };
        let socket = TcpSocket::new_v4().map_err(failed)?;
        if let Some(ip) = from {
            socket.bind(SocketAddr::new(ip, 0)).map_err(failed)?;
        }
        let tcp = within(STEP_TIMEOUT, socket.connect(self.0.proxy))
            .await?
            .map_err(failed)?;
        tcp.set_nodelay(true).map_err(failed)?;
        Ok(tcp)
    }

    /// TCP and CONNECT `target` with the run's credentials; the tunnel is open.
    pub async fn tunnel(
        &self,
        target: &HostPort,
        from: Option<IpAddr>,
    ) -> Result<TcpStream, Error> {
        let mut tcp = self.tcp(from).await?;
        let request = connect::request_as(&target.authority(), self.credentials());
        let mut buf = ReadBuffer::new();
        within(
            STEP_TIMEOUT,
            connect::establish(&mut tcp, &request, &mut buf),
        )
        .await??;
        Ok(tcp)
    }

    /// [`Self::tunnel`], then TLS to `target` offering h2 or http/1.1.
    pub async fn tls(
        &self,
        target: &HostPort,
        h2: bool,
        from: Option<IpAddr>,
    ) -> Result<TlsStream<TcpStream>, Error> {
        let tcp = self.tunnel(target, from).await?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| Error::Tls(io::Error::other("not a TLS server name")))?;
        let connector = if h2 { &self.0.h2 } else { &self.0.h1 };
        within(STEP_TIMEOUT, connector.connect(name, tcp))
            .await?
            .map_err(Error::Tls)
    }

    /// A plain `GET` of `path` on `origin` through the proxy (absolute form), with the
    /// run's credentials.
    pub fn plain_get(&self, origin: &HostPort, path: &str) -> Box<[u8]> {
        let authority = origin.authority();
        let auth = self.credentials().map_or_else(String::new, |c| {
            format!("Proxy-Authorization: {}\r\n", connect::basic(c))
        });
        format!("GET http://{authority}{path} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n")
            .into_bytes()
            .into_boxed_slice()
    }
}

/// `future`, or [`Error::Timeout`] after `limit`.
pub async fn within<T>(
    limit: Duration,
    future: impl std::future::Future<Output = T>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| Error::Timeout(limit))
}

/// Loopback address `127.<block>.<n / 250>.<n % 250 + 1>`: worker `n` of an attack speaks
/// from an address of its own, as many clients of a network would.
pub fn loopback(block: u8, n: u32) -> IpAddr {
    let third = u8::try_from(n / 250).unwrap_or(u8::MAX);
    let fourth = u8::try_from(n % 250).unwrap_or(0) + 1;
    IpAddr::V4(Ipv4Addr::new(127, block, third, fourth))
}

/// A short label for how an attempt failed: the status for a refused CONNECT or an HTTP
/// answer, the GOAWAY or reset reason for HTTP/2, else the error's message.
pub fn label(err: &Error) -> String {
    match err {
        Error::Tunnel(message) => match message.strip_prefix("the proxy answered ") {
            Some(rest) => rest.split(' ').next().unwrap_or(rest).to_owned(),
            None => format!("CONNECT: {message}"),
        },
        Error::Status(status) => status.to_string(),
        Error::Http2(e) => h2_label(e),
        Error::Timeout(limit) => format!("no answer within {} s", limit.as_secs()),
        other => other.to_string(),
    }
}

/// `GOAWAY REASON`, `RST_STREAM REASON`, or the message of an h2 error.
pub fn h2_label(err: &h2::Error) -> String {
    match err.reason() {
        Some(reason) if err.is_go_away() => format!("GOAWAY {reason:?}"),
        Some(reason) if err.is_reset() => format!("RST_STREAM {reason:?}"),
        _ if err.is_io() => "closed without GOAWAY".to_owned(),
        _ => format!("HTTP/2: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_distinct_loopback_addresses() {
        assert_eq!(loopback(2, 0), IpAddr::V4(Ipv4Addr::new(127, 2, 0, 1)));
        assert_eq!(loopback(2, 249), IpAddr::V4(Ipv4Addr::new(127, 2, 0, 250)));
        assert_eq!(loopback(2, 250), IpAddr::V4(Ipv4Addr::new(127, 2, 1, 1)));
    }

    #[test]
    fn labels_name_the_status() {
        assert_eq!(
            label(&Error::Tunnel(
                "the proxy answered 407 Proxy Authentication Required".into()
            )),
            "407"
        );
        assert_eq!(label(&Error::Status(504)), "504");
        assert_eq!(
            label(&Error::Timeout(Duration::from_secs(30))),
            "no answer within 30 s"
        );
    }
}
