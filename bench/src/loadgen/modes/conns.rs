//! `conns`: each worker repeats new connection, CONNECT, full handshake, one `GET` read to
//! its end, close, until the duration has passed (or the run's count of connections has
//! been started); latency runs from the TCP connect to the last body byte.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{gather, within, ERROR_PAUSE, OPERATION_TIMEOUT};
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::error::Error;
use crate::loadgen::plan::Plan;
use crate::loadgen::session::Session;
use crate::loadgen::stats::{emit, Tally};

/// Runs the mode, making at most `count` connections; prints its report; true when a
/// connection succeeded.
pub async fn run(plan: &'static Plan, count: Option<u64>) -> bool {
    let start = Instant::now();
    let deadline = start + plan.duration;
    let remaining = Arc::new(AtomicU64::new(count.unwrap_or(u64::MAX)));
    let workers = (0..plan.concurrency)
        .map(|_| tokio::spawn(worker(plan, deadline, Arc::clone(&remaining))))
        .collect();
    let tally = gather(workers).await;
    let ran = tally.ok > 0;
    emit(&tally.rate_report("conns", start.elapsed()));
    ran
}

/// Connections until the deadline, each taken from `remaining` (shared by the workers).
async fn worker(plan: &'static Plan, deadline: Instant, remaining: Arc<AtomicU64>) -> Tally {
    let mut buf = ReadBuffer::new();
    let mut tally = Tally::default();
    let take_one = || {
        remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    };
    while Instant::now() < deadline && take_one() {
        match within(OPERATION_TIMEOUT, one_connection(plan, &mut buf)).await {
            Ok(latency) => tally.success(latency),
            Err(e) => {
                tally.failure(&plan.errors, &e);
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    tally
}

/// One connection's life; returns the time to its last body byte (the close is not
/// included).
async fn one_connection(plan: &'static Plan, buf: &mut ReadBuffer) -> Result<Duration, Error> {
    let start = Instant::now();
    let mut session = Session::open(plan, buf).await?;
    session.get(buf).await?;
    let latency = start.elapsed();
    session.close().await;
    Ok(latency)
}
