//! The accept loops: one task per listening socket, one task per client connection,
//! `limits.max_connections` enforced with a semaphore (over the limit: 503 and close).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::context::{Proxy, Shared};
use crate::edge::connection::handle_client;
use crate::edge::transparent::handle_transparent;
use crate::http::replies::send_error;
use crate::slot::ConnectionSlot;

/// A listening socket and how its clients reach sluice.
pub enum Listener {
    /// `proxy.listen`: clients configured to use the proxy.
    Explicit(TcpListener),
    /// `proxy.transparent_listen`: connections the kernel redirected (SPEC §11).
    Transparent(TcpListener),
}

/// How long running connections may take to finish once sluice is stopping.
const DRAIN: Duration = Duration::from_secs(30);

/// The configuration generation new connections start in; a reload swaps it.
pub type CurrentProxy = Arc<ArcSwap<Proxy>>;

/// Accept on every listener until `shutdown` completes; then stop accepting (the
/// listening sockets close) and let running connections finish for up to 30 s.
pub async fn serve(
    current: CurrentProxy,
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    shutdown: impl Future<Output = ()>,
) {
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(current.clone(), shared.clone(), listener));
    }
    shutdown.await;
    shared.start_draining();
    accept_loops.shutdown().await;
    drain(&shared).await;
}

/// Wait until every connection slot is free again, or [`DRAIN`] has passed.
async fn drain(shared: &Shared) {
    let slots = u32::try_from(shared.max_connections).unwrap_or(u32::MAX);
    let running = || (slots as usize).saturating_sub(shared.connection_slots.available_permits());
    if running() == 0 {
        return;
    }
    tracing::info!(
        running = running(),
        "stopped accepting; waiting up to 30 s for running connections"
    );
    let all_free = shared.connection_slots.acquire_many(slots);
    if tokio::time::timeout(DRAIN, all_free).await.is_err() {
        tracing::warn!(
            left = running(),
            "connections still running after 30 s are closed"
        );
    }
}

async fn accept_loop(current: CurrentProxy, shared: Arc<Shared>, listener: Listener) {
    let (listener, transparent) = match listener {
        Listener::Explicit(listener) => (listener, false),
        Listener::Transparent(listener) => (listener, true),
    };
    loop {
        let (mut stream, peer) = accept(&listener, "proxy").await;
        match shared.connection_slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let proxy = current.load_full();
                let slot = ConnectionSlot::new(permit, shared.metrics.connection_opened());
                if transparent {
                    tokio::spawn(slot.hold(handle_transparent(proxy, stream, peer)));
                } else {
                    tokio::spawn(slot.hold(handle_client(proxy, stream, peer)));
                }
            }
            // A redirected client does not speak to a proxy: it is only closed.
            Err(_) if transparent => {
                tracing::warn!(%peer, "max_connections reached; closing a transparent connection");
            }
            Err(_) => {
                tracing::warn!(%peer, "max_connections reached; refusing a connection");
                tokio::spawn(async move {
                    send_error(
                        &mut stream,
                        503,
                        "sluice is at its connection limit; try again later",
                    )
                    .await;
                });
            }
        }
    }
}

/// How long an accept loop pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next connection on `listener` (`name` says which, in the log). A failed accept
/// (EMFILE when descriptors run out, ENOBUFS, …) is logged and tried again after
/// [`ACCEPT_BACKOFF`]: trying at once would spin a core for as long as the cause lasts.
pub(crate) async fn accept(listener: &TcpListener, name: &'static str) -> (TcpStream, SocketAddr) {
    let pause = || tokio::time::sleep(ACCEPT_BACKOFF);
    retry_accept(name, || listener.accept(), pause).await
}

/// [`accept`] with the accept and the pause given, so a test can inject failures.
async fn retry_accept<T, A, P>(
    name: &'static str,
    mut accept: impl FnMut() -> A,
    mut pause: impl FnMut() -> P,
) -> T
where
    A: Future<Output = io::Result<T>>,
    P: Future<Output = ()>,
{
    loop {
        match accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(%error, listener = name, "accept failed");
                pause().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// Descriptors run out for five accepts: each failure is followed by one pause, and
    /// the sixth accept's connection is returned.
    #[tokio::test]
    async fn a_failed_accept_pauses_before_the_next_try() {
        let (tries, pauses) = (Cell::new(0), Cell::new(0));
        let accept = || {
            tries.set(tries.get() + 1);
            let result = if tries.get() <= 5 {
                Err(io::Error::from_raw_os_error(24)) // EMFILE
            } else {
                Ok(tries.get())
            };
            std::future::ready(result)
        };
        let pause = || {
            pauses.set(pauses.get() + 1);
            std::future::ready(())
        };
        assert_eq!(retry_accept("test", accept, pause).await, 6);
        assert_eq!(pauses.get(), 5);
    }
}
