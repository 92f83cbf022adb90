//! Parent proxies (SPEC §11): `[[upstream_proxies]]`, `proxy.default_via` and the `via`
//! of SSL and HTTP rules. A connection that goes via a parent is dialled to the parent's
//! first reachable URL and carried by `CONNECT` (TLS) or sent in absolute form (plain
//! HTTP); the data path does that, this module only says which parent and how to reach it.

use std::fmt;
use std::path::Path;

use toml::Spanned;

use crate::authority::{split_port, unbracketed};
use crate::diagnostics::Diagnostics;
use crate::raw::RawUpstreamProxy;

/// The `via` that means no parent.
pub const DIRECT: &str = "direct";

/// Where a connection leaves for its server.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Via {
    /// sluice dials the server itself.
    #[default]
    Direct,
    /// Through the `[[upstream_proxies]]` entry of this name.
    Parent(String),
}

impl Via {
    /// The access log's `via`: `direct` or the parent's name.
    pub fn as_str(&self) -> &str {
        match self {
            Via::Direct => DIRECT,
            Via::Parent(name) => name,
        }
    }
}

/// One `[[upstream_proxies]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamProxy {
    /// What rules' `via` and `proxy.default_via` call it, and what the log writes.
    pub name: String,
    /// Its addresses, tried in order: the next one only when one cannot be reached.
    pub urls: Vec<ParentAddr>,
    /// `credentials_file`, read at load time: sent as `Proxy-Authorization: Basic`.
    pub credentials: Option<ParentCredentials>,
}

/// `http://host:port` of a parent, as host and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParentAddr {
    /// A DNS name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ParentAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `user:password` for a parent. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct ParentCredentials(String);

impl ParentCredentials {
    /// `user:password`, to be base64-encoded into `Proxy-Authorization: Basic`.
    pub fn user_password(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ParentCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParentCredentials(<redacted>)")
    }
}

/// Compile `[[upstream_proxies]]`: names unique, not empty and not `direct`; at least one
/// URL, each `http://host:port`; the credentials file read now.
pub(crate) fn compile(
    raw: Vec<RawUpstreamProxy>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> Vec<UpstreamProxy> {
    let mut compiled: Vec<UpstreamProxy> = Vec::new();
    for entry in raw {
        let name = entry.name.get_ref().trim().to_string();
        if name.is_empty() || name == DIRECT {
            let why = format!("upstream_proxies.name: `{name}` is not a usable name");
            diag.at(entry.name.span(), why);
        } else if compiled.iter().any(|p| p.name == name) {
            let why = format!("upstream_proxies.name: `{name}` is used twice");
            diag.at(entry.name.span(), why);
        }
        if entry.urls.get_ref().is_empty() {
            diag.at(
                entry.urls.span(),
                "upstream_proxies.urls: at least one URL is needed",
            );
        }
        let urls = entry
            .urls
            .get_ref()
            .iter()
            .filter_map(|url| match parse_parent_url(url.get_ref()) {
                Ok(addr) => Some(addr),
                Err(why) => {
                    diag.at(url.span(), format!("upstream_proxies.urls: {why}"));
                    None
                }
            })
            .collect();
        let credentials = entry
            .credentials_file
            .filter(|f| !f.get_ref().trim().is_empty())
            .and_then(|file| read_credentials(&file, base_dir, diag));
        compiled.push(UpstreamProxy {
            name,
            urls,
            credentials,
        });
    }
    compiled
}

/// `http://host:port` (an IPv6 host in brackets). Only `http`: sluice speaks to its
/// parent in clear, as browsers do to a proxy.
fn parse_parent_url(url: &str) -> Result<ParentAddr, String> {
    let bad = |why: &str| format!("`{url}` is not http://host:port ({why})");
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("the scheme must be http"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = proxy_address(authority).map_err(|why| bad(why.text()))?;
    let host = unbracketed(host);
    Ok(ParentAddr {
        host: host.to_ascii_lowercase(),
        port,
    })
}

/// Why a `host:port` proxy address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AddressError {
    NoPort,
    BadPort,
    BadV6,
    BadHost,
}

impl AddressError {
    /// The reason in words.
    pub(crate) fn text(self) -> &'static str {
        match self {
            AddressError::NoPort => "the port is missing",
            AddressError::BadPort => "the port must be a number from 1 to 65535",
            AddressError::BadV6 => "not an IPv6 address in brackets",
            AddressError::BadHost => "the host must be a DNS name or an IP address",
        }
    }
}

/// A proxy's `host:port`, the port required (1 to 65535), the host a DNS name, an IPv4
/// address or a bracketed IPv6 one (returned with its brackets).
pub(crate) fn proxy_address(address: &str) -> Result<(&str, u16), AddressError> {
    let (host, port) = match split_port(address) {
        Ok((host, Some(port))) => (host, port),
        Ok((_, None)) => return Err(AddressError::NoPort),
        Err(_) => return Err(AddressError::BadV6),
    };
    let port = match port.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => return Err(AddressError::BadPort),
    };
    if host.starts_with('[') {
        if unbracketed(host).parse::<std::net::Ipv6Addr>().is_err() {
            return Err(AddressError::BadV6);
        }
    } else if !is_host_name(host) {
        return Err(AddressError::BadHost);
    }
    Ok((host, port))
}

/// A DNS name or an IPv4 address as written in a configuration: dot-separated labels
/// of letters, digits, `-` and `_`, at most 63 bytes each and 253 in all.
pub(crate) fn is_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The file's first line, `user:password`.
fn read_credentials(
    file: &Spanned<String>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> Option<ParentCredentials> {
    let path = base_dir.join(file.get_ref());
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
            // A header value carries visible ASCII and spaces only.
            let printable = line.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
            match line.split_once(':') {
                Some((user, _)) if !user.is_empty() && printable => {
                    Some(ParentCredentials(line.to_string()))
                }
                _ => {
                    let why = "does not hold user:password on its first line";
                    let message = format!(
                        "upstream_proxies.credentials_file: {} {why}",
                        path.display()
                    );
                    diag.at(file.span(), message);
                    None
                }
            }
        }
        Err(e) => {
            let message = format!(
                "upstream_proxies.credentials_file: cannot read {}: {e}",
                path.display()
            );
            diag.at(file.span(), message);
            None
        }
    }
}

/// Resolve a `via` (of a rule, or `proxy.default_via`) against the configured parents;
/// an unknown name is an error at its line.
pub(crate) fn resolve_via(
    via: &Spanned<String>,
    parents: &[UpstreamProxy],
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> Option<Via> {
    let name = via.get_ref().trim();
    if name == DIRECT {
        return Some(Via::Direct);
    }
    if parents.iter().any(|p| p.name == name) {
        return Some(Via::Parent(name.to_string()));
    }
    let why = format!("{key}: `{name}` is neither \"direct\" nor an upstream_proxies name");
    diag.at(via.span(), why);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_urls_are_http_host_and_port() {
        let addr = parse_parent_url("http://Parent1.corp.example:3128").unwrap();
        assert_eq!(addr.host, "parent1.corp.example");
        assert_eq!(addr.port, 3128);
        assert_eq!(addr.to_string(), "parent1.corp.example:3128");
        let v6 = parse_parent_url("http://[2001:db8::1]:8080/").unwrap();
        assert_eq!(v6.host, "2001:db8::1");
        assert_eq!(v6.to_string(), "[2001:db8::1]:8080");
        for bad in [
            "https://p:3128",
            "p:3128",
            "http://p",
            "http://p:0",
            "http://p:99999",
            "http://:3128",
            "http://[zz]:3128",
            "http://user:pw@p:3128",
            "http://p:3128/path",
        ] {
            assert!(parse_parent_url(bad).is_err(), "{bad}");
        }
    }

    /// The one `host:port` check of parent URLs and `pac.proxy`, each refusal with its
    /// reason; the host comes back as written (brackets kept).
    #[test]
    fn proxy_addresses_need_a_host_and_a_port() {
        assert_eq!(proxy_address("p.example:3128"), Ok(("p.example", 3128)));
        assert_eq!(proxy_address("10.0.0.1:8080"), Ok(("10.0.0.1", 8080)));
        assert_eq!(proxy_address("[2001:db8::1]:80"), Ok(("[2001:db8::1]", 80)));
        for (bad, why) in [
            ("p.example", AddressError::NoPort),
            ("[2001:db8::1]", AddressError::NoPort),
            ("p.example:", AddressError::BadPort),
            ("p.example:0", AddressError::BadPort),
            ("p.example:65536", AddressError::BadPort),
            ("p.example:x", AddressError::BadPort),
            ("[2001:db8::1:80", AddressError::BadV6),
            ("[2001:db8::1]x:80", AddressError::BadV6),
            ("[zz]:80", AddressError::BadV6),
            // Without brackets the last colon is the port's: an IPv6 host is refused.
            ("2001:db8::1:80", AddressError::BadHost),
            (":3128", AddressError::BadHost),
            ("p\";x=\":3128", AddressError::BadHost),
        ] {
            assert_eq!(proxy_address(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let credentials = ParentCredentials("alice:s3cret".into());
        assert_eq!(format!("{credentials:?}"), "ParentCredentials(<redacted>)");
        assert_eq!(credentials.user_password(), "alice:s3cret");
    }
}
