//! Pooled upstream connections for plain HTTP, opened with sluice's own dialer: to
//! servers, or to one parent proxy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_policy::UpstreamProxy;
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::dial::{uri_host, DialError, Dialer};

/// Pooled upstream connections for plain HTTP: to servers, or to one parent proxy.
pub struct PlainClient {
    client: Client<UpstreamConnector, ProxyBody>,
}

impl PlainClient {
    pub fn new(dialer: Arc<Dialer>) -> Self {
        Self::with_connector(UpstreamConnector {
            dialer,
            parent: None,
        })
    }

    /// Connections to `parent` (SPEC §11), which get requests in absolute form: pooled
    /// per server as hyper keys them, each dialled to the parent's first reachable URL.
    pub fn via_parent(dialer: Arc<Dialer>, parent: UpstreamProxy) -> Self {
        Self::with_connector(UpstreamConnector {
            dialer,
            parent: Some(Arc::new(parent)),
        })
    }

    fn with_connector(connector: UpstreamConnector) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        PlainClient { client }
    }

    pub async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(request).await
    }
}

/// Opens plain-HTTP upstream connections with sluice's own resolution, timeout and loop
/// check, so their failures map to the same statuses as CONNECT's.
#[derive(Clone)]
struct UpstreamConnector {
    dialer: Arc<Dialer>,
    /// Dial this parent proxy instead of the request's server.
    parent: Option<Arc<UpstreamProxy>>,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<UpstreamConnection, DialError>> + Send + 'static>>;

impl tower_service::Service<Uri> for UpstreamConnector {
    type Response = UpstreamConnection;
    type Error = DialError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> ConnectFuture {
        let this = self.clone();
        Box::pin(async move {
            if let Some(parent) = &this.parent {
                let stream = this.dialer.dial_parent(parent).await?;
                return Ok(UpstreamConnection {
                    io: TokioIo::new(stream),
                    to_parent: true,
                });
            }
            let host = uri_host(&uri);
            let port = uri.port_u16().unwrap_or(80);
            let (stream, _) = this.dialer.dial(&host, port).await?;
            Ok(UpstreamConnection {
                io: TokioIo::new(stream),
                to_parent: false,
            })
        })
    }
}

/// A plain-HTTP upstream connection. One to a parent proxy says so, so that hyper keeps
/// the request target in absolute form (a proxy needs to know the server).
struct UpstreamConnection {
    io: TokioIo<TcpStream>,
    to_parent: bool,
}

impl Connection for UpstreamConnection {
    fn connected(&self) -> Connected {
        Connected::new().proxy(self.to_parent)
    }
}

impl hyper::rt::Read for UpstreamConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
