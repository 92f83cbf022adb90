//! `[categories]`: named domain lists, inline or loaded from list files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use crate::diagnostics::Diagnostics;
use crate::domain::DomainSet;
use crate::list_file;
use crate::raw::RawCategory;

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

/// Load a list file (format of [`list_file`]); bad lines are reported as
/// `LISTFILE:LINE: msg`.
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
    let (text, lines) = list_file::prepare(&text);
    let mut set = DomainSet::with_capacity(lines);
    diag.extend(list_file::for_each_entry(text, &shown, |entry| {
        set.insert_pattern(entry)
    }));
    set
}
