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

pub fn parse_proxy_header(buf: &[u8]) -> ProxyHeader {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return if buf.len() >= MAX_PROXY_HEADER {
            ProxyHeader::Invalid
        } else {
            ProxyHeader::Incomplete
        };
    }
    match result {
        HeaderResult::V1(Ok(header)) => ProxyHeader::Complete {
            client: match header.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v1::Addresses::Unknown => None,
            },
            len: header.header.len(),
        },
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
