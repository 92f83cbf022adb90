//! Feeds arbitrary bytes to the request-head parser and the CONNECT authority parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_proxy::head::{parse_authority, parse_request_head, HeadParse};

fuzz_target!(|data: &[u8]| {
    // A small limit reaches the 431 path; the SPEC default covers everything else.
    for max in [64, 65536] {
        if let HeadParse::Complete { head, len } = parse_request_head(data, max) {
            assert!(len <= data.len().min(max));
            let _ = parse_authority(&head.target);
        }
    }
    if let Ok(target) = std::str::from_utf8(data) {
        let _ = parse_authority(target);
    }
});
