//! Serializing ICAP requests (RFC 3507 §4.3, §4.4): the ICAP head with its
//! `Encapsulated` offsets, the encapsulated HTTP heads, and chunk framing. Pure.
//!
//! Credentials (`Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`) are not
//! copied into the encapsulated heads: a virus scan does not need them, and the ICAP
//! server is another system that should not see them.
//!
//! The head of the message whose body is sent says `Content-Length: <body length>` in
//! place of the original framing (`Content-Length` or `Transfer-Encoding: chunked`):
//! the body is sent decoded and whole, and servers such as c-icap's virus_scan only
//! hold back their answer until the end of a body whose length they know (without it
//! they start streaming the body back, and a detection then comes too late to be
//! named).

use http::{request, response, HeaderMap};

/// Headers never sent to the ICAP server.
const WITHHELD: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];
/// The original framing, replaced in the head of the message whose body is sent.
const FRAMING: [&str; 2] = ["content-length", "transfer-encoding"];

/// The ICAP methods that carry a body to scan (OPTIONS has its own [`options`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Scan a request (an upload).
    Reqmod,
    /// Scan a response (a download).
    Respmod,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Reqmod => "REQMOD",
            Method::Respmod => "RESPMOD",
        }
    }
}

/// Where a request goes: `icap://host:port/service` and its `Host` header value.
#[derive(Clone, Debug)]
pub struct Target {
    /// The request-line URI.
    pub uri: String,
    /// `host:port`.
    pub host: String,
}

/// `OPTIONS` for the service.
pub fn options(target: &Target) -> Vec<u8> {
    format!(
        "OPTIONS {} ICAP/1.0\r\nHost: {}\r\nEncapsulated: null-body=0\r\n\r\n",
        target.uri, target.host
    )
    .into_bytes()
}

/// What a `REQMOD` or `RESPMOD` carries.
pub struct Modify<'a> {
    /// `REQMOD` or `RESPMOD`.
    pub method: Method,
    /// The HTTP request (always encapsulated: it gives the server the URL).
    pub request: &'a request::Parts,
    /// The HTTP response, for `RESPMOD`.
    pub response: Option<&'a response::Parts>,
    /// The length of the body that follows (`req-body`/`res-body`), or `None` for
    /// `null-body`.
    pub body_len: Option<u64>,
    /// `Preview: n`, when a preview is sent.
    pub preview: Option<usize>,
}

/// The ICAP head and encapsulated HTTP heads of a `REQMOD` or `RESPMOD`, up to where
/// the chunked body starts. `Allow: 204` is always sent: a clean body then costs no
/// echo.
pub fn modify(target: &Target, modify: &Modify<'_>) -> Vec<u8> {
    // The body belongs to the response when there is one, else to the request.
    let (request_len, response_len) = match modify.response {
        Some(_) => (None, modify.body_len),
        None => (modify.body_len, None),
    };
    let request_head = http_request_head(modify.request, request_len);
    let response_head = modify
        .response
        .map(|response| http_response_head(response, response_len));
    let mut encapsulated = String::from("req-hdr=0");
    let mut offset = request_head.len();
    if let Some(head) = &response_head {
        encapsulated.push_str(&format!(", res-hdr={offset}"));
        offset += head.len();
    }
    let body = match (modify.body_len, modify.method) {
        (None, _) => "null-body",
        (Some(_), Method::Respmod) => "res-body",
        (Some(_), Method::Reqmod) => "req-body",
    };
    encapsulated.push_str(&format!(", {body}={offset}"));
    let mut out = format!(
        "{} {} ICAP/1.0\r\nHost: {}\r\nAllow: 204\r\n",
        modify.method.as_str(),
        target.uri,
        target.host
    );
    if let Some(preview) = modify.preview {
        out.push_str(&format!("Preview: {preview}\r\n"));
    }
    out.push_str(&format!("Encapsulated: {encapsulated}\r\n\r\n"));
    let mut out = out.into_bytes();
    out.extend_from_slice(&request_head);
    if let Some(head) = response_head {
        out.extend_from_slice(&head);
    }
    out
}

/// `METHOD target HTTP/1.1`, the headers, and a `Host` when the request has none (an
/// HTTP/2 request carries it in `:authority`). The target is the URI as received:
/// absolute form for proxy and HTTP/2 requests. `body_len`: see [`headers`].
pub fn http_request_head(parts: &request::Parts, body_len: Option<u64>) -> Vec<u8> {
    let mut out = format!("{} {} HTTP/1.1\r\n", parts.method, parts.uri).into_bytes();
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            out.extend_from_slice(format!("host: {authority}\r\n").as_bytes());
        }
    }
    headers(&mut out, &parts.headers, body_len);
    out
}

/// `HTTP/1.1 CODE reason` and the headers. `body_len`: see [`headers`].
pub fn http_response_head(parts: &response::Parts, body_len: Option<u64>) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    )
    .into_bytes();
    headers(&mut out, &parts.headers, body_len);
    out
}

/// The header lines (credentials withheld) and the blank line. With `body_len`, the
/// body sent is this head's: its framing becomes `content-length: <body_len>`.
fn headers(out: &mut Vec<u8>, headers: &HeaderMap, body_len: Option<u64>) {
    for (name, value) in headers {
        let framing = body_len.is_some() && FRAMING.contains(&name.as_str());
        if framing || WITHHELD.contains(&name.as_str()) {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(len) = body_len {
        out.extend_from_slice(format!("content-length: {len}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// The size line of a chunk of `len` bytes.
pub fn chunk_size(len: usize) -> Vec<u8> {
    format!("{len:x}\r\n").into_bytes()
}

/// The end of a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";
/// The last chunk after a preview that is not the whole body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// The last chunk of a preview that is the whole body (RFC 3507 §4.5).
pub const LAST_CHUNK_IEOF: &[u8] = b"0; ieof\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            uri: "icap://127.0.0.1:1344/avscan".into(),
            host: "127.0.0.1:1344".into(),
        }
    }

    fn request(uri: &str) -> request::Parts {
        http::Request::get(uri)
            .header("user-agent", "curl/8")
            .header("cookie", "session=secret")
            .header("authorization", "Basic c2VjcmV0")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn response() -> response::Parts {
        http::Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .header("set-cookie", "id=secret")
            .header("transfer-encoding", "chunked")
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn respmod_with_preview_has_offsets_to_each_head() {
        let req = request("https://www.example.com/file.bin");
        let res = response();
        let bytes = modify(
            &target(),
            &Modify {
                method: Method::Respmod,
                request: &req,
                response: Some(&res),
                body_len: Some(5000),
                preview: Some(1024),
            },
        );
        let text = String::from_utf8(bytes).unwrap();
        let request_head = "GET https://www.example.com/file.bin HTTP/1.1\r\nhost: www.example.com\r\nuser-agent: curl/8\r\n\r\n";
        let response_head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 5000\r\n\r\n";
        let expected = format!(
            "RESPMOD icap://127.0.0.1:1344/avscan ICAP/1.0\r\nHost: 127.0.0.1:1344\r\nAllow: 204\r\nPreview: 1024\r\nEncapsulated: req-hdr=0, res-hdr={}, res-body={}\r\n\r\n{request_head}{response_head}",
            request_head.len(),
            request_head.len() + response_head.len()
        );
        assert_eq!(text, expected);
        assert!(!text.contains("secret"));
    }

    #[test]
    fn reqmod_and_empty_bodies() {
        let mut req = request("/upload");
        req.method = http::Method::POST;
        req.headers
            .insert("host", "origin.example".parse().unwrap());
        req.headers.insert("content-length", "0".parse().unwrap());
        let bytes = modify(
            &target(),
            &Modify {
                method: Method::Reqmod,
                request: &req,
                response: None,
                body_len: None,
                preview: None,
            },
        );
        let text = String::from_utf8(bytes).unwrap();
        let request_head =
            "POST /upload HTTP/1.1\r\nuser-agent: curl/8\r\nhost: origin.example\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            text,
            format!(
                "REQMOD icap://127.0.0.1:1344/avscan ICAP/1.0\r\nHost: 127.0.0.1:1344\r\nAllow: 204\r\nEncapsulated: req-hdr=0, null-body={}\r\n\r\n{request_head}",
                request_head.len()
            )
        );
        assert_eq!(
            String::from_utf8(options(&target())).unwrap(),
            "OPTIONS icap://127.0.0.1:1344/avscan ICAP/1.0\r\nHost: 127.0.0.1:1344\r\nEncapsulated: null-body=0\r\n\r\n"
        );
        assert_eq!(chunk_size(4096), b"1000\r\n");
        // An upload's head gets the length of the body sent.
        let head = String::from_utf8(http_request_head(&req, Some(12))).unwrap();
        assert!(
            head.ends_with("host: origin.example\r\ncontent-length: 12\r\n\r\n"),
            "{head}"
        );
    }
}
