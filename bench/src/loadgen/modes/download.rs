//! `download`: `--concurrency` connections are opened first (before the clock starts),
//! then each reads the path once to its end; the figure is body bytes over the time from
//! the first `GET` to the last body byte.

use std::time::Instant;

use serde::Serialize;

use super::{gather, open_many, within, Opening, DOWNLOAD_TIMEOUT};
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::plan::Plan;
use crate::loadgen::session::Session;
use crate::loadgen::stats::{emit, round, Tally};

/// Runs the mode, prints its report; true when a download completed.
pub async fn run(plan: &'static Plan) -> bool {
    let (sessions, opening) = open_many(plan, plan.concurrency, open).await;
    let start = Instant::now();
    let workers = sessions
        .into_iter()
        .map(|session| tokio::spawn(download(plan, session)))
        .collect();
    let mut tally = gather(workers).await;
    let secs = start.elapsed().as_secs_f64();
    tally.merge(opening);
    emit(&Report {
        mode: "download",
        ok: tally.ok,
        errors: tally.errors,
        bytes: tally.bytes,
        secs: round(secs, 3),
        mb_per_sec: round(tally.bytes as f64 / 1e6 / secs, 2),
    });
    tally.ok > 0
}

/// `{"mode":"download","ok","errors","bytes","secs","mb_per_sec"}` (MB = 10^6 bytes).
#[derive(Serialize)]
struct Report {
    mode: &'static str,
    ok: u64,
    errors: u64,
    bytes: u64,
    secs: f64,
    mb_per_sec: f64,
}

fn open<'a>(plan: &'static Plan, buf: &'a mut ReadBuffer) -> Opening<'a, Session> {
    Box::pin(Session::open(plan, buf))
}

async fn download(plan: &'static Plan, mut session: Session) -> Tally {
    let mut buf = ReadBuffer::new();
    let mut tally = Tally::default();
    let start = Instant::now();
    match within(DOWNLOAD_TIMEOUT, session.get(&mut buf)).await {
        Ok(response) => {
            tally.success(start.elapsed());
            tally.bytes = response.body_bytes;
        }
        Err(e) => tally.failure(&plan.errors, &e),
    }
    session.close().await;
    tally
}
