//! Deserialising the whole file while reporting every shape error, not just the first.
//!
//! serde stops at the first unknown key or wrong value. `sluice check` must list every
//! error of a file at once (SPEC §6), so the document is parsed once into a tree with
//! spans, and deserialised again after each error with the offending entry taken out:
//! the key (or the table that lacks a required key) is dropped, the defaults stand in
//! for it, and the semantic checks that follow still see everything else. The
//! `deny_unknown_fields` safety is kept: every unknown key is still an error.

use std::ops::Range;

use serde::Deserialize;
use toml::de::{DeArray, DeTable, DeValue, Deserializer};
use toml::Spanned;

use crate::diagnostics::ConfigError;

/// The most shape errors reported for one file; the rest would repeat the same mistake.
const MAX_SHAPE_ERRORS: usize = 100;

/// Deserialise `text` into `T`, collecting every shape error (unknown key, wrong type,
/// unknown variant, missing required key) with its span. A TOML syntax error is
/// reported alone: no tree can be built past it.
pub(crate) fn deserialize_all<T: for<'de> Deserialize<'de>>(
    text: &str,
    file: &str,
) -> Result<(T, Vec<ConfigError>), Vec<ConfigError>> {
    let mut tree =
        DeTable::parse(text).map_err(|e| vec![ConfigError::from_toml(file, text, &e)])?;
    tree.get_mut().make_owned();
    let mut errors = Vec::new();
    // Tables a key was taken out of: their "missing field" is a consequence, not news.
    let mut damaged: Vec<Range<usize>> = Vec::new();
    loop {
        let error = match T::deserialize(Deserializer::from(tree.clone())) {
            Ok(value) => return Ok((value, errors)),
            Err(error) => error,
        };
        let Some(span) = error.span() else {
            errors.push(ConfigError::from_toml(file, text, &error));
            return Err(errors);
        };
        let consequence = error.message().starts_with("missing field") && damaged.contains(&span);
        if !consequence {
            errors.push(ConfigError::from_toml(file, text, &error));
        }
        let root_span = tree.span();
        let removed = remove_at(tree.get_mut(), &root_span, &span, &mut damaged);
        if !removed || errors.len() >= MAX_SHAPE_ERRORS {
            return Err(errors);
        }
    }
}

/// Take out of `table` the entry the error at `span` is about: the key whose key or
/// scalar value holds the span, or the table whose own span it is (a missing key),
/// searching nested tables depth first. (A table's span may cover only its header, so
/// the search does not narrow by the spans of containers.) Records the tables keys were
/// taken from, by `table_span`, in `damaged`. Returns whether anything was removed, so
/// the caller's loop always progresses.
fn remove_at(
    table: &mut DeTable<'_>,
    table_span: &Range<usize>,
    span: &Range<usize>,
    damaged: &mut Vec<Range<usize>>,
) -> bool {
    let mut doomed = None;
    for (key, value) in table.iter_mut() {
        let value_span = value.span();
        // Containers first: an array of tables may share its span with its first element.
        let inside = match value.get_mut() {
            DeValue::Table(inner) => match remove_at(inner, &value_span, span, damaged) {
                true => Found::Handled,
                false => Found::NotHere,
            },
            DeValue::Array(items) => remove_in_array(items, span, damaged),
            _ => Found::NotHere,
        };
        match inside {
            Found::Handled => return true,
            Found::DropKey => {}
            Found::NotHere => {
                let here =
                    value_span == *span || holds(&key.span(), span) || holds(&value_span, span);
                if !here {
                    continue;
                }
            }
        }
        doomed = Some(key.clone());
        break;
    }
    let Some(key) = doomed else { return false };
    table.remove(&key);
    damaged.push(table_span.clone());
    true
}

/// Where, inside one value, the error was found.
enum Found {
    /// The entry was taken out further down.
    Handled,
    /// A bad scalar element of a list: the key holding the list goes.
    DropKey,
    /// Not inside this value.
    NotHere,
}

/// [`remove_at`] inside an array: recurse into the table element holding the span, drop
/// the element whose own span it is (a rule that lacks a required key), or ask for the
/// whole key to go (a bad scalar element).
fn remove_in_array(
    items: &mut DeArray<'_>,
    span: &Range<usize>,
    damaged: &mut Vec<Range<usize>>,
) -> Found {
    let mut element = None;
    for (index, item) in items.iter_mut().enumerate() {
        let item_span = item.span();
        if item_span == *span {
            element = Some(index);
            break;
        }
        let handled = match item.get_mut() {
            DeValue::Table(inner) => remove_at(inner, &item_span, span, damaged),
            _ if holds(&item_span, span) => return Found::DropKey,
            _ => false,
        };
        if handled {
            return Found::Handled;
        }
    }
    let Some(index) = element else {
        return Found::NotHere;
    };
    // DeArray cannot remove in place: rebuild it without the element.
    let mut rebuilt = DeArray::new();
    for (i, item) in items.iter().enumerate() {
        if i != index {
            rebuilt.push(item.clone());
        }
    }
    *items = rebuilt;
    Found::Handled
}

fn holds(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Read a spanned string as a serde enum (an action), with serde's own message for an
/// unknown variant, so that a bad action does not hide the rest of its rule.
pub(crate) fn variant<T: for<'de> Deserialize<'de>>(value: &Spanned<String>) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        value.get_ref().as_str().into_deserializer();
    T::deserialize(deserializer).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        a: Option<A>,
        #[serde(default)]
        rules: Vec<Rule>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct A {
        #[serde(default)]
        n: Option<u8>,
        #[serde(default)]
        s: Option<String>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        name: String,
        #[serde(default)]
        x: Option<bool>,
    }

    fn lines(text: &str) -> Vec<String> {
        match deserialize_all::<Doc>(text, "f") {
            Ok((_, errors)) | Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_shape_error_is_reported_with_its_line() {
        let text =
            "[a]\nbogus = 1\nn = \"x\"\ns = \"ok\"\n\n[[rules]]\nname = \"r\"\nx = 3\nzz = 1\n";
        let shown = lines(text);
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert!(
            shown[0].starts_with("f:2: unknown field `bogus`"),
            "{shown:?}"
        );
        assert!(shown[1].starts_with("f:3: invalid type"), "{shown:?}");
        assert!(shown[2].starts_with("f:8: invalid type"), "{shown:?}");
        assert!(shown[3].starts_with("f:9: unknown field `zz`"), "{shown:?}");
    }

    #[test]
    fn what_is_left_still_deserialises() {
        let text = "[a]\nbogus = 1\ns = \"kept\"\nn = 3\n[[rules]]\nname = \"r\"\nx = true\n";
        let (doc, errors) = deserialize_all::<Doc>(text, "f").unwrap();
        assert_eq!(errors.len(), 1);
        let a = doc.a.unwrap();
        assert_eq!((a.s.as_deref(), a.n), (Some("kept"), Some(3)));
        assert_eq!(
            (doc.rules[0].name.as_str(), doc.rules[0].x),
            ("r", Some(true))
        );
    }

    #[test]
    fn a_missing_required_key_drops_its_table_once() {
        let text = "[[rules]]\nx = true\n\n[[rules]]\nname = 7\n\n[[rules]]\nname = \"ok\"\n";
        let shown = lines(text);
        // The second rule's `name` is wrong; its "missing field" that follows is not news.
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("f:1: missing field `name`"),
            "{shown:?}"
        );
        assert!(shown[1].starts_with("f:5: invalid type"), "{shown:?}");
    }

    #[test]
    fn a_syntax_error_is_reported_alone() {
        let shown = lines("[a\nn = 1\n");
        assert_eq!(shown.len(), 1);
    }

    #[test]
    fn an_error_free_document_gives_no_errors() {
        let (doc, errors) = deserialize_all::<Doc>("[[rules]]\nname = \"r\"\n", "f").unwrap();
        assert!(errors.is_empty());
        assert_eq!(doc.rules.len(), 1);
    }
}
