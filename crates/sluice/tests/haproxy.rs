//! A fleet behind HAProxy (SPEC §8, §12), with the example configuration of
//! docs/haproxy.cfg as it is: two sluice nodes (on 127.0.0.11 and 127.0.0.12, the same
//! ports, the same CA, each with its admin endpoint behind a token) and HAProxy in TCP
//! mode sending PROXY v2 headers and checking each node's `/readyz`; for §12, both nodes
//! sharing a real redis-server. `scripts/test` installs haproxy and redis-server.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::certs::TestPki;
use support::origin::HELLO;
use support::{curl, Origin, OriginOptions, Sluice};

const ADMIN_TOKEN: &str = "fleet-check-token";

/// Two ports free on both node addresses (bound together, so they differ).
fn free_ports() -> (u16, u16) {
    for _ in 0..20 {
        let proxy = std::net::TcpListener::bind(("127.0.0.11", 0)).unwrap();
        let admin = std::net::TcpListener::bind(("127.0.0.11", 0)).unwrap();
        let ports = (
            proxy.local_addr().unwrap().port(),
            admin.local_addr().unwrap().port(),
        );
        let free_on_second = std::net::TcpListener::bind(("127.0.0.12", ports.0)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.12", ports.1)).is_ok();
        if free_on_second {
            return ports;
        }
    }
    panic!("no pair of ports free on 127.0.0.11 and 127.0.0.12");
}

/// HAProxy, killed (this child only) when the test ends.
struct Haproxy {
    child: Child,
    frontend: String,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two nodes sharing one CA in `shared` (which holds `upstream-root.pem`), each with its
/// own configuration (`rules` appended), and HAProxy in front with docs/haproxy.cfg.
struct Fleet {
    first: Sluice,
    second: Sluice,
    haproxy: Haproxy,
}

fn start_fleet(shared: &Path, connect_port: u16, rules: &str) -> Fleet {
    std::fs::write(shared.join("admin.token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let (proxy_port, admin_port) = free_ports();
    let node = |ip: &str| {
        let config = format!(
            "[proxy]\nlisten = [\"{ip}:{proxy_port}\"]\nconnect_ports = [{connect_port}]\n\
             proxy_protocol = true\ndeny_destinations = []\n\n\
             [admin]\nlisten = \"{ip}:{admin_port}\"\ntoken_file = \"admin.token\"\n\n\
             [tls]\nca_cert = \"ca.pem\"\nca_key = \"ca-key.pem\"\n\
             upstream_roots = [\"upstream-root.pem\"]\n\n[log]\naccess = \"access.log\"\n\n{rules}"
        );
        let path = shared.join(format!("{ip}.toml"));
        std::fs::write(&path, config).unwrap();
        Sluice::spawn(
            tempfile::tempdir().unwrap(),
            &["run", "-c", path.to_str().unwrap()],
        )
    };
    let first = node("127.0.0.11"); // creates the shared CA
    let second = node("127.0.0.12"); // loads it

    let frontend = format!("127.0.0.2:{}", free_port("127.0.0.2"));
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/haproxy.cfg");
    // /usr/sbin may not be on a non-root PATH.
    let binary = ["/usr/sbin/haproxy", "haproxy"]
        .into_iter()
        .find(|b| Path::new(b).exists())
        .unwrap_or("haproxy");
    let child = Command::new(binary)
        .args(["-db", "-f", cfg])
        .env("SLUICE_FRONTEND", &frontend)
        .env("SLUICE_NODE1", first.addr.to_string())
        .env("SLUICE_NODE2", second.addr.to_string())
        .env("SLUICE_ADMIN_PORT", admin_port.to_string())
        .env("SLUICE_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy is needed for this test (apt-get install haproxy)");
    let haproxy = Haproxy { child, frontend };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&haproxy.frontend).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Fleet {
        first,
        second,
        haproxy,
    }
}

fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn two_nodes_behind_haproxy_see_the_real_client() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let shared = tempfile::tempdir().unwrap();
    pki.write_root(&shared.path().join("upstream-root.pem"));
    let fleet = start_fleet(
        shared.path(),
        origin.port(),
        "[[ssl_rules]]\nname = \"office\"\nclients = [\"127.0.0.3\"]\naction = \"tunnel\"\n",
    );
    let frontend = fleet.haproxy.frontend.clone();

    let root = shared.path().join("upstream-root.pem");
    let proxy = format!("http://{frontend}");
    let url = format!("https://tunnel.test:{}/hello", origin.port());
    let connect_to = format!("tunnel.test:{0}:127.0.0.1:{0}", origin.port());
    for _ in 0..4 {
        let out = curl(&[
            "--interface",
            "127.0.0.3",
            "-x",
            &proxy,
            "--cacert",
            root.to_str().unwrap(),
            "--connect-to",
            &connect_to,
            &url,
        ]);
        assert_eq!(out.body_text(), HELLO, "{}", out.stderr);
    }
    let Fleet {
        first,
        second,
        haproxy,
    } = fleet;
    drop(haproxy);

    // Both nodes write to the shared configuration's access log.
    let log = shared.path().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let records = loop {
        let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .filter(|r: &serde_json::Value| r["kind"] == "connect")
            .collect();
        if records.len() >= 4 || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(records.len(), 4, "{records:#?}");
    for record in &records {
        assert_eq!(
            record["client"], "127.0.0.3",
            "the address HAProxy saw: {record}"
        );
        assert_eq!(record["rule"], "office");
        assert_eq!(record["action"], "tunnel");
    }
    assert!(first.stderr().contains("CA certificate created"));
    assert!(
        second.stderr().contains("CA certificate loaded"),
        "the second node shares the CA"
    );
}

/// Issue 17: `systemctl stop` (SIGTERM) on one node behind HAProxy loses no connection:
/// the node's running downloads finish, and new connections go to the other node (its
/// `/readyz` turns 503, and a connection that races to the closed listener is
/// redispatched).
#[test]
fn a_node_drained_behind_haproxy_loses_no_connection() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let shared = tempfile::tempdir().unwrap();
    pki.write_root(&shared.path().join("upstream-root.pem"));
    let fleet = start_fleet(shared.path(), 443, "");
    let proxy = format!("http://{}", fleet.haproxy.frontend);
    // Long enough for two rounds of health checks: had the /readyz check failed (a
    // refused Host, a wrong port), both nodes would be down and every request below fail.
    std::thread::sleep(Duration::from_secs(3));

    let slow = format!("http://127.0.0.1:{}/slow", origin.port());
    let downloads: Vec<_> = (0..2)
        .map(|_| {
            let (proxy, slow) = (proxy.clone(), slow.clone());
            std::thread::spawn(move || curl(&["-x", &proxy, &slow]))
        })
        .collect();
    // Both downloads (one per node, round robin) are under way when node 1 drains.
    std::thread::sleep(Duration::from_millis(500));
    fleet.first.signal("TERM");

    let hello = format!("http://127.0.0.1:{}/hello", origin.port());
    for attempt in 0..30 {
        let out = curl(&["-x", &proxy, &hello]);
        assert_eq!(
            (out.code, out.body_text().as_str()),
            (0, HELLO),
            "request {attempt} during the drain: {}",
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for download in downloads {
        let out = download.join().unwrap();
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.body, vec![b'x'; 1000], "the running download completed");
    }
    let Fleet { mut first, .. } = fleet;
    let status = first
        .terminate(Duration::from_secs(20))
        .expect("the drained node exits");
    assert!(status.success(), "{status:?}");
}

/// The bumped connections counted on a node's `/metrics` (behind the admin token).
fn bumped_on(node: &Sluice) -> u64 {
    let url = format!("http://{}/metrics", node.admin.expect("admin endpoint"));
    let auth = format!("Authorization: Bearer {ADMIN_TOKEN}");
    curl(&["-H", &auth, "-H", "Host: localhost", &url])
        .body_text()
        .lines()
        .filter(|l| l.starts_with("sluice_connections_total{") && l.contains("action=\"bump\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// SPEC §12's tested example: the two nodes behind HAProxy (round robin, PROXY v2) share
/// a real redis-server (`[cluster] redis`), so a client's TLS session made through one
/// node resumes through the other: every resumption below is `Reused`, and both nodes
/// served some.
#[test]
fn two_nodes_behind_haproxy_share_session_tickets_through_redis() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let redis = support::redis::Redis::start();
    let shared = tempfile::tempdir().unwrap();
    pki.write_root(&shared.path().join("upstream-root.pem"));
    let cluster = format!("[cluster]\nredis = \"{}\"\n", redis.url());
    let fleet = start_fleet(shared.path(), origin.port(), &cluster);
    // Two rounds of health checks: both nodes in the rotation.
    std::thread::sleep(Duration::from_secs(3));
    let ca = shared.path().join("ca.pem");
    let session = tempfile::NamedTempFile::new().unwrap();
    let request = "GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let target = format!("localhost:{}", origin.port());
    let s_client = |flag: &str| {
        support::openssl_s_client(
            &[
                "-proxy",
                &fleet.haproxy.frontend,
                "-connect",
                &target,
                "-servername",
                "localhost",
                "-CAfile",
                ca.to_str().unwrap(),
                "-ign_eof",
                flag,
                session.path().to_str().unwrap(),
            ],
            request,
        )
    };
    let first = s_client("-sess_out");
    assert!(
        first.contains("New, TLSv1.3") && first.contains(HELLO),
        "{first}"
    );
    for attempt in 0..6 {
        let resumed = s_client("-sess_in");
        assert!(
            resumed.contains("Reused, TLSv1.3") && resumed.contains(HELLO),
            "resumption {attempt}: {resumed}"
        );
        if bumped_on(&fleet.first) > 0 && bumped_on(&fleet.second) > 0 {
            return;
        }
    }
    panic!(
        "HAProxy never sent a connection to both nodes: {} and {}",
        bumped_on(&fleet.first),
        bumped_on(&fleet.second)
    );
}
