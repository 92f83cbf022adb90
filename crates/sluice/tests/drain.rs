//! Stopping (SPEC §6): on SIGTERM sluice stops accepting, lets running connections
//! finish (up to 30 s), writes their records, and exits.

mod support;

use std::time::Duration;

use support::certs::TestPki;
use support::sluice::SluiceConfig;
use support::{curl, Origin, OriginOptions, Sluice};

#[test]
fn sigterm_lets_a_running_download_finish_and_refuses_new_connections() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions::default());
    let mut sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[443],
            ..Default::default()
        },
    );
    let proxy = sluice.proxy_url();
    let url = format!("http://127.0.0.1:{}/slow", origin.port());
    let download = std::thread::spawn(move || curl(&["-x", &proxy, &url]));
    // The download is under way (it takes two seconds) when SIGTERM arrives.
    std::thread::sleep(Duration::from_millis(500));
    sluice.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let refused = curl(&[
        "-x",
        &sluice.proxy_url(),
        &format!("http://127.0.0.1:{}/hello", origin.port()),
    ]);
    assert_eq!(refused.code, 7, "no longer accepting: {}", refused.stderr);
    let finished = download.join().unwrap();
    assert_eq!(finished.code, 0, "{}", finished.stderr);
    assert_eq!(
        finished.body,
        vec![b'x'; 1000],
        "the running download completed"
    );
    let status = sluice
        .terminate(Duration::from_secs(20))
        .expect("sluice exits after the drain");
    assert!(status.success(), "{status:?}");
    let records = sluice.records();
    let slow = records
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with("/slow")));
    assert_eq!(
        slow.expect("the download's record was written")["bytes_down"],
        1000
    );
}
