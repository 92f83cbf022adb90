//! The learned bypass (SPEC §1) as policy: which evidence may teach a bypass, and how a
//! learned bypass enters the `client_hello` decision and `explain`, with the facts an
//! attacker controls.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use sluice_policy::{
    BypassEvidence, Config, Policy, SslAction, SslDecision, SslFacts, LEARNED_BYPASS_RULE,
};

fn policy(text: &str) -> Policy {
    Config::from_str(text, "sluice.toml", Path::new("."))
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"))
        .policy
}

/// A CONNECT to `name:443` from 10.1.2.3, resolved to 192.0.2.10.
fn facts(name: &str) -> SslFacts<'_> {
    SslFacts {
        client: "10.1.2.3".parse::<IpAddr>().unwrap(),
        user: None,
        groups: &[],
        user_agent: None,
        dest_name: Some(name),
        dest_ip: Some("192.0.2.10".parse().unwrap()),
        port: 443,
    }
}

fn learned() -> SslDecision {
    SslDecision {
        action: SslAction::TunnelSni,
        rule: LEARNED_BYPASS_RULE.to_owned(),
        cert_errors: None,
    }
}

const RULES: &str = r#"
[[ssl_rules]]
name = "inspect"
domains = ["inspect.example"]
action = "bump"

[[ssl_rules]]
name = "blocked"
domains = ["blocked.example"]
action = "terminate"
"#;

const REQUESTED_BY_THE_NAMES_SERVER: BypassEvidence = BypassEvidence::CertificateRequested {
    chain_ok: true,
    dialled_resolves: true,
};

#[test]
fn a_learned_bypass_overrides_only_the_default_bump() {
    let p = policy(RULES);
    assert_eq!(
        p.decide_client_hello_learned(&facts("pinned.example"), true),
        learned()
    );
    assert_eq!(
        p.decide_client_hello_learned(&facts("pinned.example"), false)
            .rule,
        "default"
    );
    // A rule that matches decides, whatever its action.
    assert_eq!(
        p.decide_client_hello_learned(&facts("inspect.example"), true)
            .rule,
        "inspect"
    );
    assert_eq!(
        p.decide_client_hello_learned(&facts("blocked.example"), true)
            .action,
        SslAction::Terminate
    );
    // A default that is not bump is not overridden.
    let p = policy(&format!("[tls]\ndefault_action = \"terminate\"\n{RULES}"));
    assert_eq!(
        p.decide_client_hello_learned(&facts("pinned.example"), true)
            .action,
        SslAction::Terminate
    );
}

#[test]
fn with_learning_off_the_table_is_neither_fed_nor_consulted() {
    let p = policy("[tls]\nlearn_bypass = false\n");
    assert_eq!(
        p.decide_client_hello_learned(&facts("pinned.example"), true)
            .action,
        SslAction::Bump
    );
    assert!(!p.may_learn_bypass("pinned.example", BypassEvidence::ClientRejected));
    assert!(!p.may_learn_bypass("mtls.example", REQUESTED_BY_THE_NAMES_SERVER));
}

/// Finding 1 (issue 13): `CONNECT <any IP>:443` with SNI `victim.example` to an
/// attacker's server that asks for a client certificate must teach nothing.
#[test]
fn a_certificate_request_teaches_only_from_the_names_own_server() {
    let p = policy("");
    assert!(p.may_learn_bypass("mtls.example", REQUESTED_BY_THE_NAMES_SERVER));
    for (chain_ok, dialled_resolves) in [(false, true), (true, false), (false, false)] {
        let evidence = BypassEvidence::CertificateRequested {
            chain_ok,
            dialled_resolves,
        };
        assert!(
            !p.may_learn_bypass("victim.example", evidence),
            "{evidence:?}"
        );
    }
    assert!(p.may_learn_bypass("pinned.example", BypassEvidence::ClientRejected));
    assert!(!p.may_learn_bypass("bad..name", BypassEvidence::ClientRejected));
}

#[test]
fn a_name_on_an_anti_phishing_list_is_never_learned_nor_tunneled() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = std::fs::File::create(dir.path().join("phish.txt")).unwrap();
    writeln!(list, "evil.example\nhttps://login.example/signin").unwrap();
    let p = Config::from_str(
        "[anti_phishing]\nlists = [\"phish.txt\"]\n",
        "sluice.toml",
        dir.path(),
    )
    .unwrap()
    .policy;
    for name in ["evil.example", "www.Evil.Example.", "login.example"] {
        assert!(
            !p.may_learn_bypass(name, BypassEvidence::ClientRejected),
            "{name}"
        );
        assert!(
            !p.may_learn_bypass(name, REQUESTED_BY_THE_NAMES_SERVER),
            "{name}"
        );
        // Learned before the list was loaded: still inspected.
        assert_eq!(
            p.decide_client_hello_learned(&facts(name), true).action,
            SslAction::Bump,
            "{name}"
        );
    }
    assert!(p.may_learn_bypass("fine.example", BypassEvidence::ClientRejected));
}

#[test]
fn explain_says_learned_bypass_as_a_connection_would_be_decided() {
    let p = policy(RULES);
    let e = p.explain_learned(&facts("pinned.example"), Some("pinned.example"), true);
    assert_eq!(e.client_hello, Some(learned()));
    assert_eq!(
        e.to_string(),
        "stage connect (name pinned.example):\n  no rule matches: read the ClientHello\n\
         stage client_hello (name pinned.example, from the SNI):\n  no rule matches and the SNI is a learned bypass: tunnel-sni\n\
         result: tunnel-sni at stage client_hello, rule learned-bypass"
    );
    // Without an SNI the name is the CONNECT host's.
    let e = p.explain_learned(&facts("pinned.example"), None, true);
    assert_eq!(e.client_hello, Some(learned()));
    // An SNI after a CONNECT to an IP address is unverified: not consulted.
    let ip_only = SslFacts {
        dest_name: None,
        ..facts("unused")
    };
    let e = p.explain_learned(&ip_only, Some("pinned.example"), true);
    assert_eq!(e.client_hello.unwrap().rule, "default");
    // And a rule still wins.
    let e = p.explain_learned(&facts("inspect.example"), Some("inspect.example"), true);
    assert_eq!(e.client_hello.unwrap().rule, "inspect");
}
