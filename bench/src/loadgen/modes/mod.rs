//! The four load modes, and what they share: the time limit of one operation, the pause
//! after a failure, the opening of many connections with a bounded number of handshakes
//! in flight, and the gathering of the workers' tallies.
//!
//! Each mode prints its own report (`hold` prints before it waits) and returns whether
//! anything worked, which decides the exit status.

pub mod conns;
pub mod download;
pub mod hold;
pub mod requests;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::buffer::ReadBuffer;
use super::error::Error;
use super::plan::Plan;
use super::stats::Tally;

/// A load mode, with what only it takes.
#[derive(Clone, Copy, Debug)]
pub enum LoadMode {
    /// New connection, one `GET`, close; repeated.
    Conns {
        /// At most this many connections in all.
        count: Option<u64>,
    },
    /// `GET`s back to back on connections opened first.
    Requests {
        /// Concurrent streams per HTTP/2 connection.
        streams: usize,
    },
    /// One `GET` of a large path per connection, timed for throughput.
    Download,
    /// Connections opened and then kept idle.
    Hold,
}

/// Limit on one operation (connection, request, or the opening of one connection).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit on one whole download.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause of a worker after a failure, so that a refusing peer is not hammered in a tight
/// loop on the core the origin needs.
pub const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Most connections being opened at once by [`open_many`].
pub const MAX_OPENING: usize = 64;

/// `operation`, failed with [`Error::Timeout`] when it takes longer than `limit`.
pub async fn within<T>(
    limit: Duration,
    operation: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(limit, operation)
        .await
        .unwrap_or(Err(Error::Timeout(limit)))
}

/// The workers' tallies merged; a worker that panicked counts as one error.
pub async fn gather(workers: Vec<JoinHandle<Tally>>) -> Tally {
    let mut total = Tally::default();
    for worker in workers {
        match worker.await {
            Ok(tally) => total.merge(tally),
            Err(e) => {
                eprintln!("loadgen: a worker failed: {e}");
                total.errors += 1;
            }
        }
    }
    total
}

/// How one connection is opened for [`open_many`]: a boxed future borrowing the
/// opener's buffer.
pub type Opening<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Opens `n` connections with `open`, at most [`MAX_OPENING`] at a time (each opener task
/// reuses one buffer); returns those that opened and the failures counted.
pub async fn open_many<T: Send + 'static>(
    plan: &'static Plan,
    n: usize,
    open: for<'a> fn(&'static Plan, &'a mut ReadBuffer) -> Opening<'a, T>,
) -> (Vec<T>, Tally) {
    let started = Arc::new(AtomicUsize::new(0));
    let openers: Vec<_> = (0..n.min(MAX_OPENING))
        .map(|_| {
            let started = Arc::clone(&started);
            tokio::spawn(async move {
                let mut buf = ReadBuffer::new();
                let mut opened = Vec::new();
                let mut tally = Tally::default();
                while started.fetch_add(1, Ordering::Relaxed) < n {
                    match within(OPERATION_TIMEOUT, open(plan, &mut buf)).await {
                        Ok(conn) => opened.push(conn),
                        Err(e) => tally.failure(&plan.errors, &e),
                    }
                }
                (opened, tally)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    let mut total = Tally::default();
    for opener in openers {
        match opener.await {
            Ok((opened, tally)) => {
                all.extend(opened);
                total.merge(tally);
            }
            Err(e) => {
                eprintln!("loadgen: an opener failed: {e}");
                total.errors += 1;
            }
        }
    }
    (all, total)
}
