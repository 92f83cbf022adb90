//! Opening one connection the way a browser behind a proxy does: TCP, CONNECT and its
//! 200 (through a proxy), a full TLS handshake that must select the requested ALPN, then
//! HTTP/1.1 or HTTP/2 on it; and a [`Session`] that sends `GET`s on it and closes it.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::buffer::ReadBuffer;
use super::cli::HttpVersion;
use super::connect;
use super::error::Error;
use super::http1::{self, Response};
use super::http2::Http2Conn;
use super::plan::{Plan, Target};

/// A TLS connection, over a proxy tunnel or directly.
pub type TlsConn = TlsStream<TcpStream>;

/// TCP (to the proxy or the origin), CONNECT when through a proxy, TLS with the ALPN
/// check (the requested protocol, or none at all for HTTP/1.1). `buf` is cleared first
/// and holds nothing afterwards.
pub async fn open_tls(
    plan: &Plan,
    target: &Target,
    buf: &mut ReadBuffer,
) -> Result<TlsConn, Error> {
    buf.clear();
    let connect_error = |source| Error::Connect {
        addr: target.dial,
        source,
    };
    let mut tcp = TcpStream::connect(target.dial)
        .await
        .map_err(connect_error)?;
    // Each request is one small write answered before the next: Nagle would only delay it.
    tcp.set_nodelay(true).map_err(connect_error)?;
    if plan.via_proxy {
        connect::establish(&mut tcp, &target.connect_request, buf).await?;
    }
    let tls = plan
        .connector
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(Error::Tls)?;
    let wanted = plan.http.alpn();
    match (plan.http, tls.get_ref().1.alpn_protocol()) {
        (_, Some(selected)) if selected == wanted => Ok(tls),
        // No ALPN means the scheme's default, HTTP/1.1 (RFC 7301), as for browsers and
        // curl; Squid 5.7 negotiates no ALPN on the client side of a bumped connection.
        (HttpVersion::Http1, None) => Ok(tls),
        (_, selected) => Err(Error::Alpn {
            wanted: String::from_utf8_lossy(wanted).into_owned(),
            selected: selected.map_or_else(
                || "none".to_owned(),
                |p| String::from_utf8_lossy(p).into_owned(),
            ),
        }),
    }
}

/// [`open_tls`] to the next target, then the HTTP/2 handshake.
pub async fn open_http2(
    plan: &'static Plan,
    buf: &mut ReadBuffer,
) -> Result<(&'static Target, Http2Conn), Error> {
    let target = plan.next_target();
    let tls = open_tls(plan, target, buf).await?;
    Ok((target, Http2Conn::handshake(tls).await?))
}

/// An open connection to one target, speaking the run's protocol.
pub struct Session {
    target: &'static Target,
    protocol: Protocol,
}

enum Protocol {
    /// Boxed: a rustls connection is large, and sessions are moved around and held by
    /// the thousand in `hold`.
    Http1(Box<TlsConn>),
    Http2(Http2Conn),
}

impl Session {
    /// Opens a connection to the next target.
    pub async fn open(plan: &'static Plan, buf: &mut ReadBuffer) -> Result<Self, Error> {
        let target = plan.next_target();
        let tls = open_tls(plan, target, buf).await?;
        let protocol = match plan.http {
            HttpVersion::Http1 => Protocol::Http1(Box::new(tls)),
            HttpVersion::Http2 => Protocol::Http2(Http2Conn::handshake(tls).await?),
        };
        Ok(Self { target, protocol })
    }

    /// One `GET` of the run's path, read to its end; `buf` is the worker's.
    pub async fn get(&mut self, buf: &mut ReadBuffer) -> Result<Response, Error> {
        match &mut self.protocol {
            Protocol::Http1(tls) => http1::get(&mut **tls, &self.target.get_request, buf).await,
            Protocol::Http2(conn) => {
                let body_bytes = conn.get(&self.target.uri).await?;
                Ok(Response {
                    body_bytes,
                    keep_alive: true,
                })
            }
        }
    }

    /// Closes politely: TLS close_notify and FIN, or HTTP/2 GOAWAY. Failures do not
    /// matter any more.
    pub async fn close(self) {
        match self.protocol {
            Protocol::Http1(mut tls) => {
                let _ = tls.shutdown().await;
            }
            Protocol::Http2(conn) => conn.close().await,
        }
    }
}
