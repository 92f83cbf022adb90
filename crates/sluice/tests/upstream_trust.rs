//! Upstream trust as browsers do it (SPEC §11): a server that omits its intermediate is
//! completed from the leaf's `caIssuers` URL (http, through the destination checks,
//! cached), and `tls.crl_files` makes a revoked leaf the error kind `revoked`.

mod support;

use std::net::TcpListener;
use std::sync::atomic::Ordering;

use support::certs::{Leaf, TestPki};
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{curl, fetch, CurlOutput, Origin, OriginOptions, Sluice};

fn tls_origin(leaf: Leaf) -> Origin {
    Origin::start(OriginOptions {
        tls: Some(leaf),
        ..Default::default()
    })
}

fn get(sluice: &Sluice, origin: &Origin) -> CurlOutput {
    fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    )
}

fn start(pki: &TestPki, origin: &Origin, tls: &str, rest: &str) -> Sluice {
    Sluice::start(
        pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            tls,
            rest,
            ..Default::default()
        },
    )
}

fn assert_blocked_as(out: &CurlOutput, kind: &str) {
    assert_eq!(out.status, 502, "{}", out.stderr);
    let body = String::from_utf8_lossy(&out.body);
    assert!(body.contains(kind), "the block page names {kind}: {body}");
}

// The server sends its leaf alone; the leaf's caIssuers URL serves the intermediate
// (DER): the chain verifies, the page is served. Several connections, four of them at
// once, fetch it once.
#[test]
fn a_missing_intermediate_is_fetched_from_the_leafs_ca_issuers_url() {
    let pki = TestPki::new();
    let url_port = free_port();
    let (leaf, intermediate) =
        pki.leaf_via_intermediate(&format!("http://127.0.0.1:{url_port}/files/int.der"));
    let origin = tls_origin(leaf);
    // Without an answer at the URL the chain is unknown_issuer, as before.
    let sluice = start(&pki, &origin, "", "");
    assert_blocked_as(&get(&sluice, &origin), "unknown_issuer");
    drop(sluice);

    let aia = Origin::start_on(
        &format!("127.0.0.1:{url_port}"),
        OriginOptions {
            files: vec![("int.der", "application/pkix-cert", intermediate)],
            ..Default::default()
        },
    );
    let sluice = start(&pki, &origin, "", "");
    let outs: Vec<CurlOutput> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| get(&sluice, &origin)))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    for out in outs.iter().chain([&get(&sluice, &origin)]) {
        assert_eq!(out.status, 200, "{}", out.stderr);
        assert_eq!(out.body, HELLO.as_bytes());
    }
    assert_eq!(
        aia.requests().len(),
        1,
        "five connections, one fetch of the intermediate"
    );
}

// The answer may be a PKCS#7 bundle (`.p7c`), as some CAs publish.
#[test]
fn a_pkcs7_answer_completes_the_chain() {
    let pki = TestPki::new();
    let port = free_port();
    let (leaf, intermediate) =
        pki.leaf_via_intermediate(&format!("http://127.0.0.1:{port}/files/int.der"));
    let _aia = Origin::start_on(
        &format!("127.0.0.1:{port}"),
        OriginOptions {
            files: vec![("int.der", "application/pkcs7-mime", pkcs7(&intermediate))],
            ..Default::default()
        },
    );
    let origin = tls_origin(leaf);
    let sluice = start(&pki, &origin, "", "");
    let out = get(&sluice, &origin);
    assert_eq!(out.status, 200, "{}", out.stderr);
}

// Lying or useless AIA servers leave the chain unknown_issuer: garbage, a certificate
// that is not the issuer, and a tarpit that accepts and never answers (given up after
// 2 s, the connection then gets its block page).
#[test]
fn a_garbage_wrong_or_silent_aia_server_leaves_unknown_issuer() {
    let pki = TestPki::new();
    let stranger_cert = pki.unknown_issuer().chain.remove(0);
    for (case, body) in [
        (
            "garbage",
            b"<html>this is not a certificate</html>".to_vec(),
        ),
        ("wrong certificate", stranger_cert),
    ] {
        let port = free_port();
        let (leaf, _) =
            pki.leaf_via_intermediate(&format!("http://127.0.0.1:{port}/files/int.der"));
        let aia = Origin::start_on(
            &format!("127.0.0.1:{port}"),
            OriginOptions {
                files: vec![("int.der", "application/pkix-cert", body)],
                ..Default::default()
            },
        );
        let origin = tls_origin(leaf);
        let sluice = start(&pki, &origin, "", "");
        assert_blocked_as(&get(&sluice, &origin), "unknown_issuer");
        assert_eq!(aia.requests().len(), 1, "{case}: the URL was asked");
    }

    let tarpit = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tarpit.local_addr().unwrap().port();
    let (leaf, _) = pki.leaf_via_intermediate(&format!("http://127.0.0.1:{port}/int.der"));
    let origin = tls_origin(leaf);
    let sluice = start(&pki, &origin, "", "");
    assert_blocked_as(&get(&sluice, &origin), "unknown_issuer");
    tarpit.set_nonblocking(true).unwrap();
    assert!(tarpit.accept().is_ok(), "sluice dialled the tarpit");
}

// The fetch goes through proxy.deny_destinations like any destination: a caIssuers URL
// on a denied address is never dialled.
#[test]
fn a_ca_issuers_url_on_a_denied_destination_is_not_fetched() {
    let pki = TestPki::new();
    let denied = TcpListener::bind("127.0.0.2:0").unwrap();
    let port = denied.local_addr().unwrap().port();
    let (leaf, _) = pki.leaf_via_intermediate(&format!("http://127.0.0.2:{port}/int.der"));
    let origin = tls_origin(leaf);
    let config = Sluice::config_text(&SluiceConfig {
        connect_ports: &[origin.port()],
        ..Default::default()
    })
    .replace(
        "deny_destinations = []",
        "deny_destinations = [\"127.0.0.2/32\"]",
    );
    let sluice = Sluice::start_in(&pki, tempfile::tempdir().unwrap(), &config);
    assert_blocked_as(&get(&sluice, &origin), "unknown_issuer");
    denied.set_nonblocking(true).unwrap();
    assert!(
        denied.accept().is_err(),
        "a denied destination must not be dialled"
    );
}

// tls.crl_files: the revoked leaf is blocked as `revoked` and counted in
// sluice_handshake_failures_total; the good one of the same CA passes; `allow` lets
// the revoked one through with upstream_cert = "revoked" in the log.
#[test]
fn a_leaf_revoked_by_a_crl_file_is_revoked() {
    let pki = TestPki::new();
    let (revoked, good, crl) = pki.revoked_good_and_crl();
    let revoked_origin = tls_origin(revoked);
    let good_origin = tls_origin(good);
    let ports = [revoked_origin.port(), good_origin.port()];
    let sluice = start_with_crl(&pki, &ports, &crl, "");
    let out = get(&sluice, &revoked_origin);
    assert_blocked_as(&out, "revoked");
    assert_eq!(revoked_origin.seen.requests.lock().unwrap().len(), 0);
    let out = get(&sluice, &good_origin);
    assert_eq!(out.status, 200, "{}", out.stderr);
    let metrics = curl(&[&format!(
        "http://{}/metrics",
        sluice.admin.expect("the admin endpoint is on")
    )]);
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains("sluice_handshake_failures_total{side=\"upstream\",kind=\"revoked\"} 1"),
        "{metrics}"
    );

    let sluice = start_with_crl(&pki, &ports, &crl, "on_cert_error = \"allow\"");
    let out = get(&sluice, &revoked_origin);
    assert_eq!(out.status, 200, "{}", out.stderr);
    let record = sluice.wait_record("the connect record", |r| r["kind"] == "connect");
    assert_eq!(record["upstream_cert"], "revoked");
    assert_eq!(revoked_origin.seen.handshakes.load(Ordering::Relaxed), 2);
}

// A crl_files entry that is not a CRL stops the configuration from loading, naming it.
#[test]
fn a_broken_crl_file_is_refused_naming_it() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("crl.pem"), "not a CRL").unwrap();
    let config = Sluice::config_text(&SluiceConfig {
        connect_ports: &[443],
        tls: "crl_files = [\"crl.pem\"]",
        ..Default::default()
    });
    pki.write_root(&dir.path().join("upstream-root.pem"));
    std::fs::write(dir.path().join("sluice.toml"), config).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "-c", "sluice.toml"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = None;
    for _ in 0..200 {
        exited = child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        exited.is_some_and(|s| !s.success()),
        "sluice must refuse to start"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("crl.pem"), "{stderr}");
}

fn start_with_crl(pki: &TestPki, ports: &[u16], crl: &str, policy: &str) -> Sluice {
    let config = Sluice::config_text(&SluiceConfig {
        connect_ports: ports,
        tls: &format!("crl_files = [\"crl.pem\"]\n{policy}"),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("crl.pem"), crl).unwrap();
    Sluice::start_in(pki, dir, &config)
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A PKCS#7 certs-only bundle of `cert`, made by `openssl crl2pkcs7` as CAs do.
fn pkcs7(cert: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("int.der"), cert).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    openssl(&[
        "x509", "-inform", "DER", "-in", "int.der", "-out", "int.pem",
    ]);
    let out = openssl(&[
        "crl2pkcs7",
        "-nocrl",
        "-certfile",
        "int.pem",
        "-outform",
        "DER",
    ]);
    out.stdout
}
