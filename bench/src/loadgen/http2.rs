//! HTTP/2 with the h2 crate over one TLS connection: the handshake (its connection task
//! runs beside the streams), a `GET` per stream read to its end, and the graceful close.

use std::future::poll_fn;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Request, StatusCode, Uri};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use super::error::Error;

/// Receive window of each stream: large enough that a download is not paced by
/// WINDOW_UPDATE round trips.
const STREAM_WINDOW: u32 = 8 << 20;
/// Receive window of the connection, shared by its streams.
const CONNECTION_WINDOW: u32 = 32 << 20;
/// How long a close waits for the GOAWAY to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// An HTTP/2 client connection.
pub struct Http2Conn {
    /// Opens streams; every clone keeps the connection open.
    send: SendRequest<Bytes>,
    /// Drives the connection (reads frames, writes queued ones, answers pings); ends
    /// when the connection fails or after a GOAWAY once every `send` clone is dropped.
    driver: JoinHandle<()>,
}

impl Http2Conn {
    /// Runs the HTTP/2 handshake over `io` (which negotiated `h2` by ALPN).
    pub async fn handshake<S>(io: S) -> Result<Self, Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake(io)
            .await?;
        // A connection error also fails every stream, which is where it is counted.
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { send, driver })
    }

    /// One `GET uri` on this connection (see [`get`]).
    pub async fn get(&mut self, uri: &Uri) -> Result<u64, Error> {
        get(&mut self.send, uri).await
    }

    /// A handle for one more concurrent stream loop.
    pub fn sender(&self) -> SendRequest<Bytes> {
        self.send.clone()
    }

    /// Closes with a GOAWAY once the streams of all other handles are done.
    pub async fn close(self) {
        drop(self.send);
        let mut driver = self.driver;
        if tokio::time::timeout(CLOSE_TIMEOUT, &mut driver)
            .await
            .is_err()
        {
            driver.abort();
        }
    }
}

/// One `GET uri` on a new stream, read to its end (status 200 required); returns the
/// body bytes.
pub async fn get(send: &mut SendRequest<Bytes>, uri: &Uri) -> Result<u64, Error> {
    poll_fn(|cx| send.poll_ready(cx)).await?;
    let mut request = Request::new(());
    *request.uri_mut() = uri.clone();
    let (response, _) = send.send_request(request, true)?;
    let response = response.await?;
    if response.status() != StatusCode::OK {
        return Err(Error::Status(response.status().as_u16()));
    }
    let mut body = response.into_body();
    let mut bytes = 0;
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        body.flow_control().release_capacity(chunk.len())?;
    }
    Ok(bytes)
}
