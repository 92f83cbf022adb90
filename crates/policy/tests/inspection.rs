//! `[anti_phishing]`, `[anti_virus]` and `[block_page]` (SPEC §3, §5): defaults, every
//! value, and errors with their line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_policy::{
    AntiVirusSettings, AvEngine, ClamdAddress, Config, ConfigError, IcapService, OnOversize,
    OnScanError, PhishingMatch,
};

fn load_in(text: &str, dir: &Path) -> Config {
    Config::from_str(text, "sluice.toml", dir)
        .unwrap_or_else(|errors| panic!("unexpected errors: {errors:#?}"))
}

fn load(text: &str) -> Config {
    load_in(text, Path::new("conf"))
}

fn errors_in(text: &str, dir: &Path) -> Vec<String> {
    match Config::from_str(text, "sluice.toml", dir) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.iter().map(ConfigError::to_string).collect(),
    }
}

fn errors(text: &str) -> Vec<String> {
    errors_in(text, Path::new("conf"))
}

fn anti_virus(text: &str) -> AntiVirusSettings {
    load(&format!("[anti_virus]\n{text}")).settings.anti_virus
}

#[test]
fn the_defaults_scan_nothing_and_show_the_built_in_page() {
    let config = load("");
    assert_eq!(
        config.settings.anti_virus,
        AntiVirusSettings {
            engine: AvEngine::None,
            max_scan_size: 32 * 1024 * 1024,
            on_oversize: OnOversize::Allow,
            on_error: OnScanError::Block,
            scan_uploads: false,
            timeout: Duration::from_secs(30),
            max_spool_total: 1 << 30,
        }
    );
    assert_eq!(config.settings.block_page.template, None);
    assert!(config.policy.phishing().is_empty());
    assert_eq!(config.settings.anti_virus.engine.as_str(), "none");
}

#[test]
fn every_anti_virus_value_is_read() {
    let av = anti_virus(
        r#"engine = "icap"
url = "icap://127.0.0.1:1345/avscan"
max_scan_size = "1GB"
on_oversize = "block"
on_error = "allow"
scan_uploads = true
timeout = "1m 30s"
max_spool_total = "2GiB"
"#,
    );
    assert_eq!(
        av,
        AntiVirusSettings {
            engine: AvEngine::Icap(IcapService {
                host: "127.0.0.1".into(),
                port: 1345,
                service: "/avscan".into(),
            }),
            max_scan_size: 1_000_000_000,
            on_oversize: OnOversize::Block,
            on_error: OnScanError::Allow,
            scan_uploads: true,
            timeout: Duration::from_secs(90),
            max_spool_total: 2 << 30,
        }
    );
    assert_eq!(av.engine.as_str(), "icap");
    assert_eq!(OnOversize::Block.as_str(), "block");
    assert_eq!(OnScanError::Allow.as_str(), "allow");
}

#[test]
fn clamd_addresses_and_sizes() {
    let av =
        anti_virus("engine = \"clamd\"\nurl = \"tcp://[::1]:3311\"\nmax_scan_size = 1048576\n");
    assert_eq!(
        av.engine,
        AvEngine::Clamd(ClamdAddress::Tcp {
            host: "::1".into(),
            port: 3311
        })
    );
    assert_eq!(av.max_scan_size, 1 << 20);
    assert_eq!(av.engine.as_str(), "clamd");
    let av =
        anti_virus("engine = \"clamd\"\nurl = \"unix:clamd.sock\"\nmax_scan_size = \"512 KiB\"\n");
    assert_eq!(
        av.engine,
        AvEngine::Clamd(ClamdAddress::Unix(PathBuf::from("conf/clamd.sock")))
    );
    assert_eq!(av.max_scan_size, 512 * 1024);
    // engine = "none" ignores the address, so an engine can be switched off in place.
    assert_eq!(
        anti_virus("engine = \"none\"\nurl = \"whatever\"\n").engine,
        AvEngine::None
    );
}

#[test]
fn anti_virus_errors_have_their_line() {
    let e = errors(
        r#"[anti_virus]
engine = "icap"
url = "tcp://127.0.0.1:3310"
max_scan_size = "lots"
timeout = "0s"
"#,
    );
    assert_eq!(
        e,
        [
            "sluice.toml:3: anti_virus.url: invalid icap address `tcp://127.0.0.1:3310`: the scheme must be `icap://`; expected like \"icap://127.0.0.1:1344/avscan\"",
            "sluice.toml:4: anti_virus.max_scan_size: invalid size `lots`, expected a number of bytes or like \"32MiB\" or \"1GB\"",
            "sluice.toml:5: anti_virus.timeout: must be greater than zero",
        ]
    );
    assert_eq!(
        errors("[anti_virus]\n\nengine = \"clamd\"\n"),
        ["sluice.toml:3: anti_virus.url: required with engine = \"clamd\", like \"tcp://127.0.0.1:3310\" or \"unix:/run/clamav/clamd.ctl\""]
    );
    assert_eq!(
        errors("[anti_virus]\nengine = \"clamd\"\nurl = \"icap://h/av\"\n"),
        ["sluice.toml:3: anti_virus.url: invalid clamd address `icap://h/av`: the scheme must be `tcp://` or `unix:`; expected like \"tcp://127.0.0.1:3310\" or \"unix:/run/clamav/clamd.ctl\""]
    );
    assert_eq!(
        errors("[anti_virus]\nmax_scan_size = 0\n"),
        ["sluice.toml:2: anti_virus.max_scan_size: must be at least 1 byte, got 0"]
    );
    assert_eq!(
        errors("[anti_virus]\n\nmax_spool_total = \"none\"\n"),
        ["sluice.toml:3: anti_virus.max_spool_total: invalid size `none`, expected a number of bytes or like \"32MiB\" or \"1GB\""]
    );
    let e = errors("[anti_virus]\nengine = \"sophos\"\n");
    assert_eq!(
        e,
        ["sluice.toml:2: unknown variant `sophos`, expected one of `none`, `icap`, `clamd`"]
    );
    let e = errors("[anti_virus]\non_oversize = \"scan\"\n");
    assert_eq!(
        e,
        ["sluice.toml:2: unknown variant `scan`, expected `allow` or `block`"]
    );
}

#[test]
fn the_block_page_template_is_read_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("page.html"), "<p>{reason}</p>").unwrap();
    let config = load_in("[block_page]\ntemplate = \"page.html\"\n", dir.path());
    let template = config.settings.block_page.template.unwrap();
    assert_eq!(template.path, dir.path().join("page.html"));
    assert_eq!(template.text, "<p>{reason}</p>");
    assert_eq!(
        load_in("[block_page]\ntemplate = \"\"\n", dir.path())
            .settings
            .block_page
            .template,
        None
    );
    let e = errors_in("[block_page]\n\ntemplate = \"nope.html\"\n", dir.path());
    let missing = dir.path().join("nope.html");
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with(&format!(
            "sluice.toml:3: block_page.template: cannot read {}: ",
            missing.display()
        )),
        "{e:?}"
    );
}

#[test]
fn phishing_lists_load_relative_to_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("lists")).unwrap();
    std::fs::write(
        dir.path().join("lists/phish.txt"),
        "# feed\nevil.example\nhttps://phish.example/login # kit\n",
    )
    .unwrap();
    let config = load_in(
        "[anti_phishing]\nlists = [\"lists/phish.txt\"]\n",
        dir.path(),
    );
    let phishing = config.policy.phishing();
    assert_eq!(phishing.len(), 2);
    assert_eq!(
        phishing.check("http://www.evil.example/"),
        Some(PhishingMatch::Domain("evil.example".into()))
    );
    assert_eq!(
        phishing.check("https://phish.example/login?x"),
        Some(PhishingMatch::UrlPrefix(
            "https://phish.example/login".into()
        ))
    );
    assert_eq!(phishing.check("https://phish.example/"), None);
}

#[test]
fn phishing_list_errors_name_the_list_file_or_the_configuration_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.txt"), "ok.example\nnot a domain\n").unwrap();
    let e = errors_in(
        "[anti_phishing]\nlists = [\"bad.txt\",\n  \"missing.txt\", \"\"]\n",
        dir.path(),
    );
    let bad = dir.path().join("bad.txt").display().to_string();
    let missing = dir.path().join("missing.txt").display().to_string();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with(&format!(
            "sluice.toml:3: cannot read phishing list {missing}: "
        )),
        "{e:?}"
    );
    assert_eq!(e[1], "sluice.toml:3: anti_phishing.lists: empty path");
    assert_eq!(
        e[2],
        format!("{bad}:2: invalid domain `not a domain`: only letters, digits, `-` and `_` are allowed in a name")
    );
}
