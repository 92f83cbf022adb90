//! The four actions of SPEC §1, each seen by a real client (curl) through the real
//! proxy to a real TLS origin, with the access-log record that says which stage and
//! rule decided.

mod support;

use std::sync::atomic::Ordering;

use support::certs::TestPki;
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{fetch, Origin, OriginOptions, Sluice};

struct Setup {
    pki: TestPki,
    origin: Origin,
    /// The origin's root, for clients of tunneled connections.
    root: tempfile::NamedTempFile,
}

fn setup() -> Setup {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let root = tempfile::NamedTempFile::new().unwrap();
    pki.write_root(root.path());
    Setup { pki, origin, root }
}

fn start(s: &Setup, tls: &str, rest: &str) -> Sluice {
    Sluice::start(
        &s.pki,
        SluiceConfig {
            connect_ports: &[s.origin.port()],
            tls,
            rest,
            ..Default::default()
        },
    )
}

#[test]
fn bump_is_the_default_and_the_client_sees_sluices_certificate() {
    let s = setup();
    let sluice = start(&s, "", "");
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        s.origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    // Trusting only sluice's CA works: the certificate was minted by sluice.
    assert_eq!(out.code, 0, "curl failed: {}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    let http = sluice.http_record();
    assert_eq!(
        http["url"],
        format!("https://bump.test:{}/hello", s.origin.port())
    );
    assert_eq!(http["status"], 200);
    assert_eq!(http["verdict"], "allowed");
    assert_eq!(http["method"], "GET");
    assert_eq!(http["sni"], "bump.test");
    assert!(http["request_id"].is_string());
    let connect = sluice.connect_record();
    assert_eq!(connect["action"], "bump");
    assert_eq!(connect["stage"], "client_hello");
    assert_eq!(connect["rule"], "default");
    assert_eq!(connect["sni"], "bump.test");
    assert_eq!(connect["host"], "127.0.0.1");
    assert_eq!(connect["dest_ip"], "127.0.0.1");
    assert_eq!(connect["port"], s.origin.port());
    assert_eq!(connect["upstream_cert"], "ok");
    assert_eq!(connect["status"], 200);
    assert_eq!(connect["alpn"], "http/1.1");
    assert!(connect["tls_version"]
        .as_str()
        .unwrap()
        .starts_with("TLSv1."));
    assert!(connect["bytes_up"].as_u64().unwrap() > 0);
    assert!(connect["bytes_down"].as_u64().unwrap() > 0);
    assert!(connect["ts"].as_str().unwrap().contains('T'));
    assert_eq!(connect["client"], "127.0.0.1");
}

#[test]
fn a_tunnel_rule_on_the_connect_ip_relays_the_servers_own_certificate() {
    let s = setup();
    let sluice = start(
        &s,
        "",
        "[[ssl_rules]]\nname = \"loopback tunnel\"\nips = [\"127.0.0.0/8\"]\naction = \"tunnel\"\n",
    );
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        s.origin.port(),
        "/hello",
        s.root.path(),
        &[],
    );
    // Trusting only the origin's root works: the bytes were relayed untouched.
    assert_eq!(out.code, 0, "curl failed: {}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    let connect = sluice.connect_record();
    assert_eq!(connect["action"], "tunnel");
    assert_eq!(connect["stage"], "connect");
    assert_eq!(connect["rule"], "loopback tunnel");
    assert!(
        connect.get("sni").is_none(),
        "the ClientHello was not needed: {connect}"
    );
    assert!(connect["bytes_up"].as_u64().unwrap() > 200);
    assert!(connect["bytes_down"].as_u64().unwrap() > 200);
    assert!(sluice.records().iter().all(|r| r["kind"] != "http"));
}

#[test]
fn a_tunnel_sni_rule_decides_on_the_sni_and_relays_the_held_client_hello() {
    let s = setup();
    let sluice = start(&s, "", "[[ssl_rules]]\nname = \"sni tunnel\"\ndomains = [\"TUNNEL.test\"]\naction = \"tunnel-sni\"\n");
    let out = fetch(
        &sluice.proxy_url(),
        "tunnel.test",
        s.origin.port(),
        "/hello",
        s.root.path(),
        &[],
    );
    assert_eq!(out.code, 0, "curl failed: {}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    let connect = sluice.connect_record();
    assert_eq!(connect["action"], "tunnel-sni");
    assert_eq!(connect["stage"], "client_hello");
    assert_eq!(connect["rule"], "sni tunnel");
    assert_eq!(connect["sni"], "tunnel.test");
    assert_eq!(connect["ech"], false);
    assert_eq!(s.origin.seen.handshakes.load(Ordering::SeqCst), 1);
}

#[test]
fn terminate_closes_after_the_client_hello_and_sends_nothing_upstream() {
    let s = setup();
    let sluice = start(&s, "", "[[ssl_rules]]\nname = \"no terminate.test\"\ndomains = [\".terminate.test\"]\naction = \"terminate\"\n");
    let out = fetch(
        &sluice.proxy_url(),
        "terminate.test",
        s.origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    assert_ne!(out.code, 0, "the TLS connection must fail");
    assert!(out.body.is_empty(), "no block page: {}", out.body_text());
    let connect = sluice.connect_record();
    assert_eq!(connect["action"], "terminate");
    assert_eq!(connect["stage"], "client_hello");
    assert_eq!(connect["rule"], "no terminate.test");
    assert_eq!(connect["sni"], "terminate.test");
    assert_eq!(
        s.origin.seen.handshakes.load(Ordering::SeqCst),
        0,
        "nothing was sent upstream"
    );
    assert!(s.origin.requests().is_empty());
}

#[test]
fn the_default_action_applies_when_no_rule_matches() {
    let s = setup();
    let sluice = start(
        &s,
        "default_action = \"terminate\"",
        "[[ssl_rules]]\nname = \"bump.test only\"\ndomains = [\"bump.test\"]\naction = \"bump\"\n",
    );
    let bumped = fetch(
        &sluice.proxy_url(),
        "bump.test",
        s.origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    assert_eq!(bumped.code, 0, "{}", bumped.stderr);
    let other = fetch(
        &sluice.proxy_url(),
        "tunnel.test",
        s.origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    assert_ne!(other.code, 0);
    let terminated = sluice.wait_record("for tunnel.test", |r| {
        r["kind"] == "connect" && r["sni"] == "tunnel.test"
    });
    assert_eq!(terminated["action"], "terminate");
    assert_eq!(terminated["rule"], "default");
    let bump = sluice.wait_record("for bump.test", |r| {
        r["kind"] == "connect" && r["sni"] == "bump.test"
    });
    assert_eq!(bump["rule"], "bump.test only");
}

#[test]
fn with_decryption_disabled_everything_is_tunneled_whatever_the_rules_say() {
    let s = setup();
    let sluice = start(
        &s,
        "decryption = false",
        "[[ssl_rules]]\nname = \"bump all\"\naction = \"bump\"\n",
    );
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        s.origin.port(),
        "/hello",
        s.root.path(),
        &[],
    );
    assert_eq!(out.code, 0, "curl failed: {}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    let connect = sluice.connect_record();
    assert_eq!(connect["action"], "tunnel");
    assert_eq!(connect["stage"], "connect");
}

#[test]
fn a_category_from_a_file_drives_a_rule_at_the_client_hello_stage() {
    let s = setup();
    let lists = tempfile::tempdir().unwrap();
    let banks = lists.path().join("banks.txt");
    std::fs::write(&banks, "# banks\n*.bank.test\ntunnel.test # ours\n").unwrap();
    let rules = format!(
        "[categories]\nbanking = {{ file = {:?} }}\n\n[[ssl_rules]]\nname = \"banks\"\ncategories = [\"banking\"]\naction = \"tunnel-sni\"\n",
        banks.to_str().unwrap()
    );
    let sluice = start(&s, "", &rules);
    let tunneled = fetch(
        &sluice.proxy_url(),
        "tunnel.test",
        s.origin.port(),
        "/hello",
        s.root.path(),
        &[],
    );
    assert_eq!(tunneled.code, 0, "{}", tunneled.stderr);
    let bumped = fetch(
        &sluice.proxy_url(),
        "bump.test",
        s.origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    assert_eq!(bumped.code, 0, "{}", bumped.stderr);
    let tunnel = sluice.wait_record("for tunnel.test", |r| {
        r["kind"] == "connect" && r["sni"] == "tunnel.test"
    });
    assert_eq!(tunnel["action"], "tunnel-sni");
    assert_eq!(tunnel["rule"], "banks");
    let bump = sluice.wait_record("for bump.test", |r| {
        r["kind"] == "connect" && r["sni"] == "bump.test"
    });
    assert_eq!(bump["action"], "bump");
    assert_eq!(bump["rule"], "default");
}

#[test]
fn a_client_rule_keyed_on_the_client_address_and_a_user_agent_rule() {
    let s = setup();
    let rules = "[[ssl_rules]]\nname = \"old agents\"\nuser_agents = [\"^LegacyAgent/\"]\naction = \"terminate\"\n\n\
                 [[ssl_rules]]\nname = \"loopback clients\"\nclients = [\"127.0.0.1\"]\nports = [\"1-65535\"]\naction = \"tunnel\"\n";
    let sluice = start(&s, "", rules);
    let tunneled = fetch(
        &sluice.proxy_url(),
        "bump.test",
        s.origin.port(),
        "/hello",
        s.root.path(),
        &[],
    );
    assert_eq!(tunneled.code, 0, "{}", tunneled.stderr);
    let refused = fetch(
        &sluice.proxy_url(),
        "bump.test",
        s.origin.port(),
        "/hello",
        s.root.path(),
        &["--proxy-header", "User-Agent: LegacyAgent/1.0"],
    );
    assert_ne!(refused.code, 0);
    let tunnel = sluice.wait_record("tunnel", |r| r["action"] == "tunnel");
    assert_eq!(tunnel["rule"], "loopback clients");
    let terminate = sluice.wait_record("terminate", |r| r["action"] == "terminate");
    assert_eq!(terminate["rule"], "old agents");
}
