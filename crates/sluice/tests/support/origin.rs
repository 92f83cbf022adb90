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

/// The `Alt-Svc` fields `/alt-svc` answers with: HTTP/3 only; HTTP/3 beside an HTTP/2
/// alternative; and an unterminated quoted string (a lying server).
pub const ALT_SVC: [&str; 3] = [
    "h3=\":443\"; ma=86400, h3-29=\":443\"; ma=86400",
    "h3-Q050=\":443\", h2=\"alt.bump.test:443\"; ma=60, h%33=\":8443\"",
    "h3=\":443",
];

#[derive(Default)]
pub struct OriginOptions {
    /// Serve TLS with this leaf; plain HTTP when `None`.
    pub tls: Option<Leaf>,
    /// ALPN protocols offered (default: http/1.1 only); `h2` makes the origin speak
    /// HTTP/2 when selected.
    pub alpn: Vec<&'static str>,
    /// Require a client certificate signed by this CA (DER).
    pub client_ca: Option<Vec<u8>>,
    /// Extra files served at `/files/NAME` with their content type.
    pub files: Vec<(&'static str, &'static str, Vec<u8>)>,
    /// Close every connection this long after accepting it, busy or idle.
    pub max_connection_age: Option<std::time::Duration>,
}

/// What an origin saw.
#[derive(Default)]
pub struct Seen {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// TLS handshakes completed.
    pub handshakes: AtomicUsize,
    /// TLS handshakes that resumed an earlier session.
    pub resumed: AtomicUsize,
    /// Requests: method, path, headers as lowercase `name: value` lines.
    pub requests: Mutex<Vec<(String, String, Vec<String>)>>,
    /// The HTTP version of each request ("HTTP/1.1", "HTTP/2.0").
    pub versions: Mutex<Vec<String>>,
    /// Files served at `/files/NAME`: name, content type, bytes.
    files: Mutex<Vec<(&'static str, &'static str, Vec<u8>)>>,
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
        Self::start_on("127.0.0.1:0", options)
    }

    /// [`start`](Self::start) on a given address (a URL naming it was made first).
    pub fn start_on(addr: &str, options: OriginOptions) -> Origin {
        let std_listener = std::net::TcpListener::bind(addr).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let alpn = if options.alpn.is_empty() {
            vec!["http/1.1"]
        } else {
            options.alpn.clone()
        };
        let client_ca = options.client_ca.clone();
        let max_age = options.max_connection_age;
        let acceptor = options.tls.map(|leaf| tls_acceptor(leaf, &alpn, client_ca));
        *seen.files.lock().unwrap() = options.files;
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
                    () = accept_loop(listener, acceptor, task_seen, max_age) => {}
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

pub fn tls_acceptor(leaf: Leaf, alpn: &[&str], client_ca: Option<Vec<u8>>) -> TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> =
        leaf.chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(ca)).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    seen: Arc<Seen>,
    max_age: Option<std::time::Duration>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        seen.connections.fetch_add(1, Ordering::SeqCst);
        let seen = seen.clone();
        let acceptor = acceptor.clone();
        let age_limit = max_age.unwrap_or(std::time::Duration::from_secs(3600));
        let connection = async move {
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        seen.handshakes.fetch_add(1, Ordering::SeqCst);
                        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
                        {
                            seen.resumed.fetch_add(1, Ordering::SeqCst);
                        }
                        serve(TokioIo::new(tls), seen).await;
                    }
                }
                None => serve(TokioIo::new(tcp), seen).await,
            }
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(age_limit, connection).await;
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
    // HTTP/1.1 or HTTP/2, whichever the client speaks (after ALPN h2, the preface);
    // HTTP/2 with WebSocket over extended CONNECT (RFC 8441).
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http2().enable_connect_protocol();
    let _ = builder.serve_connection_with_upgrades(io, service).await;
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
    seen.versions
        .lock()
        .unwrap()
        .push(format!("{:?}", request.version()));
    match path.as_str() {
        "/hello" => text(HELLO),
        "/close" => {
            let mut response = text(HELLO);
            response
                .headers_mut()
                .insert("connection", "close".parse().unwrap());
            response
        }
        "/websocket" => websocket_echo(request),
        "/page" => {
            let mut response = text(format!(
                "<html><body><p id=\"proto\">{:?}</p><p>{HELLO}</p></body></html>",
                request.version()
            ));
            response
                .headers_mut()
                .insert("content-type", "text/html".parse().unwrap());
            response
        }
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
        "/alt-svc" => {
            let mut response = text(HELLO);
            for value in ALT_SVC {
                response
                    .headers_mut()
                    .append("alt-svc", hyper::header::HeaderValue::from_static(value));
            }
            response
        }
        "/slow" => slow_body(),
        p if p.starts_with("/files/") => {
            let files = seen.files.lock().unwrap();
            match files
                .iter()
                .find(|(name, _, _)| p["/files/".len()..] == **name)
            {
                Some((_, content_type, bytes)) => {
                    let mut response = text(bytes.clone());
                    response
                        .headers_mut()
                        .insert("content-type", content_type.parse().unwrap());
                    response
                }
                None => {
                    let mut response = text("no such file");
                    *response.status_mut() = hyper::StatusCode::NOT_FOUND;
                    response
                }
            }
        }
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

/// Accept a WebSocket handshake (HTTP/1.1 Upgrade, or HTTP/2 extended CONNECT) and
/// echo every message back.
fn websocket_echo(mut request: Request<Incoming>) -> Response<OriginBody> {
    let over_http2 = request.method() == hyper::Method::CONNECT;
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(echo_messages(upgrade));
    if over_http2 {
        return text(Bytes::new());
    }
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        let mut response = text("not a websocket handshake");
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return response;
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = text(Bytes::new());
    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("connection", "upgrade".parse().unwrap());
    headers.insert("upgrade", "websocket".parse().unwrap());
    headers.insert("sec-websocket-accept", accept.parse().unwrap());
    response
}

async fn echo_messages(upgrade: hyper::upgrade::OnUpgrade) {
    use futures_util::{SinkExt, StreamExt};
    let Ok(upgraded) = upgrade.await else { return };
    let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    while let Some(Ok(message)) = socket.next().await {
        if message.is_close() || socket.send(message).await.is_err() {
            break;
        }
    }
}

/// Ten chunks of 100 bytes, 200 ms apart: a download that takes two seconds.
fn slow_body() -> Response<OriginBody> {
    let chunks = futures_util::stream::unfold(0u32, |sent| async move {
        if sent == 10 {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Some((
            Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; 100]))),
            sent + 1,
        ))
    });
    Response::new(http_body_util::StreamBody::new(chunks).boxed())
}
