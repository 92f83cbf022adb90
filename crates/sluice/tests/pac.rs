//! Proxy auto-configuration (SPEC §11): `/proxy.pac` and `/wpad.dat` from `[pac]`, on
//! the admin endpoint and for an origin-form GET to the proxy listener, fetched with
//! curl and evaluated by a real PAC engine (pacparser, from PyPI; scripts/test installs
//! it).

mod support;

use std::process::{Command, Stdio};

use support::certs::TestPki;
use support::sluice::SluiceConfig;
use support::{curl, CurlOutput, Origin, OriginOptions, Sluice};

const CONTENT_TYPE: &str = "content-type: application/x-ns-proxy-autoconfig";

/// Start sluice with `files` written beside its configuration and `edit` applied to it.
fn start(
    pki: &TestPki,
    rest: &str,
    edit: impl Fn(String) -> String,
    files: &[(&str, &str)],
) -> Sluice {
    let dir = tempfile::tempdir().unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let config = SluiceConfig {
        connect_ports: &[443],
        rest,
        ..Default::default()
    };
    let text = edit(Sluice::config_text(&config));
    std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    Sluice::spawn(dir, &["run", "-c", "sluice.toml"])
}

fn on_admin(sluice: &Sluice, path: &str) -> CurlOutput {
    curl(&[&format!("http://{}{path}", sluice.admin.unwrap())])
}

/// An origin-form request to the proxy listener itself (no `-x`: curl talks to it as
/// to a web server, as a browser fetching its PAC script does).
fn on_listener(sluice: &Sluice, args: &[&str], path: &str) -> CurlOutput {
    let url = format!("http://{}{path}", sluice.addr);
    let mut all = args.to_vec();
    all.push(&url);
    curl(&all)
}

/// What pacparser's `FindProxyForURL` returns for each URL (the host taken from it).
fn evaluate(script: &[u8], urls: &[&str]) -> Vec<String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), script).unwrap();
    let program = r#"
import sys, pacparser
from urllib.parse import urlsplit
pacparser.init()
pacparser.parse_pac_file(sys.argv[1])
for url in sys.argv[2:]:
    print(pacparser.find_proxy(url, urlsplit(url).hostname))
"#;
    let output = Command::new("python3")
        .args(["-c", program])
        .arg(file.path())
        .args(urls)
        .stdin(Stdio::null())
        .output()
        .expect("running python3 (scripts/test installs pacparser)");
    assert!(
        output.status.success(),
        "pacparser failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn assert_pac(out: &CurlOutput) {
    assert_eq!(out.status, 200, "{}", out.body_text());
    assert!(
        out.headers.to_ascii_lowercase().contains(CONTENT_TYPE),
        "{}",
        out.headers
    );
}

#[test]
fn a_generated_pac_sends_the_web_through_the_proxy_and_the_intranet_direct() {
    let pki = TestPki::new();
    let sluice = start(
        &pki,
        "[pac]\nproxy = \"proxy.corp.example:3128\"\n",
        |text| text,
        &[],
    );
    let served = on_admin(&sluice, "/proxy.pac");
    assert_pac(&served);
    for out in [
        on_admin(&sluice, "/wpad.dat"),
        on_listener(&sluice, &[], "/proxy.pac"),
        on_listener(&sluice, &[], "/wpad.dat"),
    ] {
        assert_pac(&out);
        assert_eq!(out.body, served.body, "the same script everywhere");
    }
    let proxied = "PROXY proxy.corp.example:3128; DIRECT";
    let cases = [
        ("http://www.example.com/", proxied),
        ("https://shop.example.org:8443/cart", proxied),
        ("http://8.8.8.8/", proxied),
        ("http://172.32.0.1/", proxied),
        ("http://[2001:db8::1]/", proxied),
        ("http://intranet/", "DIRECT"),
        ("https://localhost/", "DIRECT"),
        ("http://10.1.2.3/", "DIRECT"),
        ("http://172.20.0.5:8080/", "DIRECT"),
        ("http://192.168.1.1/", "DIRECT"),
        ("http://127.0.0.1/", "DIRECT"),
        ("http://169.254.169.254/", "DIRECT"),
        ("http://[fd00::1]/", "DIRECT"),
        ("http://[fe80::1]/", "DIRECT"),
        ("http://[::1]/", "DIRECT"),
    ];
    let urls: Vec<&str> = cases.iter().map(|(url, _)| *url).collect();
    let answers = evaluate(&served.body, &urls);
    for ((url, expected), answer) in cases.iter().zip(&answers) {
        assert_eq!(answer, expected, "{url}");
    }
    assert_eq!(answers.len(), cases.len());
    let record = sluice.wait_record("the PAC fetch on the listener", |r| {
        r["kind"] == "http" && r["url"].as_str().is_some_and(|u| u.ends_with("/wpad.dat"))
    });
    assert_eq!(record["status"], 200);
    assert_eq!(record["method"], "GET");
}

#[test]
fn a_pac_file_is_served_as_written_without_token_or_proxy_credentials() {
    let pki = TestPki::new();
    let script = "function FindProxyForURL(url, host) {\n  if (dnsDomainIs(host, \".corp.example\")) return \"DIRECT\";\n  return \"PROXY gw.corp.example:8080\";\n}\n";
    let sluice = start(
        &pki,
        "[pac]\nfile = \"corp.pac\"\n",
        |text| text.replace("[admin]\n", "[admin]\ntoken_file = \"admin.token\"\n"),
        &[
            ("corp.pac", script),
            ("admin.token", "s3cret-admin-token\n"),
        ],
    );
    // The token guards the admin endpoint, but a browser fetches its PAC without one.
    assert_eq!(on_admin(&sluice, "/metrics").status, 401);
    let served = on_admin(&sluice, "/wpad.dat");
    assert_pac(&served);
    assert_eq!(served.body_text(), script);
    let head = on_listener(&sluice, &["-I"], "/proxy.pac");
    assert_pac(&head);
    assert!(
        !head.body_text().contains("FindProxyForURL"),
        "HEAD has no body"
    );
    let answers = evaluate(
        &served.body,
        &["http://wiki.corp.example/", "https://www.example.com/"],
    );
    assert_eq!(answers, ["DIRECT", "PROXY gw.corp.example:8080"]);
}

#[test]
fn without_pac_or_for_anything_else_nothing_is_served() {
    let pki = TestPki::new();
    let sluice = start(&pki, "", |text| text, &[]);
    assert_eq!(on_admin(&sluice, "/proxy.pac").status, 404);
    // On the listener an origin-form request is not a proxy request.
    assert_eq!(on_listener(&sluice, &[], "/wpad.dat").status, 400);

    let with_pac = start(
        &pki,
        "[pac]\nproxy = \"p.example:3128\"\n",
        |text| text,
        &[],
    );
    for (args, path) in [
        (&["-X", "POST"][..], "/proxy.pac"),
        (&[][..], "/proxy.pac/"),
        (&[][..], "/PROXY.PAC"),
        (&[][..], "/"),
    ] {
        let out = on_listener(&with_pac, args, path);
        assert_eq!(out.status, 400, "{args:?} {path}");
        assert!(!out.body_text().contains("FindProxyForURL"));
    }
    assert_eq!(on_admin(&with_pac, "/proxy.pac/").status, 404);
    // An absolute-form request for some origin's /proxy.pac is forwarded to that origin,
    // not answered with sluice's script.
    let origin = Origin::start(OriginOptions {
        tls: None,
        ..Default::default()
    });
    let url = format!("http://127.0.0.1:{}/proxy.pac", origin.port());
    let forwarded = curl(&["-x", &with_pac.proxy_url(), &url]);
    assert!(!forwarded.body_text().contains("FindProxyForURL"));
    assert!(origin
        .requests()
        .iter()
        .any(|(_, path, _)| path == "/proxy.pac"));
}
