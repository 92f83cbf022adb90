//! HTTP/1.1 inside Bump and plain HTTP proxying (SPEC §2.6, §3.4): keep-alive, chunked
//! bodies, `100-continue`, HEAD, 204/304, large bodies streamed both ways, hop-by-hop
//! headers, `Via`, pooled upstream connections, and bad requests.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::certs::TestPki;
use support::origin::{big_body, HELLO};
use support::raw::Raw;
use support::sluice::SluiceConfig;
use support::{curl, fetch, Origin, OriginOptions, Sluice};

fn bumped() -> (TestPki, Origin, Sluice) {
    bumped_with(None)
}

/// An origin that closes each connection `max_connection_age` after accepting it.
fn bumped_with(max_connection_age: Option<Duration>) -> (TestPki, Origin, Sluice) {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        max_connection_age,
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            ..Default::default()
        },
    );
    (pki, origin, sluice)
}

#[test]
fn bumped_keep_alive_carries_several_requests_on_one_connection_each_way() {
    let (_pki, origin, sluice) = bumped();
    let port = origin.port();
    let more: Vec<String> = (1..3)
        .map(|i| format!("https://bump.test:{port}/hello?{i}"))
        .collect();
    let extra: Vec<&str> = more.iter().map(String::as_str).collect();
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        port,
        "/hello",
        &sluice.ca_path(),
        &extra,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body_text(), HELLO.repeat(3));
    // Three requests in one curl run: one CONNECT, one upstream TLS connection.
    assert_eq!(origin.seen.handshakes.load(Ordering::SeqCst), 1);
    let connect = sluice.connect_record();
    assert_eq!(connect["action"], "bump");
    let http: Vec<_> = sluice
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "http")
        .collect();
    assert_eq!(http.len(), 3, "{http:#?}");
}

/// An HTTP/1.1 client of our own on one bumped connection to bump.test, for requests
/// curl cannot mix on one connection.
async fn h1_client(
    sluice: &Sluice,
    port: u16,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>> {
    let target = format!("127.0.0.1:{port}");
    let tls =
        support::tls_client::connect_tls(sluice.addr, &target, "bump.test", &sluice.ca_path(), &[])
            .await;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    sender
}

/// `method path` on `sender`: the status and the whole body.
async fn h1_exchange(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    port: u16,
    method: &str,
    path: &str,
) -> (u16, bytes::Bytes) {
    use http_body_util::BodyExt;
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("bump.test:{port}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    // The connection takes the next request once it has finished with the last one.
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

/// Between exchanges sluice keeps only the upstream TLS stream (bump/h1_link.rs): empty
/// bodies (HEAD, 204) still hand it back for the next request, and a server's
/// `Connection: close` makes the next request open a new one.
#[test]
fn the_upstream_connection_is_reused_after_empty_bodies_and_replaced_after_close() {
    let (_pki, origin, sluice) = bumped();
    let port = origin.port();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut sender = h1_client(&sluice, port).await;
        let exchanges = [
            ("HEAD", "/hello", 200, ""),
            ("GET", "/status/204", 204, ""),
            ("GET", "/hello", 200, HELLO),
            ("GET", "/close", 200, HELLO),
            ("GET", "/hello", 200, HELLO),
            ("GET", "/hello", 200, HELLO),
        ];
        for (method, path, status, body) in exchanges {
            let got = h1_exchange(&mut sender, port, method, path).await;
            assert_eq!(got, (status, body.into()), "{method} {path}");
        }
    });
    // One upstream connection up to the server's close, one after it.
    assert_eq!(origin.seen.connections.load(Ordering::SeqCst), 2);
    assert_eq!(origin.seen.requests.lock().unwrap().len(), 6);
}

/// An idle upstream connection is parked (bump/h1_link.rs): the next request runs over
/// the same TLS connection, or over a new one when the server has closed it meanwhile.
#[test]
fn a_parked_upstream_connection_carries_the_next_request_or_is_replaced() {
    for (max_age, connections) in [(None, 1), (Some(Duration::from_secs(2)), 2)] {
        let (_pki, origin, sluice) = bumped_with(max_age);
        let port = origin.port();
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let mut sender = h1_client(&sluice, port).await;
            for pause in [Duration::ZERO, Duration::from_millis(2500)] {
                tokio::time::sleep(pause).await;
                let got = h1_exchange(&mut sender, port, "GET", "/hello").await;
                assert_eq!(got, (200, HELLO.into()));
            }
        });
        assert_eq!(
            origin.seen.connections.load(Ordering::SeqCst),
            connections,
            "max age {max_age:?}"
        );
        assert!(
            sluice.stderr().contains("idle upstream connection parked"),
            "{}",
            sluice.stderr()
        );
    }
}

#[test]
fn a_chunked_response_arrives_whole() {
    let (_pki, origin, sluice) = bumped();
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/chunked",
        &sluice.ca_path(),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body_text(), "first chunk, second chunk, last chunk");
    assert!(
        out.headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        out.headers
    );
    let http = sluice.http_record();
    assert_eq!(http["bytes_down"], 37);
}

#[test]
fn a_large_upload_with_100_continue_and_a_large_download_stream_through() {
    let (_pki, origin, sluice) = bumped();
    let upload = tempfile::NamedTempFile::new().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(upload.path(), &data).unwrap();
    let file_arg = format!("@{}", upload.path().display());
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/echo",
        &sluice.ca_path(),
        &["--data-binary", &file_arg, "-H", "Expect: 100-continue"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body.len(), data.len());
    assert!(out.body == data, "the echoed body is byte-identical");
    assert!(out.headers.contains("100 Continue"), "{}", out.headers);

    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/big/20000000",
        &sluice.ca_path(),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.body == big_body(20_000_000));
}

#[test]
fn a_chunked_upload_is_relayed() {
    let (_pki, origin, sluice) = bumped();
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/echo",
        &sluice.ca_path(),
        &[
            "--data-binary",
            "chunked upload body",
            "-H",
            "Transfer-Encoding: chunked",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body_text(), "chunked upload body");
}

#[test]
fn head_204_and_304_have_no_body_and_keep_the_connection_usable() {
    let (_pki, origin, sluice) = bumped();
    let port = origin.port();
    let head = fetch(
        &sluice.proxy_url(),
        "bump.test",
        port,
        "/big/5000",
        &sluice.ca_path(),
        &["-I"],
    );
    assert_eq!(head.code, 0, "{}", head.stderr);
    assert!(
        head.headers.contains("content-length: 5000"),
        "{}",
        head.headers
    );
    let s204 = format!("https://bump.test:{port}/status/204");
    let s304 = format!("https://bump.test:{port}/status/304");
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        port,
        "/hello",
        &sluice.ca_path(),
        &[&s204, &s304],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.headers.contains("HTTP/1.1 204"), "{}", out.headers);
    assert!(out.headers.contains("HTTP/1.1 304"), "{}", out.headers);
    assert_eq!(
        out.body_text(),
        HELLO,
        "the last request on the same connection still works"
    );
    assert_eq!(origin.seen.handshakes.load(Ordering::SeqCst), 2);
    let methods: Vec<String> = origin.requests().into_iter().map(|(m, _, _)| m).collect();
    assert_eq!(methods, ["HEAD", "GET", "GET", "GET"]);
}

#[test]
fn bumped_requests_get_via_and_lose_hop_by_hop_headers() {
    let (_pki, origin, sluice) = bumped();
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/headers",
        &sluice.ca_path(),
        &[
            "-H",
            "Connection: x-private",
            "-H",
            "X-Private: secret",
            "-H",
            "Keep-Alive: timeout=5",
            "-H",
            "X-Kept: yes",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen = out.body_text();
    assert!(seen.contains("via: 1.1 sluice"), "{seen}");
    assert!(seen.contains("x-kept: yes"), "{seen}");
    assert!(!seen.contains("x-private"), "{seen}");
    assert!(!seen.contains("keep-alive"), "{seen}");
    assert!(
        out.headers.to_ascii_lowercase().contains("via: 1.1 sluice"),
        "{}",
        out.headers
    );
}

#[test]
fn reqwest_through_bump() {
    let (_pki, origin, sluice) = bumped();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(sluice.ca_path()).unwrap()).unwrap();
    let port = origin.port();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(sluice.proxy_url()).unwrap())
            .add_root_certificate(ca)
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap();
        let response = client
            .get(format!("https://localhost:{port}/hello"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    });
    assert_eq!(body, HELLO);
    // The pooled connection closes with its runtime; then the connect record is written.
    drop(runtime);
    let connect = sluice.connect_record();
    assert_eq!(connect["host"], "localhost");
    assert_eq!(connect["sni"], "localhost");
    assert_eq!(connect["action"], "bump");
}

fn plain() -> (Origin, Sluice) {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: None,
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            ..Default::default()
        },
    );
    (origin, sluice)
}

#[test]
fn plain_http_is_forwarded_with_via_and_without_hop_by_hop_headers() {
    let (origin, sluice) = plain();
    let url = format!("http://127.0.0.1:{}/headers", origin.port());
    let out = curl(&[
        "-x",
        &sluice.proxy_url(),
        "-H",
        "Connection: x-private",
        "-H",
        "X-Private: 1",
        "-H",
        "X-Kept: yes",
        &url,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen = out.body_text();
    assert!(seen.contains("via: 1.1 sluice"), "{seen}");
    assert!(seen.contains("x-kept: yes"));
    assert!(!seen.contains("x-private"), "{seen}");
    assert!(!seen.contains("proxy-connection"), "{seen}");
    let http = sluice.http_record();
    assert_eq!(http["url"], url);
    assert_eq!(http["status"], 200);
    assert_eq!(http["verdict"], "allowed");
    assert_eq!(http["method"], "GET");
}

#[test]
fn plain_http_keeps_the_client_connection_alive_and_pools_upstream_connections() {
    let (origin, sluice) = plain();
    let port = origin.port();
    let urls: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{port}/hello?{i}"))
        .collect();
    let proxy = sluice.proxy_url();
    let mut args = vec!["-x", proxy.as_str()];
    args.extend(urls.iter().map(String::as_str));
    let out = curl(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body_text(), HELLO.repeat(3));
    assert_eq!(
        origin.seen.connections.load(Ordering::SeqCst),
        1,
        "one pooled upstream connection"
    );
}

#[test]
fn plain_http_to_a_refused_port_is_502_and_to_sluice_itself_is_508() {
    let (_origin, sluice) = plain();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = curl(&[
        "-x",
        &sluice.proxy_url(),
        &format!("http://127.0.0.1:{closed}/"),
    ]);
    assert_eq!(out.status, 502);
    let out = curl(&[
        "-x",
        &sluice.proxy_url(),
        &format!("http://{}/", sluice.addr),
    ]);
    assert_eq!(out.status, 508);
    assert!(out.body_text().contains("loop"), "{}", out.body_text());
}

#[test]
fn conflicting_content_length_and_transfer_encoding_is_400() {
    let (origin, sluice) = plain();
    let mut raw = Raw::connect(sluice.addr);
    raw.send(
        format!(
            "POST http://127.0.0.1:{}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            origin.port()
        )
        .as_bytes(),
    );
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(origin.requests().is_empty(), "nothing was forwarded");
}

#[test]
fn an_origin_form_request_to_the_proxy_is_400() {
    let (_origin, sluice) = plain();
    let mut raw = Raw::connect(sluice.addr);
    raw.send(b"GET /index.html HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
}

/// Issue 11 / SPEC §3.1: a request an `allow-unscanned` rule lets through is logged as
/// `unscanned` even with no anti-virus engine configured; others stay `allowed`.
#[test]
fn allow_unscanned_is_logged_as_unscanned_without_an_engine() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            rest: "[[http_rules]]\nname = \"trusted updates\"\nurl_regex = [\"/hello$\"]\naction = \"allow-unscanned\"\n",
            ..Default::default()
        },
    );
    let base = format!("http://127.0.0.1:{}", origin.port());
    let skipped = curl(&["-x", &sluice.proxy_url(), &format!("{base}/hello")]);
    assert_eq!(skipped.body_text(), HELLO);
    let record = sluice.wait_record("of /hello", |r| {
        r["url"].as_str().is_some_and(|u| u.ends_with("/hello"))
    });
    assert_eq!(record["verdict"], "unscanned");
    assert_eq!(record["rule"], "trusted updates");

    let other = curl(&["-x", &sluice.proxy_url(), &format!("{base}/slow")]);
    assert_eq!(other.code, 0, "{}", other.stderr);
    let record = sluice.wait_record("of /slow", |r| {
        r["url"].as_str().is_some_and(|u| u.ends_with("/slow"))
    });
    assert_eq!(record["verdict"], "allowed");
}
