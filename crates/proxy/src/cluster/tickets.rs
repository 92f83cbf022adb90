//! Client-leg TLS session tickets a fleet shares (SPEC §12): any node opens a ticket
//! another sealed, so a returning client resumes wherever the load balancer sends it.
//!
//! A ticket is `key id (8) ‖ nonce (12) ‖ AES-256-GCM(session)`, the id as associated
//! data. The fleet's key set lives in Redis, newest first: the newest seals, the one
//! before it still opens. A key is replaced once it is [`LIFETIME`] old and then kept as
//! the previous one until the next replacement, at least [`LIFETIME`] later, so a
//! ticket younger than its lifetime always opens. While Redis is unreachable a node
//! rotates on its own and keeps its own keys beside the fleet's until they are too old
//! to matter. Trusted and untrusted verdicts each have their own [`FleetTicketer`] and
//! key set: a session never resumes across verdicts.
//!
//! Redis never holds a usable ticket key: each is sealed ([`KeyWrap`]) with a key every
//! node derives from the shared CA key, bound to its id and verdict, so Redis' memory,
//! dumps or replicas open no session, and a key cannot be moved between verdicts.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// How long a client may resume with a ticket, and how often keys are replaced.
pub const LIFETIME: u64 = 6 * 3600;
/// Keys a node opens tickets with at most (the fleet's two, and its own from an outage).
const MAX_KEYS: usize = 4;
const ID_LEN: usize = 8;

/// One ticket key as the fleet stores it (`sluice:tickets:<verdict>` in Redis).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredKey {
    /// Base64 of the 8-byte id.
    pub id: String,
    /// Base64 of the 32-byte AES-256-GCM key.
    pub key: String,
    /// When it was made, in Unix seconds (by Redis' clock for the fleet's keys).
    pub created: u64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredKey({}, created {})", self.id, self.created)
    }
}

impl StoredKey {
    /// A fresh random key made `now` (Unix seconds).
    pub fn generate(now: u64) -> Option<StoredKey> {
        let rng = SystemRandom::new();
        let mut id = [0u8; ID_LEN];
        let mut key = [0u8; 32];
        rng.fill(&mut id).ok()?;
        rng.fill(&mut key).ok()?;
        let b64 = base64::engine::general_purpose::STANDARD;
        Some(StoredKey {
            id: b64.encode(id),
            key: b64.encode(key),
            created: now,
        })
    }
}

/// Seals ticket keys for Redis (AES-256-GCM under a secret derived from the CA key).
pub struct KeyWrap {
    aead: LessSafeKey,
    rng: SystemRandom,
}

impl KeyWrap {
    pub fn new(secret: &[u8; 32]) -> Option<KeyWrap> {
        Some(KeyWrap {
            aead: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, secret).ok()?),
            rng: SystemRandom::new(),
        })
    }

    /// `key` as Redis keeps it: its `key` field sealed, bound to its id and `verdict`.
    pub fn wrap(&self, key: &StoredKey, verdict: &str) -> Option<StoredKey> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut sealed = b64.decode(&key.key).ok()?;
        let aad = format!("{verdict}\t{}", key.id);
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut sealed,
            )
            .ok()?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&sealed);
        Some(StoredKey {
            key: b64.encode(wrapped),
            ..key.clone()
        })
    }

    /// The usable key of a wrapped one; `None` when it was not sealed for `verdict` by
    /// a holder of the same CA key (or was altered).
    pub fn unwrap(&self, key: &StoredKey, verdict: &str) -> Option<StoredKey> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let wrapped = b64.decode(&key.key).ok()?;
        let (nonce, sealed) = wrapped.split_first_chunk::<NONCE_LEN>()?;
        let mut opened = sealed.to_vec();
        let aad = format!("{verdict}\t{}", key.id);
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad.as_bytes()),
                &mut opened,
            )
            .ok()?;
        Some(StoredKey {
            key: b64.encode(plain),
            ..key.clone()
        })
    }
}

/// A key ready to seal and open.
struct TicketKey {
    id: [u8; ID_LEN],
    created: u64,
    aead: LessSafeKey,
}

impl TicketKey {
    fn from_stored(stored: &StoredKey) -> Option<TicketKey> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let id: [u8; ID_LEN] = b64.decode(&stored.id).ok()?.try_into().ok()?;
        let key = b64.decode(&stored.key).ok()?;
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).ok()?);
        Some(TicketKey {
            id,
            created: stored.created,
            aead,
        })
    }
}

/// The keys in force, the sealing one first.
#[derive(Default)]
struct KeySet(Vec<Arc<TicketKey>>);

impl KeySet {
    /// The fleet's keys (newest first) in front; the keys held before (this node's own,
    /// or the fleet's before a Redis that lost them) after them while young enough to
    /// open a live ticket.
    fn with_fleet(&self, fleet: &[StoredKey], now: u64) -> KeySet {
        let mut keys: Vec<Arc<TicketKey>> = fleet
            .iter()
            .filter_map(|k| TicketKey::from_stored(k).map(Arc::new))
            .collect();
        if keys.is_empty() {
            return KeySet(self.0.clone());
        }
        let own: Vec<Arc<TicketKey>> = self
            .0
            .iter()
            .filter(|k| !keys.iter().any(|f| f.id == k.id))
            .filter(|k| k.created + 3 * LIFETIME > now)
            .cloned()
            .collect();
        keys.extend(own);
        keys.truncate(MAX_KEYS);
        KeySet(keys)
    }

    /// With `fresh` sealing from now on when the sealing key is due for replacement.
    fn rotated(&self, now: u64, fresh: &StoredKey) -> Option<KeySet> {
        let due = self.0.first().is_none_or(|k| k.created + LIFETIME <= now);
        if !due {
            return None;
        }
        let mut keys = vec![Arc::new(TicketKey::from_stored(fresh)?)];
        keys.extend(self.0.iter().take(MAX_KEYS - 1).cloned());
        Some(KeySet(keys))
    }
}

/// rustls' ticket producer over a key set the fleet replaces under it.
pub struct FleetTicketer {
    keys: ArcSwap<KeySet>,
    rng: SystemRandom,
}

impl std::fmt::Debug for FleetTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetTicketer({} keys)", self.keys.load().0.len())
    }
}

impl FleetTicketer {
    /// A ticketer with a key of its own, so that tickets work before Redis answers.
    pub fn new() -> Option<FleetTicketer> {
        let ticketer = FleetTicketer {
            keys: ArcSwap::from_pointee(KeySet::default()),
            rng: SystemRandom::new(),
        };
        ticketer.rotate_alone(unix_now())?;
        Some(ticketer)
    }

    /// Take the fleet's key set (newest first), keeping this node's own young keys for
    /// opening only.
    pub fn adopt(&self, fleet: &[StoredKey], now: u64) {
        let next = self.keys.load().with_fleet(fleet, now);
        self.keys.store(Arc::new(next));
    }

    /// Without the fleet: replace the sealing key when it is due. `None` only when no
    /// key could be made.
    pub fn rotate_alone(&self, now: u64) -> Option<()> {
        let fresh = StoredKey::generate(now)?;
        if let Some(next) = self.keys.load().rotated(now, &fresh) {
            self.keys.store(Arc::new(next));
        }
        Some(())
    }

    /// The ids of the keys that open tickets, sealing key first (for tests).
    pub fn key_ids(&self) -> Vec<[u8; ID_LEN]> {
        self.keys.load().0.iter().map(|k| k.id).collect()
    }
}

impl rustls::server::ProducesTickets for FleetTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        let key = keys.0.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(ID_LEN + NONCE_LEN + plain.len() + 16);
        ticket.extend_from_slice(&key.id);
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.id),
                &mut sealed,
            )
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let (id, rest) = cipher.split_first_chunk::<ID_LEN>()?;
        let (nonce, sealed) = rest.split_first_chunk::<NONCE_LEN>()?;
        let keys = self.keys.load();
        let key = keys.0.iter().find(|k| k.id == *id)?;
        let mut opened = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(*id),
                &mut opened,
            )
            .ok()?;
        let len = plain.len();
        opened.truncate(len);
        Some(opened)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    const T0: u64 = 1_700_000_000;

    fn fleet_key(created: u64) -> StoredKey {
        StoredKey::generate(created).unwrap()
    }

    #[test]
    fn a_ticket_sealed_by_one_node_opens_on_another_with_the_fleets_keys() {
        let fleet = vec![fleet_key(T0)];
        let (a, b) = (FleetTicketer::new().unwrap(), FleetTicketer::new().unwrap());
        a.adopt(&fleet, T0);
        let ticket = a.encrypt(b"session").unwrap();
        assert_eq!(
            b.decrypt(&ticket),
            None,
            "not before b has the fleet's keys"
        );
        b.adopt(&fleet, T0);
        assert_eq!(b.decrypt(&ticket).unwrap(), b"session");
    }

    #[test]
    fn rotation_keeps_every_ticket_younger_than_its_lifetime() {
        let node = FleetTicketer::new().unwrap();
        let k0 = fleet_key(T0);
        node.adopt(std::slice::from_ref(&k0), T0);
        // Sealed at the last moment k0 seals.
        let late = node.encrypt(b"late").unwrap();
        let k1 = fleet_key(T0 + LIFETIME);
        node.adopt(&[k1.clone(), k0.clone()], T0 + LIFETIME);
        assert_eq!(node.decrypt(&late).unwrap(), b"late");
        let fresh = node.encrypt(b"fresh").unwrap();
        // The next rotation, a lifetime later, drops k0: `late` is a lifetime old.
        let k2 = fleet_key(T0 + 2 * LIFETIME);
        node.adopt(&[k2, k1], T0 + 2 * LIFETIME);
        assert_eq!(node.decrypt(&fresh).unwrap(), b"fresh");
        let ids = node.key_ids();
        assert!(ids.len() <= MAX_KEYS);
    }

    #[test]
    fn alone_a_node_rotates_its_own_keys_and_keeps_them_after_rejoining() {
        let node = FleetTicketer::new().unwrap();
        let now = unix_now();
        let before = node.key_ids();
        node.rotate_alone(now);
        assert_eq!(node.key_ids(), before, "not due yet");
        let own = node.encrypt(b"own").unwrap();
        node.rotate_alone(now + LIFETIME);
        assert_eq!(node.key_ids().len(), 2);
        assert_eq!(node.decrypt(&own).unwrap(), b"own");
        node.adopt(&[fleet_key(now)], now + LIFETIME);
        assert_eq!(node.key_ids().len(), 3);
        assert_eq!(node.decrypt(&own).unwrap(), b"own", "own keys still open");
        node.adopt(&[fleet_key(now)], now + 4 * LIFETIME);
        assert_eq!(node.decrypt(&own), None, "too old to matter");
    }

    #[test]
    fn a_wrapped_key_opens_only_for_its_verdict_under_the_same_ca_secret() {
        let wrap = KeyWrap::new(&[7; 32]).unwrap();
        let key = fleet_key(T0);
        let wrapped = wrap.wrap(&key, "trusted").unwrap();
        assert_ne!(wrapped.key, key.key, "Redis never sees the key");
        assert_eq!(wrapped.id, key.id);
        assert_eq!(wrap.unwrap(&wrapped, "trusted"), Some(key.clone()));
        assert_eq!(
            wrap.unwrap(&wrapped, "untrusted"),
            None,
            "not across verdicts"
        );
        let other = KeyWrap::new(&[8; 32]).unwrap();
        assert_eq!(
            other.unwrap(&wrapped, "trusted"),
            None,
            "another CA's fleet"
        );
        let moved = StoredKey {
            id: fleet_key(T0).id,
            ..wrapped.clone()
        };
        assert_eq!(wrap.unwrap(&moved, "trusted"), None, "bound to its id");
        assert_eq!(wrap.unwrap(&key, "trusted"), None, "a key stored in clear");
    }

    #[test]
    fn tampered_or_foreign_tickets_do_not_open() {
        let node = FleetTicketer::new().unwrap();
        let mut ticket = node.encrypt(b"session").unwrap();
        let last = ticket.len() - 1;
        ticket[last] ^= 1;
        assert_eq!(node.decrypt(&ticket), None);
        assert_eq!(node.decrypt(&ticket[..10]), None);
        assert_eq!(node.decrypt(b""), None);
        let other = FleetTicketer::new().unwrap();
        assert_eq!(other.decrypt(&node.encrypt(b"s").unwrap()), None);
    }
}
