//! Feeds arbitrary bytes to the ICAP response parser: the head, what follows it as
//! encapsulated heads and a chunked body, and the body decoder fed in two reads that
//! must agree with one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_inspect::icap::parse::{http_status, parse_response, Chunk, ChunkDecoder};

/// Decode a chunked body from `data`, handing the decoder `split` bytes first and the
/// rest later; the body bytes and where it ended (or `None` on an error or
/// incomplete).
fn decode(data: &[u8], split: usize) -> Option<(Vec<u8>, usize)> {
    let mut decoder = ChunkDecoder::new();
    let mut body = Vec::new();
    let mut pos = 0;
    let mut visible = split.min(data.len());
    loop {
        let (event, used) = decoder.next(&data[pos..visible]).ok()?;
        assert!(pos + used <= visible);
        if let Chunk::Data(range) = &event {
            assert!(range.end <= used);
            body.extend_from_slice(&data[pos + range.start..pos + range.end]);
        }
        pos += used;
        match event {
            Chunk::End { .. } => return Some((body, pos)),
            Chunk::Incomplete if visible == data.len() => return None,
            Chunk::Incomplete => visible = data.len(),
            Chunk::Data(_) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((response, len))) = parse_response(data) {
        assert!(len <= data.len());
        let _ = response.threat();
        let _ = response.closes();
        let rest = &data[len..];
        if let Some(encapsulated) = &response.encapsulated {
            let heads = encapsulated.heads_len();
            if let Some(range) = encapsulated.head(sluice_inspect::icap::parse::Section::ResHdr) {
                if let Some(head) = rest.get(range) {
                    let _ = http_status(head);
                }
            }
            if let Some(body) = rest.get(heads..) {
                let whole = decode(body, body.len());
                let split = decode(body, body.len() / 2);
                assert_eq!(whole, split);
            }
        }
    }
    let _ = http_status(data);
    let whole = decode(data, data.len());
    assert_eq!(whole, decode(data, data.len() / 3));
});
