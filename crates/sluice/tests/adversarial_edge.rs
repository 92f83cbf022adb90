//! Attacks on sluice's edge (issue 13, findings 7, 11 and 12): a client spoofing its
//! address with a PROXY header, a browser turned against the admin endpoint (DNS
//! rebinding, cross-site `POST /reload`), an admin endpoint without a token, and
//! WebSocket relays that escaped `max_connections` and the SIGTERM drain. Each test
//! says which finding it proves answered as SPEC §5, §6, §8 and §9 say.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::certs::TestPki;
use support::raw::Raw;
use support::sluice::SluiceConfig;
use support::tls_client::connect_tls;
use support::{curl, CurlOutput, Origin, OriginOptions, Sluice};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Start sluice with the test configuration for `config`, edited by `edit` (to add keys
/// to `[proxy]` or `[admin]`), with `files` written beside it.
fn start_edited(
    pki: &TestPki,
    config: SluiceConfig<'_>,
    edit: impl Fn(String) -> String,
    files: &[(&str, &str)],
) -> Sluice {
    let dir = tempfile::tempdir().unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let text = edit(Sluice::config_text(&config));
    std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    Sluice::spawn(dir, &["run", "-c", "sluice.toml"])
}

/// A request to the admin endpoint with extra curl arguments (headers).
fn admin(sluice: &Sluice, method: &str, path: &str, extra: &[&str]) -> CurlOutput {
    let url = format!(
        "http://{}{path}",
        sluice.admin.expect("the admin endpoint is on")
    );
    let mut args = vec!["-X", method];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// A TCP connection to `to` from the loopback address `from` (distinct clients).
fn connect_from(from: [u8; 4], to: SocketAddr) -> Raw {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from((from, 0)).into())
        .expect("binding a loopback source address");
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    Raw { stream }
}

/// A v2 PROXY header for TCP over IPv4 from `src`.
fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&src);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&sport.to_be_bytes());
    header.extend_from_slice(&3128u16.to_be_bytes());
    header
}

// Finding 11 (PROXY header from anyone): only peers in proxy.proxy_protocol_from may
// send the header; anyone else is closed unread and never appears as the address it
// claimed.
#[test]
fn a_proxy_header_is_believed_only_from_proxy_protocol_from() {
    let pki = TestPki::new();
    let sluice = start_edited(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            ..Default::default()
        },
        |text| {
            text.replace(
                "[admin]",
                "proxy_protocol = true\nproxy_protocol_from = [\"127.0.0.2/32\"]\n\n[admin]",
            )
        },
        &[],
    );
    // CONNECT to a port not allowed: a 403 and a record naming the client, cheaply.
    let opening = |src: [u8; 4], sport: u16| {
        let mut bytes = v2_header(src, sport);
        bytes.extend_from_slice(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n");
        bytes
    };
    let mut spoofer = connect_from([127, 0, 0, 1], sluice.addr);
    spoofer.send(&opening([10, 9, 9, 9], 4444));
    let (answer, _) = spoofer.read_to_close();
    assert!(
        answer.is_empty(),
        "closed without an answer: {:?}",
        String::from_utf8_lossy(&answer)
    );

    let mut balancer = connect_from([127, 0, 0, 2], sluice.addr);
    balancer.send(&opening([203, 0, 113, 9], 5555));
    assert!(balancer.read_head().starts_with("HTTP/1.1 403"));
    let record = sluice.wait_record("from the balancer's client", |r| {
        r["client"] == "203.0.113.9"
    });
    assert_eq!(record["client_port"], 5555);
    assert!(
        !sluice.records().iter().any(|r| r["client"] == "10.9.9.9"),
        "the spoofed address is in no record: {:#?}",
        sluice.records()
    );
    assert!(
        sluice.stderr().contains("not in proxy.proxy_protocol_from"),
        "the refusal is a diagnostic on stderr"
    );
}

// Finding 12 (admin endpoint, DNS rebinding): a page of evil.example whose name now
// resolves to 127.0.0.1 sends `Host: evil.example`; it reads nothing.
#[test]
fn a_dns_rebinding_request_to_the_admin_endpoint_is_refused() {
    let pki = TestPki::new();
    let sluice = Sluice::start(&pki, SluiceConfig::default());
    for path in ["/metrics", "/bypass", "/explain?host=a.example", "/healthz"] {
        let rebound = admin(&sluice, "GET", path, &["-H", "Host: evil.example"]);
        assert_eq!(rebound.status, 403, "{path}: {}", rebound.body_text());
        let with_port = admin(&sluice, "GET", path, &["-H", "Host: evil.example:3129"]);
        assert_eq!(with_port.status, 403, "{path}");
    }
    let port = sluice.admin.unwrap().port();
    for own in [
        format!("Host: 127.0.0.1:{port}"),
        format!("Host: localhost:{port}"),
        "Host: localhost".to_string(),
    ] {
        let allowed = admin(&sluice, "GET", "/metrics", &["-H", &own]);
        assert_eq!(allowed.status, 200, "{own}");
    }
}

// Finding 12 (admin endpoint, cross-site POST /reload): a form on another site posts
// to the endpoint with `Origin: http://evil.example`; it is refused and nothing is
// reloaded, while the endpoint's own origin may still reload.
#[test]
fn a_cross_site_reload_is_refused_and_changes_nothing() {
    let pki = TestPki::new();
    let sluice = Sluice::start(&pki, SluiceConfig::default());
    let config = sluice.path("sluice.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let rule =
        "[[ssl_rules]]\nname = \"reloaded\"\ndomains = [\"x.example\"]\naction = \"tunnel\"\n";
    std::fs::write(&config, format!("{text}\n{rule}")).unwrap();
    let deciding_rule = || {
        let out = admin(&sluice, "GET", "/explain?host=x.example", &[]);
        assert_eq!(out.status, 200);
        let json: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        json["rule"].clone()
    };

    let cross_site = admin(
        &sluice,
        "POST",
        "/reload",
        &["-H", "Origin: http://evil.example"],
    );
    assert_eq!(cross_site.status, 403, "{}", cross_site.body_text());
    assert_ne!(deciding_rule(), "reloaded", "the reload did not happen");
    assert!(!sluice.stderr().contains("configuration reloaded"));

    let origin = format!("Origin: http://{}", sluice.admin.unwrap());
    let same_origin = admin(&sluice, "POST", "/reload", &["-H", &origin]);
    assert_eq!(same_origin.status, 200, "{}", same_origin.body_text());
    assert_eq!(deciding_rule(), "reloaded");
}

// Finding 12 (admin endpoint, no token): with admin.token_file every route but the
// health checks and the CA needs `Authorization: Bearer <token>`.
#[test]
fn the_admin_token_is_required_and_checked() {
    let pki = TestPki::new();
    let sluice = start_edited(
        &pki,
        SluiceConfig::default(),
        |text| text.replace("[admin]\n", "[admin]\ntoken_file = \"admin.token\"\n"),
        &[("admin.token", "correct-horse-battery\n")],
    );
    for path in ["/metrics", "/bypass", "/explain?host=a.example"] {
        let none = admin(&sluice, "GET", path, &[]);
        assert_eq!(none.status, 401, "{path}");
        assert!(none
            .headers
            .to_ascii_lowercase()
            .contains("www-authenticate: bearer"));
        let wrong = admin(
            &sluice,
            "GET",
            path,
            &["-H", "Authorization: Bearer correct-horse-batterY"],
        );
        assert_eq!(wrong.status, 401, "{path}");
        let right = admin(
            &sluice,
            "GET",
            path,
            &["-H", "Authorization: Bearer correct-horse-battery"],
        );
        assert_eq!(right.status, 200, "{path}");
    }
    assert_eq!(admin(&sluice, "POST", "/reload", &[]).status, 401);
    for open in ["/healthz", "/readyz", "/ca.pem", "/ca.der"] {
        assert_eq!(admin(&sluice, "GET", open, &[]).status, 200, "{open}");
    }
    assert!(
        !sluice.stderr().contains("correct-horse-battery"),
        "never logged"
    );
}

// Finding 12 (admin endpoint reachable from the network): `sluice check` and `run`
// refuse a non-loopback admin.listen without admin.token_file.
#[test]
fn check_and_run_refuse_a_wildcard_admin_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\n\n[admin]\nlisten = \"0.0.0.0:3129\"\n",
    )
    .unwrap();
    for command in ["check", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args([command, "-c", "sluice.toml"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command}: {stderr}");
        assert!(
            stderr.contains(
                "sluice.toml:5: admin.listen: 0.0.0.0:3129 is not a loopback address; set admin.token_file"
            ),
            "{command}: {stderr}"
        );
    }
}

// Finding 12 (readiness during a drain): /readyz answers 503 from the moment SIGTERM
// starts the drain, so a load balancer stops sending; /healthz and the endpoint keep
// answering while a tunnel is still being drained.
#[test]
fn readyz_turns_503_during_the_drain_while_the_endpoint_answers() {
    let pki = TestPki::new();
    // A server that accepts and stays silent until the test lets it go.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let (release, released) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Ok((_stream, _)) = server.accept() {
            let _ = released.recv_timeout(Duration::from_secs(60));
        }
    });
    let mut sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[port],
            tls: "decryption = false",
            ..Default::default()
        },
    );
    assert_eq!(admin(&sluice, "GET", "/readyz", &[]).status, 200);
    let mut tunnel = Raw::connect(sluice.addr);
    assert!(tunnel
        .connect_to(&format!("127.0.0.1:{port}"))
        .starts_with("HTTP/1.1 200"));

    sluice.signal("TERM");
    let mut ready = 200;
    for _ in 0..200 {
        ready = admin(&sluice, "GET", "/readyz", &[]).status;
        if ready == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(ready, 503, "not ready once the drain started");
    assert_eq!(admin(&sluice, "GET", "/healthz", &[]).status, 200);
    assert_eq!(admin(&sluice, "GET", "/metrics", &[]).status, 200);

    drop(tunnel);
    let _ = release.send(());
    let status = sluice
        .terminate(Duration::from_secs(40))
        .expect("sluice exits once the tunnel has ended");
    assert!(status.success(), "{status:?}");
}

// Finding 12 (fd limit never raised): at start sluice raises the soft RLIMIT_NOFILE to
// the hard limit, and warns when that is below limits.max_connections.
#[test]
fn the_open_file_limit_is_raised_and_a_low_one_is_reported() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    let text = Sluice::config_text(&SluiceConfig::default());
    std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    // Soft 300, hard 800; max_connections is the default 10000.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "ulimit -Sn 300 && ulimit -Hn 800 && exec \"$0\" run -c sluice.toml",
            env!("CARGO_BIN_EXE_sluice"),
        ])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (lines, seen) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stderr = Vec::new();
    while !stderr
        .iter()
        .any(|l: &String| l.starts_with("sluice: listening on"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => stderr.push(line),
            Err(_) => break,
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(
        open_files.get(3..5),
        Some(&["800", "800"][..]),
        "soft limit raised to the hard one: {limits}"
    );
    let stderr = stderr.join("\n");
    assert!(
        stderr.contains("warning: the open-file limit is 800")
            && stderr.contains("limits.max_connections = 10000"),
        "{stderr}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A WebSocket through sluice as a plain HTTP proxy request.
async fn plain_websocket(proxy: SocketAddr, port: u16) -> WebSocketStream<tokio::net::TcpStream> {
    let mut tcp = tokio::net::TcpStream::connect(proxy).await.unwrap();
    let handshake = format!(
        "GET http://127.0.0.1:{port}/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    WebSocketStream::from_raw_socket(tcp, Role::Client, None).await
}

/// Send `text` and expect it echoed (bounded wait).
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(socket: &mut WebSocketStream<S>, text: &str) {
    socket.send(Message::text(text)).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("an echo within 10 s")
        .expect("the relay is open")
        .unwrap();
    assert_eq!(echoed, Message::text(text));
}

// Finding 7 (upgraded relays escape the limits): three WebSocket relays (two plain,
// one through bump) hold all three slots of max_connections = 3 and are counted as
// active; a fourth connection gets 503.
#[test]
fn websocket_relays_keep_their_max_connections_slot() {
    let pki = TestPki::new();
    let plain = Origin::start(OriginOptions::default());
    let tls = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[tls.port()],
            limits: "max_connections = 3",
            ..Default::default()
        },
    );
    let rt = runtime();
    let (mut first, mut second, mut bumped) = rt.block_on(async {
        let mut first = plain_websocket(sluice.addr, plain.port()).await;
        echo(&mut first, "one").await;
        let mut second = plain_websocket(sluice.addr, plain.port()).await;
        echo(&mut second, "two").await;
        let target = format!("127.0.0.1:{}", tls.port());
        let stream = connect_tls(
            sluice.addr,
            &target,
            "bump.test",
            &sluice.ca_path(),
            &["http/1.1"],
        )
        .await;
        let url = format!("wss://bump.test:{}/websocket", tls.port());
        let (mut bumped, response) = tokio_tungstenite::client_async(url, stream).await.unwrap();
        assert_eq!(response.status(), 101);
        echo(&mut bumped, "three").await;
        (first, second, bumped)
    });

    // Nothing is sent: sluice answers at once, and unread bytes would turn its close
    // into a reset that can swallow the answer.
    let (answer, _) = Raw::connect(sluice.addr).read_to_close();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");

    let metrics = admin(&sluice, "GET", "/metrics", &[]).body_text();
    assert!(
        metrics.lines().any(|l| l == "sluice_active_connections 3"),
        "{metrics}"
    );
    rt.block_on(async {
        echo(&mut first, "still one").await;
        echo(&mut second, "still two").await;
        echo(&mut bumped, "still three").await;
        first.close(None).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(10), first.next()).await;
        drop(first);
    });
    // A relay that ends gives its slot back (bounded: 200 x 50 ms).
    let mut refused = true;
    for _ in 0..200 {
        let fifth = curl(&[
            "-x",
            &sluice.proxy_url(),
            &format!("http://127.0.0.1:{}/hello", plain.port()),
        ]);
        if fifth.status == 200 {
            refused = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!refused, "the closed relay's slot is free again");
    drop((second, bumped));
}

// Finding 7 (the drain does not wait for relays): after SIGTERM an open WebSocket relay
// keeps working, the admin endpoint still answers, and sluice exits once the relay
// has closed.
#[test]
fn sigterm_drains_an_open_websocket_relay() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let mut sluice = Sluice::start(&pki, SluiceConfig::default());
    let rt = runtime();
    let mut socket = rt.block_on(async {
        let mut socket = plain_websocket(sluice.addr, origin.port()).await;
        echo(&mut socket, "before").await;
        socket
    });
    sluice.signal("TERM");
    // Wait (bounded) until sluice stops accepting: the drain has begun.
    let mut accepting = true;
    for _ in 0..200 {
        if TcpStream::connect(sluice.addr).is_err() {
            accepting = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!accepting, "sluice stopped accepting");
    rt.block_on(echo(&mut socket, "during the drain"));
    assert_eq!(
        admin(&sluice, "GET", "/healthz", &[]).status,
        200,
        "still running"
    );
    assert_eq!(admin(&sluice, "GET", "/readyz", &[]).status, 503);
    rt.block_on(async {
        socket.close(None).await.unwrap();
        // The close handshake: wait for the origin's answer or the end (bounded).
        let _ = tokio::time::timeout(Duration::from_secs(10), socket.next()).await;
    });
    drop(socket);
    let status = sluice
        .terminate(Duration::from_secs(20))
        .expect("sluice exits once the relay has closed");
    assert!(status.success(), "{status:?}");
}
