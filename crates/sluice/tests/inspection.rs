//! Inspection (SPEC §3): HTTP rules, Anti-Phishing and Anti-Virus through the real
//! proxy, for plain HTTP and inside bumped HTTP/1.1 and HTTP/2, against the real engines
//! — clamd and c-icap with its virus_scan service — started by the test on loopback
//! (crates/inspect/tests/install-engines.sh installs them; .ci/run calls it).

mod support;

#[path = "../../inspect/tests/support/mod.rs"]
mod engines;

use engines::{eicar, CIcap, Clamd, ClamdConfig, EICAR_THREAT};
use sha2::{Digest, Sha256};
use support::certs::TestPki;
use support::origin::{big_body, HELLO};
use support::sluice::SluiceConfig;
use support::{curl, fetch, CurlOutput, Origin, OriginOptions, Sluice};

/// An origin (TLS when `tls`) serving the EICAR file, an executable and a clean file.
fn origin(pki: &TestPki, tls: bool, alpn: Vec<&'static str>) -> Origin {
    Origin::start(OriginOptions {
        tls: tls.then(|| pki.valid()),
        alpn,
        files: vec![
            ("eicar.com", "application/octet-stream", eicar()),
            (
                "setup.exe",
                "application/x-msdownload",
                b"MZ not really".to_vec(),
            ),
            ("clean.txt", "text/plain", b"nothing to see here".to_vec()),
        ],
        ..Default::default()
    })
}

fn start(pki: &TestPki, origin: &Origin, rest: &str) -> Sluice {
    Sluice::start(
        pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            rest,
            ..Default::default()
        },
    )
}

fn icap_config(icap: &CIcap, extra: &str) -> String {
    format!(
        "[anti_virus]\nengine = \"icap\"\nurl = \"icap://127.0.0.1:{}/virus_scan\"\n{extra}\n",
        icap.port
    )
}

fn clamd_tcp_config(clamd: &Clamd, extra: &str) -> String {
    format!(
        "[anti_virus]\nengine = \"clamd\"\nurl = \"tcp://127.0.0.1:{}\"\n{extra}\n",
        clamd.port
    )
}

fn plain_get(sluice: &Sluice, origin: &Origin, path: &str) -> CurlOutput {
    curl(&[
        "-x",
        &sluice.proxy_url(),
        &format!("http://127.0.0.1:{}{path}", origin.port()),
    ])
}

fn bumped_get(sluice: &Sluice, origin: &Origin, path: &str, extra: &[&str]) -> CurlOutput {
    fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        path,
        &sluice.ca_path(),
        extra,
    )
}

/// The client got the virus block page naming the threat, and the log says so.
fn assert_virus_blocked(out: &CurlOutput, sluice: &Sluice) {
    assert_eq!(out.status, 403, "{}\n{}", out.headers, out.stderr);
    assert!(
        out.headers
            .to_ascii_lowercase()
            .contains("x-sluice-block: virus"),
        "{}",
        out.headers
    );
    assert!(
        out.body_text().contains(EICAR_THREAT),
        "the page names the threat: {}",
        out.body_text()
    );
    let file_body = String::from_utf8(eicar()).unwrap();
    assert!(
        !out.body_text().contains(&file_body[..20]),
        "no byte of the file reached the client"
    );
    let record = sluice.wait_record("of the infected download", |r| r["verdict"] == "infected");
    assert_eq!(record["kind"], "http");
    assert_eq!(record["status"], 403);
    assert_eq!(record["threat"], EICAR_THREAT);
    assert_eq!(record["rule"], "default");
}

#[test]
fn eicar_is_blocked_over_plain_http_through_icap() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let origin = origin(&pki, false, vec![]);
    let sluice = start(&pki, &origin, &icap_config(&icap, ""));
    assert_virus_blocked(&plain_get(&sluice, &origin, "/files/eicar.com"), &sluice);
    let clean = plain_get(&sluice, &origin, "/files/clean.txt");
    assert_eq!(clean.status, 200);
    assert_eq!(clean.body_text(), "nothing to see here");
    let record = sluice.wait_record("of the clean file", |r| r["verdict"] == "allowed");
    assert_eq!(
        record["url"],
        format!("http://127.0.0.1:{}/files/clean.txt", origin.port())
    );
    // An empty body has nothing to scan: allowed, not "unscanned".
    assert_eq!(plain_get(&sluice, &origin, "/status/204").status, 204);
    let empty = sluice.wait_record("of the empty answer", |r| r["status"] == 204);
    assert_eq!(empty["verdict"], "allowed");
}

#[test]
fn eicar_is_blocked_inside_bumped_http11_through_clamd_over_tcp() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = origin(&pki, true, vec![]);
    let sluice = start(&pki, &origin, &clamd_tcp_config(&clamd, ""));
    let out = bumped_get(&sluice, &origin, "/files/eicar.com", &[]);
    assert!(out.headers.contains("HTTP/1.1 403"), "{}", out.headers);
    assert_virus_blocked(&out, &sluice);
}

#[test]
fn eicar_is_blocked_inside_bumped_http2_through_icap() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let origin = origin(&pki, true, vec!["h2", "http/1.1"]);
    let sluice = start(&pki, &origin, &icap_config(&icap, ""));
    let out = bumped_get(&sluice, &origin, "/files/eicar.com", &["--http2"]);
    assert!(out.headers.contains("HTTP/2 403"), "{}", out.headers);
    assert_virus_blocked(&out, &sluice);
}

#[test]
fn eicar_is_blocked_through_clamd_over_a_unix_socket() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = origin(&pki, false, vec![]);
    let config = format!(
        "[anti_virus]\nengine = \"clamd\"\nurl = \"unix:{}\"\n",
        clamd.socket.display()
    );
    let sluice = start(&pki, &origin, &config);
    assert_virus_blocked(&plain_get(&sluice, &origin, "/files/eicar.com"), &sluice);
}

#[test]
fn a_clean_100_mib_body_arrives_byte_identical_after_its_scan() {
    let pki = TestPki::new();
    let clamd = Clamd::start_with(&ClamdConfig {
        stream_max_length: "200M".into(),
    });
    let origin = origin(&pki, true, vec![]);
    let sluice = start(
        &pki,
        &origin,
        &clamd_tcp_config(&clamd, "max_scan_size = \"200MiB\"\ntimeout = \"120s\""),
    );
    let size = 100 << 20;
    let out = bumped_get(
        &sluice,
        &origin,
        &format!("/big/{size}"),
        &["--max-time", "180"],
    );
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert_eq!(out.body.len(), size);
    assert_eq!(
        Sha256::digest(&out.body),
        Sha256::digest(big_body(size)),
        "byte-identical"
    );
    let record = sluice.wait_record("of the big file", |r| r["kind"] == "http");
    assert_eq!(record["verdict"], "allowed");
    assert_eq!(record["bytes_down"], size);
}

#[test]
fn an_eicar_upload_is_blocked_with_scan_uploads() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let icap = CIcap::start(&clamd);
    let origin = origin(&pki, true, vec![]);
    let sluice = start(&pki, &origin, &icap_config(&icap, "scan_uploads = true"));
    let upload = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(upload.path(), eicar()).unwrap();
    let data = format!("@{}", upload.path().display());
    let out = bumped_get(&sluice, &origin, "/echo", &["--data-binary", &data]);
    assert_virus_blocked(&out, &sluice);
    assert!(
        origin.requests().is_empty(),
        "the upload never reached the server"
    );
    let clean = bumped_get(
        &sluice,
        &origin,
        "/echo",
        &["--data-binary", "a harmless form"],
    );
    assert_eq!(clean.body_text(), "a harmless form");
}

#[test]
fn a_stopped_engine_blocks_with_503_by_default_and_passes_with_on_error_allow() {
    let pki = TestPki::new();
    let mut clamd = Clamd::start();
    let origin = origin(&pki, false, vec![]);
    let strict = start(&pki, &origin, &clamd_tcp_config(&clamd, ""));
    let lenient = start(
        &pki,
        &origin,
        &clamd_tcp_config(&clamd, "on_error = \"allow\""),
    );
    clamd.stop();
    let out = plain_get(&strict, &origin, "/files/clean.txt");
    assert_eq!(out.status, 503);
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("x-sluice-block: scan_failed"));
    let record = strict.wait_record("of the failed scan", |r| r["kind"] == "http");
    assert_eq!(record["verdict"], "scan_failed");
    let out = plain_get(&lenient, &origin, "/files/clean.txt");
    assert_eq!(out.status, 200);
    assert_eq!(out.body_text(), "nothing to see here");
    let record = lenient.wait_record("of the unscanned file", |r| r["kind"] == "http");
    assert_eq!(record["verdict"], "unscanned");
    assert!(
        record["error"].as_str().unwrap().contains("scan_failed"),
        "{record}"
    );
}

#[test]
fn a_body_over_max_scan_size_passes_unscanned_or_is_blocked() {
    let pki = TestPki::new();
    let clamd = Clamd::start();
    let origin = origin(&pki, false, vec![]);
    let allow = start(
        &pki,
        &origin,
        &clamd_tcp_config(&clamd, "max_scan_size = \"1KiB\""),
    );
    let block = start(
        &pki,
        &origin,
        &clamd_tcp_config(&clamd, "max_scan_size = \"1KiB\"\non_oversize = \"block\""),
    );
    let out = plain_get(&allow, &origin, "/big/300000");
    assert_eq!(out.status, 200);
    assert!(out.body == big_body(300_000), "passed whole, unscanned");
    assert_eq!(
        allow.wait_record("oversize", |r| r["kind"] == "http")["verdict"],
        "unscanned"
    );
    let out = plain_get(&block, &origin, "/big/300000");
    assert_eq!(out.status, 403);
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("x-sluice-block: oversize"));
    assert_eq!(
        block.wait_record("oversize", |r| r["kind"] == "http")["verdict"],
        "blocked"
    );
}

#[test]
fn http_rules_block_by_url_and_by_response_content_type() {
    let pki = TestPki::new();
    let origin = origin(&pki, true, vec![]);
    let rules = "[[http_rules]]\nname = \"no downloads\"\ncontent_types = [\"application/x-msdownload\"]\naction = \"block\"\n\n\
                 [[http_rules]]\nname = \"no admin\"\nurl_regex = [\"/admin\"]\nmethods = [\"GET\"]\naction = \"block\"\n";
    let sluice = start(&pki, &origin, rules);
    let out = bumped_get(&sluice, &origin, "/admin/panel", &[]);
    assert_eq!(out.status, 403);
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("x-sluice-block: rule"));
    assert!(out.body_text().contains("no admin"));
    assert!(origin.requests().is_empty(), "blocked before it was sent");
    let out = bumped_get(&sluice, &origin, "/files/setup.exe", &[]);
    assert_eq!(out.status, 403);
    assert!(out.body_text().contains("no downloads"));
    let out = bumped_get(&sluice, &origin, "/hello", &[]);
    assert_eq!(out.body_text(), HELLO);
    let blocked = sluice.wait_records("blocked by rules", 2, |r| r["verdict"] == "blocked");
    let rules: Vec<&str> = blocked
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"no admin") && rules.contains(&"no downloads"),
        "{rules:?}"
    );
}

#[test]
fn a_phishing_list_blocks_domains_and_url_prefixes() {
    let pki = TestPki::new();
    let origin = origin(&pki, false, vec![]);
    let lists = tempfile::tempdir().unwrap();
    let list = lists.path().join("phish.txt");
    let port = origin.port();
    std::fs::write(
        &list,
        format!("# test list\nhttp://127.0.0.1:{port}/files/ # a prefix\nevil.example\n"),
    )
    .unwrap();
    let config = format!("[anti_phishing]\nlists = [{:?}]\n", list.to_str().unwrap());
    let sluice = start(&pki, &origin, &config);
    let out = plain_get(&sluice, &origin, "/files/clean.txt");
    assert_eq!(out.status, 403);
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("x-sluice-block: phishing"));
    assert_eq!(
        sluice.wait_record("phishing", |r| r["kind"] == "http")["verdict"],
        "phishing"
    );
    assert_eq!(plain_get(&sluice, &origin, "/hello").body_text(), HELLO);
}

#[test]
fn a_custom_block_page_template_is_used() {
    let pki = TestPki::new();
    let origin = origin(&pki, false, vec![]);
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("page.html");
    std::fs::write(
        &template,
        "<h1>Stopped: {reason}</h1><p>{detail}</p><p>{url}</p><p>{rule}</p><p>id {request_id}</p>",
    )
    .unwrap();
    let config = format!(
        "[block_page]\ntemplate = {:?}\n\n[[http_rules]]\nname = \"nothing here\"\nurl_regex = [\"clean\"]\naction = \"block\"\n",
        template.to_str().unwrap()
    );
    let sluice = start(&pki, &origin, &config);
    let out = plain_get(&sluice, &origin, "/files/clean.txt");
    assert_eq!(out.status, 403);
    let page = out.body_text();
    assert!(page.starts_with("<h1>Stopped: rule</h1>"), "{page}");
    assert!(page.contains("<p>nothing here</p>"));
    let record = sluice.wait_record("blocked", |r| r["kind"] == "http");
    assert!(page.contains(&format!("id {}", record["request_id"].as_str().unwrap())));
    assert!(out
        .headers
        .to_ascii_lowercase()
        .contains("cache-control: no-store"));
}
