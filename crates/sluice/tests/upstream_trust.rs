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

/// A shell command in `dir`, which must succeed.
fn sh(dir: &std::path::Path, script: &str) {
    let out = std::process::Command::new("sh")
        .args(["-ec", script])
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PKI made with openssl in `dir`: `ca.pem`/`ca.key` (P-256), leaves `good` and
/// `revoked` for bump.test, a CA `stranger`, and OCSP responses made by `openssl ocsp`
/// from an index in which `revoked` is revoked: `good.ocsp`, `revoked.ocsp` (signed by
/// the CA), `forged.ocsp` (`good` said revoked by the stranger), `delegated.ocsp`
/// (leaf `delegated` revoked, signed by a responder the CA delegated), `impostor.ocsp`
/// (`good` said revoked by a certificate of the CA not delegated for OCSP).
fn ocsp_pki(dir: &std::path::Path) {
    sh(
        dir,
        r#"
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $1.key \
  -out $1.pem -subj "/CN=$1 OCSP test CA" -days 30 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; }
ca ca; ca stranger
printf 'subjectAltName=DNS:bump.test,DNS:localhost\n' > ext.cnf
for leaf in good revoked delegated; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $leaf.key \
    -out $leaf.csr -subj /CN=bump.test 2>/dev/null
  openssl x509 -req -in $leaf.csr -CA ca.pem -CAkey ca.key -set_serial 0x$(openssl rand -hex 8) \
    -days 30 -extfile ext.cnf -out $leaf.pem 2>/dev/null
  cat $leaf.pem ca.pem > $leaf-chain.pem
done
serial() { openssl x509 -in $1.pem -noout -serial | cut -d= -f2; }
expiry=$(date -u -d '+30 days' +%y%m%d%H%M%SZ)
revoked_at=$(date -u -d '-1 hour' +%y%m%d%H%M%SZ)
printf 'V\t%s\t\t%s\tunknown\t/CN=bump.test\n' $expiry $(serial good) > index.txt
printf 'R\t%s\t%s\t%s\tunknown\t/CN=bump.test\n' $expiry $revoked_at $(serial revoked) >> index.txt
printf 'R\t%s\t%s\t%s\tunknown\t/CN=bump.test\n' $expiry $revoked_at $(serial delegated) >> index.txt
# Responders the CA signed: one delegated (extended key usage OCSPSigning), one not.
for responder in responder impostor; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $responder.key \
    -out $responder.csr -subj "/CN=$responder" 2>/dev/null
  [ $responder = responder ] && printf 'extendedKeyUsage=OCSPSigning\n' > $responder.ext \
    || printf 'extendedKeyUsage=serverAuth\n' > $responder.ext
  openssl x509 -req -in $responder.csr -CA ca.pem -CAkey ca.key -set_serial 0x$(openssl rand -hex 8) \
    -days 30 -extfile $responder.ext -out $responder.pem 2>/dev/null
done
printf 'R\t%s\t%s\t%s\tunknown\t/CN=bump.test\n' $expiry $revoked_at $(serial good) > forged.txt
respond() { # leaf, signer, index, output
  openssl ocsp -issuer ca.pem -cert $1.pem -reqout $1.req -no_nonce 2>/dev/null
  openssl ocsp -index $3 -rsigner $2.pem -rkey $2.key -CA ca.pem -reqin $1.req \
    -respout $4 -ndays 1 2>/dev/null
}
respond good ca index.txt good.ocsp
respond revoked ca index.txt revoked.ocsp
respond good stranger forged.txt forged.ocsp
respond delegated responder index.txt delegated.ocsp
respond good impostor forged.txt impostor.ocsp
"#,
    );
}

/// nginx on loopback serving `cert` (`CERT-chain.pem`, `CERT.key`), stapling the OCSP
/// response in `staple` (`ssl_stapling_file`), killed by PID when dropped.
struct Nginx {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(pki_dir: &std::path::Path, cert: &str, staple: Option<&str>) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let p = |name: &str| pki_dir.join(name).display().to_string();
        let stapling = match staple {
            None => String::new(),
            Some(file) => format!("ssl_stapling on; ssl_stapling_file {};", p(file)),
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\npid nginx.pid;\nerror_log stderr;\nevents {{}}\n\
             http {{\n access_log off;\n server {{\n  listen 127.0.0.1:{port} ssl;\n  \
             ssl_certificate {};\n  ssl_certificate_key {};\n  {stapling}\n  \
             location / {{ return 200 \"{HELLO}\"; }}\n }}\n}}\n",
            p(&format!("{cert}-chain.pem")),
            p(&format!("{cert}.key")),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = std::process::Command::new("nginx")
            .args([
                "-p",
                &dir.path().display().to_string(),
                "-c",
                "nginx.conf",
                "-e",
                "stderr",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx starts (apt-get install nginx)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx {
                    child,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not listen on {port}");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// A stapled OCSP response (made by `openssl ocsp`, served by nginx's ssl_stapling_file)
// that says the leaf is revoked blocks it as `revoked` (signed by the CA, or by a
// responder it delegated), counted in the metric; a good one passes; a "revoked" signed
// by another CA, or by a certificate of the CA not delegated for OCSP, is not believed.
#[test]
fn a_stapled_ocsp_response_saying_revoked_is_revoked() {
    let pki = TestPki::new();
    let pki_dir = tempfile::tempdir().unwrap();
    ocsp_pki(pki_dir.path());
    let revoked = Nginx::start(pki_dir.path(), "revoked", Some("revoked.ocsp"));
    let good = Nginx::start(pki_dir.path(), "good", Some("good.ocsp"));
    let forged = Nginx::start(pki_dir.path(), "good", Some("forged.ocsp"));
    let delegated = Nginx::start(pki_dir.path(), "delegated", Some("delegated.ocsp"));
    let impostor = Nginx::start(pki_dir.path(), "good", Some("impostor.ocsp"));
    let ports = [
        revoked.port,
        good.port,
        forged.port,
        delegated.port,
        impostor.port,
    ];
    let config = Sluice::config_text(&SluiceConfig {
        connect_ports: &ports,
        ..Default::default()
    })
    .replace(
        "upstream_roots = [\"upstream-root.pem\"]",
        "upstream_roots = [\"upstream-root.pem\", \"ocsp-root.pem\"]",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        pki_dir.path().join("ca.pem"),
        dir.path().join("ocsp-root.pem"),
    )
    .unwrap();
    let sluice = Sluice::start_in(&pki, dir, &config);
    let get_port = |port: u16| {
        fetch(
            &sluice.proxy_url(),
            "bump.test",
            port,
            "/hello",
            &sluice.ca_path(),
            &[],
        )
    };

    assert_blocked_as(&get_port(revoked.port), "revoked");
    let out = get_port(good.port);
    assert_eq!(
        (out.status, out.body.as_slice()),
        (200, HELLO.as_bytes()),
        "{}",
        out.stderr
    );
    let out = get_port(forged.port);
    assert_eq!(
        out.status, 200,
        "a forged staple is ignored: {}",
        out.stderr
    );
    assert_blocked_as(&get_port(delegated.port), "revoked");
    let out = get_port(impostor.port);
    assert_eq!(
        out.status, 200,
        "an undelegated signer is ignored: {}",
        out.stderr
    );
    // The revoked leaf stays refused on a resumed session, which carries no staple.
    assert_blocked_as(&get_port(revoked.port), "revoked");

    let metrics = curl(&[&format!(
        "http://{}/metrics",
        sluice.admin.expect("the admin endpoint is on")
    )]);
    let metrics = String::from_utf8_lossy(&metrics.body);
    assert!(
        metrics.contains("sluice_handshake_failures_total{side=\"upstream\",kind=\"revoked\"} 3"),
        "{metrics}"
    );
}

// At most two steps: a leaf whose issuer and that issuer's issuer are both missing is
// completed (two fetches); one needing a third fetch stays unknown_issuer. Certificates
// made by openssl (`authorityInfoAccess = caIssuers;URI:…`), served by nginx.
#[test]
fn missing_intermediates_are_fetched_at_most_two_steps_deep() {
    let port = free_port();
    let pki_dir = tempfile::tempdir().unwrap();
    sh(
        pki_dir.path(),
        &format!(
            r#"
key() {{ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key 2>/dev/null; }}
key ca
openssl req -x509 -key ca.key -out ca.pem -subj "/CN=AIA test root" -days 30 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
# sign NAME ISSUER AIA-TARGET CA|LEAF
sign() {{
  key $1
  openssl req -new -key $1.key -subj "/CN=$1" -out $1.csr 2>/dev/null
  if [ "$4" = CA ]; then printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n' > $1.ext
  else printf 'subjectAltName=DNS:bump.test\n' > $1.ext; fi
  [ -z "$3" ] || printf 'authorityInfoAccess=caIssuers;URI:http://127.0.0.1:{port}/files/%s.der\n' $3 >> $1.ext
  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -set_serial 0x$(openssl rand -hex 8) \
    -days 20 -extfile $1.ext -out $1.pem 2>/dev/null
  openssl x509 -in $1.pem -outform DER -out $1.der
  cp $1.pem $1-chain.pem
}}
sign int1 ca "" CA
sign int2 int1 int1 CA
sign int3 int2 int2 CA
sign two int2 int2 LEAF
sign three int3 int3 LEAF
"#
        ),
    );
    let der = |name: &str| std::fs::read(pki_dir.path().join(format!("{name}.der"))).unwrap();
    let aia = Origin::start_on(
        &format!("127.0.0.1:{port}"),
        OriginOptions {
            files: vec![
                ("int1.der", "application/pkix-cert", der("int1")),
                ("int2.der", "application/pkix-cert", der("int2")),
                ("int3.der", "application/pkix-cert", der("int3")),
            ],
            ..Default::default()
        },
    );
    let two = Nginx::start(pki_dir.path(), "two", None);
    let three = Nginx::start(pki_dir.path(), "three", None);
    let pki = TestPki::new();
    let config = Sluice::config_text(&SluiceConfig {
        connect_ports: &[two.port, three.port],
        ..Default::default()
    })
    .replace(
        "upstream_roots = [\"upstream-root.pem\"]",
        "upstream_roots = [\"upstream-root.pem\", \"aia-root.pem\"]",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        pki_dir.path().join("ca.pem"),
        dir.path().join("aia-root.pem"),
    )
    .unwrap();
    let sluice = Sluice::start_in(&pki, dir, &config);
    let get_port = |port: u16| {
        fetch(
            &sluice.proxy_url(),
            "bump.test",
            port,
            "/",
            &sluice.ca_path(),
            &[],
        )
    };
    let out = get_port(two.port);
    assert_eq!(
        (out.status, out.body.as_slice()),
        (200, HELLO.as_bytes()),
        "{}",
        out.stderr
    );
    assert_blocked_as(&get_port(three.port), "unknown_issuer");
    let paths: Vec<String> = aia
        .requests()
        .into_iter()
        .map(|(_, path, _)| path)
        .collect();
    assert_eq!(
        paths,
        ["/files/int2.der", "/files/int1.der", "/files/int3.der"],
        "int2 and int1 are cached; the second server's third step (int1) is not taken"
    );
}

// tls.crl_files are read with the configuration: a CRL added by a reload (SIGHUP)
// applies to the connections after it.
#[test]
fn a_crl_added_by_a_reload_applies() {
    let pki = TestPki::new();
    let (revoked, _, crl) = pki.revoked_good_and_crl();
    let origin = tls_origin(revoked);
    let sluice = start(&pki, &origin, "", "");
    assert_eq!(get(&sluice, &origin).status, 200, "no CRL yet");

    std::fs::write(sluice.path("crl.pem"), &crl).unwrap();
    let config = std::fs::read_to_string(sluice.path("sluice.toml")).unwrap();
    let config = config.replacen("[tls]\n", "[tls]\ncrl_files = [\"crl.pem\"]\n", 1);
    std::fs::write(sluice.path("sluice.toml"), config).unwrap();
    sluice.signal("HUP");
    let reloaded = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        sluice.stderr().contains("configuration reloaded")
    });
    assert!(reloaded, "{}", sluice.stderr());
    assert_blocked_as(&get(&sluice, &origin), "revoked");
}
