//! Anti-phishing lists (SPEC §3 step 2): `[anti_phishing] lists`, compiled with the
//! configuration so that a reload reloads them.
//!
//! A list file has one entry per line in the format of category files (`#` comments,
//! blank lines ignored). An entry is either
//! - a **domain** (`evil.example`): matches the name and all its subdomains, compared
//!   like `domains` conditions (case, trailing dot, IDN in punycode); or
//! - a **URL prefix** (`https://evil.example:8443/login`): matches request URLs with the
//!   same scheme, host and port (scheme and host compared lowercased, a default port
//!   written or not) whose path and query begin with the entry's. Paths are compared
//!   byte for byte, case-sensitively and without percent-decoding, so
//!   `https://evil.example/login` matches `/login.php` and `/login/x` but not `/Login`
//!   or `/%6Cogin`. An entry without a path matches the whole origin.
//!
//! This lives in the policy crate because it is pure and loaded with the configuration;
//! it reuses [`DomainSet`] so that a million domains load in seconds and match with one
//! hash probe per label.

mod prefixes;
mod url;

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::diagnostics::{ConfigError, Diagnostics};
use crate::domain::{normalize, DomainSet};
use crate::list_file;
use prefixes::{Pending, UrlPrefixes};

/// Compiled anti-phishing lists. Immutable; empty when no list is configured.
#[derive(Default)]
pub struct PhishingList {
    /// Domain entries, and the hosts of URL-prefix entries marked.
    domains: DomainSet,
    prefixes: UrlPrefixes,
    /// Entries read, duplicates included.
    entries: usize,
}

/// The list entry a request URL matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PhishingMatch {
    /// A domain entry: the listed name (the request's host or a parent of it).
    Domain(String),
    /// A URL-prefix entry, normalized: `scheme://host[:port]/path`.
    UrlPrefix(String),
}

impl fmt::Display for PhishingMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhishingMatch::Domain(entry) | PhishingMatch::UrlPrefix(entry) => f.write_str(entry),
        }
    }
}

impl PhishingList {
    /// Load list files (paths used as given, and shown so in errors). Every bad line is
    /// reported as `FILE:LINE: msg` (at most 20 per file, then a count).
    pub fn load(files: &[PathBuf]) -> Result<PhishingList, Vec<ConfigError>> {
        let mut builder = Builder::default();
        let mut errors = Vec::new();
        for file in files {
            let shown = file.display().to_string();
            match std::fs::read_to_string(file) {
                Ok(text) => errors.extend(builder.add_text(&text, &shown)),
                Err(e) => errors.push(ConfigError {
                    file: shown.clone(),
                    line: None,
                    message: format!("cannot read phishing list {shown}: {e}"),
                }),
            }
        }
        let list = builder.build().map_err(|e| vec![e])?;
        if errors.is_empty() {
            Ok(list)
        } else {
            Err(errors)
        }
    }

    /// The entry matching `url`, the request's absolute URL (`http://` or `https://`).
    /// Any other string matches nothing.
    pub fn check(&self, url: &str) -> Option<PhishingMatch> {
        let (origin, path) = url::parse_request(url)?;
        let (domain, has_prefixes) = self.domains.matching_and_mark(&origin.host);
        if let Some(domain) = domain {
            return Some(PhishingMatch::Domain(domain.to_owned()));
        }
        if !has_prefixes {
            return None;
        }
        let prefix = self.prefixes.find(&origin, &path)?;
        Some(PhishingMatch::UrlPrefix(format!(
            "{}{prefix}",
            origin.display()
        )))
    }

    /// Whether a normalized host name is on a list: a domain entry covers it, or a
    /// URL-prefix entry names it. Such a name must stay inspected.
    pub fn lists_name(&self, normalized_name: &str) -> bool {
        let (domain, has_prefixes) = self.domains.matching_and_mark(normalized_name);
        domain.is_some() || has_prefixes
    }

    /// Number of entries read from the list files, duplicates included.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether no entry is loaded (anti-phishing is off).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for PhishingList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A list may hold a million entries: never print them.
        f.debug_struct("PhishingList")
            .field("entries", &self.entries)
            .field("url_prefixes", &self.prefixes.len())
            .finish()
    }
}

/// `[anti_phishing] lists`, files resolved against `base_dir`; an unreadable file is
/// reported at the line naming it.
pub(crate) fn compile(
    lists: Option<Vec<Spanned<String>>>,
    base_dir: &Path,
    diag: &mut Diagnostics<'_>,
) -> PhishingList {
    let mut builder = Builder::default();
    for file in lists.unwrap_or_default() {
        if file.get_ref().trim().is_empty() {
            diag.at(file.span(), "anti_phishing.lists: empty path");
            continue;
        }
        let path = base_dir.join(file.get_ref());
        let shown = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => diag.extend(builder.add_text(&text, &shown)),
            Err(e) => diag.at(
                file.span(),
                format!("cannot read phishing list {shown}: {e}"),
            ),
        }
    }
    builder.build().unwrap_or_else(|e| {
        diag.extend([e]);
        PhishingList::default()
    })
}

/// Entries gathered from every file before the URL prefixes are sorted and packed.
#[derive(Default)]
struct Builder {
    domains: DomainSet,
    prefixes: Vec<Pending>,
    entries: usize,
}

impl Builder {
    /// Add the entries of one file's text; the errors of its bad lines.
    fn add_text(&mut self, text: &str, shown: &str) -> Vec<ConfigError> {
        let (text, _) = list_file::prepare(text);
        list_file::for_each_entry(text, shown, |entry| self.add(entry))
    }

    fn add(&mut self, entry: &str) -> Result<(), String> {
        if entry.contains("://") {
            let (origin, path) =
                url::parse_entry(entry).map_err(|why| format!("invalid URL `{entry}`: {why}"))?;
            self.domains.mark(&origin.host);
            self.entries += 1;
            self.prefixes.push(Pending {
                host: origin.host.into_owned(),
                https: origin.https,
                port: origin.port,
                path,
            });
            return Ok(());
        }
        if entry.contains(['/', ':', '*']) || entry.starts_with('.') {
            return Err(format!(
                "invalid entry `{entry}`: expected a domain like evil.example or a URL like https://evil.example/login"
            ));
        }
        let name = normalize(entry).map_err(|why| format!("invalid domain `{entry}`: {why}"))?;
        self.domains.insert_with_subdomains(&name);
        self.entries += 1;
        Ok(())
    }

    fn build(self) -> Result<PhishingList, ConfigError> {
        let prefixes = UrlPrefixes::build(self.prefixes).map_err(|_| ConfigError {
            file: "anti_phishing.lists".into(),
            line: None,
            message: "the URL prefixes of the phishing lists exceed 4 GiB".into(),
        })?;
        Ok(PhishingList {
            domains: self.domains,
            prefixes,
            entries: self.entries,
        })
    }
}

#[cfg(test)]
mod tests;
