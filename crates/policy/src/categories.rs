//! `[categories]`: named domain lists, inline or loaded from list files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use crate::diagnostics::Diagnostics;
use crate::domain::DomainSet;
use crate::raw::RawCategory;

/// Bad lines reported per list file; a file in the wrong format would otherwise print
/// one error per line.
const MAX_ERRORS_PER_FILE: usize = 20;

/// Compiled categories by name. Shared (`Arc`) because several rules may name the same
/// large category.
pub(crate) type Categories = BTreeMap<String, Arc<DomainSet>>;

/// Compile every category. A category with errors is still present (possibly partial),
/// so that rules naming it are not also reported as naming an unknown category.
pub(crate) fn compile(
    raw: BTreeMap<String, RawCategory>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> Categories {
    raw.into_iter()
        .map(|(name, source)| {
            let set = match source {
                RawCategory::Inline(patterns) => inline(&name, &patterns, diag),
                RawCategory::File(file) => list_file(&file, base_dir, diag),
            };
            (name, Arc::new(set))
        })
        .collect()
}

fn inline(name: &str, patterns: &[Spanned<String>], diag: &mut Diagnostics<'_>) -> DomainSet {
    let mut set = DomainSet::with_capacity(patterns.len());
    for pattern in patterns {
        if let Err(e) = set.insert_pattern(pattern.get_ref()) {
            diag.at(pattern.span(), format!("categories.{name}: {e}"));
        }
    }
    set
}

/// Load a list file: one pattern per line, `#` starts a comment (on its own line or
/// after an entry), blank lines ignored. Bad lines are reported as `LISTFILE:LINE: msg`.
fn list_file(file: &Spanned<String>, base_dir: &Path, diag: &mut Diagnostics<'_>) -> DomainSet {
    let path = base_dir.join(file.get_ref());
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            diag.at(
                file.span(),
                format!("cannot read category file {shown}: {e}"),
            );
            return DomainSet::new();
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    let mut set = DomainSet::with_capacity(lines);
    let mut bad = 0usize;
    for (index, line) in text.lines().enumerate() {
        let entry = line.split_once('#').map_or(line, |(entry, _)| entry).trim();
        if entry.is_empty() {
            continue;
        }
        if let Err(e) = set.insert_pattern(entry) {
            bad += 1;
            if bad <= MAX_ERRORS_PER_FILE {
                diag.in_file(&shown, Some(index + 1), e);
            }
        }
    }
    if bad > MAX_ERRORS_PER_FILE {
        diag.in_file(
            &shown,
            None,
            format!(
                "{} more invalid lines not shown ({bad} in all)",
                bad - MAX_ERRORS_PER_FILE
            ),
        );
    }
    set
}
