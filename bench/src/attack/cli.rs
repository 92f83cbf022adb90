//! The command line of `attack`: one subcommand per process of the soak.
//!
//! `bench/soak.sh` fixes these names; change them only together with it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::loadgen::cli::{parse_host_port, HostPort};

/// `attack MODE [OPTIONS]`: prints a Markdown table of what happened when done.
#[derive(Debug, Parser)]
#[command(
    name = "attack",
    about = "Normal traffic and attacks through an HTTP proxy, for the sluice soak"
)]
pub struct Cli {
    /// The mode to run.
    #[command(subcommand)]
    pub mode: Mode,
    /// Also write the figures as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The modes.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Steady bumped HTTPS and plain HTTP GETs on keep-alive connections; counts every
    /// error.
    Normal(NormalArgs),
    /// Every attack at once: slowloris, HTTP/2 rapid reset, CONTINUATION flood, random
    /// SNIs, wrong passwords, requests to tarpit origins.
    Flood(FloodArgs),
    /// A tarpit origin: accepts TCP (and TLS on --tls), reads, never answers.
    Tarpit(TarpitArgs),
}

/// What the client modes share.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The proxy.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub proxy: HostPort,
    /// The HTTPS origin, as named in CONNECT, SNI and Host.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub origin: HostPort,
    /// The plain HTTP origin, as named in the absolute-form request target.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub plain_origin: HostPort,
    /// PEM file of trusted roots (the proxy's CA for bumped connections).
    #[arg(long = "ca", value_name = "FILE", required = true)]
    pub cas: Vec<PathBuf>,
    /// `USER:PASSWORD` for Proxy-Authorization on every request that is not an attack
    /// on the password check.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub user: Option<String>,
    /// Seconds during which work is started (may be fractional).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Duration,
}

/// The options of `normal`.
#[derive(Debug, Args)]
pub struct NormalArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections doing bumped HTTPS GETs.
    #[arg(long, default_value_t = 2)]
    pub https_workers: u32,
    /// Connections doing plain HTTP GETs.
    #[arg(long, default_value_t = 2)]
    pub plain_workers: u32,
    /// Seconds between two GETs of one connection.
    #[arg(long, value_name = "SECS", default_value = "0.2", value_parser = parse_secs)]
    pub interval: Duration,
    /// Request path.
    #[arg(long, default_value = "/small")]
    pub path: String,
}

/// The options of `flood`.
#[derive(Debug, Args)]
pub struct FloodArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Host names for the random-SNI attack, one a line; each is used once.
    #[arg(long, value_name = "FILE")]
    pub names: PathBuf,
    /// Slowloris connections held at once.
    #[arg(long, default_value_t = 300)]
    pub slowloris: u32,
    /// Seconds between two bytes of a slowloris request head.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub slowloris_interval: Duration,
    /// HTTP/2 rapid-reset connections at once.
    #[arg(long, default_value_t = 2)]
    pub rapid_reset: u32,
    /// CONTINUATION-flood connections at once.
    #[arg(long, default_value_t = 2)]
    pub continuation: u32,
    /// Most CONTINUATION frames sent on one connection.
    #[arg(long, default_value_t = 20_000)]
    pub continuation_frames: u32,
    /// Connections at once for the random SNIs.
    #[arg(long, default_value_t = 4)]
    pub sni_workers: u32,
    /// Wrong-password attempts at once, each from its own client address.
    #[arg(long, default_value_t = 100)]
    pub password_workers: u32,
    /// The TLS tarpit origin (bumped requests go there).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub tarpit: HostPort,
    /// The plain tarpit origin (plain HTTP requests go there).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub tarpit_plain: HostPort,
    /// Requests to the tarpits at once.
    #[arg(long, default_value_t = 20)]
    pub tarpit_workers: u32,
    /// Seconds a tarpit request waits for the proxy's answer before giving up.
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse_secs)]
    pub tarpit_wait: Duration,
}

/// The options of `tarpit`.
#[derive(Debug, Args)]
pub struct TarpitArgs {
    /// Where to accept TLS (handshake completed, then silence).
    #[arg(long, value_name = "ADDR")]
    pub tls: SocketAddr,
    /// Where to accept plain TCP (silence from the start).
    #[arg(long, value_name = "ADDR")]
    pub plain: SocketAddr,
    /// PEM certificate chain of the TLS listener.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// PEM private key of the TLS listener.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Seconds to run.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub duration: Duration,
}

/// Parses positive, possibly fractional seconds.
fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flood_command_line_parses() {
        let cli = Cli::try_parse_from([
            "attack",
            "flood",
            "--proxy",
            "127.0.0.1:3130",
            "--origin",
            "bench.test:8443",
            "--plain-origin",
            "bench.test:8080",
            "--ca",
            "ca.pem",
            "--user",
            "soak:pw",
            "--duration",
            "60",
            "--names",
            "names.txt",
            "--tarpit",
            "tarpit.bench.test:9443",
            "--tarpit-plain",
            "tarpit.bench.test:9080",
            "--json",
            "out.json",
        ])
        .unwrap();
        let Mode::Flood(flood) = cli.mode else {
            panic!("not flood")
        };
        assert_eq!(flood.slowloris, 300);
        assert_eq!(flood.common.duration, Duration::from_secs(60));
        assert!(parse_secs("0").is_err());
    }
}
