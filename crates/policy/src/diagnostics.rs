//! Configuration errors and the collector that attaches file and line to each of them.

use std::fmt;
use std::ops::Range;

/// One problem found in the configuration file or in a category list file it names.
///
/// Displayed as `FILE:LINE: msg`, or `FILE: msg` when the problem has no line (an
/// unreadable file, for instance).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as the user named it: the configuration path as given on the command
    /// line, or a category list file joined to the configuration's folder.
    pub file: String,
    /// 1-based line, when the problem is tied to one.
    pub line: Option<usize>,
    /// What is wrong, in one line.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// The single error a TOML syntax or shape problem (unknown key, wrong type) becomes.
    pub(crate) fn from_toml(file: &str, text: &str, error: &toml::de::Error) -> ConfigError {
        ConfigError {
            file: file.to_owned(),
            line: error.span().map(|span| line_of(text, span.start)),
            message: error.message().trim_end().to_owned(),
        }
    }
}

/// The 1-based line on which byte `offset` of `text` lies.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Collects every semantic error of one load, so that `sluice check` can print them all.
pub(crate) struct Diagnostics<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Diagnostics<'a> {
    /// `file` is the configuration's display name, `text` its content (spans index into it).
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Diagnostics {
            file,
            text,
            errors: Vec::new(),
        }
    }

    /// An error in the configuration file at the value spanning `span`.
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line: Some(line_of(self.text, span.start)),
            message: message.into(),
        });
    }

    /// Errors found elsewhere (a list file), already located.
    pub(crate) fn extend(&mut self, errors: impl IntoIterator<Item = ConfigError>) {
        self.errors.extend(errors);
    }

    /// Errors collected so far.
    pub(crate) fn count(&self) -> usize {
        self.errors.len()
    }

    /// `Err` with all errors, those of the configuration file first and in line order.
    pub(crate) fn finish(mut self) -> Result<(), Vec<ConfigError>> {
        if self.errors.is_empty() {
            return Ok(());
        }
        let main = self.file;
        // Stable: errors of one list file keep their order.
        self.errors
            .sort_by_key(|e| (e.file != main, if e.file == main { e.line } else { None }));
        Err(self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines_before_the_offset() {
        let text = "a\nbb\n\nccc";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 1), 1);
        assert_eq!(line_of(text, 2), 2);
        assert_eq!(line_of(text, 5), 3);
        assert_eq!(line_of(text, 6), 4);
        assert_eq!(line_of(text, 1000), 4);
    }

    #[test]
    fn display_with_and_without_line() {
        let mut e = ConfigError {
            file: "sluice.toml".into(),
            line: Some(3),
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "sluice.toml:3: bad");
        e.line = None;
        assert_eq!(e.to_string(), "sluice.toml: bad");
    }

    #[test]
    fn finish_puts_config_errors_first_in_line_order() {
        let text = "1\n2\n3\n";
        let mut d = Diagnostics::new("c.toml", text);
        d.at(4..5, "third");
        d.extend([ConfigError {
            file: "list.txt".into(),
            line: Some(9),
            message: "list".into(),
        }]);
        d.at(0..1, "first");
        let errors = d.finish().unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["c.toml:1: first", "c.toml:3: third", "list.txt:9: list"]
        );
    }
}
