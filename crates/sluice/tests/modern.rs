//! Bump without breaking the web (SPEC §1 learned bypass, §2): HTTP/2 kept as HTTP/2 on
//! both legs, many multiplexed streams, a stalled stream beside a live one, WebSocket,
//! the domain-fronting check, learned bypasses, session resumption on both legs, and a
//! server that only speaks TLS 1.0.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::certs::TestPki;
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::tls_client::{connect_tls, h2_client};
use support::{fetch, openssl_s_client, Origin, OriginOptions, Sluice};
use tokio_tungstenite::tungstenite::Message;

fn h2_origin(pki: &TestPki) -> Origin {
    Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        alpn: vec!["h2", "http/1.1"],
        ..Default::default()
    })
}

fn start(pki: &TestPki, origin: &Origin, tls: &str, rest: &str) -> Sluice {
    Sluice::start(
        pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            tls,
            rest,
            ..Default::default()
        },
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn http2_stays_http2_on_both_legs() {
    let pki = TestPki::new();
    let origin = h2_origin(&pki);
    let sluice = start(&pki, &origin, "", "");
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &["--http2"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.headers.contains("\nHTTP/2 200"),
        "curl spoke HTTP/2 with sluice: {}",
        out.headers
    );
    assert_eq!(out.body_text(), HELLO);
    assert_eq!(
        *origin.seen.versions.lock().unwrap(),
        ["HTTP/2.0"],
        "sluice spoke HTTP/2 with the origin"
    );
    let connect = sluice.connect_record();
    assert_eq!(connect["alpn"], "h2");
    let http = sluice.http_record();
    assert_eq!(http["status"], 200);
    assert_eq!(
        http["url"],
        format!("https://bump.test:{}/hello", origin.port())
    );
}

#[test]
fn http11_stays_http11_when_the_server_selects_it() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "", "");
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &["--http2"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.headers.contains("\nHTTP/1.1 200"), "{}", out.headers);
    assert_eq!(*origin.seen.versions.lock().unwrap(), ["HTTP/1.1"]);
    assert_eq!(sluice.connect_record()["alpn"], "http/1.1");
}

#[test]
fn one_http2_connection_carries_100_concurrent_streams_byte_for_byte() {
    let pki = TestPki::new();
    let origin = h2_origin(&pki);
    let sluice = start(&pki, &origin, "", "");
    let port = origin.port();
    runtime().block_on(async {
        let sender = h2_client(sluice.addr, origin.port(), &sluice.ca_path()).await;
        let streams = (0..100u32).map(|i| {
            let mut sender = sender.clone();
            async move {
                let body: Vec<u8> = (0..(1000 + i * 997))
                    .map(|j| ((i + j) % 251) as u8)
                    .collect();
                let request = hyper::Request::post(format!("https://bump.test:{port}/echo"))
                    .body(Full::new(Bytes::from(body.clone())))
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                assert_eq!(response.status(), 200);
                let echoed = response.into_body().collect().await.unwrap().to_bytes();
                assert!(echoed == body, "stream {i} came back byte for byte");
            }
        });
        tokio::time::timeout(
            Duration::from_secs(60),
            futures_util::future::join_all(streams),
        )
        .await
        .expect("all streams complete");
    });
    assert_eq!(
        origin.seen.handshakes.load(Ordering::SeqCst),
        1,
        "one upstream connection"
    );
    let versions = origin.seen.versions.lock().unwrap().clone();
    assert_eq!(versions.len(), 100);
    assert!(versions.iter().all(|v| v == "HTTP/2.0"));
}

#[test]
fn a_stalled_stream_does_not_stall_its_neighbour() {
    let pki = TestPki::new();
    let origin = h2_origin(&pki);
    let sluice = start(&pki, &origin, "", "");
    let port = origin.port();
    runtime().block_on(async {
        let mut sender = h2_client(sluice.addr, origin.port(), &sluice.ca_path()).await;
        // 64 MiB that nobody reads: flow control must hold it back, not the connection.
        let big = hyper::Request::get(format!("https://bump.test:{port}/big/67108864"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let stalled = sender.send_request(big).await.unwrap();
        assert_eq!(stalled.status(), 200);
        for _ in 0..5 {
            let hello = hyper::Request::get(format!("https://bump.test:{port}/hello"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let response =
                tokio::time::timeout(Duration::from_secs(10), sender.send_request(hello))
                    .await
                    .expect("the live stream is not blocked")
                    .unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, HELLO);
        }
        drop(stalled);
    });
}

#[test]
fn a_websocket_echo_works_through_bump() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "", "");
    let port = origin.port();
    runtime().block_on(async {
        let target = format!("127.0.0.1:{port}");
        let tls = connect_tls(
            sluice.addr,
            &target,
            "bump.test",
            &sluice.ca_path(),
            &["http/1.1"],
        )
        .await;
        let url = format!("wss://bump.test:{port}/websocket");
        let (mut socket, response) = tokio_tungstenite::client_async(url, tls).await.unwrap();
        assert_eq!(response.status(), 101);
        for text in ["ping", "second message", "third"] {
            socket.send(Message::text(text)).await.unwrap();
            let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(echoed, Message::text(text));
        }
        socket.close(None).await.unwrap();
    });
    let http = sluice.http_record();
    assert_eq!(http["status"], 101);
    assert_eq!(http["url"], format!("https://bump.test:{port}/websocket"));
}

#[test]
fn a_websocket_over_http2_extended_connect_works_when_the_server_offers_it() {
    let pki = TestPki::new();
    let origin = h2_origin(&pki);
    let sluice = start(&pki, &origin, "", "");
    let port = origin.port();
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
        let (mut sender, connection) = hyper::client::conn::http2::handshake::<
            _,
            _,
            http_body_util::Empty<Bytes>,
        >(TokioExecutor::new(), TokioIo::new(tls))
        .await
        .unwrap();
        let mut connection = Box::pin(connection);
        // Drive the connection until sluice's SETTINGS are in: extended CONNECT must be
        // offered before it is used (bounded: 250 x 20 ms).
        let mut offered = false;
        for _ in 0..250 {
            use std::future::Future;
            let _ = std::future::poll_fn(|cx| std::task::Poll::Ready(connection.as_mut().poll(cx)))
                .await;
            if connection.is_extended_connect_protocol_enabled() {
                offered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            offered,
            "sluice offers extended CONNECT because the origin does"
        );
        tokio::spawn(connection);
        let mut request = hyper::Request::connect(format!("https://bump.test:{port}/websocket"))
            .header("sec-websocket-version", "13")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        request
            .extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        let mut response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
        let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        socket.send(Message::text("over h2")).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text("over h2"));
    });
    let requests = origin.requests();
    assert_eq!(requests[0].0, "CONNECT");
    assert_eq!(requests[0].1, "/websocket");
}

#[test]
fn a_websocket_echo_works_over_plain_http() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let sluice = start(&pki, &origin, "", "");
    let port = origin.port();
    runtime().block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(sluice.addr).await.unwrap();
        let handshake = format!(
            "GET http://127.0.0.1:{port}/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(handshake.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tcp.read_u8().await.unwrap());
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="), "{head}");
        let mut socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            tcp,
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        socket.send(Message::text("plain ping")).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed, Message::text("plain ping"));
    });
}

#[test]
fn a_host_that_differs_from_the_sni_gets_421_unless_ignored() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "", "");
    let fronted = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &["-H", "Host: tunnel.test"],
    );
    assert_eq!(fronted.code, 0, "{}", fronted.stderr);
    assert_eq!(fronted.status, 421);
    assert!(fronted
        .headers
        .to_ascii_lowercase()
        .contains("x-sluice-block: host_mismatch"));
    assert!(fronted.body_text().contains("domain fronting"));
    assert!(origin.requests().is_empty());
    let record = sluice.http_record();
    assert_eq!(record["status"], 421);
    assert_eq!(record["verdict"], "blocked");
    // The same name with another case and a port is no mismatch.
    let same = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &["-H", &format!("Host: BUMP.test:{}", origin.port())],
    );
    assert_eq!(same.status, 200);

    let lenient = start(&pki, &origin, "on_host_mismatch = \"ignore\"", "");
    let out = fetch(
        &lenient.proxy_url(),
        "bump.test",
        origin.port(),
        "/headers",
        &lenient.ca_path(),
        &["-H", "Host: tunnel.test"],
    );
    assert_eq!(out.status, 200);
    assert!(out.body_text().contains("host: tunnel.test"));
}

/// curl through sluice to `https://localhost:PORT/hello` from the client address
/// `source` (the CONNECT names `localhost`, which resolves to the origin's address).
fn fetch_localhost(
    sluice: &Sluice,
    port: u16,
    cacert: &std::path::Path,
    source: &str,
) -> support::CurlOutput {
    support::curl(&[
        "-x",
        &sluice.proxy_url(),
        "--interface",
        source,
        "--cacert",
        cacert.to_str().unwrap(),
        &format!("https://localhost:{port}/hello"),
    ])
}

#[test]
fn a_client_that_keeps_rejecting_the_certificate_is_learned_as_bypassed() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let rules = "[[ssl_rules]]\nname = \"always bump 127.0.0.9\"\nclients = [\"127.0.0.9/32\"]\naction = \"bump\"\n";
    let sluice = start(&pki, &origin, "learn_after = 2", rules);
    let root = tempfile::NamedTempFile::new().unwrap();
    pki.write_root(root.path());
    // Pinning clients at two addresses: they trust only the origin's own root.
    for source in ["127.0.0.2", "127.0.0.3"] {
        let out = fetch_localhost(&sluice, origin.port(), root.path(), source);
        assert_eq!(out.code, 60, "{source} rejected: {}", out.stderr);
    }
    // Each rejection is counted before its record is written.
    sluice.wait_records("of rejections", 2, |r| {
        r["error"] == "client_rejected_certificate"
    });
    let bypassed = fetch_localhost(&sluice, origin.port(), root.path(), "127.0.0.4");
    assert_eq!(
        bypassed.code, 0,
        "tunneled after two rejections: {}",
        bypassed.stderr
    );
    assert_eq!(bypassed.body_text(), HELLO);
    let record = sluice.wait_record("of the learned bypass", |r| r["rule"] == "learned-bypass");
    assert_eq!(record["action"], "tunnel-sni");
    assert_eq!(record["stage"], "client_hello");
    assert_eq!(record["sni"], "localhost");
    // A connection an SSL rule matches is still decided by that rule.
    let ruled = fetch_localhost(&sluice, origin.port(), root.path(), "127.0.0.9");
    assert_eq!(ruled.code, 60, "still bumped: {}", ruled.stderr);
}

#[test]
fn a_server_that_asks_for_a_client_certificate_is_learned_as_bypassed() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        client_ca: Some(pki.root_der()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "", "");
    let out = fetch_localhost(&sluice, origin.port(), &sluice.ca_path(), "127.0.0.1");
    assert_eq!(out.status, 502, "{}", out.stderr);
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("x-sluice-block: upstream_tls_failed"));
    assert!(
        out.body_text().contains("client certificate"),
        "{}",
        out.body_text()
    );
    let root = tempfile::NamedTempFile::new().unwrap();
    pki.write_root(root.path());
    // Now tunneled: the client itself meets the origin's certificate request.
    let _ = fetch_localhost(&sluice, origin.port(), root.path(), "127.0.0.1");
    let record = sluice.wait_record("of the learned bypass", |r| r["rule"] == "learned-bypass");
    assert_eq!(record["action"], "tunnel-sni");
    assert_eq!(record["sni"], "localhost");
}

#[test]
fn returning_clients_resume_their_session_on_both_legs() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "", "");
    let session = tempfile::NamedTempFile::new().unwrap();
    let session = session.path().to_str().unwrap();
    let proxy = sluice.addr.to_string();
    let target = format!("localhost:{}", origin.port());
    let request = "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let first = openssl_s_client(
        &[
            "-proxy",
            &proxy,
            "-connect",
            &target,
            "-servername",
            "localhost",
            "-ign_eof",
            "-sess_out",
            session,
        ],
        request,
    );
    assert!(first.contains(HELLO), "{first}");
    let second = openssl_s_client(
        &[
            "-proxy",
            &proxy,
            "-connect",
            &target,
            "-servername",
            "localhost",
            "-ign_eof",
            "-sess_in",
            session,
        ],
        request,
    );
    assert!(
        second.contains("Reused, TLSv1.3"),
        "the client resumed with sluice: {second}"
    );
    assert!(second.contains(HELLO));
    assert_eq!(origin.seen.handshakes.load(Ordering::SeqCst), 2);
    assert_eq!(
        origin.seen.resumed.load(Ordering::SeqCst),
        1,
        "sluice resumed with the origin"
    );
}

#[test]
fn a_server_that_only_speaks_tls_1_0_gets_a_clear_block_page() {
    let pki = TestPki::new();
    let leaf = pki.valid();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-tls1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
            "-accept",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", "cert.pem", "-key", "key.pem"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[port],
            ..Default::default()
        },
    );
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        port,
        "/",
        &sluice.ca_path(),
        &[],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(out.status, 502, "{}", out.stderr);
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("x-sluice-block: upstream_tls_failed"));
    assert!(
        out.body_text().contains("TLS 1.0 and 1.1 are never used"),
        "{}",
        out.body_text()
    );
    assert_eq!(sluice.connect_record()["error"], "upstream_tls_failed");
}
