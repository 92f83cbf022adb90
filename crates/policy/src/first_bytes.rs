//! What a transparently intercepted connection speaks, told from its first bytes
//! (SPEC §11): there is no CONNECT to say it.

/// The longest method token [`classify`] waits for before calling the bytes something
/// else (`OPTIONS`, `CONNECT` and the WebDAV methods are shorter).
const MAX_METHOD: usize = 16;

/// What the first bytes of a connection are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS handshake record: the ClientHello follows (§1.3).
    Tls,
    /// An HTTP/1 request line: a method token and a space (§3).
    Http,
    /// Neither: `tls.on_non_tls` applies.
    Other,
    /// Too few bytes to tell yet.
    Incomplete,
}

/// Classify the bytes a client sent first. A TLS record starts with content type 22
/// (handshake); an HTTP request with an upper-case method token and a space.
pub fn classify(bytes: &[u8]) -> FirstBytes {
    let Some(&first) = bytes.first() else {
        return FirstBytes::Incomplete;
    };
    if first == 0x16 {
        return FirstBytes::Tls;
    }
    let token = bytes
        .iter()
        .take(MAX_METHOD + 1)
        .take_while(|b| b.is_ascii_uppercase() || **b == b'-' || **b == b'_')
        .count();
    match bytes.get(token) {
        Some(b' ') if token > 0 => FirstBytes::Http,
        None if token == bytes.len() && token <= MAX_METHOD => FirstBytes::Incomplete,
        _ => FirstBytes::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_record_is_tls() {
        assert_eq!(classify(&[0x16, 0x03, 0x01]), FirstBytes::Tls);
        assert_eq!(classify(&[0x16]), FirstBytes::Tls);
    }

    #[test]
    fn a_request_line_is_http() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), FirstBytes::Http);
        assert_eq!(classify(b"PROPFIND /x"), FirstBytes::Http);
        assert_eq!(classify(b"M-SEARCH * HTTP/1.1"), FirstBytes::Http);
    }

    #[test]
    fn a_partial_method_waits_for_more() {
        assert_eq!(classify(b""), FirstBytes::Incomplete);
        assert_eq!(classify(b"GE"), FirstBytes::Incomplete);
        assert_eq!(classify(b"OPTIONS"), FirstBytes::Incomplete);
    }

    #[test]
    fn anything_else_is_other() {
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.2\r\n"), FirstBytes::Other);
        assert_eq!(classify(b"get / HTTP/1.1"), FirstBytes::Other);
        assert_eq!(classify(b" GET"), FirstBytes::Other);
        assert_eq!(classify(&[0x00, 0x01]), FirstBytes::Other);
        assert_eq!(classify(&[b'A'; 40]), FirstBytes::Other);
    }
}
