//! Bump (SPEC §2): be the client to the server and the server to the client. The phases
//! run in order, each with its own timeout: upstream TLS and verification, the policy on
//! certificate errors, minting the replacement, the client handshake, then HTTP/1.1
//! served to the client, each request relayed upstream or answered with the block page.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ProtocolVersion, ServerConfig};
use sluice_policy::CertErrorPolicy;
use sluice_tls::mint::Minter;
use sluice_tls::verify::{cert_sha256, CertErrorKind};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::access_log::Record;
use crate::block_page::{BlockPage, BlockReason};
use crate::context::Proxy;
use crate::counting::{ByteCounts, Counted};
use crate::forward::{self, ProxyBody};
use crate::rewind::Rewind;

/// What the CONNECT flow learned, handed to bump.
pub struct BumpTarget<'a> {
    /// The CONNECT host.
    pub host: &'a str,
    /// The CONNECT host when it is an IP literal.
    pub connect_ip: Option<IpAddr>,
    pub port: u16,
    /// The server address the TCP connection reached.
    pub dest_ip: IpAddr,
    pub sni: Option<&'a str>,
    pub client_alpn: &'a [Vec<u8>],
    /// The deciding rule's `cert_errors` override.
    pub cert_errors: Option<CertErrorPolicy>,
}

/// How the requests of a bumped connection are answered.
enum Plan {
    /// Relay to the server; `untrusted` when the replacement must not be trusted.
    Forward {
        upstream: Box<TlsStream<TcpStream>>,
        untrusted: bool,
    },
    /// Every request gets the block page; nothing reaches the server.
    Block { reason: BlockReason, detail: String },
}

/// The verdict of the certificate-error policy on one verification outcome.
enum Acceptance {
    Trusted,
    Untrusted,
    Blocked(CertErrorKind),
}

pub async fn bump(
    proxy: &Arc<Proxy>,
    record: &mut Record,
    client: TcpStream,
    held: Vec<u8>,
    upstream: TcpStream,
    target: &BumpTarget<'_>,
) {
    let Some(server_name) = upstream_server_name(target) else {
        record.error = Some("bad_server_name".into());
        return;
    };
    let policy = target
        .cert_errors
        .unwrap_or(proxy.config.settings.tls.on_cert_error);
    let server = target.sni.unwrap_or(target.host).to_string();

    let (plan, leaf) = match upstream_handshake(proxy, upstream, server_name.clone()).await {
        Err(e) => {
            record.error = Some("upstream_tls_failed".into());
            let detail = format!("The TLS handshake with {server} failed: {e}");
            let reason = BlockReason::UpstreamTlsFailed;
            (Plan::Block { reason, detail }, None)
        }
        Ok(verified) => {
            record.upstream_cert = Some(outcome_str(verified.outcome));
            let plan = match accept(proxy, verified.outcome, verified.leaf.as_deref(), policy) {
                Acceptance::Trusted => Plan::Forward {
                    upstream: Box::new(verified.stream),
                    untrusted: false,
                },
                Acceptance::Untrusted => Plan::Forward {
                    upstream: Box::new(verified.stream),
                    untrusted: true,
                },
                Acceptance::Blocked(kind) => {
                    record.error = Some("cert_error".into());
                    let detail = format!(
                        "The certificate of {server} failed verification: {}.",
                        kind.as_str()
                    );
                    Plan::Block {
                        reason: BlockReason::CertError,
                        detail,
                    }
                }
            };
            (plan, verified.leaf)
        }
    };

    let minter: &Minter = match &plan {
        Plan::Forward {
            untrusted: true, ..
        } => &proxy.untrusted_minter,
        _ => &proxy.minter,
    };
    // Without SNI the client still expects the CONNECT name in the certificate.
    let name = target
        .sni
        .or(target.connect_ip.is_none().then_some(target.host));
    let certified = match minter
        .certified_key(leaf.as_deref(), name, target.connect_ip)
        .await
    {
        Ok(certified) => certified,
        Err(e) => {
            tracing::error!(error = %e, server, "minting a replacement certificate failed");
            record.error = Some("mint_failed".into());
            return;
        }
    };

    let counts = Arc::new(ByteCounts::default());
    let held_len = held.len() as u64;
    let client_io = Rewind::new(held, Counted::new(client, counts.clone()));
    let config = client_facing_config(proxy, certified, target.client_alpn);
    let timeout = proxy.config.settings.limits.client_hello_timeout;
    let handshake =
        tokio::time::timeout(timeout, TlsAcceptor::from(config).accept(client_io)).await;
    let client_tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            record.error = Some(client_handshake_error(&e).into());
            record_counts(record, &counts, held_len);
            return;
        }
        Err(_) => {
            record.error = Some("client_handshake_timeout".into());
            record_counts(record, &counts, held_len);
            return;
        }
    };
    let session = client_tls.get_ref().1;
    record.tls_version = session.protocol_version().map(version_str);
    record.alpn = session
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());

    let mode = match plan {
        Plan::Block { reason, detail } => Mode::Block { reason, detail },
        Plan::Forward { upstream, .. } => match UpstreamLink::open(*upstream).await {
            Ok(link) => Mode::Forward(tokio::sync::Mutex::new(UpstreamLink {
                sender: Some(link),
                redial: Redial {
                    proxy: proxy.clone(),
                    addr: SocketAddr::new(target.dest_ip, target.port),
                    server_name,
                    policy,
                },
            })),
            Err(e) => {
                record.error = Some(format!("upstream_http_failed: {e}"));
                return;
            }
        },
    };
    let default_authority = match target.port {
        443 => server.clone(),
        port => format!("{server}:{port}"),
    };
    let bumped = Arc::new(BumpedHttp {
        proxy: proxy.clone(),
        template: record.clone(),
        default_authority,
        mode,
    });
    let limits = &proxy.config.settings.limits;
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .serve_connection(
            TokioIo::new(client_tls),
            service_fn(move |request| {
                let bumped = bumped.clone();
                async move { Ok::<_, Infallible>(bumped.handle(request).await) }
            }),
        )
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, server, "bumped connection ended with an error");
    }
    record_counts(record, &counts, held_len);
}

fn record_counts(record: &mut Record, counts: &ByteCounts, held: u64) {
    record.bytes_up = Some(held + counts.read.load(Ordering::Relaxed));
    record.bytes_down = Some(counts.written.load(Ordering::Relaxed));
}

/// The name sluice presents and verifies upstream: the client's SNI; without one, the
/// CONNECT IP (no SNI is sent) or the CONNECT host name.
fn upstream_server_name(target: &BumpTarget<'_>) -> Option<ServerName<'static>> {
    match (target.sni, target.connect_ip) {
        (Some(sni), _) => ServerName::try_from(sni.to_string()).ok(),
        (None, Some(ip)) => Some(ServerName::IpAddress(ip.into())),
        (None, None) => ServerName::try_from(target.host.to_string()).ok(),
    }
}

struct Verified {
    stream: TlsStream<TcpStream>,
    outcome: Result<(), CertErrorKind>,
    leaf: Option<Vec<u8>>,
}

/// TLS to the server, then the classification of its chain (the handshake accepts any
/// chain; nothing is sent before the policy has seen the outcome).
async fn upstream_handshake(
    proxy: &Proxy,
    tcp: TcpStream,
    server_name: ServerName<'static>,
) -> Result<Verified, String> {
    let connector = TlsConnector::from(proxy.upstream_tls.clone());
    let timeout = proxy.config.settings.limits.connect_timeout;
    let stream =
        match tokio::time::timeout(timeout, connector.connect(server_name.clone(), tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {} s", timeout.as_secs())),
        };
    let certs = stream.get_ref().1.peer_certificates().unwrap_or_default();
    let outcome = proxy
        .verifier
        .classify(certs, &server_name, UnixTime::now());
    let leaf = certs.first().map(|c| c.as_ref().to_vec());
    Ok(Verified {
        stream,
        outcome,
        leaf,
    })
}

fn accept(
    proxy: &Proxy,
    outcome: Result<(), CertErrorKind>,
    leaf: Option<&[u8]>,
    policy: CertErrorPolicy,
) -> Acceptance {
    let Err(kind) = outcome else {
        return Acceptance::Trusted;
    };
    let pinned = leaf.is_some_and(|der| proxy.trusted_server_certs.contains(&cert_sha256(der)));
    match policy {
        _ if pinned => Acceptance::Trusted,
        CertErrorPolicy::Allow => Acceptance::Trusted,
        CertErrorPolicy::Untrusted => Acceptance::Untrusted,
        CertErrorPolicy::Block => Acceptance::Blocked(kind),
    }
}

fn outcome_str(outcome: Result<(), CertErrorKind>) -> &'static str {
    match outcome {
        Ok(()) => "ok",
        Err(kind) => kind.as_str(),
    }
}

fn version_str(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "other",
    }
}

/// Serves the one minted certificate of this connection.
#[derive(Debug)]
struct FixedCert(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// TLS 1.2/1.3 with rustls' defaults: AEAD, forward-secret suites only (SPEC §2.7).
/// HTTP/2 inside bump is not supported yet, so only `http/1.1` is ever selected.
fn client_facing_config(
    proxy: &Proxy,
    certified: Arc<CertifiedKey>,
    client_alpn: &[Vec<u8>],
) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(proxy.crypto.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the aws-lc-rs provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(certified)));
    if client_alpn.iter().any(|p| p == b"http/1.1") {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Arc::new(config)
}

/// The access-log `error` for a failed client handshake.
fn client_handshake_error(e: &io::Error) -> &'static str {
    let alert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match alert {
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown,
        )) => "client_rejected_certificate",
        Some(_) => "client_handshake_failed",
        // A reset or a close in the middle of the handshake: typical of pinning apps.
        None => match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe => "client_rejected_certificate",
            _ => "client_handshake_failed",
        },
    }
}

enum Mode {
    Forward(tokio::sync::Mutex<UpstreamLink>),
    Block { reason: BlockReason, detail: String },
}

/// The HTTP side of one bumped connection.
struct BumpedHttp {
    proxy: Arc<Proxy>,
    /// The connect record so far: per-request records copy its connection fields.
    template: Record,
    /// `host[:port]` for URLs of requests without a `Host` header.
    default_authority: String,
    mode: Mode,
}

impl BumpedHttp {
    async fn handle(&self, mut request: Request<Incoming>) -> Response<ProxyBody> {
        let authority = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or(&self.default_authority)
            .to_string();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let url = format!("https://{authority}{path}");
        let record = forward::http_record(&self.template, &request, url.clone());
        let log = &self.proxy.log;
        match &self.mode {
            Mode::Block { reason, detail } => {
                let rule = self.template.rule.as_deref().unwrap_or("default");
                let request_id = record.request_id.clone().unwrap_or_default();
                let page = BlockPage {
                    reason: *reason,
                    detail,
                    url: &url,
                    rule,
                    request_id: &request_id,
                };
                forward::block(log, record, &page, StatusCode::BAD_GATEWAY)
            }
            Mode::Forward(link) => {
                // Upstream gets origin form, whatever form the client used inside TLS.
                if let Ok(origin_form) = path.parse::<Uri>() {
                    *request.uri_mut() = origin_form;
                }
                forward::prepare_request(&mut request);
                let mut link = link.lock().await;
                match link.send(request).await {
                    Ok(response) => forward::relay_response(log, record, response),
                    Err(why) => forward::refuse(log, record, StatusCode::BAD_GATEWAY, &why),
                }
            }
        }
    }
}

/// The HTTP/1.1 connection to the server, re-opened (and re-verified) when the server
/// closes a keep-alive connection between two requests.
struct UpstreamLink {
    sender: Option<SendRequest<Incoming>>,
    redial: Redial,
}

struct Redial {
    proxy: Arc<Proxy>,
    addr: SocketAddr,
    server_name: ServerName<'static>,
    policy: CertErrorPolicy,
}

impl UpstreamLink {
    async fn open(stream: TlsStream<TcpStream>) -> Result<SendRequest<Incoming>, hyper::Error> {
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn send(&mut self, request: Request<Incoming>) -> Result<Response<Incoming>, String> {
        let usable = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.sender = Some(self.redial.connect().await?);
        }
        match self.sender.as_mut() {
            Some(sender) => sender
                .send_request(request)
                .await
                .map_err(|e| format!("upstream request failed: {e}")),
            None => Err("no upstream connection".into()),
        }
    }
}

impl Redial {
    async fn connect(&self) -> Result<SendRequest<Incoming>, String> {
        let timeout = self.proxy.config.settings.limits.connect_timeout;
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("reconnecting to {} failed: {e}", self.addr)),
            Err(_) => return Err(format!("reconnecting to {} timed out", self.addr)),
        };
        let verified = upstream_handshake(&self.proxy, tcp, self.server_name.clone()).await?;
        match accept(
            &self.proxy,
            verified.outcome,
            verified.leaf.as_deref(),
            self.policy,
        ) {
            Acceptance::Blocked(kind) => Err(format!(
                "the server's certificate failed verification on reconnect: {}",
                kind.as_str()
            )),
            Acceptance::Trusted | Acceptance::Untrusted => UpstreamLink::open(verified.stream)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}
