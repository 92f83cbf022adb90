//! Normalization and pattern matching of domain names.

use super::*;
use proptest::prelude::*;

fn set(patterns: &[&str]) -> DomainSet {
    let mut set = DomainSet::new();
    for p in patterns {
        set.insert_pattern(p).unwrap();
    }
    set
}

fn matches(set: &DomainSet, name: &str) -> bool {
    set.matches(&normalize_domain(name).unwrap())
}

#[test]
fn normalize_lowercases_and_strips_one_trailing_dot() {
    assert_eq!(
        normalize_domain("WWW.Example.COM.").unwrap(),
        "www.example.com"
    );
    assert_eq!(normalize_domain("a_b.example").unwrap(), "a_b.example");
    assert_eq!(normalize_domain("example.com.."), None);
    assert_eq!(normalize_domain(""), None);
    assert_eq!(normalize_domain("."), None);
    assert_eq!(normalize_domain("a..b"), None);
    assert_eq!(normalize_domain("exa mple.com"), None);
    assert_eq!(normalize_domain("example.com:443"), None);
}

#[test]
fn normalize_enforces_dns_lengths() {
    let label63 = "a".repeat(63);
    assert!(normalize_domain(&format!("{label63}.com")).is_some());
    assert!(normalize_domain(&format!("a{label63}.com")).is_none());
    let name253 = format!("{0}.{0}.{0}.{1}", label63, "a".repeat(61));
    assert_eq!(name253.len(), 253);
    assert!(normalize_domain(&name253).is_some());
    assert!(normalize_domain(&format!("{name253}.")).is_some());
    assert!(normalize_domain(&format!("a{name253}")).is_none());
}

#[test]
fn normalize_converts_idn_to_punycode() {
    assert_eq!(
        normalize_domain("bücher.example").unwrap(),
        "xn--bcher-kva.example"
    );
    assert_eq!(
        normalize_domain("BÜCHER.Example.").unwrap(),
        "xn--bcher-kva.example"
    );
    // Ideographic full stop as separator and as trailing dot.
    assert_eq!(
        normalize_domain("bücher。example。").unwrap(),
        "xn--bcher-kva.example"
    );
    assert_eq!(normalize_domain("bü cher.example"), None);
}

#[test]
fn same_domain_ignores_case_trailing_dot_and_idn_form() {
    assert!(same_domain("Example.COM.", "example.com"));
    assert!(same_domain("bücher.example", "XN--BCHER-KVA.example"));
    assert!(!same_domain("example.com", "www.example.com"));
    assert!(same_domain("not a name", "NOT A NAME"));
}

#[test]
fn exact_pattern_matches_only_the_name() {
    let s = set(&["example.com"]);
    assert!(matches(&s, "example.com"));
    assert!(matches(&s, "EXAMPLE.com."));
    assert!(!matches(&s, "www.example.com"));
    assert!(!matches(&s, "badexample.com"));
    assert!(!matches(&s, "com"));
}

#[test]
fn star_pattern_matches_subdomains_only() {
    let s = set(&["*.example.com"]);
    assert!(!matches(&s, "example.com"));
    assert!(matches(&s, "www.example.com"));
    assert!(matches(&s, "a.b.example.com"));
    assert!(!matches(&s, "wwwexample.com"));
}

#[test]
fn dot_pattern_matches_name_and_subdomains() {
    let s = set(&[".example.com"]);
    assert!(matches(&s, "example.com"));
    assert!(matches(&s, "www.example.com"));
    assert!(matches(&s, "a.b.example.com"));
    assert!(!matches(&s, "badexample.com"));
    assert!(!matches(&s, "example.org"));
}

#[test]
fn patterns_are_normalized() {
    let s = set(&["WWW.Example.COM.", " *.Bücher.Example "]);
    assert!(matches(&s, "www.example.com"));
    assert!(matches(&s, "shop.xn--bcher-kva.example"));
    assert!(matches(&s, "shop.bücher.example"));
    assert!(!matches(&s, "bücher.example"));
    let s = set(&["xn--bcher-kva.example"]);
    assert!(matches(&s, "BÜCHER.example"));
}

#[test]
fn exact_and_star_forms_of_one_name_combine() {
    let s = set(&["example.com", "*.example.com"]);
    assert_eq!(s.len(), 1);
    assert!(matches(&s, "example.com"));
    assert!(matches(&s, "www.example.com"));
}

#[test]
fn bad_patterns_are_rejected_with_a_reason() {
    let mut s = DomainSet::new();
    for bad in [
        "",
        "*",
        "*.",
        ".",
        "foo.*.com",
        "*example.com",
        "a b.com",
        "a..b",
    ] {
        let err = s.insert_pattern(bad).unwrap_err();
        assert!(err.starts_with("invalid domain pattern"), "{bad:?}: {err}");
    }
    assert!(s.is_empty());
    let err = s.insert_pattern("exa!mple.com").unwrap_err();
    assert_eq!(
        err,
        "invalid domain pattern `exa!mple.com`: only letters, digits, `-` and `_` are allowed in a name"
    );
}

#[test]
fn matching_names_the_closest_pattern() {
    let s = set(&[
        "example.com",
        ".example.com",
        "*.a.example.com",
        "b.example.com",
    ]);
    assert_eq!(s.matching("example.com"), Some("example.com"));
    assert_eq!(s.matching("x.a.example.com"), Some("a.example.com"));
    assert_eq!(s.matching("a.example.com"), Some("example.com"));
    assert_eq!(s.matching("x.b.example.com"), Some("example.com"));
    assert_eq!(s.matching("example.org"), None);
}

#[test]
fn empty_set_matches_nothing() {
    assert!(!DomainSet::new().matches("example.com"));
    assert!(!set(&["example.com"]).matches(""));
}

proptest! {
    #[test]
    fn normalize_and_matches_never_panic(name in any::<String>(), pattern in any::<String>()) {
        let mut s = set(&[".example.com", "*.b.example", "exact.example"]);
        let _ = s.insert_pattern(&pattern);
        let _ = s.matches(&name);
        if let Some(n) = normalize_domain(&name) {
            let _ = s.matches(&n);
        }
    }

    #[test]
    fn normalize_is_idempotent(name in "[a-zA-Z0-9ü.-]{0,40}") {
        if let Some(n) = normalize_domain(&name) {
            prop_assert_eq!(normalize_domain(&n), Some(n.clone()));
        }
    }

    #[test]
    fn dot_pattern_matches_every_subdomain(
        base in "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}",
        sub in "[a-zA-Z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,3}",
    ) {
        let s = set(&[&format!(".{base}")]);
        let subdomain = format!("{sub}.{base}");
        prop_assert!(matches(&s, &base));
        prop_assert!(matches(&s, &subdomain));
        let exact = set(&[&base]);
        prop_assert!(!matches(&exact, &subdomain));
    }
}
