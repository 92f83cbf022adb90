//! Why one operation failed, named by the phase that failed, so that the first few
//! distinct messages on stderr tell an operator where a run goes wrong.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

/// A failed operation (connection, tunnel, handshake or request).
#[derive(Debug, Error)]
pub enum Error {
    /// The TCP connection to the proxy or the origin failed.
    #[error("TCP connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// The proxy refused or garbled the CONNECT.
    #[error("CONNECT: {0}")]
    Tunnel(String),
    /// The TLS handshake failed (including certificate verification).
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// The server selected another protocol than the one requested.
    #[error("ALPN: the server selected {selected}, not {wanted}")]
    Alpn {
        /// What was offered.
        wanted: String,
        /// What came back (`none` when nothing was selected).
        selected: String,
    },
    /// Reading or writing the HTTP/1.1 exchange failed.
    #[error("HTTP/1.1: {0}")]
    Http1(String),
    /// The HTTP/2 connection or stream failed.
    #[error("HTTP/2: {0}")]
    Http2(#[from] h2::Error),
    /// The response status was not 200.
    #[error("response status {0}")]
    Status(u16),
    /// The operation did not finish in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// Whether the HTTP/2 connection carrying this stream is unusable, rather than only
    /// the stream (a reset or a bad status leaves the other streams running).
    pub fn ends_connection(&self) -> bool {
        match self {
            Self::Http2(err) => !err.is_reset(),
            Self::Status(_) => false,
            _ => true,
        }
    }
}
