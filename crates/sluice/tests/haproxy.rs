//! A fleet behind HAProxy (SPEC §8), with the example configuration of
//! docs/haproxy.cfg as it is: two sluice nodes sharing one configuration file and one
//! CA, HAProxy in TCP mode sending PROXY v2 headers, and a `clients` rule keyed on the
//! address HAProxy saw (the client connects from 127.0.0.3 to HAProxy on 127.0.0.2;
//! HAProxy reaches the nodes from another address). `.ci/run` installs haproxy.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::certs::TestPki;
use support::origin::HELLO;
use support::{curl, Origin, OriginOptions, Sluice};

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
    let config = format!(
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\nconnect_ports = [{}]\nproxy_protocol = true\n\
         deny_destinations = []\n\n\
         [admin]\nlisten = \"\"\n\n[tls]\nca_cert = \"ca.pem\"\nca_key = \"ca-key.pem\"\n\
         upstream_roots = [\"upstream-root.pem\"]\n\n[log]\naccess = \"access.log\"\n\n\
         [[ssl_rules]]\nname = \"office\"\nclients = [\"127.0.0.3\"]\naction = \"tunnel\"\n",
        origin.port()
    );
    let config_path = shared.path().join("sluice.toml");
    std::fs::write(&config_path, config).unwrap();
    let node = || {
        let dir = tempfile::tempdir().unwrap();
        Sluice::spawn(dir, &["run", "-c", config_path.to_str().unwrap()])
    };
    let first = node(); // creates the shared CA
    let second = node(); // loads it

    let frontend = format!("127.0.0.2:{}", free_port("127.0.0.2"));
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/haproxy.cfg");
    // /usr/sbin may not be on a non-root PATH.
    let binary = ["/usr/sbin/haproxy", "haproxy"]
        .into_iter()
        .find(|b| std::path::Path::new(b).exists())
        .unwrap_or("haproxy");
    let mut haproxy = Command::new(binary)
        .args(["-db", "-f", cfg])
        .env("SLUICE_FRONTEND", &frontend)
        .env("SLUICE_NODE1", first.addr.to_string())
        .env("SLUICE_NODE2", second.addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy is needed for this test (apt-get install haproxy)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&frontend).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

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
    let _ = haproxy.kill();
    let _ = haproxy.wait();

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
