//! The CONNECT exchange with the proxy: the request, and the reader of its reply, which
//! must be `200` and must end the bytes the proxy sends before the ClientHello.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::buffer::ReadBuffer;
use super::error::Error;

/// Most header lines accepted in the reply.
const MAX_HEADERS: usize = 32;

/// `CONNECT authority HTTP/1.1` with the same authority in `Host`.
pub fn request(authority: &str) -> Box<[u8]> {
    request_as(authority, None)
}

/// [`request`], with `Proxy-Authorization: Basic` for `user:password` when given.
pub fn request_as(authority: &str, credentials: Option<&str>) -> Box<[u8]> {
    let auth = credentials.map_or_else(String::new, |c| {
        format!("Proxy-Authorization: {}\r\n", basic(c))
    });
    format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}\r\n")
        .into_bytes()
        .into_boxed_slice()
}

/// The `Basic` value of a `Proxy-Authorization` header for `user:password`.
pub fn basic(credentials: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// What the start of the proxy's reply says.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The head is not complete yet.
    Incomplete,
    /// `200`: the head is `head_len` bytes long.
    Established {
        /// Length of the reply head including its empty line.
        head_len: usize,
    },
    /// Any other status.
    Refused {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
}

/// Reads the reply head at the start of `bytes`.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut reply = httparse::Response::new(&mut headers);
    match reply.parse(bytes)? {
        httparse::Status::Partial => Ok(Reply::Incomplete),
        httparse::Status::Complete(head_len) => match reply.code {
            Some(200) => Ok(Reply::Established { head_len }),
            status => Ok(Reply::Refused {
                status: status.unwrap_or(0),
                reason: reply.reason.unwrap_or("").to_owned(),
            }),
        },
    }
}

/// Sends the prepared CONNECT `request` and reads the reply into `buf`. TLS is the
/// client's to start: a proxy that sends anything after its reply head, before the
/// ClientHello, is not tunneling, and is reported as such.
pub async fn establish<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    request: &[u8],
    buf: &mut ReadBuffer,
) -> Result<(), Error> {
    io.write_all(request)
        .await
        .map_err(|e| Error::Tunnel(format!("sending the request: {e}")))?;
    loop {
        match parse_reply(buf.unread()) {
            Ok(Reply::Established { head_len }) => {
                buf.consume(head_len);
                let early = buf.unread().len();
                buf.clear();
                if early > 0 {
                    return Err(Error::Tunnel(format!(
                        "the proxy sent {early} bytes after its reply, before the ClientHello"
                    )));
                }
                return Ok(());
            }
            Ok(Reply::Refused { status, reason }) => {
                return Err(Error::Tunnel(format!(
                    "the proxy answered {status} {reason}"
                )))
            }
            Err(e) => return Err(Error::Tunnel(format!("malformed reply: {e}"))),
            Ok(Reply::Incomplete) if buf.is_full() => {
                return Err(Error::Tunnel("reply head too large".into()))
            }
            Ok(Reply::Incomplete) => match buf.fill_from(io).await {
                Ok(0) => return Err(Error::Tunnel("the proxy closed before replying".into())),
                Ok(_) => {}
                Err(e) => return Err(Error::Tunnel(format!("reading the reply: {e}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{duplex, AsyncReadExt};

    const OK: &[u8] = b"HTTP/1.1 200 Connection established\r\nVia: sluice\r\n\r\n";

    #[test]
    fn the_request_names_the_authority_twice() {
        assert_eq!(
            &*request("bench.test:8443"),
            b"CONNECT bench.test:8443 HTTP/1.1\r\nHost: bench.test:8443\r\n\r\n"
        );
    }

    #[test]
    fn credentials_go_in_proxy_authorization() {
        assert_eq!(
            &*request_as("a:1", Some("soak:pw")),
            b"CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\nProxy-Authorization: Basic c29hazpwdw==\r\n\r\n"
        );
    }

    #[test]
    fn a_200_reply_ends_at_its_empty_line() {
        let mut bytes = OK.to_vec();
        bytes.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse_reply(&bytes),
            Ok(Reply::Established { head_len: OK.len() })
        );
        assert_eq!(
            parse_reply(b"HTTP/1.0 200 OK\n\n"),
            Ok(Reply::Established { head_len: 17 })
        );
    }

    #[test]
    fn every_prefix_of_the_head_is_incomplete() {
        for end in 0..OK.len() {
            assert_eq!(parse_reply(&OK[..end]), Ok(Reply::Incomplete), "{end}");
        }
    }

    #[test]
    fn other_statuses_are_refusals() {
        assert_eq!(
            parse_reply(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Ok(Reply::Refused {
                status: 407,
                reason: "Proxy Authentication Required".into()
            })
        );
        assert!(matches!(
            parse_reply(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"),
            Ok(Reply::Refused { status: 502, .. })
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(parse_reply(b"\x16\x03\x01\x00\x05hello").is_err());
        assert!(parse_reply(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
    }

    /// A reply that arrives in pieces; then one followed by bytes in the same segment.
    #[tokio::test]
    async fn establish_reads_a_split_reply_and_refuses_bytes_after_it() {
        async fn establish_with(trailing: &'static [u8]) -> Result<(), Error> {
            let (mut client, mut proxy) = duplex(1024);
            let server = tokio::spawn(async move {
                let expected = super::request("bench.test:8443");
                let mut request = vec![0; expected.len()];
                proxy.read_exact(&mut request).await.unwrap();
                assert_eq!(&request[..], &*expected);
                proxy.write_all(&OK[..10]).await.unwrap();
                tokio::task::yield_now().await;
                let mut rest = OK[10..].to_vec();
                rest.extend_from_slice(trailing);
                proxy.write_all(&rest).await.unwrap();
                proxy
            });
            let mut buf = ReadBuffer::new();
            let established = establish(&mut client, &request("bench.test:8443"), &mut buf).await;
            assert!(buf.unread().is_empty());
            drop(server.await.unwrap());
            established
        }
        establish_with(b"").await.unwrap();
        let err = establish_with(b"TLS").await.unwrap_err();
        assert!(
            err.to_string().contains("sent 3 bytes after its reply"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn establish_reports_a_refusal_and_an_early_close() {
        let (mut client, mut proxy) = duplex(1024);
        proxy
            .write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n")
            .await
            .unwrap();
        let mut buf = ReadBuffer::new();
        let err = establish(&mut client, b"CONNECT a:1 HTTP/1.1\r\n\r\n", &mut buf)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "CONNECT: the proxy answered 403 Forbidden");

        let (mut client, proxy) = duplex(1024);
        drop(proxy);
        buf.clear();
        let err = establish(&mut client, b"", &mut buf).await.unwrap_err();
        assert!(err.to_string().contains("closed before replying"), "{err}");
    }
}
