#![cfg(feature = "kerberos")]
//! Negotiate (SPNEGO/Kerberos) single sign-on (SPEC §10) against a real MIT KDC started
//! by the test with a realm of its own: `kinit`, then `curl --proxy-negotiate` through
//! sluice, which verifies the ticket with the keytab `kadmin.local ktadd` exported for
//! `HTTP/localhost` (curl names the proxy `localhost`, so asks for that principal).
//! Tokens a client would not send (garbage, replayed, for another principal) are sent
//! raw, after being captured from curl by a listener standing in for the proxy. Chromium,
//! told to trust the proxy for Negotiate, signs in with the same ticket cache.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::certs::TestPki;
use support::clients::curl_with_env;
use support::kdc::Kdc;
use support::origin::HELLO;
use support::raw::Raw;
use support::slapd::{Slapd, SUFFIX};
use support::sluice::SluiceConfig;
use support::{CurlOutput, Origin, OriginOptions, Sluice};

const PRINCIPAL: &str = "HTTP/localhost@TEST.REALM";
/// sluice's bound on one address's checks in progress (`MAX_PENDING_PER_CLIENT` in
/// crates/proxy/src/auth/mod.rs), the same for passwords and tickets.
const PENDING_PER_CLIENT: usize = 8;
/// The longest failure delay (`MAX_DELAY` there).
const MAX_DELAY: Duration = Duration::from_secs(3);

/// A realm with alice and bob, the proxy's principal `HTTP/localhost` and another
/// service's, `HTTP/127.0.0.1`, both exported to the keytab `http.keytab` in `dir`.
fn realm(dir: &std::path::Path) -> Kdc {
    let kdc = Kdc::start();
    kdc.add_user("alice", "wonderland");
    kdc.add_user("bob", "canwefixit");
    let keytab = dir.join("http.keytab");
    kdc.add_service("HTTP/localhost", &keytab);
    kdc.add_service("HTTP/127.0.0.1", &keytab);
    kdc
}

/// sluice verifying tickets with `http.keytab`, for its first HTTP/ principal (by
/// default: `HTTP/localhost`, read from the keytab `kadmin` wrote), `more` `[auth]` keys
/// (and then other sections), CONNECT allowed to `ports`.
fn start(pki: &TestPki, dir: tempfile::TempDir, more: &str, ports: &[u16]) -> Sluice {
    let rest = format!("[auth]\nkerberos_keytab = \"http.keytab\"\n{more}");
    let text = Sluice::config_text(&SluiceConfig {
        rest: &rest,
        connect_ports: ports,
        ..Default::default()
    });
    Sluice::start_in(pki, dir, &text)
}

/// The proxy URL by the name curl asks a ticket for.
fn proxy_by_name(sluice: &Sluice) -> String {
    format!("http://localhost:{}", sluice.addr.port())
}

/// curl with Negotiate to the proxy as the holder of `ccache`.
fn negotiate(kdc: &Kdc, ccache: &std::path::Path, proxy: &str, args: &[&str]) -> CurlOutput {
    let mut all = vec!["--proxy-negotiate", "-U", ":", "-x", proxy];
    all.extend_from_slice(args);
    curl_with_env(&all, &kdc.client_env(ccache))
}

/// The `Proxy-Authorization` value curl sends, as the holder of `ccache`, to a proxy
/// named `host`: a listener on loopback stands in for the proxy and answers 502.
fn captured_token(kdc: &Kdc, ccache: &std::path::Path, host: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(15)))
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        String::from_utf8(head).unwrap()
    });
    let proxy = format!("http://{host}:{port}");
    let _ = negotiate(kdc, ccache, &proxy, &["http://origin.invalid/"]);
    let head = server.join().unwrap();
    head.lines()
        .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
        .unwrap_or_else(|| panic!("curl sent no token: {head}"))
        .trim()
        .to_string()
}

/// A plain HTTP GET of `url` on `raw`, with `authorization` if given; the status and
/// the head.
fn get(raw: &mut Raw, url: &str, authorization: Option<&str>) -> (u16, String) {
    let auth = authorization.map_or(String::new(), |a| format!("Proxy-Authorization: {a}\r\n"));
    let host = url.split('/').nth(2).unwrap_or_default();
    raw.send(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n").as_bytes());
    let head = raw.read_head();
    if head.is_empty() {
        // Said, so that a failure shows how the connection ended.
        let end = raw.stream.read(&mut [0u8; 1]);
        return (0, format!("no response; then read gave {end:?}"));
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    raw.read_exact(length);
    (status, head)
}

/// The `[auth]` keys that look Kerberos users' groups up in `slapd` as the service
/// account (whose password file it writes into `dir`).
fn directory_for_groups(dir: &std::path::Path, slapd: &Slapd) -> String {
    std::fs::write(dir.join("ldap-password"), "service-secret\n").unwrap();
    format!(
        "ldap_url = \"{}\"\n\
         ldap_bind_dn = \"cn=admin,{SUFFIX}\"\n\
         ldap_bind_password_file = \"ldap-password\"\n\
         ldap_user_base = \"ou=people,{SUFFIX}\"\n\
         ldap_user_filter = \"(uid={{user}})\"\n\
         ldap_group_base = \"ou=groups,{SUFFIX}\"\n",
        slapd.url()
    )
}

/// Sluice with Negotiate in front of an origin, alice's ticket cache, the origin's URL and
/// a token of alice's that sluice has accepted once (so the next use of it is a replay).
struct SignedIn {
    _origin: Origin,
    kdc: Kdc,
    ccache: std::path::PathBuf,
    sluice: Sluice,
    url: String,
    token: String,
}

impl SignedIn {
    fn start() -> SignedIn {
        let pki = TestPki::new();
        let origin = Origin::start(OriginOptions::default());
        let dir = tempfile::tempdir().unwrap();
        let kdc = realm(dir.path());
        let ccache = kdc.kinit("alice", "wonderland");
        let sluice = start(&pki, dir, "", &[443]);
        let url = format!("http://127.0.0.1:{}/hello", origin.port());
        let token = captured_token(&kdc, &ccache, "localhost");
        let (status, _) = get(&mut Raw::connect(sluice.addr), &url, Some(&token));
        assert_eq!(status, 200, "the ticket itself");
        SignedIn {
            _origin: origin,
            kdc,
            ccache,
            sluice,
            url,
            token,
        }
    }
}

/// A CONNECT with Negotiate: tunnelled or bumped by rules on the Kerberos user (by full
/// principal, then by short name), the client principal in each record.
#[test]
fn negotiate_connects_are_tunnelled_or_bumped_by_user_with_the_principal_logged() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let port = origin.port();
    for user in ["alice@TEST.REALM", "alice"] {
        let dir = tempfile::tempdir().unwrap();
        let kdc = realm(dir.path());
        let ccache = kdc.kinit("alice", "wonderland");
        let rules = format!(
            "\n[[ssl_rules]]\nname = \"alice-tunnels\"\nusers = [\"{user}\"]\n\
             domains = [\"tunnel.test\"]\naction = \"tunnel\"\n"
        );
        let sluice = start(&pki, dir, &rules, &[port]);
        let proxy = proxy_by_name(&sluice);
        let root = sluice.path("upstream-root.pem");
        let url = format!("https://tunnel.test:{port}/hello");
        let out = negotiate(
            &kdc,
            &ccache,
            &proxy,
            &["--cacert", root.to_str().unwrap(), &url],
        );
        assert_eq!(out.body_text(), HELLO, "{user}: {}", out.stderr);
        let tunnel = sluice.wait_record("the tunnel", |r| r["host"] == "tunnel.test");
        assert_eq!(tunnel["action"], "tunnel", "{tunnel}");
        assert_eq!(tunnel["rule"], "alice-tunnels", "{tunnel}");
        assert_eq!(tunnel["user"], "alice@TEST.REALM", "{tunnel}");

        let ca = sluice.ca_path();
        let url = format!("https://bump.test:{port}/hello");
        let out = negotiate(
            &kdc,
            &ccache,
            &proxy,
            &["--cacert", ca.to_str().unwrap(), &url],
        );
        assert_eq!(out.body_text(), HELLO, "{user}: {}", out.stderr);
        let bumped = sluice.wait_record("the bump", |r| {
            r["kind"] == "connect" && r["host"] == "bump.test"
        });
        assert_eq!(bumped["action"], "bump", "{bumped}");
        assert_eq!(bumped["user"], "alice@TEST.REALM", "{bumped}");
        let request = sluice.wait_record("the bumped request", |r| r["kind"] == "http");
        assert_eq!(request["user"], "alice@TEST.REALM", "{request}");
    }
}

/// Plain HTTP: the connection authenticated by its first request's token serves its
/// later requests without one (curl sends a token on each, so a raw client with a
/// token from curl does this); another connection without a token gets 407.
#[test]
fn a_plain_http_connection_is_authenticated_once_for_its_later_requests() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let kdc = realm(dir.path());
    let ccache = kdc.kinit("alice", "wonderland");
    let sluice = start(&pki, dir, "", &[443]);

    let out = negotiate(
        &kdc,
        &ccache,
        &proxy_by_name(&sluice),
        &[&format!("http://127.0.0.1:{}/hello", origin.port())],
    );
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert_eq!(out.body_text(), HELLO);

    let token = captured_token(&kdc, &ccache, "localhost");
    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    let mut raw = Raw::connect(sluice.addr);
    assert_eq!(get(&mut raw, &url, Some(&token)).0, 200);
    for _ in 0..2 {
        let (status, head) = get(&mut raw, &url, None);
        assert_eq!(status, 200, "a later request on the connection: {head}");
    }
    let records = sluice.wait_records("of alice", 4, |r| r["status"] == 200);
    assert!(
        records.iter().all(|r| r["user"] == "alice@TEST.REALM"),
        "{records:#?}"
    );
    let mut other = Raw::connect(sluice.addr);
    let (status, head) = get(&mut other, &url, None);
    assert_eq!(status, 407, "another connection: {head}");
}

/// With a users file too, a 407 offers Negotiate first, then Basic (SPEC §10); both
/// work.
#[test]
fn a_407_offers_negotiate_then_basic() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let kdc = realm(dir.path());
    let hash = bcrypt::hash("hunter2", 4).unwrap();
    std::fs::write(dir.path().join("users"), format!("carol:{hash}\n")).unwrap();
    let more = format!(
        "users_file = \"users\"\nrealm = \"Example Corp\"\nkerberos_principal = \"{PRINCIPAL}\"\n"
    );
    let sluice = start(&pki, dir, &more, &[443]);

    let mut raw = Raw::connect(sluice.addr);
    let head = raw.connect_to("127.0.0.1:443");
    assert!(head.starts_with("HTTP/1.1 407 "), "{head}");
    let offers: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("Proxy-Authenticate: "))
        .collect();
    assert_eq!(
        offers,
        ["Negotiate", "Basic realm=\"Example Corp\""],
        "{head}"
    );
    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    let (status, head) = get(&mut Raw::connect(sluice.addr), &url, None);
    assert_eq!(status, 407);
    let offers: Vec<String> = head
        .lines()
        .filter_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("proxy-authenticate: ")
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        offers,
        ["negotiate", "basic realm=\"example corp\""],
        "{head}"
    );

    let ccache = kdc.kinit("alice", "wonderland");
    let out = negotiate(&kdc, &ccache, &proxy_by_name(&sluice), &[&url]);
    assert_eq!(out.status, 200, "{}", out.stderr);
    let basic = support::curl(&["-x", &sluice.proxy_url(), "-U", "carol:hunter2", &url]);
    assert_eq!(basic.status, 200, "{}", basic.stderr);
}

/// Garbage, an empty or truncated token, a replayed ticket and a ticket for another principal of the
/// same keytab (not the configured one) each get 407 with a `Negotiate` offer, never an
/// allow; sluice serves a real ticket afterwards.
#[test]
fn garbage_replayed_or_foreign_tickets_get_407() {
    let signed_in = SignedIn::start();
    let SignedIn {
        kdc,
        ccache,
        sluice,
        url,
        token,
        ..
    } = &signed_in;
    let foreign = captured_token(kdc, ccache, "127.0.0.1");
    // A real ticket cut short, its base64 still well-formed.
    let ticket = token.strip_prefix("Negotiate ").unwrap();
    let truncated = format!("Negotiate {}", &ticket[..ticket.len() / 2 / 4 * 4]);
    for (what, header) in [
        ("replayed", token.as_str()),
        ("for HTTP/127.0.0.1", foreign.as_str()),
        ("garbage", "Negotiate YWxpY2U6d29uZGVybGFuZA=="),
        ("not base64", "Negotiate !!!***"),
        ("empty", "Negotiate"),
        ("truncated", truncated.as_str()),
    ] {
        let (status, head) = get(&mut Raw::connect(sluice.addr), url, Some(header));
        assert_eq!(
            status,
            407,
            "{what}: {head}\n{}\n{:#?}",
            sluice.stderr(),
            sluice.records()
        );
        assert!(
            head.contains("Proxy-Authenticate: Negotiate")
                || head
                    .to_ascii_lowercase()
                    .contains("proxy-authenticate: negotiate"),
            "{what}: {head}"
        );
    }
    let records = sluice.wait_records("refused", 6, |r| r["status"] == 407);
    assert!(records.iter().all(|r| r["user"].is_null()), "{records:#?}");
    let out = negotiate(kdc, ccache, &proxy_by_name(sluice), &[url]);
    assert_eq!(out.status, 200, "a real ticket after: {}", out.stderr);
}

/// A Kerberos user's groups come from the directory by its short name (SPEC §10):
/// alice (Finance) tunnels, bob (a contractor) is blocked; the record names the
/// principal.
#[test]
fn directory_groups_decide_for_kerberos_users() {
    let pki = TestPki::new();
    let slapd = Slapd::start();
    let origin = Origin::start(OriginOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let kdc = realm(dir.path());
    let more = format!(
        "{}\n\
         [[ssl_rules]]\nname = \"finance-tunnels\"\ngroups = [\"finance\"]\naction = \"tunnel\"\n\n\
         [[http_rules]]\nname = \"no-contractors\"\ngroups = [\"contractors\"]\naction = \"block\"\n",
        directory_for_groups(dir.path(), &slapd)
    );
    let sluice = start(&pki, dir, &more, &[origin.port()]);
    let proxy = proxy_by_name(&sluice);
    let url = format!("http://127.0.0.1:{}/hello", origin.port());

    let alice = kdc.kinit("alice", "wonderland");
    let out = negotiate(&kdc, &alice, &proxy, &["-p", &url]);
    assert_eq!(out.body_text(), HELLO, "alice tunnels: {}", out.stderr);
    let tunnel = sluice.wait_record("alice's CONNECT", |r| r["kind"] == "connect");
    assert_eq!(tunnel["action"], "tunnel", "{tunnel}");
    assert_eq!(tunnel["rule"], "finance-tunnels", "{tunnel}");
    assert_eq!(tunnel["user"], "alice@TEST.REALM", "{tunnel}");

    let bob = kdc.kinit("bob", "canwefixit");
    let out = negotiate(&kdc, &bob, &proxy, &[&url]);
    assert_eq!(out.status, 403, "bob is a contractor: {}", out.headers);
    let record = sluice.wait_record("bob's block", |r| r["status"] == 403);
    assert_eq!(record["rule"], "no-contractors", "{record}");
    assert_eq!(record["user"], "bob@TEST.REALM", "{record}");

    // `sluice explain --user` and /explain?user= resolve a principal's groups by its
    // short name.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["explain", "-c", "sluice.toml", "--host", "bank.example"])
        .args(["--user", "alice@TEST.REALM"])
        .current_dir(sluice.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains(&format!("groups: [cn=Finance,ou=groups,{SUFFIX}]")),
        "{text}"
    );
    assert!(text.contains("finance-tunnels"), "{text}");
    let admin = sluice.admin.expect("admin endpoint");
    let url = format!("http://{admin}/explain?host=bank.example&user=alice%40TEST.REALM");
    let explained: serde_json::Value =
        serde_json::from_slice(&support::curl(&[&url]).body).unwrap();
    assert_eq!(explained["rule"], "finance-tunnels", "{explained}");
}

/// Chromium (headless, `--auth-server-allowlist`) answers the 407's Negotiate offer with
/// a ticket from the user's cache and gets the page; the record names the principal.
#[test]
fn chromium_signs_in_with_negotiate_through_the_proxy() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let kdc = realm(dir.path());
    let ccache = kdc.kinit("alice", "wonderland");
    let hash = bcrypt::hash("hunter2", 4).unwrap();
    std::fs::write(dir.path().join("users"), format!("carol:{hash}\n")).unwrap();
    let sluice = start(&pki, dir, "users_file = \"users\"\n", &[443]);

    let home = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    let output = std::process::Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args(["--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync"])
        .arg(format!(
            "--user-data-dir={}",
            home.path().join("profile").display()
        ))
        .arg(format!("--proxy-server={}", proxy_by_name(&sluice)))
        // Chromium never proxies loopback names unless told to.
        .arg("--proxy-bypass-list=<-loopback>")
        .arg("--auth-server-allowlist=localhost")
        .args(["--dump-dom", &url])
        .env("HOME", home.path())
        .envs(kdc.client_env(&ccache))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("chromium (Debian package chromium)");
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains(HELLO),
        "the page loaded through sluice: {dom}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record = sluice.wait_record("of the page", |r| r["status"] == 200);
    assert_eq!(record["user"], "alice@TEST.REALM", "{record}");
}

/// A refused ticket is a failure of its address like a wrong password (SPEC §10: "the
/// same back-off rules"; SPEC §9): a replayed ticket, sent again and again from one
/// address, is answered 407 after 0, 100, 200, 400 ms… (the schedule of Basic); then, at
/// the longest delay, only [`PENDING_PER_CLIENT`] parallel tokens of that address are
/// verified and the others are refused at once, while alice from another address is
/// served. A valid ticket from the slowed address still gets in (after its delay), and
/// its success forgives the address.
#[test]
fn refused_tickets_slow_their_address_like_wrong_passwords_and_a_valid_one_still_gets_in() {
    let signed_in = SignedIn::start();
    let SignedIn {
        kdc,
        ccache,
        sluice,
        url,
        token,
        ..
    } = &signed_in;

    // A replayed ticket is verified by GSSAPI and refused by its replay cache.
    let refused_in = |what: &str| -> Duration {
        let began = Instant::now();
        let (status, head) = get(&mut Raw::connect(sluice.addr), url, Some(token));
        assert_eq!(status, 407, "{what}: {head}");
        began.elapsed()
    };
    for (n, least) in [0, 100, 200, 400, 800, 1600].into_iter().enumerate() {
        let took = refused_in(&format!("replay {}", n + 1));
        assert!(
            took >= Duration::from_millis(least),
            "replay {} answered after {took:?}, before its {least} ms delay",
            n + 1
        );
    }

    // Six failures: every token now waits the longest delay; past the bound, at once.
    let parallel = PENDING_PER_CLIENT + 4;
    let replays: Vec<_> = (0..parallel)
        .map(|_| {
            let mut raw = Raw::connect(sluice.addr);
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let began = Instant::now();
                let (status, head) = get(&mut raw, &url, Some(&token));
                assert_eq!(status, 407, "a parallel replay: {head}");
                (began.elapsed(), Instant::now())
            })
        })
        .collect();
    let other = negotiate(
        kdc,
        ccache,
        &proxy_by_name(sluice),
        &["-4", "--interface", "127.0.0.2", url],
    );
    let alice_done = Instant::now();
    assert_eq!(other.status, 200, "alice elsewhere: {}", other.stderr);
    let answers: Vec<(Duration, Instant)> =
        replays.into_iter().map(|t| t.join().unwrap()).collect();
    let delayed: Vec<_> = answers
        .iter()
        .filter(|(took, _)| *took >= MAX_DELAY)
        .collect();
    assert_eq!(
        delayed.len(),
        PENDING_PER_CLIENT,
        "verified after the delay, the others refused at once: {answers:?}"
    );
    assert!(
        delayed.iter().all(|(_, answered)| alice_done < *answered),
        "alice was served while the slowed tokens waited: {answers:?}"
    );

    // A valid ticket from the slowed address: slowed too, then accepted.
    let began = Instant::now();
    let out = negotiate(kdc, ccache, &proxy_by_name(sluice), &["-4", url]);
    assert_eq!(out.status, 200, "a valid ticket after: {}", out.stderr);
    assert!(began.elapsed() >= MAX_DELAY, "{:?}", began.elapsed());
    let served = sluice.wait_records("of alice", 3, |r| r["status"] == 200);
    assert!(
        served.iter().all(|r| r["user"] == "alice@TEST.REALM"),
        "{served:#?}"
    );
    // Forgiven: the next refusal comes without the delay.
    let took = refused_in("a replay after the success");
    assert!(took < MAX_DELAY, "{took:?}");
}

/// SPEC §10, "a directory that cannot be reached … is never a silent allow", for
/// Kerberos users: alice's groups, looked up while slapd ran, keep deciding (her CONNECT
/// is tunnelled by the Finance rule) after it is stopped, within `cache_ttl`; bob, with
/// a valid ticket but never looked up, gets 503 `auth_unavailable`.
#[test]
fn with_the_directory_down_a_cached_kerberos_user_is_served_and_others_get_503() {
    let pki = TestPki::new();
    let mut slapd = Slapd::start();
    let origin = Origin::start(OriginOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let kdc = realm(dir.path());
    let more = format!(
        "{}\n\
         [[ssl_rules]]\nname = \"finance-tunnels\"\ngroups = [\"finance\"]\naction = \"tunnel\"\n",
        directory_for_groups(dir.path(), &slapd)
    );
    let sluice = start(&pki, dir, &more, &[origin.port()]);
    let proxy = proxy_by_name(&sluice);
    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    let alice = kdc.kinit("alice", "wonderland");
    let bob = kdc.kinit("bob", "canwefixit");

    let out = negotiate(&kdc, &alice, &proxy, &["-p", &url]);
    assert_eq!(out.body_text(), HELLO, "alice tunnels: {}", out.stderr);
    sluice.wait_record("alice's CONNECT", |r| r["kind"] == "connect");

    slapd.stop();
    let out = negotiate(&kdc, &alice, &proxy, &["-p", &url]);
    assert_eq!(out.body_text(), HELLO, "alice, cached: {}", out.stderr);
    let tunnels = sluice.wait_records("of alice's CONNECTs", 2, |r| r["kind"] == "connect");
    for tunnel in &tunnels {
        assert_eq!(tunnel["action"], "tunnel", "{tunnel}");
        assert_eq!(tunnel["rule"], "finance-tunnels", "{tunnel}");
        assert_eq!(tunnel["user"], "alice@TEST.REALM", "{tunnel}");
    }

    let out = negotiate(&kdc, &bob, &proxy, &[&url]);
    assert_eq!(out.status, 503, "bob, not cached: {}", out.headers);
    let record = sluice.wait_record("bob's 503", |r| r["status"] == 503);
    assert_eq!(record["error"], "auth_unavailable", "{record}");
}
