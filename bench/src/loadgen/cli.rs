//! The command line: one subcommand per mode, the options every load mode shares, and
//! the parsing of `HOST:PORT` and durations.
//!
//! The contract with `bench/run.sh` fixes these names; change them only together with it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `loadgen MODE [OPTIONS]`: every mode prints one JSON object on stdout when done.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "HTTPS load generator for the sluice benchmark, direct or through a CONNECT proxy"
)]
pub struct Cli {
    /// The mode to run.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The modes.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// New connection, CONNECT, full handshake, one GET, close; repeated until --duration
    /// (or --count connections).
    Conns(ConnsArgs),
    /// --concurrency connections opened first, then GETs back to back until --duration.
    Requests(RequestsArgs),
    /// --concurrency connections, each reads --path once to its end (--duration ignored).
    Download(LoadArgs),
    /// Opens --concurrency connections (one GET each), reports, then keeps them idle
    /// until stdin reaches EOF or --duration passes.
    Hold(LoadArgs),
    /// Writes a test CA, a wildcard certificate and one certificate per host name.
    Certs(CertsArgs),
}

/// The options of every load mode.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Speak through this HTTP proxy with CONNECT; absent: connect to the origin directly.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub proxy: Option<HostPort>,
    /// The origin as named in CONNECT, SNI and Host (resolved by the system in direct mode).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub target: HostPort,
    /// One host name per line; connection i uses name i mod N in place of the target's host.
    #[arg(long, value_name = "FILE")]
    pub names: Option<PathBuf>,
    /// PEM file of trusted roots (repeatable); the only roots the client trusts.
    #[arg(long = "ca", value_name = "FILE", required = true)]
    pub cas: Vec<PathBuf>,
    /// Request path.
    #[arg(long, default_value = "/small")]
    pub path: String,
    /// Protocol offered by ALPN and spoken: 1 = http/1.1, 2 = h2.
    #[arg(long, value_enum, default_value = "1")]
    pub http: HttpVersion,
    /// Parallel connections.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Seconds during which new work is started (may be fractional).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_duration)]
    pub duration: Duration,
}

/// `conns` can also stop after a number of connections.
#[derive(Debug, Args)]
pub struct ConnsArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Make at most N connections in all, then stop (--duration still applies): with
    /// --names and N = the number of names, each name is used exactly once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// `requests` also takes the number of concurrent HTTP/2 streams per connection.
#[derive(Debug, Args)]
pub struct RequestsArgs {
    #[command(flatten)]
    pub load: LoadArgs,
    /// Concurrent streams per connection with --http 2 (HTTP/1.1 always has one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub streams: u32,
}

/// The options of `certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Folder to write into (created if missing; existing files are replaced).
    #[arg(long)]
    pub dir: PathBuf,
    /// How many per-name certificates (h0001.DOMAIN ...).
    #[arg(long, default_value_t = 0)]
    pub count: u32,
    /// The domain of the wildcard certificate and of the numbered names.
    #[arg(long)]
    pub domain: String,
    /// A further name for the wildcard certificate (repeatable), e.g. localhost for a test
    /// without /etc/hosts entries.
    #[arg(long = "extra-name", value_name = "NAME")]
    pub extra_names: Vec<String>,
}

/// The HTTP version offered by ALPN and spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HttpVersion {
    /// HTTP/1.1, ALPN `http/1.1`.
    #[value(name = "1")]
    Http1,
    /// HTTP/2, ALPN `h2`.
    #[value(name = "2")]
    Http2,
}

impl HttpVersion {
    /// The ALPN protocol identifier.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Self::Http1 => b"http/1.1",
            Self::Http2 => b"h2",
        }
    }
}

/// A host (name or address, IPv6 without brackets) and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl HostPort {
    /// `host:port`, with brackets around an IPv6 address: the form of a CONNECT
    /// authority and of a `Host` header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Parses `host:port` or `[v6]:port`.
pub fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    let port = port
        .parse()
        .map_err(|_| format!("{text:?} has no valid port"))?;
    Ok(HostPort {
        host: host.to_owned(),
        port,
    })
}

/// Parses positive, possibly fractional seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let named = parse_host_port("bench.test:8443").unwrap();
        assert_eq!((named.host.as_str(), named.port), ("bench.test", 8443));
        assert_eq!(named.authority(), "bench.test:8443");
        let v6 = parse_host_port("[::1]:3128").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 3128));
        assert_eq!(v6.authority(), "[::1]:3128");
        assert!(parse_host_port("bench.test").is_err());
        assert!(parse_host_port(":80").is_err());
        assert!(parse_host_port("a:99999").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        Cli::try_parse_from([
            "loadgen",
            "requests",
            "--proxy",
            "127.0.0.1:3128",
            "--target",
            "bench.test:8443",
            "--ca",
            "a.pem",
            "--ca",
            "b.pem",
            "--http",
            "2",
            "--streams",
            "8",
            "--concurrency",
            "32",
            "--duration",
            "2.5",
        ])
        .unwrap();
        assert!(Cli::try_parse_from(["loadgen", "conns", "--target", "a:1"]).is_err());
        let cli = Cli::try_parse_from([
            "loadgen", "conns", "--target", "a:1", "--ca", "a.pem", "--count", "2000",
        ])
        .unwrap();
        assert!(matches!(
            cli.mode,
            Mode::Conns(ConnsArgs {
                count: Some(2000),
                ..
            })
        ));
    }
}
