//! Reload (SPEC §6, §8): `POST /reload` and SIGHUP swap the configuration for new
//! connections while running ones keep theirs; an invalid file is refused with its
//! errors and changes nothing.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use support::certs::TestPki;
use support::raw::Raw;
use support::sluice::SluiceConfig;
use support::{curl, Sluice};

/// A TCP server that echoes what it reads, for tunnels that stay open.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn tunnel_config(ports: &[u16]) -> SluiceConfig<'_> {
    SluiceConfig {
        connect_ports: ports,
        rest: "[[ssl_rules]]\nname = \"tunnel all\"\naction = \"tunnel\"\n",
        ..Default::default()
    }
}

fn echo(raw: &mut Raw, text: &str) -> String {
    raw.send(text.as_bytes());
    let mut buf = vec![0u8; text.len()];
    raw.stream.read_exact(&mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

fn post_reload(sluice: &Sluice) -> (u16, serde_json::Value) {
    let out = curl(&[
        "-X",
        "POST",
        &format!("http://{}/reload", sluice.admin.unwrap()),
    ]);
    (out.status, serde_json::from_slice(&out.body).unwrap())
}

#[test]
fn a_reload_keeps_running_tunnels_and_applies_to_new_connections() {
    let pki = TestPki::new();
    let port = echo_server();
    let sluice = Sluice::start(&pki, tunnel_config(&[port]));
    let mut running = Raw::connect(sluice.addr);
    assert!(running
        .connect_to(&format!("127.0.0.1:{port}"))
        .starts_with("HTTP/1.1 200"));
    // The ClientHello is not read for a tunnel decided at CONNECT: bytes flow at once.
    assert_eq!(echo(&mut running, "before"), "before");

    // The new configuration no longer allows the port.
    std::fs::write(
        sluice.path("sluice.toml"),
        Sluice::config_text(&tunnel_config(&[443])),
    )
    .unwrap();
    let (status, answer) = post_reload(&sluice);
    assert_eq!(status, 200);
    assert_eq!(answer, serde_json::json!({"ok": true}));
    let mut fresh = Raw::connect(sluice.addr);
    assert!(
        fresh
            .connect_to(&format!("127.0.0.1:{port}"))
            .starts_with("HTTP/1.1 403"),
        "new connections follow the new rules"
    );
    assert_eq!(
        echo(&mut running, "after the reload"),
        "after the reload",
        "the running tunnel is untouched"
    );
}

#[test]
fn an_invalid_configuration_is_refused_and_changes_nothing() {
    let pki = TestPki::new();
    let port = echo_server();
    let sluice = Sluice::start(&pki, tunnel_config(&[port]));
    let mut broken = Sluice::config_text(&tunnel_config(&[443]));
    broken.push_str(
        "\n[[ssl_rules]]\nname = \"bad\"\nclients = [\"10.0.0.0/99\"]\naction = \"tunnel\"\n",
    );
    std::fs::write(sluice.path("sluice.toml"), &broken).unwrap();
    let (status, answer) = post_reload(&sluice);
    assert_eq!(status, 422);
    assert_eq!(answer["ok"], false);
    let errors = answer["errors"].to_string();
    assert!(
        errors.contains("sluice.toml:") && errors.contains("10.0.0.0/99"),
        "{errors}"
    );
    let mut still = Raw::connect(sluice.addr);
    assert!(
        still
            .connect_to(&format!("127.0.0.1:{port}"))
            .starts_with("HTTP/1.1 200"),
        "the old rules still apply"
    );
}

#[test]
fn sighup_reloads_too() {
    let pki = TestPki::new();
    let port = echo_server();
    let sluice = Sluice::start(&pki, tunnel_config(&[443]));
    let mut before = Raw::connect(sluice.addr);
    assert!(before
        .connect_to(&format!("127.0.0.1:{port}"))
        .starts_with("HTTP/1.1 403"));
    std::fs::write(
        sluice.path("sluice.toml"),
        Sluice::config_text(&tunnel_config(&[port])),
    )
    .unwrap();
    sluice.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut attempt = Raw::connect(sluice.addr);
        if attempt
            .connect_to(&format!("127.0.0.1:{port}"))
            .starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        std::thread::sleep(Duration::from_millis(100));
    }
}
