//! What the proxy checks and changes on every message, plain or bumped: the URL as
//! logged, the hop-by-hop hygiene, `Alt-Svc`'s HTTP/3 entries, the request's framing and
//! its `Host` headers.

use http::header::{HeaderMap, HeaderValue};
use http::{header, Request, Response, Version};
use sluice_policy::AltSvcEdit;

use crate::http::head::check_body_framing;
use crate::http::hop_by_hop::{add_via, strip_hop_by_hop};

/// The absolute URL of a request as logged and matched by `url_regex` and the phishing
/// lists: scheme and host lowercase, no default port.
pub fn absolute_url(scheme: &str, authority: &str, path: &str) -> String {
    let authority = authority.to_ascii_lowercase();
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    format!("{scheme}://{authority}{path}")
}

/// Prepare a request for the upstream leg (`upgrade`: a WebSocket handshake).
pub fn prepare_request<B>(request: &mut Request<B>, upgrade: bool) {
    let version = request.version();
    strip_hop_by_hop(request.headers_mut(), upgrade);
    add_via(request.headers_mut(), version);
}

/// Prepare a response for the client leg.
pub fn prepare_response<B>(response: &mut Response<B>, upgrade: bool) {
    let version = response.version();
    strip_hop_by_hop(response.headers_mut(), upgrade);
    add_via(response.headers_mut(), version);
}

/// Remove the HTTP/3 entries of every `Alt-Svc` field (SPEC §11 QUIC), dropping a field
/// left empty; the decision on each value is [`sluice_policy::strip_alt_svc_h3`]'s.
pub fn strip_alt_svc_h3(headers: &mut HeaderMap) {
    let header::Entry::Occupied(entry) = headers.entry(header::ALT_SVC) else {
        return;
    };
    let (_, values) = entry.remove_entry_mult();
    let edited: Vec<HeaderValue> = values
        .filter_map(
            |value| match sluice_policy::strip_alt_svc_h3(value.as_bytes()) {
                AltSvcEdit::Keep => Some(value),
                AltSvcEdit::Remove => None,
                AltSvcEdit::Replace(kept) => HeaderValue::from_bytes(kept.as_bytes()).ok(),
            },
        )
        .collect();
    for value in edited {
        headers.append(header::ALT_SVC, value);
    }
}

/// SPEC §9 on every request, not only a connection's first (hyper parses the later
/// ones, and accepts `Transfer-Encoding: gzip, chunked`): ambiguous framing → 400.
pub fn check_framing<B>(request: &Request<B>) -> Result<(), &'static str> {
    let values = |name| {
        request
            .headers()
            .get_all(name)
            .into_iter()
            .map(|v| v.as_bytes())
    };
    check_body_framing(
        values(header::CONTENT_LENGTH),
        values(header::TRANSFER_ENCODING),
        request.version() == Version::HTTP_10,
    )
    .map_err(|e| e.reason())
}

/// Every `Host` header of a request, for [`sluice_policy::decide_host`].
pub fn host_headers<B>(request: &Request<B>) -> Vec<&[u8]> {
    request
        .headers()
        .get_all(header::HOST)
        .into_iter()
        .map(|v| v.as_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_logged_with_a_lowercase_host_and_no_default_port() {
        assert_eq!(
            absolute_url("https", "Bank.Example:443", "/A?b=C"),
            "https://bank.example/A?b=C"
        );
        assert_eq!(absolute_url("http", "[::1]:80", "/"), "http://[::1]/");
        assert_eq!(
            absolute_url("http", "example.com:8080", "/x"),
            "http://example.com:8080/x"
        );
        assert_eq!(
            absolute_url("https", "example.com:80", "/"),
            "https://example.com:80/"
        );
    }
}
