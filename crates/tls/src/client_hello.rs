//! The ClientHello peek parser (SPEC §1 step 3).
//!
//! The proxy reads the client's first bytes into a buffer without forwarding them and
//! asks after every read — [`Peeker::peek`], or the stateless [`peek`] — until the answer
//! is something other than [`Peek::Incomplete`]. The parser never consumes or alters the
//! buffer: the held bytes are later sent to the server unchanged (tunnel) or replayed
//! into rustls (bump).
//!
//! Not TLS is decided from the first two bytes; record-layer and handshake-header faults
//! as soon as they are buffered; faults inside the ClientHello body once it is complete.
//!
//! What it accepts:
//! - a ClientHello handshake message split over any number of TLS handshake records
//!   (record boundaries anywhere, even inside the 4-byte handshake header), received in any
//!   TCP segmentation: every proper prefix of a valid input is [`Peek::Incomplete`];
//! - records of 1 to 16384 + 2048 bytes, record version `3.x` with any minor version.
//!
//! What it rejects, as [`Peek::Malformed`] with a short snake_case reason:
//! - a record that is not a handshake record once the first one was (e.g. an alert);
//! - a handshake message other than ClientHello;
//! - bytes after the ClientHello in the record that holds its end (RFC 8446 §5.1: the
//!   ClientHello must end at a record boundary);
//! - inconsistent lengths anywhere, a session id over 32 bytes, an empty or odd cipher
//!   suite list, no compression method, a duplicated extension type;
//! - a `server_name` whose host_name is empty, not printable ASCII, or given twice;
//! - an empty ALPN protocol name, a malformed `supported_versions` list.
//!
//! The whole input the parser looks at is capped at [`MAX_CLIENT_HELLO_BYTES`] (record
//! headers included); it never reads a byte beyond that cap, even when given more.
//!
//! Std only: no sockets, no clock, no tokio.

/// Cap on the buffered bytes of a ClientHello, record headers included (SPEC: 64 KiB).
pub const MAX_CLIENT_HELLO_BYTES: usize = 64 * 1024;

/// TLS record header: content type (1), legacy version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// Largest record accepted: the ciphertext limit 2^14 + 2048 of RFC 8446 §5.2, more
/// lenient than the 2^14 plaintext limit so odd but harmless clients still pass.
const MAX_RECORD_LEN: usize = 16384 + 2048;
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// Handshake header: message type (1), length (3).
const HANDSHAKE_HEADER_LEN: usize = 4;
const HANDSHAKE_TYPE_CLIENT_HELLO: u8 = 1;
const MAX_SESSION_ID_LEN: usize = 32;

const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
const SERVER_NAME_TYPE_HOST_NAME: u8 = 0;

/// What the proxy needs to know from a ClientHello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The `server_name` extension's host_name, exactly as sent (printable ASCII, not
    /// empty; case and a trailing dot are kept).
    pub sni: Option<String>,
    /// ALPN protocols offered, in the client's order; empty without the extension.
    pub alpn: Vec<Vec<u8>>,
    /// The `supported_versions` extension with GREASE values removed when present, else
    /// the single `legacy_version` of the hello.
    pub versions: Vec<u16>,
    /// Whether the hello carries `encrypted_client_hello` (0xfe0d), real or GREASE.
    pub ech: bool,
}

/// The answer of [`peek`] for the bytes buffered so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    /// A complete ClientHello; `consumed` = bytes up to the end of the TLS record that
    /// held its last byte.
    Complete {
        /// The parsed hello.
        hello: ClientHello,
        /// Length of the records that carried the hello; later bytes are not looked at.
        consumed: usize,
    },
    /// Need more bytes (and the buffer is still under the cap).
    Incomplete,
    /// The first bytes are not a TLS handshake record (e.g. "GET ", SSH banner, SSLv2).
    NotTls,
    /// A TLS handshake was begun but is invalid; the reason is a short snake_case text
    /// for logs.
    Malformed(&'static str),
    /// The ClientHello does not fit in [`MAX_CLIENT_HELLO_BYTES`].
    TooLarge,
}

/// Looks at the bytes a client sent so far and says whether they hold a complete
/// ClientHello. Stateless: it re-reads the buffer from the start on every call. To call
/// it again after every read of a growing buffer, [`Peeker`] gives the same answers in
/// linear total time.
///
/// Only `buf[..min(buf.len(), MAX_CLIENT_HELLO_BYTES)]` is ever read. A buffer that
/// reaches the cap without a complete ClientHello is [`Peek::TooLarge`], never
/// [`Peek::Incomplete`].
pub fn peek(buf: &[u8]) -> Peek {
    Peeker::default().peek(buf)
}

/// [`peek`] for a buffer that grows between calls, resuming after the last record it
/// checked in full.
///
/// Re-reading from the start after every read would cost time quadratic in the number
/// of records: a client trickling 64 KiB of 1-byte records in 1-byte reads would burn
/// seconds of CPU. The state is only offsets into the buffer, never a copy of it.
#[derive(Clone, Debug, Default)]
pub struct Peeker {
    /// Offset just past the last record checked in full; never past the buffer.
    pos: usize,
    /// Sum of the lengths those records announced.
    announced: usize,
    /// The handshake header as far as those records carried it.
    header: [u8; HANDSHAKE_HEADER_LEN],
    header_filled: usize,
    /// The handshake message length (header included), once the header is complete.
    message_len: Option<usize>,
}

impl Peeker {
    /// Same as [`peek`]. Each call must be given the same buffer as the previous one,
    /// possibly extended: bytes already given must not change. (Given another buffer it
    /// answers wrongly, but never panics.)
    pub fn peek(&mut self, buf: &[u8]) -> Peek {
        let at_cap = buf.len() >= MAX_CLIENT_HELLO_BYTES;
        let buf = buf.get(..MAX_CLIENT_HELLO_BYTES).unwrap_or(buf);
        match self.find_end(buf) {
            Ok(end) => match parse_client_hello(&join_records(buf, end)) {
                Ok(hello) => Peek::Complete {
                    hello,
                    consumed: end,
                },
                Err(reason) => Peek::Malformed(reason),
            },
            Err(Peek::Incomplete) if at_cap => Peek::TooLarge,
            Err(other) => other,
        }
    }

    /// Checks the record headers and the handshake header, and finds where the record
    /// that ends the ClientHello ends; the [`Peek`] that stops the walk otherwise (never
    /// `Complete`). Copies nothing but the 4-byte handshake header; `self` advances only
    /// over records whose bodies are complete.
    fn find_end(&mut self, buf: &[u8]) -> Result<usize, Peek> {
        loop {
            if self.message_len == Some(self.announced) {
                return Ok(self.pos);
            }
            let mut next = self.clone();
            let first = self.pos == 0;
            let record = buf.get(self.pos..).unwrap_or_default();
            let &content_type = record.first().ok_or(Peek::Incomplete)?;
            if content_type != CONTENT_TYPE_HANDSHAKE {
                return Err(not_tls_or(first, "unexpected_record_type"));
            }
            let &major = record.get(1).ok_or(Peek::Incomplete)?;
            if major != 3 {
                return Err(not_tls_or(first, "bad_record_version"));
            }
            let len = match record.get(3..RECORD_HEADER_LEN) {
                Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
                _ => return Err(Peek::Incomplete),
            };
            if len == 0 || len > MAX_RECORD_LEN {
                return Err(Peek::Malformed("bad_record_length"));
            }
            next.announced += len;
            let body = record.get(RECORD_HEADER_LEN..).unwrap_or_default();
            let body = body.get(..len).unwrap_or(body);

            if next.message_len.is_none() {
                for (slot, &byte) in next.header.iter_mut().skip(next.header_filled).zip(body) {
                    *slot = byte;
                    next.header_filled += 1;
                }
                if next.header_filled == HANDSHAKE_HEADER_LEN {
                    next.message_len = Some(message_len(next.header)?);
                }
            }
            if next.message_len.is_some_and(|total| next.announced > total) {
                return Err(Peek::Malformed("trailing_handshake_data"));
            }
            if body.len() < len {
                return Err(Peek::Incomplete);
            }
            next.pos += RECORD_HEADER_LEN + len;
            *self = next;
        }
    }
}

/// The length of the handshake message, header included, from its header.
fn message_len(header: [u8; HANDSHAKE_HEADER_LEN]) -> Result<usize, Peek> {
    let [kind, a, b, c] = header;
    if kind != HANDSHAKE_TYPE_CLIENT_HELLO {
        return Err(Peek::Malformed("not_client_hello"));
    }
    let total =
        HANDSHAKE_HEADER_LEN + (usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c));
    // Even in records of the largest size, this many bytes cannot fit under the cap.
    let least_buffered = total + RECORD_HEADER_LEN * total.div_ceil(MAX_RECORD_LEN);
    if least_buffered > MAX_CLIENT_HELLO_BYTES {
        return Err(Peek::TooLarge);
    }
    Ok(total)
}

/// Joins the bodies of the records in `buf[..end]`, already checked by
/// [`Peeker::find_end`], and returns the ClientHello body after the handshake header.
fn join_records(buf: &[u8], end: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(end);
    let mut records = buf.get(..end).unwrap_or_default();
    while let Some((header, rest)) = records.split_first_chunk::<RECORD_HEADER_LEN>() {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let (body, rest) = rest.split_at(len.min(rest.len()));
        message.extend_from_slice(body);
        records = rest;
    }
    message.drain(..HANDSHAKE_HEADER_LEN.min(message.len()));
    message
}

/// For the first record a wrong byte means "this is some other protocol"; after that it
/// means a broken TLS client.
fn not_tls_or(first_record: bool, reason: &'static str) -> Peek {
    if first_record {
        Peek::NotTls
    } else {
        Peek::Malformed(reason)
    }
}

/// Parses a complete ClientHello body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
fn parse_client_hello(body: &[u8]) -> Result<ClientHello, &'static str> {
    let mut r = Reader(body);
    let legacy_version = r.u16().ok_or("truncated_client_hello")?;
    if legacy_version >> 8 != 3 {
        return Err("bad_legacy_version");
    }
    r.take(32).ok_or("truncated_client_hello")?; // random
    let session_id = r.vec_u8().ok_or("bad_session_id")?;
    if session_id.len() > MAX_SESSION_ID_LEN {
        return Err("bad_session_id");
    }
    let suites = r.vec_u16().ok_or("bad_cipher_suites")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("bad_cipher_suites");
    }
    let compression = r.vec_u8().ok_or("bad_compression_methods")?;
    if compression.is_empty() {
        return Err("bad_compression_methods");
    }
    let mut hello = ClientHello {
        sni: None,
        alpn: Vec::new(),
        versions: vec![legacy_version],
        ech: false,
    };
    // Hellos from before TLS 1.2 extensions may end here.
    if r.0.is_empty() {
        return Ok(hello);
    }
    let mut extensions = Reader(r.vec_u16().ok_or("bad_extensions_length")?);
    if !r.0.is_empty() {
        return Err("bad_extensions_length");
    }
    let mut seen = ExtensionSet::default();
    while !extensions.0.is_empty() {
        let kind = extensions.u16().ok_or("bad_extension_length")?;
        let data = extensions.vec_u16().ok_or("bad_extension_length")?;
        if !seen.insert(kind) {
            return Err("duplicate_extension");
        }
        match kind {
            EXT_SERVER_NAME => hello.sni = parse_server_name(data)?,
            EXT_ALPN => hello.alpn = parse_alpn(data)?,
            EXT_SUPPORTED_VERSIONS => hello.versions = parse_supported_versions(data)?,
            EXT_ENCRYPTED_CLIENT_HELLO => hello.ech = true,
            _ => {}
        }
    }
    Ok(hello)
}

/// `server_name` (RFC 6066 §3): a non-empty list of (name_type, name); at most one
/// host_name. Other name types are skipped.
fn parse_server_name(data: &[u8]) -> Result<Option<String>, &'static str> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec_u16().ok_or("bad_server_name_list")?);
    if !outer.0.is_empty() || list.0.is_empty() {
        return Err("bad_server_name_list");
    }
    let mut host_name = None;
    while !list.0.is_empty() {
        let name_type = list.u8().ok_or("bad_server_name_list")?;
        let name = list.vec_u16().ok_or("bad_server_name_list")?;
        if name_type != SERVER_NAME_TYPE_HOST_NAME {
            continue;
        }
        if host_name.is_some() {
            return Err("duplicate_server_name");
        }
        if name.is_empty() {
            return Err("empty_server_name");
        }
        // Printable ASCII only: the name goes into logs and rule matching as text.
        if !name.iter().all(u8::is_ascii_graphic) {
            return Err("non_ascii_server_name");
        }
        host_name = Some(name.iter().map(|&b| char::from(b)).collect());
    }
    Ok(host_name)
}

/// `application_layer_protocol_negotiation` (RFC 7301 §3.1): a non-empty list of
/// non-empty names.
fn parse_alpn(data: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut outer = Reader(data);
    let mut list = Reader(outer.vec_u16().ok_or("bad_alpn")?);
    if !outer.0.is_empty() || list.0.is_empty() {
        return Err("bad_alpn");
    }
    let mut protocols = Vec::new();
    while !list.0.is_empty() {
        let name = list.vec_u8().ok_or("bad_alpn")?;
        if name.is_empty() {
            return Err("bad_alpn");
        }
        protocols.push(name.to_vec());
    }
    Ok(protocols)
}

/// `supported_versions` in a ClientHello (RFC 8446 §4.2.1): a list of 1 to 127 versions;
/// GREASE values (RFC 8701) are dropped.
fn parse_supported_versions(data: &[u8]) -> Result<Vec<u16>, &'static str> {
    let mut outer = Reader(data);
    let list = outer.vec_u8().ok_or("bad_supported_versions")?;
    if !outer.0.is_empty() || list.is_empty() || list.len() % 2 != 0 {
        return Err("bad_supported_versions");
    }
    Ok(list
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
        .filter(|&version| !is_grease(version))
        .collect())
}

/// GREASE values are 0x0a0a, 0x1a1a, …, 0xfafa (RFC 8701 §2).
fn is_grease(value: u16) -> bool {
    let [hi, lo] = value.to_be_bytes();
    hi == lo && lo & 0x0f == 0x0a
}

/// A cursor over a byte slice; every read returns `None` instead of running past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one-byte length prefix.
    fn vec_u8(&mut self) -> Option<&'a [u8]> {
        let len = self.u8()?;
        self.take(usize::from(len))
    }

    /// A vector with a two-byte length prefix.
    fn vec_u16(&mut self) -> Option<&'a [u8]> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }
}

/// The extension types seen so far, as a 65536-bit set (8 KiB), so that duplicate
/// detection stays linear even for a hello made of thousands of empty extensions.
struct ExtensionSet(Vec<u64>);

impl Default for ExtensionSet {
    fn default() -> Self {
        Self(vec![0; 1 << 10])
    }
}

impl ExtensionSet {
    /// Adds `kind`; false if it was already there.
    fn insert(&mut self, kind: u16) -> bool {
        let (word, bit) = (usize::from(kind >> 6), 1u64 << (kind & 63));
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A capture from `testdata/` (see its README) with what the client is known to offer.
    struct Capture {
        name: &'static str,
        bytes: &'static [u8],
        sni: &'static str,
        versions: &'static [u16],
        ech: bool,
    }

    const CAPTURES: &[Capture] = &[
        Capture {
            name: "curl",
            bytes: include_bytes!("../testdata/client_hello_curl.bin"),
            sni: "test.example",
            versions: &[0x0304, 0x0303, 0x0302, 0x0301],
            ech: false,
        },
        Capture {
            name: "openssl",
            bytes: include_bytes!("../testdata/client_hello_openssl.bin"),
            sni: "openssl.example",
            versions: &[0x0304, 0x0303, 0x0302, 0x0301],
            ech: false,
        },
        Capture {
            name: "rustls_pq",
            bytes: include_bytes!("../testdata/client_hello_rustls_pq.bin"),
            sni: "rustls.example",
            versions: &[0x0304, 0x0303],
            ech: false,
        },
        Capture {
            name: "chromium_pq",
            bytes: include_bytes!("../testdata/client_hello_chromium_pq.bin"),
            sni: "chromium.example",
            // Sent as [GREASE 0xfafa, 0x0304, 0x0303].
            versions: &[0x0304, 0x0303],
            ech: true,
        },
    ];

    fn capture(name: &str) -> &'static Capture {
        CAPTURES.iter().find(|c| c.name == name).unwrap()
    }

    fn expected(c: &Capture) -> Peek {
        Peek::Complete {
            hello: ClientHello {
                sni: Some(c.sni.to_owned()),
                // Every captured client was asked for (or defaults to) h2 then http/1.1.
                alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                versions: c.versions.to_vec(),
                ech: c.ech,
            },
            consumed: c.bytes.len(),
        }
    }

    /// Joins the record bodies of well-formed records: (first record's version, message).
    fn handshake_of(records: &[u8]) -> (u16, Vec<u8>) {
        let version = u16::from_be_bytes([records[1], records[2]]);
        let (mut pos, mut message) = (0, Vec::new());
        while pos < records.len() {
            let len = usize::from(u16::from_be_bytes([records[pos + 3], records[pos + 4]]));
            message.extend_from_slice(&records[pos + 5..pos + 5 + len]);
            pos += 5 + len;
        }
        (version, message)
    }

    /// Wraps `message` in handshake records whose sizes cycle through `sizes`.
    fn into_records(version: u16, message: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = message;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.clamp(1, MAX_RECORD_LEN).min(rest.len()));
            out.push(CONTENT_TYPE_HANDSHAKE);
            out.extend_from_slice(&version.to_be_bytes());
            out.extend_from_slice(&u16::try_from(chunk.len()).unwrap().to_be_bytes());
            out.extend_from_slice(chunk);
            rest = tail;
        }
        out
    }

    /// Rewrites the record layer of a capture into records of the given sizes.
    fn resplit(records: &[u8], sizes: &[usize]) -> Vec<u8> {
        let (version, message) = handshake_of(records);
        into_records(version, &message, sizes)
    }

    fn with_u16_len(data: &[u8]) -> Vec<u8> {
        let mut out = u16::try_from(data.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(data);
        out
    }

    fn with_u8_len(data: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::try_from(data.len()).unwrap()];
        out.extend_from_slice(data);
        out
    }

    fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
        let list: Vec<u8> = names
            .iter()
            .flat_map(|&(kind, name)| [&[kind][..], &with_u16_len(name)].concat())
            .collect();
        with_u16_len(&list)
    }

    fn alpn_ext(protocols: &[&[u8]]) -> Vec<u8> {
        let list: Vec<u8> = protocols.iter().flat_map(|p| with_u8_len(p)).collect();
        with_u16_len(&list)
    }

    fn versions_ext(versions: &[u16]) -> Vec<u8> {
        let list: Vec<u8> = versions.iter().flat_map(|v| v.to_be_bytes()).collect();
        with_u8_len(&list)
    }

    /// A hand-made ClientHello, field by field, so each test breaks exactly one thing.
    #[derive(Clone)]
    struct Hello {
        legacy_version: u16,
        session_id: Vec<u8>,
        suites: Vec<u8>,
        compression: Vec<u8>,
        extensions: Option<Vec<(u16, Vec<u8>)>>,
    }

    impl Hello {
        fn typical() -> Self {
            Self {
                legacy_version: 0x0303,
                session_id: vec![7; 32],
                suites: vec![0x13, 0x01, 0x13, 0x02],
                compression: vec![0],
                extensions: Some(vec![
                    (EXT_SERVER_NAME, sni_ext(&[(0, b"example.com")])),
                    (EXT_ALPN, alpn_ext(&[b"h2"])),
                    (EXT_SUPPORTED_VERSIONS, versions_ext(&[0x0304])),
                ]),
            }
        }

        fn with_extension(mut self, kind: u16, data: Vec<u8>) -> Self {
            self.extensions
                .get_or_insert_with(Vec::new)
                .push((kind, data));
            self
        }

        fn body(&self) -> Vec<u8> {
            let mut body = self.legacy_version.to_be_bytes().to_vec();
            body.extend_from_slice(&[0x42; 32]);
            body.extend(with_u8_len(&self.session_id));
            body.extend(with_u16_len(&self.suites));
            body.extend(with_u8_len(&self.compression));
            if let Some(extensions) = &self.extensions {
                let all: Vec<u8> = extensions
                    .iter()
                    .flat_map(|(kind, data)| {
                        [&kind.to_be_bytes()[..], &with_u16_len(data)].concat()
                    })
                    .collect();
                body.extend(with_u16_len(&all));
            }
            body
        }

        fn message(&self) -> Vec<u8> {
            message_with_body(HANDSHAKE_TYPE_CLIENT_HELLO, &self.body())
        }

        fn records(&self) -> Vec<u8> {
            into_records(0x0301, &self.message(), &[MAX_RECORD_LEN])
        }
    }

    fn message_with_body(kind: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).unwrap().to_be_bytes();
        [&[kind, len[1], len[2], len[3]][..], body].concat()
    }

    fn hello_of(input: &[u8]) -> ClientHello {
        match peek(input) {
            Peek::Complete { hello, consumed } => {
                assert_eq!(consumed, input.len());
                hello
            }
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    // Each real capture parses to exactly what the client was told to offer.
    #[test]
    fn captures_parse_exactly() {
        for c in CAPTURES {
            assert_eq!(peek(c.bytes), expected(c), "{}", c.name);
        }
    }

    // The post-quantum captures really are the large ones with an ML-KEM key share.
    #[test]
    fn post_quantum_captures_are_large() {
        for name in ["rustls_pq", "chromium_pq"] {
            let len = capture(name).bytes.len();
            assert!((1200..=1800).contains(&len), "{name}: {len}");
        }
    }

    // Any TCP segmentation: every proper prefix of every capture asks for more bytes.
    #[test]
    fn every_prefix_is_incomplete() {
        for c in CAPTURES {
            for end in 0..c.bytes.len() {
                assert_eq!(
                    peek(&c.bytes[..end]),
                    Peek::Incomplete,
                    "{} [..{end}]",
                    c.name
                );
            }
        }
    }

    // The PQ hello arriving in two reads, as over a real network with a ~1.4 KB MSS.
    #[test]
    fn post_quantum_hello_in_two_reads() {
        let c = capture("chromium_pq");
        let mut buf = c.bytes[..1400].to_vec();
        assert_eq!(peek(&buf), Peek::Incomplete);
        buf.extend_from_slice(&c.bytes[1400..]);
        assert_eq!(peek(&buf), expected(c));
    }

    // Records of every size from 1 byte up, including splits inside the handshake header,
    // parse to the same hello; `consumed` follows the new record layer.
    #[test]
    fn resplit_records_parse_identically() {
        for c in CAPTURES {
            let Peek::Complete { hello, .. } = expected(c) else {
                unreachable!()
            };
            for size in (1..=16).chain([100, 511, 1000]) {
                let input = resplit(c.bytes, &[size]);
                assert_eq!(hello_of(&input), hello, "{} in {size}-byte records", c.name);
            }
            let uneven = resplit(c.bytes, &[1, 2, 3, 5, 8, 13, 300]);
            assert_eq!(hello_of(&uneven), hello, "{} uneven", c.name);
            for end in 0..uneven.len() {
                assert_eq!(
                    peek(&uneven[..end]),
                    Peek::Incomplete,
                    "{} uneven [..{end}]",
                    c.name
                );
            }
        }
    }

    // The resumable form, fed a capture in 1-byte records one byte per read (the worst
    // trickle), answers exactly like the stateless one at every step.
    #[test]
    fn peeker_matches_peek_when_trickled() {
        for c in CAPTURES {
            let input = resplit(c.bytes, &[1]);
            let mut peeker = Peeker::default();
            for end in 0..=input.len() {
                assert_eq!(
                    peeker.peek(&input[..end]),
                    peek(&input[..end]),
                    "{} [..{end}]",
                    c.name
                );
            }
            // Asking again after the answer does not change it.
            assert_eq!(peeker.peek(&input), peek(&input));
        }
    }

    // What follows the hello's last record (a CCS, early data, junk) is not looked at.
    #[test]
    fn bytes_after_the_hello_are_ignored() {
        let c = capture("curl");
        let input = [c.bytes, &[0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0xff]].concat();
        assert_eq!(peek(&input), expected(c));
    }

    // Other protocols are recognised from their first byte or two.
    #[test]
    fn not_tls() {
        for input in [
            &b"G"[..],
            b"GET / HTTP/1.1\r\n",
            b"SSH-2.0-OpenSSH_9.2\r\n",
            // SSLv2-compatible ClientHello.
            &[0x80, 0x2e, 0x01, 0x00, 0x02],
            // Handshake content type with a non-3 major version.
            &[0x16, 0x02],
            &[0x16, 0x00, 0x01, 0x00, 0x05],
        ] {
            assert_eq!(peek(input), Peek::NotTls, "{input:?}");
        }
        assert_eq!(peek(&[]), Peek::Incomplete);
        assert_eq!(peek(&[0x16]), Peek::Incomplete);
        assert_eq!(peek(&[0x16, 0x03, 0x01, 0x02]), Peek::Incomplete);
    }

    // A hello from before extensions existed (TLS 1.0 style) is accepted.
    #[test]
    fn no_extensions() {
        let hello = Hello {
            legacy_version: 0x0301,
            extensions: None,
            ..Hello::typical()
        };
        let parsed = hello_of(&hello.records());
        assert_eq!(parsed.sni, None);
        assert!(parsed.alpn.is_empty());
        assert_eq!(parsed.versions, [0x0301]);
        assert!(!parsed.ech);
    }

    // Unknown server_name types are skipped; GREASE is removed from the version list.
    #[test]
    fn lenient_where_harmless() {
        let mut hello = Hello::typical();
        hello.extensions = Some(vec![
            (0x0a0a, Vec::new()),
            (
                EXT_SERVER_NAME,
                sni_ext(&[(7, b"\xff"), (0, b"Example.COM.")]),
            ),
            (
                EXT_SUPPORTED_VERSIONS,
                versions_ext(&[0x3a3a, 0x0304, 0x7f1c, 0x0303]),
            ),
            (EXT_ENCRYPTED_CLIENT_HELLO, vec![0; 9]),
        ]);
        let parsed = hello_of(&hello.records());
        assert_eq!(parsed.sni.as_deref(), Some("Example.COM."));
        assert_eq!(parsed.versions, [0x0304, 0x7f1c, 0x0303]);
        assert!(parsed.ech);
    }

    // Each broken input is rejected with its own reason.
    #[test]
    fn malformed() {
        let typical = Hello::typical();
        let record = typical.records();
        let edit = |f: &dyn Fn(&mut Hello)| {
            let mut hello = typical.clone();
            f(&mut hello);
            hello.records()
        };
        let two_records = into_records(0x0301, &typical.message(), &[10]);
        let mut alert_second = two_records.clone();
        alert_second[15] = 21;
        let mut sslv2_second = two_records.clone();
        sslv2_second[16] = 2;
        let mut empty_record = record.clone();
        empty_record[3..5].copy_from_slice(&[0, 0]);
        let mut huge_record = record.clone();
        huge_record[3..5].copy_from_slice(&(18433u16).to_be_bytes());
        let server_hello = into_records(0x0303, &message_with_body(2, &typical.body()), &[500]);
        let mut trailing = typical.message();
        trailing.extend_from_slice(&message_with_body(HANDSHAKE_TYPE_CLIENT_HELLO, b"x"));
        let trailing = into_records(0x0301, &trailing, &[MAX_RECORD_LEN]);
        let short_body = into_records(0x0301, &message_with_body(1, &[3, 3, 0]), &[100]);
        let mut ext_overrun = typical.body();
        // The last extension is supported_versions `00 2b | 00 03 | 02 03 04`: make its
        // length overrun the extensions block.
        let at = ext_overrun.len() - 4;
        ext_overrun[at] = 0x7f;
        let ext_overrun = into_records(0x0301, &message_with_body(1, &ext_overrun), &[999]);
        let mut extra_after_extensions = typical.body();
        extra_after_extensions.push(0);
        let extra_after_extensions = into_records(
            0x0301,
            &message_with_body(1, &extra_after_extensions),
            &[999],
        );

        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unexpected_record_type", alert_second),
            ("bad_record_version", sslv2_second),
            ("bad_record_length", empty_record),
            ("bad_record_length", huge_record),
            ("not_client_hello", server_hello),
            ("trailing_handshake_data", trailing),
            ("truncated_client_hello", short_body),
            ("bad_legacy_version", edit(&|h| h.legacy_version = 0x0203)),
            ("bad_session_id", edit(&|h| h.session_id = vec![1; 33])),
            ("bad_cipher_suites", edit(&|h| h.suites.clear())),
            (
                "bad_cipher_suites",
                edit(&|h| h.suites = vec![0x13, 0x01, 0x13]),
            ),
            ("bad_compression_methods", edit(&|h| h.compression.clear())),
            ("bad_extension_length", ext_overrun),
            ("bad_extensions_length", extra_after_extensions),
            (
                "duplicate_extension",
                typical
                    .clone()
                    .with_extension(EXT_ALPN, alpn_ext(&[b"h2"]))
                    .records(),
            ),
            (
                "bad_server_name_list",
                edit(&|h| h.extensions = Some(vec![(0, sni_ext(&[]))])),
            ),
            (
                "bad_server_name_list",
                edit(&|h| h.extensions = Some(vec![(0, vec![0, 1, 0])])),
            ),
            (
                "duplicate_server_name",
                edit(&|h| h.extensions = Some(vec![(0, sni_ext(&[(0, b"a"), (0, b"b")]))])),
            ),
            (
                "empty_server_name",
                edit(&|h| h.extensions = Some(vec![(0, sni_ext(&[(0, b"")]))])),
            ),
            (
                "non_ascii_server_name",
                edit(&|h| h.extensions = Some(vec![(0, sni_ext(&[(0, "bücher.de".as_bytes())]))])),
            ),
            (
                "non_ascii_server_name",
                edit(&|h| h.extensions = Some(vec![(0, sni_ext(&[(0, b"a b")]))])),
            ),
            (
                "bad_alpn",
                edit(&|h| h.extensions = Some(vec![(16, alpn_ext(&[b"h2", b""]))])),
            ),
            (
                "bad_alpn",
                edit(&|h| h.extensions = Some(vec![(16, alpn_ext(&[]))])),
            ),
            (
                "bad_supported_versions",
                edit(&|h| h.extensions = Some(vec![(43, vec![3, 3, 4, 3])])),
            ),
            (
                "bad_supported_versions",
                edit(&|h| h.extensions = Some(vec![(43, versions_ext(&[]))])),
            ),
        ];
        for (reason, input) in cases {
            assert_eq!(
                peek(&input),
                Peek::Malformed(reason),
                "{reason}: {input:02x?}"
            );
        }
        // A malformed hello is still only judged once complete.
        let broken = edit(&|h| h.session_id = vec![1; 33]);
        assert_eq!(peek(&broken[..broken.len() - 1]), Peek::Incomplete);
    }

    // A handshake length that cannot fit in 64 KiB of records is refused at once.
    #[test]
    fn too_large_announced() {
        let header = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00];
        assert_eq!(peek(&header), Peek::TooLarge);
        // A 65 520-byte body needs at least 4 records, whose headers push it over.
        let header = [0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0xff, 0xf0];
        assert_eq!(peek(&header), Peek::TooLarge);
    }

    // A hello that might fit, but is sent in records so small that it does not, is
    // refused when the buffer reaches the cap — not before, not after.
    #[test]
    fn too_large_at_cap() {
        let big = Hello::typical().with_extension(0xffaa, vec![0; 60_000]);
        let input = into_records(0x0301, &big.message(), &[50]);
        assert!(input.len() > MAX_CLIENT_HELLO_BYTES);
        assert_eq!(peek(&input[..MAX_CLIENT_HELLO_BYTES - 1]), Peek::Incomplete);
        assert_eq!(peek(&input[..MAX_CLIENT_HELLO_BYTES]), Peek::TooLarge);
        assert_eq!(peek(&input), Peek::TooLarge);
    }

    // A hello of almost 64 KiB over several maximum-size records is fine.
    #[test]
    fn large_hello_over_several_records() {
        let padding = MAX_CLIENT_HELLO_BYTES - 600;
        let big = Hello::typical().with_extension(0xffaa, vec![0; padding]);
        let input = into_records(0x0301, &big.message(), &[16384]);
        assert!(input.len() <= MAX_CLIENT_HELLO_BYTES);
        assert_eq!(hello_of(&input).sni.as_deref(), Some("example.com"));
    }

    /// Capture index, record sizes to resplit into, and a cut point as a fraction.
    fn split_case() -> impl Strategy<Value = (usize, Vec<usize>, f64)> {
        (
            0..CAPTURES.len(),
            prop::collection::vec(1..2000usize, 1..20),
            0.0..=1.0f64,
        )
    }

    proptest! {
        // Arbitrary bytes never panic, and never claim more than they hold.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
            if let Peek::Complete { consumed, .. } = peek(&bytes) {
                prop_assert!(consumed <= bytes.len());
            }
        }

        // Arbitrary bytes behind a valid record prefix reach the deeper parsing code.
        #[test]
        fn arbitrary_handshake_never_panics(
            len in 0..3000u16,
            bytes in prop::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut input = vec![0x16, 0x03, 0x01];
            input.extend_from_slice(&len.to_be_bytes());
            input.push(HANDSHAKE_TYPE_CLIENT_HELLO);
            input.extend_from_slice(&u32::from(len.saturating_sub(4)).to_be_bytes()[1..]);
            input.extend_from_slice(&bytes);
            if let Peek::Complete { consumed, .. } = peek(&input) {
                prop_assert!(consumed <= input.len());
            }
        }

        // Any record layout and any truncation of a capture: Incomplete, or the same hello.
        #[test]
        fn resplit_and_truncated_captures((index, sizes, cut) in split_case()) {
            let c = &CAPTURES[index];
            let input = resplit(c.bytes, &sizes);
            let end = ((input.len() as f64) * cut) as usize;
            let result = peek(&input[..end]);
            if end < input.len() {
                prop_assert_eq!(result, Peek::Incomplete);
            } else {
                let Peek::Complete { hello, .. } = expected(c) else { unreachable!() };
                prop_assert_eq!(result, Peek::Complete { hello, consumed: input.len() });
            }
        }

        // Fed any segmentation of any record layout, mutated or not, the resumable form
        // gives the stateless answer after every read.
        #[test]
        fn peeker_matches_peek(
            (index, sizes, _) in split_case(),
            reads in prop::collection::vec(1..300usize, 1..40),
            flip in proptest::option::of((any::<usize>(), any::<u8>())),
        ) {
            let mut input = resplit(CAPTURES[index].bytes, &sizes);
            if let Some((at, byte)) = flip {
                let at = at % input.len();
                input[at] = byte;
            }
            let mut peeker = Peeker::default();
            let mut end = 0;
            for read in reads.iter().cycle() {
                end = (end + read).min(input.len());
                let answer = peeker.peek(&input[..end]);
                prop_assert_eq!(&answer, &peek(&input[..end]));
                if answer != Peek::Incomplete || end == input.len() {
                    break;
                }
            }
        }

        // One flipped byte in a capture never panics and never reads past the buffer.
        #[test]
        fn mutated_captures_never_panic(
            (index, sizes, _) in split_case(),
            at in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let mut input = resplit(CAPTURES[index].bytes, &sizes);
            let at = at % input.len();
            input[at] = byte;
            if let Peek::Complete { consumed, .. } = peek(&input) {
                prop_assert!(consumed <= input.len());
            }
        }

        // Nothing past the cap is looked at: whatever follows it, the answer is that of
        // the first MAX_CLIENT_HELLO_BYTES bytes.
        #[test]
        fn never_reads_past_the_cap(
            record in 1..3000usize,
            tail in prop::collection::vec(any::<u8>(), 1..64),
        ) {
            let big = Hello::typical().with_extension(0xffaa, vec![0; 62_000]);
            let records = into_records(0x0301, &big.message(), &[record]);
            let capped = records.get(..MAX_CLIENT_HELLO_BYTES).unwrap_or(&records);
            let with_tail = [capped, &tail].concat();
            let expect = peek(capped);
            prop_assert_eq!(peek(&with_tail), expect.clone());
            if records.len() > MAX_CLIENT_HELLO_BYTES {
                prop_assert_eq!(expect, Peek::TooLarge);
            }
        }
    }
}
