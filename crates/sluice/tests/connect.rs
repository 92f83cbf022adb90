//! The CONNECT step and the ClientHello stage on the wire (SPEC §1 steps 1 and 3, §9):
//! refusals with their statuses, the SNI check, non-TLS clients, slow and malformed
//! ClientHellos, and a post-quantum ClientHello spread over several records and TCP
//! segments.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use support::certs::TestPki;
use support::origin::HELLO;
use support::raw::Raw;
use support::sluice::SluiceConfig;
use support::{openssl_s_client, Origin, OriginOptions, Sluice};

fn start(pki: &TestPki, ports: &[u16], tls: &str, limits: &str) -> Sluice {
    Sluice::start(
        pki,
        SluiceConfig {
            connect_ports: ports,
            tls,
            limits,
            ..Default::default()
        },
    )
}

fn refused_record(sluice: &Sluice) -> serde_json::Value {
    let record = sluice.wait_record("refused", |r| r["action"] == "refused");
    assert_eq!(record["kind"], "connect");
    record
}

#[test]
fn a_port_not_in_connect_ports_is_403() {
    let pki = TestPki::new();
    let sluice = start(&pki, &[443], "", "");
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to("127.0.0.1:22");
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    let (body, _) = raw.read_to_close();
    assert!(String::from_utf8_lossy(&body).contains("port 22 is not allowed"));
    let record = refused_record(&sluice);
    assert_eq!(record["status"], 403);
    assert_eq!(record["port"], 22);
}

#[test]
fn a_name_that_does_not_resolve_is_502_with_the_reason() {
    let pki = TestPki::new();
    let sluice = start(&pki, &[443], "", "");
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to("no-such-host.invalid:443");
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    let (body, _) = raw.read_to_close();
    assert!(String::from_utf8_lossy(&body).contains("cannot resolve no-such-host.invalid"));
    let record = refused_record(&sluice);
    assert_eq!(record["status"], 502);
    assert_eq!(record["error"], "resolve_failed");
}

#[test]
fn a_refused_connection_is_502() {
    let pki = TestPki::new();
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sluice = start(&pki, &[closed_port], "", "");
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to(&format!("127.0.0.1:{closed_port}"));
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    assert_eq!(refused_record(&sluice)["error"], "connect_failed");
}

#[test]
fn a_connect_timeout_is_504() {
    let pki = TestPki::new();
    // A listener whose accept queue is full drops new SYNs: connects hang.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let _fillers: Vec<_> = (0..3)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()
        })
        .collect();
    let sluice = start(&pki, &[addr.port()], "", "connect_timeout = \"1s\"");
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to(&addr.to_string());
    assert!(head.starts_with("HTTP/1.1 504 "), "{head}");
    let (body, _) = raw.read_to_close();
    assert!(String::from_utf8_lossy(&body).contains("timed out"));
    assert_eq!(refused_record(&sluice)["error"], "connect_timeout");
}

#[test]
fn a_connect_to_sluice_itself_is_508() {
    let pki = TestPki::new();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            listen: Some(&listen),
            connect_ports: &[port],
            ..Default::default()
        },
    );
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to(&listen);
    assert!(head.starts_with("HTTP/1.1 508 "), "{head}");
    assert_eq!(refused_record(&sluice)["status"], 508);
}

#[test]
fn a_bad_connect_target_is_400() {
    let pki = TestPki::new();
    let sluice = start(&pki, &[443], "", "");
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to("no-port-here");
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert_eq!(refused_record(&sluice)["status"], 400);
}

#[test]
fn a_garbage_request_line_is_400() {
    let pki = TestPki::new();
    let sluice = start(&pki, &[443], "", "");
    let mut raw = Raw::connect(sluice.addr);
    raw.send(b"\x00\x01\x02 nonsense\r\n\r\n");
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
}

#[test]
fn headers_over_max_header_bytes_are_431() {
    let pki = TestPki::new();
    let sluice = start(&pki, &[443], "", "max_header_bytes = 4096");
    let mut raw = Raw::connect(sluice.addr);
    let big = "x".repeat(5000);
    raw.send(format!("CONNECT example.test:443 HTTP/1.1\r\nX-Big: {big}\r\n\r\n").as_bytes());
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    assert_eq!(refused_record(&sluice)["status"], 431);
}

#[test]
fn sni_that_differs_from_the_connect_name_is_terminated() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "", "");
    let proxy = sluice.addr.to_string();
    let target = format!("localhost:{}", origin.port());
    let out = openssl_s_client(
        &[
            "-proxy",
            &proxy,
            "-connect",
            &target,
            "-servername",
            "bump.test",
        ],
        "",
    );
    assert!(
        !out.contains("sluice proxy CA"),
        "no certificate was served: {out}"
    );
    let record = sluice.connect_record();
    assert_eq!(record["action"], "terminate");
    assert_eq!(record["error"], "sni_mismatch");
    assert_eq!(record["host"], "localhost");
    assert_eq!(record["sni"], "bump.test");
    assert_eq!(
        origin
            .seen
            .handshakes
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn sni_mismatch_ignore_decides_on_the_sni() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "on_sni_mismatch = \"ignore\"", "");
    let proxy = sluice.addr.to_string();
    let target = format!("localhost:{}", origin.port());
    let out = openssl_s_client(
        &[
            "-proxy",
            &proxy,
            "-connect",
            &target,
            "-servername",
            "bump.test",
        ],
        "",
    );
    assert!(
        out.contains("sluice proxy CA"),
        "the bump went ahead: {out}"
    );
    let record = sluice.connect_record();
    assert_eq!(record["action"], "bump");
    assert_eq!(record["sni"], "bump.test");
}

#[test]
fn the_same_name_in_another_case_with_a_trailing_dot_is_no_mismatch() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "", "");
    let proxy = sluice.addr.to_string();
    let target = format!("localhost:{}", origin.port());
    let out = openssl_s_client(
        &[
            "-proxy",
            &proxy,
            "-connect",
            &target,
            "-servername",
            "LocalHost.",
        ],
        "",
    );
    assert!(out.contains("sluice proxy CA"), "{out}");
    assert_eq!(sluice.connect_record()["action"], "bump");
}

/// A server that speaks first, like SSH.
fn banner_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(b"SSH-2.0-test_banner\r\n");
            let mut buf = [0u8; 64];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.read(&mut buf);
        }
    });
    (port, handle)
}

#[test]
fn a_silent_client_is_non_tls_and_on_non_tls_tunnel_relays_a_server_first_protocol() {
    let pki = TestPki::new();
    let (port, _server) = banner_server();
    let sluice = start(
        &pki,
        &[port],
        "on_non_tls = \"tunnel\"",
        "client_hello_timeout = \"1s\"",
    );
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to(&format!("127.0.0.1:{port}"));
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let mut banner = [0u8; 21];
    raw.stream.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-test_banner\r\n");
    drop(raw);
    let record = sluice.connect_record();
    assert_eq!(record["action"], "tunnel");
    assert_eq!(record["stage"], "client_hello");
    assert_eq!(record["error"], "not_tls");
}

#[test]
fn a_non_tls_client_is_terminated_by_default() {
    let pki = TestPki::new();
    let (port, _server) = banner_server();
    let sluice = start(&pki, &[port], "", "");
    let mut raw = Raw::connect(sluice.addr);
    raw.connect_to(&format!("127.0.0.1:{port}"));
    raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let (rest, _) = raw.read_to_close();
    assert!(rest.is_empty(), "closed without an answer");
    let record = sluice.connect_record();
    assert_eq!(record["action"], "terminate");
    assert_eq!(record["error"], "not_tls");
}

#[test]
fn a_client_hello_that_never_completes_times_out() {
    let pki = TestPki::new();
    let (port, _server) = banner_server();
    let sluice = start(&pki, &[port], "", "client_hello_timeout = \"1s\"");
    let mut raw = Raw::connect(sluice.addr);
    raw.connect_to(&format!("127.0.0.1:{port}"));
    // A record header announcing 512 bytes, and only 3 of them.
    raw.send(b"\x16\x03\x01\x02\x00\x01\x00\x01");
    let (rest, took) = raw.read_to_close();
    assert!(rest.is_empty());
    assert!(
        took < Duration::from_secs(10),
        "closed at the timeout, not later: {took:?}"
    );
    let record = sluice.connect_record();
    assert_eq!(record["action"], "terminate");
    assert_eq!(record["error"], "client_hello_timeout");
}

#[test]
fn a_malformed_client_hello_is_terminated() {
    let pki = TestPki::new();
    let (port, _server) = banner_server();
    let sluice = start(&pki, &[port], "", "");
    let mut raw = Raw::connect(sluice.addr);
    raw.connect_to(&format!("127.0.0.1:{port}"));
    // A handshake record holding a ServerHello (type 2) instead of a ClientHello.
    raw.send(b"\x16\x03\x01\x00\x06\x02\x00\x00\x02\x03\x03");
    let (rest, _) = raw.read_to_close();
    assert!(rest.is_empty());
    let record = sluice.connect_record();
    assert_eq!(record["action"], "terminate");
    assert_eq!(record["error"], "client_hello_malformed");
}

/// Rewrite one TLS handshake record as several records of at most `size` payload bytes.
fn split_into_records(record: &[u8], size: usize) -> Vec<u8> {
    assert_eq!(record[0], 22, "a handshake record");
    let length = u16::from_be_bytes([record[3], record[4]]) as usize;
    assert_eq!(record.len(), 5 + length, "one whole record");
    let mut out = Vec::new();
    for piece in record[5..].chunks(size) {
        out.extend_from_slice(&[22, record[1], record[2]]);
        out.extend_from_slice(&(piece.len() as u16).to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

#[test]
fn a_post_quantum_client_hello_in_several_records_and_segments_is_reassembled() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "", "");
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to(&format!("127.0.0.1:{}", origin.port()));
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");

    let mut roots = rustls::RootCertStore::empty();
    let ca_pem = std::fs::read(sluice.ca_path()).unwrap();
    for cert in rustls_pemfile_certs(&ca_pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tls =
        rustls::ClientConnection::new(Arc::new(config), "bump.test".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    assert!(
        hello.len() > 1100,
        "an X25519MLKEM768 key share makes a large hello: {}",
        hello.len()
    );
    let records = split_into_records(&hello, 400);
    // Three TCP segments whose boundaries fall inside records.
    for segment in [&records[..100], &records[100..700], &records[700..]] {
        raw.send(segment);
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stream = rustls::Stream::new(&mut tls, &mut raw.stream);
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: bump.test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with(HELLO));
    let record = sluice.connect_record();
    assert_eq!(record["sni"], "bump.test");
    assert_eq!(record["action"], "bump");
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.unwrap())
        .collect()
}

#[test]
fn an_idle_tunnel_is_closed_after_idle_timeout() {
    let pki = TestPki::new();
    let (port, _server) = banner_server();
    let rules = "[[ssl_rules]]\nname = \"tunnel\"\naction = \"tunnel\"\n";
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[port],
            limits: "idle_timeout = \"1s\"",
            rest: rules,
            ..Default::default()
        },
    );
    let mut raw = Raw::connect(sluice.addr);
    raw.connect_to(&format!("127.0.0.1:{port}"));
    let (banner, took) = raw.read_to_close();
    assert_eq!(banner, b"SSH-2.0-test_banner\r\n");
    assert!(
        took < Duration::from_secs(10),
        "closed by the idle timeout: {took:?}"
    );
    let record = sluice.connect_record();
    assert_eq!(record["action"], "tunnel");
    assert_eq!(record["error"], "idle_timeout");
    assert_eq!(record["bytes_down"], 21);
}

#[test]
fn connections_over_max_connections_get_503() {
    let pki = TestPki::new();
    let sluice = start(&pki, &[443], "", "max_connections = 1");
    // The first connection holds the only slot while it has not sent its head.
    let _holder = Raw::connect(sluice.addr);
    std::thread::sleep(Duration::from_millis(200));
    let mut second = Raw::connect(sluice.addr);
    let head = second.read_head();
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
}

/// Issue 11 / SPEC §9: testssl.sh sends `CONNECT host:port HTTP/1.0\n\n` with bare-LF
/// line endings; sluice accepts it and the TLS handshake that follows is bumped as usual.
#[test]
fn a_bare_lf_connect_head_as_testssl_sends_it_is_accepted() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "", "");
    let head = format!("CONNECT 127.0.0.1:{} HTTP/1.0\n\n", origin.port());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let body = runtime.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tls = support::tls_client::connect_tls_after(
            sluice.addr,
            head.as_bytes(),
            "bump.test",
            &sluice.ca_path(),
            &["http/1.1"],
        )
        .await;
        tls.write_all(b"GET /hello HTTP/1.1\r\nHost: bump.test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    });
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.ends_with(HELLO), "{body}");
    let record = sluice.wait_record("the bumped connect", |r| r["kind"] == "connect");
    assert_eq!(record["action"], "bump");
}

/// Forwarded request heads keep their strict rules: a plain GET with bare LF is 400.
#[test]
fn a_bare_lf_plain_request_is_still_400() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let sluice = start(&pki, &[443], "", "");
    let mut raw = Raw::connect(sluice.addr);
    raw.send(
        format!(
            "GET http://127.0.0.1:{}/hello HTTP/1.1\nHost: a\n\n",
            origin.port()
        )
        .as_bytes(),
    );
    let head = raw.read_head();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(origin.requests().is_empty(), "nothing reached the origin");
}

/// Issue 13 finding 5 / SPEC §1.3: `CONNECT <address>` with the SNI of a tunneled bank is
/// an unverified SNI (it does not resolve to that address): no tunnel, the connection is
/// bumped by default and logged `sni_unverified`. The same rule tunnels a CONNECT whose
/// SNI does resolve to the address.
#[test]
fn an_sni_that_does_not_resolve_to_the_connect_address_never_earns_a_tunnel() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let rules = "[[ssl_rules]]\nname = \"banking\"\ndomains = [\".bank.example\", \"tunnel.test\"]\naction = \"tunnel-sni\"\n";
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            rest: rules,
            ..Default::default()
        },
    );
    let proxy = sluice.addr.to_string();
    let target = format!("127.0.0.1:{}", origin.port());
    let out = openssl_s_client(
        &[
            "-proxy",
            &proxy,
            "-connect",
            &target,
            "-servername",
            "www.bank.example",
        ],
        "",
    );
    assert!(
        out.contains("sluice proxy CA"),
        "bumped, not tunneled: {out}"
    );
    let record = sluice.wait_record("the bank", |r| r["sni"] == "www.bank.example");
    assert_eq!(record["action"], "bump");
    assert_eq!(record["rule"], "default");
    assert_eq!(record["error"], "sni_unverified");

    // tunnel.test resolves to 127.0.0.1 (the test's hosts file): verified, tunneled.
    let out = openssl_s_client(
        &[
            "-proxy",
            &proxy,
            "-connect",
            &target,
            "-servername",
            "tunnel.test",
        ],
        "",
    );
    assert!(!out.contains("sluice proxy CA"), "tunneled: {out}");
    let record = sluice.wait_record("tunnel.test", |r| r["sni"] == "tunnel.test");
    assert_eq!(record["action"], "tunnel-sni");
    assert_eq!(record["rule"], "banking");
    assert!(record.get("error").is_none(), "{record}");
}

/// SPEC §1.3: with `on_non_tls = "tunnel"`, a client that does not speak TLS to a host an
/// SSL rule terminates is terminated, not tunneled.
#[test]
fn on_non_tls_tunnel_still_obeys_a_terminate_rule() {
    let pki = TestPki::new();
    let (port, _server) = banner_server();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[port],
            tls: "on_non_tls = \"tunnel\"",
            limits: "client_hello_timeout = \"1s\"",
            rest: "[[ssl_rules]]\nname = \"no terminate.test\"\ndomains = [\"terminate.test\"]\naction = \"terminate\"\n",
            ..Default::default()
        },
    );
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to(&format!("terminate.test:{port}"));
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let (rest, _) = raw.read_to_close();
    assert!(rest.is_empty(), "no banner was relayed: {rest:?}");
    let record = sluice.connect_record();
    assert_eq!(record["action"], "terminate");
    assert_eq!(record["rule"], "no terminate.test");
    assert_eq!(record["error"], "not_tls");
}
