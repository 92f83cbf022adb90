//! Splitting `host[:port]` or `[v6][:port]` where the port begins: the one splitter of
//! the request target, the `Host` check, the admin endpoint's `Host` and the server
//! addresses of the configuration (anti-virus engines, syslog, phishing URLs). What a
//! host may be and whether a port is required stay the caller's, but for the configured
//! server addresses ([`configured_host_port`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::domain::normalize;

/// Why an authority cannot be split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitError<'a> {
    /// A `[` without its `]`.
    Unclosed,
    /// Text after `]` that is not `:port`; the bracketed host before it.
    AfterBracket(&'a str),
}

/// The host as written (an IPv6 literal keeps its brackets) and the text after the
/// port's colon, when there is one. Without brackets the port's colon is the last one,
/// so an unbracketed IPv6 address leaves a `:` in the host for the caller to refuse.
pub fn split_port(authority: &str) -> Result<(&str, Option<&str>), SplitError<'_>> {
    if authority.starts_with('[') {
        let end = authority.find(']').ok_or(SplitError::Unclosed)?;
        let (host, rest) = authority.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            rest => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(SplitError::AfterBracket(host)),
            },
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

/// `[v6]` without its brackets; anything else as it is.
pub fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

/// A configured address's host: an IPv6 address (written in brackets), or the text of a
/// name or an IPv4 address for the caller to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConfiguredHost<'a> {
    V6(Ipv6Addr),
    Other(&'a str),
}

/// Why a configured address cannot be split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConfiguredError {
    /// A `[` without its `]`.
    Unclosed,
    /// Brackets around something else than an IPv6 address.
    BadV6,
}

/// [`split_port`] for the addresses of configuration files and lists (ICAP and clamd
/// addresses, phishing URLs): text after `]` that is no `:port` is passed over (the
/// default port), and a bracketed host must be an IPv6 address.
pub(crate) fn split_configured(
    authority: &str,
) -> Result<(ConfiguredHost<'_>, Option<&str>), ConfiguredError> {
    let (host, port) = match split_port(authority) {
        Ok(split) => split,
        Err(SplitError::Unclosed) => return Err(ConfiguredError::Unclosed),
        Err(SplitError::AfterBracket(host)) => (host, None),
    };
    if !host.starts_with('[') {
        return Ok((ConfiguredHost::Other(host), port));
    }
    let v6 = unbracketed(host)
        .parse()
        .map_err(|_| ConfiguredError::BadV6)?;
    Ok((ConfiguredHost::V6(v6), port))
}

/// A configured server address (ICAP, clamd, syslog): `host`, `host:port`, `[v6]` or
/// `[v6]:port`, the host a DNS name or an IP address, `default_port` when none is written.
/// The errors are for the caller's message about the whole address.
pub(crate) fn configured_host_port(
    authority: &str,
    default_port: u16,
) -> Result<(String, u16), String> {
    if authority.contains('@') {
        return Err("user information is not supported".into());
    }
    let (host, port) = match split_configured(authority) {
        Ok((ConfiguredHost::V6(v6), port)) => (v6.to_string(), port),
        // An IPv4 address, or else a name (an IPv6 address needs its brackets).
        Ok((ConfiguredHost::Other(host), port)) => {
            if host.parse::<Ipv4Addr>().is_err() {
                normalize(host).map_err(|why| format!("invalid host `{host}`: {why}"))?;
            }
            (host.to_owned(), port)
        }
        Err(ConfiguredError::Unclosed) => return Err("unclosed `[`".into()),
        Err(ConfiguredError::BadV6) => return Err("invalid IPv6 address".into()),
    };
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("invalid port `{port}`"))?,
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_addresses_and_ipv6_literals_split_at_the_port() {
        assert_eq!(
            split_port("example.test:8080"),
            Ok(("example.test", Some("8080")))
        );
        assert_eq!(split_port("example.test"), Ok(("example.test", None)));
        assert_eq!(split_port("example.test:"), Ok(("example.test", Some(""))));
        assert_eq!(split_port("192.0.2.1:80"), Ok(("192.0.2.1", Some("80"))));
        assert_eq!(
            split_port("[2001:db8::1]:443"),
            Ok(("[2001:db8::1]", Some("443")))
        );
        assert_eq!(split_port("[2001:db8::1]"), Ok(("[2001:db8::1]", None)));
        assert_eq!(split_port("2001:db8::1"), Ok(("2001:db8:", Some("1"))));
        assert_eq!(unbracketed("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(unbracketed("example.test"), "example.test");
    }

    #[test]
    fn a_broken_bracket_is_an_error() {
        assert_eq!(split_port("[2001:db8::1:443"), Err(SplitError::Unclosed));
        assert_eq!(
            split_port("[::1]443"),
            Err(SplitError::AfterBracket("[::1]"))
        );
        assert_eq!(
            split_port("[a]b]:443"),
            Err(SplitError::AfterBracket("[a]"))
        );
    }

    /// Configured addresses: a bracketed host is an IPv6 address, text after `]` that
    /// is no port is passed over, and an unbracketed host is left to the caller.
    #[test]
    fn configured_addresses_split_with_their_ipv6_checked() {
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let split = split_configured;
        assert_eq!(
            split("[2001:db8::1]:80"),
            Ok((ConfiguredHost::V6(v6), Some("80")))
        );
        assert_eq!(split("[2001:db8::1]"), Ok((ConfiguredHost::V6(v6), None)));
        assert_eq!(split("[2001:db8::1]x"), Ok((ConfiguredHost::V6(v6), None)));
        assert_eq!(
            split("h.example:1344"),
            Ok((ConfiguredHost::Other("h.example"), Some("1344")))
        );
        assert_eq!(
            split("::1:1344"),
            Ok((ConfiguredHost::Other("::1"), Some("1344")))
        );
        assert_eq!(split("[::1"), Err(ConfiguredError::Unclosed));
        assert_eq!(split("[zz]:80"), Err(ConfiguredError::BadV6));
    }
}
