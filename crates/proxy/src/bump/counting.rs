//! Byte counters around a socket, for the access log's `bytes_up`/`bytes_down` on
//! connections whose bytes pass through TLS in user space (bump).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::http::observe::{IoWatch, Observed};

#[derive(Debug, Default)]
pub struct ByteCounts {
    /// Read from the wrapped socket.
    pub read: AtomicU64,
    /// Written to the wrapped socket.
    pub written: AtomicU64,
}

/// A socket whose bytes are counted into shared [`ByteCounts`].
pub type Counted<T> = Observed<T, Arc<ByteCounts>>;

impl IoWatch for Arc<ByteCounts> {
    fn read(&mut self, bytes: &[u8]) {
        self.read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    }

    fn written(&mut self, len: usize) {
        self.written.fetch_add(len as u64, Ordering::Relaxed);
    }
}
