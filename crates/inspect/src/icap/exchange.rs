//! One ICAP transaction on one connection: OPTIONS, or a REQMOD/RESPMOD with its
//! preview, `100 Continue`, and final response (RFC 3507 §4.5, §4.6).
//!
//! The body is written while the response is read: a server may answer before it has
//! the whole body (a detection in the preview, an error) or stream a copy back as it
//! receives it, and a client that only reads once it has written everything would then
//! wait for ever on a full socket buffer. A transaction whose request was not written
//! to its end, or whose response was not read to its end, leaves its connection
//! unusable (`reusable = false`).
//!
//! The final response decides:
//! - `204` → clean;
//! - `200` naming a threat (`X-Infection-Found`, `X-Violations-Found`, `X-Virus-ID`) →
//!   infected;
//! - `200` without one → clean if the encapsulated message is the one sent (same
//!   status for a response, no replacement response for a request, the same body byte
//!   for byte: servers without `204` support echo it), otherwise infected with
//!   [`UNNAMED_THREAT`];
//! - any other status → the server refused the scan.

use std::future::Future;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use http::{request as http_request, response as http_response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};

use super::parse::{self, Chunk, ChunkDecoder, IcapResponse, Section, MAX_HEAD};
use super::pool::Connection;
use super::request::{self, Method, Modify, Target, CHUNK_END, LAST_CHUNK, LAST_CHUNK_IEOF};
use crate::scan::{ScanError, ScanOutcome, UNNAMED_THREAT};
use crate::spool::{SpoolReader, SpooledBody};

/// Bytes buffered before a write to the socket.
const WRITE_BUFFER: usize = 64 * 1024;
/// Room made in the read buffer before each read.
const READ_RESERVE: usize = 64 * 1024;
/// Largest response body read and discarded to keep a connection after a detection
/// (a virus page); beyond it the connection is closed instead.
const DRAIN_LIMIT: u64 = 1 << 20;

/// A body to scan and the HTTP heads that go with it.
pub struct Job<'a> {
    /// `REQMOD` or `RESPMOD`.
    pub method: Method,
    /// The HTTP request.
    pub request: &'a http_request::Parts,
    /// The HTTP response, for `RESPMOD`.
    pub response: Option<&'a http_response::Parts>,
    /// The body to scan, not empty.
    pub body: &'a SpooledBody,
}

/// A finished transaction's result, and whether its connection can be used again.
pub struct Done<T> {
    /// What the transaction produced.
    pub value: T,
    /// Whether the connection is at a clean boundary and may serve another transaction.
    pub reusable: bool,
}

/// A failed transaction, and whether any byte of a response had arrived (if not, on a
/// reused connection, the server had probably closed it while idle: worth a retry).
pub struct Failure {
    /// What went wrong.
    pub error: ScanError,
    /// Whether any byte of a response had arrived.
    pub received: bool,
}

impl Failure {
    /// A failure of a connection the server closed while it was idle.
    pub fn stale(&self) -> bool {
        !self.received && matches!(self.error, ScanError::Io(_))
    }
}

/// OPTIONS: the response head (its body, if any, is read and discarded).
pub async fn options(
    conn: &mut Connection,
    target: &Target,
) -> Result<Done<IcapResponse>, Failure> {
    let (read_half, write_half) = conn.stream.split();
    let mut reader = Reader::new(read_half, &mut conn.buf);
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, write_half);
    let result = async {
        writer.write_all(&request::options(target)).await?;
        writer.flush().await?;
        let head = reader.head().await?;
        let mut reusable = !head.closes();
        if let Some(encapsulated) = &head.encapsulated {
            reader.take(encapsulated.heads_len()).await?;
            if encapsulated.body().is_some() {
                reusable &= reader.drain().await?;
            }
        }
        Ok(Done {
            value: head,
            reusable,
        })
    }
    .await;
    result.map_err(|error| Failure {
        error,
        received: reader.received,
    })
}

/// REQMOD or RESPMOD of `job`, with a preview of `preview` bytes when given.
pub async fn modify(
    conn: &mut Connection,
    target: &Target,
    job: &Job<'_>,
    preview: Option<usize>,
) -> Result<Done<ScanOutcome>, Failure> {
    let (read_half, write_half) = conn.stream.split();
    let mut reader = Reader::new(read_half, &mut conn.buf);
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, write_half);
    let result = exchange(&mut reader, &mut writer, target, job, preview).await;
    result.map_err(|error| Failure {
        error,
        received: reader.received,
    })
}

async fn exchange<R, W>(
    reader: &mut Reader<'_, R>,
    writer: &mut W,
    target: &Target,
    job: &Job<'_>,
    preview: Option<usize>,
) -> Result<Done<ScanOutcome>, ScanError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let len = job.body.len();
    let preview = preview.map(|n| u64::try_from(n).unwrap_or(u64::MAX).min(len));
    let head = request::modify(
        target,
        &Modify {
            method: job.method,
            request: job.request,
            response: job.response,
            body_len: Some(len),
            preview: preview.and_then(|n| usize::try_from(n).ok()),
        },
    );
    writer.write_all(&head).await?;
    let mut source = Source::new(job.body.reader());
    let Some(preview) = preview.filter(|&n| n < len) else {
        // No preview, or a preview that is the whole body (`0; ieof`).
        let terminator = if preview.is_some() {
            LAST_CHUNK_IEOF
        } else {
            LAST_CHUNK
        };
        let sending = send(writer, &mut source, len, terminator);
        return finish(alongside(sending, read_final(reader, job)).await);
    };
    let sending = send(writer, &mut source, preview, LAST_CHUNK);
    let (first, sent) = alongside(sending, reader.head()).await;
    let first = first?;
    if first.status != 100 {
        // Decided on the preview: 204, a detection, or an error.
        return finish((final_response(reader, first, job).await, sent));
    }
    if !sent {
        return Err(ScanError::Protocol(
            "100 Continue before the end of the preview".into(),
        ));
    }
    let sending = send(writer, &mut source, len - preview, LAST_CHUNK);
    finish(alongside(sending, read_final(reader, job)).await)
}

/// A transaction's outcome: its connection is reusable only if the request was sent
/// to its end too.
fn finish(
    (result, sent): (Result<Done<ScanOutcome>, ScanError>, bool),
) -> Result<Done<ScanOutcome>, ScanError> {
    let mut done = result?;
    done.reusable &= sent;
    Ok(done)
}

/// Write `len` bytes of the body as chunks, then `terminator`, and flush.
async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    source: &mut Source,
    mut len: u64,
    terminator: &[u8],
) -> Result<(), ScanError> {
    while len > 0 {
        let max = usize::try_from(len).unwrap_or(usize::MAX);
        let chunk = source.take(max).await?.ok_or_else(|| {
            ScanError::Spool(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the spooled body is shorter than its length",
            ))
        })?;
        writer.write_all(&request::chunk_size(chunk.len())).await?;
        writer.write_all(&chunk).await?;
        writer.write_all(CHUNK_END).await?;
        len -= chunk.len() as u64;
    }
    writer.write_all(terminator).await?;
    writer.flush().await?;
    Ok(())
}

/// Run `send` alongside `read` until `read` is done; `read`'s result, and whether
/// `send` completed. A failed `send` (the server closed early) does not end `read`,
/// which may still get the server's answer.
async fn alongside<T>(
    send: impl Future<Output = Result<(), ScanError>>,
    read: impl Future<Output = Result<T, ScanError>>,
) -> (Result<T, ScanError>, bool) {
    tokio::pin!(send, read);
    let mut sent = None;
    loop {
        tokio::select! {
            biased;
            result = &mut read => return (result, matches!(sent, Some(Ok(())))),
            result = &mut send, if sent.is_none() => sent = Some(result),
        }
    }
}

/// The final response (after any `100 Continue`) and what it means.
async fn read_final<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    job: &Job<'_>,
) -> Result<Done<ScanOutcome>, ScanError> {
    let mut head = reader.head().await?;
    while head.status == 100 {
        head = reader.head().await?;
    }
    final_response(reader, head, job).await
}

async fn final_response<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    head: IcapResponse,
    job: &Job<'_>,
) -> Result<Done<ScanOutcome>, ScanError> {
    match head.status {
        204 => Ok(Done {
            value: ScanOutcome::Clean,
            reusable: !head.closes(),
        }),
        200 => modified(reader, head, job).await,
        status => Err(ScanError::Refused(format!("ICAP {status} {}", head.reason))),
    }
}

/// A `200`: a detection, or the message sent back unchanged.
async fn modified<R: AsyncRead + Unpin>(
    reader: &mut Reader<'_, R>,
    head: IcapResponse,
    job: &Job<'_>,
) -> Result<Done<ScanOutcome>, ScanError> {
    let encapsulated = head
        .encapsulated
        .clone()
        .ok_or_else(|| ScanError::Protocol("200 without Encapsulated".into()))?;
    let heads = reader.take(encapsulated.heads_len()).await?;
    let keep = !head.closes();
    if let Some(threat) = head.threat() {
        let drained = encapsulated.body().is_none() || reader.drain().await?;
        return Ok(Done {
            value: ScanOutcome::Infected { threat },
            reusable: keep && drained,
        });
    }
    let head_changed = match (job.response, encapsulated.head(Section::ResHdr)) {
        (Some(original), Some(range)) => {
            let status = heads
                .get(range)
                .ok_or_else(|| ScanError::Protocol("bad Encapsulated offsets".into()))
                .and_then(|h| parse::http_status(h).map_err(protocol))?;
            status != original.status.as_u16()
        }
        // A RESPMOD answered without a response, or a REQMOD answered with one.
        (Some(_), None) | (None, Some(_)) => true,
        (None, None) => false,
    };
    let (same_body, complete) = match encapsulated.body() {
        Some(_) => reader.compare(job.body).await?,
        None => (false, true),
    };
    let value = if head_changed || !same_body {
        ScanOutcome::Infected {
            threat: UNNAMED_THREAT.to_owned(),
        }
    } else {
        ScanOutcome::Clean
    };
    Ok(Done {
        value,
        reusable: keep && complete,
    })
}

fn protocol(error: parse::ParseError) -> ScanError {
    ScanError::Protocol(error.to_string())
}

/// The read side of a connection, with the connection's buffer.
struct Reader<'a, R> {
    io: R,
    buf: &'a mut BytesMut,
    /// Whether any byte was received in this transaction.
    received: bool,
}

impl<'a, R: AsyncRead + Unpin> Reader<'a, R> {
    fn new(io: R, buf: &'a mut BytesMut) -> Self {
        Reader {
            io,
            buf,
            received: false,
        }
    }

    async fn fill(&mut self) -> Result<(), ScanError> {
        self.buf.reserve(READ_RESERVE);
        if self.io.read_buf(self.buf).await? == 0 {
            return Err(ScanError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the ICAP server closed the connection",
            )));
        }
        self.received = true;
        Ok(())
    }

    async fn head(&mut self) -> Result<IcapResponse, ScanError> {
        loop {
            if let Some((head, len)) = parse::parse_response(self.buf).map_err(protocol)? {
                self.buf.advance(len);
                return Ok(head);
            }
            self.fill().await?;
        }
    }

    /// The next `n` bytes (the encapsulated HTTP heads, at most [`MAX_HEAD`]).
    async fn take(&mut self, n: usize) -> Result<Bytes, ScanError> {
        if n > MAX_HEAD {
            return Err(ScanError::Protocol(format!(
                "encapsulated heads of {n} bytes"
            )));
        }
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// The next piece of a chunked body; `None` after its last chunk.
    async fn chunk(&mut self, decoder: &mut ChunkDecoder) -> Result<Option<Bytes>, ScanError> {
        loop {
            let (event, used) = decoder.next(self.buf).map_err(protocol)?;
            match event {
                Chunk::Data(range) => {
                    self.buf.advance(range.start);
                    return Ok(Some(self.buf.split_to(range.len()).freeze()));
                }
                Chunk::End { .. } => {
                    self.buf.advance(used);
                    return Ok(None);
                }
                Chunk::Incomplete => {
                    self.buf.advance(used);
                    self.fill().await?;
                }
            }
        }
    }

    /// Read and discard a chunked body of at most [`DRAIN_LIMIT`] bytes; `false` when
    /// it is longer (the rest is left unread).
    async fn drain(&mut self) -> Result<bool, ScanError> {
        let mut decoder = ChunkDecoder::new();
        let mut total = 0u64;
        while let Some(data) = self.chunk(&mut decoder).await? {
            total += data.len() as u64;
            if total > DRAIN_LIMIT {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Compare a chunked body with `original`: whether they are equal, and whether the
    /// body was read to its end (a difference stops the reading).
    async fn compare(&mut self, original: &SpooledBody) -> Result<(bool, bool), ScanError> {
        let mut decoder = ChunkDecoder::new();
        let mut source = Source::new(original.reader());
        while let Some(data) = self.chunk(&mut decoder).await? {
            if !source.starts_with(&data).await? {
                return Ok((false, false));
            }
        }
        Ok((source.take(1).await?.is_none(), true))
    }
}

/// A spooled body read in pieces of any size.
struct Source {
    reader: SpoolReader,
    /// The rest of a chunk of which only a part was taken.
    held: Option<Bytes>,
}

impl Source {
    fn new(reader: SpoolReader) -> Self {
        Source { reader, held: None }
    }

    /// The next at most `max` bytes (`max` > 0); `None` at the end.
    async fn take(&mut self, max: usize) -> Result<Option<Bytes>, ScanError> {
        let chunk = match self.held.take() {
            Some(chunk) => chunk,
            None => match self.reader.next_chunk().await.map_err(ScanError::Spool)? {
                Some(chunk) => chunk,
                None => return Ok(None),
            },
        };
        if chunk.len() > max {
            self.held = Some(chunk.slice(max..));
            return Ok(Some(chunk.slice(..max)));
        }
        Ok(Some(chunk))
    }

    /// Whether the next bytes are `data` (consuming them).
    async fn starts_with(&mut self, mut data: &[u8]) -> Result<bool, ScanError> {
        while !data.is_empty() {
            let Some(chunk) = self.take(data.len()).await? else {
                return Ok(false);
            };
            if chunk[..] != data[..chunk.len()] {
                return Ok(false);
            }
            data = &data[chunk.len()..];
        }
        Ok(true)
    }
}
