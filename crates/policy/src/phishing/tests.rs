//! Anti-phishing lists: the two entry forms, comments, and errors with file and line.

use super::*;
use proptest::prelude::*;

fn list(text: &str) -> PhishingList {
    let mut builder = Builder::default();
    let errors = builder.add_text(text, "list.txt");
    assert!(errors.is_empty(), "{errors:?}");
    builder.build().unwrap()
}

fn hit(list: &PhishingList, url: &str) -> Option<String> {
    list.check(url).map(|m| m.to_string())
}

#[test]
fn a_domain_matches_itself_and_its_subdomains() {
    let l = list("Evil.Example\nbücher.example.\n");
    assert_eq!(hit(&l, "http://evil.example/"), Some("evil.example".into()));
    assert_eq!(
        l.check("https://a.b.EVIL.example:8443/x?y"),
        Some(PhishingMatch::Domain("evil.example".into()))
    );
    assert_eq!(hit(&l, "https://notevil.example/"), None);
    assert_eq!(hit(&l, "https://evil.example.com/"), None);
    assert_eq!(
        hit(&l, "https://www.xn--bcher-kva.example/"),
        Some("xn--bcher-kva.example".into())
    );
    assert_eq!(
        hit(&l, "https://evil.example./"),
        Some("evil.example".into())
    );
}

#[test]
fn a_url_prefix_matches_its_origin_and_path_prefix() {
    let l = list("https://Phish.Example/login\nhttp://phish.example:8080/\n");
    assert_eq!(
        l.check("https://phish.example/login.php?x=1"),
        Some(PhishingMatch::UrlPrefix(
            "https://phish.example/login".into()
        ))
    );
    assert_eq!(
        hit(&l, "HTTPS://PHISH.EXAMPLE:443/login/x"),
        Some("https://phish.example/login".into())
    );
    // Paths are case-sensitive and not decoded; other paths, schemes, ports and
    // subdomains do not match.
    assert_eq!(hit(&l, "https://phish.example/Login"), None);
    assert_eq!(hit(&l, "https://phish.example/%6Cogin"), None);
    assert_eq!(hit(&l, "https://phish.example/"), None);
    assert_eq!(hit(&l, "http://phish.example/login"), None);
    assert_eq!(hit(&l, "https://phish.example:8443/login"), None);
    assert_eq!(hit(&l, "https://www.phish.example/login"), None);
    assert_eq!(
        hit(&l, "http://phish.example:8080/anything"),
        Some("http://phish.example:8080/".into())
    );
}

#[test]
fn comments_and_blank_lines_are_ignored() {
    let l = list("# header\n\nevil.example # a domain\nhttps://x.example/a#b\n   \n");
    assert_eq!(l.len(), 2);
    assert!(l.check("https://evil.example/").is_some());
    // `#` starts a comment even inside a URL: the entry is https://x.example/a.
    assert_eq!(
        hit(&l, "https://x.example/ab"),
        Some("https://x.example/a".into())
    );
}

#[test]
fn non_http_urls_and_garbage_match_nothing() {
    let l = list("evil.example\n");
    for url in [
        "",
        "evil.example",
        "ftp://evil.example/",
        "http://",
        "http://[::1",
    ] {
        assert_eq!(l.check(url), None, "{url}");
    }
    assert!(PhishingList::default().is_empty());
    assert_eq!(PhishingList::default().check("http://evil.example/"), None);
}

#[test]
fn bad_lines_are_reported_with_file_and_line() {
    let mut builder = Builder::default();
    let errors = builder.add_text(
        "ok.example\nbad name.example\n*.wild.example\nftp://x.example/\nhttp://x.example:0/\n/path\n.dot.example\n",
        "lists/phish.txt",
    );
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "lists/phish.txt:2: invalid domain `bad name.example`: only letters, digits, `-` and `_` are allowed in a name",
            "lists/phish.txt:3: invalid entry `*.wild.example`: expected a domain like evil.example or a URL like https://evil.example/login",
            "lists/phish.txt:4: invalid URL `ftp://x.example/`: a URL must begin with http:// or https://",
            "lists/phish.txt:5: invalid URL `http://x.example:0/`: invalid port `0`",
            "lists/phish.txt:6: invalid entry `/path`: expected a domain like evil.example or a URL like https://evil.example/login",
            "lists/phish.txt:7: invalid entry `.dot.example`: expected a domain like evil.example or a URL like https://evil.example/login",
        ]
    );
}

#[test]
fn load_reads_several_files_and_names_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    std::fs::write(&a, "a.example\n").unwrap();
    std::fs::write(&b, "https://b.example/x\n").unwrap();
    let l = PhishingList::load(&[a.clone(), b]).unwrap();
    assert_eq!(l.len(), 2);
    assert!(l.check("http://www.a.example/").is_some());
    assert!(l.check("https://b.example/xy").is_some());
    assert_eq!(
        format!("{l:?}"),
        "PhishingList { entries: 2, url_prefixes: 1 }"
    );

    let missing = dir.path().join("missing.txt");
    let errors = PhishingList::load(&[a, missing.clone()]).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().starts_with(&format!(
        "{0}: cannot read phishing list {0}: ",
        missing.display()
    )));
}

proptest! {
    #[test]
    fn check_never_panics(entry in "\\PC{0,40}", url in "\\PC{0,60}") {
        let mut builder = Builder::default();
        let _ = builder.add_text(&entry, "p.txt");
        let l = builder.build().unwrap();
        let _ = l.check(&url);
        let _ = l.check(&format!("https://{url}"));
    }

    #[test]
    fn a_listed_url_matches_every_extension_of_its_path(
        host in "[a-z]{1,10}\\.example",
        path in "/[a-zA-Z0-9/._-]{0,20}",
        tail in "[a-zA-Z0-9/?=&._-]{0,20}",
    ) {
        let l = list(&format!("https://{host}{path}\n"));
        let url = format!("https://{host}{path}{tail}");
        let expected = format!("https://{host}{path}");
        prop_assert_eq!(hit(&l, &url), Some(expected));
    }
}
