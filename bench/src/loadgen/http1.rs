//! A minimal HTTP/1.1 client: one prepared `GET`, the response head parsed with httparse,
//! and the body read to its end (Content-Length, chunked, or until close), counted and
//! discarded in the worker's buffer.
//!
//! The framing is decided by [`parse_head`] and followed by [`BodyDecoder`], both pure, so
//! they are tested on bytes split at every position.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::buffer::ReadBuffer;
use super::error::Error;

/// Most header lines accepted in a response.
const MAX_HEADERS: usize = 64;
/// Most hex digits in a chunk size (a `u64`).
const MAX_CHUNK_SIZE_DIGITS: u32 = 16;

/// `GET path HTTP/1.1` with `Host: authority`, nothing else.
pub fn request(path: &str, authority: &str) -> Box<[u8]> {
    format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n")
        .into_bytes()
        .into_boxed_slice()
}

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the server closes.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Length of the head including its empty line.
    pub len: usize,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this response.
    pub keep_alive: bool,
}

/// A response the client cannot follow.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// The head does not parse.
    #[error("bad response head: {0}")]
    Head(httparse::Error),
    /// An unparsable or conflicting Content-Length.
    #[error("bad Content-Length")]
    ContentLength,
    /// A chunk-size line that is not hexadecimal or too long.
    #[error("bad chunk size")]
    ChunkSize,
    /// Chunk data not followed by a line end.
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    /// The connection ended inside the body.
    #[error("connection closed inside the body")]
    Truncated,
}

/// Parses the response head at the start of `bytes`; `None` until it is complete.
pub fn parse_head(bytes: &[u8]) -> Result<Option<Head>, Malformed> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(bytes).map_err(Malformed::Head)? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) => len,
    };
    let mut content_length = None;
    let mut transfer_encoding = None;
    let (mut close, mut keep_alive_token) = (false, false);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(Malformed::ContentLength)?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(Malformed::ContentLength);
            }
            content_length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides whether the body is chunked.
            let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(&[]);
            transfer_encoding = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if header.name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',') {
                close |= token.trim_ascii().eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.trim_ascii().eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3).
    let framing = match (transfer_encoding, content_length) {
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) | (None, None) => Framing::UntilClose,
        (None, Some(length)) => Framing::Length(length),
    };
    let persistent = match response.version {
        Some(1) => !close,
        _ => keep_alive_token && !close,
    };
    Ok(Some(Head {
        status: response.code.unwrap_or(0),
        len,
        framing,
        keep_alive: persistent && framing != Framing::UntilClose,
    }))
}

/// Where the body decoder stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Length { remaining: u64 },
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Where a chunked body stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size.
    Size {
        size: u64,
        digits: u32,
    },
    /// Skipping a chunk extension (or the CR) up to the LF.
    Extension {
        size: u64,
    },
    Data {
        remaining: u64,
    },
    /// After the data: CR (optional) then LF.
    DataEnd {
        cr: bool,
    },
    /// Trailer lines up to the empty one; `line_len` counts the current line's bytes.
    Trailer {
        line_len: usize,
    },
}

impl Chunk {
    /// The state after one framing byte.
    fn step(self, byte: u8) -> Result<State, Malformed> {
        let next = match (self, byte) {
            (Self::Size { size, digits }, _) if byte.is_ascii_hexdigit() => {
                if digits == MAX_CHUNK_SIZE_DIGITS {
                    return Err(Malformed::ChunkSize);
                }
                let value = u64::from(char::from(byte).to_digit(16).unwrap_or(0));
                Self::Size {
                    size: size << 4 | value,
                    digits: digits + 1,
                }
            }
            (Self::Size { digits: 0, .. }, _) => return Err(Malformed::ChunkSize),
            (Self::Size { size, .. } | Self::Extension { size }, b'\n') => {
                if size == 0 {
                    Self::Trailer { line_len: 0 }
                } else {
                    Self::Data { remaining: size }
                }
            }
            (Self::Size { size, .. }, b';' | b' ' | b'\t' | b'\r') => Self::Extension { size },
            (Self::Size { .. }, _) => return Err(Malformed::ChunkSize),
            (Self::Extension { .. }, _) => self,
            (Self::DataEnd { cr: false }, b'\r') => Self::DataEnd { cr: true },
            (Self::DataEnd { .. }, b'\n') => Self::Size { size: 0, digits: 0 },
            (Self::DataEnd { .. }, _) => return Err(Malformed::ChunkEnd),
            (Self::Trailer { line_len: 0 }, b'\n') => return Ok(State::Done),
            (Self::Trailer { .. }, b'\n') => Self::Trailer { line_len: 0 },
            (Self::Trailer { .. }, b'\r') => self,
            (Self::Trailer { line_len }, _) => Self::Trailer {
                line_len: line_len + 1,
            },
            // Data is consumed in bulk by `BodyDecoder::feed`, never byte by byte.
            (Self::Data { .. }, _) => self,
        };
        Ok(State::Chunked(next))
    }
}

/// Follows a body's framing over the bytes as they arrive, counting the body bytes.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    received: u64,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(remaining) => State::Length { remaining },
            Framing::Chunked => State::Chunked(Chunk::Size { size: 0, digits: 0 }),
            Framing::UntilClose => State::UntilClose,
        };
        Self { state, received: 0 }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Body bytes seen so far (chunk data only, not its framing).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Follows `input`; returns how many bytes belong to the body. All of `input` is
    /// consumed unless the body ends inside it.
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, Malformed> {
        let mut pos = 0;
        while pos < input.len() && !self.is_done() {
            let available = (input.len() - pos) as u64;
            let (used, next) = match self.state {
                State::Length { remaining } => {
                    let n = remaining.min(available);
                    let next = if n == remaining {
                        State::Done
                    } else {
                        State::Length {
                            remaining: remaining - n,
                        }
                    };
                    self.received += n;
                    (n, next)
                }
                State::Chunked(Chunk::Data { remaining }) => {
                    let n = remaining.min(available);
                    let next = if n == remaining {
                        Chunk::DataEnd { cr: false }
                    } else {
                        Chunk::Data {
                            remaining: remaining - n,
                        }
                    };
                    self.received += n;
                    (n, State::Chunked(next))
                }
                State::Chunked(chunk) => (1, chunk.step(input[pos])?),
                State::UntilClose => {
                    self.received += available;
                    (available, State::UntilClose)
                }
                State::Done => (0, State::Done),
            };
            // `used` never exceeds `available`, a slice length.
            pos += usize::try_from(used).unwrap_or(usize::MAX);
            self.state = next;
        }
        Ok(pos)
    }

    /// The stream ended: fine for a body delimited by the close, an error otherwise.
    pub fn end_of_stream(&mut self) -> Result<(), Malformed> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(Malformed::Truncated),
        }
    }
}

/// What one exchange delivered.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    /// Body bytes received.
    pub body_bytes: u64,
    /// Whether the connection can carry the next request.
    pub keep_alive: bool,
}

/// Sends the prepared `request` and reads the response to the end of its body, which
/// must have status 200. `buf` holds nothing of another connection.
pub async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    request: &[u8],
    buf: &mut ReadBuffer,
) -> Result<Response, Error> {
    let failed = |what: &str, e: std::io::Error| Error::Http1(format!("{what}: {e}"));
    io.write_all(request)
        .await
        .map_err(|e| failed("sending the request", e))?;
    io.flush()
        .await
        .map_err(|e| failed("sending the request", e))?;
    let head = loop {
        if let Some(head) = parse_head(buf.unread()).map_err(malformed)? {
            break head;
        }
        if buf.is_full() {
            return Err(Error::Http1("response head too large".into()));
        }
        match buf.fill_from(io).await {
            Ok(0) => return Err(Error::Http1("connection closed before the response".into())),
            Ok(_) => {}
            Err(e) => return Err(failed("reading the response head", e)),
        }
    };
    buf.consume(head.len);
    if head.status != 200 {
        return Err(Error::Status(head.status));
    }
    let mut body = BodyDecoder::new(head.framing);
    let mut keep_alive = head.keep_alive;
    loop {
        let used = body.feed(buf.unread()).map_err(malformed)?;
        buf.consume(used);
        if body.is_done() {
            break;
        }
        match buf.fill_from(io).await {
            Ok(0) => {
                body.end_of_stream().map_err(malformed)?;
                keep_alive = false;
                break;
            }
            Ok(_) => {}
            Err(e) => return Err(failed("reading the body", e)),
        }
    }
    Ok(Response {
        body_bytes: body.received(),
        keep_alive,
    })
}

fn malformed(e: Malformed) -> Error {
    Error::Http1(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{duplex, AsyncReadExt};

    fn head(text: &str) -> Head {
        parse_head(text.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn the_request_is_the_bare_minimum() {
        assert_eq!(
            &*request("/small", "bench.test:8443"),
            b"GET /small HTTP/1.1\r\nHost: bench.test:8443\r\n\r\n"
        );
    }

    #[test]
    fn heads_give_status_length_and_framing() {
        let text = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 100\r\n\r\nbody";
        assert_eq!(
            head(text),
            Head {
                status: 200,
                len: text.len() - 4,
                framing: Framing::Length(100),
                keep_alive: true
            }
        );
        let chunked = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
        );
        assert_eq!(chunked.framing, Framing::Chunked);
        assert!(chunked.keep_alive);
        let close =
            head("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        assert_eq!((close.status, close.keep_alive), (404, false));
        let until_close = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(until_close.framing, Framing::UntilClose);
        assert!(!until_close.keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n").keep_alive);
        assert!(
            head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n")
                .keep_alive
        );
    }

    #[test]
    fn incomplete_and_malformed_heads() {
        let text = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        for end in 0..text.len() {
            assert_eq!(parse_head(&text[..end]), Ok(None), "{end}");
        }
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(Malformed::ContentLength)
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(Malformed::ContentLength)
        ));
        assert!(matches!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(Malformed::Head(_))
        ));
    }

    /// Feeds `input` split at `cut`, as two reads would deliver it; returns the bytes the
    /// body took and the body size.
    fn decode_split(framing: Framing, input: &[u8], cut: usize) -> Result<(usize, u64), Malformed> {
        let mut decoder = BodyDecoder::new(framing);
        let mut used = decoder.feed(&input[..cut])?;
        if !decoder.is_done() {
            assert_eq!(used, cut, "all of a read is consumed until the end");
            used += decoder.feed(&input[cut..])?;
        }
        assert!(decoder.is_done(), "split at {cut}");
        Ok((used, decoder.received()))
    }

    #[test]
    fn a_length_body_stops_at_its_length_wherever_the_reads_split() {
        let input = b"0123456789NEXT";
        for cut in 0..=input.len() {
            assert_eq!(decode_split(Framing::Length(10), input, cut), Ok((10, 10)));
        }
        assert!(BodyDecoder::new(Framing::Length(0)).is_done());
    }

    #[test]
    fn a_chunked_body_with_extensions_and_trailers() {
        let body = b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"HTTP/1.1 200 OK");
        for cut in 0..=input.len() {
            assert_eq!(
                decode_split(Framing::Chunked, &input, cut),
                Ok((body.len(), 23)),
                "split at {cut}"
            );
        }
        let bare_lf = b"3\nabc\n0\n\n";
        assert_eq!(decode_split(Framing::Chunked, bare_lf, 0), Ok((9, 3)));
    }

    #[test]
    fn bad_chunk_framing_is_malformed() {
        let bad = |input: &[u8]| BodyDecoder::new(Framing::Chunked).feed(input);
        assert_eq!(bad(b"zz\r\n"), Err(Malformed::ChunkSize));
        assert_eq!(bad(b"\r\n"), Err(Malformed::ChunkSize));
        assert_eq!(bad(b"4x\r\n"), Err(Malformed::ChunkSize));
        assert_eq!(bad(b"11112222333344445\r\n"), Err(Malformed::ChunkSize));
        assert_eq!(bad(b"3\r\nabcX"), Err(Malformed::ChunkEnd));
    }

    #[test]
    fn the_end_of_stream_ends_only_an_unframed_body() {
        let mut until_close = BodyDecoder::new(Framing::UntilClose);
        assert_eq!(until_close.feed(b"abc"), Ok(3));
        assert_eq!(until_close.end_of_stream(), Ok(()));
        assert_eq!(until_close.received(), 3);
        let mut short = BodyDecoder::new(Framing::Length(4));
        assert_eq!(short.feed(b"abc"), Ok(3));
        assert_eq!(short.end_of_stream(), Err(Malformed::Truncated));
        let mut chunked = BodyDecoder::new(Framing::Chunked);
        assert_eq!(chunked.feed(b"3\r\nabc\r\n"), Ok(8));
        assert_eq!(chunked.end_of_stream(), Err(Malformed::Truncated));
    }

    /// Two responses on one keep-alive connection, the first in small pieces, the second
    /// chunked and closing the connection; then a 404.
    #[tokio::test]
    async fn get_reads_responses_to_their_end() {
        let (mut client, mut server) = duplex(64);
        let origin = tokio::spawn(async move {
            let mut request = [0u8; 32];
            server.read_exact(&mut request[..27]).await.unwrap();
            assert_eq!(&request[..27], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
            for piece in [
                &b"HTTP/1.1 200 OK\r\nContent-"[..],
                b"Length: 5\r\n\r\nhel",
                b"lo",
            ] {
                server.write_all(piece).await.unwrap();
                tokio::task::yield_now().await;
            }
            server.read_exact(&mut request[..27]).await.unwrap();
            server
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
                .await
                .unwrap();
            server.read_exact(&mut request[..27]).await.unwrap();
            server
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await
                .unwrap();
        });
        let mut buf = ReadBuffer::new();
        let req = request("/", "a");
        let first = get(&mut client, &req, &mut buf).await.unwrap();
        assert_eq!(
            first,
            Response {
                body_bytes: 5,
                keep_alive: true
            }
        );
        let second = get(&mut client, &req, &mut buf).await.unwrap();
        assert_eq!(
            second,
            Response {
                body_bytes: 2,
                keep_alive: false
            }
        );
        let third = get(&mut client, &req, &mut buf).await.unwrap_err();
        assert!(matches!(third, Error::Status(404)), "{third}");
        origin.await.unwrap();
    }

    #[tokio::test]
    async fn get_reports_a_truncated_body() {
        let (mut client, mut server) = duplex(1024);
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
            .await
            .unwrap();
        drop(server);
        let mut buf = ReadBuffer::new();
        let err = get(&mut client, b"", &mut buf).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "HTTP/1.1: connection closed inside the body"
        );
    }
}
