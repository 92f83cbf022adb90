//! `relay`: a bare CONNECT tunnel around sluice's two byte paths, so that
//! `bench/delivered.sh` can weigh splice against copy with nothing else different (issue
//! 18): `relay --listen ADDR --path splice|copy`.
//!
//! Each client sends `CONNECT host:port HTTP/1.1` and a blank line; the relay dials that
//! address (names resolved by the system), answers `200`, and hands both sockets to
//! `sluice_proxy::relay` (what sluice's tunnels run: copy small messages, splice once a
//! read fills the 16 KiB copy buffer) or `sluice_proxy::relay_streams` (copy only, the
//! path of upgraded connections). No policy, no log: a benchmark fixture, never a proxy to
//! deploy.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The longest CONNECT head read before the relay gives up on a client.
const MAX_HEAD: usize = 4096;
/// What the tunnels' `idle_timeout` is in sluice's default configuration.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Parser)]
#[command(
    name = "relay",
    about = "CONNECT tunnel over sluice's splice or copy byte path (benchmark fixture)"
)]
struct Cli {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Which byte path the tunnels run.
    #[arg(long, value_enum)]
    path: BytePath,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BytePath {
    /// `sluice_proxy::relay`: copy small messages, splice bulk transfers.
    Splice,
    /// `sluice_proxy::relay_streams`: a 16 KiB copy loop each way.
    Copy,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("relay: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(cli: Cli) -> std::io::Result<()> {
    let listener = TcpListener::bind(cli.listen).await?;
    eprintln!("relay: listening on {} ({:?})", cli.listen, cli.path);
    loop {
        let (client, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors or a client that reset before accept: try the next one.
            Err(e) => {
                eprintln!("relay: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = tunnel(client, cli.path).await {
                eprintln!("relay: {e}");
            }
        });
    }
}

async fn tunnel(mut client: TcpStream, path: BytePath) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let target = read_connect_target(&mut client).await?;
    let upstream = TcpStream::connect(&target).await?;
    upstream.set_nodelay(true)?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    let outcome = match path {
        BytePath::Splice => sluice_proxy::relay(client, upstream, IDLE_TIMEOUT).await,
        BytePath::Copy => sluice_proxy::relay_streams(client, upstream, IDLE_TIMEOUT).await,
    };
    match outcome.failure {
        Some(failure) => Err(std::io::Error::other(failure.log_text().into_owned())),
        None => Ok(()),
    }
}

/// The `host:port` of a CONNECT head, read one byte at a time so that nothing the client
/// sends after the blank line is taken from the tunnel.
async fn read_connect_target(client: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() == MAX_HEAD || client.read_u8().await.map(|b| head.push(b)).is_err() {
            return Err(std::io::Error::other("no complete CONNECT head"));
        }
    }
    let line = String::from_utf8_lossy(&head);
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        ["CONNECT", target, _version, ..] => Ok(target.to_string()),
        _ => Err(std::io::Error::other("not a CONNECT request")),
    }
}
