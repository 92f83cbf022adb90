//! The storage behind [`DomainSet`](super::DomainSet): normalized name → flag bits.
//!
//! Most names are short, so they are stored inline in the hash table's buckets: a
//! lookup that finds its name compares bytes already on the bucket's cache line instead
//! of following a pointer to the heap, which is a cache miss per probe in a table of a
//! million names. Longer names live in a second table with boxed keys.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use ahash::AHashMap;

/// Longest name stored inline; with its length byte and the flag byte a bucket is 32
/// bytes.
const INLINE: usize = 30;

/// A name of at most [`INLINE`] bytes, stored in place.
#[derive(Clone, Copy)]
struct ShortName {
    len: u8,
    bytes: [u8; INLINE],
}

impl ShortName {
    fn new(name: &str) -> Option<Self> {
        if name.len() > INLINE {
            return None;
        }
        let mut bytes = [0; INLINE];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(ShortName {
            len: u8::try_from(name.len()).ok()?,
            bytes,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

// Equality and hashing are those of the `[u8]` it borrows as, so that a table keyed by
// `ShortName` can be probed with `name.as_bytes()`.
impl PartialEq for ShortName {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ShortName {}

impl Hash for ShortName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for ShortName {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Name → bits, split by name length.
#[derive(Clone, Default)]
pub(super) struct NameMap {
    short: AHashMap<ShortName, u8>,
    long: AHashMap<Box<str>, u8>,
}

impl NameMap {
    /// Room for `capacity` names, expected short.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        NameMap {
            short: AHashMap::with_capacity(capacity),
            long: AHashMap::new(),
        }
    }

    /// The bits of `name`, 0 when absent.
    pub(super) fn get(&self, name: &str) -> u8 {
        let bits = if name.len() <= INLINE {
            self.short.get(name.as_bytes())
        } else {
            self.long.get(name)
        };
        bits.copied().unwrap_or(0)
    }

    /// Add `bits` to those of `name`.
    pub(super) fn add(&mut self, name: &str, bits: u8) {
        if let Some(short) = ShortName::new(name) {
            *self.short.entry(short).or_insert(0) |= bits;
        } else if let Some(existing) = self.long.get_mut(name) {
            *existing |= bits;
        } else {
            self.long.insert(name.into(), bits);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.short.is_empty() && self.long.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_are_kept_apart_and_combined_by_name() {
        let short = "a".repeat(INLINE);
        let long = "a".repeat(INLINE + 1);
        let mut map = NameMap::with_capacity(4);
        map.add(&short, 1);
        map.add(&long, 2);
        map.add(&short, 2);
        map.add(&long, 2);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(&short), 3);
        assert_eq!(map.get(&long), 2);
        assert_eq!(map.get("a"), 0);
        assert_eq!(map.get(&"a".repeat(INLINE + 2)), 0);
        assert_eq!(map.get(""), 0);
        assert!(!map.is_empty());
        assert!(NameMap::default().is_empty());
    }
}
