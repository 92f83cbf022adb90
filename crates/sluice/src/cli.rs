//! The command line (SPEC §6).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A forward web proxy that sees inside HTTPS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the proxy (without -c: the embedded default configuration).
    Run {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration: exit 0, or print every error as FILE:LINE: msg and exit 1.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Print which SSL rule decides at each stage, and the action.
    Explain(ExplainArgs),
    /// Manage the proxy CA.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Manage the users of `auth.users_file`.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add or replace a user; the password is read from standard input.
    Add {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        name: String,
    },
}

#[derive(Args)]
pub struct ExplainArgs {
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The CONNECT host (a DNS name or an IP literal).
    #[arg(long)]
    pub host: String,
    /// The SNI of the ClientHello (default: none, so the CONNECT host is used).
    #[arg(long)]
    pub sni: Option<String>,
    /// The client address.
    #[arg(long, default_value = "127.0.0.1")]
    pub client: IpAddr,
    /// The authenticated user.
    #[arg(long)]
    pub user: Option<String>,
    /// The destination port.
    #[arg(long, default_value_t = 443)]
    pub port: u16,
}

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a new CA: D/ca.pem and D/ca-key.pem (refuses to overwrite).
    Init {
        #[arg(long, default_value = "sluice-data")]
        dir: PathBuf,
        #[arg(long, default_value = "sluice proxy CA")]
        name: String,
        #[arg(long, value_enum, default_value_t = CaKey::EcdsaP256)]
        key: CaKey,
    },
    /// Print the configured CA certificate (PEM, or DER with --der).
    Export {
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long)]
        der: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum CaKey {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "rsa-2048")]
    Rsa2048,
}
