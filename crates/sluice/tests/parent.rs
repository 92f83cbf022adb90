//! Parent proxies (SPEC §11) with Debian's Squid as the parent on loopback, started by
//! each test with its own configuration and stopped by PID: tunnel, bump and plain HTTP
//! through it, the bump still verifying the origin's certificate, Basic credentials, a
//! dead first URL failing over, a refusing and a silent parent.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::certs::TestPki;
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{curl, CurlOutput, Origin, OriginOptions, Sluice};

/// A Squid on a loopback port, stopped (SIGTERM, then SIGKILL) when dropped.
struct Squid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// Basic credentials the authenticating Squid accepts (the password has a space).
const CREDENTIALS: &str = "alice:p4ss word";

impl Squid {
    /// `auth`: require `CREDENTIALS`. Names of `.blocked.test` are refused (403).
    fn start(auth: bool) -> Squid {
        let dir = tempfile::tempdir().unwrap();
        // Squid drops root for its own user: it must write its logs here.
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o777);
        std::fs::set_permissions(dir.path(), mode).unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let port = free_port();
        std::fs::write(
            path("hosts"),
            "127.0.0.1 bump.test tunnel.test blocked.test\n",
        )
        .unwrap();
        let access = if auth {
            let hash = Command::new("openssl")
                .args(["passwd", "-apr1", CREDENTIALS.split_once(':').unwrap().1])
                .output()
                .expect("openssl passwd");
            let line = format!("alice:{}", String::from_utf8_lossy(&hash.stdout));
            std::fs::write(path("passwd"), line).unwrap();
            format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {}\n\
                 acl authed proxy_auth REQUIRED\nhttp_access deny blocked\n\
                 http_access allow authed\n",
                path("passwd")
            )
        } else {
            "http_access deny blocked\nhttp_access allow localhost\n".to_string()
        };
        let config = format!(
            "http_port 127.0.0.1:{port}\npid_filename {pid}\naccess_log stdio:{log}\n\
             cache_log {cache}\ncache_store_log none\ncoredump_dir {dir}\nhosts_file {hosts}\n\
             cache deny all\nshutdown_lifetime 0 seconds\n\
             acl blocked dstdomain .blocked.test\n{access}http_access deny all\n",
            pid = path("squid.pid"),
            log = path("access.log"),
            cache = path("cache.log"),
            dir = dir.path().display(),
            hosts = path("hosts"),
        );
        std::fs::write(path("squid.conf"), config).unwrap();
        for file in std::fs::read_dir(dir.path()).unwrap() {
            let mode = std::os::unix::fs::PermissionsExt::from_mode(0o644);
            std::fs::set_permissions(file.unwrap().path(), mode).unwrap();
        }
        let child = Command::new("/usr/sbin/squid")
            .args([
                "-N",
                "-f",
                &path("squid.conf"),
                "-n",
                &format!("sluice{port}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting squid (Debian package squid)");
        let squid = Squid { child, port, dir };
        squid.wait_listening();
        squid
    }

    fn wait_listening(&self) {
        let until = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < until,
                "squid did not listen: {}",
                self.cache_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn cache_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cache.log")).unwrap_or_default()
    }

    /// Squid's access log, once it holds a line containing `needle` (it is written when
    /// a transaction ends).
    fn wait_access(&self, needle: &str) -> String {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let log =
                std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < until,
                "squid never logged {needle:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// sluice going via the parent of `rest` (after the harness's configuration), with files beside.
fn start_sluice(pki: &TestPki, ports: &[u16], rest: &str, files: &[(&str, &str)]) -> Sluice {
    let dir = tempfile::tempdir().unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let config = SluiceConfig {
        connect_ports: ports,
        rest,
        ..Default::default()
    };
    // A short connect timeout: the tarpit parent costs that long.
    let text = Sluice::config_text(&config)
        .replace("[proxy]\n", "[proxy]\ndefault_via = \"parent\"\n")
        .replace("[limits]\n", "[limits]\nconnect_timeout = \"2s\"\n");
    std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    Sluice::spawn(dir, &["run", "-c", "sluice.toml"])
}

fn parent_section(urls: &[String], credentials: bool) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let credentials = if credentials {
        "credentials_file = \"parent.cred\"\n"
    } else {
        ""
    };
    format!(
        "[[upstream_proxies]]\nname = \"parent\"\nurls = [{}]\n{credentials}\n\
         [[ssl_rules]]\nname = \"tunnel me\"\ndomains = [\"tunnel.test\"]\naction = \"tunnel\"\n\n\
         [[ssl_rules]]\nname = \"not via the parent\"\ndomains = [\"allow.test\"]\naction = \"bump\"\nvia = \"direct\"\n",
        urls.join(", ")
    )
}

/// `https://name:port/path` through sluice by name: the parent, not curl, resolves it.
fn fetch(
    proxy: &str,
    name: &str,
    port: u16,
    path: &str,
    ca: &std::path::Path,
    _: &[&str],
) -> CurlOutput {
    let url = format!("https://{name}:{port}{path}");
    curl(&["-x", proxy, "--cacert", ca.to_str().unwrap(), &url])
}

fn connect_record_for(sluice: &Sluice, host: &str) -> Value {
    sluice.wait_record(&format!("the CONNECT to {host}"), |r| {
        r["kind"] == "connect" && r["host"] == host
    })
}

#[test]
fn tunnel_bump_and_plain_http_go_through_the_parent() {
    let pki = TestPki::new();
    let squid = Squid::start(false);
    let tls = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let plain = Origin::start(OriginOptions {
        tls: None,
        ..Default::default()
    });
    let sluice = start_sluice(
        &pki,
        &[tls.port()],
        &parent_section(&[squid.url()], false),
        &[],
    );
    let port = tls.port();
    // A tunnel shows the origin's own certificate, a bump sluice's.
    let bundle = sluice.path("both-roots.pem");
    let sluice_ca = std::fs::read_to_string(sluice.ca_path()).unwrap();
    std::fs::write(&bundle, format!("{sluice_ca}{}", pki.root_pem())).unwrap();

    for (name, action) in [("bump.test", "bump"), ("tunnel.test", "tunnel")] {
        let out = fetch(&sluice.proxy_url(), name, port, "/hello", &bundle, &[]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert_eq!(out.body_text(), HELLO);
        squid.wait_access(&format!("CONNECT {name}:{port}"));
        let record = connect_record_for(&sluice, name);
        assert_eq!(record["via"], "parent");
        assert_eq!(record["action"], action);
        assert!(
            record.get("dest_ip").is_none(),
            "the parent resolved the name"
        );
    }
    let bumped = sluice.wait_record("the bumped request", |r| r["kind"] == "http");
    assert_eq!(bumped["via"], "parent");
    // A rule's `via = "direct"` overrides the default: the parent never sees it.
    let out = fetch(
        &sluice.proxy_url(),
        "allow.test",
        port,
        "/hello",
        &bundle,
        &[],
    );
    assert_eq!(out.body_text(), HELLO, "{}", out.stderr);
    let record = connect_record_for(&sluice, "allow.test");
    assert_eq!(record["via"], "direct");
    assert_eq!(record["dest_ip"], "127.0.0.1");

    let url = format!("http://bump.test:{}/hello", plain.port());
    let out = curl(&["-x", &sluice.proxy_url(), &url]);
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    squid.wait_access(&format!("GET {url}"));
    let record = sluice.wait_record("the plain request", |r| {
        r["kind"] == "http" && r["url"] == url.as_str()
    });
    assert_eq!(record["via"], "parent");
    assert_eq!(record["status"], 200);
}

#[test]
fn a_bump_through_the_parent_still_verifies_the_origin() {
    let pki = TestPki::new();
    let squid = Squid::start(false);
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.unknown_issuer()),
        ..Default::default()
    });
    let sluice = start_sluice(
        &pki,
        &[origin.port()],
        &parent_section(&[squid.url()], false),
        &[],
    );
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    assert_ne!(
        out.body_text(),
        HELLO,
        "an unverifiable origin is not served"
    );
    let record = connect_record_for(&sluice, "bump.test");
    assert_eq!(record["via"], "parent");
    assert_eq!(record["upstream_cert"], "unknown_issuer");
}

#[test]
fn credentials_reach_the_parent_after_a_dead_first_url() {
    let pki = TestPki::new();
    let squid = Squid::start(true);
    let tls = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let plain = Origin::start(OriginOptions {
        tls: None,
        ..Default::default()
    });
    let dead = format!("http://127.0.0.1:{}", free_port());
    let section = parent_section(&[dead, squid.url()], true);
    let sluice = start_sluice(
        &pki,
        &[tls.port()],
        &section,
        &[("parent.cred", &format!("{CREDENTIALS}\n"))],
    );
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        tls.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.body_text(), HELLO);
    let log = squid.wait_access(&format!("CONNECT bump.test:{}", tls.port()));
    assert!(log.contains(" alice "), "squid saw the user: {log}");
    let url = format!("http://bump.test:{}/hello", plain.port());
    let out = curl(&["-x", &sluice.proxy_url(), &url]);
    assert_eq!(out.status, 200, "{}", out.body_text());
    assert!(!sluice.stderr().contains("p4ss"), "never logged");
}

#[test]
fn a_refusing_parent_is_parent_refused_and_a_dead_one_parent_unreachable() {
    let pki = TestPki::new();
    let squid = Squid::start(true);
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let port = origin.port();
    // Squid refuses .blocked.test with 403, and anyone without credentials with 407.
    let with_credentials = start_sluice(
        &pki,
        &[port],
        &parent_section(&[squid.url()], true),
        &[("parent.cred", CREDENTIALS)],
    );
    let out = fetch(
        &with_credentials.proxy_url(),
        "blocked.test",
        port,
        "/hello",
        &with_credentials.ca_path(),
        &[],
    );
    assert_ne!(out.code, 0);
    assert!(out.headers.contains(" 502"), "{}", out.headers);
    let record = connect_record_for(&with_credentials, "blocked.test");
    assert_eq!(record["action"], "refused");
    assert_eq!(record["status"], 502);
    assert_eq!(record["error"], "parent_refused");
    assert_eq!(record["parent_status"], 403);
    assert_eq!(record["via"], "parent");

    let without = start_sluice(&pki, &[port], &parent_section(&[squid.url()], false), &[]);
    let out = fetch(
        &without.proxy_url(),
        "bump.test",
        port,
        "/hello",
        &without.ca_path(),
        &[],
    );
    assert!(out.headers.contains(" 502"), "{}", out.headers);
    assert!(
        !out.headers.contains("407"),
        "the parent's challenge is not the client's"
    );
    let record = connect_record_for(&without, "bump.test");
    assert_eq!(record["error"], "parent_refused");
    assert_eq!(record["parent_status"], 407);

    // A parent that answers the CONNECT with garbage is no parent.
    let liar = TcpListener::bind("127.0.0.1:0").unwrap();
    let liar_url = format!("http://127.0.0.1:{}", liar.local_addr().unwrap().port());
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = liar.accept() {
            use std::io::{Read, Write};
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"SSH-2.0-OpenSSH\r\n\r\n");
        }
    });
    let lied_to = start_sluice(&pki, &[port], &parent_section(&[liar_url], false), &[]);
    let out = fetch(
        &lied_to.proxy_url(),
        "bump.test",
        port,
        "/hello",
        &lied_to.ca_path(),
        &[],
    );
    assert!(out.headers.contains(" 502"), "{}", out.headers);
    let record = connect_record_for(&lied_to, "bump.test");
    assert_eq!(record["error"], "parent_unreachable");

    // Two dead URLs, and a tarpit that accepts and never answers the CONNECT.
    let tarpit = TcpListener::bind("127.0.0.1:0").unwrap();
    let urls = [
        format!("http://127.0.0.1:{}", free_port()),
        format!("http://127.0.0.1:{}", tarpit.local_addr().unwrap().port()),
    ];
    let dead = start_sluice(&pki, &[port], &parent_section(&urls, false), &[]);
    let out = fetch(
        &dead.proxy_url(),
        "bump.test",
        port,
        "/hello",
        &dead.ca_path(),
        &[],
    );
    assert!(out.headers.contains(" 502"), "{}", out.headers);
    let record = connect_record_for(&dead, "bump.test");
    assert_eq!(record["status"], 502);
    assert_eq!(record["error"], "parent_unreachable");
    assert!(
        origin
            .seen
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            == 0
    );
}
