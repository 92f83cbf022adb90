//! Who may use the admin endpoint (SPEC §8): the decision on one request's facts.
//!
//! A browser on the operator's machine can be made to reach a loopback admin endpoint:
//! by DNS rebinding (a page of `evil.example` whose name then resolves to 127.0.0.1;
//! its requests carry `Host: evil.example`) or by a plain cross-site form (`POST
//! /reload`, carrying `Origin: http://evil.example`). Both are refused because the
//! request does not name the endpoint itself. `admin.token_file` adds a bearer token for
//! everything but what a client or a load balancer needs without credentials.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use subtle::ConstantTimeEq;

use crate::authority::{split_port, unbracketed};

/// The bearer token of `admin.token_file`. Its `Debug` never shows the value, so a
/// logged configuration cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// The file's content without its trailing line end; `None` when that leaves nothing
    /// or a character a header value cannot carry (only visible ASCII is accepted).
    pub(crate) fn from_file_content(content: &str) -> Option<AdminToken> {
        let token = content.trim_end_matches(['\n', '\r']);
        let usable = !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic());
        usable.then(|| AdminToken(token.to_string()))
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// What the admin endpoint knows about one request.
#[derive(Clone, Copy, Debug)]
pub struct AdminRequest<'a> {
    /// The request path, without the query.
    pub path: &'a str,
    /// Every `Host` header value.
    pub hosts: &'a [&'a [u8]],
    /// The authority of an absolute-form target (`GET http://host:port/path`).
    pub target_authority: Option<&'a [u8]>,
    /// The `Origin` header, when there is one.
    pub origin: Option<&'a [u8]>,
    /// The `Authorization` header, when there is one.
    pub authorization: Option<&'a [u8]>,
    /// The address the client connected to (for a wildcard listener, the concrete one).
    pub local: SocketAddr,
}

/// The answer to [`admin_access`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAccess {
    /// Serve the request.
    Allowed,
    /// 403: no `Host`, several, or one (or the target's authority) naming another host
    /// (DNS rebinding).
    ForeignHost,
    /// 403: an `Origin` of another site (a cross-site request from a browser).
    ForeignOrigin,
    /// 401: the route needs the bearer token and the request does not carry it.
    TokenRequired,
}

impl AdminAccess {
    /// The HTTP status of a refusal (200 for [`AdminAccess::Allowed`]).
    pub fn status(self) -> u16 {
        match self {
            AdminAccess::Allowed => 200,
            AdminAccess::ForeignHost | AdminAccess::ForeignOrigin => 403,
            AdminAccess::TokenRequired => 401,
        }
    }

    /// One line for the client.
    pub fn reason(self) -> &'static str {
        match self {
            AdminAccess::Allowed => "allowed",
            AdminAccess::ForeignHost => "the Host header must name this admin endpoint",
            AdminAccess::ForeignOrigin => "cross-origin requests are refused",
            AdminAccess::TokenRequired => "a bearer token is required (admin.token_file)",
        }
    }
}

/// Routes served without the token: the CA and the PAC script for clients to fetch
/// (a browser sends no bearer token), and the health checks of load balancers.
const OPEN_ROUTES: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/ca.pem",
    "/ca.der",
    crate::pac::PAC_PATHS[0],
    crate::pac::PAC_PATHS[1],
];

/// Decide whether the admin endpoint serves `request`; `token` is `admin.token_file`'s.
pub fn admin_access(request: &AdminRequest<'_>, token: Option<&AdminToken>) -> AdminAccess {
    let [host] = request.hosts else {
        return AdminAccess::ForeignHost;
    };
    let mut names = std::iter::once(*host).chain(request.target_authority);
    if !names.all(|name| names_endpoint(name, None, request.local)) {
        return AdminAccess::ForeignHost;
    }
    if let Some(origin) = request.origin {
        if !is_own_origin(origin, request.local) {
            return AdminAccess::ForeignOrigin;
        }
    }
    match token {
        Some(token) if !OPEN_ROUTES.contains(&request.path) => {
            let presented = request.authorization.and_then(bearer_token);
            if presented.is_some_and(|presented| token.matches(presented)) {
                AdminAccess::Allowed
            } else {
                AdminAccess::TokenRequired
            }
        }
        _ => AdminAccess::Allowed,
    }
}

/// Whether `authority` (`host[:port]`) names the endpoint at `local`: its IP address or
/// `localhost`, with its port or, when `default_port` is `None`, without one.
fn names_endpoint(authority: &[u8], default_port: Option<u16>, local: SocketAddr) -> bool {
    let Ok(authority) = std::str::from_utf8(authority) else {
        return false;
    };
    let Some((host, port)) = split_authority(authority) else {
        return false;
    };
    let port_ok = match (port, default_port) {
        (Some(port), _) => port == local.port(),
        (None, Some(default)) => default == local.port(),
        (None, None) => true,
    };
    let host_ok = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical() == local.ip().to_canonical());
    port_ok && host_ok
}

/// `host[:port]` or `[v6][:port]` into the host (without brackets) and the port; `None`
/// when it is neither.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = split_port(authority).ok()?;
    // An IPv6 address without brackets is not an authority.
    if !host.starts_with('[') && host.contains(':') {
        return None;
    }
    let port = match port {
        None => None,
        Some(port) => Some(port.parse::<u16>().ok()?),
    };
    Some((unbracketed(host), port))
}

/// An `Origin` (`http://host[:port]`) that is the endpoint itself.
fn is_own_origin(origin: &[u8], local: SocketAddr) -> bool {
    let scheme = b"http://";
    origin.len() > scheme.len()
        && origin[..scheme.len()].eq_ignore_ascii_case(scheme)
        && names_endpoint(&origin[scheme.len()..], Some(80), local)
}

/// The credentials of `Bearer <token>` (the scheme is case-insensitive).
fn bearer_token(authorization: &[u8]) -> Option<&[u8]> {
    let scheme = b"bearer ";
    let matches = authorization.len() > scheme.len()
        && authorization[..scheme.len()].eq_ignore_ascii_case(scheme);
    matches.then(|| authorization[scheme.len()..].trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = "127.0.0.1:3129";

    fn request<'a>(
        path: &'a str,
        hosts: &'a [&'a [u8]],
        origin: Option<&'a [u8]>,
        authorization: Option<&'a [u8]>,
    ) -> AdminRequest<'a> {
        AdminRequest {
            path,
            hosts,
            target_authority: None,
            origin,
            authorization,
            local: LOCAL.parse().unwrap(),
        }
    }

    fn host(value: &[u8]) -> AdminAccess {
        admin_access(&request("/metrics", &[value], None, None), None)
    }

    #[test]
    fn the_host_must_name_the_endpoint_with_or_without_the_port() {
        for good in [
            &b"127.0.0.1:3129"[..],
            b"127.0.0.1",
            b"localhost",
            b"LocalHost:3129",
        ] {
            assert_eq!(host(good), AdminAccess::Allowed, "{good:?}");
        }
        for bad in [
            &b"evil.example"[..],
            b"evil.example:3129",
            b"127.0.0.1:80",
            b"127.0.0.2:3129",
            b"localhost.evil.example",
            b"localhost:3129x",
            b"127.0.0.1:3129:3129",
            b"",
            b"\xff",
        ] {
            assert_eq!(host(bad), AdminAccess::ForeignHost, "{bad:?}");
        }
    }

    #[test]
    fn no_host_or_two_hosts_are_refused() {
        let none = request("/healthz", &[], None, None);
        assert_eq!(admin_access(&none, None), AdminAccess::ForeignHost);
        let two: [&[u8]; 2] = [b"127.0.0.1:3129", b"evil.example"];
        let two = request("/healthz", &two, None, None);
        assert_eq!(admin_access(&two, None), AdminAccess::ForeignHost);
    }

    #[test]
    fn an_absolute_form_target_must_name_the_endpoint_too() {
        let hosts: [&[u8]; 1] = [b"127.0.0.1:3129"];
        let absolute = |authority: &'static [u8]| AdminRequest {
            target_authority: Some(authority),
            ..request("/metrics", &hosts, None, None)
        };
        assert_eq!(
            admin_access(&absolute(b"localhost:3129"), None),
            AdminAccess::Allowed
        );
        assert_eq!(
            admin_access(&absolute(b"evil.example:3129"), None),
            AdminAccess::ForeignHost
        );
    }

    #[test]
    fn ipv6_and_mapped_addresses_compare_as_addresses() {
        let local: SocketAddr = "[::1]:3129".parse().unwrap();
        assert!(names_endpoint(b"[::1]:3129", None, local));
        assert!(names_endpoint(b"[0:0::1]", None, local));
        assert!(
            !names_endpoint(b"::1", None, local),
            "brackets are required"
        );
        assert!(!names_endpoint(b"[::1]x", None, local));
        assert!(!names_endpoint(b"[::1]:", None, local));
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:3129".parse().unwrap();
        assert!(names_endpoint(b"127.0.0.1:3129", None, mapped));
    }

    #[test]
    fn an_origin_of_another_site_is_refused() {
        let hosts: [&[u8]; 1] = [b"127.0.0.1:3129"];
        let with_origin = |origin: &'static [u8]| {
            admin_access(&request("/reload", &hosts, Some(origin), None), None)
        };
        assert_eq!(with_origin(b"http://127.0.0.1:3129"), AdminAccess::Allowed);
        assert_eq!(with_origin(b"HTTP://localhost:3129"), AdminAccess::Allowed);
        for foreign in [
            &b"http://evil.example"[..],
            b"http://evil.example:3129",
            b"https://127.0.0.1:3129",
            b"http://127.0.0.1",
            b"http://127.0.0.1:3129.evil.example",
            b"null",
            b"http://",
        ] {
            assert_eq!(
                admin_access(&request("/reload", &hosts, Some(foreign), None), None),
                AdminAccess::ForeignOrigin,
                "{foreign:?}"
            );
        }
    }

    #[test]
    fn the_token_guards_every_route_but_the_open_ones() {
        let token = AdminToken::from_file_content("s3cret-token\n").unwrap();
        let hosts: [&[u8]; 1] = [b"localhost:3129"];
        let ask = |path: &'static str, authorization: Option<&'static [u8]>| {
            admin_access(&request(path, &hosts, None, authorization), Some(&token))
        };
        for open in OPEN_ROUTES {
            assert_eq!(ask(open, None), AdminAccess::Allowed, "{open}");
        }
        for guarded in [
            "/metrics",
            "/reload",
            "/bypass",
            "/bypass/x",
            "/explain",
            "/nope",
        ] {
            assert_eq!(ask(guarded, None), AdminAccess::TokenRequired, "{guarded}");
        }
        assert_eq!(
            ask("/metrics", Some(b"Bearer s3cret-token")),
            AdminAccess::Allowed
        );
        assert_eq!(
            ask("/metrics", Some(b"bearer  s3cret-token ")),
            AdminAccess::Allowed
        );
        for wrong in [
            &b"Bearer s3cret-tokeN"[..],
            b"Bearer s3cret-token2",
            b"Bearer s3cret",
            b"Bearer ",
            b"Basic s3cret-token",
            b"s3cret-token",
        ] {
            assert_eq!(
                ask("/metrics", Some(wrong)),
                AdminAccess::TokenRequired,
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn the_host_check_comes_before_the_token() {
        let token = AdminToken::from_file_content("t").unwrap();
        let hosts: [&[u8]; 1] = [b"evil.example"];
        let rebinding = request("/metrics", &hosts, None, Some(b"Bearer t"));
        assert_eq!(
            admin_access(&rebinding, Some(&token)),
            AdminAccess::ForeignHost
        );
    }

    #[test]
    fn token_files_are_trimmed_and_checked() {
        let token = AdminToken::from_file_content("abc\r\n").unwrap();
        assert!(token.matches(b"abc"));
        assert!(!token.matches(b"abc\r\n"));
        assert_eq!(AdminToken::from_file_content("\n"), None);
        assert_eq!(AdminToken::from_file_content("two words\n"), None);
        assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
    }
}
