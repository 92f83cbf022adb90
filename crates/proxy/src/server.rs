//! The accept loops: one task per listening socket, one task per client connection,
//! `limits.max_connections` enforced with a semaphore (over the limit: 503 and close).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::connection::handle_client;
use crate::context::Proxy;
use crate::replies::send_error;

/// Accept on every listener until `shutdown` completes.
pub async fn serve(
    proxy: Arc<Proxy>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(proxy.clone(), listener));
    }
    shutdown.await;
    accept_loops.shutdown().await;
}

async fn accept_loop(proxy: Arc<Proxy>, listener: TcpListener) {
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
        let proxy = proxy.clone();
        match proxy.connection_slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(async move {
                    handle_client(proxy, stream, peer).await;
                    drop(permit);
                });
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
