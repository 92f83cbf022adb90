//! The two decision stages of SPEC §1, condition semantics of §4, and `explain`.

use std::net::IpAddr;
use std::path::Path;

use sluice_policy::{
    CertErrorPolicy, Config, ConnectStep, HttpFacts, Policy, SslAction, SslDecision, SslFacts,
    Stage, Via,
};

fn policy(text: &str) -> Policy {
    Config::from_str(text, "sluice.toml", Path::new("."))
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"))
        .policy
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A CONNECT to `name:443` from 10.1.2.3, resolved to 192.0.2.10.
fn facts(name: &str) -> SslFacts<'_> {
    SslFacts {
        client: ip("10.1.2.3"),
        user: None,
        groups: &[],
        user_agent: None,
        dest_name: Some(name),
        dest_ip: Some(ip("192.0.2.10")),
        port: 443,
    }
}

fn decision(action: SslAction, rule: &str) -> SslDecision {
    SslDecision {
        action,
        rule: rule.to_owned(),
        cert_errors: None,
    }
}

/// The rule deciding at stage `client_hello`.
fn rule_for(policy: &Policy, facts: &SslFacts<'_>) -> String {
    policy.decide_client_hello(facts).rule
}

const RULES: &str = r#"
[[ssl_rules]]
name = "intranet"
domains = [".intranet.example"]
action = "tunnel"

[[ssl_rules]]
name = "banking"
domains = [".bank.example"]
action = "tunnel-sni"

[[ssl_rules]]
name = "blocked"
domains = ["blocked.example"]
action = "terminate"

[[ssl_rules]]
name = "inspect"
domains = ["inspect.example"]
action = "bump"
cert_errors = "allow"
"#;

#[test]
fn decryption_disabled_tunnels_whatever_the_rules_say() {
    let p = policy(&format!("[tls]\ndecryption = false\n{RULES}"));
    for name in [
        "blocked.example",
        "inspect.example",
        "www.bank.example",
        "other.example",
    ] {
        assert_eq!(
            p.decide_connect(&facts(name)),
            ConnectStep::Tunnel(decision(SslAction::Tunnel, "default")),
            "{name}"
        );
        assert_eq!(
            p.decide_client_hello(&facts(name)),
            decision(SslAction::Tunnel, "default")
        );
    }
    assert!(!p.decryption());
}

#[test]
fn a_tunnel_rule_decides_at_connect() {
    let p = policy(RULES);
    assert_eq!(
        p.decide_connect(&facts("wiki.intranet.example")),
        ConnectStep::Tunnel(decision(SslAction::Tunnel, "intranet"))
    );
}

#[test]
fn tunnel_sni_bump_terminate_and_no_match_read_the_client_hello() {
    let p = policy(RULES);
    for name in [
        "www.bank.example",
        "inspect.example",
        "blocked.example",
        "other.example",
    ] {
        assert_eq!(
            p.decide_connect(&facts(name)),
            ConnectStep::PeekClientHello,
            "{name}"
        );
    }
}

#[test]
fn the_first_matching_rule_decides_at_client_hello() {
    let p = policy(RULES);
    assert_eq!(
        p.decide_client_hello(&facts("www.bank.example")),
        decision(SslAction::TunnelSni, "banking")
    );
    assert_eq!(
        p.decide_client_hello(&facts("blocked.example")),
        decision(SslAction::Terminate, "blocked")
    );
    assert_eq!(
        p.decide_client_hello(&facts("inspect.example")),
        SslDecision {
            action: SslAction::Bump,
            rule: "inspect".into(),
            cert_errors: Some(CertErrorPolicy::Allow),
        }
    );
    // A tunnel rule matched only by the SNI decides at this stage.
    assert_eq!(
        p.decide_client_hello(&facts("intranet.example")),
        decision(SslAction::Tunnel, "intranet")
    );
}

#[test]
fn no_match_at_client_hello_is_the_default_action() {
    let p = policy(RULES);
    assert_eq!(
        p.decide_client_hello(&facts("other.example")),
        decision(SslAction::Bump, "default")
    );
    let p = policy(&format!("[tls]\ndefault_action = \"terminate\"\n{RULES}"));
    assert_eq!(
        p.decide_client_hello(&facts("other.example")),
        decision(SslAction::Terminate, "default")
    );
    // The default action never applies at stage connect, even when it is tunnel.
    let p = policy("[tls]\ndefault_action = \"tunnel\"\n");
    assert_eq!(
        p.decide_connect(&facts("other.example")),
        ConnectStep::PeekClientHello
    );
    assert_eq!(
        p.decide_client_hello(&facts("other.example")),
        decision(SslAction::Tunnel, "default")
    );
}

#[test]
fn rules_are_tried_in_order() {
    let p = policy(
        r#"
[[ssl_rules]]
name = "one"
domains = ["*.example.com"]
action = "bump"
[[ssl_rules]]
name = "two"
domains = ["www.example.com"]
action = "tunnel"
[[ssl_rules]]
name = "catch-all"
action = "terminate"
"#,
    );
    // "two" would tunnel at connect, but "one" comes first and matches.
    assert_eq!(
        p.decide_connect(&facts("www.example.com")),
        ConnectStep::PeekClientHello
    );
    assert_eq!(rule_for(&p, &facts("www.example.com")), "one");
    // A rule without conditions matches everything.
    assert_eq!(rule_for(&p, &facts("example.com")), "catch-all");
    assert_eq!(
        rule_for(
            &p,
            &SslFacts {
                dest_name: None,
                ..facts("x")
            }
        ),
        "catch-all"
    );
}

#[test]
fn domain_names_are_normalized_before_matching() {
    let p = policy(
        r#"
[[ssl_rules]]
name = "books"
domains = ["bücher.example", "*.EXAMPLE.org."]
action = "bump"
"#,
    );
    for name in [
        "bücher.example",
        "BÜCHER.example.",
        "xn--bcher-kva.example",
        "www.Example.ORG.",
    ] {
        assert_eq!(rule_for(&p, &facts(name)), "books", "{name}");
    }
    for name in ["example.org", "buecher.example", "not a name", ""] {
        assert_eq!(rule_for(&p, &facts(name)), "default", "{name}");
    }
}

#[test]
fn domain_conditions_do_not_match_without_a_name() {
    let p = policy(
        r#"
[categories]
all = [".example"]
[[ssl_rules]]
name = "domains"
domains = [".example"]
action = "terminate"
[[ssl_rules]]
name = "categories"
categories = ["all"]
action = "terminate"
[[ssl_rules]]
name = "regex"
domain_regex = [""]
action = "terminate"
"#,
    );
    let no_name = SslFacts {
        dest_name: None,
        ..facts("unused")
    };
    assert_eq!(rule_for(&p, &no_name), "default");
    assert_eq!(rule_for(&p, &facts("a.example")), "domains");
    assert_eq!(rule_for(&p, &facts("a.test")), "regex");
}

#[test]
fn conditions_are_anded_and_values_ored() {
    let p = policy(
        r#"
[categories]
social = ["*.social.example"]
[[ssl_rules]]
name = "all"
clients = ["10.0.0.0/8", "192.168.0.7"]
user_agents = ["curl/", "^Wget"]
domains = [".a.example", ".social.example"]
domain_regex = ["^www\\.", "^api\\."]
categories = ["social"]
ips = ["192.0.2.0/24", "2001:db8::/32"]
ports = [443, "8000-8100"]
action = "terminate"
"#,
    );
    let base = SslFacts {
        user_agent: Some("curl/8.5.0"),
        ..facts("www.social.example")
    };
    assert_eq!(rule_for(&p, &base), "all");
    let variants: [(&str, SslFacts<'_>, bool); 16] = [
        (
            "client in second net",
            SslFacts {
                client: ip("192.168.0.7"),
                ..base
            },
            true,
        ),
        (
            "client outside",
            SslFacts {
                client: ip("11.0.0.1"),
                ..base
            },
            false,
        ),
        (
            "mapped client",
            SslFacts {
                client: ip("::ffff:10.9.9.9"),
                ..base
            },
            true,
        ),
        (
            "second UA",
            SslFacts {
                user_agent: Some("Wget/1.21"),
                ..base
            },
            true,
        ),
        (
            "UA unanchored",
            SslFacts {
                user_agent: Some("x curl/8"),
                ..base
            },
            true,
        ),
        (
            "UA anchored",
            SslFacts {
                user_agent: Some("x Wget/1.21"),
                ..base
            },
            false,
        ),
        (
            "no UA",
            SslFacts {
                user_agent: None,
                ..base
            },
            false,
        ),
        (
            "regex second",
            SslFacts {
                dest_name: Some("api.social.example"),
                ..base
            },
            true,
        ),
        (
            "regex fails",
            SslFacts {
                dest_name: Some("cdn.social.example"),
                ..base
            },
            false,
        ),
        (
            "category fails",
            SslFacts {
                dest_name: Some("www.a.example"),
                ..base
            },
            false,
        ),
        (
            "ip v6",
            SslFacts {
                dest_ip: Some(ip("2001:db8::1")),
                ..base
            },
            true,
        ),
        (
            "ip outside",
            SslFacts {
                dest_ip: Some(ip("198.51.100.1")),
                ..base
            },
            false,
        ),
        (
            "no ip",
            SslFacts {
                dest_ip: None,
                ..base
            },
            false,
        ),
        ("port range", SslFacts { port: 8050, ..base }, true),
        ("port range end", SslFacts { port: 8100, ..base }, true),
        ("port outside", SslFacts { port: 8443, ..base }, false),
    ];
    for (what, facts, matches) in variants {
        let expected = if matches { "all" } else { "default" };
        assert_eq!(rule_for(&p, &facts), expected, "{what}");
    }
}

#[test]
fn domain_regex_is_case_insensitive_on_the_normalized_name() {
    let p = policy("[[ssl_rules]]\nname = \"r\"\ndomain_regex = [\"^WWW\\\\.Example\\\\.com$\"]\naction = \"bump\"\n");
    assert_eq!(rule_for(&p, &facts("www.example.com.")), "r");
    assert_eq!(rule_for(&p, &facts("WWW.EXAMPLE.COM")), "r");
    assert_eq!(rule_for(&p, &facts("www.example.com.au")), "default");
}

#[test]
fn explain_a_tunnel_at_connect() {
    let p = policy(RULES);
    let e = p.explain(
        &facts("Wiki.Intranet.Example"),
        Some("wiki.intranet.example"),
    );
    assert_eq!(
        e.connect,
        ConnectStep::Tunnel(decision(SslAction::Tunnel, "intranet"))
    );
    assert_eq!(e.client_hello, None);
    assert_eq!(
        e.decided(),
        Some((Stage::Connect, &decision(SslAction::Tunnel, "intranet")))
    );
    assert_eq!(
        e.to_string(),
        "stage connect (name wiki.intranet.example):\n  rule \"intranet\" matches: tunnel\nresult: tunnel at stage connect, rule \"intranet\""
    );
}

#[test]
fn explain_a_tunnel_sni_rule_over_both_stages() {
    let p = policy(RULES);
    let e = p.explain(&facts("www.bank.example"), Some("www.bank.example"));
    assert_eq!(e.connect, ConnectStep::PeekClientHello);
    assert_eq!(
        e.connect_match,
        Some(decision(SslAction::TunnelSni, "banking"))
    );
    assert_eq!(
        e.client_hello,
        Some(decision(SslAction::TunnelSni, "banking"))
    );
    assert_eq!(e.sni_mismatch, None);
    assert_eq!(
        e.to_string(),
        "stage connect (name www.bank.example):\n  rule \"banking\" matches, action tunnel-sni: read the ClientHello\n\
         stage client_hello (name www.bank.example, from the SNI):\n  rule \"banking\" matches: tunnel-sni\n\
         result: tunnel-sni at stage client_hello, rule \"banking\""
    );
}

#[test]
fn explain_without_sni_uses_the_connect_host_and_shows_defaults() {
    let p = policy(RULES);
    let e = p.explain(&facts("inspect.example"), None);
    assert_eq!(
        e.to_string(),
        "stage connect (name inspect.example):\n  rule \"inspect\" matches, action bump: read the ClientHello\n\
         stage client_hello (name inspect.example, from the CONNECT host, no SNI):\n  rule \"inspect\" matches: bump (cert_errors = allow)\n\
         result: bump at stage client_hello, rule \"inspect\""
    );
    let ip_only = SslFacts {
        dest_name: None,
        ..facts("unused")
    };
    let e = p.explain(&ip_only, None);
    assert_eq!(
        e.to_string(),
        "stage connect (no name: the CONNECT host is an IP address):\n  no rule matches: read the ClientHello\n\
         stage client_hello (no name: no SNI and an IP address)\n  no rule matches: default action bump\n\
         result: bump at stage client_hello, rule default"
    );
}

#[test]
fn explain_an_sni_differing_from_the_connect_host() {
    let p = policy(RULES);
    let e = p.explain(&facts("other.example"), Some("blocked.example"));
    // Closed by the SNI check, as a connection would be: no rule decides.
    assert_eq!(
        e.client_hello.as_ref().unwrap().action,
        SslAction::Terminate
    );
    assert_eq!(e.decided_by(), Some(sluice_policy::DecidedBy::SniMismatch));
    assert_eq!(e.rule(), None);
    assert_eq!(e.sni_mismatch, Some(sluice_policy::SniMismatch::Terminate));
    assert!(e.to_string().ends_with(
        "  the SNI differs from the CONNECT host and tls.on_sni_mismatch = \"terminate\": the connection is closed\n\
         result: terminate at stage client_hello (SNI mismatch)"
    ));
    let p = policy(&format!("[tls]\non_sni_mismatch = \"ignore\"\n{RULES}"));
    let e = p.explain(&facts("other.example"), Some("inspect.example"));
    assert!(e.to_string().contains(
        "tls.on_sni_mismatch = \"ignore\": deciding on the SNI\n  rule \"inspect\" matches: bump"
    ));
    // Same name in another form is no mismatch.
    let e = p.explain(&facts("Inspect.Example."), Some("inspect.example"));
    assert_eq!(e.sni_mismatch, None);
}

#[test]
fn explain_with_decryption_disabled() {
    let p = policy(&format!("[tls]\ndecryption = false\n{RULES}"));
    let e = p.explain(&facts("blocked.example"), Some("blocked.example"));
    assert_eq!(e.connect_match, None);
    assert_eq!(
        e.to_string(),
        "stage connect (name blocked.example):\n  decryption is disabled (tls.decryption = false): tunnel\n\
         result: tunnel at stage connect, rule default"
    );
}

#[test]
fn config_and_policy_can_be_shared_across_connections() {
    // A compile-time check: the proxy holds `Arc<Config>` in every connection task.
    fn shared<T: Send + Sync>() {}
    shared::<Config>();
    shared::<Policy>();
}

/// SPEC §1.3, an attacker's `CONNECT 203.0.113.9:443` with SNI `www.bank.example`: the SNI
/// is unverified, so the banking rule cannot tunnel it; a restrictive rule still applies,
/// and a rule that tunnels on the IP (not the name) still does.
#[test]
fn an_unverified_sni_never_earns_a_tunnel_from_a_name_rule() {
    let policy = policy(
        r#"
[[ssl_rules]]
name = "banking"
domains = [".bank.example"]
action = "tunnel-sni"

[[ssl_rules]]
name = "casino"
categories = ["gambling"]
action = "tunnel"

[[ssl_rules]]
name = "blocked"
domain_regex = ["^evil\\."]
action = "terminate"

[[ssl_rules]]
name = "by address"
ips = ["198.51.100.0/24"]
action = "tunnel"

[categories]
gambling = [".casino.example"]

[tls]
default_action = "bump"
"#,
    );
    let attack = |sni: &'static str, ip_text: &str| SslFacts {
        dest_name: Some(sni),
        dest_ip: Some(ip(ip_text)),
        ..facts(sni)
    };
    let bank = attack("www.bank.example", "203.0.113.9");
    assert_eq!(
        policy.decide_client_hello(&bank).rule,
        "banking",
        "verified: tunnels"
    );
    assert_eq!(
        policy.decide_client_hello_unverified(&bank),
        decision(SslAction::Bump, "default")
    );
    assert_eq!(
        policy.decide_client_hello_unverified(&attack("x.casino.example", "203.0.113.9")),
        decision(SslAction::Bump, "default")
    );
    assert_eq!(
        policy.decide_client_hello_unverified(&attack("evil.example", "203.0.113.9")),
        decision(SslAction::Terminate, "blocked"),
        "restrictive rules still apply"
    );
    assert_eq!(
        policy.decide_client_hello_unverified(&attack("www.bank.example", "198.51.100.7")),
        decision(SslAction::Tunnel, "by address"),
        "a rule on the address does not trust the name"
    );
}

/// SPEC §1.3: real ECH (outer SNI ≠ CONNECT host) is bumped for its outer name: a rule
/// that would tunnel the outer name is skipped, even when it is the default action; a
/// terminate rule, or a bump rule with its cert_errors, still applies.
#[test]
fn real_ech_is_bumped_for_its_outer_name_never_tunneled() {
    let policy = policy(
        r#"
[[ssl_rules]]
name = "cdn"
domains = ["cloudflare-ech.example"]
action = "tunnel"

[[ssl_rules]]
name = "blocked"
domains = ["evil-ech.example"]
action = "terminate"

[[ssl_rules]]
name = "internal"
domains = ["ech.internal.example"]
action = "bump"
cert_errors = "allow"

[tls]
default_action = "tunnel"
"#,
    );
    assert_eq!(
        policy
            .decide_client_hello(&facts("cloudflare-ech.example"))
            .action,
        SslAction::Tunnel,
        "without ECH the name tunnels"
    );
    assert_eq!(
        policy.decide_client_hello_ech(&facts("cloudflare-ech.example")),
        decision(SslAction::Bump, "default")
    );
    assert_eq!(
        policy.decide_client_hello_ech(&facts("other.example")),
        decision(SslAction::Bump, "default"),
        "the default action tunnel does not apply"
    );
    assert_eq!(
        policy.decide_client_hello_ech(&facts("evil-ech.example")),
        decision(SslAction::Terminate, "blocked")
    );
    assert_eq!(
        policy.decide_client_hello_ech(&facts("ech.internal.example")),
        SslDecision {
            cert_errors: Some(CertErrorPolicy::Allow),
            ..decision(SslAction::Bump, "internal")
        }
    );
}

/// SPEC §1.3: with `on_non_tls = "tunnel"`, a client that does not speak TLS is still
/// subject to the rules on what is known: a `terminate` rule terminates it.
#[test]
fn a_non_tls_client_is_terminated_by_a_terminate_rule_and_tunneled_otherwise() {
    let policy = policy(
        r#"
[[ssl_rules]]
name = "no casino"
domains = [".casino.example"]
action = "terminate"

[[ssl_rules]]
name = "bump it"
domains = ["ssh.example"]
action = "bump"

[tls]
on_non_tls = "tunnel"
"#,
    );
    assert_eq!(
        policy.decide_non_tls_tunnel(&facts("www.casino.example")),
        Some(decision(SslAction::Terminate, "no casino"))
    );
    assert_eq!(policy.decide_non_tls_tunnel(&facts("ssh.example")), None);
    assert_eq!(policy.decide_non_tls_tunnel(&facts("other.example")), None);
}

const PARENTS: &str = r#"
[proxy]
default_via = "corp"

[[upstream_proxies]]
name = "corp"
urls = ["http://parent1.corp.example:3128", "http://10.0.0.2:3128"]

[[upstream_proxies]]
name = "partner"
urls = ["http://[2001:db8::8]:8080"]

[[ssl_rules]]
name = "partner sites"
domains = [".partner.example"]
action = "bump"
via = "partner"

[[ssl_rules]]
name = "intranet"
domains = [".intranet.example"]
action = "tunnel"
via = "direct"

[[ssl_rules]]
name = "no via"
domains = ["plain.example"]
action = "bump"

[[http_rules]]
name = "partner http"
domains = [".partner.example"]
action = "allow"
via = "partner"
"#;

#[test]
fn via_is_the_first_matching_rules_or_the_default() {
    let p = policy(PARENTS);
    let via = |name| p.via_connect(&facts(name));
    assert_eq!(via("www.partner.example"), Via::Parent("partner".into()));
    assert_eq!(via("wiki.intranet.example"), Via::Direct);
    assert_eq!(
        via("plain.example"),
        Via::Parent("corp".into()),
        "a rule without via"
    );
    assert_eq!(via("other.example"), Via::Parent("corp".into()));
    assert_eq!(Via::Direct.as_str(), "direct");
    let http = |host| {
        p.via_http(&HttpFacts {
            client: ip("10.1.2.3"),
            user: None,
            groups: &[],
            user_agent: None,
            host: Some(host),
            dest_ip: None,
            port: 80,
            method: "GET",
            url: "http://x/",
            content_type: None,
        })
    };
    assert_eq!(http("a.partner.example"), Via::Parent("partner".into()));
    assert_eq!(http("other.example"), Via::Parent("corp".into()));
    assert_eq!(policy("").via_connect(&facts("a.example")), Via::Direct);
}

/// SPEC §10: `groups` names a group by common name or full DN, case-insensitively,
/// against the DNs of the user's groups; a user without groups matches no such rule.
#[test]
fn groups_match_by_common_name_or_dn_in_any_case() {
    let policy = policy(
        r#"
[[ssl_rules]]
name = "finance-tunnels"
groups = ["FINANCE"]
action = "tunnel"

[[ssl_rules]]
name = "contractors"
groups = ["cn=contractors,ou=groups,dc=corp,dc=example"]
action = "terminate"
"#,
    );
    let finance = ["cn=Finance,ou=groups,dc=corp,dc=example".to_string()];
    let contractors = ["CN=Contractors,OU=Groups,DC=corp,DC=example".to_string()];
    let finance_in_ou = ["cn=staff,ou=finance,dc=corp,dc=example".to_string()];
    let rule = |groups: &[String]| {
        let facts = SslFacts {
            groups,
            ..facts("bank.example")
        };
        rule_for(&policy, &facts)
    };
    assert_eq!(rule(&finance), "finance-tunnels");
    assert_eq!(rule(&contractors), "contractors");
    // Only the first RDN's cn names a group: an `ou=finance` further up is not it.
    assert_eq!(rule(&finance_in_ou), "default");
    assert_eq!(rule(&[]), "default");
    let errors = Config::from_str(
        "[[http_rules]]\nname = \"x\"\ngroups = [\" \"]\naction = \"block\"\n",
        "sluice.toml",
        Path::new("."),
    )
    .err()
    .unwrap();
    assert!(errors[0].to_string().contains("groups"), "{errors:?}");
}
