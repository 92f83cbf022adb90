//! The command line (SPEC §6): the first run on the embedded default, `check` with
//! FILE:LINE errors, `explain`, `ca init` and `ca export`.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::certs::TestPki;
use support::origin::HELLO;
use support::sluice::SluiceConfig;
use support::{fetch, Origin, OriginOptions, Sluice};

fn sluice(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_first_run_creates_the_ca_and_says_how_to_use_it() {
    // The embedded default listens on 127.0.0.1:3128; a config that differs only in
    // the port keeps this test independent of what else runs on the machine.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[proxy]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let sluice = Sluice::spawn(dir, &["run", "-c", "sluice.toml"]);
    let data = sluice.path("sluice-data");
    let key_mode = std::fs::metadata(data.join("ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    assert!(data.join("ca.pem").exists());
    let stderr = sluice.stderr();
    assert!(stderr.contains("ca.pem"), "{stderr}");
    assert!(stderr.contains("SHA-256 fingerprint"), "{stderr}");
    assert!(stderr.contains("curl --cacert"), "{stderr}");
    assert!(
        stderr.contains(&format!("-x http://{}", sluice.addr)),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"), "the key is never printed");
}

#[test]
fn run_without_a_config_uses_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("run")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr until sluice listens or says why it cannot (the embedded default's
    // ports may be taken on this machine); bounded by the read thread's end or 20 s.
    let (lines, seen) = std::sync::mpsc::channel();
    let reader = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stderr = String::new();
    while let Ok(line) = seen.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        stderr.push_str(&line);
        stderr.push('\n');
        if line.contains("listening on") || line.contains("cannot listen") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(dir.path().join("sluice-data/ca.pem").exists(), "{stderr}");
    assert!(
        dir.path().join("sluice-data/ca-key.pem").exists(),
        "{stderr}"
    );
    assert!(
        stderr.contains("127.0.0.1:3128") || stderr.contains("127.0.0.1:3129"),
        "{stderr}"
    );
}

#[test]
fn only_one_of_the_two_ca_files_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sluice-data")).unwrap();
    std::fs::write(dir.path().join("sluice-data/ca.pem"), "x").unwrap();
    let out = sluice(&["run"], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ca-key.pem"), "{stderr}");
}

#[test]
fn check_accepts_a_good_file_and_lists_every_error_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("good.toml"),
        "[tls]\ndefault_action = \"tunnel\"\n",
    )
    .unwrap();
    let out = sluice(&["check", "-c", "good.toml"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = "[tls]\ndefault_action = \"bump\"\n\n[[ssl_rules]]\nname = \"a\"\nclients = [\"10.0.0.0/33\"]\naction = \"tunnel\"\n\n[[ssl_rules]]\nname = \"b\"\ndomain_regex = [\"(unclosed\"]\naction = \"bump\"\n";
    std::fs::write(dir.path().join("bad.toml"), bad).unwrap();
    let out = sluice(&["check", "-c", "bad.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:6:"),
        "the bad CIDR on line 6: {stderr}"
    );
    assert!(
        stderr.contains("bad.toml:11:"),
        "the bad regex on line 11: {stderr}"
    );

    std::fs::write(
        dir.path().join("unknown.toml"),
        "[proxy]\nlisten = [\"127.0.0.1:3128\"]\nlisten_typo = 1\n",
    )
    .unwrap();
    let out = sluice(&["check", "-c", "unknown.toml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown.toml:3:"), "{stderr}");
    assert!(stderr.contains("listen_typo"), "{stderr}");
}

/// Issue 11: five different errors (unknown key line 3, unknown action line 7, bad CIDR,
/// bad regex, unknown category) are five `FILE:LINE: msg` lines in file order; `check`
/// exits 1 and `run` refuses the same file with the same lines.
#[test]
fn check_and_run_report_five_different_errors_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[proxy]\nlisten = [\"127.0.0.1:0\"]\nlisten_typo = 1\n\n[[ssl_rules]]\nname = \"a\"\naction = \"explode\"\nclients = [\"10.0.0.0/33\"]\n\n[[http_rules]]\nname = \"b\"\naction = \"block\"\nurl_regex = [\"(unclosed\"]\ncategories = [\"nosuch\"]\n";
    std::fs::write(dir.path().join("five.toml"), text).unwrap();
    let expect = [
        "five.toml:3: ",
        "five.toml:7: ",
        "five.toml:8: ",
        "five.toml:13: ",
        "five.toml:14: ",
    ];
    for command in ["check", "run"] {
        let out = sluice(&[command, "-c", "five.toml"], dir.path());
        assert_eq!(out.status.code(), Some(1), "{command}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("five.toml:"))
            .collect();
        assert_eq!(lines.len(), 5, "{command}: {stderr}");
        for (line, prefix) in lines.iter().zip(expect) {
            assert!(
                line.starts_with(prefix),
                "{command}: {line} is not {prefix}: {stderr}"
            );
        }
        assert!(lines[0].contains("listen_typo"), "{stderr}");
        assert!(lines[1].contains("explode"), "{stderr}");
        assert!(lines[4].contains("nosuch"), "{stderr}");
    }
}

#[test]
fn explain_names_the_deciding_rule_at_each_stage() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[ssl_rules]]\nname = \"banking\"\ndomains = [\".bank.example\"]\naction = \"tunnel-sni\"\n";
    std::fs::write(dir.path().join("s.toml"), config).unwrap();
    let out = sluice(
        &["explain", "-c", "s.toml", "--host", "www.bank.example"],
        dir.path(),
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("banking"), "{text}");
    assert!(text.contains("tunnel-sni"), "{text}");
    let out = sluice(
        &[
            "explain",
            "-c",
            "s.toml",
            "--host",
            "203.0.113.9",
            "--sni",
            "news.example",
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bump"), "{text}");
    assert!(text.contains("default"), "{text}");
}

#[test]
fn ca_init_writes_a_0600_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = sluice(
        &[
            "ca",
            "init",
            "--dir",
            "myca",
            "--name",
            "Example Corp CA",
            "--key",
            "rsa-2048",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(dir.path().join("myca/ca-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = sluice(&["ca", "init", "--dir", "myca"], dir.path());
    assert!(!out.status.success(), "refuses to overwrite");
    let pem = std::fs::read_to_string(dir.path().join("myca/ca.pem")).unwrap();
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-text"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(pem.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Example Corp CA"), "{text}");
    assert!(text.contains("rsaEncryption"), "{text}");
    assert!(text.contains("CA:TRUE"), "{text}");
}

#[test]
fn ca_export_prints_the_configured_certificate_as_pem_or_der() {
    let dir = tempfile::tempdir().unwrap();
    assert!(sluice(&["ca", "init", "--dir", "d"], dir.path())
        .status
        .success());
    std::fs::write(
        dir.path().join("s.toml"),
        "[tls]\nca_cert = \"d/ca.pem\"\nca_key = \"d/ca-key.pem\"\n",
    )
    .unwrap();
    let pem = sluice(&["ca", "export", "-c", "s.toml"], dir.path());
    assert!(pem.status.success());
    assert_eq!(
        pem.stdout,
        std::fs::read(dir.path().join("d/ca.pem")).unwrap()
    );
    let der = sluice(&["ca", "export", "-c", "s.toml", "--der"], dir.path());
    assert!(der.status.success());
    assert_eq!(der.stdout[0], 0x30, "DER starts with a SEQUENCE");
    assert!(!String::from_utf8_lossy(&pem.stdout).contains("PRIVATE"));
}

#[test]
fn the_ca_created_on_the_first_run_signs_bumped_connections() {
    let pki = TestPki::new();
    let origin = Origin::start(OriginOptions {
        tls: Some(pki.valid()),
        ..Default::default()
    });
    let sluice = Sluice::start(
        &pki,
        SluiceConfig {
            connect_ports: &[origin.port()],
            ..Default::default()
        },
    );
    let out = fetch(
        &sluice.proxy_url(),
        "bump.test",
        origin.port(),
        "/hello",
        &sluice.ca_path(),
        &[],
    );
    assert_eq!(out.body_text(), HELLO);
    assert!(sluice.stderr().contains("CA certificate created"));
}
