//! The PROXY protocol header (v1 text, v2 binary) that a load balancer such as HAProxy
//! sends first on each connection when `proxy.proxy_protocol = true`: it carries the real
//! client's address, which rules and logs then use. Parsing is the `ppp` crate's; this
//! module turns its answer into what the data path needs.

use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2, HeaderResult, PartialResult};

/// Bytes read at most while waiting for a header (v1 is at most 107 bytes; v2 headers
/// from load balancers carry a few TLVs at most).
pub const MAX_PROXY_HEADER: usize = 4096;

#[derive(Debug, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A whole header of `len` bytes; `client` is `None` for a LOCAL (health-check) or
    /// UNKNOWN header, which speaks for the load balancer itself.
    Complete {
        client: Option<SocketAddr>,
        len: usize,
    },
    Incomplete,
    Invalid,
}

/// The longest v1 header, its CRLF included.
const V1_MAX: usize = 107;

pub fn parse_proxy_header(buf: &[u8]) -> ProxyHeader {
    if buf.starts_with(b"PROXY ") {
        return parse_v1(buf);
    }
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return if buf.len() >= MAX_PROXY_HEADER {
            ProxyHeader::Invalid
        } else {
            ProxyHeader::Incomplete
        };
    }
    match result {
        HeaderResult::V2(Ok(header)) => ProxyHeader::Complete {
            client: match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            },
            len: header.header.len(),
        },
        _ => ProxyHeader::Invalid,
    }
}

/// A v1 header is one line, ended by its CRLF: until that has arrived the header is
/// incomplete, whatever a parse of the partial line says (`ppp` refuses some, such as a
/// line cut after the source port), so a header split across reads is never refused.
/// The line is then parsed alone, and its length is the header's: `ppp` reports a
/// shorter one for an UNKNOWN line with text after `UNKNOWN` (which the protocol says to
/// ignore), and a TCP line must be exactly what `ppp` parsed.
fn parse_v1(buf: &[u8]) -> ProxyHeader {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            ProxyHeader::Invalid
        } else {
            ProxyHeader::Incomplete
        };
    };
    let line = &buf[..end + 2];
    let HeaderResult::V1(Ok(header)) = HeaderResult::parse(line) else {
        return ProxyHeader::Invalid;
    };
    let client = match header.addresses {
        v1::Addresses::Tcp4(a) => SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
        v1::Addresses::Tcp6(a) => SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
        v1::Addresses::Unknown => {
            return ProxyHeader::Complete {
                client: None,
                len: line.len(),
            }
        }
    };
    if header.header.len() != line.len() {
        return ProxyHeader::Invalid;
    }
    ProxyHeader::Complete {
        client: Some(client),
        len: line.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 PROXY header for TCP over IPv4.
    pub fn v2_header(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12]);
        header.extend_from_slice(&src);
        header.extend_from_slice(&dst);
        header.extend_from_slice(&sport.to_be_bytes());
        header.extend_from_slice(&dport.to_be_bytes());
        header
    }

    #[test]
    fn v1_and_v2_headers_give_the_client_address_and_their_length() {
        let v1 = b"PROXY TCP4 203.0.113.9 127.0.0.1 51000 3128\r\nCONNECT";
        assert_eq!(
            parse_proxy_header(v1),
            ProxyHeader::Complete {
                client: Some("203.0.113.9:51000".parse().unwrap()),
                len: 45
            }
        );
        let v6 = b"PROXY TCP6 2001:db8::7 ::1 40000 3128\r\n";
        assert_eq!(
            parse_proxy_header(v6),
            ProxyHeader::Complete {
                client: Some("[2001:db8::7]:40000".parse().unwrap()),
                len: v6.len()
            }
        );
        let mut v2 = v2_header([198, 51, 100, 4], [127, 0, 0, 1], 61000, 3128);
        let len = v2.len();
        v2.extend_from_slice(b"CONNECT x");
        assert_eq!(
            parse_proxy_header(&v2),
            ProxyHeader::Complete {
                client: Some("198.51.100.4:61000".parse().unwrap()),
                len
            }
        );
        assert_eq!(
            parse_proxy_header(b"PROXY UNKNOWN\r\n"),
            ProxyHeader::Complete {
                client: None,
                len: 15
            }
        );
    }

    /// The fuzz target's properties, on the seed corpus (real shapes and spoofing
    /// attempts): what follows a header never changes the answer, and a header read
    /// in pieces is never refused before it is whole.
    fn check_properties(data: &[u8]) -> ProxyHeader {
        let answer = parse_proxy_header(data);
        if let ProxyHeader::Complete { len, .. } = answer {
            assert!(len > 0 && len <= data.len());
            assert_eq!(parse_proxy_header(&data[..len]), answer);
            for cut in 0..len {
                assert_eq!(
                    parse_proxy_header(&data[..cut]),
                    ProxyHeader::Incomplete,
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(&data[..len])
                );
            }
        }
        answer
    }

    #[test]
    fn the_seed_corpus_keeps_the_parser_properties() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/proxy_header");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let mut data = std::fs::read(&path).unwrap();
            let answer = check_properties(&data);
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("spoof_v2_length_short") || name.starts_with("spoof_v2_version") {
                assert_eq!(answer, ProxyHeader::Invalid, "{name}");
            }
            if name.starts_with("spoof_v2_length_huge") {
                // Waits for more, but only up to the reader's limit.
                assert_eq!(answer, ProxyHeader::Incomplete, "{name}");
                data.resize(MAX_PROXY_HEADER, 0);
                assert_eq!(parse_proxy_header(&data), ProxyHeader::Invalid, "{name}");
            }
            seen += 1;
        }
        assert!(seen >= 20, "the seed corpus is there");
    }

    #[test]
    fn a_v1_header_cut_anywhere_before_its_line_end_is_incomplete() {
        let v1 = b"PROXY TCP6 2001:db8::7 ::1 40000 3128\r\n";
        for cut in 0..v1.len() {
            assert_eq!(
                parse_proxy_header(&v1[..cut]),
                ProxyHeader::Incomplete,
                "cut at {cut}"
            );
        }
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert_eq!(parse_proxy_header(&endless), ProxyHeader::Invalid);
    }

    #[test]
    fn an_unknown_line_ends_at_its_crlf() {
        // Found by the fuzz target: ppp stopped this header after 17 bytes.
        let unknown = b"PROXY UNKNOWN \n\rff A\r\n\0\r\nQPU";
        assert_eq!(
            parse_proxy_header(unknown),
            ProxyHeader::Complete {
                client: None,
                len: 22
            }
        );
        assert_eq!(
            parse_proxy_header(b"PROXY TCP4 10.9.9.9 127.0.0.1 1 3128 more\r\n"),
            ProxyHeader::Invalid
        );
    }

    #[test]
    fn a_second_header_is_not_read_as_one() {
        let two =
            b"PROXY TCP4 10.9.9.9 127.0.0.1 1 3128\r\nPROXY TCP4 203.0.113.9 127.0.0.1 2 3128\r\n";
        assert_eq!(
            parse_proxy_header(two),
            ProxyHeader::Complete {
                client: Some("10.9.9.9:1".parse().unwrap()),
                len: 38
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            check_properties(&data);
        }

        #[test]
        fn never_panics_after_a_v2_signature(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut data = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            data.extend_from_slice(&tail);
            check_properties(&data);
        }
    }

    #[test]
    fn partial_and_bogus_headers() {
        assert_eq!(
            parse_proxy_header(b"PROXY TCP4 203.0"),
            ProxyHeader::Incomplete
        );
        assert_eq!(
            parse_proxy_header(b"\r\n\r\n\0\r\n"),
            ProxyHeader::Incomplete
        );
        assert_eq!(
            parse_proxy_header(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n"),
            ProxyHeader::Invalid
        );
        assert_eq!(
            parse_proxy_header(b"PROXY TCP4 not-an-ip 1.2.3.4 1 2\r\n"),
            ProxyHeader::Invalid
        );
    }
}
