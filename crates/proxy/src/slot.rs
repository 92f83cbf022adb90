//! A client connection's place under `limits.max_connections`, beside the layers: the
//! edge makes it, and an upgraded relay in the http layer keeps holding it.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::telemetry::metrics::ActiveConnection;

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
    /// A slot holding `permit` and counted in `active`.
    pub(crate) fn new(permit: OwnedSemaphorePermit, active: ActiveConnection) -> Arc<Self> {
        Arc::new(ConnectionSlot {
            _permit: permit,
            _active: active,
        })
    }

    /// Run `connection` as the task that holds this slot.
    pub(crate) fn hold<F: Future>(
        self: Arc<Self>,
        connection: F,
    ) -> impl Future<Output = F::Output> {
        SLOT.scope(self, connection)
    }

    /// The slot of the connection being served by the calling task. `None` outside one,
    /// as in HTTP/2 streams (hyper runs each in its own task): their connection's task,
    /// which holds the slot, carries their bytes and lives as long as they do.
    pub(crate) fn current() -> Option<Arc<ConnectionSlot>> {
        SLOT.try_with(Arc::clone).ok()
    }
}
