//! The attack generator of the soak under attack (`bench/soak.sh`, issue 13): normal
//! traffic whose every error is counted, and the attacks run beside it (slowloris,
//! HTTP/2 rapid reset, CONTINUATION flood, random SNIs, wrong passwords, tarpit origins),
//! each counting how the proxy answered. It reuses the load generator's pieces: the
//! CONNECT exchange, the TLS client configuration, the HTTP/1.1 client and its buffer.
//!
//! Every loop is bounded by the run's `--duration` and every wait by a timeout; every
//! connection goes to loopback. A kind's figures are an [`Outcomes`]: how many attempts,
//! how the proxy answered each (a label such as `407`, `closed`, `GOAWAY
//! ENHANCE_YOUR_CALM`), and how long the answers took.

pub mod cli;
mod h2flood;
mod names;
mod normal;
mod outcomes;
mod password;
mod slowloris;
mod tarpit;
mod wire;

pub use outcomes::{markdown, KindReport, Outcomes};

use std::time::Duration;

use cli::{FloodArgs, NormalArgs, TarpitArgs};
use wire::Wire;

/// Runs the normal traffic; returns its report (one entry per kind of request).
pub async fn run_normal(args: &NormalArgs) -> Result<Vec<KindReport>, String> {
    let wire = Wire::new(&args.common)?;
    Ok(normal::run(wire, args).await)
}

/// Runs every attack at once; returns one report per kind.
pub async fn run_flood(args: &FloodArgs) -> Result<Vec<KindReport>, String> {
    let wire = Wire::new(&args.common)?;
    let names = names::read(&args.names)?;
    let (slow, reset, continuation, sni, password, tarpit) = tokio::join!(
        slowloris::run(wire.clone(), args),
        h2flood::rapid_reset(wire.clone(), args),
        h2flood::continuation(wire.clone(), args),
        names::run(wire.clone(), args, names),
        password::run(wire.clone(), args),
        tarpit::clients(wire.clone(), args),
    );
    let mut reports = vec![slow, reset, continuation, sni];
    reports.extend(password);
    reports.extend(tarpit);
    Ok(reports)
}

/// Runs the tarpit origin until `--duration` passes; returns the connections it held.
pub async fn run_tarpit(args: &TarpitArgs) -> Result<KindReport, String> {
    tarpit::origin(args).await
}

/// How long a worker waits before it opens the next connection after the proxy closed
/// one at once: an attack that is turned away must not become a busy loop.
const PAUSE: Duration = Duration::from_millis(200);
