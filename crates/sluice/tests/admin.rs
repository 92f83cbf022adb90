//! The admin endpoint (SPEC §8): the CA for clients, health, `/explain`, and the learned
//! bypass table (`GET /bypass`, `DELETE /bypass/<sni>`), driven with curl.

mod support;

use support::certs::TestPki;
use support::sluice::SluiceConfig;
use support::{curl, fetch, CurlOutput, Origin, OriginOptions, Sluice};

fn admin(sluice: &Sluice, method: &str, path: &str) -> CurlOutput {
    let url = format!(
        "http://{}{path}",
        sluice.admin.expect("the admin endpoint is on")
    );
    curl(&["-X", method, &url])
}

#[test]
fn the_ca_certificate_is_served_as_pem_and_der() {
    let pki = TestPki::new();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            ..Default::default()
        },
    );
    let pem = admin(&sluice, "GET", "/ca.pem");
    assert_eq!(pem.status, 200);
    assert_eq!(pem.body, std::fs::read(sluice.ca_path()).unwrap());
    assert!(!pem.body_text().contains("PRIVATE"));
    let der = admin(&sluice, "GET", "/ca.der");
    assert_eq!(der.status, 200);
    assert_eq!(der.body[0], 0x30, "DER");
    assert!(der
        .headers
        .to_ascii_lowercase()
        .contains("content-type: application/pkix-cert"));
    assert_eq!(admin(&sluice, "GET", "/healthz").status, 200);
    assert_eq!(admin(&sluice, "GET", "/nothing").status, 404);
    assert_eq!(admin(&sluice, "POST", "/ca.pem").status, 405);
}

#[test]
fn explain_answers_json_with_the_deciding_rule() {
    let pki = TestPki::new();
    let rules = "[[ssl_rules]]\nname = \"banking\"\ndomains = [\".bank.example\"]\naction = \"tunnel-sni\"\n";
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            rest: rules,
            ..Default::default()
        },
    );
    let out = admin(
        &sluice,
        "GET",
        "/explain?host=203.0.113.7&sni=www.bank.example&client=10.1.2.3",
    );
    assert_eq!(out.status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(answer["action"], "tunnel-sni");
    assert_eq!(answer["rule"], "banking");
    assert_eq!(answer["stage"], "client_hello");
    let out = admin(&sluice, "GET", "/explain?host=news.example");
    let answer: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(answer["action"], "bump");
    assert_eq!(answer["rule"], "default");
    assert_eq!(admin(&sluice, "GET", "/explain").status, 400);
}

#[test]
fn learned_bypasses_are_listed_and_deleted() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            tls: "learn_after = 1",
            ..Default::default()
        },
    );
    let root = tempfile::NamedTempFile::new().unwrap();
    pki.write_root(root.path());
    // A client that does not trust sluice's CA: one rejection is enough here.
    let rejected = fetch(
        &sluice.proxy_url(),
        "tunnel.test",
        origin.port(),
        "/hello",
        root.path(),
        &[],
    );
    assert_eq!(rejected.code, 60);
    sluice.wait_record("of the rejection", |r| {
        r["error"] == "client_rejected_certificate"
    });
    let list: serde_json::Value =
        serde_json::from_slice(&admin(&sluice, "GET", "/bypass").body).unwrap();
    let entry = &list[0];
    assert_eq!(entry["sni"], "tunnel.test");
    assert_eq!(entry["reason"], "client_rejected_certificate");
    assert_eq!(entry["count"], 1);
    let expires = entry["expires"].as_str().unwrap();
    assert!(
        expires.contains('T') && expires.ends_with('Z'),
        "RFC 3339: {expires}"
    );

    assert_eq!(admin(&sluice, "DELETE", "/bypass/tunnel.test").status, 204);
    assert_eq!(admin(&sluice, "DELETE", "/bypass/tunnel.test").status, 404);
    let list: serde_json::Value =
        serde_json::from_slice(&admin(&sluice, "GET", "/bypass").body).unwrap();
    assert_eq!(list, serde_json::json!([]));
    // Bumped again: the pinning client rejects the replacement once more.
    let again = fetch(
        &sluice.proxy_url(),
        "tunnel.test",
        origin.port(),
        "/hello",
        root.path(),
        &[],
    );
    assert_eq!(again.code, 60);
}

#[test]
fn a_request_to_the_admin_socket_through_the_proxy_is_a_loop() {
    let pki = TestPki::new();
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            ..Default::default()
        },
    );
    let url = format!("http://{}/healthz", sluice.admin.unwrap());
    let out = curl(&["-x", &sluice.proxy_url(), &url]);
    assert_eq!(out.status, 508);
}

#[test]
fn metrics_move_with_traffic_and_pass_promtool() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            ..Default::default()
        },
    );
    for _ in 0..2 {
        let out = fetch(
            &sluice.proxy_url(),
            "bump.test",
            origin.port(),
            "/hello",
            &sluice.ca_path(),
            &[],
        );
        assert_eq!(out.status, 200);
    }
    let root = tempfile::NamedTempFile::new().unwrap();
    pki.write_root(root.path());
    let rejected = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        root.path(),
        &[],
    );
    assert_eq!(rejected.code, 60);
    sluice.wait_records("of three connections", 3, |r| r["kind"] == "connect");
    let scrape = admin(&sluice, "GET", "/metrics");
    assert_eq!(scrape.status, 200);
    let text = scrape.body_text();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
    };
    assert_eq!(
        value("sluice_connections_total{action=\"bump\",stage=\"client_hello\",rule=\"default\"}"),
        3.0
    );
    assert_eq!(
        value("sluice_http_requests_total{verdict=\"allowed\"}"),
        2.0
    );
    assert_eq!(
        value(
            "sluice_handshake_failures_total{side=\"client\",kind=\"client_rejected_certificate\"}"
        ),
        1.0
    );
    assert_eq!(value("sluice_cert_cache_misses_total"), 1.0);
    assert_eq!(value("sluice_cert_cache_hits_total"), 2.0);
    assert_eq!(value("sluice_cert_cache_size"), 1.0);
    assert_eq!(value("sluice_active_connections"), 0.0);
    assert!(value("sluice_phase_seconds_count{phase=\"upstream_tls\"}") >= 3.0);

    // The Prometheus project's own linter accepts the exposition.
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is needed for this test (apt-get install prometheus)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
