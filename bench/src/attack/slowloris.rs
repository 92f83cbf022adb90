//! Slowloris: hundreds of connections, each sending a plain request head one byte every
//! few seconds (a head that never ends), each from a loopback address of its own. When
//! the proxy answers or closes, the worker notes how and after how long, and opens the
//! next one.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use super::cli::FloodArgs;
use super::outcomes::{KindReport, Outcomes};
use super::wire::{label, loopback, Wire};
use super::PAUSE;

/// Runs the workers to the end of the run.
pub async fn run(wire: Wire, args: &FloodArgs) -> KindReport {
    let outcomes = Outcomes::default();
    let head = head(&wire);
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..args.slowloris {
        // Spread the first bytes over one interval, as independent clients would.
        let delay = args
            .slowloris_interval
            .mul_f64(f64::from(n) / f64::from(args.slowloris));
        workers.spawn(worker(
            wire.clone(),
            n,
            delay,
            args.slowloris_interval,
            head.clone(),
            outcomes.clone(),
        ));
    }
    while workers.join_next().await.is_some() {}
    outcomes.note(format!(
        "{} connections at once, one byte every {} s; answer time = how long a connection was held",
        args.slowloris,
        args.slowloris_interval.as_secs_f64()
    ));
    outcomes.report("slowloris (connections)", None)
}

/// The start of a request head; after it, the header value goes on forever.
fn head(wire: &Wire) -> Vec<u8> {
    let authority = wire.plain_origin().authority();
    format!("GET http://{authority}/small HTTP/1.1\r\nHost: {authority}\r\nX-Slow: ").into_bytes()
}

async fn worker(
    wire: Wire,
    n: u32,
    delay: Duration,
    interval: Duration,
    head: Vec<u8>,
    outcomes: Outcomes,
) {
    tokio::time::sleep(delay.min(wire.left())).await;
    while wire.running() {
        let start = Instant::now();
        let outcome = match wire.tcp(Some(loopback(3, n))).await {
            Ok(tcp) => dribble(&wire, tcp, &head, interval).await,
            Err(err) => label(&err),
        };
        let open_at_end = outcome == OPEN_AT_END;
        outcomes.record(outcome, start.elapsed());
        if !open_at_end {
            tokio::time::sleep(PAUSE.min(wire.left())).await;
        }
    }
}

const OPEN_AT_END: &str = "still open at the end of the run";

/// Sends the head byte by byte until the proxy answers or closes, or the run ends.
async fn dribble(
    wire: &Wire,
    tcp: tokio::net::TcpStream,
    head: &[u8],
    interval: Duration,
) -> String {
    let end = Instant::now() + wire.left();
    let (mut rd, mut wr) = tcp.into_split();
    let mut answer = [0u8; 64];
    let mut next = Instant::now();
    let mut sent = 0;
    loop {
        tokio::select! {
            read = rd.read(&mut answer) => return match read {
                Ok(0) => "closed without an answer".to_owned(),
                Ok(n) => status_of(&answer[..n]),
                Err(e) => format!("read failed: {}", e.kind()),
            },
            () = tokio::time::sleep_until(next.min(end)) => {
                if Instant::now() >= end {
                    return OPEN_AT_END.to_owned();
                }
                let byte = head.get(sent).copied().unwrap_or(b'a');
                if let Err(e) = wr.write_all(&[byte]).await {
                    return format!("write failed: {}", e.kind());
                }
                sent += 1;
                next += interval;
            }
        }
    }
}

/// `answered 408` from the start of a status line, or what the bytes were.
fn status_of(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
    {
        Some(rest) => format!("answered {}", rest.get(..3).unwrap_or(rest)),
        None => "answered with something else than HTTP".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_from_the_status_line() {
        assert_eq!(
            status_of(b"HTTP/1.1 408 Request Timeout\r\n"),
            "answered 408"
        );
        assert_eq!(status_of(b"HTTP/1.0 400"), "answered 400");
        assert_eq!(
            status_of(b"\x15\x03"),
            "answered with something else than HTTP"
        );
    }
}
