//! Moving bytes both ways between two streams, unread: the CONNECT tunnel, and the
//! connection an HTTP upgrade (WebSocket) leaves behind. Splice on Linux.

pub(crate) mod pipe;
pub(crate) mod relay;
