//! Tarpit origins: the server (`attack tarpit`), which accepts TCP, completes TLS on its
//! TLS port, reads whatever comes and never answers; and the clients, which send
//! requests through the proxy to it (bumped HTTPS and plain HTTP) and note how the proxy
//! answers them, and when.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::aws_lc_rs;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::cli::{FloodArgs, TarpitArgs};
use super::outcomes::{KindReport, Outcomes};
use super::wire::{label, within, Wire};
use crate::loadgen::buffer::ReadBuffer;
use crate::loadgen::cli::HostPort;
use crate::loadgen::error::Error;
use crate::loadgen::http1;

const WAITING_AT_END: &str = "still waiting at the end of the run";

// -------------------------------------------------------------------------- clients

/// Runs the client workers, half bumped, half plain; one report for each.
pub async fn clients(wire: Wire, args: &FloodArgs) -> Vec<KindReport> {
    let bumped = Outcomes::default();
    let plain = Outcomes::default();
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..args.tarpit_workers {
        let (target, outcomes, tls) = if n % 2 == 0 {
            (args.tarpit.clone(), bumped.clone(), true)
        } else {
            (args.tarpit_plain.clone(), plain.clone(), false)
        };
        workers.spawn(worker(
            wire.clone(),
            target,
            tls,
            args.tarpit_wait,
            outcomes,
        ));
    }
    while workers.join_next().await.is_some() {}
    let note = format!(
        "{} requests at once; the client gives up after {} s",
        args.tarpit_workers.div_ceil(2),
        args.tarpit_wait.as_secs()
    );
    bumped.note(&note);
    plain.note(note);
    vec![
        bumped.report("tarpit origin, bumped HTTPS (requests)", None),
        plain.report("tarpit origin, plain HTTP (requests)", None),
    ]
}

async fn worker(wire: Wire, target: HostPort, tls: bool, wait: Duration, outcomes: Outcomes) {
    let mut buf = ReadBuffer::new();
    while wire.running() {
        let start = Instant::now();
        // A request still waiting when the run ends is not an answer of the proxy.
        let limit = wait.min(wire.left() + Duration::from_secs(1));
        let outcome = match within(limit, request(&wire, &target, tls, &mut buf)).await {
            Ok(Ok(())) => "200".to_owned(),
            Ok(Err(err)) => label(&err),
            Err(_) if limit < wait => WAITING_AT_END.to_owned(),
            Err(err) => label(&err),
        };
        outcomes.record(outcome, start.elapsed());
    }
}

async fn request(
    wire: &Wire,
    target: &HostPort,
    tls: bool,
    buf: &mut ReadBuffer,
) -> Result<(), Error> {
    buf.clear();
    if tls {
        let mut stream = wire.tls(target, false, None).await?;
        let request = http1::request("/small", &target.authority());
        http1::get(&mut stream, &request, buf).await?;
    } else {
        let mut stream = wire.tcp(None).await?;
        http1::get(&mut stream, &wire.plain_get(target, "/small"), buf).await?;
    }
    Ok(())
}

// -------------------------------------------------------------------------- origin

/// Accepts on both ports until `--duration` passes; each connection is held until its
/// peer closes it or the run ends. Reports how the held connections ended.
pub async fn origin(args: &TarpitArgs) -> Result<KindReport, String> {
    let acceptor = TlsAcceptor::from(server_config(args)?);
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|e| format!("listening on {addr}: {e}"))
    };
    let (tls, plain) = (bind(args.tls).await?, bind(args.plain).await?);
    let end = tokio::time::Instant::now() + args.duration;
    let outcomes = Outcomes::default();
    let mut held = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = tls.accept() => accepted.map(|(tcp, _)| (tcp, Some(acceptor.clone()))),
            accepted = plain.accept() => accepted.map(|(tcp, _)| (tcp, None)),
            () = tokio::time::sleep_until(end) => break,
        };
        match accepted {
            Ok((tcp, acceptor)) => {
                held.spawn(hold(tcp, acceptor, end, outcomes.clone()));
            }
            Err(e) => {
                outcomes.error(format!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    while held.join_next().await.is_some() {}
    outcomes.note("answer time = how long the connection was held");
    Ok(outcomes.report("tarpit origin (connections it held)", None))
}

/// Completes TLS when `acceptor` is given, then reads until the peer closes or `end`.
async fn hold(
    tcp: TcpStream,
    acceptor: Option<TlsAcceptor>,
    end: tokio::time::Instant,
    outcomes: Outcomes,
) {
    let start = Instant::now();
    let kind = if acceptor.is_some() { "TLS" } else { "plain" };
    let ended = match acceptor {
        Some(acceptor) => match tokio::time::timeout_at(end, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => drain(stream, end).await,
            Ok(Err(_)) => "TLS handshake failed",
            Err(_) => "still held at the end of the run",
        },
        None => drain(tcp, end).await,
    };
    outcomes.record(format!("{kind}: {ended}"), start.elapsed());
}

async fn drain(mut stream: impl AsyncRead + Unpin, end: tokio::time::Instant) -> &'static str {
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut sink)).await {
            Ok(Ok(0)) => return "closed by the proxy",
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return "reset by the proxy",
            Err(_) => return "still held at the end of the run",
        }
    }
}

fn server_config(args: &TarpitArgs) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(&args.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", args.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&args.key)
        .map_err(|e| format!("{}: {e}", args.key.display()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("{}: {e}", args.cert.display()))?;
    Ok(Arc::new(config))
}
