//! Undoing a body's `Content-Encoding` for the scan (SPEC §3 step 3: "what is scanned is
//! what the client would get"). An engine given gzip bytes may see nothing in them, so
//! the body is decoded into a second spooled copy for the engine while the client still
//! receives the encoded bytes as they came.
//!
//! [`codings`] reads the header values (pure); [`decode`] streams a spooled body through
//! the decoders into a spool writer of the same spooler, so the decoded size counts
//! against `max_scan_size` and `max_spool_total`. Decoding is pulled 64 KiB at a time,
//! so a decompression bomb stops at the limit with no more than that in memory.

use std::io;

use async_compression::tokio::bufread::{
    BrotliDecoder, DeflateDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder,
};
use bytes::Bytes;
use http_body_util::BodyDataStream;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::io::StreamReader;

use crate::spool::{SpoolError, SpooledBody, Spooler};

/// Layers of codings decoded at most; more is refused as an error, like an unknown one.
const MAX_LAYERS: usize = 4;
/// Bytes decoded per step.
const STEP: usize = 64 << 10;

/// A content coding sluice can undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// `gzip` (and its alias `x-gzip`).
    Gzip,
    /// `deflate`: zlib (RFC 1950) as HTTP says, or the raw deflate some servers send.
    Deflate,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

/// Why a body's coding could not be undone.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A coding sluice does not know, or too many layers.
    #[error("unsupported content coding `{0}`")]
    Unsupported(String),
    /// The decoded body is over the spooler's `max_size` (`max_scan_size`).
    #[error("the decoded body is larger than {0} bytes")]
    TooLarge(u64),
    /// The decoded body does not fit in the spool's total.
    #[error(transparent)]
    Full(SpoolError),
    /// The encoded bytes are not what the coding says, or the spool failed.
    #[error("cannot decode the {coding:?} body: {source}")]
    Corrupt {
        /// The outermost coding being undone.
        coding: Coding,
        /// What the decoder or the spool said.
        source: io::Error,
    },
}

/// The codings of `Content-Encoding` values, in the order they were applied (decode in
/// reverse). `identity` is skipped; an empty list means the body is not encoded.
pub fn codings<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Coding>, DecodeError> {
    let mut out = Vec::new();
    for value in values {
        for token in value.split(|&b| b == b',') {
            let token = String::from_utf8_lossy(token).trim().to_ascii_lowercase();
            let coding = match token.as_str() {
                "" | "identity" => continue,
                "gzip" | "x-gzip" => Coding::Gzip,
                "deflate" => Coding::Deflate,
                "br" => Coding::Brotli,
                "zstd" => Coding::Zstd,
                _ => return Err(DecodeError::Unsupported(token)),
            };
            if out.len() == MAX_LAYERS {
                return Err(DecodeError::Unsupported(format!(
                    "more than {MAX_LAYERS} codings"
                )));
            }
            out.push(coding);
        }
    }
    Ok(out)
}

/// A reader of the bytes of `body`.
type Reader = Box<dyn AsyncBufRead + Send + Unpin>;

/// Decode `body`, encoded with `codings` (applied in that order), into a new spooled
/// body of `spooler`. Concatenated members or frames are all decoded, so that nothing
/// a client might unpack escapes the scan.
pub async fn decode(
    body: &SpooledBody,
    codings: &[Coding],
    spooler: &Spooler,
) -> Result<SpooledBody, DecodeError> {
    let Some(&outermost) = codings.last() else {
        return Ok(body.clone());
    };
    let corrupt = |source| DecodeError::Corrupt {
        coding: outermost,
        source,
    };
    let mut reader: Reader = Box::new(StreamReader::new(BodyDataStream::new(body.reader())));
    for &coding in codings.iter().rev() {
        reader = layer(reader, coding).await.map_err(corrupt)?;
    }
    let mut writer = spooler.writer();
    let mut buf = vec![0; STEP];
    loop {
        let n = reader.read(&mut buf).await.map_err(corrupt)?;
        if n == 0 {
            break;
        }
        match writer.push(Bytes::copy_from_slice(&buf[..n])).await {
            Ok(()) => {}
            Err(SpoolError::TooLarge { max_size, .. }) => {
                return Err(DecodeError::TooLarge(max_size))
            }
            Err(e @ SpoolError::Full { .. }) => return Err(DecodeError::Full(e)),
            Err(SpoolError::Io(e)) => return Err(corrupt(e)),
        }
    }
    writer.finish().await.map_err(corrupt)
}

/// `reader` with one coding undone.
async fn layer(mut reader: Reader, coding: Coding) -> io::Result<Reader> {
    let decoded: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match coding {
        Coding::Gzip => {
            let mut d = GzipDecoder::new(reader);
            d.multiple_members(true);
            Box::new(d)
        }
        Coding::Deflate if is_zlib(reader.fill_buf().await?) => {
            let mut d = ZlibDecoder::new(reader);
            d.multiple_members(true);
            Box::new(d)
        }
        Coding::Deflate => Box::new(DeflateDecoder::new(reader)),
        Coding::Brotli => Box::new(BrotliDecoder::new(reader)),
        Coding::Zstd => {
            let mut d = ZstdDecoder::new(reader);
            d.multiple_members(true);
            Box::new(d)
        }
    };
    Ok(Box::new(BufReader::with_capacity(STEP, decoded)))
}

/// Whether a `deflate` body starts with a zlib header (RFC 1950 §2.2: method 8, and the
/// first two bytes a multiple of 31), rather than raw deflate.
fn is_zlib(start: &[u8]) -> bool {
    match start {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_compression::tokio::write::{
        BrotliEncoder, DeflateEncoder, GzipEncoder, ZlibEncoder, ZstdEncoder,
    };
    use tokio::io::AsyncWriteExt;

    async fn encode(coding: Coding, zlib: bool, data: &[u8]) -> Vec<u8> {
        async fn run<W: tokio::io::AsyncWrite + Unpin>(mut w: W, data: &[u8]) -> W {
            w.write_all(data).await.unwrap();
            w.shutdown().await.unwrap();
            w
        }
        match coding {
            Coding::Gzip => run(GzipEncoder::new(Vec::new()), data).await.into_inner(),
            Coding::Deflate if zlib => run(ZlibEncoder::new(Vec::new()), data).await.into_inner(),
            Coding::Deflate => run(DeflateEncoder::new(Vec::new()), data)
                .await
                .into_inner(),
            Coding::Brotli => run(BrotliEncoder::new(Vec::new()), data).await.into_inner(),
            Coding::Zstd => run(ZstdEncoder::new(Vec::new()), data).await.into_inner(),
        }
    }

    async fn decoded(spooler: &Spooler, encoded: Vec<u8>, codings: &[Coding]) -> Vec<u8> {
        let body = SpooledBody::from_bytes(encoded.into());
        let out = decode(&body, codings, spooler).await.unwrap();
        let mut reader = out.reader();
        let mut bytes = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            bytes.extend_from_slice(&chunk);
        }
        bytes
    }

    #[test]
    fn content_encoding_values_are_read_in_order() {
        assert_eq!(codings([&b"gzip"[..]]).unwrap(), [Coding::Gzip]);
        assert_eq!(
            codings([&b" X-GZip , identity,br"[..], b"zstd", b"deflate"]).unwrap(),
            [Coding::Gzip, Coding::Brotli, Coding::Zstd, Coding::Deflate]
        );
        assert_eq!(codings([&b"identity"[..]]).unwrap(), []);
        assert_eq!(codings(Vec::<&[u8]>::new()).unwrap(), []);
        assert!(matches!(
            codings([&b"gzip, compress"[..]]),
            Err(DecodeError::Unsupported(c)) if c == "compress"
        ));
        assert!(matches!(
            codings([&b"gzip,gzip,gzip,gzip,gzip"[..]]),
            Err(DecodeError::Unsupported(_))
        ));
    }

    #[tokio::test]
    async fn every_coding_is_undone_even_stacked() {
        let spooler = Spooler::new(1 << 20);
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for (coding, zlib) in [
            (Coding::Gzip, false),
            (Coding::Deflate, true),
            (Coding::Deflate, false),
            (Coding::Brotli, false),
            (Coding::Zstd, false),
        ] {
            let encoded = encode(coding, zlib, &data).await;
            assert_eq!(
                decoded(&spooler, encoded, &[coding]).await,
                data,
                "{coding:?}"
            );
        }
        let inner = encode(Coding::Gzip, false, &data).await;
        let outer = encode(Coding::Brotli, false, &inner).await;
        assert_eq!(
            decoded(&spooler, outer, &[Coding::Gzip, Coding::Brotli]).await,
            data
        );
        // Two gzip members in a row: both are decoded.
        let mut two = encode(Coding::Gzip, false, b"first ").await;
        two.extend(encode(Coding::Gzip, false, b"second").await);
        assert_eq!(
            decoded(&spooler, two, &[Coding::Gzip]).await,
            b"first second"
        );
        assert_eq!(spooler.total_available(), crate::spool::DEFAULT_SPOOL_TOTAL);
    }

    #[tokio::test]
    async fn a_bomb_stops_at_the_limit_and_garbage_is_an_error() {
        let spooler = Spooler::new(1 << 20);
        let zeros = vec![0u8; 4 << 20];
        for coding in [Coding::Gzip, Coding::Brotli, Coding::Zstd] {
            let bomb = encode(coding, false, &zeros).await;
            let body = SpooledBody::from_bytes(bomb.into());
            assert!(matches!(
                decode(&body, &[coding], &spooler).await,
                Err(DecodeError::TooLarge(max)) if max == 1 << 20
            ));
        }
        let garbage = SpooledBody::from_bytes(Bytes::from_static(b"this is not gzip at all"));
        assert!(matches!(
            decode(&garbage, &[Coding::Gzip], &spooler).await,
            Err(DecodeError::Corrupt {
                coding: Coding::Gzip,
                ..
            })
        ));
    }

    #[test]
    fn zlib_headers_are_told_from_raw_deflate() {
        assert!(is_zlib(&[0x78, 0x9c, 0]));
        assert!(is_zlib(&[0x78, 0x01]));
        assert!(!is_zlib(&[0x78, 0x9d]));
        assert!(!is_zlib(&[0xed, 0xc1]));
        assert!(!is_zlib(&[0x78]));
    }
}
