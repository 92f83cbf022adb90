//! The load generator of the proxy benchmark (`loadgen`, issue 6): HTTPS clients that
//! speak directly to an origin or through an HTTP proxy with CONNECT, as cheaply as
//! possible, because the generator shares one core with the origin while the proxy
//! under test has the other.
//!
//! How the cost is kept down: one `ClientConfig` for the run, one 64 KiB read buffer per
//! worker reused by every connection it makes, prepared request bytes per host name, a
//! hand-written HTTP/1.1 client (`http1`), h2 for HTTP/2, per-worker counters merged at
//! the end, and a single-threaded runtime (the binary), since the generator gets one core.
//!
//! Layout: `cli` (options), `plan` (what the workers share), `session` (TCP, CONNECT,
//! TLS, then HTTP), `connect`, `tls`, `http1`, `http2` and `buffer` (the pieces of a
//! connection), `modes` (conns, requests, download, hold), `stats` (counting
//! and the JSON report) and `certs` (the test PKI). The attack generator of the soak
//! ([`crate::attack`]) reuses the connection pieces.

pub(crate) mod buffer;
pub mod certs;
pub mod cli;
pub(crate) mod connect;
pub(crate) mod error;
pub(crate) mod http1;
mod http2;
mod modes;
mod plan;
mod session;
pub mod stats;
pub(crate) mod tls;

pub use modes::LoadMode;

use cli::LoadArgs;
use plan::Plan;

/// Runs a load mode with `args` to its end; true when it did any work (the exit status).
///
/// `Err` when the run cannot start (unreadable files, unresolvable names). Call inside a
/// tokio runtime.
pub async fn run_load(args: &LoadArgs, mode: LoadMode) -> Result<bool, String> {
    // The plan lives as long as the process: workers borrow it for the whole run.
    let plan: &'static Plan = Box::leak(Box::new(Plan::new(args)?));
    Ok(match mode {
        LoadMode::Conns { count } => modes::conns::run(plan, count).await,
        LoadMode::Requests { streams } => modes::requests::run(plan, streams).await,
        LoadMode::Download => modes::download::run(plan).await,
        LoadMode::Hold => modes::hold::run(plan).await,
    })
}
