//! Stage `client_hello` as one decision (SPEC §1 steps 3 and 4), `Policy::decide_hello`,
//! with the facts a client controls: a lying SNI, an SNI in another form, an IP literal
//! for a name, an unverified SNI, real ECH, a learned bypass for a phishing name; and a
//! client that does not speak TLS (`Policy::decide_non_tls`).

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use sluice_policy::{
    Config, DecidedBy, HelloError, HelloFacts, NonTlsStep, Policy, SslAction, SslFacts,
    LEARNED_BYPASS_RULE,
};

fn policy(text: &str) -> Policy {
    Config::from_str(text, "sluice.toml", Path::new("."))
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"))
        .policy
}

const RULES: &str = r#"
[[ssl_rules]]
name = "banking"
domains = [".bank.example"]
action = "tunnel-sni"

[[ssl_rules]]
name = "blocked"
domains = ["blocked.example"]
action = "terminate"

[[ssl_rules]]
name = "by address"
ips = ["198.51.100.0/24"]
action = "tunnel"
"#;

/// `CONNECT host:443` from 10.1.2.3; an IP literal `host` leaves no name. Dialled to
/// `dest_ip`.
fn connect<'a>(host: &'a str, dest_ip: &str) -> SslFacts<'a> {
    SslFacts {
        client: "10.1.2.3".parse().unwrap(),
        user: None,
        groups: &[],
        user_agent: None,
        dest_name: host.parse::<IpAddr>().is_err().then_some(host),
        dest_ip: Some(dest_ip.parse().unwrap()),
        port: 443,
    }
}

/// A plain ClientHello with `sni` after `connect`, verified, nothing learned.
fn hello<'a>(connect: SslFacts<'a>, sni: Option<&'a str>) -> HelloFacts<'a> {
    HelloFacts {
        connect,
        sni,
        ech: false,
        sni_verified: true,
        learned_bypass: false,
    }
}

/// (action, logged rule, mechanism, error) of a decision.
fn outcome(
    p: &Policy,
    facts: &HelloFacts<'_>,
) -> (SslAction, Option<String>, DecidedBy, Option<HelloError>) {
    let d = p.decide_hello(facts);
    (
        d.decision.action,
        d.rule().map(str::to_owned),
        d.by,
        d.error,
    )
}

fn by_rule(
    action: SslAction,
    rule: &str,
) -> (SslAction, Option<String>, DecidedBy, Option<HelloError>) {
    (action, Some(rule.to_owned()), DecidedBy::Rule, None)
}

/// `CONNECT www.bank.example` then a ClientHello for another name: the tunnel the
/// CONNECT name would earn is not given to the SNI's server; the connection is closed
/// before any rule, with no rule in the log.
#[test]
fn a_lying_sni_is_terminated_before_any_rule_decides() {
    let p = policy(RULES);
    let lie = hello(
        connect("www.bank.example", "192.0.2.10"),
        Some("evil.example"),
    );
    assert_eq!(
        outcome(&p, &lie),
        (
            SslAction::Terminate,
            None,
            DecidedBy::SniMismatch,
            Some(HelloError::SniMismatch)
        )
    );
    // Even when the lie is a learned bypass.
    let learned = HelloFacts {
        learned_bypass: true,
        ..lie
    };
    assert_eq!(p.decide_hello(&learned).by, DecidedBy::SniMismatch);
    // An IP literal for an SNI is a name that differs too.
    let literal = hello(
        connect("www.bank.example", "192.0.2.10"),
        Some("192.0.2.10"),
    );
    assert_eq!(p.decide_hello(&literal).by, DecidedBy::SniMismatch);
}

#[test]
fn the_same_name_in_another_form_is_no_mismatch() {
    let p = policy(RULES);
    for sni in ["WWW.Bank.Example", "www.bank.example.", "www.bank.example"] {
        let facts = hello(connect("www.bank.example", "192.0.2.10"), Some(sni));
        assert_eq!(
            outcome(&p, &facts),
            by_rule(SslAction::TunnelSni, "banking"),
            "{sni}"
        );
    }
    let facts = hello(
        connect("WWW.BANK.EXAMPLE.", "192.0.2.10"),
        Some("www.bank.example"),
    );
    assert_eq!(
        outcome(&p, &facts),
        by_rule(SslAction::TunnelSni, "banking")
    );
}

#[test]
fn with_on_sni_mismatch_ignore_the_sni_decides() {
    let p = policy(&format!("[tls]\non_sni_mismatch = \"ignore\"\n{RULES}"));
    let facts = hello(
        connect("news.example", "192.0.2.10"),
        Some("blocked.example"),
    );
    assert_eq!(
        outcome(&p, &facts),
        by_rule(SslAction::Terminate, "blocked")
    );
    let facts = hello(
        connect("news.example", "192.0.2.10"),
        Some("www.bank.example"),
    );
    assert_eq!(
        outcome(&p, &facts),
        by_rule(SslAction::TunnelSni, "banking")
    );
}

/// `CONNECT 203.0.113.9:443` with SNI `www.bank.example` that does not resolve there:
/// no tunnel by name, no learned bypass, error `sni_unverified`; restrictive rules and
/// rules on the address (an IPv4-mapped IPv6 one too) still apply.
#[test]
fn an_unverified_sni_earns_nothing_by_its_name() {
    let p = policy(RULES);
    let verified = hello(
        connect("203.0.113.9", "203.0.113.9"),
        Some("www.bank.example"),
    );
    assert_eq!(
        outcome(&p, &verified),
        by_rule(SslAction::TunnelSni, "banking")
    );
    let unverified = HelloFacts {
        sni_verified: false,
        learned_bypass: true,
        ..verified
    };
    assert_eq!(
        outcome(&p, &unverified),
        (
            SslAction::Bump,
            Some("default".to_owned()),
            DecidedBy::Default,
            Some(HelloError::SniUnverified)
        )
    );
    let blocked = HelloFacts {
        sni: Some("blocked.example"),
        ..unverified
    };
    let (action, rule, _, error) = outcome(&p, &blocked);
    assert_eq!(
        (action, rule.as_deref()),
        (SslAction::Terminate, Some("blocked"))
    );
    assert_eq!(error, Some(HelloError::SniUnverified));
    for address in ["198.51.100.7", "::ffff:198.51.100.7"] {
        let by_address = HelloFacts {
            connect: connect(address, address),
            ..unverified
        };
        let (action, rule, _, _) = outcome(&p, &by_address);
        assert_eq!(
            (action, rule.as_deref()),
            (SslAction::Tunnel, Some("by address")),
            "{address}"
        );
    }
    // After a CONNECT to a name there is nothing to verify: a stray `false` changes
    // nothing.
    let named = HelloFacts {
        sni_verified: false,
        ..hello(
            connect("www.bank.example", "192.0.2.10"),
            Some("www.bank.example"),
        )
    };
    assert_eq!(
        outcome(&p, &named),
        by_rule(SslAction::TunnelSni, "banking")
    );
}

#[test]
fn a_learned_bypass_decides_only_over_the_default_and_says_so() {
    let p = policy(RULES);
    let pinned = HelloFacts {
        learned_bypass: true,
        ..hello(
            connect("pinned.example", "192.0.2.10"),
            Some("pinned.example"),
        )
    };
    assert_eq!(
        outcome(&p, &pinned),
        (
            SslAction::TunnelSni,
            Some(LEARNED_BYPASS_RULE.to_owned()),
            DecidedBy::LearnedBypass,
            None
        )
    );
    // Without an SNI the CONNECT name is asked about.
    let no_sni = HelloFacts {
        sni: None,
        ..pinned
    };
    assert_eq!(no_sni.name(), Some("pinned.example"));
    assert_eq!(p.decide_hello(&no_sni).by, DecidedBy::LearnedBypass);
    let ruled = HelloFacts {
        sni: Some("blocked.example"),
        connect: connect("blocked.example", "192.0.2.10"),
        ..pinned
    };
    assert_eq!(
        outcome(&p, &ruled),
        by_rule(SslAction::Terminate, "blocked")
    );
    let off = policy(&format!("[tls]\nlearn_bypass = false\n{RULES}"));
    assert_eq!(off.decide_hello(&pinned).by, DecidedBy::Default);
}

#[test]
fn a_learned_bypass_for_a_phishing_name_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut list = std::fs::File::create(dir.path().join("phish.txt")).unwrap();
    writeln!(list, "evil.example").unwrap();
    let p = Config::from_str(
        "[anti_phishing]\nlists = [\"phish.txt\"]\n",
        "sluice.toml",
        dir.path(),
    )
    .unwrap()
    .policy;
    let phish = HelloFacts {
        learned_bypass: true,
        ..hello(
            connect("www.evil.example", "192.0.2.10"),
            Some("WWW.Evil.Example."),
        )
    };
    let decided = p.decide_hello(&phish);
    assert_eq!(decided.decision.action, SslAction::Bump);
    assert_eq!(decided.by, DecidedBy::Default);
}

/// Real ECH: the outer SNI differs from the CONNECT name. It is bumped for its outer
/// name, never tunneled, and is no SNI mismatch; a `terminate` rule still applies.
#[test]
fn real_ech_is_bumped_not_terminated_as_a_mismatch() {
    let p = policy(&format!(
        "{RULES}\n[[ssl_rules]]\nname = \"ech provider\"\ndomains = [\"ech.example\"]\naction = \"tunnel\"\n"
    ));
    let ech = HelloFacts {
        ech: true,
        learned_bypass: true,
        ..hello(connect("secret.example", "192.0.2.10"), Some("ech.example"))
    };
    assert_eq!(
        outcome(&p, &ech),
        (
            SslAction::Bump,
            Some("default".to_owned()),
            DecidedBy::Ech,
            None
        )
    );
    let blocked = HelloFacts {
        sni: Some("blocked.example"),
        ..ech
    };
    assert_eq!(
        outcome(&p, &blocked),
        by_rule(SslAction::Terminate, "blocked")
    );
    // ECH whose outer name is the CONNECT name is decided as usual.
    let same = HelloFacts {
        connect: connect("ech.example", "192.0.2.10"),
        ..ech
    };
    assert_eq!(
        outcome(&p, &same),
        by_rule(SslAction::Tunnel, "ech provider")
    );
}

#[test]
fn with_decryption_disabled_nothing_but_the_sni_check_applies() {
    let p = policy(&format!("[tls]\ndecryption = false\n{RULES}"));
    let facts = hello(
        connect("blocked.example", "192.0.2.10"),
        Some("blocked.example"),
    );
    let decided = p.decide_hello(&facts);
    assert_eq!(decided.decision.action, SslAction::Tunnel);
    assert_eq!(decided.by, DecidedBy::DecryptionDisabled);
}

#[test]
fn a_client_that_does_not_speak_tls() {
    let rules = format!(
        "{RULES}\n[[ssl_rules]]\nname = \"inspect\"\ndomains = [\"ssh.example\"]\naction = \"bump\"\n"
    );
    let terminate = policy(&rules);
    assert_eq!(
        terminate.decide_non_tls(&connect("ssh.example", "192.0.2.10")),
        NonTlsStep::Terminate(None)
    );
    let tunnel = policy(&format!("[tls]\non_non_tls = \"tunnel\"\n{rules}"));
    // A bump rule cannot apply to what is not TLS; a terminate rule does.
    assert_eq!(
        tunnel.decide_non_tls(&connect("ssh.example", "192.0.2.10")),
        NonTlsStep::Tunnel
    );
    let NonTlsStep::Terminate(Some(rule)) =
        tunnel.decide_non_tls(&connect("blocked.example", "192.0.2.10"))
    else {
        panic!("the terminate rule applies");
    };
    assert_eq!(rule.rule, "blocked");
}
