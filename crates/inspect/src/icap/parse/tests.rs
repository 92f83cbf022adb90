//! The parser on responses captured from c-icap 0.5.10 with its virus_scan service and
//! clamd (see `testdata/README.md`), on hand-made edge cases, and on arbitrary bytes.

use super::*;
use proptest::prelude::*;

fn capture(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn complete(buf: &[u8]) -> (IcapResponse, usize) {
    parse_response(buf).unwrap().expect("a complete head")
}

/// Decode a whole chunked body, feeding the decoder one byte more at a time when
/// `trickle` (every split point is then exercised).
fn decode_body(buf: &[u8], trickle: bool) -> (Vec<u8>, bool, usize) {
    let mut decoder = ChunkDecoder::new();
    let mut data = Vec::new();
    let mut pos = 0;
    let mut visible = if trickle { 0 } else { buf.len() };
    loop {
        let (event, used) = decoder.next(&buf[pos..visible]).unwrap();
        if let Chunk::Data(range) = &event {
            data.extend_from_slice(&buf[pos + range.start..pos + range.end]);
        }
        pos += used;
        match event {
            Chunk::End { ieof } => return (data, ieof, pos),
            Chunk::Incomplete => {
                assert!(visible < buf.len(), "incomplete at the end of the input");
                visible += 1;
            }
            Chunk::Data(_) => {}
        }
    }
}

#[test]
fn options_of_the_virus_scan_service() {
    let buf = capture("options_virus_scan.bin");
    let (response, len) = complete(&buf);
    assert_eq!(len, buf.len());
    assert_eq!((response.status, response.reason.as_str()), (200, "OK"));
    assert_eq!(response.header("methods"), Some("RESPMOD, REQMOD"));
    assert_eq!(response.header("Preview"), Some("1024"));
    assert_eq!(response.header("Max-Connections"), Some("8"));
    assert_eq!(
        response.header("ISTag"),
        Some("\"CI0001-L5CkDhq+qWNs+PZ5DxxXsAAA\"")
    );
    let encapsulated = response.encapsulated.unwrap();
    assert_eq!(encapsulated.body(), None);
    assert_eq!(encapsulated.heads_len(), 0);
}

#[test]
fn a_204_has_no_encapsulated_message() {
    for name in [
        "respmod_clean_ieof.bin",
        "reqmod_clean_ieof.bin",
        "respmod_clean_after_preview.bin",
    ] {
        let buf = capture(name);
        let mut head = &buf[..];
        // After a preview, c-icap's `100 Continue` comes first on the same connection.
        let (first, len) = complete(head);
        if first.status == 100 {
            assert_eq!(first.encapsulated, None);
            head = &head[len..];
        }
        let (response, len) = complete(head);
        assert_eq!(response.status, 204, "{name}");
        assert_eq!(len, head.len(), "{name}");
        assert!(!response.closes());
        assert_eq!(response.threat(), None);
    }
}

#[test]
fn a_detection_names_the_threat_and_carries_the_virus_page() {
    for name in [
        "respmod_eicar_ieof.bin",
        "respmod_eicar_no_preview.bin",
        "reqmod_eicar_ieof.bin",
    ] {
        let buf = capture(name);
        let (response, len) = complete(&buf);
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(
            response.threat().as_deref(),
            Some("Sluice.Test.EICAR.UNOFFICIAL"),
            "{name}"
        );
        assert_eq!(
            response.header("X-Violations-Found"),
            Some("1\n-\nSluice.Test.EICAR.UNOFFICIAL\n0\n0")
        );
        let encapsulated = response.encapsulated.unwrap();
        let head = encapsulated.head(Section::ResHdr).unwrap();
        let message = &buf[len..];
        assert_eq!(http_status(&message[head.clone()]).unwrap(), 403);
        assert_eq!(encapsulated.body(), Some(Section::ResBody));
        let body = &message[encapsulated.heads_len()..];
        for trickle in [false, true] {
            let (page, ieof, used) = decode_body(body, trickle);
            assert!(!ieof);
            assert_eq!(used, body.len());
            let page = String::from_utf8(page).unwrap();
            assert!(page.contains("VIRUS FOUND"), "{page}");
            assert!(page.contains("Sluice.Test.EICAR.UNOFFICIAL"));
        }
    }
}

#[test]
fn a_continue_then_a_detection_on_one_connection() {
    let buf = capture("respmod_eicar_after_preview.bin");
    let (first, len) = complete(&buf);
    assert_eq!((first.status, first.reason.as_str()), (100, "Continue"));
    let (second, _) = complete(&buf[len..]);
    assert_eq!(second.status, 200);
    assert_eq!(
        second.threat().as_deref(),
        Some("Sluice.Test.EICAR.UNOFFICIAL")
    );
}

#[test]
fn an_unmodified_echo_is_the_original_response() {
    let buf = capture("respmod_clean_no_preview.bin");
    let (response, len) = complete(&buf);
    assert_eq!(response.threat(), None);
    let encapsulated = response.encapsulated.unwrap();
    let message = &buf[len..];
    let head = encapsulated.head(Section::ResHdr).unwrap();
    assert_eq!(http_status(&message[head]).unwrap(), 200);
    let (body, _, _) = decode_body(&message[encapsulated.heads_len()..], false);
    assert_eq!(body, vec![b'B'; 5000]);
}

#[test]
fn errors_close_the_connection() {
    for (name, status) in [
        ("garbage_request.bin", 400),
        ("options_unknown_service.bin", 404),
    ] {
        let (response, _) = complete(&capture(name));
        assert_eq!(response.status, status);
        assert!(response.closes());
    }
}

#[test]
fn every_prefix_of_a_capture_is_incomplete() {
    let buf = capture("respmod_eicar_ieof.bin");
    let (_, len) = complete(&buf);
    for end in 0..len {
        assert_eq!(parse_response(&buf[..end]), Ok(None), "{end}");
    }
}

#[test]
fn threat_names_from_each_header() {
    let with = |name: &str, value: &str| IcapResponse {
        status: 200,
        reason: "OK".into(),
        headers: vec![(name.into(), value.into())],
        encapsulated: None,
    };
    assert_eq!(
        with(
            "x-infection-found",
            "Type=0; Resolution=2; threat=Win.Test.EICAR_HDB-1;"
        )
        .threat(),
        Some("Win.Test.EICAR_HDB-1".into())
    );
    assert_eq!(
        with("X-Violations-Found", "1\nfile.exe\nW32/Trojan\n1234\n0").threat(),
        Some("W32/Trojan".into())
    );
    assert_eq!(
        with("X-Virus-ID", " EICAR Test String ").threat(),
        Some("EICAR Test String".into())
    );
    assert_eq!(
        with("X-Infection-Found", "Type=0; Resolution=2;").threat(),
        None
    );
    assert_eq!(with("X-Virus-ID", "").threat(), None);
    assert_eq!(with("X-Violations-Found", "0").threat(), None);
}

#[test]
fn malformed_heads_say_why() {
    for (input, why) in [
        (
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            "the status line does not start with the protocol version",
        ),
        (
            b"ICAP/1.0 20 OK\r\n\r\n",
            "the status code is not three digits",
        ),
        (b"ICAP/1.0\r\n\r\n", "no status code"),
        (
            b"ICAP/1.0 200 OK\r\nNo colon\r\n\r\n",
            "header line without `:`",
        ),
        (
            b"ICAP/1.0 200 OK\r\n folded\r\n\r\n",
            "continuation line without a header",
        ),
        (b"ICAP/1.0 200 OK\r\nBad Name: x\r\n\r\n", "bad header name"),
        (
            b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0\r\n\r\n",
            "Encapsulated has no body section",
        ),
        (
            b"ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=10, res-body=5\r\n\r\n",
            "Encapsulated offsets decrease",
        ),
        (
            b"ICAP/1.0 200 OK\r\nEncapsulated: res-body=0, res-hdr=5\r\n\r\n",
            "Encapsulated section after the body",
        ),
        (
            b"ICAP/1.0 200 OK\r\nEncapsulated: foo=0\r\n\r\n",
            "unknown Encapsulated section",
        ),
        (
            b"ICAP/1.0 200 OK\r\nEncapsulated: null-body=x\r\n\r\n",
            "bad Encapsulated offset",
        ),
        (b"ICAP/1.0 200 \xff\r\n\r\n", "ICAP head is not UTF-8"),
    ] {
        assert_eq!(
            parse_response(input),
            Err(ParseError::Malformed(why)),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    let huge = [b"ICAP/1.0 200 OK\r\nX: ".as_slice(), &vec![b'a'; MAX_HEAD]].concat();
    assert_eq!(parse_response(&huge), Err(ParseError::HeadTooLarge));
}

#[test]
fn chunked_bodies_with_extensions_trailers_and_ieof() {
    let (data, ieof, used) =
        decode_body(b"5\r\nhello\r\n3;x=y\r\n!!!\r\n0; ieof\r\n\r\nNEXT", false);
    assert_eq!((data.as_slice(), ieof, used), (&b"hello!!!"[..], true, 33));
    let (data, ieof, _) = decode_body(b"A\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n", true);
    assert_eq!((data.as_slice(), ieof), (&b"0123456789"[..], false));
    for (bad, why) in [
        (&b"x\r\n"[..], "bad chunk size"),
        (b"+5\r\nhello\r\n", "bad chunk size"),
        (b"12345678901234567\r\n", "bad chunk size"),
        (b"5\r\nhelloXX", "chunk data not followed by CRLF"),
    ] {
        let mut decoder = ChunkDecoder::new();
        let mut pos = 0;
        let error = loop {
            match decoder.next(&bad[pos..]) {
                Ok((Chunk::Incomplete, 0)) => panic!("no error for {bad:?}"),
                Ok((_, used)) => pos += used,
                Err(e) => break e,
            }
        };
        assert_eq!(error, ParseError::Malformed(why), "{bad:?}");
    }
    let long = vec![b'1'; MAX_CHUNK_LINE + 2];
    assert!(ChunkDecoder::new().next(&long).is_err());
}

proptest! {
    #[test]
    fn parse_response_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(Some((response, len))) = parse_response(&bytes) {
            prop_assert!(len <= bytes.len());
            let _ = response.threat();
            let _ = response.closes();
        }
        let _ = http_status(&bytes);
    }

    #[test]
    fn heads_with_arbitrary_headers_never_panic(
        status in 0u16..1000,
        headers in proptest::collection::vec(("[A-Za-z-]{1,12}", "[ -~\t]{0,30}"), 0..6),
    ) {
        let mut text = format!("ICAP/1.0 {status:03} Reason\r\n");
        for (name, value) in &headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        let _ = parse_response(text.as_bytes());
    }

    #[test]
    fn the_chunk_decoder_never_panics_and_always_progresses(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut decoder = ChunkDecoder::new();
        let mut pos = 0;
        while let Ok((event, used)) = decoder.next(&bytes[pos..]) {
            prop_assert!(pos + used <= bytes.len());
            pos += used;
            if matches!(event, Chunk::End { .. } | Chunk::Incomplete) {
                break;
            }
        }
    }

    #[test]
    fn chunked_encoding_round_trips(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..64), 0..8),
    ) {
        let mut encoded = Vec::new();
        for chunk in &chunks {
            encoded.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            encoded.extend_from_slice(chunk);
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"0\r\n\r\n");
        let (data, ieof, used) = decode_body(&encoded, true);
        prop_assert_eq!(data, chunks.concat());
        prop_assert!(!ieof);
        prop_assert_eq!(used, encoded.len());
    }
}
