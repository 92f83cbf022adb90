//! A client of ClamAV's daemon, over TCP or a Unix socket.
//!
//! A scan is one connection: `zINSTREAM\0`, the body as chunks each preceded by its
//! length (4 bytes, big-endian), a zero length, then one NUL-terminated reply:
//! `stream: OK`, `stream: NAME FOUND`, or `... ERROR`. clamd stops reading a stream
//! longer than its `StreamMaxLength`, answers `INSTREAM size limit exceeded. ERROR` and
//! closes, so the reply is read while the body is written, and a write that fails
//! because clamd closed does not hide the reply. [`parse_reply`] is pure.

use std::io;
use std::time::Duration;

use sluice_policy::ClamdAddress;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpStream, UnixStream};

use crate::scan::{within_timeout, ScanError, ScanOutcome};
use crate::spool::SpooledBody;

/// Longest reply read; clamd's are one short line.
const MAX_REPLY: usize = 4096;
/// Largest chunk sent (clamd rejects chunks over its `StreamMaxLength`, which may be
/// small; chunks from the spool are cut to this size).
const MAX_CHUNK: usize = 64 * 1024;

/// A clamd client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ClamdClient {
    address: ClamdAddress,
    timeout: Duration,
}

impl ClamdClient {
    /// A client of the clamd at `address`; every scan finishes within `timeout`.
    pub fn new(address: ClamdAddress, timeout: Duration) -> Self {
        ClamdClient { address, timeout }
    }

    /// `PING`: whether clamd answers `PONG`.
    pub async fn ping(&self) -> Result<(), ScanError> {
        within_timeout(self.timeout, async {
            match self.connect().await? {
                Stream::Tcp(stream) => ping(stream).await,
                Stream::Unix(stream) => ping(stream).await,
            }
        })
        .await
    }

    /// Scan a body with `INSTREAM`.
    pub async fn scan(&self, body: &SpooledBody) -> ScanOutcome {
        if body.is_empty() {
            return ScanOutcome::Clean;
        }
        let result = within_timeout(self.timeout, async {
            match self.connect().await? {
                Stream::Tcp(stream) => instream(stream, body).await,
                Stream::Unix(stream) => instream(stream, body).await,
            }
        })
        .await;
        match result.and_then(|reply| parse_reply(&reply)) {
            Ok(outcome) => outcome,
            Err(error) => ScanOutcome::Failed(error),
        }
    }

    async fn connect(&self) -> Result<Stream, ScanError> {
        let failed = |source| ScanError::Connect {
            address: self.shown(),
            source,
        };
        match &self.address {
            ClamdAddress::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(failed)?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
            ClamdAddress::Unix(path) => Ok(Stream::Unix(
                UnixStream::connect(path).await.map_err(failed)?,
            )),
        }
    }

    fn shown(&self) -> String {
        match &self.address {
            ClamdAddress::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            ClamdAddress::Tcp { host, port } => format!("{host}:{port}"),
            ClamdAddress::Unix(path) => format!("unix:{}", path.display()),
        }
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

async fn ping<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> Result<(), ScanError> {
    stream.write_all(b"zPING\0").await?;
    let reply = read_reply(&mut stream).await?;
    if reply == "PONG" {
        Ok(())
    } else {
        Err(ScanError::Protocol(format!("PING answered `{reply}`")))
    }
}

/// Send the body with `INSTREAM`; clamd's reply.
async fn instream<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    body: &SpooledBody,
) -> Result<String, ScanError> {
    let (mut read_half, write_half) = tokio::io::split(stream);
    let mut writer = BufWriter::with_capacity(MAX_CHUNK + 4, write_half);
    let send = async {
        writer.write_all(b"zINSTREAM\0").await?;
        let mut reader = body.reader();
        while let Some(chunk) = reader.next_chunk().await.map_err(ScanError::Spool)? {
            for piece in chunk.chunks(MAX_CHUNK) {
                // `piece` is at most MAX_CHUNK bytes, far below u32::MAX.
                let len = u32::try_from(piece.len()).unwrap_or(u32::MAX);
                writer.write_all(&len.to_be_bytes()).await?;
                writer.write_all(piece).await?;
            }
        }
        writer.write_all(&0u32.to_be_bytes()).await?;
        writer.flush().await?;
        Ok::<(), ScanError>(())
    };
    let read = read_reply(&mut read_half);
    tokio::pin!(send, read);
    let mut sent: Option<Result<(), ScanError>> = None;
    loop {
        tokio::select! {
            biased;
            reply = &mut read => {
                return match (reply, sent) {
                    (Ok(reply), _) => Ok(reply),
                    // The write failed first: that is the cause.
                    (Err(_), Some(Err(error))) => Err(error),
                    (Err(error), _) => Err(error),
                };
            }
            result = &mut send, if sent.is_none() => sent = Some(result),
        }
    }
}

/// One NUL-terminated reply (or up to the end of the connection).
async fn read_reply<R: AsyncRead + Unpin>(reader: &mut R) -> Result<String, ScanError> {
    let mut reply = Vec::new();
    let mut byte = [0u8; 256];
    loop {
        let n = reader.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&byte[..n]);
        if reply.contains(&0) {
            break;
        }
        if reply.len() > MAX_REPLY {
            return Err(ScanError::Protocol("clamd reply too long".into()));
        }
    }
    if reply.is_empty() {
        return Err(ScanError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "clamd closed the connection without a reply",
        )));
    }
    let end = reply.iter().position(|&b| b == 0).unwrap_or(reply.len());
    Ok(String::from_utf8_lossy(&reply[..end]).trim().to_owned())
}

/// What an `INSTREAM` reply means.
pub fn parse_reply(reply: &str) -> Result<ScanOutcome, ScanError> {
    let reply = reply.trim_end_matches(['\0', '\n']).trim();
    if reply.starts_with("INSTREAM size limit exceeded") {
        return Ok(ScanOutcome::Oversize);
    }
    if reply.ends_with("ERROR") {
        return Err(ScanError::Refused(format!("clamd: {reply}")));
    }
    let Some(result) = reply.strip_prefix("stream: ") else {
        return Err(ScanError::Protocol(format!(
            "unexpected clamd reply `{reply}`"
        )));
    };
    if result == "OK" {
        return Ok(ScanOutcome::Clean);
    }
    match result.strip_suffix(" FOUND") {
        Some(threat) if !threat.trim().is_empty() => Ok(ScanOutcome::Infected {
            threat: threat.trim().to_owned(),
        }),
        _ => Err(ScanError::Protocol(format!(
            "unexpected clamd reply `{reply}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn replies() {
        assert!(matches!(parse_reply("stream: OK"), Ok(ScanOutcome::Clean)));
        match parse_reply("stream: Eicar-Test-Signature FOUND\0") {
            Ok(ScanOutcome::Infected { threat }) => assert_eq!(threat, "Eicar-Test-Signature"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_reply("INSTREAM size limit exceeded. ERROR"),
            Ok(ScanOutcome::Oversize)
        ));
        let refused = parse_reply("Can't allocate memory ERROR").unwrap_err();
        assert_eq!(refused.kind(), "refused");
        assert_eq!(
            refused.to_string(),
            "the scan engine refused the scan: clamd: Can't allocate memory ERROR"
        );
        for nonsense in ["", "PONG", "stream: FOUND", "stream: maybe"] {
            assert_eq!(
                parse_reply(nonsense).unwrap_err().kind(),
                "protocol",
                "{nonsense}"
            );
        }
    }

    proptest! {
        #[test]
        fn parse_reply_never_panics(reply in "\\PC{0,80}") {
            let _ = parse_reply(&reply);
        }
    }
}
