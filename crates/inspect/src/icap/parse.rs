//! The ICAP response parser (RFC 3507 §4.3, §4.4): pure functions on bytes, no I/O.
//!
//! "Need more bytes" is a value, not an error: [`parse_response`] returns `Ok(None)`
//! and [`ChunkDecoder::next`] returns [`Chunk::Incomplete`] until the buffer holds
//! enough; the caller reads more and calls again with the longer buffer. Every other
//! outcome is a complete parse or a [`ParseError`]; nothing panics on any input.
//!
//! Also here: the status line of an encapsulated HTTP response, and the threat name of
//! a detection (`X-Infection-Found`, `X-Violations-Found`, `X-Virus-ID`).

use std::fmt;
use std::ops::Range;

/// Largest ICAP response head (status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line (size, extensions and CRLF) accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// Why a response cannot be parsed. The connection it came on is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The head is larger than [`MAX_HEAD`] without ending.
    HeadTooLarge,
    /// Not ICAP as RFC 3507 describes it; the text says what is wrong.
    Malformed(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::HeadTooLarge => write!(f, "ICAP response head over {MAX_HEAD} bytes"),
            ParseError::Malformed(why) => write!(f, "malformed ICAP response: {why}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// An ICAP response head: status line and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IcapResponse {
    /// The status code (`100`, `200`, `204`, `404`...).
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: String,
    /// The headers in order, names as sent. A folded value (continuation lines) keeps
    /// its lines, trimmed and joined with `\n`: `X-Violations-Found` is a list of lines.
    pub headers: Vec<(String, String)>,
    /// The `Encapsulated` header; `None` when absent (as in a `100 Continue`).
    pub encapsulated: Option<Encapsulated>,
}

impl IcapResponse {
    /// The first value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the server asked to close the connection after this response.
    pub fn closes(&self) -> bool {
        self.header("Connection").is_some_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
    }

    /// The name of the threat the server found, from the first of `X-Infection-Found`
    /// (`Threat=NAME;`), `X-Violations-Found` (the second line of the first violation)
    /// and `X-Virus-ID` that names one.
    pub fn threat(&self) -> Option<String> {
        let infection = || {
            self.header("X-Infection-Found")
                .and_then(|v| parameter(v, "Threat"))
        };
        let violation = || {
            self.header("X-Violations-Found")
                .and_then(|v| v.lines().nth(2))
        };
        let virus_id = || self.header("X-Virus-ID");
        infection()
            .or_else(violation)
            .or_else(virus_id)
            .map(str::trim)
            .filter(|t| !t.is_empty() && *t != "-")
            .map(str::to_owned)
    }
}

/// `value` of `name=value` in a `;`-separated list (name compared case-insensitively).
fn parameter<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    list.split(';').find_map(|item| {
        let (key, value) = item.split_once('=')?;
        key.trim().eq_ignore_ascii_case(name).then_some(value)
    })
}

/// A part of the encapsulated HTTP message (RFC 3507 §4.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// `req-hdr`: an HTTP request head.
    ReqHdr,
    /// `res-hdr`: an HTTP response head.
    ResHdr,
    /// `req-body`: a chunked request body.
    ReqBody,
    /// `res-body`: a chunked response body.
    ResBody,
    /// `opt-body`: a chunked OPTIONS body.
    OptBody,
    /// `null-body`: no body.
    NullBody,
}

impl Section {
    fn from_name(name: &str) -> Option<Section> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "req-hdr" => Section::ReqHdr,
            "res-hdr" => Section::ResHdr,
            "req-body" => Section::ReqBody,
            "res-body" => Section::ResBody,
            "opt-body" => Section::OptBody,
            "null-body" => Section::NullBody,
            _ => return None,
        })
    }

    fn is_body(self) -> bool {
        !matches!(self, Section::ReqHdr | Section::ResHdr)
    }
}

/// The `Encapsulated` header: each section with its offset in the message body.
/// Checked on parsing: offsets increase, headers come first, and exactly one body
/// section (or `null-body`) comes last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encapsulated {
    sections: Vec<(Section, usize)>,
}

impl Encapsulated {
    /// The byte range, after the ICAP head, of the HTTP head `section`, if present.
    pub fn head(&self, section: Section) -> Option<Range<usize>> {
        let index = self.sections.iter().position(|&(s, _)| s == section)?;
        let start = self.sections[index].1;
        let end = self.sections.get(index + 1)?.1;
        Some(start..end)
    }

    /// The length of all encapsulated HTTP heads: where the body section starts.
    pub fn heads_len(&self) -> usize {
        self.sections.last().map_or(0, |&(_, offset)| offset)
    }

    /// The body section (`None` for `null-body`).
    pub fn body(&self) -> Option<Section> {
        self.sections
            .last()
            .map(|&(s, _)| s)
            .filter(|&s| s != Section::NullBody)
    }

    fn parse(value: &str) -> Result<Encapsulated, ParseError> {
        let bad = ParseError::Malformed;
        let mut sections = Vec::new();
        for item in value.split(',') {
            let (name, offset) = item
                .split_once('=')
                .ok_or(bad("Encapsulated entry without `=`"))?;
            let section = Section::from_name(name).ok_or(bad("unknown Encapsulated section"))?;
            let offset: usize = offset
                .trim()
                .parse()
                .map_err(|_| bad("bad Encapsulated offset"))?;
            if sections.last().is_some_and(|&(_, last)| offset < last) {
                return Err(bad("Encapsulated offsets decrease"));
            }
            if sections
                .last()
                .is_some_and(|&(s, _): &(Section, usize)| s.is_body())
            {
                return Err(bad("Encapsulated section after the body"));
            }
            sections.push((section, offset));
        }
        match sections.last() {
            Some(&(s, _)) if s.is_body() => Ok(Encapsulated { sections }),
            _ => Err(bad("Encapsulated has no body section")),
        }
    }
}

/// Parse an ICAP response head at the start of `buf`.
///
/// `Ok(None)`: incomplete, read more. `Ok(Some((response, len)))`: the head is
/// `buf[..len]`; the encapsulated message (if any) follows.
pub fn parse_response(buf: &[u8]) -> Result<Option<(IcapResponse, usize)>, ParseError> {
    let Some(len) = head_end(buf) else {
        return if buf.len() > MAX_HEAD {
            Err(ParseError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    if len > MAX_HEAD {
        return Err(ParseError::HeadTooLarge);
    }
    let text = std::str::from_utf8(&buf[..len])
        .map_err(|_| ParseError::Malformed("ICAP head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let (status, reason) = status_line(lines.next().unwrap_or(""), "ICAP/1.")?;
    let headers = header_lines(lines)?;
    let mut response = IcapResponse {
        status,
        reason,
        headers,
        encapsulated: None,
    };
    response.encapsulated = response
        .header("Encapsulated")
        .map(Encapsulated::parse)
        .transpose()?;
    Ok(Some((response, len)))
}

/// The length of the head at the start of `buf`, blank line included, once complete.
fn head_end(buf: &[u8]) -> Option<usize> {
    let window = &buf[..buf.len().min(MAX_HEAD + 4)];
    window
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

/// `PROTO/x.y CODE reason`, `PROTO/x.` given, with a three-digit code.
fn status_line(line: &str, protocol: &str) -> Result<(u16, String), ParseError> {
    let bad = ParseError::Malformed;
    let rest = line
        .get(..protocol.len())
        .filter(|p| p.eq_ignore_ascii_case(protocol))
        .map(|_| &line[protocol.len()..])
        .ok_or(bad(
            "the status line does not start with the protocol version",
        ))?;
    let (_minor, rest) = rest.split_once(' ').ok_or(bad("no status code"))?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the status code is not three digits"));
    }
    let status = code.parse().map_err(|_| bad("bad status code"))?;
    Ok((status, reason.trim().to_owned()))
}

/// Header lines up to the blank line; a line starting with a space or a tab continues
/// the previous value.
fn header_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, ParseError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            let (_, value) = headers
                .last_mut()
                .ok_or(ParseError::Malformed("continuation line without a header"))?;
            value.push('\n');
            value.push_str(line.trim());
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(ParseError::Malformed("header line without `:`"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(ParseError::Malformed("bad header name"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(headers)
}

/// The status code of an encapsulated HTTP response head (`HTTP/1.x CODE reason`).
pub fn http_status(head: &[u8]) -> Result<u16, ParseError> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| ParseError::Malformed("encapsulated status line is not UTF-8"))?;
    status_line(line, "HTTP/1.").map(|(status, _)| status)
}

/// One step of a chunked body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes at this range of the buffer given.
    Data(Range<usize>),
    /// The last chunk and its trailer are complete. `ieof` is set when the last chunk
    /// carried the `ieof` extension (RFC 3507 §4.5).
    End {
        /// The `0; ieof` form.
        ieof: bool,
    },
    /// More bytes are needed.
    Incomplete,
}

/// Where a [`ChunkDecoder`] is in the chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to a blank line.
    Trailer {
        ieof: bool,
    },
    Done {
        ieof: bool,
    },
}

/// An incremental decoder of a chunked body (RFC 9112 §7.1), with RFC 3507's `ieof`.
#[derive(Clone, Debug)]
pub struct ChunkDecoder {
    state: State,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        ChunkDecoder { state: State::Size }
    }
}

impl ChunkDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode from `buf`, the bytes not consumed yet: the next event and how many bytes
    /// of `buf` were consumed. Always advance by that count (it may be non-zero with
    /// [`Chunk::Incomplete`], after a chunk-size line); on `Incomplete`, read more before
    /// calling again; after [`Chunk::End`], the bytes that follow are not the body's.
    pub fn next(&mut self, buf: &[u8]) -> Result<(Chunk, usize), ParseError> {
        let mut consumed = 0;
        loop {
            let (event, used) = self.step(&buf[consumed..])?;
            let start = consumed;
            consumed += used;
            match event {
                Chunk::Data(range) => {
                    return Ok((
                        Chunk::Data(range.start + start..range.end + start),
                        consumed,
                    ))
                }
                Chunk::End { .. } => return Ok((event, consumed)),
                Chunk::Incomplete if used == 0 => return Ok((event, consumed)),
                Chunk::Incomplete => {}
            }
        }
    }

    /// One state transition; `Incomplete` with bytes used means "progress, go on".
    fn step(&mut self, buf: &[u8]) -> Result<(Chunk, usize), ParseError> {
        match self.state {
            State::Size => self.size_line(buf),
            State::Data(left) => {
                if buf.is_empty() {
                    return Ok((Chunk::Incomplete, 0));
                }
                let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataEnd
                } else {
                    State::Data(left)
                };
                Ok((Chunk::Data(0..take), take))
            }
            State::DataEnd => match buf {
                [b'\r', b'\n', ..] => {
                    self.state = State::Size;
                    Ok((Chunk::Incomplete, 2))
                }
                [] | [b'\r'] => Ok((Chunk::Incomplete, 0)),
                _ => Err(ParseError::Malformed("chunk data not followed by CRLF")),
            },
            State::Trailer { ieof } => self.trailer(buf, ieof),
            State::Done { ieof } => Ok((Chunk::End { ieof }, 0)),
        }
    }

    fn size_line(&mut self, buf: &[u8]) -> Result<(Chunk, usize), ParseError> {
        let Some(end) = line_end(buf, MAX_CHUNK_LINE)? else {
            return Ok((Chunk::Incomplete, 0));
        };
        let line = std::str::from_utf8(&buf[..end])
            .map_err(|_| ParseError::Malformed("chunk-size line is not UTF-8"))?;
        let (size, extensions) = line.split_once(';').unwrap_or((line, ""));
        let size = size.trim();
        if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseError::Malformed("bad chunk size"));
        }
        let size =
            u64::from_str_radix(size, 16).map_err(|_| ParseError::Malformed("bad chunk size"))?;
        let consumed = end + 2;
        if size == 0 {
            let ieof = extensions
                .split(';')
                .any(|e| e.trim().eq_ignore_ascii_case("ieof"));
            self.state = State::Trailer { ieof };
        } else {
            self.state = State::Data(size);
        }
        Ok((Chunk::Incomplete, consumed))
    }

    fn trailer(&mut self, buf: &[u8], ieof: bool) -> Result<(Chunk, usize), ParseError> {
        let mut consumed = 0;
        while let Some(end) = line_end(&buf[consumed..], MAX_CHUNK_LINE)? {
            consumed += end + 2;
            if end == 0 {
                self.state = State::Done { ieof };
                return Ok((Chunk::End { ieof }, consumed));
            }
        }
        Ok((Chunk::Incomplete, consumed))
    }
}

/// The index of the first CRLF in `buf`; an error when a line runs past `max` bytes.
fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, ParseError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= max => Ok(Some(end)),
        Some(_) => Err(ParseError::Malformed("line too long")),
        None if buf.len() > max + 1 => Err(ParseError::Malformed("line too long")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
