//! Attacks on the learned bypass and on client-leg resumption (issue 13, findings 1, 2
//! and the bypass part of 10; SPEC §1 "Learned bypass", §2.3, §7, §8), with curl and
//! openssl s_client from distinct loopback addresses against real origins.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::certs::{TestPki, UNRESOLVED_NAME};
use support::origin::HELLO;
use support::pinned::{pinning_root, via_localhost};
use support::sluice::SluiceConfig;
use support::{curl, fetch, openssl_s_client, CurlOutput, Origin, OriginOptions, Sluice};

fn start(pki: &TestPki, ports: &[u16], tls: &str, rest: &str) -> Sluice {
    Sluice::start(
        pki,
        SluiceConfig {
            connect_ports: ports,
            tls,
            rest,
            ..Default::default()
        },
    )
}

fn admin(sluice: &Sluice, method: &str, path: &str) -> CurlOutput {
    let url = format!("http://{}{path}", sluice.admin.expect("admin endpoint"));
    curl(&["-X", method, &url])
}

fn bypasses(sluice: &Sluice) -> Value {
    serde_json::from_slice(&admin(sluice, "GET", "/bypass").body).unwrap()
}

fn bypass_records(sluice: &Sluice) -> Vec<Value> {
    sluice
        .records()
        .into_iter()
        .filter(|r| r["kind"] == "bypass")
        .collect()
}

/// Finding 1: one client that aborts handshakes (here five times, more than
/// `learn_after`) must not make a name uninspected for everyone.
#[test]
fn one_client_address_aborting_five_times_teaches_nothing() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "", "");
    let root = pinning_root(&pki);
    for _ in 0..5 {
        let out = via_localhost(&sluice, origin.port(), root.path(), "127.0.0.2");
        assert_eq!(out.code, 60, "the pinning client rejects: {}", out.stderr);
    }
    sluice.wait_records("of rejections", 5, |r| {
        r["error"] == "client_rejected_certificate"
    });
    assert_eq!(bypasses(&sluice), serde_json::json!([]));
    assert!(bypass_records(&sluice).is_empty());
    // Still bumped for everyone, that client included.
    let out = via_localhost(&sluice, origin.port(), &sluice.ca_path(), "127.0.0.2");
    assert_eq!(out.code, 0, "bumped: {}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    let bumped = sluice.wait_record("of the bumped connection", |r| {
        r["kind"] == "connect" && r["action"] == "bump"
    });
    assert_eq!(bumped["rule"], "default");
}

/// Finding 1: the bypass is learned from distinct client addresses only (repeats count
/// once), logged as a `kind: bypass` record, listed, explained, and deleting it restarts
/// the count from zero.
#[test]
fn three_distinct_client_addresses_teach_the_bypass() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "", "");
    let root = pinning_root(&pki);
    for source in ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"] {
        let out = via_localhost(&sluice, origin.port(), root.path(), source);
        assert_eq!(out.code, 60, "{}", out.stderr);
    }
    sluice.wait_records("of rejections", 4, |r| {
        r["error"] == "client_rejected_certificate"
    });
    assert_eq!(
        bypasses(&sluice),
        serde_json::json!([]),
        "two addresses are not enough"
    );
    let out = via_localhost(&sluice, origin.port(), root.path(), "127.0.0.4");
    assert_eq!(out.code, 60, "{}", out.stderr);

    let record = sluice.wait_record("of kind bypass", |r| r["kind"] == "bypass");
    assert_eq!(record["sni"], "localhost");
    assert_eq!(record["reason"], "client_rejected_certificate");
    assert_eq!(record["count"], 3);
    let expires = record["expires"].as_str().unwrap();
    assert!(
        expires.contains('T') && expires.ends_with('Z'),
        "RFC 3339: {expires}"
    );
    let list = bypasses(&sluice);
    assert_eq!(list[0]["sni"], "localhost");
    assert_eq!(list[0]["count"], 3);
    assert_eq!(list[0]["reason"], "client_rejected_certificate");
    let explained: Value =
        serde_json::from_slice(&admin(&sluice, "GET", "/explain?host=localhost").body).unwrap();
    assert_eq!(explained["rule"], "learned-bypass", "{explained}");
    assert_eq!(explained["action"], "tunnel-sni");

    // Tunneled now: the pinning client meets the origin's own certificate.
    let out = via_localhost(&sluice, origin.port(), root.path(), "127.0.0.5");
    assert_eq!(out.code, 0, "tunneled: {}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    let tunneled = sluice.wait_record("of the tunnel", |r| r["rule"] == "learned-bypass");
    assert_eq!(tunneled["action"], "tunnel-sni");
    assert_eq!(tunneled["stage"], "client_hello");

    // Deleted: counting starts again from zero, so one more rejection is not enough.
    assert_eq!(admin(&sluice, "DELETE", "/bypass/localhost").status, 204);
    assert_eq!(admin(&sluice, "DELETE", "/bypass/localhost").status, 404);
    let out = via_localhost(&sluice, origin.port(), root.path(), "127.0.0.4");
    assert_eq!(out.code, 60, "bumped again: {}", out.stderr);
    sluice.wait_records("of rejections", 6, |r| {
        r["error"] == "client_rejected_certificate"
    });
    assert_eq!(bypasses(&sluice), serde_json::json!([]));
}

/// Finding 1: a server of the attacker's, reached with `CONNECT <ip>` and any SNI, that
/// sends a CertificateRequest must teach nothing: neither with a chain that does not
/// verify for the SNI, nor with a valid chain when the SNI does not resolve to the
/// address dialled. The connection still gets the block page.
#[test]
fn a_certificate_request_from_a_server_that_is_not_the_snis_teaches_nothing() {
    let pki = TestPki::new();
    let self_signed = Origin::start(OriginOptions {
        tls: Some(pki.self_signed()),
        client_ca: Some(pki.root_der()),
        ..Default::default()
    });
    let valid = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        client_ca: Some(pki.root_der()),
        ..Default::default()
    });
    // learn_after = 1: nothing but the chain and the address may stop the learning;
    // `allow` accepts the chain for the connection, which is no verified chain.
    let sluice = start(
        &pki,
        &[self_signed.port(), valid.port()],
        "learn_after = 1\non_cert_error = \"allow\"",
        "",
    );
    // CONNECT 127.0.0.1:PORT (curl --connect-to) with SNI victim.example (a self-signed
    // chain) and with a name the valid chain covers but that does not resolve there.
    for (sni, port) in [
        ("victim.example", self_signed.port()),
        (UNRESOLVED_NAME, valid.port()),
    ] {
        let out = fetch(
            &sluice.proxy_url(),
            sni,
            port,
            "/hello",
            &sluice.ca_path(),
            &[],
        );
        assert_eq!(out.status, 502, "{sni}: {}", out.stderr);
        assert!(
            out.headers
                .to_ascii_lowercase()
                .contains("x-sluice-block: upstream_tls_failed"),
            "{}",
            out.headers
        );
    }
    // Both SNIs are unverified for a CONNECT to the address (SPEC §1.3), which the
    // record says; the refused handshake shows as the block page above.
    sluice.wait_records("of the blocked connections", 2, |r| {
        r["kind"] == "connect" && r["error"] == "sni_unverified"
    });
    assert_eq!(bypasses(&sluice), serde_json::json!([]));
    assert!(bypass_records(&sluice).is_empty());
}

/// The legitimate case: a server whose chain verifies for the SNI, on an address the SNI
/// resolves to (`localhost`, even when the CONNECT names the IP), teaches at once.
#[test]
fn a_certificate_request_from_the_snis_own_server_teaches_at_once() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        client_ca: Some(pki.root_der()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "", "");
    // CONNECT 127.0.0.1:PORT with SNI localhost, which resolves to 127.0.0.1.
    let out = fetch(
        &sluice.proxy_url(),
        "localhost",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    assert_eq!(out.status, 502, "{}", out.stderr);
    let record = sluice.wait_record("of kind bypass", |r| r["kind"] == "bypass");
    assert_eq!(record["sni"], "localhost");
    assert_eq!(record["reason"], "client_certificate_requested");
    assert_eq!(record["count"], 1);
    // Tunneled now: the client itself meets the certificate request.
    let root = pinning_root(&pki);
    let _ = via_localhost(&sluice, origin.port(), root.path(), "127.0.0.2");
    let tunneled = sluice.wait_record("of the tunnel", |r| r["rule"] == "learned-bypass");
    assert_eq!(tunneled["action"], "tunnel-sni");
}

/// An `openssl s_server` child, killed when the test ends.
struct OpensslServer(std::process::Child);

impl Drop for OpensslServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TLS 1.2 server demanding a client certificate (`-Verify 1`) fails the handshake
/// after its chain, unlike a TLS 1.3 one: its chain is still classified, and a valid one
/// on an address the SNI resolves to teaches at once.
#[test]
fn a_tls12_server_that_demands_a_client_certificate_teaches_at_once() {
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
    let _server = OpensslServer(
        std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-tls1_2", "-Verify", "1"])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", "cert.pem", "-key", "key.pem"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sluice = start(&pki, &[port], "", "");
    let out = via_localhost(&sluice, port, &sluice.ca_path(), "127.0.0.2");
    assert_eq!(out.status, 502, "{}", out.stderr);
    let record = sluice.wait_record("of kind bypass", |r| r["kind"] == "bypass");
    assert_eq!(record["sni"], "localhost");
    assert_eq!(record["reason"], "client_certificate_requested");
    assert_eq!(record["count"], 1);
}

/// The learned bypasses survive a restart (`tls.learn_state`, written within a second
/// of the change and at exit).
#[test]
fn a_learned_bypass_survives_a_restart() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        client_ca: Some(pki.root_der()),
        ..Default::default()
    });
    let mut sluice = start(&pki, &[origin.port()], "", "");
    let out = via_localhost(&sluice, origin.port(), &sluice.ca_path(), "127.0.0.2");
    assert_eq!(out.status, 502, "{}", out.stderr);
    sluice.wait_record("of kind bypass", |r| r["kind"] == "bypass");
    let state = sluice.path("sluice-data/bypass.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("localhost")) {
        assert!(
            Instant::now() < deadline,
            "the state file was not written: {}",
            sluice.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = bypasses(&sluice);
    assert!(sluice.terminate(Duration::from_secs(40)).is_some());

    let dir = std::mem::replace(&mut sluice.dir, tempfile::tempdir().unwrap());
    let restarted = Sluice::spawn(dir, &["run", "-c", "sluice.toml"]);
    assert_eq!(bypasses(&restarted), before);
    let root = pinning_root(&pki);
    let _ = via_localhost(&restarted, origin.port(), root.path(), "127.0.0.3");
    let tunneled = restarted.wait_record("of the tunnel", |r| {
        r["kind"] == "connect" && r["rule"] == "learned-bypass"
    });
    assert_eq!(tunneled["action"], "tunnel-sni");
    // `sluice explain` reads the same file.
    let explained = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["explain", "-c", "sluice.toml", "--host", "localhost"])
        .current_dir(restarted.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains("result: tunnel-sni at stage client_hello, rule learned-bypass"),
        "{text}"
    );
}

/// `/explain` and `sluice explain` decide with the learned bypasses in force, as a
/// connection would (issue 12): bump by default before the learning, tunnel-sni by the
/// learned bypass after, for the SNI in any form; a rule still wins over it.
#[test]
fn explain_tells_a_learned_bypass_from_a_rule_and_the_default() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        client_ca: Some(pki.root_der()),
        ..Default::default()
    });
    let rule = "[[ssl_rules]]\nname = \"inspect\"\ndomains = [\"bump.test\"]\naction = \"bump\"\n";
    let sluice = start(&pki, &[origin.port()], "", rule);
    let explain = |query: &str| -> Value {
        let out = admin(&sluice, "GET", &format!("/explain?{query}"));
        assert_eq!(out.status, 200, "{}", out.body_text());
        serde_json::from_slice(&out.body).unwrap()
    };
    let command = |args: &[&str]| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["explain", "-c", "sluice.toml"])
            .args(args)
            .current_dir(sluice.dir.path())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = explain("host=localhost&sni=localhost");
    assert_eq!(before["action"], "bump", "{before}");
    assert_eq!(before["rule"], "default");
    assert_eq!(before["by"], "default");
    let text = command(&["--host", "localhost", "--sni", "localhost"]);
    assert!(
        text.contains("result: bump at stage client_hello, rule default"),
        "{text}"
    );

    // A server that asks for a client certificate teaches the bypass at once.
    let out = via_localhost(&sluice, origin.port(), &sluice.ca_path(), "127.0.0.2");
    assert_eq!(out.status, 502, "{}", out.stderr);
    sluice.wait_record("of kind bypass", |r| r["kind"] == "bypass");

    for query in [
        "host=localhost&sni=localhost",
        "host=localhost",
        "host=LocalHost.&sni=LOCALHOST",
    ] {
        let after = explain(query);
        assert_eq!(after["action"], "tunnel-sni", "{query}: {after}");
        assert_eq!(after["rule"], "learned-bypass", "{query}: {after}");
        assert_eq!(after["by"], "learned_bypass", "{query}: {after}");
        assert_eq!(after["stage"], "client_hello", "{query}: {after}");
        assert_eq!(after["client_hello"]["by"], "learned_bypass", "{after}");
    }
    // A lying SNI is closed by the SNI check, learned bypass or not.
    let lie = explain("host=bump.test&sni=localhost");
    assert_eq!(lie["action"], "terminate", "{lie}");
    assert_eq!(lie["by"], "sni_mismatch", "{lie}");
    assert_eq!(lie["rule"], Value::Null, "no rule decides: {lie}");
    // A rule decides its names whatever was learned.
    let ruled = explain("host=bump.test&sni=bump.test");
    assert_eq!(ruled["by"], "rule", "{ruled}");
    assert_eq!(ruled["rule"], "inspect", "{ruled}");

    // `sluice explain` reads the table the proxy keeps in tls.learn_state.
    let state = sluice.path("sluice-data/bypass.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("localhost")) {
        assert!(Instant::now() < deadline, "the state file was not written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = command(&["--host", "localhost", "--sni", "localhost"]);
    assert!(
        text.contains("the SNI is a learned bypass: tunnel-sni"),
        "{text}"
    );
    assert!(
        text.contains("result: tunnel-sni at stage client_hello, rule learned-bypass"),
        "{text}"
    );
}

/// Finding 2: with `on_cert_error = "untrusted"`, a session made while the server was
/// valid (trusted CA) must not be resumed once the server is invalid (untrusted CA),
/// nor the reverse: a resumed session would skip the client's certificate warning.
#[test]
fn a_session_is_never_resumed_across_trusted_and_untrusted() {
    let pki = TestPki::new();
    let valid = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let expired = Origin::start(OriginOptions {
        tls: Some(pki.expired()),
        ..Default::default()
    });
    let sluice = start(
        &pki,
        &[valid.port(), expired.port()],
        "on_cert_error = \"untrusted\"",
        "",
    );
    let proxy = sluice.addr.to_string();
    let ca = sluice.ca_path();
    let ca = ca.to_str().unwrap();
    let session = tempfile::NamedTempFile::new().unwrap();
    let session = session.path().to_str().unwrap();
    let request = "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let s_client = |port: u16, session_flag: &str| {
        let target = format!("localhost:{port}");
        openssl_s_client(
            &[
                "-proxy",
                &proxy,
                "-connect",
                &target,
                "-servername",
                "localhost",
                "-CAfile",
                ca,
                "-ign_eof",
                session_flag,
                session,
            ],
            request,
        )
    };
    for (from, to) in [
        (valid.port(), expired.port()),
        (expired.port(), valid.port()),
    ] {
        let first = s_client(from, "-sess_out");
        assert!(first.contains(HELLO), "{first}");
        let second = s_client(to, "-sess_in");
        assert!(
            !second.contains("Reused,"),
            "resumed across verdicts: {second}"
        );
        assert!(second.contains("New, TLSv1.3"), "{second}");
        if to == expired.port() {
            // Served under the untrusted CA: the client's own verification fails.
            assert!(second.contains("Verify return code: "), "{second}");
            assert!(
                !second.contains("Verify return code: 0 (ok)"),
                "no warning: {second}"
            );
        }
    }
    // Within one verdict resumption still works.
    let first = s_client(valid.port(), "-sess_out");
    assert!(first.contains(HELLO), "{first}");
    let again = s_client(valid.port(), "-sess_in");
    assert!(again.contains("Reused, TLSv1.3"), "{again}");
}
