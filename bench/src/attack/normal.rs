//! Normal traffic: a few keep-alive connections, each sending a `GET` at a steady rate,
//! bumped HTTPS (CONNECT, TLS to the proxy's certificate, HTTP/1.1) or plain HTTP
//! (absolute form). A request that does not end in a `200` with its whole body is an
//! error, whatever the cause (failed connect, refusal, timeout, reset); the connection
//! is then opened afresh for the next request.

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::time::MissedTickBehavior;
use tokio_rustls::client::TlsStream;

use super::cli::NormalArgs;
use super::outcomes::{KindReport, Outcomes};
use super::wire::{label, within, Wire};
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::error::Error;
use crate::loadgen::http1::{self, Response};

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the workers to the end of the run; one report for HTTPS, one for plain HTTP.
pub async fn run(wire: Wire, args: &NormalArgs) -> Vec<KindReport> {
    let https = Outcomes::default();
    let plain = Outcomes::default();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.https_workers {
        workers.spawn(worker(
            wire.clone(),
            Kind::Https,
            args.interval,
            args.path.clone(),
            https.clone(),
        ));
    }
    for _ in 0..args.plain_workers {
        workers.spawn(worker(
            wire.clone(),
            Kind::Plain,
            args.interval,
            args.path.clone(),
            plain.clone(),
        ));
    }
    while workers.join_next().await.is_some() {}
    vec![
        https.report("normal: bumped HTTPS GET", Some("200")),
        plain.report("normal: plain HTTP GET", Some("200")),
    ]
}

#[derive(Clone, Copy)]
enum Kind {
    Https,
    Plain,
}

enum Conn {
    Https(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

async fn worker(wire: Wire, kind: Kind, interval: Duration, path: String, outcomes: Outcomes) {
    let request = match kind {
        Kind::Https => http1::request(&path, &wire.origin().authority()),
        Kind::Plain => wire.plain_get(wire.plain_origin(), &path),
    };
    let mut buf = ReadBuffer::new();
    let mut conn = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while wire.running() {
        ticks.tick().await;
        let start = Instant::now();
        match within(
            REQUEST_TIMEOUT,
            exchange(&wire, kind, &mut conn, &request, &mut buf),
        )
        .await
        {
            Ok(Ok(response)) => {
                outcomes.record("200", start.elapsed());
                if !response.keep_alive {
                    conn = None;
                }
            }
            Ok(Err(err)) | Err(err) => {
                outcomes.record(label(&err), start.elapsed());
                outcomes.error(err.to_string());
                conn = None;
            }
        }
    }
}

/// One `GET` on the open connection, opening it first when there is none.
async fn exchange(
    wire: &Wire,
    kind: Kind,
    conn: &mut Option<Conn>,
    request: &[u8],
    buf: &mut ReadBuffer,
) -> Result<Response, Error> {
    let open = match conn.take() {
        Some(open) => open,
        None => {
            buf.clear();
            match kind {
                Kind::Https => Conn::Https(Box::new(wire.tls(wire.origin(), false, None).await?)),
                Kind::Plain => Conn::Plain(wire.tcp(None).await?),
            }
        }
    };
    match conn.insert(open) {
        Conn::Https(tls) => http1::get(&mut **tls, request, buf).await,
        Conn::Plain(tcp) => http1::get(tcp, request, buf).await,
    }
}
