//! Feeds arbitrary bytes to the ClientHello peek parser, at once and in two reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_tls::client_hello::{peek, Peek, Peeker};

fuzz_target!(|data: &[u8]| {
    let answer = peek(data);
    if let Peek::Complete { consumed, .. } = answer {
        assert!(consumed <= data.len());
    }
    // The resumable parser, given the same bytes in two reads, agrees.
    let mut peeker = Peeker::default();
    if peeker.peek(&data[..data.len() / 2]) == Peek::Incomplete {
        assert_eq!(peeker.peek(data), answer);
    }
});
