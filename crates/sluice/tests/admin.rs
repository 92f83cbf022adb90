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
