//! The accept loops: one task per listening socket, one task per client connection,
//! `limits.max_connections` enforced with a semaphore (over the limit: 503 and close).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use crate::connection::handle_client;
use crate::context::{Proxy, Shared};
use crate::metrics::ActiveConnection;
use crate::replies::send_error;
use crate::transparent::handle_transparent;

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

/// One accepted proxy client connection's place under `limits.max_connections` and its
/// count in `sluice_active_connections`. The accept loop makes it and the connection's
/// task holds it; so does a relay upgraded from one of its requests (WebSocket after
/// `101`), which outlives the HTTP/1.1 connection it came from (SPEC §9). Freed when the
/// last holder drops it, which is what the drain waits for.
pub(crate) struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    _active: ActiveConnection,
}

tokio::task_local! {
    /// The slot of the connection whose task this is (set for each connection's task).
    static SLOT: Arc<ConnectionSlot>;
}

impl ConnectionSlot {
    /// The slot of the connection being served by the calling task. `None` outside one,
    /// as in HTTP/2 streams (hyper runs each in its own task): their connection's task,
    /// which holds the slot, carries their bytes and lives as long as they do.
    pub(crate) fn current() -> Option<Arc<ConnectionSlot>> {
        SLOT.try_with(Arc::clone).ok()
    }
}

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
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        match shared.connection_slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let proxy = current.load_full();
                let slot = Arc::new(ConnectionSlot {
                    _permit: permit,
                    _active: shared.metrics.connection_opened(),
                });
                if transparent {
                    tokio::spawn(SLOT.scope(slot, handle_transparent(proxy, stream, peer)));
                } else {
                    tokio::spawn(SLOT.scope(slot, handle_client(proxy, stream, peer)));
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
