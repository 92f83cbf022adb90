//! The systemd service (dist/sluice.service): sluice speaks the `Type=notify` protocol on
//! `$NOTIFY_SOCKET` (READY=1 once listening, RELOADING=1 / READY=1 around a SIGHUP reload,
//! STOPPING=1 at the drain), and the unit passes `systemd-analyze verify` with a low
//! `systemd-analyze security` exposure.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::certs::TestPki;
use support::sluice::SluiceConfig;
use support::Sluice;

/// The next datagram on the notify socket (waits at most ten seconds).
fn next_notification(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification from sluice within ten seconds");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sluice_notifies_readiness_reloads_and_stopping_on_notify_socket() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    std::fs::write(
        dir.path().join("sluice.toml"),
        Sluice::config_text(&SluiceConfig::default()),
    )
    .unwrap();
    let manager = tempfile::tempdir().unwrap();
    let socket_path = manager.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    let mut sluice = Sluice::spawn_with_env(
        dir,
        &["run", "-c", "sluice.toml"],
        &[("NOTIFY_SOCKET", socket_path.as_os_str())],
    );
    let ready = next_notification(&socket);
    assert_eq!(ready.lines().collect::<Vec<_>>(), ["READY=1"], "{ready:?}");
    std::net::TcpStream::connect(sluice.addr).expect("ready means the listener accepts");

    sluice.signal("HUP");
    let reloading = next_notification(&socket);
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    let stamp = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("systemd wants the reload stamped with CLOCK_MONOTONIC");
    assert!(stamp.parse::<u64>().is_ok_and(|usec| usec > 0), "{stamp}");
    let reloaded = next_notification(&socket);
    assert_eq!(
        reloaded.lines().collect::<Vec<_>>(),
        ["READY=1"],
        "{reloaded:?}"
    );

    let status = sluice
        .terminate(Duration::from_secs(20))
        .expect("sluice exits");
    assert!(status.success(), "{status:?}");
    let stopping = next_notification(&socket);
    assert_eq!(
        stopping.lines().collect::<Vec<_>>(),
        ["STOPPING=1"],
        "{stopping:?}"
    );
}

/// `systemd-analyze verify` accepts the shipped unit (with ExecStart pointing at the
/// binary under test, which verify requires to exist) and `systemd-analyze security`
/// rates its exposure at most 2.0 ("OK"). Skipped, saying so, where systemd is absent.
#[test]
fn the_shipped_unit_verifies_and_is_hardened() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed; the unit is not verified");
        return;
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/sluice.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/sluice run"), "{unit}");
    let unit = unit.replace("/usr/bin/sluice", env!("CARGO_BIN_EXE_sluice"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.service");
    std::fs::write(&path, unit).unwrap();

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{complaints}");
    assert!(
        !complaints.contains("sluice.service"),
        "verify complains about the unit: {complaints}"
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sluice.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|level| level.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {report}"));
    assert!(exposure <= 2.0, "exposure {exposure}: {report}");
}
