//! The web's long tail, measured (issue 16): real-world server configurations reproduced
//! with nginx and certificates made by openssl, each fetched with curl directly and
//! through sluice's bump: the status and the body must be the same both ways. Headless
//! Chromium (trusting the corpus roots directly, sluice's CA through sluice) loads each
//! configuration's first URL too: its DOM must be the same both ways, and the status sluice
//! logged must be the one nginx logged for the direct load. Chromium loads one URL per
//! configuration, so the several-request cases (HTTP/2 with one stream, Connection: close
//! mid keep-alive, 204 then a request) and the trailers, which a page never shows, stay
//! curl's to check. `scripts/test` installs `chromium` and `libnss3-tools`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use support::sluice::SluiceConfig;
use support::{Sluice, TestPki};

/// Certificates for the corpus, made with openssl in `dir`; every root is `*-root.pem`,
/// all collected in `roots.pem` (trusted by curl directly and by sluice upstream).
const PKI: &str = r#"
set -e
ext() { printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > ca.ext
        printf 'subjectAltName=DNS:bump.test,DNS:localhost\nextendedKeyUsage=serverAuth\n' > leaf.ext; }
ext
key() { case $2 in
  rsa2048) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $1.key ;;
  rsa4096) openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out $1.key ;;
  p384) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out $1.key ;;
  *) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key ;;
esac 2>/dev/null; }
root() { key $1 $2; openssl req -x509 -key $1.key -out $1.pem -subj "/CN=$3" -days 30 \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; }
# sign NAME KEYTYPE SUBJECT ISSUER EXTFILE [KEYFILE]
sign() { [ -n "$6" ] || key $1 $2
  openssl req -new -key ${6:-$1.key} -subj "/CN=$3" -out $1.csr 2>/dev/null
  openssl x509 -req -in $1.csr -CA $4.pem -CAkey $4.key -set_serial 0x$(openssl rand -hex 8) \
    -days 20 -extfile $5 -out $1.pem 2>/dev/null; }
root p256-root p256 "corpus P-256 root"
root rsa-root rsa2048 "corpus RSA root"
root p384-root p384 "corpus P-384 root"
root old-root p256 "corpus old root"
sign rsa2048 rsa2048 bump.test rsa-root leaf.ext
sign rsa4096 rsa4096 bump.test rsa-root leaf.ext
sign p384-int p384 "corpus P-384 intermediate" p384-root ca.ext
sign p384 p384 bump.test p384-int leaf.ext
sign int1 p256 "corpus intermediate 1" p256-root ca.ext
sign int2 p256 "corpus intermediate 2" int1 ca.ext
sign deep p256 bump.test int2 leaf.ext
sign p256 p256 bump.test p256-root leaf.ext
sign viaint p256 bump.test int1 leaf.ext
# The trusted root again, cross-signed by an older root nobody trusts.
sign cross p256 "corpus P-256 root" old-root ca.ext p256-root.key
printf 'subjectAltName=DNS:default.invalid\n' > other.ext
sign other p256 default.invalid p256-root other.ext
cat rsa2048.pem > rsa2048.chain; cat rsa4096.pem > rsa4096.chain
cat p384.pem p384-int.pem > p384.chain
cat deep.pem int1.pem int2.pem > deep.chain
cat viaint.pem int1.pem cross.pem > viaint.chain
cat p256.pem > p256.chain; cat other.pem > other.chain
cat p256-root.pem rsa-root.pem p384-root.pem > roots.pem
"#;

/// One server configuration of the corpus: its name and the curl arguments (paths
/// become URLs on `https://bump.test:PORT`); [`cases`] pairs it with nginx `server`
/// blocks (`PORT` and `DIR` filled in when started).
struct Case {
    name: &'static str,
    curl: &'static [&'static str],
}

const HELLO_SERVER: &str = "location / { return 200 'hello from nginx\\n'; }";

fn server(cert: &str, extra: &str) -> String {
    format!(
        "server {{ listen 127.0.0.1:PORT ssl; server_name bump.test; \
         ssl_certificate DIR/{cert}.chain; ssl_certificate_key DIR/{cert}.key; {extra} }}"
    )
}

fn cases() -> Vec<(Case, String)> {
    let tls12 = |cipher: &str| {
        server(
            "p256",
            &format!("ssl_protocols TLSv1.2; ssl_ciphers {cipher}; {HELLO_SERVER}"),
        )
    };
    let plain = |name, cert| (Case { name, curl: &["/"] }, server(cert, HELLO_SERVER));
    vec![
        plain("RSA-only server (RSA 2048)", "rsa2048"),
        plain("RSA 4096 key", "rsa4096"),
        plain("ECDSA P-384 chain", "p384"),
        plain("chain sent out of order", "deep"),
        plain("extra cross-signed root in the chain", "viaint"),
        (
            Case { name: "certificate picked by SNI", curl: &["/"] },
            format!(
                "server {{ listen 127.0.0.1:PORT ssl default_server; server_name default.invalid; \
                 ssl_certificate DIR/other.chain; ssl_certificate_key DIR/other.key; {HELLO_SERVER} }} {}",
                server("p256", HELLO_SERVER)
            ),
        ),
        (Case { name: "TLS 1.2 only, ECDHE-ECDSA-AES128-GCM-SHA256", curl: &["/"] }, tls12("ECDHE-ECDSA-AES128-GCM-SHA256")),
        (Case { name: "TLS 1.2 only, ECDHE-ECDSA-AES256-GCM-SHA384", curl: &["/"] }, tls12("ECDHE-ECDSA-AES256-GCM-SHA384")),
        (Case { name: "TLS 1.2 only, ECDHE-ECDSA-CHACHA20-POLY1305", curl: &["/"] }, tls12("ECDHE-ECDSA-CHACHA20-POLY1305")),
        (
            Case { name: "HTTP/2, SETTINGS_MAX_CONCURRENT_STREAMS 1", curl: &["--http2", "-Z", "/a", "/b", "/c", "/d"] },
            server("p256", &format!("http2_max_concurrent_streams 1; {HELLO_SERVER}"))
                .replace("ssl;", "ssl http2;"),
        ),
        (
            Case { name: "Connection: close mid keep-alive", curl: &["/a", "/b", "/c"] },
            server("p256", &format!("keepalive_requests 2; {HELLO_SERVER}")),
        ),
        (
            Case { name: "chunked response with trailers", curl: &["--compressed", "/t"] },
            server(
                "p256",
                "gzip on; gzip_min_length 0; gzip_types text/plain; \
                 location / { default_type text/plain; add_trailer X-Checksum abc always; \
                 return 200 'chunked because gzipped\\n'; }",
            ),
        ),
        (
            Case { name: "204 on a keep-alive connection", curl: &["/empty", "/after"] },
            server(
                "p256",
                "location /empty { return 204; } location / { return 200 'after the 204\\n'; }",
            ),
        ),
    ]
}

struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(pki: &Path, port: u16, servers: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let servers = servers
            .replace("PORT", &port.to_string())
            .replace("DIR", &pki.display().to_string());
        let conf = format!(
            "daemon off;\nmaster_process off;\npid nginx.pid;\nerror_log stderr;\nevents {{}}\n\
             http {{\n log_format uri_status '$request_uri $status';\n \
             access_log access.log uri_status;\n {servers}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = Command::new("nginx")
            .args([
                "-p",
                &dir.path().display().to_string(),
                "-c",
                "nginx.conf",
                "-e",
                "stderr",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .expect("nginx starts (apt-get install nginx)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx { child, dir };
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
        panic!("nginx did not listen on {port}:\n{servers}\n{stderr}");
    }

    /// The status nginx logged for `uri` (path and query), if it served it.
    fn status_of(&self, uri: &str) -> Option<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines().find_map(|line| {
            line.strip_prefix(uri)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What curl got for the case: each URL's status, and each body.
fn run_curl(case: &Case, port: u16, via: Option<(&Sluice, &Path)>, roots: &Path) -> String {
    let bodies = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![
        "-s".into(),
        "--max-time".into(),
        "20".into(),
        "-w".into(),
        "%{url_effective} %{http_code}\n".into(),
    ];
    match via {
        Some((sluice, ca)) => {
            args.extend(["--proxy".into(), sluice.proxy_url(), "--cacert".into()]);
            args.push(ca.display().to_string());
        }
        None => {
            args.extend(["--resolve".into(), format!("bump.test:{port}:127.0.0.1")]);
            args.extend(["--cacert".into(), roots.display().to_string()]);
        }
    }
    let mut files = Vec::new();
    for arg in case.curl {
        if arg.starts_with('/') {
            let file = bodies.path().join(files.len().to_string());
            args.extend(["-o".into(), file.display().to_string()]);
            args.push(format!("https://bump.test:{port}{arg}"));
            files.push(file);
        } else {
            args.push(arg.to_string());
        }
    }
    let out = Command::new("curl")
        .args(&args)
        .output()
        .expect("curl runs");
    // Parallel transfers (-Z) finish in any order.
    let mut statuses: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    statuses.sort();
    let bodies: Vec<String> = files
        .iter()
        .map(|file| String::from_utf8_lossy(&std::fs::read(file).unwrap_or_default()).into_owned())
        .collect();
    format!("{statuses:?} {bodies:?}")
}

/// `found` once it finds something, polled for at most 10 s (a log line may be written
/// just after the client has its answer).
fn poll(found: impl Fn() -> Option<String>) -> Option<String> {
    for _ in 0..100 {
        if let Some(it) = found() {
            return Some(it);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

/// A HOME whose NSS database trusts the certificates in `roots` (PEM files), for Chromium.
fn chromium_home(roots: &[PathBuf]) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    let mut commands = vec![vec![
        "-d".to_string(),
        db.clone(),
        "-N".into(),
        "--empty-password".into(),
    ]];
    for (i, root) in roots.iter().enumerate() {
        commands.push(
            [
                "-d",
                &db,
                "-A",
                "-t",
                "C,,",
                "-n",
                &format!("root{i}"),
                "-i",
            ]
            .iter()
            .map(|a| a.to_string())
            .chain([root.display().to_string()])
            .collect(),
        );
    }
    for args in commands {
        let out = Command::new("certutil")
            .args(&args)
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .output()
            .expect("certutil runs (apt-get install libnss3-tools)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    home
}

/// The DOM headless Chromium shows for `url`, loaded directly (`bump.test` mapped to
/// loopback) or through `proxy`. A fresh profile every time: nothing cached.
fn run_chromium(home: &Path, url: &str, proxy: Option<&Sluice>) -> String {
    let profile = tempfile::tempdir_in(home).unwrap();
    let mut args = vec![
        "60".to_string(),
        "chromium".into(),
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        format!("--user-data-dir={}", profile.path().display()),
    ];
    match proxy {
        Some(sluice) => args.push(format!("--proxy-server={}", sluice.proxy_url())),
        None => args.push("--host-resolver-rules=MAP bump.test 127.0.0.1".into()),
    }
    args.extend(["--dump-dom".into(), url.to_string()]);
    let out = Command::new("timeout")
        .args(&args)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs (apt-get install chromium)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_long_tail_is_served_through_sluice_as_directly() {
    let pki_dir = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .args(["-c", PKI])
        .current_dir(pki_dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let roots = pki_dir.path().join("roots.pem");
    let cases = cases();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let pki = TestPki::new();
    let config = Sluice::config_text(&SluiceConfig {
        connect_ports: &[port],
        ..Default::default()
    })
    .replace(
        "upstream_roots = [\"upstream-root.pem\"]",
        "upstream_roots = [\"upstream-root.pem\", \"corpus-roots.pem\"]",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&roots, dir.path().join("corpus-roots.pem")).unwrap();
    let sluice = Sluice::start_in(&pki, dir, &config);
    let ca = sluice.ca_path();
    let direct_home = chromium_home(
        &["p256-root.pem", "rsa-root.pem", "p384-root.pem"].map(|root| pki_dir.path().join(root)),
    );
    let proxied_home = chromium_home(std::slice::from_ref(&ca));

    let mut same = Vec::new();
    let mut different = Vec::new();
    let mut chromium_same = 0;
    for (index, (case, servers)) in cases.iter().enumerate() {
        let nginx = Nginx::start(pki_dir.path(), port, servers);
        let direct = run_curl(case, port, None, &roots);
        let proxied = run_curl(case, port, Some((&sluice, &ca)), &roots);
        let path = case.curl.iter().find(|arg| arg.starts_with('/')).unwrap();
        let chromium = |how: &str, via| {
            // A query naming the load tells its lines in the logs apart.
            let uri = format!("{path}?chromium={index}-{how}");
            let url = format!("https://bump.test:{port}{uri}");
            let dom = run_chromium(
                if via {
                    proxied_home.path()
                } else {
                    direct_home.path()
                },
                &url,
                via.then_some(&sluice),
            );
            (uri, url, dom)
        };
        let (direct_uri, _, direct_dom) = chromium("direct", false);
        let (_, proxied_url, proxied_dom) = chromium("proxied", true);
        let direct_status = poll(|| nginx.status_of(&direct_uri));
        drop(nginx);
        let proxied_status = poll(|| {
            sluice
                .records()
                .into_iter()
                .find(|r| r["kind"] == "http" && r["url"] == proxied_url.as_str())
                .map(|r| r["status"].to_string())
        });
        let chromium_direct = format!("{direct_status:?} {direct_dom:?}");
        let chromium_proxied = format!("{proxied_status:?} {proxied_dom:?}");
        assert!(
            // A 204 commits no page: Chromium dumps nothing, and only the status compares.
            direct_status.as_deref() == Some("204") || direct_dom.contains("<body"),
            "{}: Chromium fails directly: {chromium_direct}",
            case.name
        );
        if chromium_direct == chromium_proxied {
            chromium_same += 1;
        } else {
            different.push(format!(
                "{} (Chromium):\n  direct:  {chromium_direct}\n  proxied: {chromium_proxied}",
                case.name
            ));
        }
        assert!(
            direct.contains(" 200\"") || direct.contains(" 204\""),
            "{}: direct fails: {direct}",
            case.name
        );
        if direct == proxied {
            same.push(case.name);
        } else {
            different.push(format!(
                "{}:\n  direct:  {direct:?}\n  proxied: {proxied:?}",
                case.name
            ));
        }
    }
    eprintln!(
        "long tail: {} of {} configurations served through sluice exactly as directly",
        same.len(),
        cases.len()
    );
    eprintln!(
        "long tail: {chromium_same} of {} configurations loaded by Chromium through sluice exactly as directly",
        cases.len()
    );
    assert!(
        different.is_empty(),
        "differences:\n{}",
        different.join("\n")
    );
}
