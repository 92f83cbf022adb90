//! Domain names: normalization, and [`DomainSet`], the pattern set behind `domains`
//! conditions and categories.

mod names;
mod set;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

pub use set::DomainSet;

/// Longest name in presentation form, without the trailing dot (RFC 1035 §2.3.4).
const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Normalize a DNS name for comparison: lowercase, strip one trailing dot, IDN → punycode.
///
/// `None` if it is not a usable name: empty, an empty label, a label over 63 or a name
/// over 253 characters, or a character other than letters, digits, `-` and `_` (the
/// underscore appears in real host names, so it is accepted).
pub fn normalize_domain(name: &str) -> Option<String> {
    normalize(name).ok().map(Cow::into_owned)
}

/// Whether two names are the same host: case-insensitive, trailing dot ignored, IDNs
/// compared in punycode. Names that do not normalize are compared ASCII-case-insensitively.
pub fn same_domain(a: &str, b: &str) -> bool {
    match (normalize(a), normalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The normalized name, borrowed when `name` already is normalized (the common case on
/// the hot path). The error says what is wrong.
pub(crate) fn normalize(name: &str) -> Result<Cow<'_, str>, &'static str> {
    if name.is_ascii() {
        let bare = name.strip_suffix('.').unwrap_or(name);
        if check_ascii(bare)? {
            Ok(Cow::Owned(bare.to_ascii_lowercase()))
        } else {
            Ok(Cow::Borrowed(bare))
        }
    } else {
        let ascii = idna::domain_to_ascii_cow(name.as_bytes(), idna::AsciiDenyList::URL)
            .map_err(|_| "not a valid internationalized domain name")?;
        // UTS 46 maps ideographic full stops to `.`, so the trailing dot is only visible now.
        let mut ascii = ascii.into_owned();
        if ascii.ends_with('.') {
            ascii.pop();
        }
        check_ascii(&ascii)?;
        Ok(Cow::Owned(ascii))
    }
}

/// Byte classes of [`check_ascii`]: 0 is a byte not allowed in a name.
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DOT: u8 = 4;
static CLASS: [u8; 256] = {
    let mut class = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        class[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => LOWER,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            _ => 0,
        };
        b += 1;
    }
    class
};

/// Checks the shape of an ASCII name without its trailing dot, in one pass with a
/// class table (this is on every decision's path; branching on each byte's kind would
/// mispredict). `Ok(true)` when it has uppercase letters.
fn check_ascii(name: &str) -> Result<bool, &'static str> {
    if name.is_empty() {
        return Err("empty name");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("name longer than 253 characters");
    }
    let mut label_len = 0;
    let mut seen = 0;
    for byte in name.bytes() {
        let class = CLASS[usize::from(byte)];
        if class == 0 {
            return Err("only letters, digits, `-` and `_` are allowed in a name");
        }
        seen |= class;
        if class == DOT {
            if label_len == 0 {
                return Err("empty label");
            }
            label_len = 0;
        } else {
            label_len += 1;
            if label_len > MAX_LABEL_LEN {
                return Err("label longer than 63 characters");
            }
        }
    }
    if label_len == 0 {
        return Err("empty label");
    }
    Ok(seen & UPPER != 0)
}
