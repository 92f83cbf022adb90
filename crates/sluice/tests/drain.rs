//! Stopping (SPEC §6): on SIGTERM sluice stops accepting, lets running connections
//! finish (up to 30 s), writes their records, and exits.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::certs::TestPki;
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::tls_client::h2_client;
use support::{curl, Origin, OriginOptions, Sluice};

#[test]
fn sigterm_lets_a_running_download_finish_and_refuses_new_connections() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let mut sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            ..Default::default()
        },
    );
    let proxy = sluice.proxy_url();
    let url = format!("http://127.0.0.1:{}/slow", origin.port());
    let download = std::thread::spawn(move || curl(&["-x", &proxy, &url]));
    // The download is under way (it takes two seconds) when SIGTERM arrives.
    std::thread::sleep(Duration::from_millis(500));
    sluice.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let refused = curl(&[
        "-x",
        &sluice.proxy_url(),
        &format!("http://127.0.0.1:{}/hello", origin.port()),
    ]);
    assert_eq!(refused.code, 7, "no longer accepting: {}", refused.stderr);
    let finished = download.join().unwrap();
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(
        finished.body,
        vec![b'x'; 1000],
        "the running download completed"
    );
    let status = sluice
        .terminate(Duration::from_secs(20))
        .expect("sluice exits after the drain");
    assert!(status.success(), "{status:?}");
    let records = sluice.records();
    let slow = records
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with("/slow")));
    assert_eq!(
        slow.expect("the download's record was written")["bytes_down"],
        1000
    );
}

/// Issue 11 / SPEC §6: an idle HTTP/1.1 keep-alive client (its response complete,
/// nothing in flight) does not hold the exit for the 30 s drain: sluice closes it at once.
#[test]
fn sigterm_closes_an_idle_http1_keep_alive_connection_at_once() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let mut sluice = Sluice::start(&pki, SluiceConfig::default());
    let mut client = support::raw::Raw::connect(sluice.addr);
    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    // `Host` names what the target names (SPEC §9: otherwise 400 host_target_mismatch).
    let host = format!("127.0.0.1:{}", origin.port());
    client.send(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let head = client.read_head();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let length: usize = header(&head, "content-length").parse().unwrap();
    let body = client.read_exact(length);
    assert_eq!(body, HELLO.as_bytes());

    // The connection stays open and idle: only the drain can end it.
    let status = sluice
        .terminate(Duration::from_secs(10))
        .expect("the idle keep-alive connection did not hold the exit for the 30 s drain");
    assert!(status.success(), "{status:?}");
    let (rest, _) = client.read_to_close();
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
}

/// The same for an idle bumped HTTP/2 connection: sluice sends GOAWAY and exits.
#[test]
fn sigterm_closes_an_idle_bumped_http2_connection_at_once() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        alpn: vec!["h2", "http/1.1"],
        ..Default::default()
    });
    let mut sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            ..Default::default()
        },
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut sender = runtime.block_on(async {
        let mut sender = h2_client(sluice.addr, origin.port(), &sluice.ca_path()).await;
        let request = hyper::Request::get("https://bump.test/hello")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, HELLO.as_bytes());
        sender
    });

    let status = sluice
        .terminate(Duration::from_secs(10))
        .expect("the idle HTTP/2 connection did not hold the exit for the 30 s drain");
    assert!(status.success(), "{status:?}");
    // The client was told to go away: the connection takes no new stream.
    let closed = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), sender.ready())
            .await
            .is_ok_and(|ready| ready.is_err())
    });
    assert!(closed, "the HTTP/2 connection is closed after the drain");
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}
