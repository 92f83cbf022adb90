//! Persistent connections to one ICAP server, at most `Max-Connections` at once
//! (RFC 3507 §4.10.2).
//!
//! A [`Lease`] is a connection plus a permit of the pool's semaphore: whoever holds it
//! may use the connection; [`Pool::release`] puts a connection whose last transaction
//! ended cleanly back among the idle ones, and dropping a lease closes its connection.
//! Either way the permit returns to the semaphore. When OPTIONS announce another
//! `Max-Connections`, a new semaphore replaces the old one: leases already out keep the
//! old one's permits, so the new limit holds once they are back.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::scan::ScanError;

/// Connections at once when the server does not announce `Max-Connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 32;

/// One connection and the bytes read from it but not parsed yet.
#[derive(Debug)]
pub struct Connection {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes received and not consumed; a connection is only pooled when it is empty.
    pub buf: BytesMut,
}

/// A connection that may be used, and the permit that allowed it.
#[derive(Debug)]
pub struct Lease {
    /// The connection to use.
    pub conn: Connection,
    /// Whether it comes from the idle list (and may have been closed by the server
    /// meanwhile).
    pub reused: bool,
    _permit: OwnedSemaphorePermit,
}

/// The limit in force and its semaphore.
#[derive(Debug)]
struct Limit {
    max: usize,
    semaphore: Arc<Semaphore>,
}

/// The connections to one server.
#[derive(Debug)]
pub struct Pool {
    host: String,
    port: u16,
    idle: Mutex<Vec<Connection>>,
    limit: Mutex<Limit>,
}

impl Pool {
    /// A pool for `host:port`, with [`DEFAULT_MAX_CONNECTIONS`] until told otherwise.
    pub fn new(host: String, port: u16) -> Self {
        Pool {
            host,
            port,
            idle: Mutex::new(Vec::new()),
            limit: Mutex::new(Limit {
                max: DEFAULT_MAX_CONNECTIONS,
                semaphore: Arc::new(Semaphore::new(DEFAULT_MAX_CONNECTIONS)),
            }),
        }
    }

    /// Apply the server's `Max-Connections` (or the default when it announces none).
    pub fn set_max(&self, max: Option<usize>) {
        let max = max.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        let mut limit = self.limit.lock().unwrap_or_else(PoisonError::into_inner);
        if limit.max != max {
            *limit = Limit {
                max,
                semaphore: Arc::new(Semaphore::new(max)),
            };
        }
        drop(limit);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.truncate(max);
    }

    /// The limit in force.
    pub fn max(&self) -> usize {
        self.limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .max
    }

    /// Wait for a permit, then take an idle connection that still looks open, or open a
    /// new one.
    pub async fn lease(&self) -> Result<Lease, ScanError> {
        let permit = self.permit().await?;
        while let Some(conn) = self.pop_idle() {
            if looks_open(&conn.stream) {
                return Ok(Lease {
                    conn,
                    reused: true,
                    _permit: permit,
                });
            }
        }
        self.fresh(permit).await
    }

    /// A new connection, never an idle one (to retry after a stale one).
    pub async fn lease_fresh(&self) -> Result<Lease, ScanError> {
        let permit = self.permit().await?;
        self.fresh(permit).await
    }

    /// Keep the connection of a lease for later.
    pub fn release(&self, lease: Lease) {
        let max = self.max();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < max && lease.conn.buf.is_empty() {
            idle.push(lease.conn);
        }
    }

    async fn permit(&self) -> Result<OwnedSemaphorePermit, ScanError> {
        let semaphore = Arc::clone(
            &self
                .limit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .semaphore,
        );
        // The semaphore is never closed.
        semaphore
            .acquire_owned()
            .await
            .map_err(|e| ScanError::Io(io::Error::other(e)))
    }

    fn pop_idle(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    async fn fresh(&self, permit: OwnedSemaphorePermit) -> Result<Lease, ScanError> {
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| ScanError::Connect {
                address: format!("{}:{}", self.host, self.port),
                source,
            })?;
        // Requests are written in a few pieces and then answered: do not let Nagle's
        // algorithm hold the last piece back waiting for an acknowledgement.
        stream.set_nodelay(true)?;
        Ok(Lease {
            conn: Connection {
                stream,
                buf: BytesMut::with_capacity(8 * 1024),
            },
            reused: false,
            _permit: permit,
        })
    }
}

/// Whether an idle connection has not been closed by the server: nothing to read yet.
/// (A closed one reads as end of file; unexpected bytes make it unusable too.)
fn looks_open(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn connections_are_reused_within_the_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..3 {
                held.push(listener.accept().await.unwrap().0);
            }
            held
        });
        let pool = Pool::new("127.0.0.1".into(), port);
        pool.set_max(Some(2));
        assert_eq!(pool.max(), 2);
        let a = pool.lease().await.unwrap();
        let b = pool.lease().await.unwrap();
        assert!(!a.reused && !b.reused);
        // A third lease waits for a permit.
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), pool.lease())
                .await
                .is_err()
        );
        pool.release(a);
        let c = pool.lease().await.unwrap();
        assert!(c.reused);
        drop(b);
        let d = pool.lease_fresh().await.unwrap();
        assert!(!d.reused);
        pool.release(c);
        drop(d);
        let mut held = accept.await.unwrap();
        // The server closes every connection: the idle one is seen closed and replaced
        // by a new connection, which fails since nothing listens any more.
        for stream in &mut held {
            stream.shutdown().await.unwrap();
        }
        drop(held);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let listener_gone = pool.lease().await;
        assert!(matches!(listener_gone, Err(ScanError::Connect { .. })));
    }
}
