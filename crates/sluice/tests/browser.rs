//! A real browser through Bump: Debian's Chromium, headless, trusting sluice's CA
//! through an NSS database in a temporary HOME, loads a page from a local HTTPS origin
//! over HTTP/2. Its post-quantum ClientHello (with ECH GREASE) goes through sluice's
//! peek. `.ci/run` installs `chromium` and `libnss3-tools`.

mod support;

use std::process::{Command, Stdio};

use support::certs::TestPki;
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{Origin, OriginOptions, Sluice};

fn run(program: &str, args: &[&str], home: &std::path::Path) -> std::process::Output {
    Command::new(program)
        .args(args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{program} is needed for this test (apt-get install chromium libnss3-tools): {e}"
            )
        })
}

#[test]
fn chromium_loads_a_page_through_bump_over_http2() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        alpn: vec!["h2", "http/1.1"],
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            ..Default::default()
        },
    );

    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let made = run(
        "certutil",
        &["-d", &db, "-N", "--empty-password"],
        home.path(),
    );
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let ca = sluice.ca_path();
    let added = run(
        "certutil",
        &[
            "-d",
            &db,
            "-A",
            "-t",
            "C,,",
            "-n",
            "sluice",
            "-i",
            ca.to_str().unwrap(),
        ],
        home.path(),
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let profile = home.path().join("profile");
    let url = format!("https://localhost:{}/page", origin.port());
    let output = run(
        "timeout",
        &[
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--proxy-server=http://{}", sluice.addr),
            // Chromium never proxies loopback names unless told to.
            "--proxy-bypass-list=<-loopback>",
            "--dump-dom",
            &url,
        ],
        home.path(),
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains(HELLO),
        "the page loaded through sluice: {dom}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dom.contains("HTTP/2.0"), "the origin saw HTTP/2: {dom}");

    let record = sluice.wait_record("of Chromium's page", |r| {
        r["kind"] == "connect" && r["alpn"] == "h2"
    });
    assert_eq!(record["action"], "bump");
    assert_eq!(record["sni"], "localhost");
    assert_eq!(record["upstream_cert"], "ok");
    assert_eq!(
        record["ech"], true,
        "Chromium's ClientHello carries ECH GREASE"
    );
    let http = sluice.wait_record("of the page request", |r| {
        r["kind"] == "http" && r["url"] == url.as_str()
    });
    assert_eq!(http["status"], 200);
}
