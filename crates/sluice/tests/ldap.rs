//! LDAP for Basic credentials (SPEC §10) against a real OpenLDAP `slapd`, started by the
//! test on loopback with a temporary directory: search as the service account, bind as
//! the found entry, RFC 4515 escaping, empty passwords, the cache while the directory is
//! down, 503 `auth_unavailable` for anyone not cached, the bound on connections to the
//! directory, and passwords (of the directory and of the users file) never logged.

mod support;

use std::net::{TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;

use support::certs::TestPki;
use support::origin::HELLO;
use support::slapd::{Slapd, SUFFIX};
use support::sluice::SluiceConfig;
use support::{curl, Origin, OriginOptions, Sluice};

/// sluice checking Basic credentials against `slapd` with the service account.
fn start(pki: &TestPki, slapd: &Slapd) -> Sluice {
    start_at(pki, &slapd.url(), "")
}

/// sluice checking Basic credentials at `url`, with `more` `[auth]` keys (and then, if
/// wanted, other sections).
fn start_at(pki: &TestPki, url: &str, more: &str) -> Sluice {
    start_for(pki, url, more, &[443])
}

/// [`start_at`], allowing CONNECT to `ports`.
fn start_for(pki: &TestPki, url: &str, more: &str, ports: &[u16]) -> Sluice {
    let (dir, text) = config_for(pki, url, more, ports);
    Sluice::start_in(pki, dir, &text)
}

/// The folder and configuration [`start_for`] starts sluice with.
fn config_for(pki: &TestPki, url: &str, more: &str, ports: &[u16]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ldap-password"), "service-secret\n").unwrap();
    pki.write_root(&dir.path().join("directory-ca.pem"));
    let rest = format!(
        "[auth]\n\
         ldap_url = \"{url}\"\n\
         ldap_bind_dn = \"cn=admin,{SUFFIX}\"\n\
         ldap_bind_password_file = \"ldap-password\"\n\
         ldap_user_base = \"ou=people,{SUFFIX}\"\n\
         ldap_user_filter = \"(uid={{user}})\"\n{more}"
    );
    let text = Sluice::config_text(&SluiceConfig {
        rest: &rest,
        connect_ports: ports,
        ..Default::default()
    });
    (dir, text)
}

fn fetch_as(sluice: &Sluice, origin: &Origin, credentials: &str) -> support::CurlOutput {
    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    curl(&["-x", &sluice.proxy_url(), "--proxy-user", credentials, &url])
}

#[test]
fn a_directory_user_is_let_through_and_wrong_empty_or_injected_credentials_are_not() {
    let pki = TestPki::new();
    let slapd = Slapd::start();
    let origin = Origin::start(OriginOptions::default());
    let sluice = start(&pki, &slapd);

    let out = fetch_as(&sluice, &origin, "alice:wonderland");
    assert_eq!(out.status, 200, "{}", out.headers);
    assert_eq!(out.body_text(), HELLO);
    let record = sluice.wait_record("of alice", |r| r["status"] == 200);
    assert_eq!(record["user"], "alice");

    // A wrong password, an empty one (an anonymous bind would succeed), an unknown user,
    // and a name that would match every entry if it were not escaped.
    for credentials in [
        "alice:looking-glass",
        "alice:",
        "carol:wonderland",
        "*)(uid=*:wonderland",
        "*:canwefixit",
    ] {
        let out = fetch_as(&sluice, &origin, credentials);
        assert_eq!(out.status, 407, "{credentials}: {}", out.headers);
        let headers = out.headers.to_ascii_lowercase();
        assert!(headers.contains("proxy-authenticate: basic"), "{headers}");
    }
}

#[test]
fn with_the_directory_down_cached_users_are_served_and_others_get_503() {
    let pki = TestPki::new();
    let mut slapd = Slapd::start();
    let origin = Origin::start(OriginOptions::default());
    let sluice = start(&pki, &slapd);
    assert_eq!(fetch_as(&sluice, &origin, "alice:wonderland").status, 200);

    slapd.stop();
    let out = fetch_as(&sluice, &origin, "alice:wonderland");
    assert_eq!(out.status, 200, "cached: {}", out.headers);
    let out = fetch_as(&sluice, &origin, "alice:looking-glass");
    assert_eq!(
        out.status, 407,
        "cached user, wrong password: {}",
        out.headers
    );
    let out = fetch_as(&sluice, &origin, "bob:canwefixit");
    assert_eq!(out.status, 503, "not cached: {}", out.headers);
    let record = sluice.wait_record("bob's 503", |r| r["status"] == 503);
    assert_eq!(record["error"], "auth_unavailable");
}

/// ldaps and StartTLS verify the directory's certificate against `auth.ldap_ca`; without
/// it (a certificate the system roots do not know) the directory is unavailable: 503.
#[test]
fn ldaps_and_starttls_verify_the_directory_with_ldap_ca() {
    let pki = TestPki::new();
    let leaf = pki.with_names(&["localhost"]);
    let slapd = Slapd::start_with(Some(&leaf));
    let origin = Origin::start(OriginOptions::default());
    let ldaps = format!("ldaps://localhost:{}", slapd.tls_port);
    let plain = format!("ldap://localhost:{}", slapd.port);
    let ca = "ldap_ca = \"directory-ca.pem\"\n";
    for (url, more) in [
        (&ldaps, ca.to_string()),
        (&plain, format!("{ca}ldap_starttls = true\n")),
    ] {
        let sluice = start_at(&pki, url, &more);
        let out = fetch_as(&sluice, &origin, "alice:wonderland");
        assert_eq!(out.status, 200, "{url} {more}: {}", out.headers);
        let out = fetch_as(&sluice, &origin, "alice:looking-glass");
        assert_eq!(out.status, 407, "{url} {more}: {}", out.headers);
    }
    for (url, more) in [(&ldaps, ""), (&plain, "ldap_starttls = true\n")] {
        let sluice = start_at(&pki, url, more);
        let out = fetch_as(&sluice, &origin, "alice:wonderland");
        assert_eq!(
            out.status, 503,
            "{url} {more} without ldap_ca: {}",
            out.headers
        );
        let record = sluice.wait_record("the 503", |r| r["status"] == 503);
        assert_eq!(record["error"], "auth_unavailable");
    }
}

/// A "directory" on loopback that answers every connection with `answer` (or, when
/// `None`, with nothing at all: a tarpit), until the test ends.
fn fake_directory(answer: Option<&'static [u8]>) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        let mut held = Vec::new();
        // Bounded: sluice makes a handful of connections per check.
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { return };
            if let Some(answer) = answer {
                let _ = stream.write_all(answer);
            }
            held.push(stream);
        }
    });
    (port, thread)
}

/// A peer that answers garbage, or never answers (each operation has a timeout), is a
/// directory that cannot be asked: 503 `auth_unavailable`, never an allow.
#[test]
fn a_garbage_answering_or_silent_directory_gives_503_not_an_allow() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    for answer in [Some(&b"HTTP/1.1 200 OK\r\n\r\nnot LDAP at all"[..]), None] {
        let (port, _thread) = fake_directory(answer);
        let sluice = start_at(&pki, &format!("ldap://127.0.0.1:{port}"), "");
        let out = fetch_as(&sluice, &origin, "alice:wonderland");
        assert_eq!(out.status, 503, "{answer:?}: {}", out.headers);
        let record = sluice.wait_record("the 503", |r| r["status"] == 503);
        assert_eq!(record["error"], "auth_unavailable");
        assert!(record["user"].is_null(), "{record}");
    }
}

/// SPEC §10: rules by group, end to end. Finance (alice, a `member`) may tunnel; the
/// contractors (bob, a `uniqueMember`, named by full DN in another case) are blocked;
/// everyone else is bumped. OpenLDAP has no LDAP_MATCHING_RULE_IN_CHAIN: the nested
/// all-staff group (whose rule, first, would terminate) is not alice's.
#[test]
fn groups_from_the_directory_decide_tunnel_vs_bump_and_block_vs_allow() {
    let pki = TestPki::new();
    let slapd = Slapd::start();
    let origin = Origin::start(OriginOptions::default());
    let rules = format!(
        "ldap_group_base = \"ou=groups,{SUFFIX}\"\n\n\
         [[ssl_rules]]\nname = \"staff\"\ngroups = [\"all-staff\"]\naction = \"terminate\"\n\n\
         [[ssl_rules]]\nname = \"finance-tunnels\"\ngroups = [\"finance\"]\naction = \"tunnel\"\n\n\
         [[http_rules]]\nname = \"no-contractors\"\n\
         groups = [\"CN=Contractors,OU=Groups,DC=corp,DC=example\"]\naction = \"block\"\n"
    );
    let sluice = start_for(&pki, &slapd.url(), &rules, &[origin.port()]);

    let out = fetch_as(&sluice, &origin, "alice:wonderland");
    assert_eq!(out.status, 200, "{}", out.headers);
    let out = fetch_as(&sluice, &origin, "bob:canwefixit");
    assert_eq!(out.status, 403, "bob is a contractor: {}", out.headers);
    let record = sluice.wait_record("bob's block", |r| r["status"] == 403);
    assert_eq!(record["rule"], "no-contractors");
    assert_eq!(record["user"], "bob");

    // CONNECT: alice's tunnel carries plain HTTP through untouched; bob is bumped.
    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    let proxy = sluice.proxy_url();
    let out = curl(&["-p", "-x", &proxy, "--proxy-user", "alice:wonderland", &url]);
    assert_eq!(out.body_text(), HELLO, "alice tunnels");
    let tunnel = sluice.wait_record("alice's CONNECT", |r| {
        r["kind"] == "connect" && r["user"] == "alice"
    });
    assert_eq!(tunnel["action"], "tunnel", "{tunnel}");
    assert_eq!(tunnel["rule"], "finance-tunnels", "{tunnel}");
    let _ = curl(&["-p", "-x", &proxy, "--proxy-user", "bob:canwefixit", &url]);
    let bumped = sluice.wait_record("bob's CONNECT", |r| {
        r["kind"] == "connect" && r["user"] == "bob"
    });
    // Bumped: sluice waited for a ClientHello, and plain HTTP is not one.
    assert_eq!(bumped["error"], "not_tls", "{bumped}");
    assert_eq!(bumped["stage"], "client_hello", "{bumped}");

    // /explain?user=U shows U's groups and the rule they make decide.
    let admin = sluice.admin.expect("admin endpoint");
    let explain = |user: &str| -> serde_json::Value {
        let url = format!("http://{admin}/explain?host=bank.example&user={user}");
        serde_json::from_slice(&curl(&[&url]).body).unwrap()
    };
    let alice = explain("alice");
    assert_eq!(
        alice["groups"],
        serde_json::json!([format!("cn=Finance,ou=groups,{SUFFIX}")]),
        "{alice}"
    );
    assert_eq!(alice["rule"], "finance-tunnels", "{alice}");
    let bob = explain("bob");
    assert_eq!(
        bob["groups"],
        serde_json::json!([format!("cn=contractors,ou=groups,{SUFFIX}")]),
        "{bob}"
    );
    assert_eq!(bob["rule"], "default", "{bob}");
    let nobody = explain("*");
    assert!(nobody["groups_error"].is_string(), "{nobody}");

    // `sluice explain --user U` looks U's groups up in the directory itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "explain",
            "-c",
            "sluice.toml",
            "--host",
            "bank.example",
            "--user",
            "alice",
        ])
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
}

/// An unknown user costs the directory what a known user with a wrong password does: a
/// search and a bind (against an entry that does not exist), so the answer's cost is no
/// user-enumeration oracle. Counted in the directory's own operation log, not timed.
#[test]
fn an_unknown_user_costs_the_directory_what_a_wrong_password_does() {
    let pki = TestPki::new();
    let slapd = Slapd::start();
    let origin = Origin::start(OriginOptions::default());
    let sluice = start(&pki, &slapd);
    // The operations of one check: the difference of the counts around it (the 407
    // comes after the last operation's result). A simple bind is logged as `BIND
    // dn="…" method=128` (and once more, with `mech=`, when it succeeds).
    let cost = |credentials: &str| -> (usize, usize) {
        let (binds, searches) = (
            slapd.operations(" method=128"),
            slapd.operations("SRCH base="),
        );
        let out = fetch_as(&sluice, &origin, credentials);
        assert_eq!(out.status, 407, "{credentials}: {}", out.headers);
        (
            slapd.operations(" method=128") - binds,
            slapd.operations("SRCH base=") - searches,
        )
    };
    let known = cost("alice:looking-glass");
    let unknown = cost("carol:looking-glass");
    assert_eq!(known, (2, 1), "service bind, search, bind as alice");
    assert_eq!(unknown, known, "an unknown user costs the same");
}

/// The password of carol, a user of the users file.
const CAROL_PASSWORD: &str = "file-pw-Q7xv3kz9";
/// The password of dave, a user of the directory.
const DAVE_PASSWORD: &str = "ldap-pw-M4rt8wq2";

/// SPEC §10: "The password is never logged". With the most verbose diagnostics sluice
/// has (`log.level = "trace"`: every crate's trace events on stderr) and syslog on, the
/// right and a wrong password of a user of the users file and of a directory user, each
/// on a plain request and on a CONNECT, appear in no byte of the access log, of stderr
/// or of the syslog messages: neither as typed nor as the base64 of the `Basic`
/// credentials.
#[test]
fn passwords_are_never_logged_even_at_trace_level() {
    let pki = TestPki::new();
    let slapd = Slapd::start();
    slapd.add(&format!(
        "dn: uid=dave,ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: dave\n\
         cn: Dave\nsn: Directory\nuserPassword: {DAVE_PASSWORD}\n"
    ));
    let origin = Origin::start(OriginOptions::default());
    let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (dir, text) = config_for(
        &pki,
        &slapd.url(),
        "users_file = \"users\"\n",
        &[origin.port()],
    );
    let most_verbose = format!(
        "level = \"trace\"\nsyslog = \"udp://{}\"\n",
        collector.local_addr().unwrap()
    );
    let text = text.replace("level = \"debug\"\n", &most_verbose);
    assert!(text.contains(&most_verbose), "{text}");
    let carol = bcrypt::hash(CAROL_PASSWORD, 4).unwrap();
    std::fs::write(dir.path().join("users"), format!("carol:{carol}\n")).unwrap();
    let mut sluice = Sluice::start_in(&pki, dir, &text);

    let url = format!("http://127.0.0.1:{}/hello", origin.port());
    let proxy = sluice.proxy_url();
    let attempts = [
        ("carol", CAROL_PASSWORD, 200),
        ("carol", "file-wrong-Zp5nc1", 407),
        ("dave", DAVE_PASSWORD, 200),
        ("dave", "ldap-wrong-Hy6dk0", 407),
    ];
    let mut secrets = Vec::new();
    for (user, password, status) in attempts {
        let credentials = format!("{user}:{password}");
        let out = curl(&["-x", &proxy, "--proxy-user", &credentials, &url]);
        assert_eq!(out.status, status, "{credentials}: {}", out.headers);
        // CONNECT (bumped, then refused: plain HTTP is not a ClientHello) or 407.
        let out = curl(&["-p", "-x", &proxy, "--proxy-user", &credentials, &url]);
        let connect_status = if status == 200 {
            "HTTP/1.1 200"
        } else {
            "HTTP/1.1 407"
        };
        assert!(
            out.headers.starts_with(connect_status),
            "{credentials}: {}",
            out.headers
        );
        secrets.push(password.to_string());
        secrets.push(base64::engine::general_purpose::STANDARD.encode(&credentials));
    }
    let records = sluice.wait_records("of the attempts", 2 * attempts.len(), |_| true);
    let mut syslog = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while syslog.len() < records.len() && Instant::now() < deadline {
        let mut datagram = [0u8; 65536];
        if let Ok(n) = collector.recv(&mut datagram) {
            syslog.push(datagram[..n].to_vec());
        }
    }
    assert_eq!(syslog.len(), records.len(), "a syslog message per record");
    sluice.terminate(Duration::from_secs(10));
    let access = std::fs::read(sluice.path("access.log")).unwrap();
    let stderr = sluice.stderr();
    assert!(
        stderr.contains("TRACE"),
        "trace events on stderr:\n{stderr}"
    );
    let outputs = [
        ("the access log", access),
        ("stderr", stderr.into_bytes()),
        ("syslog", syslog.concat()),
    ];
    for (name, bytes) in &outputs {
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {name}:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// sluice's bound on connections to the directory (`MAX_CONNECTIONS` in
/// crates/proxy/src/auth/ldap.rs).
const DIRECTORY_CONNECTIONS: usize = 8;
/// First-time checks sent at once, each from its own address (127.0.0.20 …), so that
/// no address's own bound of 8 checks in progress holds them back.
const CLIENTS: usize = 30;

/// Established TCP connections whose `side` (`sport` or `dport`) is `port`, by `ss`.
fn established(side: &str, port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( {side} = :{port} )"))
        .output()
        .expect("ss (Debian package iproute2)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// Issue 14: "connections to the directory pooled and bounded". slapd is paused
/// (SIGSTOP: the kernel still completes the handshakes, nothing is answered) while
/// [`CLIENTS`] first-time checks arrive at once, so every check sluice lets through holds
/// a connection to it; `ss` counts those connections until every client is connected
/// and half a second more (well within the 5 s an LDAP operation may take). The pool is
/// filled and never exceeded; resumed, slapd answers every check: 200. Then group lookups
/// through `/explain?user=` at once, slapd paused again, stay within the same bound.
#[test]
fn first_checks_at_once_open_no_more_directory_connections_than_the_pool_bound() {
    let pki = TestPki::new();
    let slapd = Slapd::start();
    let origin = Origin::start(OriginOptions::default());
    let sluice = start(&pki, &slapd);
    let url = format!("http://127.0.0.1:{}/hello", origin.port());

    slapd.pause();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let from = format!("127.0.0.{}", 20 + i);
            let (proxy, url) = (sluice.proxy_url(), url.clone());
            std::thread::spawn(move || {
                let credentials = "alice:wonderland";
                let args = [
                    "--interface",
                    &from,
                    "-x",
                    &proxy,
                    "--proxy-user",
                    credentials,
                ];
                curl(&[&args[..], &[url.as_str()]].concat())
            })
        })
        .collect();
    let mut most = 0;
    let mut all_connected: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline
        && all_connected.is_none_or(|t| t.elapsed() < Duration::from_millis(500))
    {
        most = most.max(established("dport", slapd.port));
        if all_connected.is_none() && established("sport", sluice.addr.port()) >= CLIENTS {
            all_connected = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    slapd.resume();
    assert!(all_connected.is_some(), "not every client reached sluice");
    for (i, client) in clients.into_iter().enumerate() {
        let out = client.join().unwrap();
        assert_eq!(
            out.status, 200,
            "client {i}: {} {}",
            out.headers, out.stderr
        );
    }
    assert_eq!(
        most, DIRECTORY_CONNECTIONS,
        "connections to the directory at most, the pool full"
    );
    assert!(established("dport", slapd.port) <= DIRECTORY_CONNECTIONS);

    // Group lookups (a Kerberos user's groups, `explain --user`; bob has not been
    // checked, so nothing is remembered of him) take their connections
    // from the same pool: with the pool's connections idle and slapd paused again, more
    // lookups at once than the bound open no connection beside them.
    let admin = sluice.admin.expect("admin endpoint");
    slapd.pause();
    let lookups: Vec<_> = (0..12)
        .map(|_| {
            let url = format!("http://{admin}/explain?host=example.com&user=bob");
            std::thread::spawn(move || curl(&[&url]))
        })
        .collect();
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        most = most.max(established("dport", slapd.port));
        std::thread::sleep(Duration::from_millis(20));
    }
    slapd.resume();
    for lookup in lookups {
        let out = lookup.join().unwrap();
        let explained: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert!(explained["groups"].is_array(), "{explained}");
    }
    assert!(
        most <= DIRECTORY_CONNECTIONS,
        "{most} connections to the directory during group lookups"
    );
}
