//! Regex conditions (`user_agents`, `domain_regex`, `url_regex`): each entry checked on its own so
//! that an error points at its line, then all compiled into one `RegexSet`.

use regex::{RegexBuilder, RegexSet, RegexSetBuilder};
use toml::Spanned;

use crate::diagnostics::Diagnostics;

/// How the patterns of a condition are compared.
#[derive(Clone, Copy)]
pub(crate) enum Case {
    Sensitive,
    /// For domain names, which are compared lowercased.
    Insensitive,
}

/// Compile `patterns` (unanchored: a pattern matches anywhere in the subject).
/// Reports each bad pattern at its line, prefixed with `key` (`ssl_rules.user_agents`);
/// `None` if any was bad.
pub(crate) fn compile(
    patterns: &[Spanned<String>],
    case: Case,
    key: &str,
    diag: &mut Diagnostics<'_>,
) -> Option<RegexSet> {
    let insensitive = matches!(case, Case::Insensitive);
    let mut ok = true;
    for pattern in patterns {
        if let Err(e) = RegexBuilder::new(pattern.get_ref())
            .case_insensitive(insensitive)
            .build()
        {
            diag.at(
                pattern.span(),
                format!(
                    "{key}: invalid regex `{}`: {}",
                    pattern.get_ref(),
                    one_line(&e)
                ),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    let set = RegexSetBuilder::new(patterns.iter().map(|p| p.get_ref()))
        .case_insensitive(insensitive)
        .build();
    match set {
        Ok(set) => Some(set),
        Err(e) => {
            // Each pattern compiled alone, so this is the combined size limit.
            if let Some(first) = patterns.first() {
                diag.at(
                    first.span(),
                    format!("{key}: regex list too large: {}", one_line(&e)),
                );
            }
            None
        }
    }
}

/// The regex crate formats syntax errors over several lines with a caret under the
/// pattern; keep the last line, which says what is wrong.
fn one_line(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    last.trim().trim_start_matches("error: ").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spanned(patterns: &[&str]) -> Vec<Spanned<String>> {
        patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Spanned::new(i * 2..i * 2 + 1, (*p).to_owned()))
            .collect()
    }

    #[test]
    fn sensitive_and_insensitive_sets_search_unanchored() {
        let text = "a\nb\nc\n";
        let mut diag = Diagnostics::new("c.toml", text);
        let ua = compile(
            &spanned(&["curl/", "^Mozilla"]),
            Case::Sensitive,
            "ssl_rules.ua",
            &mut diag,
        )
        .unwrap();
        assert!(ua.is_match("curl/8.5.0"));
        assert!(ua.is_match("x curl/8"));
        assert!(!ua.is_match("CURL/8"));
        assert!(!ua.is_match("x Mozilla"));
        let dom = compile(&spanned(&["^Ads\\."]), Case::Insensitive, "dr", &mut diag).unwrap();
        assert!(dom.is_match("ads.example.com"));
        assert!(diag.finish().is_ok());
    }

    #[test]
    fn every_bad_pattern_is_reported_on_one_line() {
        let text = "a\nb\nc\n";
        let mut diag = Diagnostics::new("c.toml", text);
        assert!(compile(
            &spanned(&["(", "ok", "[z-a]"]),
            Case::Sensitive,
            "ssl_rules.ua",
            &mut diag
        )
        .is_none());
        let errors = diag.finish().unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "c.toml:1: ssl_rules.ua: invalid regex `(`: unclosed group",
                "c.toml:3: ssl_rules.ua: invalid regex `[z-a]`: invalid character class range, the start must be <= the end",
            ]
        );
    }
}
