//! [`DomainSet`]: domain patterns in their three forms, matched label by label.

use std::fmt;

use super::names::NameMap;
use super::normalize;

/// The name itself matches.
const SELF: u8 = 1;
/// Every strict subdomain of the name matches.
const SUBDOMAINS: u8 = 2;
/// A caller's mark on the name itself; never a match (see [`DomainSet::mark`]).
const MARK: u8 = 4;

/// A set of domain patterns:
///
/// | pattern | matches |
/// |---|---|
/// | `example.com` | exactly `example.com` |
/// | `*.example.com` | subdomains of `example.com` only |
/// | `.example.com` | `example.com` and all its subdomains |
///
/// Patterns are normalized on insertion (case, trailing dot, IDN → punycode). A lookup
/// walks the label boundaries of the name, one hash probe per label, without allocating.
#[derive(Clone, Default)]
pub struct DomainSet {
    /// Normalized name → `SELF` | `SUBDOMAINS` bits.
    names: NameMap,
}

impl DomainSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set with room for `capacity` patterns without rehashing.
    pub fn with_capacity(capacity: usize) -> Self {
        DomainSet {
            names: NameMap::with_capacity(capacity),
        }
    }

    /// Add one pattern (surrounding whitespace ignored). The error says what is wrong
    /// with it, quoting it.
    pub fn insert_pattern(&mut self, pattern: &str) -> Result<(), String> {
        let pattern = pattern.trim();
        let (name, bits) = if let Some(rest) = pattern.strip_prefix("*.") {
            (rest, SUBDOMAINS)
        } else if let Some(rest) = pattern.strip_prefix('.') {
            (rest, SELF | SUBDOMAINS)
        } else {
            (pattern, SELF)
        };
        let invalid = |why: &str| format!("invalid domain pattern `{pattern}`: {why}");
        if name.contains('*') {
            return Err(invalid("`*` is only allowed as a leading `*.`"));
        }
        let name = normalize(name).map_err(invalid)?;
        self.names.add(&name, bits);
        Ok(())
    }

    /// Add a name already normalized (see [`normalize_domain`](super::normalize_domain))
    /// with all its subdomains: the `.example.com` form, without parsing a pattern.
    pub(crate) fn insert_with_subdomains(&mut self, normalized_name: &str) {
        self.names.add(normalized_name, SELF | SUBDOMAINS);
    }

    /// Whether a normalized name (see [`normalize_domain`](super::normalize_domain)) matches a pattern of the set.
    pub fn matches(&self, normalized_name: &str) -> bool {
        self.matching(normalized_name).is_some()
    }

    /// The name of the pattern that matches a normalized name: the name itself, or else
    /// its closest parent domain with a subdomain pattern.
    pub fn matching<'n>(&self, normalized_name: &'n str) -> Option<&'n str> {
        self.matching_and_mark(normalized_name).0
    }

    /// Mark a normalized name without making it match anything. The anti-phishing list
    /// marks the hosts that have URL-prefix entries, so that the probe of the name
    /// itself answers both "does a domain match" and "may a URL prefix".
    pub(crate) fn mark(&mut self, normalized_name: &str) {
        self.names.add(normalized_name, MARK);
    }

    /// [`DomainSet::matching`], and whether the name itself is marked.
    pub(crate) fn matching_and_mark<'n>(
        &self,
        normalized_name: &'n str,
    ) -> (Option<&'n str>, bool) {
        if self.names.is_empty() {
            return (None, false);
        }
        let bits = self.names.get(normalized_name);
        let marked = bits & MARK != 0;
        if bits & SELF != 0 {
            return (Some(normalized_name), marked);
        }
        // Each `.` starts a parent name; `.` is ASCII, so the next byte is a char boundary.
        let parent = normalized_name
            .bytes()
            .enumerate()
            .filter(|&(_, b)| b == b'.')
            .map(|(i, _)| &normalized_name[i + 1..])
            .find(|parent| self.has(parent, SUBDOMAINS));
        (parent, marked)
    }

    /// Number of distinct names (a name given as both `x` and `*.x` counts once; a marked
    /// name counts too).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the set holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn has(&self, name: &str, bit: u8) -> bool {
        self.names.get(name) & bit != 0
    }
}

impl fmt::Debug for DomainSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A category may hold a million names: never print them all.
        f.debug_struct("DomainSet")
            .field("len", &self.names.len())
            .finish()
    }
}
