//! [`UrlPrefixes`]: URL-prefix entries stored compactly for lists of a million lines.
//!
//! Hosts and paths live back to back in one string arena; entries are sorted by host,
//! scheme, port and path, and a hash table maps each host to its run of entries. A
//! lookup is one hash probe on the host and a binary search among that host's paths
//! (usually one), without allocating. Memory is the text plus about 24 bytes an entry.
//!
//! Within one origin the paths are made prefix-free when the set is built (an entry
//! that another entry of the same origin is a prefix of adds nothing), so the only
//! candidate for a request path is the greatest stored path not above it.

use ahash::RandomState;
use hashbrown::HashTable;

use super::url::Origin;

/// A slice of the arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    len: u32,
}

/// One URL prefix. Entries of one host share the host's span.
#[derive(Clone, Copy, Debug)]
struct Entry {
    host: Span,
    path: Span,
    port: u16,
    https: bool,
}

/// An entry while the set is built.
pub(super) struct Pending {
    pub(super) host: String,
    pub(super) https: bool,
    pub(super) port: u16,
    pub(super) path: String,
}

/// A built set of URL prefixes.
#[derive(Default)]
pub(super) struct UrlPrefixes {
    arena: String,
    entries: Vec<Entry>,
    /// Host → (index of its first entry, number of its entries).
    hosts: HashTable<(u32, u32)>,
    hasher: RandomState,
}

/// The arena or the entry count outgrew 32-bit offsets (over 4 GiB of list text).
#[derive(Debug)]
pub(super) struct TooLarge;

impl UrlPrefixes {
    /// Build from `pending` (in any order, duplicates allowed).
    pub(super) fn build(mut pending: Vec<Pending>) -> Result<UrlPrefixes, TooLarge> {
        pending.sort_unstable_by(|a, b| {
            (&a.host, a.https, a.port, &a.path).cmp(&(&b.host, b.https, b.port, &b.path))
        });
        let mut set = UrlPrefixes {
            arena: String::with_capacity(pending.iter().map(|p| p.path.len() + 8).sum()),
            entries: Vec::with_capacity(pending.len()),
            ..UrlPrefixes::default()
        };
        let mut host_span = Span { start: 0, len: 0 };
        let mut first_of_host = 0usize;
        for (i, entry) in pending.iter().enumerate() {
            let new_host = i == 0 || pending[i - 1].host != entry.host;
            if new_host {
                set.close_host(first_of_host);
                first_of_host = set.entries.len();
                host_span = set.push(&entry.host)?;
            } else if set.covered(entry) {
                continue;
            }
            let path = set.push(&entry.path)?;
            set.entries.push(Entry {
                host: host_span,
                path,
                port: entry.port,
                https: entry.https,
            });
        }
        set.close_host(first_of_host);
        Ok(set)
    }

    /// Whether the last entry (of the same host) has the origin of `entry` and a path
    /// that is a prefix of its path.
    fn covered(&self, entry: &Pending) -> bool {
        self.entries.last().is_some_and(|last| {
            last.https == entry.https
                && last.port == entry.port
                && entry.path.starts_with(self.text(last.path))
        })
    }

    /// Register the host whose entries start at `first` and run to the end.
    fn close_host(&mut self, first: usize) {
        let Some(entry) = self.entries.get(first) else {
            return;
        };
        let hash = self.hasher.hash_one(self.text(entry.host));
        // Both fit: `push` checked that the arena, hence the entry count, fits in u32.
        let first = u32::try_from(first).unwrap_or(u32::MAX);
        let count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX) - first;
        let (arena, entries, hasher) = (&self.arena, &self.entries, &self.hasher);
        self.hosts.insert_unique(hash, (first, count), |&(i, _)| {
            hasher.hash_one(span_text(arena, entries[i as usize].host))
        });
    }

    fn push(&mut self, text: &str) -> Result<Span, TooLarge> {
        let start = u32::try_from(self.arena.len()).map_err(|_| TooLarge)?;
        let len = u32::try_from(text.len()).map_err(|_| TooLarge)?;
        start.checked_add(len).ok_or(TooLarge)?;
        self.arena.push_str(text);
        Ok(Span { start, len })
    }

    fn text(&self, span: Span) -> &str {
        span_text(&self.arena, span)
    }

    /// The stored prefix of `path` for `origin`, as `(origin path)`.
    pub(super) fn find(&self, origin: &Origin<'_>, path: &str) -> Option<&str> {
        let host: &str = &origin.host;
        let hash = self.hasher.hash_one(host);
        let &(first, count) = self.hosts.find(hash, |&(i, _)| {
            self.text(self.entries[i as usize].host) == host
        })?;
        let entries = &self.entries[first as usize..(first + count) as usize];
        let key = (origin.https, origin.port);
        let from = entries.partition_point(|e| (e.https, e.port) < key);
        let to = entries.partition_point(|e| (e.https, e.port) <= key);
        let same_origin = &entries[from..to];
        let after = same_origin.partition_point(|e| self.text(e.path) <= path);
        let candidate = self.text(same_origin.get(after.checked_sub(1)?)?.path);
        path.starts_with(candidate).then_some(candidate)
    }

    /// Number of entries kept (duplicates and covered prefixes are not counted).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn span_text(arena: &str, span: Span) -> &str {
    // Spans are made by `push` from whole strings, so they are char boundaries.
    arena
        .get(span.start as usize..(span.start + span.len) as usize)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn pending(host: &str, https: bool, port: u16, path: &str) -> Pending {
        Pending {
            host: host.into(),
            https,
            port,
            path: path.into(),
        }
    }

    fn origin(host: &str, https: bool, port: u16) -> Origin<'_> {
        Origin {
            https,
            host: Cow::Borrowed(host),
            port,
        }
    }

    #[test]
    fn the_greatest_path_not_above_is_the_only_candidate() {
        let set = UrlPrefixes::build(vec![
            pending("a.example", true, 443, "/login"),
            pending("a.example", true, 443, "/login/deep"),
            pending("a.example", true, 443, "/pay"),
            pending("a.example", true, 443, "/l"),
            pending("a.example", false, 80, "/"),
            pending("b.example", true, 8443, "/x"),
            pending("b.example", true, 8443, "/x"),
        ])
        .unwrap();
        // "/login" and "/login/deep" are covered by "/l"; the duplicate is dropped.
        assert_eq!(set.len(), 4);
        let a = origin("a.example", true, 443);
        assert_eq!(set.find(&a, "/login.php"), Some("/l"));
        assert_eq!(set.find(&a, "/pay/now"), Some("/pay"));
        assert_eq!(set.find(&a, "/pa"), None);
        assert_eq!(set.find(&a, "/m"), None);
        assert_eq!(set.find(&a, "/"), None);
        assert_eq!(set.find(&origin("a.example", false, 80), "/any"), Some("/"));
        assert_eq!(set.find(&origin("a.example", false, 8080), "/any"), None);
        assert_eq!(
            set.find(&origin("b.example", true, 8443), "/xy"),
            Some("/x")
        );
        assert_eq!(set.find(&origin("b.example", true, 443), "/xy"), None);
        assert_eq!(set.find(&origin("c.example", true, 443), "/"), None);
    }

    #[test]
    fn an_empty_set_finds_nothing() {
        let set = UrlPrefixes::build(Vec::new()).unwrap();
        assert_eq!(set.len(), 0);
        assert_eq!(set.find(&origin("a.example", true, 443), "/"), None);
    }
}
