//! A minimal DER reader for the few structures x509-parser does not cover (PKCS#7
//! certificate bundles, OCSP responses).

pub(crate) const INTEGER: u8 = 0x02;
pub(crate) const BIT_STRING: u8 = 0x03;
pub(crate) const OCTET_STRING: u8 = 0x04;
pub(crate) const OID: u8 = 0x06;
pub(crate) const ENUMERATED: u8 = 0x0a;
pub(crate) const GENERALIZED_TIME: u8 = 0x18;
pub(crate) const SEQUENCE: u8 = 0x30;
pub(crate) const SET: u8 = 0x31;
pub(crate) const CONTEXT_0: u8 = 0xa0;

/// One DER element: its value and its whole encoding.
pub(crate) struct Tlv<'a> {
    pub(crate) value: &'a [u8],
    pub(crate) whole: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// Reads an element with tag `tag` (definite lengths only, as DER requires) and
    /// returns it with what follows it.
    pub(crate) fn read(input: &'a [u8], tag: u8) -> Option<(Tlv<'a>, &'a [u8])> {
        let (&first, rest) = input.split_first()?;
        if first != tag {
            return None;
        }
        let (&len_byte, rest) = rest.split_first()?;
        let (len, rest) = if len_byte < 0x80 {
            (usize::from(len_byte), rest)
        } else {
            let count = usize::from(len_byte & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (len_bytes, rest) = rest.split_at(count);
            let len = len_bytes
                .iter()
                .fold(0_usize, |len, b| (len << 8) | usize::from(*b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let header = input.len() - rest.len();
        let (value, after) = rest.split_at(len);
        Some((
            Tlv {
                value,
                whole: &input[..header + len],
            },
            after,
        ))
    }
}

impl<'a> Tlv<'a> {
    /// The element at the start of `input` whatever its tag, with its tag.
    pub(crate) fn read_any(input: &'a [u8]) -> Option<(u8, Tlv<'a>, &'a [u8])> {
        let tag = *input.first()?;
        let (tlv, rest) = Tlv::read(input, tag)?;
        Some((tag, tlv, rest))
    }

    /// The element with `tag` if it comes first, else nothing and `input` unchanged.
    pub(crate) fn optional(input: &'a [u8], tag: u8) -> (Option<Tlv<'a>>, &'a [u8]) {
        match Tlv::read(input, tag) {
            Some((tlv, rest)) => (Some(tlv), rest),
            None => (None, input),
        }
    }
}
