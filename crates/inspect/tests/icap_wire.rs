//! The ICAP client against a scripted server on a loopback port, for what c-icap does
//! not do on demand: an unchanged copy instead of a 204, a changed body without a
//! threat name, `X-Virus-ID`, a 204 inside the preview, connection reuse and
//! `Max-Connections`, a server that closes idle connections, says nothing, or answers
//! nonsense.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{request, response};
use sluice_inspect::icap::parse::{Chunk, ChunkDecoder};
use sluice_inspect::icap::IcapClient;
use sluice_inspect::{ScanOutcome, SpooledBody};
use sluice_policy::IcapService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the scripted server answers a REQMOD/RESPMOD.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// `204` after the whole body.
    NoContent,
    /// `204` right after the preview, without `100 Continue`.
    NoContentInPreview,
    /// `200` with the response head and body sent back unchanged.
    Echo,
    /// `200` with the body changed, no threat named.
    Changed,
    /// `200` naming the threat in `X-Virus-ID`.
    VirusId,
    /// Nothing, ever.
    Silent,
    /// Not ICAP.
    Garbage,
}

/// What the scripted server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    /// Body bytes received after a preview.
    after_preview: AtomicUsize,
}

struct Server {
    port: u16,
    seen: Arc<Seen>,
}

/// What the scripted server does besides its answer.
#[derive(Clone, Copy, Debug)]
struct Script {
    answer: Answer,
    /// `Max-Connections` in its OPTIONS.
    max_connections: usize,
    /// Close each connection after one scan.
    close_after_each: bool,
    /// Close a connection, unanswered, when a second scan arrives on it (as if it had
    /// been closed while idle just as the client reused it).
    drop_second_scan: bool,
}

impl Script {
    fn answering(answer: Answer) -> Script {
        Script {
            answer,
            max_connections: 4,
            close_after_each: false,
            drop_second_scan: false,
        }
    }
}

async fn server(answer: Answer, max_connections: usize, close_after_each: bool) -> Server {
    scripted(Script {
        max_connections,
        close_after_each,
        ..Script::answering(answer)
    })
    .await
}

/// A server with `Preview: 16` following `script`.
async fn scripted(script: Script) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let shared = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = Arc::clone(&shared);
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let open = seen.open.fetch_add(1, Ordering::SeqCst) + 1;
            seen.max_open.fetch_max(open, Ordering::SeqCst);
            tokio::spawn(async move {
                let _ = serve(stream, script, &seen).await;
                seen.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Server { port, seen }
}

impl Server {
    fn client(&self, timeout: Duration) -> IcapClient {
        let service = IcapService {
            host: "127.0.0.1".into(),
            port: self.port,
            service: "/av".into(),
        };
        IcapClient::new(&service, timeout)
    }
}

/// Bytes read from a connection, with helpers to take a head and a chunked body.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn more(&mut self) -> std::io::Result<()> {
        let mut block = [0u8; 16 * 1024];
        let n = self.stream.read(&mut block).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&block[..n]);
        Ok(())
    }

    async fn take(&mut self, n: usize) -> std::io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.more().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn head(&mut self) -> std::io::Result<String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = self.take(end + 4).await?;
                return Ok(String::from_utf8_lossy(&head).into_owned());
            }
            self.more().await?;
        }
    }

    /// A chunked body: its bytes and whether it ended with `ieof`.
    async fn body(&mut self) -> std::io::Result<(Vec<u8>, bool)> {
        let mut decoder = ChunkDecoder::new();
        let mut data = Vec::new();
        loop {
            let (event, used) = decoder
                .next(&self.buf)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            if let Chunk::Data(range) = &event {
                data.extend_from_slice(&self.buf[range.clone()]);
            }
            self.buf.drain(..used);
            match event {
                Chunk::End { ieof } => return Ok((data, ieof)),
                Chunk::Incomplete => self.more().await?,
                Chunk::Data(_) => {}
            }
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn serve(stream: TcpStream, script: Script, seen: &Seen) -> std::io::Result<()> {
    let Script {
        answer,
        max_connections,
        close_after_each,
        drop_second_scan,
    } = script;
    let mut wire = Wire {
        stream,
        buf: Vec::new(),
    };
    let mut scans = 0;
    loop {
        let head = wire.head().await?;
        if head.starts_with("OPTIONS") {
            let options = format!(
                "ICAP/1.0 200 OK\r\nMethods: RESPMOD, REQMOD\r\nISTag: \"scripted-1\"\r\n\
                 Preview: 16\r\nAllow: 204\r\nMax-Connections: {max_connections}\r\n\
                 Encapsulated: null-body=0\r\n\r\n"
            );
            wire.stream.write_all(options.as_bytes()).await?;
            continue;
        }
        scans += 1;
        if drop_second_scan && scans == 2 {
            return Ok(());
        }
        let encapsulated = header(&head, "Encapsulated").unwrap_or("");
        let body_at: usize = encapsulated
            .rsplit('=')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let heads = wire.take(body_at).await?;
        let (mut body, ieof) = wire.body().await?;
        let previewed = header(&head, "Preview").is_some();
        match answer {
            Answer::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Answer::Garbage => {
                wire.stream.write_all(b"HELLO THERE\r\n\r\n").await?;
                continue;
            }
            Answer::NoContentInPreview if previewed && !ieof => {
                wire.stream
                    .write_all(b"ICAP/1.0 204 No Content\r\nISTag: \"scripted-1\"\r\n\r\n")
                    .await?;
                continue;
            }
            _ => {}
        }
        if previewed && !ieof {
            wire.stream
                .write_all(b"ICAP/1.0 100 Continue\r\n\r\n")
                .await?;
            let (rest, _) = wire.body().await?;
            seen.after_preview.fetch_add(rest.len(), Ordering::SeqCst);
            body.extend_from_slice(&rest);
        }
        let reply = reply(answer, &heads, &body);
        wire.stream.write_all(&reply).await?;
        if close_after_each {
            return Ok(());
        }
    }
}

/// The final response for `answer`, given the encapsulated heads and body received.
fn reply(answer: Answer, heads: &[u8], body: &[u8]) -> Vec<u8> {
    let response_head = heads
        .windows(9)
        .position(|w| w == b"HTTP/1.1 ")
        .map_or(&heads[..0], |at| &heads[at..]);
    let (extra, body) = match answer {
        Answer::NoContent | Answer::NoContentInPreview => {
            return b"ICAP/1.0 204 No Content\r\nISTag: \"scripted-1\"\r\n\r\n".to_vec();
        }
        Answer::Echo => ("", body.to_vec()),
        Answer::Changed => ("", b"replaced".to_vec()),
        Answer::VirusId => ("X-Virus-ID: Scripted.Test\r\n", b"blocked".to_vec()),
        Answer::Silent | Answer::Garbage => unreachable!("answered earlier"),
    };
    let mut out = format!(
        "ICAP/1.0 200 OK\r\nISTag: \"scripted-1\"\r\n{extra}Encapsulated: res-hdr=0, res-body={}\r\n\r\n",
        response_head.len()
    )
    .into_bytes();
    out.extend_from_slice(response_head);
    out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

fn get() -> request::Parts {
    http::Request::get("http://o.example/file")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn ok() -> response::Parts {
    http::Response::builder()
        .status(200)
        .header("content-length", "1000")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn body(len: usize) -> SpooledBody {
    SpooledBody::from_bytes(Bytes::from(vec![b'x'; len]))
}

async fn scan(client: &IcapClient, len: usize) -> ScanOutcome {
    client.scan_response(&get(), &ok(), &body(len)).await
}

/// A server without 204 support sends the message back unchanged: clean, and the
/// connection is reused for the next scans.
#[tokio::test]
async fn an_unchanged_copy_is_clean_and_connections_are_reused() {
    let server = server(Answer::Echo, 4, false).await;
    let client = server.client(Duration::from_secs(5));
    for len in [5, 16, 1000, 300_000] {
        let outcome = scan(&client, len).await;
        assert!(matches!(outcome, ScanOutcome::Clean), "{len}: {outcome:?}");
    }
    assert_eq!(server.seen.connections.load(Ordering::SeqCst), 1);
    assert_eq!(client.options_fetches(), 1);
}

/// A changed body without a threat name is a detection of an unnamed threat; a threat
/// in X-Virus-ID is named.
#[tokio::test]
async fn changes_and_x_virus_id_are_detections() {
    let changed = server(Answer::Changed, 4, false).await;
    match scan(&changed.client(Duration::from_secs(5)), 1000).await {
        ScanOutcome::Infected { threat } => assert_eq!(threat, sluice_inspect::UNNAMED_THREAT),
        other => panic!("{other:?}"),
    }
    let named = server(Answer::VirusId, 4, false).await;
    let client = named.client(Duration::from_secs(5));
    for len in [10, 1000] {
        match scan(&client, len).await {
            ScanOutcome::Infected { threat } => assert_eq!(threat, "Scripted.Test"),
            other => panic!("{other:?}"),
        }
    }
    // The virus page was read to its end: the connection served both scans.
    assert_eq!(named.seen.connections.load(Ordering::SeqCst), 1);
}

/// A 204 inside the preview ends the transaction: the rest of the body is not sent,
/// and the connection serves the next scan.
#[tokio::test]
async fn a_204_in_the_preview_ends_the_scan() {
    let server = server(Answer::NoContentInPreview, 4, false).await;
    let client = server.client(Duration::from_secs(5));
    for _ in 0..3 {
        assert!(matches!(scan(&client, 100_000).await, ScanOutcome::Clean));
    }
    assert_eq!(server.seen.after_preview.load(Ordering::SeqCst), 0);
    assert_eq!(server.seen.connections.load(Ordering::SeqCst), 1);
}

/// Concurrent scans never open more than Max-Connections connections.
#[tokio::test]
async fn max_connections_is_respected() {
    let server = server(Answer::NoContent, 2, false).await;
    let client = server.client(Duration::from_secs(10));
    client.refresh_options().await.unwrap();
    let scans: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { scan(&client, 1000 + i * 1000).await })
        })
        .collect();
    for scan in scans {
        assert!(matches!(scan.await.unwrap(), ScanOutcome::Clean));
    }
    assert!(server.seen.max_open.load(Ordering::SeqCst) <= 2);
    assert_eq!(client.max_connections(), 2);
}

/// A server that closes every connection after one transaction: each scan still
/// succeeds, on a new connection.
#[tokio::test]
async fn connections_closed_by_the_server_are_replaced() {
    let server = server(Answer::NoContent, 4, true).await;
    let client = server.client(Duration::from_secs(5));
    client.refresh_options().await.unwrap();
    for _ in 0..5 {
        assert!(matches!(scan(&client, 100).await, ScanOutcome::Clean));
    }
    // OPTIONS and the first scan share the first connection.
    assert_eq!(server.seen.connections.load(Ordering::SeqCst), 5);
}

/// A pooled connection that the server closes just as it is reused: the scan is tried
/// again on a new connection and succeeds.
#[tokio::test]
async fn a_reused_connection_closed_by_the_server_is_retried() {
    let server = scripted(Script {
        drop_second_scan: true,
        ..Script::answering(Answer::NoContent)
    })
    .await;
    let client = server.client(Duration::from_secs(5));
    for _ in 0..4 {
        assert!(matches!(scan(&client, 100).await, ScanOutcome::Clean));
    }
    // Each connection serves one scan and drops the next, which is retried on a new
    // connection: scan 1 (after OPTIONS) on the first, scans 2, 3 and 4 on three more.
    assert_eq!(server.seen.connections.load(Ordering::SeqCst), 4);
}

/// A server that never answers is a timeout within the configured time.
#[tokio::test]
async fn a_silent_server_times_out() {
    let server = server(Answer::Silent, 4, false).await;
    let client = server.client(Duration::from_millis(500));
    let started = std::time::Instant::now();
    match scan(&client, 10_000).await {
        ScanOutcome::Failed(error) => assert!(error.is_timeout(), "{error}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Nonsense instead of ICAP is a failure, not a verdict.
#[tokio::test]
async fn nonsense_is_a_failure() {
    let server = server(Answer::Garbage, 4, false).await;
    match scan(&server.client(Duration::from_secs(5)), 10).await {
        ScanOutcome::Failed(error) => assert_eq!(error.kind(), "protocol", "{error}"),
        other => panic!("{other:?}"),
    }
}
