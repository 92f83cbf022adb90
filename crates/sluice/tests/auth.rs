//! Basic proxy authentication (SPEC §1 step 1, §5 `[auth]`): 407 with
//! `Proxy-Authenticate`, bcrypt and argon2 hashes, `sluice user add`, the `users` rule
//! condition, and the user in every log record.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use support::certs::TestPki;
use support::origin::HELLO;
use support::raw::Raw;
use support::sluice::SluiceConfig;
use support::{curl, fetch, Origin, OriginOptions, Sluice};

/// sluice with `[auth]` and a users file holding alice (bcrypt).
fn start(pki: &TestPki, ports: &[u16], rest: &str) -> Sluice {
    let dir = tempfile::tempdir().unwrap();
    let alice = bcrypt::hash("wonderland", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    std::fs::write(dir.path().join("users"), format!("alice:{alice}\n")).unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    let rest = format!("[auth]\nusers_file = \"users\"\nrealm = \"Example Corp\"\n\n{rest}");
    let text = Sluice::config_text(&SluiceConfig {
        connect_ports: ports,
        rest: &rest,
        ..Default::default()
    });
    std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    Sluice::spawn(dir, &["run", "-c", "sluice.toml"])
}

#[test]
fn a_connect_without_credentials_gets_407_with_the_realm() {
    let pki = TestPki::new();
    let sluice = start(&pki, &[443], "");
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to("127.0.0.1:443");
    assert!(head.starts_with("HTTP/1.1 407 "), "{head}");
    assert!(
        head.contains("Proxy-Authenticate: Basic realm=\"Example Corp\""),
        "{head}"
    );
    let record = sluice.wait_record("refused", |r| r["status"] == 407);
    assert_eq!(record["action"], "refused");
}

/// Issue 11 / SPEC §7: a 407 is logged like every other refusal, with the host and port
/// of the request line.
#[test]
fn a_407_record_carries_the_connect_host_and_port() {
    let pki = TestPki::new();
    let sluice = start(&pki, &[443], "");
    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to("intranet.example.test:8443");
    assert!(head.starts_with("HTTP/1.1 407 "), "{head}");
    let record = sluice.wait_record("refused", |r| r["status"] == 407);
    assert_eq!(record["kind"], "connect");
    assert_eq!(record["action"], "refused");
    assert_eq!(record["host"], "intranet.example.test");
    assert_eq!(record["port"], 8443);
}

#[test]
fn a_bcrypt_user_is_let_through_and_logged_and_a_wrong_password_is_not() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let sluice = start(&pki, &[443], "");
    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    let out = curl(&[
        "-x",
        &sluice.proxy_url(),
        "--proxy-user",
        "alice:wonderland",
        &url,
    ]);
    assert_eq!(out.body_text(), HELLO);
    let record = sluice.wait_record("of alice", |r| r["status"] == 200);
    assert_eq!(record["user"], "alice");
    let wrong = curl(&[
        "-x",
        &sluice.proxy_url(),
        "--proxy-user",
        "alice:guess",
        &url,
    ]);
    assert_eq!(wrong.status, 407);
    let headers = wrong.headers.to_ascii_lowercase();
    assert!(
        headers.contains("proxy-authenticate: basic realm=\"example corp\""),
        "{}",
        wrong.headers
    );
    let none = curl(&["-x", &sluice.proxy_url(), &url]);
    assert_eq!(none.status, 407);
}

#[test]
fn user_add_writes_an_argon2_user_who_can_then_connect() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, &[origin.port()], "");
    let mut add = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["user", "add", "-c", "sluice.toml", "bob"])
        .current_dir(sluice.dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"hunter2\n").unwrap();
    let added = add.wait_with_output().unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let users = std::fs::read_to_string(sluice.path("users")).unwrap();
    assert!(users.contains("alice:$2y$"), "alice is kept: {users}");
    assert!(users.contains("bob:$argon2id$"), "{users}");
    let mode = std::fs::metadata(sluice.path("users"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A reload picks the new user up.
    let reload = curl(&[
        "-X",
        "POST",
        &format!("http://{}/reload", sluice.admin.unwrap()),
    ]);
    assert_eq!(reload.status, 200, "{}", reload.body_text());
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &["--proxy-user", "bob:hunter2"],
    );
    assert_eq!(out.body_text(), HELLO, "{}", out.stderr);
    let connect = sluice.wait_record("of bob's bump", |r| {
        r["kind"] == "connect" && r["user"] == "bob"
    });
    assert_eq!(connect["action"], "bump");
    let http = sluice.wait_record("of bob's request", |r| {
        r["kind"] == "http" && r["status"] == 200
    });
    assert_eq!(http["user"], "bob", "the user is in every record");
}

#[test]
fn a_users_condition_decides_by_the_authenticated_user() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let rules =
        "[[ssl_rules]]\nname = \"alice tunnels\"\nusers = [\"alice\"]\naction = \"tunnel\"\n";
    let sluice = start(&pki, &[origin.port()], rules);
    let root = tempfile::NamedTempFile::new().unwrap();
    pki.write_root(root.path());
    let out = fetch(
        &sluice.proxy_url(),
        "tunnel.test",
        origin.port(),
        "/hello",
        root.path(),
        &["--proxy-user", "alice:wonderland"],
    );
    assert_eq!(out.body_text(), HELLO, "{}", out.stderr);
    let record = sluice.connect_record();
    assert_eq!(record["rule"], "alice tunnels");
    assert_eq!(record["action"], "tunnel");
    assert_eq!(record["user"], "alice");
}
