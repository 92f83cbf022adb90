//! Loading configurations: SPEC §5 defaults, every accepted value, and errors with the
//! right file and line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_policy::{
    destination_denied, CertErrorPolicy, Config, ConfigError, HostMismatch, LeafKey, LogTarget,
    NonTls, SniMismatch, SslAction, Via,
};

fn load(text: &str) -> Config {
    Config::from_str(text, "sluice.toml", Path::new("conf"))
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"))
}

/// Every error, displayed as `sluice check` prints it.
fn errors(text: &str) -> Vec<String> {
    errors_in(text, Path::new("conf"))
}

fn errors_in(text: &str, base_dir: &Path) -> Vec<String> {
    match Config::from_str(text, "sluice.toml", base_dir) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.iter().map(ConfigError::to_string).collect(),
    }
}

#[test]
fn an_empty_file_has_every_spec_default() {
    let s = load("").settings;
    assert_eq!(s.listen, ["127.0.0.1:3128".parse::<SocketAddr>().unwrap()]);
    assert_eq!(s.connect_ports, [443]);
    assert_eq!(s.admin_listen, Some("127.0.0.1:3129".parse().unwrap()));
    assert!(!s.proxy_protocol);
    assert!(s.tls.decryption);
    assert_eq!(s.tls.default_action, SslAction::Bump);
    assert_eq!(s.tls.ca_cert, Path::new("conf/sluice-data/ca.pem"));
    assert_eq!(s.tls.ca_key, Path::new("conf/sluice-data/ca-key.pem"));
    assert_eq!(s.tls.leaf_key, LeafKey::EcdsaP256);
    assert!(s.tls.upstream_roots.is_empty());
    assert_eq!(s.tls.on_cert_error, CertErrorPolicy::Block);
    assert_eq!(s.tls.on_sni_mismatch, SniMismatch::Terminate);
    assert_eq!(s.tls.on_non_tls, NonTls::Terminate);
    assert_eq!(s.tls.on_host_mismatch, HostMismatch::Block);
    assert!(s.tls.learn_bypass);
    assert_eq!(s.tls.learn_after, 3);
    assert_eq!(s.tls.learn_ttl, Duration::from_secs(24 * 3600));
    assert!(s.tls.trusted_server_certs.is_empty());
    assert_eq!(s.tls.cert_cache_size, 10_000);
    assert!(s.tls.strip_alt_svc_h3);
    assert_eq!(s.log.access, LogTarget::Stdout);
    assert_eq!(s.log.level, "info");
    assert_eq!(s.limits.max_connections, 10_000);
    assert_eq!(s.limits.client_hello_timeout, Duration::from_secs(10));
    assert_eq!(s.limits.connect_timeout, Duration::from_secs(10));
    assert_eq!(s.limits.idle_timeout, Duration::from_secs(300));
    assert_eq!(s.limits.max_header_bytes, 65_536);
    assert_eq!(s.limits.upstream_response_timeout, Duration::from_secs(60));
    for denied in ["127.0.0.1", "::1", "169.254.169.254", "fe80::1", "0.0.0.0"] {
        assert!(
            destination_denied(&s.deny_destinations, denied.parse().unwrap()),
            "{denied}"
        );
    }
    assert!(!destination_denied(
        &s.deny_destinations,
        "192.0.2.1".parse().unwrap()
    ));
}

#[test]
fn deny_destinations_and_the_response_timeout_are_read_and_checked() {
    let s = load(
        "[proxy]\ndeny_destinations = [\"10.0.0.0/8\", \"2001:db8::1\"]\n\
         [limits]\nupstream_response_timeout = \"5s\"\n",
    )
    .settings;
    let denied = |ip: &str| destination_denied(&s.deny_destinations, ip.parse().unwrap());
    assert!(denied("10.9.8.7"));
    assert!(denied("2001:db8::1"));
    assert!(!denied("127.0.0.1"), "a list replaces the default");
    assert_eq!(s.limits.upstream_response_timeout, Duration::from_secs(5));
    let open = load("[proxy]\ndeny_destinations = []\n").settings;
    assert!(!destination_denied(
        &open.deny_destinations,
        "127.0.0.1".parse().unwrap()
    ));
    assert_eq!(
        errors(
            "[proxy]\ndeny_destinations = [\"10.0.0.0/8\",\n  \"localhost\"]\n\
                [limits]\nupstream_response_timeout = \"0s\"\n"
        ),
        [
            "sluice.toml:3: proxy.deny_destinations: invalid address or CIDR `localhost`",
            "sluice.toml:5: limits.upstream_response_timeout: must be greater than zero",
        ]
    );
}

#[test]
fn the_embedded_default_is_the_empty_file_relative_to_the_current_directory() {
    let config = Config::embedded_default();
    assert_eq!(config.settings.tls.ca_cert, Path::new("sluice-data/ca.pem"));
    assert_eq!(
        config.settings.tls.learn_state,
        Path::new("sluice-data/bypass.json")
    );
    assert_eq!(
        config.settings.tls.ca_key,
        Path::new("sluice-data/ca-key.pem")
    );
    let mut from_empty = load("").settings;
    from_empty.tls.ca_cert = config.settings.tls.ca_cert.clone();
    from_empty.tls.ca_key = config.settings.tls.ca_key.clone();
    from_empty.tls.learn_state = config.settings.tls.learn_state.clone();
    assert_eq!(config.settings, from_empty);
}

#[test]
fn the_spec_example_subset_loads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    std::fs::write(dir.path().join("lists/gambling.txt"), "casino.example\n").unwrap();
    let text = r#"
[proxy]
listen = ["127.0.0.1:3128"]
connect_ports = [443]          # CONNECT to other ports: 403

[tls]
decryption = true
default_action = "bump"        # tunnel | tunnel-sni | bump | terminate
ca_cert = "sluice-data/ca.pem"
ca_key = "sluice-data/ca-key.pem"
leaf_key = "ecdsa-p256"        # or rsa-2048
upstream_roots = []
on_cert_error = "block"
on_sni_mismatch = "terminate"
on_non_tls = "terminate"
trusted_server_certs = []
cert_cache_size = 10000

[[ssl_rules]]
name = "banking"
domains = [".bank.example"]
action = "tunnel-sni"

[categories]
social = ["*.social.example", ".chat.example"]
gambling = { file = "lists/gambling.txt" }

[log]
access = "stdout"
level = "info"

[limits]
max_connections = 10000
client_hello_timeout = "10s"
connect_timeout = "10s"
idle_timeout = "300s"
max_header_bytes = 65536
"#;
    let config = Config::from_str(text, "sluice.toml", dir.path()).unwrap();
    assert_eq!(config.settings, {
        let mut expected = load("").settings;
        expected.tls.ca_cert = dir.path().join("sluice-data/ca.pem");
        expected.tls.ca_key = dir.path().join("sluice-data/ca-key.pem");
        expected.tls.learn_state = dir.path().join("sluice-data/bypass.json");
        expected
    });
}

#[test]
fn every_value_is_read() {
    let fp = "sha256:".to_owned() + &["0A"; 32].join(":");
    let s = load(&format!(
        r#"
[proxy]
listen = ["0.0.0.0:8080", "[::1]:3128"]
connect_ports = [443, 8443]
[tls]
decryption = false
default_action = "tunnel-sni"
ca_cert = "/etc/sluice/ca.pem"
ca_key = "keys/ca-key.pem"
leaf_key = "rsa-2048"
upstream_roots = ["roots/a.pem", "/abs/b.pem"]
on_cert_error = "untrusted"
on_sni_mismatch = "ignore"
on_non_tls = "tunnel"
on_host_mismatch = "ignore"
learn_bypass = false
learn_after = 5
learn_ttl = "2h"
trusted_server_certs = ["{fp}"]
cert_cache_size = 5
[log]
access = "logs/access.log"
level = "DEBUG"
[limits]
max_connections = 7
client_hello_timeout = "1500ms"
connect_timeout = "1m"
idle_timeout = "1h 30m"
max_header_bytes = 1024
"#
    ))
    .settings;
    assert_eq!(
        s.listen,
        [
            "0.0.0.0:8080".parse::<SocketAddr>().unwrap(),
            "[::1]:3128".parse().unwrap()
        ]
    );
    assert_eq!(s.connect_ports, [443, 8443]);
    assert!(!s.tls.decryption);
    assert_eq!(s.tls.default_action, SslAction::TunnelSni);
    assert_eq!(s.tls.ca_cert, Path::new("/etc/sluice/ca.pem"));
    assert_eq!(s.tls.ca_key, Path::new("conf/keys/ca-key.pem"));
    assert_eq!(s.tls.leaf_key, LeafKey::Rsa2048);
    assert_eq!(
        s.tls.upstream_roots,
        [
            PathBuf::from("conf/roots/a.pem"),
            PathBuf::from("/abs/b.pem")
        ]
    );
    assert_eq!(s.tls.on_cert_error, CertErrorPolicy::Untrusted);
    assert_eq!(s.tls.on_sni_mismatch, SniMismatch::Ignore);
    assert_eq!(s.tls.on_non_tls, NonTls::Tunnel);
    assert_eq!(s.tls.on_host_mismatch, HostMismatch::Ignore);
    assert!(!s.tls.learn_bypass);
    assert_eq!(s.tls.learn_after, 5);
    assert_eq!(s.tls.learn_ttl, Duration::from_secs(7200));
    assert_eq!(s.tls.trusted_server_certs, [[0x0a; 32]]);
    assert_eq!(s.tls.cert_cache_size, 5);
    assert_eq!(s.log.access, LogTarget::File("conf/logs/access.log".into()));
    assert_eq!(s.log.level, "debug");
    assert_eq!(s.limits.max_connections, 7);
    assert_eq!(s.limits.client_hello_timeout, Duration::from_millis(1500));
    assert_eq!(s.limits.connect_timeout, Duration::from_secs(60));
    assert_eq!(s.limits.idle_timeout, Duration::from_secs(5400));
    assert_eq!(s.limits.max_header_bytes, 1024);
}

#[test]
fn every_enum_value_parses() {
    for (text, action) in [
        ("tunnel", SslAction::Tunnel),
        ("tunnel-sni", SslAction::TunnelSni),
        ("bump", SslAction::Bump),
        ("terminate", SslAction::Terminate),
    ] {
        let s = load(&format!("[tls]\ndefault_action = \"{text}\"")).settings;
        assert_eq!(s.tls.default_action, action);
        assert_eq!(action.as_str(), text);
        assert_eq!(action.to_string(), text);
    }
    for (text, policy) in [
        ("block", CertErrorPolicy::Block),
        ("untrusted", CertErrorPolicy::Untrusted),
        ("allow", CertErrorPolicy::Allow),
    ] {
        let s = load(&format!("[tls]\non_cert_error = \"{text}\"")).settings;
        assert_eq!(s.tls.on_cert_error, policy);
        assert_eq!(policy.as_str(), text);
    }
    for (text, key) in [
        ("ecdsa-p256", LeafKey::EcdsaP256),
        ("rsa-2048", LeafKey::Rsa2048),
    ] {
        assert_eq!(
            load(&format!("[tls]\nleaf_key = \"{text}\""))
                .settings
                .tls
                .leaf_key,
            key
        );
        assert_eq!(key.as_str(), text);
    }
    for (text, value) in [
        ("terminate", SniMismatch::Terminate),
        ("ignore", SniMismatch::Ignore),
    ] {
        let s = load(&format!("[tls]\non_sni_mismatch = \"{text}\"")).settings;
        assert_eq!(s.tls.on_sni_mismatch, value);
        assert_eq!(value.as_str(), text);
    }
    for (text, value) in [("terminate", NonTls::Terminate), ("tunnel", NonTls::Tunnel)] {
        assert_eq!(
            load(&format!("[tls]\non_non_tls = \"{text}\""))
                .settings
                .tls
                .on_non_tls,
            value
        );
        assert_eq!(value.as_str(), text);
    }
    for level in ["error", "warn", "info", "debug", "trace"] {
        assert_eq!(
            load(&format!("[log]\nlevel = \"{level}\""))
                .settings
                .log
                .level,
            level
        );
    }
}

#[test]
fn unknown_enum_values_are_rejected_with_their_line() {
    assert_eq!(
        errors("[tls]\n\nleaf_key = \"rsa2048\"\n"),
        ["sluice.toml:3: unknown variant `rsa2048`, expected `ecdsa-p256` or `rsa-2048`"]
    );
    assert_eq!(
        errors("[[ssl_rules]]\nname = \"x\"\naction = \"allow\"\n"),
        ["sluice.toml:3: unknown variant `allow`, expected one of `tunnel`, `tunnel-sni`, `bump`, `terminate`"]
    );
    let e = errors("[[ssl_rules]]\nname = \"x\"\naction = \"bump\"\ncert_errors = \"ignore\"\n");
    assert!(
        e[0].starts_with("sluice.toml:4: unknown variant `ignore`"),
        "{e:?}"
    );
}

#[test]
fn unknown_sections_and_keys_are_rejected_with_their_line() {
    let e = errors("[proxy]\nlisten = [\"127.0.0.1:3128\"]\n\n[metrics]\nport = 9\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("sluice.toml:4: unknown field `metrics`"),
        "{e:?}"
    );
    for (text, line, key) in [
        (
            "[proxy]\n# comment\nproxy_protocols = true\n",
            3,
            "proxy_protocols",
        ),
        (
            "[tls]\ndecryption = true\nlearn_typo = true\n",
            3,
            "learn_typo",
        ),
        ("[log]\nsyslog_host = \"h\"\n", 2, "syslog_host"),
        ("[limits]\n\n\nfoo = 1\n", 4, "foo"),
        (
            "\n[anti_virus]\nengine = \"none\"\nsocket = \"x\"\n",
            4,
            "socket",
        ),
        (
            "[[http_rules]]\nname = \"x\"\naction = \"allow\"\nuser = [\"bob\"]\n",
            4,
            "user",
        ),
        ("[block_page]\nfile = \"x\"\n", 2, "file"),
        ("[anti_phishing]\nlist = []\n", 2, "list"),
        (
            "[[ssl_rules]]\nname = \"x\"\naction = \"bump\"\nuser = [\"bob\"]\n",
            4,
            "user",
        ),
        (
            "[categories]\nx = { file = \"a\", other = 1 }\n",
            2,
            "other",
        ),
    ] {
        let e = errors(text);
        let expected = format!("sluice.toml:{line}: unknown field `{key}`");
        // Other problems of the same file are reported too (a list file that is missing).
        let unknown = e.iter().filter(|l| l.contains("unknown field")).count();
        assert!(
            unknown == 1 && e[0].starts_with(&expected),
            "{text:?} gave {e:?}"
        );
    }
}

#[test]
fn syntax_and_type_errors_have_their_line() {
    let e = errors("[proxy]\nlisten = [\"127.0.0.1:3128\" \"x\"]\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("sluice.toml:2: "), "{e:?}");
    let e = errors("[log]\nlevel = \"info\"\n[proxy\n");
    assert!(e[0].starts_with("sluice.toml:3: "), "{e:?}");
    let e = errors("[limits]\n\nmax_connections = \"many\"\n");
    assert_eq!(
        e,
        ["sluice.toml:3: invalid type: string \"many\", expected i64"]
    );
    let e = errors("[[ssl_rules]]\naction = \"bump\"\n");
    assert_eq!(e, ["sluice.toml:1: missing field `name`"]);
    let e = errors("[[ssl_rules]]\nname = \"x\"\n");
    assert_eq!(e, ["sluice.toml:1: missing field `action`"]);
    let e = errors("[categories]\nx = 5\n");
    assert!(
        e[0].starts_with("sluice.toml:2: invalid type: integer `5`"),
        "{e:?}"
    );
}

#[test]
fn every_semantic_error_is_reported_with_its_line() {
    let text = r#"[proxy]
listen = ["127.0.0.1:3128", "localhost:3128", "127.0.0.1:3128"]
connect_ports = [443, 0, 70000]

[tls]
trusted_server_certs = ["sha256:abcd", "sha1:00"]
cert_cache_size = 0
ca_key = ""

[log]
level = "loud"

[limits]
max_connections = -1
client_hello_timeout = "soon"
connect_timeout = "0s"
max_header_bytes = 0

[categories]
social = ["*.social.example",
          "bad..name"]

[[ssl_rules]]
name = "first"
action = "tunnel"
clients = ["10.0.0.0/8", "10.0.0.0/33"]
ips = ["not-an-ip"]
ports = [443, "8100-8000", "x"]

[[ssl_rules]]
name = "first"
action = "bump"
domains = ["ok.example", "foo.*.example"]
domain_regex = ["("]
user_agents = ["[z-a]"]
categories = ["social", "gambling"]

[[ssl_rules]]
name = ""
action = "bump"
domains = []

[[ssl_rules]]
name = "default"
action = "bump"
"#;
    let expected = [
        "sluice.toml:2: proxy.listen: invalid address `localhost:3128`, expected IP:PORT like \"127.0.0.1:3128\" or \"[::1]:3128\"",
        "sluice.toml:2: proxy.listen: duplicate address 127.0.0.1:3128",
        "sluice.toml:3: proxy.connect_ports: port 0 is out of range 1-65535",
        "sluice.toml:3: proxy.connect_ports: port 70000 is out of range 1-65535",
        "sluice.toml:6: tls.trusted_server_certs: invalid fingerprint `sha256:abcd`: a SHA-256 fingerprint is 32 bytes (64 hex digits)",
        "sluice.toml:6: tls.trusted_server_certs: invalid fingerprint `sha1:00`: expected \"sha256:<hex>\"",
        "sluice.toml:7: tls.cert_cache_size: must be at least 1, got 0",
        "sluice.toml:8: tls.ca_key: empty path",
        "sluice.toml:11: log.level: unknown level `loud`, expected one of error, warn, info, debug, trace",
        "sluice.toml:14: limits.max_connections: must be at least 1, got -1",
        "sluice.toml:15: limits.client_hello_timeout: invalid duration `soon` (expected number at 0), expected like \"10s\", \"5m\" or \"1h 30m\"",
        "sluice.toml:16: limits.connect_timeout: must be greater than zero",
        "sluice.toml:17: limits.max_header_bytes: must be at least 1, got 0",
        "sluice.toml:21: categories.social: invalid domain pattern `bad..name`: empty label",
        "sluice.toml:26: ssl_rules.clients: invalid address or CIDR `10.0.0.0/33`",
        "sluice.toml:27: ssl_rules.ips: invalid address or CIDR `not-an-ip`",
        "sluice.toml:28: ssl_rules.ports: invalid port range `8100-8000`: 8100 is greater than 8000",
        "sluice.toml:28: ssl_rules.ports: invalid port range `x`, expected like \"8000-8100\"",
        "sluice.toml:31: ssl_rules: duplicate rule name `first` (also rule #1)",
        "sluice.toml:33: ssl_rules.domains: invalid domain pattern `foo.*.example`: `*` is only allowed as a leading `*.`",
        "sluice.toml:34: ssl_rules.domain_regex: invalid regex `(`: unclosed group",
        "sluice.toml:35: ssl_rules.user_agents: invalid regex `[z-a]`: invalid character class range, the start must be <= the end",
        "sluice.toml:36: ssl_rules.categories: unknown category `gambling`",
        "sluice.toml:39: ssl_rules: name must not be empty",
        "sluice.toml:41: ssl_rules.domains: empty list; it would never match (remove the key to not test it)",
        "sluice.toml:44: ssl_rules: the name `default` is reserved for the access log",
    ];
    assert_eq!(errors(text), expected);
}

#[test]
fn categories_load_from_files_with_comments() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    std::fs::write(
        dir.path().join("lists/gambling.txt"),
        "\u{feff}# gambling sites\n\ncasino.example   # exact\n*.bet.example\n  .poker.example  \r\nBÜCHER.example.\n",
    )
    .unwrap();
    let config_path = dir.path().join("sluice.toml");
    std::fs::write(
        &config_path,
        r#"
[categories]
gambling = { file = "lists/gambling.txt" }
social = ["*.social.example"]

[[ssl_rules]]
name = "no gambling"
categories = ["gambling"]
action = "terminate"

[[ssl_rules]]
name = "social"
categories = ["social"]
action = "tunnel-sni"
"#,
    )
    .unwrap();
    let config = Config::load(&config_path).unwrap();
    let decide = |name: &str| {
        let facts = sluice_policy::SslFacts {
            client: "10.0.0.1".parse().unwrap(),
            user: None,
            groups: &[],
            user_agent: None,
            dest_name: Some(name),
            dest_ip: None,
            port: 443,
        };
        config.policy.decide_client_hello(&facts).rule
    };
    assert_eq!(decide("casino.example"), "no gambling");
    assert_eq!(decide("www.casino.example"), "default");
    assert_eq!(decide("eu.bet.example"), "no gambling");
    assert_eq!(decide("bet.example"), "default");
    assert_eq!(decide("poker.example"), "no gambling");
    assert_eq!(decide("x.poker.example"), "no gambling");
    assert_eq!(decide("xn--bcher-kva.example"), "no gambling");
    assert_eq!(decide("gambling.txt"), "default");
    assert_eq!(decide("chat.social.example"), "social");
}

#[test]
fn bad_lines_of_a_list_file_are_reported_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("list.txt"),
        "# header\nok.example\nbad name.example # oops\n\n*.ok.example\nfoo.*.example\n",
    )
    .unwrap();
    let e = errors_in(
        "[categories]\nx = { file = \"list.txt\" }\nbad = [\"a!\"]\n",
        dir.path(),
    );
    let list = dir.path().join("list.txt").display().to_string();
    assert_eq!(
        e,
        [
            "sluice.toml:3: categories.bad: invalid domain pattern `a!`: only letters, digits, `-` and `_` are allowed in a name".to_owned(),
            format!("{list}:3: invalid domain pattern `bad name.example`: only letters, digits, `-` and `_` are allowed in a name"),
            format!("{list}:6: invalid domain pattern `foo.*.example`: `*` is only allowed as a leading `*.`"),
        ]
    );
}

#[test]
fn a_list_file_in_the_wrong_format_reports_a_bounded_number_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    let hosts: String = (0..100)
        .map(|i| format!("0.0.0.0 host{i}.example\n"))
        .collect();
    std::fs::write(dir.path().join("hosts"), hosts).unwrap();
    let e = errors_in("[categories]\nx = { file = \"hosts\" }\n", dir.path());
    assert_eq!(e.len(), 21);
    assert!(
        e[19].contains(":20: invalid domain pattern `0.0.0.0 host19.example`"),
        "{}",
        e[19]
    );
    assert!(
        e[20].ends_with("80 more invalid lines not shown (100 in all)"),
        "{}",
        e[20]
    );
}

#[test]
fn a_missing_list_file_is_reported_at_the_line_naming_it() {
    let e = errors("[categories]\n\nx = { file = \"missing.txt\" }\n");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("sluice.toml:3: cannot read category file conf/missing.txt: "),
        "{e:?}"
    );
}

#[test]
fn load_names_the_file_as_given_and_resolves_paths_against_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(
        &path,
        "[tls]\nca_cert = \"ca/ca.pem\"\n\ncert_cache_size = 0\n",
    )
    .unwrap();
    let e = Config::load(&path).unwrap_err();
    assert_eq!(e[0].file, path.display().to_string());
    assert_eq!(e[0].line, Some(4));
    std::fs::write(&path, "[tls]\nca_cert = \"ca/ca.pem\"\n").unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.settings.tls.ca_cert, dir.path().join("ca/ca.pem"));

    let missing = dir.path().join("nope.toml");
    let e = Config::load(&missing).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].line, None);
    assert!(e[0]
        .to_string()
        .starts_with(&format!("{}: cannot read", missing.display())));
}

#[test]
fn the_admin_endpoint_can_be_moved_or_disabled() {
    let moved = load("[admin]\nlisten = \"[::1]:9000\"\n").settings;
    assert_eq!(moved.admin_listen, Some("[::1]:9000".parse().unwrap()));
    assert_eq!(load("[admin]\nlisten = \"\"\n").settings.admin_listen, None);
    assert!(
        load("[proxy]\nproxy_protocol = true\n")
            .settings
            .proxy_protocol
    );
    let e = errors("\n[admin]\nlisten = \"nowhere\"\n");
    assert!(
        e[0].starts_with("sluice.toml:3: admin.listen: invalid address"),
        "{e:?}"
    );
}

#[test]
fn syslog_targets_and_formats() {
    use sluice_policy::{SyslogFormat, SyslogTransport};
    let s = load("[log]\nsyslog = \"udp://127.0.0.1\"\n").settings;
    let target = s.log.syslog.unwrap();
    assert_eq!(
        (target.transport, target.host.as_str(), target.port),
        (SyslogTransport::Udp, "127.0.0.1", 514)
    );
    assert_eq!(s.log.syslog_format, SyslogFormat::Json);
    let s = load("[log]\nsyslog = \"tcp://[::1]:6514\"\nsyslog_format = \"cef\"\n").settings;
    let target = s.log.syslog.unwrap();
    assert_eq!(
        (target.transport, target.host.as_str(), target.port),
        (SyslogTransport::Tcp, "::1", 6514)
    );
    assert_eq!(s.log.syslog_format, SyslogFormat::Cef);
    let s = load("[log]\nsyslog = \"tcp://logs.example\"\n").settings;
    assert_eq!(s.log.syslog.unwrap().port, 601);
    assert!(load("").settings.log.syslog.is_none());
    let e = errors("[log]\n\nsyslog = \"http://x\"\n");
    assert!(e[0].starts_with("sluice.toml:3: log.syslog:"), "{e:?}");
    let e = errors("[log]\nsyslog = \"udp://h:99999\"\n");
    assert!(e[0].contains("invalid port"), "{e:?}");
    // The host is read as the anti-virus engines' is: an IPv6 address in brackets, a
    // name that is a name.
    for (target, why) in [
        ("udp://2001:db8::1", "invalid host `2001:db8:`"),
        ("udp://[zz]:514", "invalid IPv6 address"),
        ("tcp://bad host", "invalid host `bad host`"),
        ("tcp://", "names no host"),
    ] {
        let e = errors(&format!("[log]\nsyslog = \"{target}\"\n"));
        assert!(e[0].contains(why), "{target}: {e:?}");
    }
}

#[test]
fn the_users_file_is_read_at_load_with_errors_at_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users"),
        "# staff\nalice:$2y$05$abcdefghijklmnopqrstuuQ0i2Jq8eZ7aWq0pNJvA3o7YvW9zM1y\nbob:$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\n",
    )
    .unwrap();
    let config = Config::from_str(
        "[auth]\nusers_file = \"users\"\n",
        "sluice.toml",
        dir.path(),
    )
    .unwrap();
    let auth = &config.settings.auth;
    assert_eq!(auth.users.len(), 2);
    assert_eq!(auth.users[0].0, "alice");
    assert_eq!(auth.realm, "sluice");
    assert!(Config::embedded_default()
        .settings
        .auth
        .users_file
        .is_none());
    std::fs::write(dir.path().join("bad"), "carol:plaintext\n\nnocolon\n").unwrap();
    let errors = Config::from_str("[auth]\nusers_file = \"bad\"\n", "sluice.toml", dir.path())
        .err()
        .unwrap();
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(text.iter().any(|e| e.ends_with("bad:1: auth.users_file: unsupported hash: use bcrypt ($2y$...) or argon2 ($argon2id$...)")), "{text:?}");
    assert!(
        text.iter()
            .any(|e| e.contains("bad:3: auth.users_file: expected NAME:HASH")),
        "{text:?}"
    );
}

/// SPEC §10: the `[auth]` LDAP combinations `sluice check` refuses, each at its line,
/// and the service account's password read at load (never shown by `Debug`).
#[test]
fn ldap_settings_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    let config = Config::from_str(
        "[auth]\nldap_url = \"ldap://dc1.corp.example\"\nldap_starttls = true\n\
         ldap_bind_dn = \"cn=proxy,dc=corp\"\nldap_bind_password_file = \"pw\"\n\
         ldap_user_base = \"ou=people,dc=corp\"\ncache_ttl = \"1m\"\n",
        "sluice.toml",
        dir.path(),
    )
    .unwrap();
    let auth = &config.settings.auth;
    let ldap = auth.ldap.as_ref().unwrap();
    assert_eq!(ldap.bind_password.0, "s3cret");
    assert!(!format!("{ldap:?}").contains("s3cret"));
    assert_eq!(ldap.user_filter, sluice_policy::DEFAULT_LDAP_USER_FILTER);
    assert!(ldap.starttls);
    assert_eq!(auth.cache_ttl, std::time::Duration::from_secs(60));
    assert_eq!(
        Config::embedded_default().settings.auth.cache_ttl,
        std::time::Duration::from_secs(300)
    );
    let errors = |text: &str| -> Vec<String> {
        Config::from_str(text, "sluice.toml", dir.path())
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let e = errors("[auth]\nldap_url = \"ldap://dc1\"\n");
    assert_eq!(
        e,
        ["sluice.toml:2: auth.ldap_url: needs auth.ldap_user_base, where users are searched"]
    );
    let e = errors("[auth]\nldap_url = \"http://dc1\"\nldap_user_base = \"o=x\"\n");
    assert!(
        e[0].starts_with("sluice.toml:2: auth.ldap_url: expected ldap://"),
        "{e:?}"
    );
    let e = errors(
        "[auth]\nldap_url = \"ldap://dc1\"\nldap_user_base = \"o=x\"\n\
         ldap_bind_password_file = \"missing\"\n",
    );
    assert!(
        e[0].starts_with("sluice.toml:4: auth.ldap_bind_password_file: cannot read"),
        "{e:?}"
    );
    let e = errors(
        "[auth]\nldap_url = \"ldap://dc1\"\nldap_user_base = \"o=x\"\nldap_bind_dn = \"cn=p\"\n",
    );
    assert!(
        e[0].contains("auth.ldap_bind_dn: needs auth.ldap_bind_password_file"),
        "{e:?}"
    );
    let e = errors(
        "[auth]\nldap_url = \"ldap://dc1\"\nldap_user_base = \"o=x\"\nldap_ca = \"nope.pem\"\n",
    );
    assert!(
        e[0].starts_with("sluice.toml:4: auth.ldap_ca: cannot read"),
        "{e:?}"
    );
    let e = errors(
        "[auth]\nldap_url = \"ldap://dc1\"\nldap_user_base = \"o=x\"\nldap_user_filter = \"uid=x\"\n",
    );
    assert!(
        e[0].contains("auth.ldap_user_filter: expected an LDAP filter"),
        "{e:?}"
    );
    let e = errors(
        "[auth]\nldap_url = \"ldaps://dc1\"\nldap_starttls = true\nldap_user_base = \"o=x\"\n",
    );
    assert!(e[0].contains("StartTLS is for ldap://"), "{e:?}");
    let e = errors("[auth]\ncache_ttl = \"0s\"\n");
    assert!(
        e[0].contains("auth.cache_ttl: must be greater than zero"),
        "{e:?}"
    );
}

/// A keytab as `kadmin ktadd` writes it (version 0x0502), one key per principal.
fn keytab(principals: &[(&str, &[&str])]) -> Vec<u8> {
    let counted = |out: &mut Vec<u8>, bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        out.extend_from_slice(bytes);
    };
    let mut keytab = vec![5, 2];
    for (realm, components) in principals {
        let mut entry = (components.len() as u16).to_be_bytes().to_vec();
        counted(&mut entry, realm.as_bytes());
        for c in *components {
            counted(&mut entry, c.as_bytes());
        }
        entry.extend_from_slice(&[0, 0, 0, 1, 0x65, 0, 0, 0, 2, 0, 18]);
        counted(&mut entry, &[7; 32]);
        keytab.extend_from_slice(&(entry.len() as i32).to_be_bytes());
        keytab.extend(entry);
    }
    keytab
}

/// SPEC §10: the Kerberos keys `sluice check` refuses, each at its line: a keytab that
/// cannot be read or is not one, one without an HTTP/ principal, a principal the keytab
/// has no key for, a principal without a keytab; the default principal is the first
/// HTTP/ one.
#[test]
fn kerberos_settings_are_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::write(
        path.join("proxy.keytab"),
        keytab(&[
            ("CORP.EXAMPLE", &["host", "proxy.corp.example"]),
            ("CORP.EXAMPLE", &["HTTP", "proxy.corp.example"]),
            ("CORP.EXAMPLE", &["HTTP", "proxy2.corp.example"]),
        ]),
    )
    .unwrap();
    std::fs::write(
        path.join("host.keytab"),
        keytab(&[("CORP.EXAMPLE", &["host", "proxy.corp.example"])]),
    )
    .unwrap();
    std::fs::write(path.join("text.keytab"), "not a keytab\n").unwrap();
    let load = |text: &str| Config::from_str(text, "sluice.toml", path);
    let config = load("[auth]\nkerberos_keytab = \"proxy.keytab\"\n").unwrap();
    let kerberos = config.settings.auth.kerberos.unwrap();
    assert_eq!(kerberos.principal, "HTTP/proxy.corp.example@CORP.EXAMPLE");
    assert_eq!(kerberos.keytab, path.join("proxy.keytab"));
    let config = load(
        "[auth]\nkerberos_keytab = \"proxy.keytab\"\n\
         kerberos_principal = \"HTTP/proxy2.corp.example@CORP.EXAMPLE\"\n",
    )
    .unwrap();
    let kerberos = config.settings.auth.kerberos.unwrap();
    assert_eq!(kerberos.principal, "HTTP/proxy2.corp.example@CORP.EXAMPLE");
    assert!(Config::embedded_default().settings.auth.kerberos.is_none());

    let errors = |text: &str| -> Vec<String> {
        load(text)
            .err()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let e = errors("[auth]\n\nkerberos_keytab = \"missing.keytab\"\n");
    assert!(
        e[0].starts_with("sluice.toml:3: auth.kerberos_keytab: cannot read"),
        "{e:?}"
    );
    let e = errors("[auth]\nkerberos_keytab = \"text.keytab\"\n");
    assert_eq!(
        e,
        ["sluice.toml:2: auth.kerberos_keytab: not a keytab (expected version 0x0502)"]
    );
    let e = errors("[auth]\nkerberos_keytab = \"host.keytab\"\n");
    assert!(
        e[0].starts_with("sluice.toml:2: auth.kerberos_keytab: ")
            && e[0].contains(
                "holds no HTTP/ service principal (it holds: host/proxy.corp.example@CORP.EXAMPLE)"
            ),
        "{e:?}"
    );
    let e = errors(
        "[auth]\nkerberos_keytab = \"proxy.keytab\"\n\
         kerberos_principal = \"HTTP/other.corp.example@CORP.EXAMPLE\"\n",
    );
    assert!(
        e[0].starts_with("sluice.toml:3: auth.kerberos_principal: ")
            && e[0].contains("holds no key for HTTP/other.corp.example@CORP.EXAMPLE"),
        "{e:?}"
    );
    let e = errors("[auth]\nkerberos_principal = \"HTTP/proxy.corp.example@CORP.EXAMPLE\"\n");
    assert_eq!(
        e,
        ["sluice.toml:2: auth.kerberos_principal: needs auth.kerberos_keytab, which holds its key"]
    );
}

/// SPEC §4, §6: every error of a file at once, in file order, not just the first one
/// serde meets (issue 11: an unknown key, an unknown action, a bad CIDR, a bad regex and
/// an unknown category).
#[test]
fn every_error_of_a_file_is_reported_at_once_in_file_order() {
    let text = "\
[proxy]
listen = [\"127.0.0.1:3128\"]
bogus_key = 1

[[ssl_rules]]
name = \"one\"
action = \"explode\"
clients = [\"10.0.0.0/33\"]

[[ssl_rules]]
name = \"two\"
action = \"bump\"
domain_regex = [\"(unclosed\"]

[[http_rules]]
name = \"three\"
action = \"block\"
categories = [\"nosuch\"]

[tls]
on_cert_error = \"sometimes\"
";
    let e = errors(text);
    let lines: Vec<&str> = e.iter().map(|l| l.split(':').nth(1).unwrap()).collect();
    assert_eq!(lines, ["3", "7", "8", "13", "18", "21"], "{e:#?}");
    assert!(e[0].contains("unknown field `bogus_key`"), "{e:#?}");
    assert!(e[1].contains("unknown variant `explode`"), "{e:#?}");
    assert!(e[5].contains("unknown variant `sometimes`"), "{e:#?}");
}

// Issue 13, finding 11: a PROXY header is believed only from the listed peers.
#[test]
fn proxy_protocol_from_defaults_to_loopback_and_takes_ranges() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let default = load("[proxy]\nproxy_protocol = true\n").settings;
    assert!(default.may_send_proxy_header(ip("127.0.0.1")));
    assert!(default.may_send_proxy_header(ip("127.9.9.9")));
    assert!(default.may_send_proxy_header(ip("::1")));
    assert!(!default.may_send_proxy_header(ip("10.0.0.1")));
    assert!(!default.may_send_proxy_header(ip("::2")));
    let listed = load(
        "[proxy]\nproxy_protocol = true\nproxy_protocol_from = [\"10.1.0.0/16\", \"2001:db8::7\"]\n",
    )
    .settings;
    assert!(listed.may_send_proxy_header(ip("10.1.200.3")));
    assert!(
        listed.may_send_proxy_header(ip("::ffff:10.1.0.9")),
        "a dual-stack peer is its IPv4 address"
    );
    assert!(listed.may_send_proxy_header(ip("2001:db8::7")));
    assert!(
        !listed.may_send_proxy_header(ip("127.0.0.1")),
        "loopback no longer listed"
    );
    assert!(!listed.may_send_proxy_header(ip("10.2.0.1")));
    assert!(!listed.may_send_proxy_header(ip("2001:db8::8")));
}

#[test]
fn bad_proxy_protocol_from_entries_are_reported_with_their_line() {
    let e = errors("[proxy]\nproxy_protocol = true\nproxy_protocol_from = [\n  \"10.0.0.0/8\",\n  \"lb.example\",\n]\n");
    assert_eq!(
        e,
        ["sluice.toml:5: proxy.proxy_protocol_from: invalid address or CIDR `lb.example`"]
    );
    let e = errors("[proxy]\nproxy_protocol = true\nproxy_protocol_from = []\n");
    assert!(
        e[0].starts_with("sluice.toml:3: proxy.proxy_protocol_from: empty"),
        "{e:?}"
    );
    // Without the PROXY protocol an empty list closes nothing.
    load("[proxy]\nproxy_protocol_from = []\n");
}

// Issue 13, finding 12: an admin endpoint reachable from other machines needs a token.
#[test]
fn a_non_loopback_admin_endpoint_needs_a_token_file() {
    for listen in ["0.0.0.0:3129", "10.0.0.1:3129", "[::]:3129"] {
        let e = errors(&format!("[proxy]\n\n[admin]\nlisten = \"{listen}\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!(
                "sluice.toml:4: admin.listen: {} is not a loopback address; set admin.token_file",
                listen.parse::<SocketAddr>().unwrap()
            )),
            "{e:?}"
        );
    }
    for loopback in ["127.0.0.2:3129", "[::1]:3129", "[::ffff:127.0.0.1]:3129"] {
        load(&format!("[admin]\nlisten = \"{loopback}\"\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "s3cret\n").unwrap();
    let with_token = Config::from_str(
        "[admin]\nlisten = \"0.0.0.0:3129\"\ntoken_file = \"admin.token\"\n",
        "sluice.toml",
        dir.path(),
    )
    .unwrap();
    assert!(
        with_token.settings.admin_token.is_some(),
        "the token is read"
    );
    assert!(
        !format!("{:?}", with_token.settings).contains("s3cret"),
        "the token never shows in a debug print"
    );
}

#[test]
fn unreadable_or_empty_token_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.token"), "\n").unwrap();
    let e = errors_in("[admin]\ntoken_file = \"missing.token\"\n", dir.path());
    assert!(
        e[0].starts_with("sluice.toml:2: admin.token_file: cannot read"),
        "{e:?}"
    );
    let e = errors_in("[admin]\ntoken_file = \"empty.token\"\n", dir.path());
    assert_eq!(
        e,
        ["sluice.toml:2: admin.token_file: the token must be one line of visible ASCII characters"]
    );
    assert_eq!(
        load("[admin]\ntoken_file = \"\"\n").settings.admin_token,
        None
    );
}

#[test]
fn the_learned_bypass_table_is_bounded_and_kept_in_a_file() {
    let s = load("").settings;
    assert_eq!(s.tls.learn_max_names, 10_000);
    assert_eq!(s.tls.learn_state, Path::new("conf/sluice-data/bypass.json"));
    let s = load("[tls]\nlearn_max_names = 5\nlearn_state = \"state/b.json\"\n").settings;
    assert_eq!(s.tls.learn_max_names, 5);
    assert_eq!(s.tls.learn_state, Path::new("conf/state/b.json"));
    assert_eq!(
        errors("[tls]\nlearn_max_names = 0\nlearn_state = \"\"\n"),
        [
            "sluice.toml:2: tls.learn_max_names: must be at least 1, got 0",
            "sluice.toml:3: tls.learn_state: empty path",
        ]
    );
}

#[test]
fn pac_is_absent_by_default_written_from_proxy_or_read_from_a_file() {
    assert_eq!(load("").settings.pac, None);
    let written = load("[pac]\nproxy = \"proxy.corp.example:3128\"\n")
        .settings
        .pac;
    assert!(written
        .unwrap()
        .contains("PROXY proxy.corp.example:3128; DIRECT"));
    let dir = tempfile::tempdir().unwrap();
    let script = "function FindProxyForURL(url, host) { return \"DIRECT\"; }\n";
    std::fs::write(dir.path().join("corp.pac"), script).unwrap();
    let config = Config::from_str("[pac]\nfile = \"corp.pac\"\n", "sluice.toml", dir.path())
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"));
    assert_eq!(config.settings.pac.as_deref(), Some(script));
}

#[test]
fn pac_errors_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not.pac"), "<html>oops</html>\n").unwrap();
    for (text, expected) in [
        (
            "[pac]\nfile = \"a.pac\"\nproxy = \"p:3128\"\n",
            "sluice.toml:3: pac.proxy: set pac.file or pac.proxy, not both",
        ),
        (
            "[pac]\nproxy = \"p\"\n",
            "sluice.toml:2: pac.proxy: `p` is not host:port (the port is missing)",
        ),
        (
            "[pac]\n\nproxy = \"p\\\";x=\\\":3128\"\n",
            "sluice.toml:3: pac.proxy: `p\";x=\":3128` is not host:port",
        ),
        (
            "[pac]\nfile = \"missing.pac\"\n",
            "sluice.toml:2: pac.file: cannot read",
        ),
        ("[pac]\nfile = \"not.pac\"\n", "sluice.toml:2: pac.file: "),
        ("[pac]\nurl = \"x\"\n", "sluice.toml:2: unknown field `url`"),
    ] {
        let e = errors_in(text, dir.path());
        assert!(
            e.iter().any(|line| line.starts_with(expected)),
            "{text}: {e:?}"
        );
    }
    let not_pac = errors_in("[pac]\nfile = \"not.pac\"\n", dir.path());
    assert!(not_pac[0].ends_with("does not define FindProxyForURL, so it is not a PAC script"));
}

#[test]
fn upstream_proxies_are_read_with_their_credentials() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("parent.cred"), "alice:s3cret word\n").unwrap();
    let text = "[proxy]\ndefault_via = \"corp\"\n\n[[upstream_proxies]]\nname = \"corp\"\nurls = [\"http://p1.example:3128\", \"http://127.0.0.1:3129\"]\ncredentials_file = \"parent.cred\"\n";
    let config = Config::from_str(text, "sluice.toml", dir.path())
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"));
    let s = config.settings;
    assert_eq!(s.default_via, Via::Parent("corp".into()));
    let parent = s.parent(&s.default_via).unwrap();
    let urls: Vec<String> = parent.urls.iter().map(ToString::to_string).collect();
    assert_eq!(urls, ["p1.example:3128", "127.0.0.1:3129"]);
    assert_eq!(
        parent.credentials.as_ref().unwrap().user_password(),
        "alice:s3cret word"
    );
    assert!(!format!("{s:?}").contains("s3cret"), "never in Debug");
    assert_eq!(load("").settings.default_via, Via::Direct);
}

#[test]
fn upstream_proxy_errors_name_their_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.cred"), "no colon here\n").unwrap();
    for (text, expected) in [
        (
            "[proxy]\ndefault_via = \"nowhere\"\n",
            "sluice.toml:2: proxy.default_via: `nowhere` is neither",
        ),
        (
            "[[upstream_proxies]]\nname = \"p\"\nurls = []\n",
            "sluice.toml:3: upstream_proxies.urls: at least one URL is needed",
        ),
        (
            "[[upstream_proxies]]\nname = \"p\"\nurls = [\"https://p:3128\"]\n",
            "sluice.toml:3: upstream_proxies.urls: `https://p:3128` is not http://host:port",
        ),
        (
            "[[upstream_proxies]]\nname = \"direct\"\nurls = [\"http://p:3128\"]\n",
            "sluice.toml:2: upstream_proxies.name: `direct` is not a usable name",
        ),
        (
            "[[upstream_proxies]]\nname = \"p\"\nurls = [\"http://p:3128\"]\n[[upstream_proxies]]\nname = \"p\"\nurls = [\"http://q:3128\"]\n",
            "sluice.toml:5: upstream_proxies.name: `p` is used twice",
        ),
        (
            "[[upstream_proxies]]\nname = \"p\"\nurls = [\"http://p:3128\"]\ncredentials_file = \"bad.cred\"\n",
            "sluice.toml:4: upstream_proxies.credentials_file:",
        ),
        (
            "[[ssl_rules]]\nname = \"x\"\ndomains = [\"a.example\"]\naction = \"bump\"\nvia = \"p\"\n",
            "sluice.toml:5: ssl_rules.via: `p` is neither",
        ),
        (
            "[[http_rules]]\nname = \"x\"\ndomains = [\"a.example\"]\naction = \"allow\"\nvia = \"p\"\n",
            "sluice.toml:5: http_rules.via: `p` is neither",
        ),
    ] {
        let e = errors_in(text, dir.path());
        assert!(
            e.iter().any(|line| line.starts_with(expected)),
            "{text}: {e:?}"
        );
    }
}

#[test]
fn transparent_listen_is_read_and_checked() {
    assert!(load("").settings.transparent_listen.is_empty());
    let config = load("[proxy]\ntransparent_listen = [\"0.0.0.0:3130\", \"[::]:3130\"]\n");
    let expected: Vec<SocketAddr> = vec![
        "0.0.0.0:3130".parse().unwrap(),
        "[::]:3130".parse().unwrap(),
    ];
    assert_eq!(config.settings.transparent_listen, expected);
    // Empty is allowed (no interception); bad and repeated addresses are not.
    assert!(load("[proxy]\ntransparent_listen = []\n")
        .settings
        .transparent_listen
        .is_empty());
    let text =
        "[proxy]\n\ntransparent_listen = [\"gateway:3130\", \"0.0.0.0:3130\", \"0.0.0.0:3130\"]\n";
    assert_eq!(
        errors(text),
        [
            "sluice.toml:3: proxy.transparent_listen: invalid address `gateway:3130`, expected IP:PORT like \"127.0.0.1:3128\" or \"[::1]:3128\"",
            "sluice.toml:3: proxy.transparent_listen: duplicate address 0.0.0.0:3130",
        ]
    );
}

/// `proxy.hosts_file`: `/etc/hosts` by default, a relative path taken from the
/// configuration's folder, an empty one refused at its line.
#[test]
fn hosts_file_defaults_to_etc_hosts_and_is_resolved_against_the_config_folder() {
    assert_eq!(load("").settings.hosts_file, Path::new("/etc/hosts"));
    assert_eq!(
        load("[proxy]\nhosts_file = \"hosts\"\n")
            .settings
            .hosts_file,
        Path::new("conf/hosts")
    );
    assert_eq!(
        errors("[proxy]\n\nhosts_file = \"\"\n"),
        ["sluice.toml:3: proxy.hosts_file: empty path"]
    );
}
