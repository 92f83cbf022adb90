//! `[[http_rules]]` (SPEC §3 step 1, §4): every condition, first match on the request,
//! `content_types` on the response, and errors with their line.

use std::net::IpAddr;
use std::path::Path;

use sluice_policy::{Config, ConfigError, HttpAction, HttpDecision, HttpFacts, Policy};

fn policy(text: &str) -> Policy {
    Config::from_str(text, "sluice.toml", Path::new("."))
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"))
        .policy
}

fn errors(text: &str) -> Vec<String> {
    match Config::from_str(text, "sluice.toml", Path::new(".")) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.iter().map(ConfigError::to_string).collect(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// `GET https://www.example.com/index.html` from 10.1.2.3 to 192.0.2.10:443, by curl.
fn facts() -> HttpFacts<'static> {
    HttpFacts {
        client: ip("10.1.2.3"),
        user: None,
        groups: &[],
        user_agent: Some("curl/8.5.0"),
        host: Some("www.example.com"),
        dest_ip: Some(ip("192.0.2.10")),
        port: 443,
        method: "GET",
        url: "https://www.example.com/index.html",
        content_type: None,
    }
}

fn decision(action: HttpAction, rule: &str) -> HttpDecision {
    HttpDecision {
        action,
        rule: rule.to_owned(),
    }
}

/// The rule deciding the request.
fn rule_for(policy: &Policy, facts: &HttpFacts<'_>) -> String {
    policy.decide_http_request(facts).rule
}

#[test]
fn no_rule_allows_with_rule_default() {
    let p = policy("");
    assert_eq!(
        p.decide_http_request(&facts()),
        decision(HttpAction::Allow, "default")
    );
    assert_eq!(
        p.decide_http_response(&HttpFacts {
            content_type: Some("text/html"),
            ..facts()
        }),
        None
    );
}

#[test]
fn each_action_parses_and_decides() {
    for (text, action) in [
        ("allow", HttpAction::Allow),
        ("block", HttpAction::Block),
        ("allow-unscanned", HttpAction::AllowUnscanned),
    ] {
        let p = policy(&format!(
            "[[http_rules]]\nname = \"r\"\naction = \"{text}\"\n"
        ));
        assert_eq!(p.decide_http_request(&facts()), decision(action, "r"));
        assert_eq!(action.as_str(), text);
        assert_eq!(action.to_string(), text);
    }
}

#[test]
fn every_condition_is_matched_against_its_fact() {
    // Each rule lists one condition that holds for `facts()` and is the only rule; the
    // same rule with a value that does not hold falls back to `default`.
    for (holds, fails) in [
        (
            r#"clients = ["10.0.0.0/8"]"#,
            r#"clients = ["192.168.0.0/16"]"#,
        ),
        (
            r#"user_agents = ["^curl/"]"#,
            r#"user_agents = ["^Mozilla"]"#,
        ),
        (
            r#"domains = [".example.com"]"#,
            r#"domains = ["example.com"]"#,
        ),
        (
            r#"domain_regex = ["^WWW\\."]"#,
            r#"domain_regex = ["^ftp\\."]"#,
        ),
        (r#"categories = ["sites"]"#, r#"categories = ["others"]"#),
        (r#"ips = ["192.0.2.0/24"]"#, r#"ips = ["198.51.100.0/24"]"#),
        (r#"ports = ["400-500"]"#, r#"ports = [80, 8080]"#),
        (r#"methods = ["get", "HEAD"]"#, r#"methods = ["POST"]"#),
        (r#"url_regex = ["\\.html$"]"#, r#"url_regex = ["\\.HTML$"]"#),
    ] {
        let categories =
            "[categories]\nsites = [\"*.example.com\"]\nothers = [\"other.example\"]\n";
        let p = policy(&format!(
            "{categories}[[http_rules]]\nname = \"r\"\naction = \"block\"\n{holds}\n"
        ));
        assert_eq!(rule_for(&p, &facts()), "r", "{holds}");
        let p = policy(&format!(
            "{categories}[[http_rules]]\nname = \"r\"\naction = \"block\"\n{fails}\n"
        ));
        assert_eq!(rule_for(&p, &facts()), "default", "{fails}");
    }
}

#[test]
fn conditions_are_anded_and_rules_tried_in_order() {
    let p = policy(
        r#"
[[http_rules]]
name = "posts to example"
domains = [".example.com"]
methods = ["POST"]
action = "block"

[[http_rules]]
name = "example"
domains = [".example.com"]
action = "allow-unscanned"

[[http_rules]]
name = "catch-all"
action = "allow"
"#,
    );
    assert_eq!(rule_for(&p, &facts()), "example");
    let post = HttpFacts {
        method: "POST",
        ..facts()
    };
    assert_eq!(
        p.decide_http_request(&post),
        decision(HttpAction::Block, "posts to example")
    );
    let other = HttpFacts {
        host: Some("other.test"),
        ..facts()
    };
    assert_eq!(rule_for(&p, &other), "catch-all");
}

#[test]
fn the_host_is_normalized_and_ip_literals_are_no_name() {
    let p = policy(
        "[[http_rules]]\nname = \"r\"\naction = \"block\"\ndomains = [\".example.com\", \"192.0.2.1\"]\n",
    );
    for host in ["WWW.Example.COM.", "example.com"] {
        let f = HttpFacts {
            host: Some(host),
            ..facts()
        };
        assert_eq!(rule_for(&p, &f), "r", "{host}");
    }
    for host in [
        None,
        Some("192.0.2.1"),
        Some("[2001:db8::1]"),
        Some("bad host"),
    ] {
        let f = HttpFacts { host, ..facts() };
        assert_eq!(rule_for(&p, &f), "default", "{host:?}");
    }
}

const CONTENT_RULES: &str = r#"
[[http_rules]]
name = "no executables"
content_types = ["application/x-msdownload", "application/x-dosexec"]
action = "block"

[[http_rules]]
name = "trusted"
domains = ["trusted.example"]
action = "allow-unscanned"

[[http_rules]]
name = "videos unscanned"
content_types = ["video/*"]
action = "allow-unscanned"
"#;

fn response(host: &'static str, content_type: Option<&'static str>) -> HttpFacts<'static> {
    HttpFacts {
        host: Some(host),
        content_type,
        ..facts()
    }
}

#[test]
fn content_type_rules_are_skipped_on_the_request() {
    let p = policy(CONTENT_RULES);
    // Even with a content type given, the request ignores `content_types` rules.
    let f = response("www.example.com", Some("application/x-msdownload"));
    assert_eq!(
        p.decide_http_request(&f),
        decision(HttpAction::Allow, "default")
    );
    assert_eq!(
        p.decide_http_request(&response("trusted.example", None)),
        decision(HttpAction::AllowUnscanned, "trusted")
    );
}

#[test]
fn a_content_type_rule_before_the_deciding_rule_decides_the_response() {
    let p = policy(CONTENT_RULES);
    // Matched before "trusted": the executable is blocked even on the trusted domain.
    for (host, content_type) in [
        ("www.example.com", "application/x-msdownload"),
        (
            "trusted.example",
            "Application/X-MSDownload; name=\"a.exe\"",
        ),
        ("www.example.com", " application/x-dosexec "),
    ] {
        assert_eq!(
            p.decide_http_response(&response(host, Some(content_type))),
            Some(decision(HttpAction::Block, "no executables")),
            "{host} {content_type}"
        );
    }
    // "videos unscanned" comes after "trusted": trusted videos keep the request's decision.
    assert_eq!(
        p.decide_http_response(&response("trusted.example", Some("video/mp4"))),
        None
    );
    assert_eq!(
        p.decide_http_response(&response("www.example.com", Some("video/mp4"))),
        Some(decision(HttpAction::AllowUnscanned, "videos unscanned"))
    );
    // No match, no usable Content-Type, or none at all: the request's decision stands.
    for content_type in [Some("text/html"), Some("garbage"), Some(""), None] {
        assert_eq!(
            p.decide_http_response(&response("www.example.com", content_type)),
            None,
            "{content_type:?}"
        );
    }
}

#[test]
fn content_types_combine_with_other_conditions() {
    let p = policy(
        r#"
[[http_rules]]
name = "pdf from docs"
domains = ["docs.example"]
content_types = ["application/pdf"]
action = "block"
"#,
    );
    assert_eq!(
        p.decide_http_response(&response("docs.example", Some("application/pdf"))),
        Some(decision(HttpAction::Block, "pdf from docs"))
    );
    assert_eq!(
        p.decide_http_response(&response("www.example.com", Some("application/pdf"))),
        None
    );
}

#[test]
fn http_rule_errors_have_their_line() {
    let text = r#"[[http_rules]]
name = "one"
action = "block"
methods = ["GET", "GE T"]
url_regex = ["("]
content_types = ["text/html", "*/*", "image"]
domains = []

[[http_rules]]
name = "one"
action = "allow"
categories = ["nope"]
ports = [0]

[[http_rules]]
name = "default"
action = "allow"
"#;
    assert_eq!(
        errors(text),
        [
            "sluice.toml:4: http_rules.methods: invalid HTTP method `GE T`",
            "sluice.toml:5: http_rules.url_regex: invalid regex `(`: unclosed group",
            "sluice.toml:6: http_rules.content_types: invalid media type `*/*`, expected like \"application/pdf\" or \"image/*\"",
            "sluice.toml:6: http_rules.content_types: invalid media type `image`, expected like \"application/pdf\" or \"image/*\"",
            "sluice.toml:7: http_rules.domains: empty list; it would never match (remove the key to not test it)",
            "sluice.toml:10: http_rules: duplicate rule name `one` (also rule #1)",
            "sluice.toml:12: http_rules.categories: unknown category `nope`",
            "sluice.toml:13: http_rules.ports: port 0 is out of range 1-65535",
            "sluice.toml:16: http_rules: the name `default` is reserved for the access log",
        ]
    );
}

#[test]
fn http_rules_refuse_unknown_actions_and_ssl_rules_refuse_http_conditions() {
    assert_eq!(
        errors("[[http_rules]]\nname = \"x\"\naction = \"bump\"\n"),
        ["sluice.toml:3: unknown variant `bump`, expected one of `allow`, `block`, `allow-unscanned`"]
    );
    for key in ["methods", "url_regex", "content_types"] {
        let e = errors(&format!(
            "[[ssl_rules]]\nname = \"x\"\naction = \"bump\"\n{key} = [\"a\"]\n"
        ));
        assert!(
            e.len() == 1 && e[0].starts_with(&format!("sluice.toml:4: unknown field `{key}`")),
            "{e:?}"
        );
    }
    // An SSL rule and an HTTP rule may share a name: they are logged in different records.
    policy("[[ssl_rules]]\nname = \"x\"\naction = \"bump\"\n[[http_rules]]\nname = \"x\"\naction = \"allow\"\n");
}
