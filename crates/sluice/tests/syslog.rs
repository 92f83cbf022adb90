//! Syslog (SPEC §5 `[log]`): the access records sent to a collector the test starts, as
//! RFC 5424 messages with the JSON record over UDP, and as CEF over TCP with octet
//! counting (RFC 6587).

mod support;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use support::certs::TestPki;
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{curl, Origin, OriginOptions, Sluice};

fn start(pki: &TestPki, syslog: &str) -> Sluice {
    // The harness writes the `[log]` section; the syslog keys are added inside it.
    let mut text = Sluice::config_text(&SluiceConfig {
        connect_ports: &[443],
        ..Default::default()
    });
    text = text.replace(
        "level = \"debug\"\n",
        &format!("level = \"debug\"\n{syslog}\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    Sluice::spawn(dir, &["run", "-c", "sluice.toml"])
}

#[test]
fn records_reach_a_udp_collector_as_rfc5424_json() {
    let pki = TestPki::new();
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = collector.local_addr().unwrap().port();
    let sluice = start(&pki, &format!("syslog = \"udp://127.0.0.1:{port}\""));
    let origin = Origin::start(OriginOptions::default());
    let out = curl(&[
        "-x",
        &sluice.proxy_url(),
        &format!("http://127.0.0.1:{}/hello", origin.port()),
    ]);
    assert_eq!(out.body_text(), HELLO);
    let mut datagram = [0u8; 65536];
    let n = collector.recv(&mut datagram).expect("a syslog datagram");
    let message = String::from_utf8_lossy(&datagram[..n]).into_owned();
    assert!(message.starts_with("<134>1 "), "{message}");
    let mut fields = message.splitn(8, ' ');
    let _pri_version = fields.next();
    let timestamp = fields.next().unwrap();
    assert_rfc5424_timestamp(timestamp);
    let _host = fields.next();
    assert_eq!(fields.next(), Some("sluice"), "app-name");
    let _pid = fields.next();
    assert_eq!(fields.next(), Some("http"), "msgid is the record kind");
    assert_eq!(fields.next(), Some("-"), "no structured data");
    let record: serde_json::Value = serde_json::from_str(fields.next().unwrap()).unwrap();
    assert_eq!(record["kind"], "http");
    assert_eq!(record["status"], 200);
    assert_eq!(
        record["url"],
        format!("http://127.0.0.1:{}/hello", origin.port())
    );
}

#[test]
fn records_reach_a_tcp_collector_as_octet_counted_cef() {
    let pki = TestPki::new();
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = collector.local_addr().unwrap().port();
    let sluice = start(
        &pki,
        &format!("syslog = \"tcp://127.0.0.1:{port}\"\nsyslog_format = \"cef\""),
    );
    let mut raw = support::raw::Raw::connect(sluice.addr);
    let head = raw.connect_to("127.0.0.1:22");
    assert!(head.starts_with("HTTP/1.1 403"));
    let (mut stream, _) = collector.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Octet counting: "LEN SP MESSAGE".
    let mut length = Vec::new();
    let mut byte = [0u8; 1];
    while stream.read_exact(&mut byte).is_ok() && byte[0] != b' ' {
        length.push(byte[0]);
    }
    let length: usize = String::from_utf8(length).unwrap().parse().unwrap();
    let mut message = vec![0u8; length];
    stream.read_exact(&mut message).unwrap();
    let message = String::from_utf8(message).unwrap();
    assert!(message.starts_with("<134>1 "), "{message}");
    assert_rfc5424_timestamp(message.split(' ').nth(1).unwrap());
    assert!(message.contains(" sluice "), "{message}");
    let cef = &message[message.find("CEF:0|").expect("a CEF body")..];
    assert!(cef.starts_with("CEF:0|sluice|sluice|"), "{cef}");
    assert!(cef.contains("|connect-refused|"), "{cef}");
    assert!(cef.contains("src=127.0.0.1"), "{cef}");
    assert!(cef.contains("dpt=22"), "{cef}");
    assert!(cef.contains("act=refused"), "{cef}");
    assert!(cef.contains("outcome=403"), "{cef}");
}

/// RFC 5424 §6.2.3 to the letter, as strict collectors check it:
/// `YYYY-MM-DDTHH:MM:SS[.1*6DIGIT](Z|(+|-)HH:MM)`.
fn assert_rfc5424_timestamp(ts: &str) {
    let shape_ok = (|| {
        let b = ts.as_bytes();
        let digits = |range: std::ops::Range<usize>| {
            b.get(range)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        };
        let fixed = digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && b[10] == b'T'
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19);
        if !fixed {
            return false;
        }
        let mut rest = &ts[19..];
        if let Some(fraction) = rest.strip_prefix('.') {
            let n = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if !(1..=6).contains(&n) {
                return false;
            }
            rest = &fraction[n..];
        }
        rest == "Z"
            || (rest.len() == 6
                && (rest.starts_with('+') || rest.starts_with('-'))
                && rest.as_bytes()[3] == b':')
    })();
    assert!(shape_ok, "not an RFC 5424 TIMESTAMP: {ts:?}");
}
