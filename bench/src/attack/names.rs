//! Random SNIs: each name of `--names` once, on a new bumped connection (CONNECT to the
//! name, TLS with it as SNI, one `GET`), spread evenly over the run: the proxy mints a
//! certificate for every one of them.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;

use super::cli::FloodArgs;
use super::outcomes::{KindReport, Outcomes};
use super::wire::{label, within, Wire, STEP_TIMEOUT};
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::cli::HostPort;
use crate::loadgen::error::Error;
use crate::loadgen::http1;

/// The host names of `path`: one a line, blank lines skipped.
pub fn read(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(format!("{}: no host names", path.display()));
    }
    Ok(names)
}

/// Runs the workers until every name was used or the run ends.
pub async fn run(wire: Wire, args: &FloodArgs, names: Vec<String>) -> KindReport {
    let outcomes = Outcomes::default();
    let count = names.len();
    let names = Arc::new(names);
    let next = Arc::new(AtomicUsize::new(0));
    let workers = args.sni_workers.max(1);
    // Each worker starts one connection per `interval`: all names within 90 % of the run.
    let interval = wire
        .duration()
        .mul_f64(0.9 * f64::from(workers) / count as f64)
        .max(Duration::from_millis(1));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        set.spawn(worker(
            wire.clone(),
            names.clone(),
            next.clone(),
            interval,
            outcomes.clone(),
        ));
    }
    while set.join_next().await.is_some() {}
    let used = next.load(Ordering::Relaxed).min(count);
    outcomes.note(format!(
        "{used} of {count} names used, each on one new connection"
    ));
    outcomes.report("random SNIs (connections)", None)
}

async fn worker(
    wire: Wire,
    names: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    interval: Duration,
    outcomes: Outcomes,
) {
    let mut buf = ReadBuffer::new();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while wire.running() {
        ticks.tick().await;
        let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) else {
            return;
        };
        let target = HostPort {
            host: name.clone(),
            port: wire.origin().port,
        };
        let start = Instant::now();
        let outcome = match get(&wire, &target, &mut buf).await {
            Ok(()) => "200".to_owned(),
            Err(err) => {
                outcomes.error(err.to_string());
                label(&err)
            }
        };
        outcomes.record(outcome, start.elapsed());
    }
}

async fn get(wire: &Wire, target: &HostPort, buf: &mut ReadBuffer) -> Result<(), Error> {
    let mut tls = wire.tls(target, false, None).await?;
    buf.clear();
    let request = http1::request("/small", &target.authority());
    within(STEP_TIMEOUT, http1::get(&mut tls, &request, buf)).await??;
    Ok(())
}
