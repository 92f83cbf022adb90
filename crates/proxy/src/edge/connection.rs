//! One accepted client connection: read the first request head with sluice's own parser
//! (limits and smuggling checks of SPEC §9), then hand the connection to the CONNECT
//! flow or to plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BufMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::connect::handle_connect;
use crate::context::Proxy;
use crate::edge::proxy_header::{parse_proxy_header, ProxyHeader, MAX_PROXY_HEADER};
use crate::http::head::{parse_request_head, HeadError, HeadParse};
use crate::http::plain::serve_plain;
use crate::http::replies::send_error;
use crate::outcome::{Kind, Phase};
use crate::telemetry::access_log::Record;
use crate::telemetry::recorder::Recorder;

pub async fn handle_client(proxy: Arc<Proxy>, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let max = proxy.config.settings.limits.max_header_bytes;
    // A client must send its first head within this time: slow or silent clients are
    // dropped rather than holding a connection slot.
    let deadline = Instant::now() + proxy.config.settings.limits.client_hello_timeout;
    let settings = &proxy.config.settings;
    let (peer, mut buffered) = if settings.proxy_protocol {
        if !settings.may_send_proxy_header(peer.ip()) {
            // Not read at all: whatever it sends, this peer cannot choose the client
            // address that rules and logs see.
            tracing::warn!(%peer, "closed: not in proxy.proxy_protocol_from");
            return;
        }
        match read_proxy_header(&mut client, deadline).await {
            Some((client_addr, rest)) => (client_addr.unwrap_or(peer), rest),
            None => {
                tracing::debug!(%peer, "closed: no valid PROXY protocol header");
                return;
            }
        }
    } else {
        (peer, Vec::with_capacity(1024))
    };
    // Parse only when a read brought a line end (or the limit is reached): a head
    // trickled byte by byte then costs linear time, not quadratic.
    let mut worth_parsing = !buffered.is_empty();
    let (head, len) = loop {
        if worth_parsing || buffered.len() >= max {
            match parse_request_head(&buffered, max) {
                HeadParse::Complete { head, len } => break (head, len),
                HeadParse::Error(e) => {
                    return refuse_head(&proxy.log, client, peer, &buffered, &e).await
                }
                HeadParse::Incomplete => {}
            }
        }
        let room = max.saturating_sub(buffered.len()).max(1);
        let before = buffered.len();
        let mut window = (&mut buffered).limit(room);
        match tokio::time::timeout_at(deadline, client.read_buf(&mut window)).await {
            Ok(Ok(n)) if n > 0 => worth_parsing = buffered[before..].contains(&b'\n'),
            // Closed, reset or too slow before a full head: nothing to answer.
            _ => return,
        }
    };
    // Methods are case-sensitive (RFC 9110 §9.1).
    // Both paths are boxed: the task of a connection is as large as its largest state,
    // and an idle tunnel should not carry the size of a bump or an HTTP server.
    if head.method == "CONNECT" {
        let early = buffered.split_off(len);
        drop(buffered);
        Box::pin(handle_connect(proxy, client, peer, head, early)).await;
    } else {
        Box::pin(serve_plain(proxy, client, peer, buffered, None)).await;
    }
}

/// Read the PROXY header that must open the connection; the client's address (`None`
/// for a LOCAL header) and the bytes after the header. `None`: no valid header in time,
/// and the connection is closed without a word (it did not come from the balancer).
async fn read_proxy_header(
    client: &mut TcpStream,
    deadline: Instant,
) -> Option<(Option<SocketAddr>, Vec<u8>)> {
    let mut buffered = Vec::with_capacity(256);
    loop {
        match parse_proxy_header(&buffered) {
            ProxyHeader::Complete { client, len } => {
                return Some((client, buffered.split_off(len)))
            }
            ProxyHeader::Invalid => return None,
            ProxyHeader::Incomplete => {}
        }
        let room = MAX_PROXY_HEADER.saturating_sub(buffered.len()).max(1);
        let mut window = (&mut buffered).limit(room);
        match tokio::time::timeout_at(deadline, client.read_buf(&mut window)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}

/// Answer a head sluice cannot accept, and log it: as a refused CONNECT when it is one.
async fn refuse_head(
    log: &Recorder,
    mut client: TcpStream,
    peer: SocketAddr,
    buffered: &[u8],
    error: &HeadError,
) {
    let is_connect = buffered.get(..8).is_some_and(|start| start == b"CONNECT ");
    let mut record = Record::new(if is_connect { "connect" } else { "http" });
    record.client = Some(peer.ip());
    record.client_port = Some(peer.port());
    if is_connect {
        record.action = Some("refused");
    }
    record.status = Some(error.status());
    record.fail(&Kind::BadRequest(error.reason()).at(Phase::Request));
    log.write(&record);
    send_error(&mut client, error.status(), error.reason()).await;
}
