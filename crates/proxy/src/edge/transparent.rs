//! Transparent interception (SPEC §11): connections the kernel sent to a
//! `proxy.transparent_listen` socket, by nftables/iptables `REDIRECT` (the original
//! destination is kept by conntrack, read with `SO_ORIGINAL_DST`) or by `TPROXY` (the
//! socket's local address is the destination). The first bytes tell what the client
//! speaks; the original destination takes the place of a CONNECT's target.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;
use std::sync::Arc;

use bytes::BufMut;
use nix::sys::socket::{getsockopt, setsockopt, sockopt, SockaddrIn, SockaddrIn6};
use sluice_policy::{classify_first_bytes, FirstBytes};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::connect::{handle_transparent_tls, transparent_record};
use crate::context::Proxy;
use crate::http::plain::serve_plain;
use crate::outcome::{Kind, Phase};

/// How many bytes are read at most to tell what a connection speaks.
const FIRST_BYTES: usize = 64;

/// Listen on `addr` for redirected connections. `IP_TRANSPARENT` is asked for so that
/// `TPROXY` can hand this socket connections for addresses that are not local; it needs
/// `CAP_NET_ADMIN`, and without it only `REDIRECT` works (which needs no privilege).
pub async fn bind_transparent(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if let Err(error) = setsockopt(&socket.as_fd(), sockopt::IpTransparent, &true) {
        tracing::info!(%addr, %error, "IP_TRANSPARENT not set (needs CAP_NET_ADMIN): REDIRECT works, TPROXY does not");
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The destination the client meant: `SO_ORIGINAL_DST` after a `REDIRECT`, else the
/// local address (under `TPROXY` it is the destination).
fn original_destination(client: &TcpStream) -> std::io::Result<SocketAddr> {
    let local = client.local_addr()?;
    let fd = client.as_fd();
    let redirected = match local {
        SocketAddr::V4(_) => getsockopt(&fd, sockopt::OriginalDst)
            .map(|dst| SocketAddr::V4(SocketAddrV4::from(SockaddrIn::from(dst)))),
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => {
            getsockopt(&fd, sockopt::OriginalDst)
                .map(|dst| SocketAddr::V4(SocketAddrV4::from(SockaddrIn::from(dst))))
        }
        SocketAddr::V6(_) => getsockopt(&fd, sockopt::Ip6tOriginalDst)
            .map(|dst| SocketAddr::V6(SocketAddrV6::from(SockaddrIn6::from(dst)))),
    };
    // Without conntrack's record (no NAT happened) the connection is a TPROXY one, or
    // was made to this socket directly, which the loop check then closes.
    Ok(redirected.unwrap_or(local))
}

/// Serve one connection accepted on a transparent listener.
pub async fn handle_transparent(proxy: Arc<Proxy>, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let dest = match original_destination(&client) {
        Ok(dest) => dest,
        Err(error) => return tracing::debug!(%peer, %error, "closed: no original destination"),
    };
    if proxy.dialer.is_own(dest) {
        // Sent to sluice itself: relaying it would come straight back.
        let mut record = transparent_record(peer, dest);
        record.fail(&Kind::LoopDetected.at(Phase::Dial));
        return proxy.log.write(&record);
    }
    let deadline = Instant::now() + proxy.config.settings.limits.client_hello_timeout;
    let Some((kind, first)) = read_first_bytes(&mut client, deadline).await else {
        return tracing::debug!(%peer, %dest, "closed before its first bytes");
    };
    if kind == FirstBytes::Http {
        Box::pin(serve_plain(proxy, client, peer, first, Some(dest))).await;
    } else {
        // TLS, or anything else, which the ClientHello reader finds is not TLS.
        Box::pin(handle_transparent_tls(proxy, client, peer, dest, first)).await;
    }
}

/// Read until the first bytes say what the connection speaks; `None` when it closes
/// or stays silent past `deadline` first.
async fn read_first_bytes(
    client: &mut TcpStream,
    deadline: Instant,
) -> Option<(FirstBytes, Vec<u8>)> {
    let mut first = Vec::with_capacity(FIRST_BYTES);
    loop {
        match classify_first_bytes(&first) {
            FirstBytes::Incomplete if first.len() < FIRST_BYTES => {}
            FirstBytes::Incomplete => return Some((FirstBytes::Other, first)),
            kind => return Some((kind, first)),
        }
        let room = FIRST_BYTES - first.len();
        let mut window = (&mut first).limit(room);
        match tokio::time::timeout_at(deadline, client.read_buf(&mut window)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
}
