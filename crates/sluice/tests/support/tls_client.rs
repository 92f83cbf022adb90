//! A TLS client of our own through the proxy's CONNECT, for what curl cannot do: many
//! concurrent HTTP/2 streams on one connection, a stalled stream, WebSocket.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// CONNECT `target` through `proxy`, then TLS with `sni` trusting only `ca_pem`.
pub async fn connect_tls(
    proxy: SocketAddr,
    target: &str,
    sni: &str,
    ca_pem: &Path,
    alpn: &[&str],
) -> TlsStream<TcpStream> {
    let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    connect_tls_after(proxy, head.as_bytes(), sni, ca_pem, alpn).await
}

/// The same with the CONNECT head given as raw bytes (for heads curl does not send).
pub async fn connect_tls_after(
    proxy: SocketAddr,
    connect_head: &[u8],
    sni: &str,
    ca_pem: &Path,
    alpn: &[&str],
) -> TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    tcp.write_all(connect_head).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .unwrap()
}

/// An HTTP/2 connection to `bump.test` on `127.0.0.1:port` through the bumping `proxy`,
/// trusting the proxy's CA; the connection is driven by a spawned task.
pub async fn h2_client(
    proxy: SocketAddr,
    port: u16,
    ca_pem: &Path,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let target = format!("127.0.0.1:{port}");
    let tls = connect_tls(proxy, &target, "bump.test", ca_pem, &["h2"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    sender
}
