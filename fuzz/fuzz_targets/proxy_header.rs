//! Feeds arbitrary bytes to the PROXY header parser (v1 text, v2 binary), whose answer
//! decides which client address rules and logs believe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proxy::proxy_header::{parse_proxy_header, ProxyHeader};

fuzz_target!(|data: &[u8]| {
    let answer = parse_proxy_header(data);
    if let ProxyHeader::Complete { len, .. } = answer {
        assert!(len > 0 && len <= data.len());
        // The answer depends on the header's bytes only: what follows (the request
        // head) cannot change the client address.
        assert_eq!(parse_proxy_header(&data[..len]), answer);
        // The header read in pieces is never refused before it is whole (the reader
        // closes the connection on `Invalid`).
        for cut in [len / 2, len - 1] {
            assert_eq!(
                parse_proxy_header(&data[..cut]),
                ProxyHeader::Incomplete,
                "a prefix of {cut} of {len} bytes"
            );
        }
    }
});
