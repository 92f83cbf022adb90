//! Upstream certificate verification and its policies (SPEC §2.2, §2.3): each error
//! kind blocked with the block page by default, `untrusted`, `allow`, the per-rule
//! `cert_errors`, `trusted_server_certs`, and a server whose TLS handshake fails.

mod support;

use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use support::certs::{Leaf, TestPki};
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{fetch, CurlOutput, Origin, OriginOptions, Sluice};

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

fn get(sluice: &Sluice, origin: &Origin, cacert: &std::path::Path) -> CurlOutput {
    fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        cacert,
        &[],
    )
}

/// With the default policy the client gets a trusted certificate and a 502 block page
/// naming the error kind; nothing reaches the server.
fn assert_blocked(make: impl Fn(&TestPki) -> Leaf, kind: &str) {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(make(&pki)),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "", "");
    let out = get(&sluice, &origin, &sluice.ca_path());
    assert_eq!(
        out.code, 0,
        "the replacement certificate is trusted: {}",
        out.stderr
    );
    assert_eq!(out.status, 502);
    assert!(
        out.headers
            .to_ascii_lowercase()
            .contains("x-sluice-block: cert_error"),
        "{}",
        out.headers
    );
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("cache-control: no-store"));
    let page = out.body_text();
    assert!(
        page.contains(kind),
        "the page names the error kind {kind}: {page}"
    );
    assert!(page.contains("bump.test"), "the page names the server");
    assert!(
        origin.requests().is_empty(),
        "nothing was sent to the server"
    );
    let connect = sluice.connect_record();
    assert_eq!(connect["upstream_cert"], kind);
    assert_eq!(connect["action"], "bump");
    let http = sluice.http_record();
    assert_eq!(http["status"], 502);
    assert_eq!(http["verdict"], "blocked");
}

#[test]
fn an_expired_certificate_is_blocked() {
    assert_blocked(TestPki::expired, "expired");
}

#[test]
fn a_not_yet_valid_certificate_is_blocked() {
    assert_blocked(TestPki::not_yet_valid, "not_yet_valid");
}

#[test]
fn a_self_signed_certificate_is_blocked_as_unknown_issuer() {
    assert_blocked(TestPki::self_signed, "unknown_issuer");
}

#[test]
fn a_certificate_from_an_unknown_issuer_is_blocked() {
    assert_blocked(TestPki::unknown_issuer, "unknown_issuer");
}

#[test]
fn a_certificate_for_another_name_is_blocked() {
    assert_blocked(TestPki::wrong_name, "name_mismatch");
}

#[test]
fn untrusted_makes_the_client_show_its_own_warning_and_inspects_if_it_proceeds() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.expired()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "on_cert_error = \"untrusted\"", "");
    let refused = get(&sluice, &origin, &sluice.ca_path());
    assert_eq!(
        refused.code, 60,
        "curl rejects the untrusted replacement: {}",
        refused.stderr
    );
    let insecure = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &["-k"],
    );
    assert_eq!(insecure.code, 0, "{}", insecure.stderr);
    assert_eq!(insecure.body_text(), HELLO);
    let http = sluice.http_record();
    assert_eq!(http["status"], 200);
    let rejected = sluice.wait_record("of the rejecting client", |r| {
        r["kind"] == "connect" && r["error"] == "client_rejected_certificate"
    });
    assert_eq!(rejected["upstream_cert"], "expired");
}

#[test]
fn allow_proceeds_as_if_the_chain_were_valid_and_logs_the_real_kind() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.wrong_name()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "on_cert_error = \"allow\"", "");
    let out = get(&sluice, &origin, &sluice.ca_path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    assert_eq!(sluice.connect_record()["upstream_cert"], "name_mismatch");
}

#[test]
fn a_rules_cert_errors_overrides_the_global_policy() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.self_signed()),
        ..Default::default()
    });
    let rules = "[[ssl_rules]]\nname = \"internal\"\ndomains = [\"bump.test\"]\naction = \"bump\"\ncert_errors = \"allow\"\n";
    let sluice = start(&pki, &origin, "", rules);
    let out = get(&sluice, &origin, &sluice.ca_path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.status, 200);
    assert_eq!(out.body_text(), HELLO);
    let connect = sluice.connect_record();
    assert_eq!(connect["rule"], "internal");
    assert_eq!(connect["upstream_cert"], "unknown_issuer");
}

#[test]
fn a_pinned_server_certificate_is_treated_as_valid() {
    let pki = TestPki::new();
    let leaf = pki.self_signed();
    let fingerprint: String = Sha256::digest(&leaf.chain[0])
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let origin = Origin::start(OriginOptions {
        tls: Some(leaf),
        ..Default::default()
    });
    let tls = format!("trusted_server_certs = [\"sha256:{fingerprint}\"]");
    let sluice = start(&pki, &origin, &tls, "");
    let out = get(&sluice, &origin, &sluice.ca_path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    assert_eq!(sluice.connect_record()["upstream_cert"], "unknown_issuer");
}

#[test]
fn a_server_that_does_not_speak_tls_gets_the_upstream_tls_failed_block_page() {
    let pki = TestPki::new();
    let plain = Origin::start(OriginOptions {
        tls: None,
        ..Default::default()
    });
    let sluice = start(&pki, &plain, "", "");
    let out = get(&sluice, &plain, &sluice.ca_path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.status, 502);
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("x-sluice-block: upstream_tls_failed"));
    assert!(out
        .body_text()
        .contains("TLS handshake with bump.test failed"));
    let connect = sluice.connect_record();
    assert_eq!(connect["error"], "upstream_tls_failed");
    assert!(connect.get("upstream_cert").is_none());
    assert_eq!(plain.seen.handshakes.load(Ordering::SeqCst), 0);
}

#[test]
fn rsa_leaf_keys_work_end_to_end() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "leaf_key = \"rsa-2048\"", "");
    // TLS 1.2 names the certificate's key type in the negotiated suite.
    let extra = ["-v", "--tlsv1.2", "--tls-max", "1.2"];
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &extra,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    assert!(
        out.stderr.contains("ECDHE-RSA"),
        "an RSA leaf was served: {}",
        out.stderr
    );
}

#[test]
fn a_second_connection_to_the_same_server_reuses_the_cached_certificate() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &origin, "", "");
    let cert_of = |out: &CurlOutput| {
        out.stderr
            .lines()
            .find(|l| l.contains("start date"))
            .map(str::to_string)
            .unwrap_or_default()
    };
    let first = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &["-v"],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &["-v"],
    );
    assert_eq!(first.code, 0);
    assert_eq!(second.code, 0);
    // A fresh mint would carry a new notBefore (now - 1 h, to the second).
    assert!(!cert_of(&first).is_empty(), "{}", first.stderr);
    assert_eq!(cert_of(&first), cert_of(&second));
}
