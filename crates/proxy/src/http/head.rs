//! The HTTP/1.x request-head parser for what a client sends the proxy first: a `CONNECT`
//! (authority form) or a plain HTTP request (absolute form) — SPEC §1 step 1, §3, §9.
//!
//! The caller reads into a buffer and calls [`parse_request_head`] after every read until
//! the answer is not [`HeadParse::Incomplete`]; the bytes after the head (a request body,
//! or TLS for a CONNECT client that did not wait for the `200`) stay in the buffer for the
//! caller.
//!
//! Syntax is checked by `httparse`; on top of it this module is strict wherever a lenient
//! reading could make sluice and the server see different requests (request smuggling) or
//! make the policy see another URL than the server:
//! - lines must end in CRLF: a bare LF is `Malformed("bare_lf")` (RFC 9112 §2.2 allows
//!   accepting it), except in a `CONNECT` head: testssl.sh sends
//!   `CONNECT host:port HTTP/1.0\n\n`, and a CONNECT is never forwarded, so no server can
//!   read it differently (SPEC §9);
//! - no obs-fold, no whitespace between a header name and its colon, no NUL, CR or LF in
//!   a value, no non-ASCII byte in the request-target, at most one `Host`;
//! - `Content-Length`: digits only; repeated (as lines or as a comma list) only with equal
//!   values, else [`HeadError::AmbiguousLength`];
//! - `Transfer-Encoding`: only exactly `chunked` (one coding, case-insensitive), never with
//!   `Content-Length` and never in an HTTP/1.0 request (RFC 9112 §6.1), else
//!   [`HeadError::AmbiguousLength`]. `chunked, chunked` and `gzip, chunked` are refused
//!   too: no client sends them, and a body whose coding sluice does not remove would reach
//!   the server framed differently from what sluice inspected.
//!
//! A missing `Host` is accepted: sluice routes on the CONNECT authority or the absolute
//! URI, and `openssl s_client -proxy` sends an HTTP/1.0 CONNECT without one.
//!
//! Std and httparse only: no sockets, no clock, no tokio.

use std::net::Ipv6Addr;

use sluice_policy::{split_port, unbracketed, SplitError};

/// How many header lines a head may carry; more is `Malformed("too_many_headers")` (400,
/// as Apache's `LimitRequestFields` answers) rather than 431, which is kept for
/// `max_header_bytes`.
pub const MAX_HEADERS: usize = 128;

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. `CONNECT` or `GET`, as sent (case-sensitive).
    pub method: String,
    /// The request-target as sent: `host:port` for CONNECT, `http://host/path` for a
    /// proxy request. Printable ASCII only.
    pub target: String,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header lines in order; names as sent, values raw with surrounding whitespace
    /// removed.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RequestHead {
    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }

    /// The value of the first header called `name` (case-insensitive), if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        std::str::from_utf8(self.header(name)?).ok()
    }

    /// The values of every header called `name` (case-insensitive), in order.
    fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
    }
}

/// Why a request head is refused; [`HeadError::status`] is the answer to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Request line or headers invalid → 400. The &str is a short reason for the
    /// log/body.
    Malformed(&'static str),
    /// Head (request line + headers + CRLFCRLF) exceeds the limit → 431.
    TooLarge,
    /// Conflicting Content-Length / Transfer-Encoding, several differing Content-Length,
    /// or a Transfer-Encoding other than a single `chunked` → 400 (request smuggling).
    AmbiguousLength,
}

impl HeadError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Malformed(_) | Self::AmbiguousLength => 400,
            Self::TooLarge => 431,
        }
    }

    /// A short snake_case reason for the access log and the response body.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(reason) => reason,
            Self::TooLarge => "header_too_large",
            Self::AmbiguousLength => "ambiguous_length",
        }
    }
}

/// The answer of [`parse_request_head`] for the bytes buffered so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeadParse {
    /// A complete, acceptable head.
    Complete {
        /// The head.
        head: RequestHead,
        /// Bytes of the head incl. the final CRLFCRLF; what follows belongs to the body
        /// or the tunnel.
        len: usize,
    },
    /// Need more bytes (and fewer than `max_header_bytes` are buffered).
    Incomplete,
    /// The head is refused.
    Error(HeadError),
}

/// Parses the request head at the start of `buf`.
///
/// `max_header_bytes`: SPEC `limits.max_header_bytes`. Returns
/// [`HeadError::TooLarge`] as soon as `buf.len() >= max_header_bytes` without a
/// complete head, and when a complete head is longer than that; only
/// `buf[..max_header_bytes]` is ever read. Syntax errors are reported as soon as the
/// offending byte is buffered, even before the head is complete.
pub fn parse_request_head(buf: &[u8], max_header_bytes: usize) -> HeadParse {
    let window = buf.get(..max_header_bytes).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => {
            let head_bytes = window.get(..len).unwrap_or(window);
            match check(&request, head_bytes) {
                Ok(head) => HeadParse::Complete { head, len },
                Err(error) => HeadParse::Error(error),
            }
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_header_bytes => {
            HeadParse::Error(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => HeadParse::Incomplete,
        Err(error) => HeadParse::Error(HeadError::Malformed(httparse_reason(error))),
    }
}

fn httparse_reason(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "bad_header_name",
        httparse::Error::HeaderValue => "bad_header_value",
        httparse::Error::NewLine => "bad_line_ending",
        httparse::Error::Status | httparse::Error::Token => "bad_request_line",
        httparse::Error::TooManyHeaders => "too_many_headers",
        httparse::Error::Version => "bad_version",
    }
}

/// The checks httparse does not make, on a head it parsed completely.
fn check(request: &httparse::Request<'_, '_>, head_bytes: &[u8]) -> Result<RequestHead, HeadError> {
    let malformed = HeadError::Malformed;
    let (Some(method), Some(target), Some(version)) =
        (request.method, request.path, request.version)
    else {
        return Err(malformed("bad_request_line"));
    };
    if method != "CONNECT" && has_bare_lf(head_bytes) {
        return Err(malformed("bare_lf"));
    }
    // httparse lets UTF-8 through; a URL must arrive percent-encoded (RFC 3986).
    if !target.is_ascii() {
        return Err(malformed("bad_target"));
    }
    let mut headers = Vec::with_capacity(request.headers.len());
    for header in request.headers.iter() {
        // httparse already refuses these; the guarantee is too important to leave implicit.
        if header
            .value
            .iter()
            .any(|&b| matches!(b, b'\0' | b'\r' | b'\n'))
        {
            return Err(malformed("bad_header_value"));
        }
        headers.push((header.name.to_owned(), header.value.to_vec()));
    }
    let head = RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version,
        headers,
    };
    if head.header_values("host").nth(1).is_some() {
        return Err(malformed("duplicate_host"));
    }
    check_framing(&head)?;
    Ok(head)
}

/// Whether a line ends in LF without the CR before it.
fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'\n') || bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r')
}

/// Refuses every head whose body length two HTTP implementations could read differently
/// (RFC 9112 §6.1, §6.3).
fn check_framing(head: &RequestHead) -> Result<(), HeadError> {
    check_body_framing(
        head.header_values("content-length"),
        head.header_values("transfer-encoding"),
        head.version == 0,
    )
}

/// The framing checks of [`parse_request_head`] on the `Content-Length` and
/// `Transfer-Encoding` values of any request head (later requests are parsed by hyper,
/// which accepts `gzip, chunked`): several differing lengths, a coding other than one
/// `chunked`, both headers, or a coding in HTTP/1.0 → [`HeadError::AmbiguousLength`].
pub fn check_body_framing<'a>(
    content_lengths: impl Iterator<Item = &'a [u8]>,
    transfer_encodings: impl Iterator<Item = &'a [u8]>,
    http10: bool,
) -> Result<(), HeadError> {
    let mut content_length: Option<u64> = None;
    for value in content_lengths {
        for item in value.split(|&b| b == b',') {
            let length =
                parse_decimal(trim_ows(item)).ok_or(HeadError::Malformed("bad_content_length"))?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(HeadError::AmbiguousLength);
            }
            content_length = Some(length);
        }
    }
    let mut codings = transfer_encodings
        .flat_map(|value| value.split(|&b| b == b','))
        .map(trim_ows)
        .peekable();
    if codings.peek().is_none() {
        return Ok(());
    }
    let only_chunked = codings
        .next()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none();
    if !only_chunked || content_length.is_some() || http10 {
        return Err(HeadError::AmbiguousLength);
    }
    Ok(())
}

/// 1*DIGIT that fits a u64.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Strips optional whitespace (SP, HTAB) from both ends.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| matches!(b, b' ' | b'\t');
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Longest host accepted: a DNS name of 253 characters plus a trailing dot, with room.
const MAX_HOST_LEN: usize = 255;

/// Splits a CONNECT request-target, `host:port` or `[v6]:port`, into the host (without
/// brackets, as sent: not lower-cased, trailing dot kept) and the port.
///
/// The host must be an IPv6 literal in brackets, or made of ASCII letters, digits, `-`,
/// `.` and `_` (a DNS name or an IPv4 literal); no userinfo, no zone id. The port is
/// required, decimal digits only, 1–65535. Errors are short snake_case reasons.
pub fn parse_authority(target: &str) -> Result<(String, u16), &'static str> {
    let bad_ipv6 = |host| {
        unbracketed(host)
            .parse::<Ipv6Addr>()
            .map_err(|_| "bad_ipv6")
    };
    let (host, port) = match split_port(target) {
        Ok((host, port)) => (host, port),
        Err(SplitError::Unclosed) => return Err("bad_ipv6"),
        // The address is judged before what follows it.
        Err(SplitError::AfterBracket(host)) => {
            bad_ipv6(host)?;
            return Err("missing_port");
        }
    };
    let bracketed = host.starts_with('[');
    if bracketed {
        bad_ipv6(host)?;
    }
    let port = port.ok_or("missing_port")?;
    let (host, port) = if bracketed {
        (unbracketed(host), port)
    } else {
        if host.contains(':') {
            return Err("unbracketed_ipv6");
        }
        if host.is_empty() {
            return Err("empty_host");
        }
        let host_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if host.len() > MAX_HOST_LEN || !host.chars().all(host_char) {
            return Err("bad_host");
        }
        (host, port)
    };
    if port.is_empty() {
        return Err("missing_port");
    }
    let port = parse_decimal(port.as_bytes())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .ok_or("bad_port")?;
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 65536;

    fn header_list(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
            .collect()
    }

    fn complete(input: &[u8]) -> (RequestHead, usize) {
        match parse_request_head(input, MAX) {
            HeadParse::Complete { head, len } => (head, len),
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn error(input: &[u8]) -> HeadError {
        match parse_request_head(input, MAX) {
            HeadParse::Error(error) => error,
            other => panic!(
                "expected an error for {:?}, got {other:?}",
                String::from_utf8_lossy(input)
            ),
        }
    }

    /// A real capture from `testdata/` (see its README) and the head it must parse to.
    struct Capture {
        name: &'static str,
        bytes: &'static [u8],
        head_len: usize,
        method: &'static str,
        target: &'static str,
        version: u8,
        headers: &'static [(&'static str, &'static str)],
    }

    const CAPTURES: &[Capture] = &[
        Capture {
            name: "connect_curl",
            bytes: include_bytes!("../../testdata/connect_curl.txt"),
            head_len: 116,
            method: "CONNECT",
            target: "example.test:443",
            version: 1,
            headers: &[
                ("Host", "example.test:443"),
                ("User-Agent", "curl/7.88.1"),
                ("Proxy-Connection", "Keep-Alive"),
            ],
        },
        Capture {
            name: "connect_curl_ipv6",
            bytes: include_bytes!("../../testdata/connect_curl_ipv6.txt"),
            head_len: 120,
            method: "CONNECT",
            target: "[2001:db8::1]:8443",
            version: 1,
            headers: &[
                ("Host", "[2001:db8::1]:8443"),
                ("User-Agent", "curl/7.88.1"),
                ("Proxy-Connection", "Keep-Alive"),
            ],
        },
        Capture {
            name: "connect_openssl",
            bytes: include_bytes!("../../testdata/connect_openssl.txt"),
            head_len: 67,
            method: "CONNECT",
            target: "example.test:443",
            version: 0,
            headers: &[("Proxy-Connection", "Keep-Alive")],
        },
        Capture {
            name: "get_curl",
            bytes: include_bytes!("../../testdata/get_curl.txt"),
            head_len: 129,
            method: "GET",
            target: "http://example.test/path",
            version: 1,
            headers: &[
                ("Host", "example.test"),
                ("User-Agent", "curl/7.88.1"),
                ("Accept", "*/*"),
                ("Proxy-Connection", "Keep-Alive"),
            ],
        },
        Capture {
            name: "post_curl",
            // The head, then the 7-byte body `a=1&b=2` that curl sent with it.
            bytes: include_bytes!("../../testdata/post_curl.txt"),
            head_len: 198,
            method: "POST",
            target: "http://example.test/form",
            version: 1,
            headers: &[
                ("Host", "example.test"),
                ("User-Agent", "curl/7.88.1"),
                ("Accept", "*/*"),
                ("Proxy-Connection", "Keep-Alive"),
                ("Content-Length", "7"),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
        },
    ];

    // Each real capture parses to exactly the head its client sent.
    #[test]
    fn a_connect_head_with_bare_lf_is_accepted_as_testssl_sends_it() {
        let input = b"CONNECT example.com:443 HTTP/1.0\n\n\x16\x03\x01";
        let (head, len) = complete(input);
        assert_eq!(head.method, "CONNECT");
        assert_eq!(head.target, "example.com:443");
        assert_eq!(head.version, 0);
        assert_eq!(
            &input[len..],
            b"\x16\x03\x01",
            "the TLS bytes stay for the tunnel"
        );
        let (head, _) = complete(b"CONNECT a:443 HTTP/1.1\nHost: a:443\r\nUser-Agent: x\n\n");
        assert_eq!(head.header_str("user-agent"), Some("x"));
    }

    #[test]
    fn captures_parse_exactly() {
        for c in CAPTURES {
            let expected = RequestHead {
                method: c.method.to_owned(),
                target: c.target.to_owned(),
                version: c.version,
                headers: header_list(c.headers),
            };
            assert_eq!(
                parse_request_head(c.bytes, MAX),
                HeadParse::Complete {
                    head: expected,
                    len: c.head_len
                },
                "{}",
                c.name
            );
        }
    }

    // The CONNECT captures' targets split into the host and port the client asked for.
    #[test]
    fn captured_connect_authorities() {
        let authority = |name: &str| {
            let c = CAPTURES.iter().find(|c| c.name == name).unwrap();
            parse_authority(&complete(c.bytes).0.target)
        };
        assert_eq!(
            authority("connect_curl"),
            Ok(("example.test".to_owned(), 443))
        );
        assert_eq!(
            authority("connect_openssl"),
            Ok(("example.test".to_owned(), 443))
        );
        assert_eq!(
            authority("connect_curl_ipv6"),
            Ok(("2001:db8::1".to_owned(), 8443))
        );
    }

    // Any TCP segmentation: every proper prefix of a head asks for more bytes.
    #[test]
    fn every_prefix_is_incomplete() {
        for c in CAPTURES {
            for end in 0..c.head_len {
                assert_eq!(
                    parse_request_head(&c.bytes[..end], MAX),
                    HeadParse::Incomplete,
                    "{} [..{end}]",
                    c.name
                );
            }
        }
    }

    // What follows the head (a body, or a ClientHello sent before the 200) is left alone.
    #[test]
    fn bytes_after_the_head_are_not_parsed() {
        let connect = CAPTURES[0].bytes;
        let early_tls = [connect, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]].concat();
        assert_eq!(complete(&early_tls).1, connect.len());
    }

    // Lookups are by case-insensitive name, first match; header_str needs UTF-8.
    #[test]
    fn header_lookup() {
        let (head, _) = complete(
            b"GET http://a.test/ HTTP/1.1\r\nX-A: one\r\nx-a: two\r\nX-Bin: \xff\xfe\r\n\r\n",
        );
        assert_eq!(head.header("x-A"), Some(&b"one"[..]));
        assert_eq!(head.header_str("X-A"), Some("one"));
        assert_eq!(head.header("x-bin"), Some(&b"\xff\xfe"[..]));
        assert_eq!(head.header_str("x-bin"), None);
        assert_eq!(head.header("missing"), None);
    }

    // Bad request lines and headers are refused with 400 and their own reason, as soon
    // as the offending byte is seen.
    #[test]
    fn malformed() {
        let many_headers: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let too_many_headers = format!("GET http://a.test/ HTTP/1.1\r\n{many_headers}\r\n");
        let cases: &[(&str, &[u8])] = &[
            ("bad_request_line", b"\x16\x03\x01\x02\x00"),
            ("bad_request_line", b"G\x01T / HTTP/1.1\r\n"),
            ("bad_request_line", b"GET  / HTTP/1.1\r\n\r\n"),
            ("bad_request_line", b"GET /\xff HTTP/1.1\r\n\r\n"),
            ("bad_version", b"GET / HTTP/2.0\r\n\r\n"),
            ("bad_version", b"GET / HTTP/1.2\r\n"),
            ("bad_line_ending", b"GET / HTTP/1.1\r\r\n\r\n"),
            ("bad_header_name", b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"),
            (
                "bad_header_name",
                b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            ),
            ("bad_header_name", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
            ("bad_header_value", b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"),
            ("bad_header_value", b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"),
            ("bare_lf", b"GET / HTTP/1.1\nHost: a\n\n"),
            ("bare_lf", b"GET / HTTP/1.1\r\nHost: a\n\r\n"),
            ("bare_lf", b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
            ("bare_lf", b"GET http://a/ HTTP/1.0\n\n"),
            ("bare_lf", b"connect a:443 HTTP/1.0\n\n"),
            (
                "bad_target",
                "GET http://a.test/é HTTP/1.1\r\n\r\n".as_bytes(),
            ),
            (
                "duplicate_host",
                b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n",
            ),
            (
                "bad_content_length",
                b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            ),
            (
                "bad_content_length",
                b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            ),
            (
                "bad_content_length",
                b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            ),
            (
                "bad_content_length",
                b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            ),
            (
                "bad_content_length",
                b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
            ),
            (
                "bad_content_length",
                b"POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n",
            ),
            (
                "bad_content_length",
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            ),
            ("too_many_headers", too_many_headers.as_bytes()),
        ];
        for &(reason, input) in cases {
            let error = error(input);
            assert_eq!(
                error,
                HeadError::Malformed(reason),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(error.status(), 400);
            assert_eq!(error.reason(), reason);
        }
        // Exactly MAX_HEADERS headers are fine.
        let just_enough: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        complete(format!("GET http://a.test/ HTTP/1.1\r\n{just_enough}\r\n").as_bytes());
    }

    // Heads over max_header_bytes: 431 as soon as the buffer reaches the limit.
    #[test]
    fn too_large() {
        let head = CAPTURES[0].bytes;
        let len = head.len();
        assert!(matches!(
            parse_request_head(head, len),
            HeadParse::Complete { .. }
        ));
        assert_eq!(
            parse_request_head(head, len - 1),
            HeadParse::Error(HeadError::TooLarge)
        );
        assert_eq!(parse_request_head(&head[..20], 21), HeadParse::Incomplete);
        assert_eq!(
            parse_request_head(&head[..20], 20),
            HeadParse::Error(HeadError::TooLarge)
        );
        let endless = [&b"GET http://a.test/ HTTP/1.1\r\nX: "[..], &[b'a'; 70_000]].concat();
        let error = error(&endless);
        assert_eq!(error, HeadError::TooLarge);
        assert_eq!((error.status(), error.reason()), (431, "header_too_large"));
    }

    // Bodies whose length two parsers could read differently are refused (smuggling).
    #[test]
    fn ambiguous_lengths() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ];
        for &input in cases {
            let error = error(input);
            assert_eq!(
                error,
                HeadError::AmbiguousLength,
                "{:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!((error.status(), error.reason()), (400, "ambiguous_length"));
        }
        let fine: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5 ,5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 0005\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding:  Chunked \r\n\r\n",
            b"POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\n",
        ];
        for &input in fine {
            complete(input);
        }
    }

    // CONNECT authorities: DNS names, IPv4, bracketed IPv6; a port is required.
    #[test]
    fn authorities() {
        type Expected = Result<(&'static str, u16), &'static str>;
        let ok = |host, port| Ok((host, port));
        let cases: &[(&str, Expected)] = &[
            ("example.test:443", ok("example.test", 443)),
            ("Example.TEST.:8443", ok("Example.TEST.", 8443)),
            ("under_score.test:1", ok("under_score.test", 1)),
            ("192.0.2.1:65535", ok("192.0.2.1", 65535)),
            ("[2001:db8::1]:443", ok("2001:db8::1", 443)),
            ("[::ffff:192.0.2.1]:443", ok("::ffff:192.0.2.1", 443)),
            ("example.test:0443", ok("example.test", 443)),
            ("example.test", Err("missing_port")),
            ("example.test:", Err("missing_port")),
            ("[2001:db8::1]", Err("missing_port")),
            ("[2001:db8::1]:", Err("missing_port")),
            ("[2001:db8::1]443", Err("missing_port")),
            ("example.test:0", Err("bad_port")),
            ("example.test:65536", Err("bad_port")),
            ("example.test:99999999999999999999999", Err("bad_port")),
            ("example.test:+443", Err("bad_port")),
            ("example.test:44 3", Err("bad_port")),
            ("example.test:https", Err("bad_port")),
            ("2001:db8::1:443", Err("unbracketed_ipv6")),
            ("[2001:db8::g]:443", Err("bad_ipv6")),
            ("[fe80::1%25eth0]:443", Err("bad_ipv6")),
            ("[192.0.2.1]:443", Err("bad_ipv6")),
            ("[2001:db8::1:443", Err("bad_ipv6")),
            (":443", Err("empty_host")),
            ("user@example.test:443", Err("bad_host")),
            ("example.test/path:443", Err("bad_host")),
            ("exa mple.test:443", Err("bad_host")),
            ("bücher.test:443", Err("bad_host")),
        ];
        for &(target, expected) in cases {
            let parsed = parse_authority(target);
            let parsed = match &parsed {
                Ok((host, port)) => Ok((host.as_str(), *port)),
                Err(reason) => Err(*reason),
            };
            assert_eq!(parsed, expected, "{target}");
        }
        let long = format!("{}:443", "a".repeat(MAX_HOST_LEN + 1));
        assert_eq!(parse_authority(&long), Err("bad_host"));
    }

    /// A valid head built from parts, with the head it must parse to.
    fn valid_head() -> impl Strategy<Value = (Vec<u8>, RequestHead)> {
        let method = prop::sample::select(vec!["CONNECT", "GET", "POST", "OPTIONS", "PROPFIND"]);
        let target = "[!-~]{1,60}";
        let headers = prop::collection::vec(
            (
                "x-[a-zA-Z0-9!#$%&'*+.^_`|~-]{0,20}",
                "[!-~]([ -~]{0,40}[!-~])?",
            ),
            0..12,
        );
        (method, target, 0..=1u8, headers).prop_map(|(method, target, version, headers)| {
            let mut bytes = format!("{method} {target} HTTP/1.{version}\r\n").into_bytes();
            for (name, value) in &headers {
                bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
            let head = RequestHead {
                method: method.to_owned(),
                target,
                version,
                headers: headers
                    .into_iter()
                    .map(|(n, v)| (n, v.into_bytes()))
                    .collect(),
            };
            (bytes, head)
        })
    }

    proptest! {
        // Arbitrary bytes never panic, and never claim more than they hold.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..2048),
            max in 0..3000usize,
        ) {
            if let HeadParse::Complete { len, .. } = parse_request_head(&bytes, max) {
                prop_assert!(len <= bytes.len() && len <= max);
            }
        }

        // Mostly-valid text with random bytes spliced in reaches the deeper checks.
        #[test]
        fn spliced_heads_never_panic(
            (bytes, _) in valid_head(),
            at in any::<usize>(),
            noise in prop::collection::vec(
                prop::sample::select(b"\r\n\0 :,\t\x7fa".to_vec()),
                1..4,
            ),
        ) {
            let at = at % bytes.len();
            let input = [&bytes[..at], &noise, &bytes[at..]].concat();
            if let HeadParse::Complete { len, .. } = parse_request_head(&input, MAX) {
                prop_assert!(len <= input.len());
            }
        }

        // A valid head parses to its parts; every proper prefix is Incomplete; whatever
        // follows it does not change the answer.
        #[test]
        fn valid_heads(
            (bytes, head) in valid_head(),
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let expected = HeadParse::Complete { head, len: bytes.len() };
            prop_assert_eq!(parse_request_head(&bytes, MAX), expected.clone());
            for end in 0..bytes.len() {
                prop_assert_eq!(parse_request_head(&bytes[..end], MAX), HeadParse::Incomplete);
            }
            let with_tail = [&bytes[..], &tail].concat();
            prop_assert_eq!(parse_request_head(&with_tail, MAX), expected);
        }

        // The limit: a head fits if and only if it is no longer than max_header_bytes,
        // and nothing past the limit is looked at.
        #[test]
        fn limit(
            (bytes, _) in valid_head(),
            max in 1..400usize,
            tail in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let with_tail = [&bytes[..], &tail].concat();
            let result = parse_request_head(&with_tail, max);
            if bytes.len() <= max {
                let fits = matches!(result, HeadParse::Complete { len, .. } if len == bytes.len());
                prop_assert!(fits);
            } else {
                prop_assert_eq!(&result, &HeadParse::Error(HeadError::TooLarge));
            }
            let capped = &with_tail[..with_tail.len().min(max)];
            prop_assert_eq!(result, parse_request_head(capped, max));
        }
    }
}
