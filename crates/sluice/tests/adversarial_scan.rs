//! Attacks on the anti-virus scan (issue 13, findings 9 and 10; SPEC §3 step 3: "what is
//! scanned is what the client would get"), through the real proxy with curl, against the
//! real engines (clamd, c-icap with virus_scan) and an origin of this file's own that
//! honours `Range` and serves bodies with a `Content-Encoding`.

mod support;

#[path = "../../inspect/tests/support/mod.rs"]
mod engines;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_compression::tokio::write::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use engines::{eicar, CIcap, Clamd, EICAR_THREAT};
use support::certs::TestPki;
use support::sluice::SluiceConfig;
use support::{curl, CurlOutput, Sluice};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// A file the origin serves at `/NAME`: its `Content-Encoding` (if any) and its bytes
/// as sent.
struct File {
    name: &'static str,
    encoding: Option<&'static str>,
    bytes: Vec<u8>,
}

/// A plain HTTP/1.1 origin on 127.0.0.1 that answers `Range: bytes=A-B` (or `A-`) with
/// 206 and records the request heads it saw. A file named `held-…` is sent half, then
/// the rest once [`RangeOrigin::release`] is called.
struct RangeOrigin {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    gate: Arc<Gate>,
}

/// Closed until opened, once.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }

    /// Wait (at most 30 s) until open.
    fn wait(&self) {
        let open = self.open.lock().unwrap();
        let _ = self
            .opened
            .wait_timeout_while(open, Duration::from_secs(30), |open| !*open)
            .unwrap();
    }
}

impl RangeOrigin {
    fn start(files: Vec<File>) -> RangeOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let files = Arc::new(files);
        let gate = Arc::new(Gate::default());
        let held = gate.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (seen, files, held) = (seen.clone(), files.clone(), held.clone());
                std::thread::spawn(move || serve(stream, &seen, &files, &held));
            }
        });
        RangeOrigin { port, heads, gate }
    }

    /// Send the rest of the `held-…` files.
    fn release(&self) {
        self.gate.open();
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The request heads seen, lowercase.
    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Answer one request and close.
fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>, files: &[File], gate: &Gate) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = String::new();
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
    seen.lock().unwrap().push(head.clone());
    let path = head.split_whitespace().nth(1).unwrap_or("/");
    let Some(file) = files
        .iter()
        .find(|f| path.eq_ignore_ascii_case(&format!("/{}", f.name)))
    else {
        return answer(stream, "404 Not Found", &[], b"no such file", None);
    };
    let mut headers = vec!["content-type: application/octet-stream".to_string()];
    if let Some(encoding) = file.encoding {
        headers.push(format!("content-encoding: {encoding}"));
    }
    match range(&head, file.bytes.len()) {
        Some((start, end)) => {
            headers.push(format!(
                "content-range: bytes {start}-{}/{}",
                end - 1,
                file.bytes.len()
            ));
            let part = &file.bytes[start..end];
            answer(stream, "206 Partial Content", &headers, part, None);
        }
        None => {
            let held = file.name.starts_with("held-").then_some(gate);
            answer(stream, "200 OK", &headers, &file.bytes, held);
        }
    }
}

/// The byte range `[start, end)` of a `range: bytes=A-B` or `bytes=A-` header.
fn range(head: &str, len: usize) -> Option<(usize, usize)> {
    let spec = head
        .lines()
        .find_map(|l| l.strip_prefix("range: bytes="))?
        .trim();
    let (start, end) = spec.split_once('-')?;
    let start: usize = start.parse().ok()?;
    let end = match end {
        "" => len,
        end => end.parse::<usize>().ok()? + 1,
    };
    (start < end && end <= len).then_some((start, end))
}

/// Send a response; with `held`, the second half of the body only once it opens.
fn answer(
    mut stream: TcpStream,
    status: &str,
    headers: &[String],
    body: &[u8],
    held: Option<&Gate>,
) {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for header in headers {
        out.push_str(header);
        out.push_str("\r\n");
    }
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    let _ = stream.write_all(out.as_bytes());
    let (first, rest) = body.split_at(if held.is_some() { body.len() / 2 } else { 0 });
    let _ = stream.write_all(first);
    let _ = stream.flush();
    if let Some(gate) = held {
        gate.wait();
    }
    let _ = stream.write_all(rest);
    let _ = stream.flush();
    // Let the client read everything before the close.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.read(&mut [0; 1]);
}

/// `data` compressed with `coding` (`gzip`, `br`, `zstd`).
fn encoded(coding: &str, data: &[u8]) -> Vec<u8> {
    async fn run<W: AsyncWrite + Unpin>(mut w: W, data: &[u8]) -> W {
        w.write_all(data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        match coding {
            "gzip" => run(GzipEncoder::new(Vec::new()), data).await.into_inner(),
            "br" => run(BrotliEncoder::new(Vec::new()), data).await.into_inner(),
            "zstd" => run(ZstdEncoder::new(Vec::new()), data).await.into_inner(),
            other => panic!("no encoder for {other}"),
        }
    })
}

fn start(pki: &TestPki, anti_virus: &str) -> Sluice {
    Sluice::start(
        pki,
        SluiceConfig {
            rest: anti_virus,
            ..Default::default()
        },
    )
}

fn clamd_config(clamd: &Clamd, extra: &str) -> String {
    format!(
        "[anti_virus]\nengine = \"clamd\"\nurl = \"tcp://127.0.0.1:{}\"\n{extra}\n",
        clamd.port
    )
}

fn icap_config(icap: &CIcap) -> String {
    format!(
        "[anti_virus]\nengine = \"icap\"\nurl = \"icap://127.0.0.1:{}/virus_scan\"\n",
        icap.port
    )
}

/// GET `url` through sluice, with curl's extra `args`; the body as it came (curl does
/// not decode without `--compressed`).
fn get(sluice: &Sluice, url: &str, args: &[&str]) -> CurlOutput {
    let proxy = sluice.proxy_url();
    let mut all = vec!["-x", proxy.as_str()];
    all.extend_from_slice(args);
    all.push(url);
    curl(&all)
}

fn block_reason(out: &CurlOutput) -> Option<String> {
    out.headers.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-sluice-block")
            .then(|| value.trim().to_string())
    })
}

fn assert_virus(out: &CurlOutput, sluice: &Sluice, what: &str) {
    assert_eq!(out.status, 403, "{what}: {}\n{}", out.headers, out.stderr);
    assert_eq!(block_reason(out).as_deref(), Some("virus"), "{what}");
    assert!(out.body_text().contains(EICAR_THREAT), "{what}");
    let record = sluice.wait_record(what, |r| r["verdict"] == "infected");
    assert_eq!(record["threat"], EICAR_THREAT);
}

/// Finding 9: EICAR fetched in two `Range` pieces, neither of which holds the whole
/// signature, passed the engine. The `Range` header no longer reaches the origin, so
/// each request gets (and the engine scans) the whole file.
#[test]
fn eicar_fetched_in_two_ranges_is_scanned_whole_and_blocked() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = RangeOrigin::start(vec![File {
        name: "eicar.com",
        encoding: None,
        bytes: eicar(),
    }]);
    let sluice = start(&pki, &clamd_config(&clamd, ""));
    let url = origin.url("eicar.com");
    for (n, piece) in ["0-33", "34-"].into_iter().enumerate() {
        let out = get(&sluice, &url, &["-r", piece]);
        assert_eq!(out.status, 403, "range {piece}: {}", out.headers);
        assert_eq!(block_reason(&out).as_deref(), Some("virus"));
        let infected = sluice.wait_records("of the range requests", n + 1, |r| {
            r["verdict"] == "infected"
        });
        assert_eq!(infected.len(), n + 1);
    }
    let heads = origin.heads();
    assert_eq!(heads.len(), 2);
    assert!(
        heads
            .iter()
            .all(|h| !h.contains("\nrange:") && !h.contains("\nif-range:")),
        "no Range or If-Range went upstream: {heads:?}"
    );
}

/// Finding 9, the other side: without anti-virus (or for an `allow-unscanned` rule) a
/// `Range` request is passed as it is, since nothing is scanned.
#[test]
fn range_requests_pass_when_nothing_is_scanned() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = RangeOrigin::start(vec![File {
        name: "updates.bin",
        encoding: None,
        bytes: b"0123456789".to_vec(),
    }]);
    let rule = "[[http_rules]]\nname = \"updates\"\nurl_regex = [\"/updates\\\\.bin$\"]\naction = \"allow-unscanned\"\n\n";
    let sluice = start(&pki, &format!("{rule}{}", clamd_config(&clamd, "")));
    let out = get(&sluice, &origin.url("updates.bin"), &["-r", "2-4"]);
    assert_eq!(out.status, 206, "{}", out.headers);
    assert_eq!(out.body, b"234");
    assert!(origin.heads()[0].contains("\nrange: bytes=2-4"));
}

/// Finding 9: a brotli- or zstd-encoded EICAR was scanned as compressed bytes, which
/// clamd does not unpack, and reached the client. It is now decoded for the scan.
#[test]
fn brotli_and_zstd_encoded_eicar_are_blocked_through_clamd() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = RangeOrigin::start(vec![
        File {
            name: "eicar.br",
            encoding: Some("br"),
            bytes: encoded("br", &eicar()),
        },
        File {
            name: "eicar.zst",
            encoding: Some("zstd"),
            bytes: encoded("zstd", &eicar()),
        },
    ]);
    let sluice = start(&pki, &clamd_config(&clamd, ""));
    let out = get(&sluice, &origin.url("eicar.br"), &[]);
    assert_virus(&out, &sluice, "of the br download");
    let out = get(&sluice, &origin.url("eicar.zst"), &[]);
    assert_eq!(out.status, 403, "{}", out.headers);
    assert_eq!(block_reason(&out).as_deref(), Some("virus"));
}

/// Finding 9, through ICAP: gzip, and zstd stacked under gzip (each layer is undone).
/// c-icap unpacks the codings it knows by itself, so this guards the decoded message
/// sluice now sends it (with no `Content-Encoding` left) rather than proving the attack.
#[test]
fn gzip_and_stacked_encodings_of_eicar_are_blocked_through_icap() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let origin = RangeOrigin::start(vec![
        File {
            name: "eicar.zst.gz",
            encoding: Some("zstd, gzip"),
            bytes: encoded("gzip", &encoded("zstd", &eicar())),
        },
        File {
            name: "eicar.gz",
            encoding: Some("gzip"),
            bytes: encoded("gzip", &eicar()),
        },
    ]);
    let sluice = start(&pki, &icap_config(&icap));
    let out = get(&sluice, &origin.url("eicar.gz"), &[]);
    assert_virus(&out, &sluice, "of the gzip download");
    let out = get(&sluice, &origin.url("eicar.zst.gz"), &[]);
    assert_eq!(out.status, 403, "{}", out.headers);
    assert_eq!(block_reason(&out).as_deref(), Some("virus"));
}

/// Finding 9: a clean encoded body is scanned decoded but reaches the client as the
/// origin sent it: the same compressed bytes, still labelled gzip.
#[test]
fn a_clean_gzip_body_arrives_encoded_and_byte_identical() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let text: Vec<u8> = (0..50_000u32)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let body = encoded("gzip", &text);
    let origin = RangeOrigin::start(vec![File {
        name: "report.txt",
        encoding: Some("gzip"),
        bytes: body.clone(),
    }]);
    let sluice = start(&pki, &clamd_config(&clamd, ""));
    let out = get(&sluice, &origin.url("report.txt"), &[]);
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert!(out.body == body, "the compressed bytes, unchanged");
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("content-encoding: gzip"));
    let record = sluice.wait_record("of the clean download", |r| r["kind"] == "http");
    assert_eq!(record["verdict"], "allowed");
}

/// Finding 9: a body that decodes to more than `max_scan_size` (a decompression bomb:
/// 64 MiB of zeros in a few KiB) is oversize, decided by `on_oversize`; it was scanned
/// as its small encoded form and passed.
#[test]
fn a_decompression_bomb_is_oversize() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let bomb = encoded("gzip", &vec![0; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let origin = RangeOrigin::start(vec![File {
        name: "bomb.gz",
        encoding: Some("gzip"),
        bytes: bomb,
    }]);
    let sluice = start(
        &pki,
        &clamd_config(&clamd, "max_scan_size = \"1MiB\"\non_oversize = \"block\""),
    );
    let out = get(&sluice, &origin.url("bomb.gz"), &[]);
    assert_eq!(out.status, 403, "{}", out.headers);
    assert_eq!(block_reason(&out).as_deref(), Some("oversize"));
    let record = sluice.wait_record("of the bomb", |r| r["kind"] == "http");
    assert_eq!(record["verdict"], "blocked");
}

/// Finding 9: a coding sluice cannot undo (here `compress`, or one stacked on gzip) was
/// scanned as it was; it is now an engine failure, `on_error`: 503 `scan_failed` by
/// default, passed unscanned with `on_error = "allow"`.
#[test]
fn an_unknown_coding_is_an_engine_failure() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = RangeOrigin::start(vec![
        File {
            name: "eicar.Z",
            encoding: Some("compress"),
            bytes: eicar(),
        },
        File {
            name: "eicar.gz.x",
            encoding: Some("gzip, x-custom"),
            bytes: eicar(),
        },
    ]);
    let strict = start(&pki, &clamd_config(&clamd, ""));
    for name in ["eicar.Z", "eicar.gz.x"] {
        let out = get(&strict, &origin.url(name), &[]);
        assert_eq!(out.status, 503, "{name}: {}", out.headers);
        assert_eq!(block_reason(&out).as_deref(), Some("scan_failed"));
    }
    let record = strict.wait_record("of the compress download", |r| r["kind"] == "http");
    assert_eq!(record["verdict"], "scan_failed");
    assert_eq!(
        record["error"],
        "scan_failed: unsupported content coding `compress`"
    );
    let lenient = start(&pki, &clamd_config(&clamd, "on_error = \"allow\""));
    let out = get(&lenient, &origin.url("eicar.Z"), &[]);
    assert_eq!(out.status, 200);
    let record = lenient.wait_record("of the unscanned download", |r| r["kind"] == "http");
    assert_eq!(record["verdict"], "unscanned");
}

/// Finding 10: each scanned body could take `max_scan_size` on disk, with no bound over
/// all of them. With `max_spool_total`, a body that does not fit is `on_error` (503
/// `scan_failed`), while one that fits is still scanned and passed.
#[test]
fn a_body_over_max_spool_total_is_an_engine_failure() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = RangeOrigin::start(vec![
        File {
            name: "large.bin",
            encoding: None,
            bytes: vec![7; 300_000],
        },
        File {
            name: "small.bin",
            encoding: None,
            bytes: vec![7; 1000],
        },
    ]);
    let sluice = start(
        &pki,
        &clamd_config(
            &clamd,
            "max_scan_size = \"1MiB\"\nmax_spool_total = \"100KiB\"",
        ),
    );
    let out = get(&sluice, &origin.url("large.bin"), &[]);
    assert_eq!(out.status, 503, "{}", out.headers);
    assert_eq!(block_reason(&out).as_deref(), Some("scan_failed"));
    let record = sluice.wait_record("of the large download", |r| r["kind"] == "http");
    assert_eq!(record["verdict"], "scan_failed");
    assert_eq!(
        record["error"],
        "scan_failed: the spool is full: all bodies held together may take at most 102400 bytes"
    );
    let out = get(&sluice, &origin.url("small.bin"), &[]);
    assert_eq!(out.status, 200);
    assert_eq!(out.body.len(), 1000);
}

/// Finding 10, across requests: the total is shared. While a first download is held
/// (45 KB of it spooled, the rest not yet sent by the origin), a second of 60 KB, which
/// alone fits, would take the spool past 100 KiB: `on_error`. Once the first is done,
/// the second fits again.
#[test]
fn bodies_held_at_once_share_max_spool_total() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = RangeOrigin::start(vec![
        File {
            name: "held-first.bin",
            encoding: None,
            bytes: vec![1; 90_000],
        },
        File {
            name: "second.bin",
            encoding: None,
            bytes: vec![2; 60_000],
        },
    ]);
    let sluice = start(
        &pki,
        &clamd_config(
            &clamd,
            "max_scan_size = \"1MiB\"\nmax_spool_total = \"100KiB\"",
        ),
    );
    let start_first = || {
        let (proxy, url) = (sluice.proxy_url(), origin.url("held-first.bin"));
        std::thread::spawn(move || curl(&["-x", &proxy, &url]))
    };
    let mut first = start_first();
    // Once the first body's 45 KB are in the spool, the second's 60 KB do not fit.
    let mut refused = None;
    for _ in 0..100 {
        let out = get(&sluice, &origin.url("second.bin"), &[]);
        if out.status == 503 {
            refused = Some(out);
            break;
        }
        assert_eq!(out.status, 200, "{}", out.headers);
        if first.is_finished() {
            // A second download was in the spool when the first began, so the first was
            // the one that did not fit: start it again.
            assert_eq!(first.join().unwrap().status, 503);
            first = start_first();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let refused = refused.expect("the second download was refused while the first was held");
    assert_eq!(block_reason(&refused).as_deref(), Some("scan_failed"));
    origin.release();
    let first = first.join().unwrap();
    assert_eq!(first.status, 200, "{}", first.stderr);
    assert!(first.body == vec![1; 90_000]);
    // Its share is given back when sluice is done with it, just after the client is.
    let fits = (0..50).any(|_| {
        let ok = get(&sluice, &origin.url("second.bin"), &[]).status == 200;
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(fits, "the first body's share was given back");
}
