//! Password checks as a weapon (issue 13, finding 8; SPEC §9: "Password checks cannot be
//! used to exhaust the process"), through the real proxy with raw clients bound to
//! distinct loopback addresses.

mod support;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use socket2::{Domain, Socket, Type};
use support::certs::TestPki;
use support::raw::Raw;
use support::sluice::SluiceConfig;
use support::{Origin, OriginOptions, Sluice};

/// Parallel wrong guesses sent at once.
const GUESSES: usize = 200;
/// The addresses they come from (127.0.0.10 …).
const ATTACKERS: usize = 4;
/// A generous bound on sluice's peak memory: the process itself and a hash per core
/// take a few tens of MiB; one argon2 hash per guess in flight takes gigabytes.
const PEAK_BOUND_KIB: u64 = 400 << 10;

/// sluice with `[auth]` and alice, added with `sluice user add` (argon2id, 19 MiB per
/// verification).
fn start(pki: &TestPki, port: u16) -> Sluice {
    let dir = tempfile::tempdir().unwrap();
    pki.write_root(&dir.path().join("upstream-root.pem"));
    let text = Sluice::config_text(&SluiceConfig {
        connect_ports: &[port],
        rest: "[auth]\nusers_file = \"users\"\n",
        ..Default::default()
    });
    std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
    let mut add = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["user", "add", "-c", "sluice.toml", "alice"])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"wonderland\n")
        .unwrap();
    assert!(add.wait_with_output().unwrap().status.success());
    let users = std::fs::read_to_string(dir.path().join("users")).unwrap();
    assert!(users.contains("alice:$argon2id$"), "{users}");
    Sluice::spawn(dir, &["run", "-c", "sluice.toml"])
}

/// A connection to `to` from the loopback address `from`.
fn connect_from(from: IpAddr, to: SocketAddr) -> Raw {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(from, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let stream: TcpStream = socket.into();
    // Bounded, and long enough for every guess to be hashed in turn on a slow machine.
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    Raw { stream }
}

fn connect_request(target: &str, credentials: &str) -> Vec<u8> {
    let token = base64::engine::general_purpose::STANDARD.encode(credentials);
    format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {token}\r\n\r\n"
    )
    .into_bytes()
}

/// Finding 8: 400 parallel wrong passwords ran 400 argon2 hashes at once (19 MiB each)
/// on the blocking pool and grew the process by gigabytes. Now at most one hash per core
/// runs, an address's extra guesses are refused without one, and a right password from
/// another address is accepted while the flood is in progress.
#[test]
fn a_flood_of_wrong_passwords_is_refused_within_bounded_memory() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = start(&pki, origin.port());
    let target = format!("127.0.0.1:{}", origin.port());
    let guess = connect_request(&target, "alice:guess");
    let mut flood: Vec<Raw> = (0..GUESSES)
        .map(|i| {
            let from = IpAddr::from([127, 0, 0, 10 + (i % ATTACKERS) as u8]);
            let mut raw = connect_from(from, sluice.addr);
            raw.send(&guess);
            raw
        })
        .collect();
    // Meanwhile, alice from her own address.
    let mut alice = connect_from(IpAddr::from([127, 0, 0, 9]), sluice.addr);
    alice.send(&connect_request(&target, "alice:wonderland"));
    let head = alice.read_head();
    assert!(head.starts_with("HTTP/1.1 200 "), "alice got: {head}");
    for (i, raw) in flood.iter_mut().enumerate() {
        let head = raw.read_head();
        assert!(head.starts_with("HTTP/1.1 407 "), "guess {i} got: {head:?}");
    }
    let peak = sluice.peak_rss_kib();
    assert!(
        peak < PEAK_BOUND_KIB,
        "peak resident memory {peak} KiB during {GUESSES} parallel guesses"
    );
}
