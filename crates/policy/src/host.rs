//! Which host a request is for (SPEC §2.6, §3.1): the request-target's authority (an
//! absolute-form URI, or HTTP/2's `:authority`), else `Host`. Policy, log, phishing check
//! and the `Host` sent upstream all use this one authority, so a client cannot show the
//! rules one host and the server another.
//!
//! - Two `Host` headers, a `Host` naming another host or port than the target, or an
//!   authority that is not `host[:port]` (userinfo, spaces, an empty host) → 400.
//! - Inside a bump, a target naming another host than the TLS connection was opened for
//!   (the SNI, or the CONNECT host when there is none) → 421 unless
//!   `tls.on_host_mismatch = "ignore"` (domain fronting).
//!
//! Names compare ASCII case-insensitively without a trailing dot, IPv6 literals by
//! value (`[::1]` is `[0::1]`), and a missing port is the scheme's default.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use crate::authority::split_port;
use crate::settings::HostMismatch;

/// What the data path knows of one request.
#[derive(Clone, Copy, Debug)]
pub struct HostFacts<'a> {
    /// The authority in the request-target: absolute-form HTTP/1.1, or HTTP/2's
    /// `:authority`; `None` for an origin-form request.
    pub target: Option<&'a str>,
    /// Every `Host` header of the request, as sent.
    pub host_headers: &'a [&'a [u8]],
    /// The port a missing one means: 80 for plain HTTP, 443 inside a bump.
    pub default_port: u16,
    /// Inside a bump: the name the TLS connection was opened for (the SNI, or the
    /// CONNECT host when the client sent none); `None` for plain HTTP.
    pub tls_name: Option<&'a str>,
    /// `tls.on_host_mismatch`.
    pub on_mismatch: HostMismatch,
    /// Inside a bump, the connection's authority (`host[:port]`): what a request that
    /// names no host at all is for (HTTP/1.0 may send no `Host`). `None` for plain
    /// HTTP, where such a request is a 400.
    pub implied: Option<&'a str>,
}

/// A request's authority, normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    /// Lowercase, without a trailing dot; an IPv6 literal without brackets.
    pub host: String,
    pub port: u16,
    /// The port the scheme implies, left out when writing the authority.
    default_port: u16,
}

impl Authority {
    /// An IPv6 literal host.
    fn is_ipv6(&self) -> bool {
        self.host.contains(':')
    }
}

/// `host[:port]`, brackets around an IPv6 literal, no default port: what goes upstream
/// in `Host` / `:authority` and into the logged URL.
impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ipv6() {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if self.port != self.default_port {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// Why a request is answered 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// More than one `Host` header.
    DuplicateHost,
    /// `Host` names another host or port than the request-target.
    HostDiffers,
    /// The target or `Host` is not `host[:port]`.
    BadAuthority,
    /// Neither a target authority nor `Host`.
    MissingHost,
}

impl HostError {
    /// The access log's `error` value.
    pub fn as_str(self) -> &'static str {
        match self {
            HostError::DuplicateHost => "duplicate_host",
            HostError::HostDiffers => "host_target_mismatch",
            HostError::BadAuthority => "bad_authority",
            HostError::MissingHost => "missing_host",
        }
    }
}

/// What to do with the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostDecision {
    /// Go on, for this authority.
    Forward(Authority),
    /// Answer 400.
    BadRequest(HostError),
    /// Inside a bump, another host than the TLS connection's: block page 421,
    /// reason `host_mismatch`.
    Misdirected(Authority),
}

/// Decide which authority a request is for, or why it is refused.
pub fn decide_host(facts: &HostFacts<'_>) -> HostDecision {
    let parse = |text: &[u8]| parse_authority(text, facts.default_port);
    let host = match facts.host_headers {
        [] => None,
        [one] => match parse(one) {
            Some(authority) => Some(authority),
            None => return HostDecision::BadRequest(HostError::BadAuthority),
        },
        _ => return HostDecision::BadRequest(HostError::DuplicateHost),
    };
    let authority = match (facts.target, host) {
        (Some(target), host) => {
            let Some(target) = parse(target.as_bytes()) else {
                return HostDecision::BadRequest(HostError::BadAuthority);
            };
            if host.is_some_and(|host| host != target) {
                return HostDecision::BadRequest(HostError::HostDiffers);
            }
            target
        }
        (None, Some(host)) => host,
        (None, None) => match facts.implied.map(|implied| parse(implied.as_bytes())) {
            Some(Some(implied)) => implied,
            Some(None) => return HostDecision::BadRequest(HostError::BadAuthority),
            None => return HostDecision::BadRequest(HostError::MissingHost),
        },
    };
    match facts.tls_name {
        Some(name)
            if facts.on_mismatch == HostMismatch::Block
                && normalize_tls_name(name).as_deref() != Some(&authority.host) =>
        {
            HostDecision::Misdirected(authority)
        }
        _ => HostDecision::Forward(authority),
    }
}

/// Longest host accepted: a DNS name of 253 characters and its trailing dot.
const MAX_HOST_LEN: usize = 254;

/// `host[:port]` or `[v6][:port]`; no userinfo, no spaces. An empty port (`host:`) is
/// the default one (RFC 3986 §3.2.3).
fn parse_authority(text: &[u8], default_port: u16) -> Option<Authority> {
    let text = std::str::from_utf8(text).ok()?;
    let (host, port) = split_port(text).ok()?;
    let port = match port {
        None | Some("") => default_port,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() <= 5 => {
            digits.parse::<u16>().ok().filter(|&p| p != 0)?
        }
        Some(_) => return None,
    };
    Some(Authority {
        host: normalize_host(host.as_bytes())?,
        port,
        default_port,
    })
}

/// A host as compared: a name lowercase without its trailing dot, or an IPv6 literal in
/// brackets in its canonical text (brackets dropped). `None`: not a host.
fn normalize_host(host: &[u8]) -> Option<String> {
    let host = std::str::from_utf8(host).ok()?;
    if let Some(inner) = host.strip_prefix('[') {
        let v6 = inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?;
        return Some(IpAddr::V6(v6).to_string());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let name_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    let empty_label = name.split('.').any(str::is_empty);
    if empty_label || host.len() > MAX_HOST_LEN || !name.bytes().all(name_char) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// The TLS connection's name as compared: the SNI, or the CONNECT host, which may be
/// an IPv6 literal without brackets.
fn normalize_tls_name(name: &str) -> Option<String> {
    match name.parse::<Ipv6Addr>() {
        Ok(v6) => Some(IpAddr::V6(v6).to_string()),
        Err(_) => normalize_host(name.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(target: Option<&'a str>, hosts: &'a [&'a [u8]]) -> HostFacts<'a> {
        HostFacts {
            target,
            host_headers: hosts,
            default_port: 80,
            tls_name: None,
            on_mismatch: HostMismatch::Block,
            implied: None,
        }
    }

    fn forwarded(decision: HostDecision) -> String {
        match decision {
            HostDecision::Forward(authority) => authority.to_string(),
            other => panic!("not forwarded: {other:?}"),
        }
    }

    #[test]
    fn the_target_decides_and_an_agreeing_host_is_accepted() {
        let plain = |target, hosts| forwarded(decide_host(&facts(target, hosts)));
        assert_eq!(plain(Some("Example.COM."), &[]), "example.com");
        assert_eq!(
            plain(Some("example.com:80"), &[b"EXAMPLE.com"]),
            "example.com"
        );
        assert_eq!(
            plain(Some("example.com"), &[b"example.com.:80"]),
            "example.com"
        );
        assert_eq!(
            plain(Some("example.com:8080"), &[b"example.com:8080"]),
            "example.com:8080"
        );
        assert_eq!(
            plain(Some("example.com:"), &[b"example.com"]),
            "example.com"
        );
        assert_eq!(plain(Some("[0::1]:8080"), &[b"[::1]:8080"]), "[::1]:8080");
        assert_eq!(plain(Some("[::FFFF:127.0.0.1]"), &[]), "[::ffff:127.0.0.1]");
        assert_eq!(plain(None, &[b"origin.test:81"]), "origin.test:81");
        assert_eq!(plain(Some("10.0.0.1"), &[b"10.0.0.1:80"]), "10.0.0.1");
    }

    #[test]
    fn a_host_that_disagrees_with_the_target_is_a_bad_request() {
        let refused = |target, hosts: &[&[u8]]| decide_host(&facts(target, hosts));
        let differs = HostDecision::BadRequest(HostError::HostDiffers);
        assert_eq!(refused(Some("example.com"), &[b"evil.test"]), differs);
        assert_eq!(
            refused(Some("example.com"), &[b"example.com:8080"]),
            differs
        );
        assert_eq!(
            refused(Some("example.com:8080"), &[b"example.com"]),
            differs
        );
        assert_eq!(
            refused(Some("example.com"), &[b"example.com.evil.test"]),
            differs
        );
        assert_eq!(refused(Some("[::1]"), &[b"[::2]"]), differs);
        let duplicate = HostDecision::BadRequest(HostError::DuplicateHost);
        assert_eq!(refused(Some("a.test"), &[b"a.test", b"a.test"]), duplicate);
        assert_eq!(refused(None, &[b"a.test", b"b.test"]), duplicate);
        assert_eq!(
            refused(None, &[]),
            HostDecision::BadRequest(HostError::MissingHost)
        );
    }

    #[test]
    fn what_is_not_host_and_port_is_a_bad_request() {
        let bad = HostDecision::BadRequest(HostError::BadAuthority);
        for target in [
            "user@example.com",
            "user:pass@example.com:80",
            "",
            ":80",
            ".",
            "example.com:http",
            "example.com:0",
            "example.com:65536",
            "example.com:000080x",
            "exa mple.com",
            "example.com/path",
            "[::1",
            "[example.com]",
            "[::1]x",
            "[::1]:",
            "::1",
            "ex\u{e4}mple.com",
            "example..com:80:80",
            "example..com",
            "example.com..",
            ".example.com",
        ] {
            let decision = decide_host(&facts(Some(target), &[]));
            // `[::1]:` has an empty port, which is the default one.
            if target == "[::1]:" {
                assert_eq!(forwarded(decision), "[::1]");
                continue;
            }
            assert_eq!(decision, bad, "target {target:?}");
            assert_eq!(
                decide_host(&facts(None, &[target.as_bytes()])),
                bad,
                "Host {target:?}"
            );
        }
        assert_eq!(decide_host(&facts(Some("a.test"), &[b""])), bad);
        assert_eq!(decide_host(&facts(Some("a.test"), &[b"\xff"])), bad);
        let long = format!("{}.test", "a".repeat(250));
        assert_eq!(decide_host(&facts(Some(&long), &[])), bad);
    }

    fn bumped<'a>(
        target: Option<&'a str>,
        hosts: &'a [&'a [u8]],
        tls_name: &'a str,
    ) -> HostDecision {
        decide_host(&HostFacts {
            target,
            host_headers: hosts,
            default_port: 443,
            tls_name: Some(tls_name),
            on_mismatch: HostMismatch::Block,
            implied: Some("bank.example"),
        })
    }

    #[test]
    fn inside_a_bump_the_target_must_name_the_tls_host() {
        assert_eq!(
            forwarded(bumped(None, &[b"Bank.Example."], "bank.example")),
            "bank.example"
        );
        assert_eq!(
            forwarded(bumped(Some("bank.example:443"), &[], "BANK.example")),
            "bank.example"
        );
        // The port is not the TLS connection's business: it reached its server.
        assert_eq!(
            forwarded(bumped(None, &[b"bank.example:8443"], "bank.example")),
            "bank.example:8443"
        );
        assert_eq!(forwarded(bumped(None, &[b"[::1]"], "0:0::1")), "[::1]");
        assert_eq!(
            forwarded(bumped(None, &[b"10.0.0.1"], "10.0.0.1")),
            "10.0.0.1"
        );
        let fronted: [(Option<&str>, &str, &str); 7] = [
            (None, "evil.test", "bank.example"),
            (Some("evil.test"), "", "bank.example"),
            (None, "bank.example.evil.test", "bank.example"),
            (None, "sub.bank.example", "bank.example"),
            (None, "10.0.0.2", "10.0.0.1"),
            (None, "[::2]", "::1"),
            (None, "bank.example", "10.0.0.1"),
        ];
        for (target, host, name) in fronted {
            let hosts: &[&[u8]] = if host.is_empty() {
                &[]
            } else {
                &[host.as_bytes()]
            };
            assert!(
                matches!(bumped(target, hosts, name), HostDecision::Misdirected(_)),
                "{target:?} {host:?} {name}"
            );
        }
        // An IPv4-mapped IPv6 literal is another host than the IPv4 one.
        assert!(matches!(
            bumped(None, &[b"[::ffff:10.0.0.1]"], "10.0.0.1"),
            HostDecision::Misdirected(_)
        ));
        // A Host disagreeing with the target is a 400 before it is a 421.
        assert_eq!(
            bumped(Some("bank.example"), &[b"evil.test"], "bank.example"),
            HostDecision::BadRequest(HostError::HostDiffers)
        );
    }

    /// Inside a bump a request that names no host is for the connection's; it cannot
    /// name another one by sending two `Host`s or one that disagrees with its target.
    #[test]
    fn a_bumped_request_without_a_host_is_for_the_connection() {
        assert_eq!(forwarded(bumped(None, &[], "bank.example")), "bank.example");
        assert_eq!(
            decide_host(&facts(None, &[])),
            HostDecision::BadRequest(HostError::MissingHost),
            "plain HTTP implies nothing"
        );
        assert_eq!(
            bumped(None, &[b"bank.example", b"evil.test"], "bank.example"),
            HostDecision::BadRequest(HostError::DuplicateHost)
        );
        let garbage = decide_host(&HostFacts {
            implied: Some("bank example"),
            ..facts(None, &[])
        });
        assert_eq!(garbage, HostDecision::BadRequest(HostError::BadAuthority));
    }

    #[test]
    fn ignore_lets_a_fronted_request_through() {
        let decision = decide_host(&HostFacts {
            target: None,
            host_headers: &[b"evil.test"],
            default_port: 443,
            tls_name: Some("bank.example"),
            on_mismatch: HostMismatch::Ignore,
            implied: None,
        });
        assert_eq!(forwarded(decision), "evil.test");
    }
}
