//! HTTP/3 advertisements in `Alt-Svc` (RFC 7838; SPEC §11 QUIC). A browser that reads
//! `h3=":443"` moves to QUIC over UDP, where a TCP proxy sees nothing; with
//! `tls.strip_alt_svc_h3` sluice removes those entries from relayed responses so the
//! client stays on TCP.

/// What to do with one `Alt-Svc` field value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AltSvcEdit {
    /// No HTTP/3 entry: pass it unchanged.
    Keep,
    /// Every entry was HTTP/3, or the value cannot be read (a lenient client might
    /// still find an `h3` in it): drop the field.
    Remove,
    /// The other entries, in their order.
    Replace(String),
}

/// Remove the `h3` and draft `h3-*` entries (protocol ids compared after
/// percent-decoding, ASCII case-insensitively) from an `Alt-Svc` field value. `clear`
/// is kept as it is.
pub fn strip_alt_svc_h3(value: &[u8]) -> AltSvcEdit {
    let Some(entries) = std::str::from_utf8(value).ok().and_then(split_entries) else {
        return AltSvcEdit::Remove;
    };
    let kept: Vec<&str> = entries
        .iter()
        .copied()
        .filter(|entry| !is_http3(entry))
        .collect();
    if kept.len() == entries.len() {
        AltSvcEdit::Keep
    } else if kept.is_empty() {
        AltSvcEdit::Remove
    } else {
        AltSvcEdit::Replace(kept.join(", "))
    }
}

/// The comma-separated entries, trimmed, empty ones left out (`#rule`); commas inside
/// quoted strings (with `\` escapes) do not separate. `None` for a control character or
/// an unterminated quoted string.
fn split_entries(value: &str) -> Option<Vec<&str>> {
    let mut entries = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        if c.is_control() && c != '\t' {
            return None;
        }
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (false, _, ',') => {
                entries.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    entries.push(value[start..].trim());
    entries.retain(|entry| !entry.is_empty());
    Some(entries)
}

/// Whether an entry (`protocol-id="authority"; params`) advertises HTTP/3.
fn is_http3(entry: &str) -> bool {
    let id = entry.split(['=', ';']).next().unwrap_or("").trim();
    let id = percent_decoded(id);
    let id = id.to_ascii_lowercase();
    id == "h3" || id.starts_with("h3-")
}

/// `%XX` decoded (RFC 7838 §3: a protocol-id is percent-encoded); a bad escape stays.
fn percent_decoded(id: &str) -> String {
    let bytes = id.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&high), Some(&low)) if hex(high).is_some() && hex(low).is_some() => {
                let value = hex(high).unwrap_or(0) * 16 + hex(low).unwrap_or(0);
                out.push(u8::try_from(value).unwrap_or(b'%'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(value: &str) -> AltSvcEdit {
        strip_alt_svc_h3(value.as_bytes())
    }

    #[test]
    fn http3_entries_go_and_the_others_stay_in_order() {
        assert_eq!(edit("h3=\":443\"; ma=86400"), AltSvcEdit::Remove);
        assert_eq!(
            edit("h3=\":443\"; ma=86400, h3-29=\":443\"; ma=86400"),
            AltSvcEdit::Remove
        );
        assert_eq!(
            edit("h3-29=\":443\", h2=\"alt.example:443\"; ma=60, h3=\":443\""),
            AltSvcEdit::Replace("h2=\"alt.example:443\"; ma=60".into())
        );
        assert_eq!(edit("h2=\":443\", http%2F1.1=\":80\""), AltSvcEdit::Keep);
        assert_eq!(edit("clear"), AltSvcEdit::Keep);
    }

    #[test]
    fn disguised_http3_entries_are_found() {
        for disguised in [
            "h%33=\":443\"",
            "H3=\":443\"",
            "h3-Q050=\":443\"",
            "  h3 =\":443\"",
            "h3;ma=1",
        ] {
            assert_eq!(edit(disguised), AltSvcEdit::Remove, "{disguised}");
        }
        assert_eq!(edit("h30=\":443\""), AltSvcEdit::Keep);
        assert_eq!(edit("h2=\"h3:443\""), AltSvcEdit::Keep);
    }

    #[test]
    fn commas_inside_quotes_do_not_split() {
        assert_eq!(
            edit("h2=\"a,h3=x:443\", h3=\":443\""),
            AltSvcEdit::Replace("h2=\"a,h3=x:443\"".into())
        );
        assert_eq!(
            edit("h2=\"a\\\",h3\", h3=\":443\""),
            AltSvcEdit::Replace("h2=\"a\\\",h3\"".into())
        );
        assert_eq!(
            edit(",, h3=\":443\",, h2=\":443\","),
            AltSvcEdit::Replace("h2=\":443\"".into())
        );
    }

    #[test]
    fn unreadable_values_are_removed() {
        for garbage in [&b"h2=\":443"[..], b"h2=\":443\"\x01", b"\xff\xfe"] {
            assert_eq!(strip_alt_svc_h3(garbage), AltSvcEdit::Remove, "{garbage:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = strip_alt_svc_h3(&value);
        }

        #[test]
        fn what_is_kept_holds_no_http3_entry(value in "[h3%-2,;=\" \\a:]{0,40}") {
            if let AltSvcEdit::Replace(kept) = strip_alt_svc_h3(value.as_bytes()) {
                proptest::prop_assert_eq!(strip_alt_svc_h3(kept.as_bytes()), AltSvcEdit::Keep);
            }
        }
    }
}
