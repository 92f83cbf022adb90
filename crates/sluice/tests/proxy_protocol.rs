//! The PROXY protocol (SPEC §8): behind a load balancer, each connection opens with a
//! PROXY v1 or v2 header whose source address is the real client's, and `clients` rules
//! and the logs use that address; a connection without a valid header is closed.

mod support;

use std::time::Duration;

use support::certs::TestPki;
use support::raw::Raw;
use support::sluice::SluiceConfig;
use support::Sluice;

/// sluice behind a (pretend) load balancer, allowing CONNECTs to `port`.
fn start(pki: &TestPki, port: u16) -> Sluice {
    let rules = "[[ssl_rules]]\nname = \"branch office\"\nclients = [\"203.0.113.0/24\"]\naction = \"tunnel\"\n";
    let ports = [port];
    let mut text = Sluice::config_text(&SluiceConfig {
        connect_ports: &ports,
        rest: rules,
        ..Default::default()
    });
    text = text.replace("[admin]", "proxy_protocol = true\n\n[admin]");
    let dir = tempfile::tempdir().unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    Sluice::spawn(dir, &["run", "-c", "sluice.toml"])
}

/// A v2 PROXY header for TCP over IPv4.
fn v2_header(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]);
    header.extend_from_slice(&src);
    header.extend_from_slice(&[127, 0, 0, 1]);
    header.extend_from_slice(&sport.to_be_bytes());
    header.extend_from_slice(&3128u16.to_be_bytes());
    header
}

#[test]
fn a_v1_header_gives_rules_and_logs_the_real_client() {
    let pki = TestPki::new();
    let sluice = start(&pki, 443);
    let mut raw = Raw::connect(sluice.addr);
    raw.send(
        b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 3128\r\nCONNECT 127.0.0.1:22 HTTP/1.1\r\n\r\n",
    );
    assert!(raw.read_head().starts_with("HTTP/1.1 403"));
    let record = sluice.connect_record();
    assert_eq!(record["client"], "203.0.113.9");
    assert_eq!(record["client_port"], 51000);
}

#[test]
fn a_v2_header_drives_a_clients_rule() {
    let pki = TestPki::new();
    // A server that speaks first, reached through a tunnel decided on the client address.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            use std::io::Write;
            let _ = stream.write_all(b"220 hello\r\n");
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let sluice = start(&pki, port);
    let mut raw = Raw::connect(sluice.addr);
    let mut opening = v2_header([203, 0, 113, 50], 40000);
    opening.extend_from_slice(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes());
    raw.send(&opening);
    assert!(raw.read_head().starts_with("HTTP/1.1 200"));
    let mut banner = [0u8; 11];
    use std::io::Read;
    raw.stream.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"220 hello\r\n");
    drop(raw);
    let record = sluice.connect_record();
    assert_eq!(record["client"], "203.0.113.50");
    assert_eq!(record["rule"], "branch office");
    assert_eq!(record["action"], "tunnel");
}

#[test]
fn a_connection_without_a_header_is_closed() {
    let pki = TestPki::new();
    let sluice = start(&pki, 443);
    let mut raw = Raw::connect(sluice.addr);
    raw.send(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\n\r\n");
    let (answer, _) = raw.read_to_close();
    assert!(answer.is_empty(), "closed without an answer");
    std::thread::sleep(Duration::from_millis(200));
    assert!(sluice.records().is_empty(), "nothing was proxied");
}
