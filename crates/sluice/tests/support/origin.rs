//! Origin servers the tests start on 127.0.0.1: HTTP/1.1 over TLS (any test leaf) or
//! plain, keep-alive, with a few routes, recording what they saw.
//!
//! Routes: `/hello` (a fixed text), `/echo` (the request body back), `/headers` (the
//! request headers as `name: value` lines), `/chunked` (a body sent in chunks, no
//! Content-Length), `/big/N` (N bytes), `/status/N` (an empty answer with status N).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::certs::Leaf;

pub const HELLO: &str = "hello from the origin";

#[derive(Default)]
pub struct OriginOptions {
    /// Serve TLS with this leaf; plain HTTP when `None`.
    pub tls: Option<Leaf>,
}

/// What an origin saw.
#[derive(Default)]
pub struct Seen {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// TLS handshakes completed.
    pub handshakes: AtomicUsize,
    /// Requests: method, path, headers as lowercase `name: value` lines.
    pub requests: Mutex<Vec<(String, String, Vec<String>)>>,
}

pub struct Origin {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Origin {
    /// Start an origin on its own thread and runtime, so tests can drive blocking
    /// clients (curl, openssl) directly.
    pub fn start(options: OriginOptions) -> Origin {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let acceptor = options.tls.map(tls_acceptor);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task_seen = seen.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                tokio::select! {
                    () = accept_loop(listener, acceptor, task_seen) => {}
                    _ = stopped => {}
                }
            });
        });
        Origin {
            addr,
            seen,
            stop: Some(stop),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn requests(&self) -> Vec<(String, String, Vec<String>)> {
        self.seen.requests.lock().unwrap().clone()
    }
}

fn tls_acceptor(leaf: Leaf) -> TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> =
        leaf.chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, seen: Arc<Seen>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        seen.connections.fetch_add(1, Ordering::SeqCst);
        let seen = seen.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        seen.handshakes.fetch_add(1, Ordering::SeqCst);
                        serve(TokioIo::new(tls), seen).await;
                    }
                }
                None => serve(TokioIo::new(tcp), seen).await,
            }
        });
    }
}

async fn serve<I>(io: I, seen: Arc<Seen>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let seen = seen.clone();
        async move { Ok::<_, Infallible>(route(request, &seen).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

type OriginBody = BoxBody<Bytes, Infallible>;

fn text(body: impl Into<Bytes>) -> Response<OriginBody> {
    Response::new(Full::new(body.into()).boxed())
}

async fn route(request: Request<Incoming>, seen: &Seen) -> Response<OriginBody> {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let headers: Vec<String> = request
        .headers()
        .iter()
        .map(|(k, v)| format!("{}: {}", k.as_str(), v.to_str().unwrap_or("?")))
        .collect();
    seen.requests
        .lock()
        .unwrap()
        .push((method, path.clone(), headers.clone()));
    match path.as_str() {
        "/hello" => text(HELLO),
        "/echo" => {
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            text(body)
        }
        "/headers" => text(headers.join("\n")),
        "/chunked" => Response::new(
            Chunks(
                ["first chunk,", " second chunk,", " last chunk"]
                    .iter()
                    .map(|s| Bytes::from(*s))
                    .collect(),
            )
            .boxed(),
        ),
        p if p.starts_with("/big/") => {
            let n: usize = p["/big/".len()..].parse().unwrap_or(0);
            let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            text(body)
        }
        p if p.starts_with("/status/") => {
            let status: u16 = p["/status/".len()..].parse().unwrap_or(500);
            let mut response = text(Bytes::new());
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
            response
        }
        _ => {
            let mut response = text("not found");
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            response
        }
    }
}

/// A body of several frames with no known length: hyper sends it chunked.
struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// The bytes `/big/N` sends.
pub fn big_body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
