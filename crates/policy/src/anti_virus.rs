//! `[anti_virus]`: the engine and its address, sizes, error policies and the timeout.
//!
//! `url` is read according to `engine`: `icap://host[:port]/service` for `icap`,
//! `tcp://host[:port]` or `unix:/path` for `clamd`; with `engine = "none"` it is
//! ignored, so that an engine can be switched off without deleting its address.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::authority::configured_host_port;
use crate::compile::duration;
use crate::diagnostics::Diagnostics;
use crate::raw::RawAntiVirus;
use crate::settings::{AntiVirusSettings, AvEngine, ClamdAddress, IcapService};
use crate::settings::{OnOversize, OnScanError};
use crate::size::{parse_size, SizeValue};

// SPEC §5 defaults; those of booleans and enums are written where they are applied.
const DEFAULT_MAX_SCAN_SIZE: u64 = 32 << 20;
const DEFAULT_MAX_SPOOL_TOTAL: u64 = 1 << 30;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The ICAP port of RFC 3507 §4.2.
const DEFAULT_ICAP_PORT: u16 = 1344;
/// clamd's `TCPSocket` default.
const DEFAULT_CLAMD_PORT: u16 = 3310;

const ICAP_EXAMPLE: &str = "\"icap://127.0.0.1:1344/avscan\"";
const CLAMD_EXAMPLE: &str = "\"tcp://127.0.0.1:3310\" or \"unix:/run/clamav/clamd.ctl\"";

/// `anti_virus.engine` as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum EngineKind {
    None,
    Icap,
    Clamd,
}

/// Compile `[anti_virus]`; relative Unix socket paths are resolved against `base_dir`.
pub(crate) fn compile(
    raw: RawAntiVirus,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> AntiVirusSettings {
    let max_scan_size = size(
        raw.max_scan_size.as_ref(),
        DEFAULT_MAX_SCAN_SIZE,
        "anti_virus.max_scan_size",
        diag,
    );
    let max_spool_total = size(
        raw.max_spool_total.as_ref(),
        DEFAULT_MAX_SPOOL_TOTAL,
        "anti_virus.max_spool_total",
        diag,
    );
    AntiVirusSettings {
        engine: engine(raw.engine.as_ref(), raw.url.as_ref(), base_dir, diag),
        max_scan_size,
        on_oversize: raw.on_oversize.unwrap_or(OnOversize::Allow),
        on_error: raw.on_error.unwrap_or(OnScanError::Block),
        scan_uploads: raw.scan_uploads.unwrap_or(false),
        timeout: duration(raw.timeout, DEFAULT_TIMEOUT, "anti_virus.timeout", diag),
        max_spool_total,
    }
}

/// A size key, or its default when absent or invalid (the error goes to `diag`).
fn size(
    value: Option<&Spanned<SizeValue>>,
    default: u64,
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> u64 {
    let Some(value) = value else {
        return default;
    };
    parse_size(value.get_ref()).unwrap_or_else(|e| {
        diag.at(value.span(), format!("{key}: {e}"));
        default
    })
}

fn engine(
    kind: Option<&Spanned<EngineKind>>,
    url: Option<&Spanned<String>>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> AvEngine {
    let Some(kind) = kind else {
        return AvEngine::None;
    };
    let (name, example) = match kind.get_ref() {
        EngineKind::None => return AvEngine::None,
        EngineKind::Icap => ("icap", ICAP_EXAMPLE),
        EngineKind::Clamd => ("clamd", CLAMD_EXAMPLE),
    };
    let Some(url) = url.filter(|u| !u.get_ref().trim().is_empty()) else {
        diag.at(
            kind.span(),
            format!("anti_virus.url: required with engine = \"{name}\", like {example}"),
        );
        return AvEngine::None;
    };
    let text = url.get_ref().trim();
    let parsed = match kind.get_ref() {
        EngineKind::Icap => icap_service(text).map(AvEngine::Icap),
        _ => clamd_address(text, base_dir).map(AvEngine::Clamd),
    };
    parsed.unwrap_or_else(|why| {
        diag.at(
            url.span(),
            format!(
                "anti_virus.url: invalid {name} address `{text}`: {why}; expected like {example}"
            ),
        );
        AvEngine::None
    })
}

/// `icap://host[:port]/service[?query]`.
pub(crate) fn icap_service(text: &str) -> Result<IcapService, String> {
    let rest = strip_scheme(text, "icap://").ok_or("the scheme must be `icap://`")?;
    let (authority, service) = rest
        .find('/')
        .map_or((rest, ""), |slash| rest.split_at(slash));
    if service.len() <= 1 {
        return Err("the service name is missing".into());
    }
    if service.contains(['#', ' ']) {
        return Err("the service may not contain `#` or spaces".into());
    }
    let (host, port) = configured_host_port(authority, DEFAULT_ICAP_PORT)?;
    Ok(IcapService {
        host,
        port,
        service: service.to_owned(),
    })
}

/// `tcp://host[:port]` or `unix:/path` (a relative path is resolved against `base_dir`).
pub(crate) fn clamd_address(text: &str, base_dir: &Path) -> Result<ClamdAddress, String> {
    if let Some(rest) = strip_scheme(text, "tcp://") {
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = configured_host_port(authority, DEFAULT_CLAMD_PORT)?;
        return Ok(ClamdAddress::Tcp { host, port });
    }
    if let Some(path) = strip_scheme(text, "unix:") {
        if path.is_empty() {
            return Err("the socket path is missing".into());
        }
        return Ok(ClamdAddress::Unix(base_dir.join(path)));
    }
    Err("the scheme must be `tcp://` or `unix:`".into())
}

/// `text` without `scheme` (compared case-insensitively).
fn strip_scheme<'a>(text: &'a str, scheme: &str) -> Option<&'a str> {
    let head = text.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| &text[scheme.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn icap_urls() {
        let s = icap_service("icap://127.0.0.1:1345/avscan").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.service.as_str()),
            ("127.0.0.1", 1345, "/avscan")
        );
        assert_eq!(s.uri(), "icap://127.0.0.1:1345/avscan");
        let s = icap_service("ICAP://av.example/virus_scan?allow204=on").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.service.as_str()),
            ("av.example", 1344, "/virus_scan?allow204=on")
        );
        let s = icap_service("icap://[::1]:2000/av").unwrap();
        assert_eq!(s.host, "::1");
        assert_eq!(s.authority(), "[::1]:2000");
        assert_eq!(s.uri(), "icap://[::1]:2000/av");
    }

    #[test]
    fn bad_icap_urls() {
        for (bad, why) in [
            ("http://h/av", "the scheme must be `icap://`"),
            ("icap://h", "the service name is missing"),
            ("icap://h/", "the service name is missing"),
            ("icap://h:0/av", "invalid port `0`"),
            ("icap://h:x/av", "invalid port `x`"),
            ("icap://u@h/av", "user information is not supported"),
            ("icap://[::1/av", "unclosed `[`"),
            ("icap://[zz]/av", "invalid IPv6 address"),
            // An IPv6 address needs its brackets: its last colon is not taken for a port's.
            (
                "icap://::1:1344/av",
                "invalid host `::1`: only letters, digits, `-` and `_` are allowed in a name",
            ),
            (
                "icap://bad host/av",
                "invalid host `bad host`: only letters, digits, `-` and `_` are allowed in a name",
            ),
            ("icap://h/a v", "the service may not contain `#` or spaces"),
        ] {
            assert_eq!(icap_service(bad).unwrap_err(), why, "{bad}");
        }
    }

    #[test]
    fn clamd_addresses() {
        let base = Path::new("/etc/sluice");
        assert_eq!(
            clamd_address("tcp://127.0.0.1:3311", base).unwrap(),
            ClamdAddress::Tcp {
                host: "127.0.0.1".into(),
                port: 3311
            }
        );
        assert_eq!(
            clamd_address("tcp://clamd.example/", base).unwrap(),
            ClamdAddress::Tcp {
                host: "clamd.example".into(),
                port: 3310
            }
        );
        assert_eq!(
            clamd_address("unix:/run/clamav/clamd.ctl", base).unwrap(),
            ClamdAddress::Unix(PathBuf::from("/run/clamav/clamd.ctl"))
        );
        assert_eq!(
            clamd_address("unix:run/clamd.sock", base).unwrap(),
            ClamdAddress::Unix(PathBuf::from("/etc/sluice/run/clamd.sock"))
        );
        for bad in ["unix:", "icap://h/av", "tcp://", "tcp://h:99999", "/run/x"] {
            assert!(clamd_address(bad, base).is_err(), "{bad}");
        }
    }
}
