//! `requests`: `--concurrency` connections are opened first (not timed), then each sends
//! `GET`s back to back until the duration has passed: HTTP/1.1 one at a time (keep-alive),
//! HTTP/2 on `--streams` concurrent streams. Latency runs from sending a request to its
//! last body byte. A connection that fails is counted and replaced.

use std::time::Instant;

use h2::client::SendRequest;
use http::Uri;

use super::{gather, open_many, within, Opening, ERROR_PAUSE, OPERATION_TIMEOUT};
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::cli::HttpVersion;
use crate::loadgen::http2::{self, Http2Conn};
use crate::loadgen::plan::{Plan, Target};
use crate::loadgen::session::{open_http2, Session};
use crate::loadgen::stats::{emit, Tally};

/// Runs the mode with `streams` per HTTP/2 connection, prints its report; true when a
/// request succeeded.
pub async fn run(plan: &'static Plan, streams: usize) -> bool {
    let (tally, start) = match plan.http {
        HttpVersion::Http1 => {
            let (sessions, opening) = open_many(plan, plan.concurrency, open_session).await;
            let start = Instant::now();
            let deadline = start + plan.duration;
            let mut sessions = sessions.into_iter();
            let workers = (0..plan.concurrency)
                .map(|_| tokio::spawn(serial(plan, sessions.next(), deadline)))
                .collect();
            (merged(opening, gather(workers).await), start)
        }
        HttpVersion::Http2 => {
            let (conns, opening) = open_many(plan, plan.concurrency, open_h2).await;
            let start = Instant::now();
            let deadline = start + plan.duration;
            let mut conns = conns.into_iter();
            let workers = (0..plan.concurrency)
                .map(|_| tokio::spawn(multiplexed(plan, conns.next(), deadline, streams)))
                .collect();
            (merged(opening, gather(workers).await), start)
        }
    };
    let secs = start.elapsed();
    let ran = tally.ok > 0;
    emit(&tally.rate_report("requests", secs));
    ran
}

fn merged(mut first: Tally, second: Tally) -> Tally {
    first.merge(second);
    first
}

fn open_session<'a>(plan: &'static Plan, buf: &'a mut ReadBuffer) -> Opening<'a, Session> {
    Box::pin(Session::open(plan, buf))
}

fn open_h2<'a>(
    plan: &'static Plan,
    buf: &'a mut ReadBuffer,
) -> Opening<'a, (&'static Target, Http2Conn)> {
    Box::pin(open_http2(plan, buf))
}

/// One connection, one request at a time; reopened when it fails or closes.
async fn serial(plan: &'static Plan, mut session: Option<Session>, deadline: Instant) -> Tally {
    let mut buf = ReadBuffer::new();
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let Some(current) = session.as_mut() else {
            match within(OPERATION_TIMEOUT, Session::open(plan, &mut buf)).await {
                Ok(opened) => session = Some(opened),
                Err(e) => {
                    tally.failure(&plan.errors, &e);
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
            continue;
        };
        let start = Instant::now();
        match within(OPERATION_TIMEOUT, current.get(&mut buf)).await {
            Ok(response) => {
                tally.success(start.elapsed());
                if !response.keep_alive {
                    session = None;
                }
            }
            Err(e) => {
                tally.failure(&plan.errors, &e);
                session = None;
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    if let Some(session) = session {
        session.close().await;
    }
    tally
}

/// One HTTP/2 connection with `streams` request loops; reopened when all loops ended
/// early because the connection failed.
async fn multiplexed(
    plan: &'static Plan,
    mut conn: Option<(&'static Target, Http2Conn)>,
    deadline: Instant,
    streams: usize,
) -> Tally {
    let mut buf = ReadBuffer::new();
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let (target, current) = match conn.take() {
            Some(open) => open,
            None => match within(OPERATION_TIMEOUT, open_http2(plan, &mut buf)).await {
                Ok(opened) => opened,
                Err(e) => {
                    tally.failure(&plan.errors, &e);
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let lanes = (0..streams)
            .map(|_| tokio::spawn(lane(plan, current.sender(), &target.uri, deadline)))
            .collect();
        tally.merge(gather(lanes).await);
        current.close().await;
    }
    tally
}

/// Requests back to back on one stream slot until the deadline, or until the connection
/// fails.
async fn lane(
    plan: &'static Plan,
    mut send: SendRequest<bytes::Bytes>,
    uri: &'static Uri,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let start = Instant::now();
        match within(OPERATION_TIMEOUT, http2::get(&mut send, uri)).await {
            Ok(_) => tally.success(start.elapsed()),
            Err(e) => {
                tally.failure(&plan.errors, &e);
                if e.ends_connection() {
                    break;
                }
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    tally
}
