//! QUIC fallback (SPEC §11): `h3` and `h3-*` entries are removed from `Alt-Svc` in the
//! responses sluice relays, plain and bumped, HTTP/1.1 and HTTP/2
//! (`tls.strip_alt_svc_h3`, default on), so a browser is not told to move to HTTP/3 over
//! UDP, where sluice sees nothing. The origin's `/alt-svc` answers with the fields of
//! `support::origin::ALT_SVC`.

mod support;

use support::certs::TestPki;
use support::origin::ALT_SVC;
use support::sluice::SluiceConfig;
use support::{curl, fetch, CurlOutput, Origin, OriginOptions, Sluice};

/// The `Alt-Svc` values of the last response in curl's header dump, in order.
fn alt_svc(out: &CurlOutput) -> Vec<String> {
    let last = out.headers.rsplit("HTTP/").next().unwrap_or_default();
    last.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("alt-svc")
                .then(|| value.trim().to_string())
        })
        .collect()
}

/// Only the HTTP/2 alternative of the second field survives; the HTTP/3-only field and
/// the unreadable one are gone.
const STRIPPED: [&str; 1] = ["h2=\"alt.bump.test:443\"; ma=60"];

fn start(pki: &TestPki, origin: &Origin, tls: &str) -> Sluice {
    Sluice::start(
        pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            tls,
            ..Default::default()
        },
    )
}

#[test]
fn bumped_responses_lose_their_http3_alternatives_over_http1_and_http2() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        alpn: vec!["h2", "http/1.1"],
        ..Default::default()
    });
    let root = tempfile::NamedTempFile::new().unwrap();
    pki.write_root(root.path());
    let direct = curl(&[
        "--cacert",
        root.path().to_str().unwrap(),
        "--connect-to",
        &format!("bump.test:{0}:127.0.0.1:{0}", origin.port()),
        &format!("https://bump.test:{}/alt-svc", origin.port()),
    ]);
    assert_eq!(alt_svc(&direct), ALT_SVC, "the origin advertises HTTP/3");

    let sluice = start(&pki, &origin, "");
    for (version, seen) in [("--http1.1", "HTTP/1.1"), ("--http2", "HTTP/2")] {
        let out = fetch(
            &sluice.proxy_url(),
            "bump.test",
            origin.port(),
            "/alt-svc",
            &sluice.ca_path(),
            &[version],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.headers.contains(seen), "{}", out.headers);
        assert_eq!(alt_svc(&out), STRIPPED, "{version}");
    }
    let record = sluice.wait_record("a bumped request", |r| r["kind"] == "http");
    assert_eq!(record["status"], 200);
}

#[test]
fn plain_responses_lose_them_too_and_the_switch_turns_it_off() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: None,
        ..Default::default()
    });
    let url = format!("http://127.0.0.1:{}/alt-svc", origin.port());
    let on = start(&pki, &origin, "");
    let out = curl(&["-x", &on.proxy_url(), &url]);
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert_eq!(alt_svc(&out), STRIPPED);

    let off = start(&pki, &origin, "strip_alt_svc_h3 = false");
    let out = curl(&["-x", &off.proxy_url(), &url]);
    assert_eq!(out.status, 200, "{}", out.stderr);
    assert_eq!(alt_svc(&out), ALT_SVC, "relayed unchanged");
}
