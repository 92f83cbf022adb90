//! The two URL shapes anti-phishing compares: list entries (`http(s)://host[:port]/path`,
//! strict) and request URLs (the absolute URL of a request, lenient). Both end up as an
//! [`Origin`] (scheme, normalized host, effective port) and a path.

use std::borrow::Cow;

use crate::authority::{split_configured, ConfiguredError, ConfiguredHost};
use crate::domain::normalize;

/// Scheme, host and port of a URL, compared exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Origin<'a> {
    pub(super) https: bool,
    /// Lowercase, IDN in punycode, no trailing dot; an IPv6 address in canonical form
    /// between brackets.
    pub(super) host: Cow<'a, str>,
    /// Effective port: 80 or 443 when the URL gives none.
    pub(super) port: u16,
}

impl Origin<'_> {
    /// `scheme://host[:port]`, the port shown only when it is not the default.
    pub(super) fn display(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.port == default_port(self.https) {
            format!("{scheme}://{}", self.host)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn default_port(https: bool) -> u16 {
    if https {
        443
    } else {
        80
    }
}

/// The scheme of `url` (`http://` or `https://`, any case) and the rest after `://`.
fn split_scheme(url: &str) -> Option<(bool, &str)> {
    let bytes = url.as_bytes();
    let https = bytes.get(4).is_some_and(|b| b.eq_ignore_ascii_case(&b's'));
    let len = if https { 8 } else { 7 };
    let head = bytes.get(..len)?;
    let scheme_ok = head[..4].eq_ignore_ascii_case(b"http") && head[len - 3..] == *b"://";
    // `len` ends on an ASCII byte, so it is a char boundary.
    scheme_ok.then(|| (https, &url[len..]))
}

/// The authority and the path (with the query and any fragment) of what follows `://`.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest
        .bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    rest.split_at(end)
}

/// What follows `://` in a request URL, split in one pass (this is on every request's
/// path): the host with any port, the path, and the index of the port's `:` in the host
/// part. User information before an `@` is skipped.
fn split_request(rest: &str) -> (&str, &str, Option<usize>) {
    let mut start = 0;
    let mut colon = None;
    let mut end = rest.len();
    for (i, b) in rest.bytes().enumerate() {
        match b {
            b'/' | b'?' | b'#' => {
                end = i;
                break;
            }
            b'@' => {
                start = i + 1;
                colon = None;
            }
            b':' => colon = Some(i - start),
            b']' => colon = None,
            _ => {}
        }
    }
    // Every index is that of an ASCII byte, so a char boundary.
    (&rest[start..end], &rest[end..], colon)
}

/// Parse a list entry that is a URL prefix. The path is kept as written (`/` when
/// absent, and a bare query gets its `/`), so `http://h?x` is `http://h/?x`.
pub(super) fn parse_entry(entry: &str) -> Result<(Origin<'static>, String), String> {
    let (https, rest) = split_scheme(entry).ok_or("a URL must begin with http:// or https://")?;
    let (authority, path) = split_authority(rest);
    if authority.contains('@') {
        return Err("user information is not allowed in a URL".into());
    }
    if path.contains(char::is_whitespace) {
        return Err("a URL may not contain spaces".into());
    }
    let origin = parse_authority(authority, https)?;
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    Ok((
        Origin {
            host: Cow::Owned(origin.host.into_owned()),
            ..origin
        },
        path,
    ))
}

/// Parse a request's absolute URL; `None` when it is not an `http`/`https` URL with a
/// usable host. User information is skipped, a fragment dropped, and the path given a
/// leading `/` like the entries' (`http://h?q` is `http://h/?q`).
pub(super) fn parse_request(url: &str) -> Option<(Origin<'_>, Cow<'_, str>)> {
    let (https, rest) = split_scheme(url)?;
    let (authority, path, colon) = split_request(rest);
    let path = path.find('#').map_or(path, |hash| &path[..hash]);
    let origin = match colon {
        // The common case, a DNS name without port, needs no further splitting.
        None if !authority.starts_with('[') => Origin {
            https,
            host: normalize(authority).ok()?,
            port: default_port(https),
        },
        _ => parse_authority(authority, https).ok()?,
    };
    let path = if path.starts_with('/') {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(format!("/{path}"))
    };
    Some((origin, path))
}

/// `host[:port]` or `[v6][:port]`, host normalized.
fn parse_authority(authority: &str, https: bool) -> Result<Origin<'_>, String> {
    let (host, port) = match split_configured(authority) {
        Ok((ConfiguredHost::V6(v6), port)) => (Cow::Owned(format!("[{v6}]")), port),
        Ok((ConfiguredHost::Other(host), port)) => {
            let host = normalize(host).map_err(|why| format!("invalid host `{host}`: {why}"))?;
            (host, port)
        }
        Err(ConfiguredError::Unclosed) => return Err("unclosed `[` in the host".into()),
        Err(ConfiguredError::BadV6) => return Err("invalid IPv6 address".into()),
    };
    let port = match port {
        None | Some("") => default_port(https),
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("invalid port `{port}`"))?,
    };
    Ok(Origin { https, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_normalize_scheme_host_and_default_port() {
        let (origin, path) = parse_entry("HTTPS://Evil.Example.:443/Login?a=B").unwrap();
        assert_eq!(
            origin,
            Origin {
                https: true,
                host: "evil.example".into(),
                port: 443
            }
        );
        assert_eq!(path, "/Login?a=B");
        assert_eq!(origin.display(), "https://evil.example");
        let (origin, path) = parse_entry("http://bücher.example:8080").unwrap();
        assert_eq!(origin.display(), "http://xn--bcher-kva.example:8080");
        assert_eq!(path, "/");
        let (origin, path) = parse_entry("http://[::FFFF:1.2.3.4]?q").unwrap();
        assert_eq!(origin.host, "[::ffff:1.2.3.4]");
        assert_eq!(path, "/?q");
    }

    #[test]
    fn bad_entries_say_why() {
        for (bad, why) in [
            (
                "ftp://x.example/",
                "a URL must begin with http:// or https://",
            ),
            (
                "http://u@x.example/",
                "user information is not allowed in a URL",
            ),
            ("http://x.example:0/", "invalid port `0`"),
            ("http://x.example:99999/", "invalid port `99999`"),
            ("http://[::1/", "unclosed `[` in the host"),
            ("http://[zz]/", "invalid IPv6 address"),
            ("http:///path", "invalid host ``: empty name"),
            ("http://x.example/a b", "a URL may not contain spaces"),
        ] {
            assert_eq!(parse_entry(bad).unwrap_err(), why, "{bad}");
        }
    }

    #[test]
    fn requests_are_parsed_leniently() {
        let (origin, path) = parse_request("http://user:pw@WWW.Example.COM:80/a?b#frag").unwrap();
        assert_eq!(origin.display(), "http://www.example.com");
        assert_eq!(path, "/a?b");
        let (origin, path) = parse_request("https://x.example").unwrap();
        assert_eq!((origin.port, path.as_ref()), (443, "/"));
        let (_, path) = parse_request("https://x.example?q#f").unwrap();
        assert_eq!(path, "/?q");
        let (origin, _) = parse_request("https://x.example:/p").unwrap();
        assert_eq!(origin.port, 443);
        assert!(parse_request("ws://x.example/").is_none());
        assert!(parse_request("https:/x.example/").is_none());
        assert!(parse_request("http").is_none());
        assert!(parse_request("HTTPS://x.example/").is_some());
        assert!(parse_request("/relative").is_none());
        assert!(parse_request("http://bad host/").is_none());
    }
}
