//! Header hygiene on forwarded messages (SPEC §3.4): hop-by-hop headers are removed
//! (the fixed list of RFC 9110 §7.6.1 plus every header the `Connection` header names)
//! and `Via` is added. `Upgrade` survives only as `websocket`: an `h2c` upgrade (or any
//! other protocol) would turn the connection into something sluice does not inspect.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, TE, UPGRADE, VIA};
use http::Version;

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "http2-settings",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Remove the hop-by-hop headers of one message. With `keep_upgrade` (a WebSocket
/// handshake) `Connection: upgrade` and `Upgrade: websocket` survive, since the handshake
/// must reach the other side; other protocols in `Upgrade` (`h2c, websocket`) do not.
/// `TE: trailers` survives too: it is end-to-end in meaning (gRPC).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let te_trailers = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    // `Transfer-Encoding` is hop-by-hop too, but hyper owns message framing and sets it
    // again where needed.
    headers.remove(http::header::TRANSFER_ENCODING);
    if te_trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
}

/// Append our `Via` entry, keeping those of earlier proxies.
pub fn add_via(headers: &mut HeaderMap, version: Version) {
    let protocol = match version {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        _ => "1.1",
    };
    let ours = format!("{protocol} sluice");
    let value = match headers.get(VIA).and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ours}"),
        None => ours,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(VIA, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_the_fixed_list_and_what_connection_names() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "close, x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("proxy-authorization", "Basic Zm9vOmJhcg==".parse().unwrap());
        headers.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-kept"], "yes");
    }

    #[test]
    fn a_websocket_handshake_keeps_its_upgrade_and_te_trailers_survives() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        headers.insert("upgrade", "websocket".parse().unwrap());
        headers.insert("te", "trailers".parse().unwrap());
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["te"], "trailers");
        strip_hop_by_hop(&mut headers, false);
        assert!(headers.get("upgrade").is_none());
    }

    #[test]
    fn only_websocket_survives_in_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", "Upgrade, HTTP2-Settings".parse().unwrap());
        headers.insert("upgrade", "h2c, websocket".parse().unwrap());
        headers.insert("http2-settings", "AAMAAABkAAQAAP__".parse().unwrap());
        let mut kept = headers.clone();
        strip_hop_by_hop(&mut kept, true);
        assert_eq!(kept["upgrade"], "websocket");
        assert!(kept.get("http2-settings").is_none());
        // Not named in Connection, HTTP2-Settings is still hop-by-hop.
        headers.insert("connection", "Upgrade".parse().unwrap());
        headers.insert("upgrade", "h2c".parse().unwrap());
        strip_hop_by_hop(&mut headers, false);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn via_is_appended_after_earlier_proxies() {
        let mut headers = HeaderMap::new();
        add_via(&mut headers, Version::HTTP_11);
        assert_eq!(headers["via"], "1.1 sluice");
        add_via(&mut headers, Version::HTTP_10);
        assert_eq!(headers["via"], "1.1 sluice, 1.0 sluice");
    }
}
