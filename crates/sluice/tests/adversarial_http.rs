//! Attacks on destinations, host checks, HTTP strictness and timeouts (issue 13 findings
//! 3, 4, 6 and 13), each against the real binary with real clients, asserting the SPEC's
//! answer (§2.6, §3, §9).

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use support::certs::TestPki;
use support::origin::{tls_acceptor, HELLO};
use support::raw::Raw;
use support::sluice::SluiceConfig;
use support::tls_client::connect_tls;
use support::{curl, fetch, Origin, OriginOptions, Sluice};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn plain_origin() -> Origin {
    Origin::start(OriginOptions::default())
}

fn tls_origin(pki: &TestPki, alpn: Vec<&'static str>) -> Origin {
    Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        alpn,
        ..Default::default()
    })
}

/// A response's head and its `Content-Length` body, read from a keep-alive connection.
fn read_response(raw: &mut Raw) -> (String, Vec<u8>) {
    let head = raw.read_head();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; length];
    raw.stream.read_exact(&mut body).unwrap();
    (head, body)
}

fn http_records_with(sluice: &Sluice, error: &str, count: usize) -> Vec<Value> {
    sluice.wait_records(&format!("with error {error}"), count, |r| {
        r["kind"] == "http" && r["error"] == error
    })
}

// Finding 3 (plain-HTTP SSRF): with the default configuration plain requests to
// loopback — by literal, by name, as an IPv4-mapped IPv6 literal — and to the cloud
// metadata address are refused 403 `destination_denied`; the origin sees nothing.
#[test]
fn the_default_denies_plain_requests_to_loopback_and_metadata_addresses() {
    let pki = TestPki::new();
    let origin = plain_origin();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            default_deny_destinations: true,
            ..Default::default()
        },
    );
    let port = origin.port();
    let proxy = sluice.proxy_url();
    for url in [
        format!("http://127.0.0.1:{port}/hello"),
        format!("http://localhost:{port}/hello"),
        format!("http://LOCALHOST.:{port}/hello"),
        format!("http://[::ffff:127.0.0.1]:{port}/hello"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        format!("http://0.0.0.0:{port}/hello"),
    ] {
        let out = curl(&["-g", "-x", &proxy, &url]);
        assert_eq!(out.status, 403, "{url}: {}", out.stderr);
        assert!(
            out.body_text().contains("proxy.deny_destinations"),
            "{url}: {}",
            out.body_text()
        );
    }
    let records = http_records_with(&sluice, "destination_denied", 6);
    assert!(records.iter().all(|r| r["status"] == 403), "{records:#?}");
    assert!(origin.requests().is_empty(), "the origin was reached");
}

// Finding 3, CONNECT: a CONNECT to loopback (literal or name) is refused 403
// `destination_denied` as a refused connect record.
#[test]
fn the_default_denies_connect_to_loopback() {
    let pki = TestPki::new();
    let origin = tls_origin(&pki, vec![]);
    let port = origin.port();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443, port],
            default_deny_destinations: true,
            ..Default::default()
        },
    );
    for target in [
        "127.0.0.1:443".to_string(),
        format!("localhost:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let mut raw = Raw::connect(sluice.addr);
        let head = raw.connect_to(&target);
        assert!(head.starts_with("HTTP/1.1 403"), "{target}: {head}");
    }
    let records = sluice.wait_records("refused CONNECTs", 3, |r| {
        r["kind"] == "connect" && r["error"] == "destination_denied"
    });
    for record in &records {
        assert_eq!(record["action"], "refused");
        assert_eq!(record["status"], 403);
    }
    // Records are written as connections close, not necessarily in the order sent.
    assert!(
        records
            .iter()
            .any(|r| r["host"] == "127.0.0.1" && r["port"] == 443),
        "{records:?}"
    );
    assert_eq!(
        origin
            .seen
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

// Finding 3, `ips`: an `ips` rule matches the address a name resolves to, so blocking
// 127.0.0.0/8 stops `http://localhost/` as it stops `http://127.0.0.1/`.
#[test]
fn an_ips_rule_blocks_a_name_that_resolves_into_its_range() {
    let pki = TestPki::new();
    let origin = plain_origin();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            rest: "[[http_rules]]\nname = \"no loopback\"\nips = [\"127.0.0.0/8\"]\naction = \"block\"\n",
            ..Default::default()
        },
    );
    let proxy = sluice.proxy_url();
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("http://{host}:{}/hello", origin.port());
        let out = curl(&["-x", &proxy, &url]);
        assert_eq!(out.status, 403, "{url}");
        assert!(out
            .headers
            .to_ascii_lowercase()
            .contains("x-sluice-block: rule"));
    }
    let record = sluice.wait_record("blocked by the rule", |r| {
        r["kind"] == "http" && r["host"] == "localhost"
    });
    assert_eq!(record["rule"], "no loopback");
    assert_eq!(record["dest_ip"], "127.0.0.1");
    assert!(origin.requests().is_empty());
}

// Finding 4, plain: the policy judged the absolute-form authority while the client's own
// `Host` went upstream. A `Host` that disagrees with the target, on the first request
// or a later one, and two `Host` headers on a later request, are 400; an agreeing Host
// reaches the origin as the target's authority.
#[test]
fn plain_requests_whose_host_disagrees_with_the_target_are_400() {
    let pki = TestPki::new();
    let origin = plain_origin();
    let sluice = Sluice::start(&pki, SluiceConfig::default());
    let port = origin.port();

    let mut first = Raw::connect(sluice.addr);
    first.send(
        format!("GET http://127.0.0.1:{port}/headers HTTP/1.1\r\nHost: evil.test\r\n\r\n")
            .as_bytes(),
    );
    let (head, _) = read_response(&mut first);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    let mut raw = Raw::connect(sluice.addr);
    let agreeing =
        format!("GET http://LOCALHOST:{port}/headers HTTP/1.1\r\nHost: localhost.:{port}\r\n\r\n");
    raw.send(agreeing.as_bytes());
    let (head, body) = read_response(&mut raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen = String::from_utf8_lossy(&body).to_string();
    assert!(
        seen.contains(&format!("host: localhost:{port}\n")),
        "{seen}"
    );
    for later in [
        format!("GET http://127.0.0.1:{port}/hello HTTP/1.1\r\nHost: evil.test\r\n\r\n"),
        format!("GET http://127.0.0.1:{port}/hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.test\r\n\r\n"),
    ] {
        let mut raw = Raw::connect(sluice.addr);
        raw.send(agreeing.as_bytes());
        let (head, _) = read_response(&mut raw);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        raw.send(later.as_bytes());
        let (head, _) = read_response(&mut raw);
        assert!(head.starts_with("HTTP/1.1 400"), "{later:?}: {head}");
    }
    http_records_with(&sluice, "host_target_mismatch", 2);
    http_records_with(&sluice, "duplicate_host", 1);
    assert_eq!(
        origin.requests().len(),
        3,
        "only the agreeing requests went upstream"
    );
}

/// A bumped HTTP/1.1 connection to `127.0.0.1:port` with `sni` (`None`: no SNI).
async fn bumped_h1(
    sluice: &Sluice,
    port: u16,
    sni: Option<&str>,
) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let target = format!("127.0.0.1:{port}");
    // An IP address as the server name sends no SNI.
    let tls = connect_tls(
        sluice.addr,
        &target,
        sni.unwrap_or("127.0.0.1"),
        &sluice.ca_path(),
        &[],
    )
    .await;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn send_h1(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    uri: &str,
    hosts: &[&str],
) -> (u16, String) {
    let mut request = hyper::Request::get(uri);
    for host in hosts {
        request = request.header("host", *host);
    }
    sender.ready().await.unwrap();
    let response = sender
        .send_request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let block = response
        .headers()
        .get("x-sluice-block")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    response.into_body().collect().await.unwrap();
    (status, block)
}

// Finding 4, bump over HTTP/1.1: `GET https://<sni>/x` with `Host: other` got 200; now it
// is 400. A Host naming another host than the SNI is 421 host_mismatch on every request
// of the connection, and without SNI the CONNECT host is the name checked.
#[test]
fn bumped_http1_requests_for_another_host_are_refused() {
    let pki = TestPki::new();
    let origin = tls_origin(&pki, vec![]);
    let port = origin.port();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[port],
            ..Default::default()
        },
    );
    runtime().block_on(async {
        let mut sender = bumped_h1(&sluice, port, Some("bump.test")).await;
        let absolute = format!("https://bump.test:{port}/hello");
        assert_eq!(send_h1(&mut sender, "/hello", &["bump.test"]).await.0, 200);
        assert_eq!(
            send_h1(&mut sender, &absolute, &["other.test"]).await.0,
            400
        );
        let mut sender = bumped_h1(&sluice, port, Some("bump.test")).await;
        assert_eq!(send_h1(&mut sender, "/hello", &["BUMP.test."]).await.0, 200);
        let fronted = send_h1(&mut sender, "/hello", &["tunnel.test"]).await;
        assert_eq!(fronted, (421, "host_mismatch".to_string()));
        let mut sender = bumped_h1(&sluice, port, Some("bump.test")).await;
        let two = send_h1(&mut sender, "/hello", &["bump.test", "bump.test"]).await;
        assert_eq!(two.0, 400);
        // No SNI: the request must name the CONNECT host.
        let mut sender = bumped_h1(&sluice, port, None).await;
        assert_eq!(send_h1(&mut sender, "/hello", &["127.0.0.1"]).await.0, 200);
        let fronted = send_h1(&mut sender, "/hello", &["bump.test"]).await;
        assert_eq!(fronted, (421, "host_mismatch".to_string()));
    });
    let paths: Vec<String> = origin.requests().into_iter().map(|r| r.1).collect();
    assert_eq!(
        paths.len(),
        3,
        "only the agreeing requests went upstream: {paths:?}"
    );
    http_records_with(&sluice, "host_target_mismatch", 1);
    http_records_with(&sluice, "duplicate_host", 1);
}

// Finding 4, bump over HTTP/2: `:authority` naming another host than the SNI is 421, and
// a `Host` header disagreeing with `:authority` is 400.
#[test]
fn bumped_http2_requests_for_another_host_are_refused() {
    let pki = TestPki::new();
    let origin = tls_origin(&pki, vec!["h2", "http/1.1"]);
    let port = origin.port();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[port],
            ..Default::default()
        },
    );
    runtime().block_on(async {
        let target = format!("127.0.0.1:{port}");
        let tls = connect_tls(
            sluice.addr,
            &target,
            "bump.test",
            &sluice.ca_path(),
            &["h2"],
        )
        .await;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(connection);
        let mut send = |uri: String, host: Option<&'static str>| {
            let mut request = hyper::Request::get(uri);
            if let Some(host) = host {
                request = request.header("host", host);
            }
            let sending = sender.send_request(request.body(Empty::<Bytes>::new()).unwrap());
            async move {
                let response = sending.await.unwrap();
                let status = response.status().as_u16();
                response.into_body().collect().await.unwrap();
                status
            }
        };
        assert_eq!(
            send(format!("https://bump.test:{port}/hello"), None).await,
            200
        );
        assert_eq!(
            send(format!("https://tunnel.test:{port}/hello"), None).await,
            421
        );
        let disagreeing = send(
            format!("https://bump.test:{port}/hello"),
            Some("tunnel.test"),
        );
        assert_eq!(disagreeing.await, 400);
    });
    assert_eq!(origin.requests().len(), 1);
}

// Finding 13: `Upgrade: h2c, websocket` was forwarded whole (h2c smuggling); only the
// websocket token survives, and without it Upgrade and HTTP2-Settings are dropped.
#[test]
fn upgrade_is_forwarded_only_as_websocket() {
    let pki = TestPki::new();
    let origin = plain_origin();
    let sluice = Sluice::start(&pki, SluiceConfig::default());
    let url = format!("http://127.0.0.1:{}/headers", origin.port());
    let proxy = sluice.proxy_url();
    let both = curl(&[
        "-x",
        &proxy,
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: h2c, websocket",
        &url,
    ]);
    assert_eq!(both.status, 200, "{}", both.stderr);
    let seen = both.body_text();
    assert!(seen.contains("upgrade: websocket\n"), "{seen}");
    assert!(!seen.contains("h2c"), "{seen}");
    let h2c = curl(&[
        "-x",
        &proxy,
        "-H",
        "Connection: Upgrade",
        "-H",
        "Upgrade: h2c",
        "-H",
        "HTTP2-Settings: AAMAAABkAAQAAP__",
        &url,
    ]);
    let seen = h2c.body_text();
    assert!(!seen.contains("upgrade:"), "{seen}");
    assert!(!seen.contains("http2-settings"), "{seen}");
}

// Finding 13: later keep-alive requests (parsed by hyper) and every request inside a
// bump accepted `Transfer-Encoding: gzip, chunked`; now they are 400 as a first request
// is, and nothing reaches the origin.
#[test]
fn transfer_encoding_other_than_chunked_is_400_on_every_request() {
    let pki = TestPki::new();
    let origin = plain_origin();
    let tls = tls_origin(&pki, vec![]);
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[tls.port()],
            ..Default::default()
        },
    );
    let port = origin.port();
    let smuggled = |path: &str, host: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n"
        )
    };
    let mut raw = Raw::connect(sluice.addr);
    raw.send(
        format!("GET http://127.0.0.1:{port}/hello HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .as_bytes(),
    );
    let (head, body) = read_response(&mut raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, HELLO.as_bytes());
    let url = format!("http://127.0.0.1:{port}/echo");
    raw.send(smuggled(&url, &format!("127.0.0.1:{port}")).as_bytes());
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");

    // Inside a bump every request is parsed by hyper, the first one too.
    runtime().block_on(async {
        let target = format!("127.0.0.1:{}", tls.port());
        let mut stream =
            connect_tls(sluice.addr, &target, "bump.test", &sluice.ca_path(), &[]).await;
        stream
            .write_all(smuggled("/echo", "bump.test").as_bytes())
            .await
            .unwrap();
        let mut answer = vec![0; 12];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 400");
    });
    http_records_with(&sluice, "ambiguous_length", 2);
    assert_eq!(origin.requests().len(), 1);
    assert!(tls.requests().is_empty());
}

/// What a tarpit does once it has read a request head.
#[derive(Clone, Copy)]
enum Tarpit {
    /// Never answers.
    Silent,
    /// Sends a head promising 100 bytes, 10 of them, then nothing.
    StallBody,
}

/// A server on 127.0.0.1 that reads each request head and then stalls as `mode` says,
/// holding the connection until the peer closes it (TLS with the test leaf when `tls`).
fn start_tarpit(mode: Tarpit, tls: Option<&TestPki>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|pki| tls_acceptor(pki.valid(), &["http/1.1"], None));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            // Bounded: the test process ends long before.
            for _ in 0..64 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                stall(tls, mode).await;
                            }
                        }
                        None => stall(tcp, mode).await,
                    }
                });
            }
        });
    });
    addr
}

async fn stall<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S, mode: Tarpit) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match io.read(&mut buf).await {
            Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    if let Tarpit::StallBody = mode {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
        if io.write_all(answer).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
    // Hold the connection, reading nothing useful, until the peer closes it (at most 60 s).
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while matches!(io.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
}

const SHORT_TIMEOUTS: &str = "upstream_response_timeout = \"1s\"\nidle_timeout = \"1s\"\n";

// Finding 6: nothing bounded the wait for response headers. A plain request to a server
// that never answers is 504 after upstream_response_timeout.
#[test]
fn a_plain_request_to_a_silent_server_is_504() {
    let pki = TestPki::new();
    let tarpit = start_tarpit(Tarpit::Silent, None);
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            limits: SHORT_TIMEOUTS,
            ..Default::default()
        },
    );
    let out = curl(&["-x", &sluice.proxy_url(), &format!("http://{tarpit}/")]);
    assert_eq!(out.status, 504, "{}", out.stderr);
    let record = http_records_with(&sluice, "upstream_response_timeout", 1);
    assert_eq!(record[0]["status"], 504);
}

// Finding 6, bumped: the same inside a bump.
#[test]
fn a_bumped_request_to_a_silent_server_is_504() {
    let pki = TestPki::new();
    let tarpit = start_tarpit(Tarpit::Silent, Some(&pki));
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[tarpit.port()],
            limits: SHORT_TIMEOUTS,
            ..Default::default()
        },
    );
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        tarpit.port(),
        "/",
        &sluice.ca_path(),
        &[],
    );
    assert_eq!(out.status, 504, "{}", out.stderr);
    http_records_with(&sluice, "upstream_response_timeout", 1);
}

// Finding 6: a response body that stops moving held the client for ever; after
// idle_timeout without a byte sluice ends the exchange and closes the connection.
#[test]
fn a_response_body_that_stalls_ends_the_exchange() {
    let pki = TestPki::new();
    let tarpit = start_tarpit(Tarpit::StallBody, None);
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            limits: SHORT_TIMEOUTS,
            ..Default::default()
        },
    );
    let mut raw = Raw::connect(sluice.addr);
    raw.send(format!("GET http://{tarpit}/ HTTP/1.1\r\nHost: {tarpit}\r\n\r\n").as_bytes());
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Raw reads give up after 15 s; sluice closes well before, mid-body.
    let mut rest = Vec::new();
    let closed = raw.stream.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "sluice kept the stalled exchange open: {closed:?}"
    );
    assert_eq!(rest, b"0123456789");
}

// Finding 6: a request body that stops moving is bounded too: the client that sends
// half its upload and then nothing is not held past idle_timeout.
#[test]
fn a_request_body_that_stalls_ends_the_exchange() {
    let pki = TestPki::new();
    let origin = plain_origin();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            limits: SHORT_TIMEOUTS,
            ..Default::default()
        },
    );
    let port = origin.port();
    let mut raw = Raw::connect(sluice.addr);
    raw.send(
        format!(
            "POST http://127.0.0.1:{port}/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Length: 100\r\n\r\n0123456789"
        )
        .as_bytes(),
    );
    raw.stream.flush().unwrap();
    // Raw reads give up after 15 s; sluice answers and closes well before.
    let mut answer = Vec::new();
    let closed = raw.stream.read_to_end(&mut answer);
    assert!(
        closed.is_ok(),
        "sluice kept the stalled upload open: {closed:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 5"), "{answer}");
    sluice.wait_record("for the stalled upload", |r| {
        r["kind"] == "http" && r["url"].as_str().is_some_and(|u| u.ends_with("/echo"))
    });
}

// Finding 6: bumped HTTP/2 connections never idled out. One that carries no stream for
// idle_timeout is closed with GOAWAY.
#[test]
fn an_idle_bumped_http2_connection_is_closed() {
    let pki = TestPki::new();
    let origin = tls_origin(&pki, vec!["h2", "http/1.1"]);
    let port = origin.port();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[port],
            limits: SHORT_TIMEOUTS,
            ..Default::default()
        },
    );
    runtime().block_on(async {
        let target = format!("127.0.0.1:{port}");
        let tls = connect_tls(
            sluice.addr,
            &target,
            "bump.test",
            &sluice.ca_path(),
            &["h2"],
        )
        .await;
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        let connection = tokio::spawn(connection);
        let request = hyper::Request::get(format!("https://bump.test:{port}/hello"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().collect().await.unwrap();
        // Nothing more is sent: sluice ends the connection on its own.
        let ended = tokio::time::timeout(Duration::from_secs(15), connection).await;
        assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
    });
    let record = sluice.connect_record();
    assert_eq!(record["alpn"], "h2");
}
