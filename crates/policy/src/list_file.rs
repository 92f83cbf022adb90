//! The list-file format shared by category files and anti-phishing lists: one entry per
//! line, `#` starts a comment (on its own line or after an entry), blank lines and a
//! UTF-8 byte-order mark are ignored. Bad lines are reported as `LISTFILE:LINE: msg`, at
//! most [`MAX_ERRORS_PER_FILE`] of them plus a count, since a file in the wrong format
//! would otherwise print one error per line.

use crate::diagnostics::ConfigError;

/// Bad lines reported per list file.
const MAX_ERRORS_PER_FILE: usize = 20;

/// The file's text without its byte-order mark, and the number of lines (an upper bound
/// on the entries, to size a set before filling it).
pub(crate) fn prepare(text: &str) -> (&str, usize) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    (text, lines)
}

/// Call `add` with each entry of `text` (comments stripped, trimmed, non-empty).
/// `shown` names the file in errors; errors are returned, bounded as described above.
pub(crate) fn for_each_entry(
    text: &str,
    shown: &str,
    mut add: impl FnMut(&str) -> Result<(), String>,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut bad = 0usize;
    for (index, line) in text.lines().enumerate() {
        let entry = line.split_once('#').map_or(line, |(entry, _)| entry).trim();
        if entry.is_empty() {
            continue;
        }
        if let Err(message) = add(entry) {
            bad += 1;
            if bad <= MAX_ERRORS_PER_FILE {
                errors.push(ConfigError {
                    file: shown.to_owned(),
                    line: Some(index + 1),
                    message,
                });
            }
        }
    }
    if bad > MAX_ERRORS_PER_FILE {
        errors.push(ConfigError {
            file: shown.to_owned(),
            line: None,
            message: format!(
                "{} more invalid lines not shown ({bad} in all)",
                bad - MAX_ERRORS_PER_FILE
            ),
        });
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_the_bom_are_skipped() {
        let (text, lines) = prepare("\u{feff}# head\n\n a  # one\r\nb\n  # c\n");
        assert_eq!(lines, 6);
        let mut seen = Vec::new();
        let errors = for_each_entry(text, "l.txt", |e| {
            seen.push(e.to_owned());
            Ok(())
        });
        assert!(errors.is_empty());
        assert_eq!(seen, ["a", "b"]);
    }

    #[test]
    fn errors_carry_the_line_and_are_bounded() {
        let text: String = (0..25).map(|i| format!("bad{i}\n")).collect();
        let errors = for_each_entry(&text, "l.txt", |e| Err(format!("no {e}")));
        assert_eq!(errors.len(), 21);
        assert_eq!(errors[0].to_string(), "l.txt:1: no bad0");
        assert_eq!(errors[19].to_string(), "l.txt:20: no bad19");
        assert_eq!(
            errors[20].to_string(),
            "l.txt: 5 more invalid lines not shown (25 in all)"
        );
    }
}
