//! The learned bypass (SPEC §1): names that cannot be bumped — clients at several
//! addresses that keep rejecting the replacement certificate (certificate pinning), or
//! a server that asks for a client certificate — are tunneled after the SNI check for
//! `tls.learn_ttl`. Which evidence may teach is the policy's decision
//! (`Policy::may_learn_bypass`); this table counts and remembers.
//!
//! One table per process, shared by every configuration generation, so that a reload
//! neither forgets what was learned nor loses the counts; the admin endpoint lists and
//! deletes its entries. It is bounded (`tls.learn_max_names`, least recently seen
//! dropped first) and its learned bypasses are kept in `tls.learn_state` across
//! restarts.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Rejections older than this do not count towards `learn_after`.
const WINDOW: Duration = Duration::from_secs(600);

/// How often the persisted state is brought up to date, at most.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// Why a name is bypassed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BypassReason {
    ClientRejectedCertificate,
    ClientCertificateRequested,
}

impl BypassReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            BypassReason::ClientRejectedCertificate => "client_rejected_certificate",
            BypassReason::ClientCertificateRequested => "client_certificate_requested",
        }
    }
}

/// A learned bypass, as the admin endpoint shows it and the state file keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedBypass {
    pub sni: String,
    pub reason: BypassReason,
    /// Distinct client addresses counted when it was learned (1 for a
    /// CertificateRequest).
    pub count: u32,
    #[serde(with = "rfc3339")]
    pub expires: SystemTime,
}

/// The settings that bear on learning (from the configuration generation in force).
#[derive(Clone, Copy, Debug)]
pub struct Learning {
    /// `tls.learn_after`: distinct client addresses within ten minutes.
    pub after: u32,
    /// `tls.learn_ttl`.
    pub ttl: Duration,
    /// `tls.learn_max_names`: names counted or learned at most.
    pub max_names: usize,
}

impl Learning {
    pub fn from_settings(tls: &sluice_policy::TlsSettings) -> Self {
        Learning {
            after: tls.learn_after,
            ttl: tls.learn_ttl,
            max_names: tls.learn_max_names,
        }
    }
}

/// What is known about one name.
struct Entry {
    /// Client addresses that rejected the certificate, each with its latest rejection;
    /// fewer than `learn_after` (reaching it learns and clears them).
    rejections: Vec<(IpAddr, SystemTime)>,
    learned: Option<LearnedBypass>,
    /// Key of this entry in [`Table::by_seen`].
    seen: u64,
}

/// The table proper: pure, the time passed in by the caller.
#[derive(Default)]
pub struct Table {
    entries: HashMap<String, Entry>,
    /// Names by when they were last seen, least recent first: the eviction order.
    by_seen: BTreeMap<u64, String>,
    clock: u64,
    /// Changes whenever the learned bypasses (what is persisted) change.
    version: u64,
}

impl Table {
    /// Is `sni` (normalized) bypassed at `now`? An expired bypass is forgotten (counting
    /// starts again from zero).
    pub fn is_bypassed(&mut self, sni: &str, now: SystemTime) -> bool {
        let Some(learned) = self.entries.get(sni).and_then(|e| e.learned.as_ref()) else {
            return false;
        };
        if now < learned.expires {
            self.touch(sni);
            true
        } else {
            self.forget(sni);
            false
        }
    }

    /// Count a rejection of the replacement certificate for `sni` by `client`; learn a
    /// bypass when `learning.after` distinct addresses did so within ten minutes. One
    /// address counts once however often it rejects. Returns the new bypass when this
    /// rejection created it.
    pub fn record_rejection(
        &mut self,
        sni: &str,
        client: IpAddr,
        learning: &Learning,
        now: SystemTime,
    ) -> Option<LearnedBypass> {
        let entry = self.fresh_entry(sni, learning.max_names, now)?;
        entry.rejections.retain(|(_, at)| within_window(*at, now));
        match entry.rejections.iter_mut().find(|(ip, _)| *ip == client) {
            Some((_, at)) => *at = now,
            None => entry.rejections.push((client, now)),
        }
        let count = u32::try_from(entry.rejections.len()).unwrap_or(u32::MAX);
        if count < learning.after {
            return None;
        }
        let reason = BypassReason::ClientRejectedCertificate;
        Some(self.learn(sni, reason, count, learning.ttl, now))
    }

    /// A server that proved to be the SNI's asked for a client certificate: learn the
    /// bypass at once. Returns it, unless the name was bypassed already.
    pub fn record_certificate_request(
        &mut self,
        sni: &str,
        learning: &Learning,
        now: SystemTime,
    ) -> Option<LearnedBypass> {
        self.fresh_entry(sni, learning.max_names, now)?;
        let reason = BypassReason::ClientCertificateRequested;
        Some(self.learn(sni, reason, 1, learning.ttl, now))
    }

    /// The bypasses in force at `now`, sorted by name.
    pub fn list(&self, now: SystemTime) -> Vec<LearnedBypass> {
        let mut list: Vec<LearnedBypass> = self
            .entries
            .values()
            .filter_map(|e| e.learned.as_ref())
            .filter(|learned| now < learned.expires)
            .cloned()
            .collect();
        list.sort_by(|a, b| a.sni.cmp(&b.sni));
        list
    }

    /// Forget `sni` entirely (its bypass and its count). False if it was not bypassed.
    pub fn remove(&mut self, sni: &str, now: SystemTime) -> bool {
        let was_bypassed = self
            .entries
            .get(sni)
            .and_then(|e| e.learned.as_ref())
            .is_some_and(|learned| now < learned.expires);
        self.forget(sni);
        was_bypassed
    }

    /// Take in a bypass read from the state file (expired ones are left out).
    pub fn restore(&mut self, learned: LearnedBypass, max_names: usize, now: SystemTime) {
        if now >= learned.expires {
            return;
        }
        let sni = learned.sni.clone();
        if let Some(entry) = self.fresh_entry(&sni, max_names, now) {
            entry.learned = Some(learned);
        }
    }

    /// Take in a bypass the fleet learned. False when one is in force here already
    /// (or it has expired).
    pub fn adopt(&mut self, learned: LearnedBypass, max_names: usize, now: SystemTime) -> bool {
        if now >= learned.expires {
            return false;
        }
        let sni = learned.sni.clone();
        let Some(entry) = self.fresh_entry(&sni, max_names, now) else {
            return false;
        };
        entry.rejections = Vec::new();
        entry.learned = Some(learned);
        self.version += 1;
        true
    }

    /// Drop what no longer matters: names whose bypass expired and whose rejections
    /// are all older than ten minutes.
    pub fn prune(&mut self, now: SystemTime) {
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                let learned = e.learned.as_ref().is_some_and(|l| now < l.expires);
                !learned && !e.rejections.iter().any(|(_, at)| within_window(*at, now))
            })
            .map(|(sni, _)| sni.clone())
            .collect();
        for sni in stale {
            self.forget(&sni);
        }
    }

    /// Names counted or learned.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Distinct addresses counted for `sni` (not yet learned), within ten minutes.
    pub fn rejections(&self, sni: &str, now: SystemTime) -> usize {
        self.entries.get(sni).map_or(0, |e| {
            e.rejections
                .iter()
                .filter(|(_, at)| within_window(*at, now))
                .count()
        })
    }

    /// The entry of `sni`, seen now, for counting: `None` while a bypass is in force;
    /// an expired bypass is dropped. Makes room by dropping the least recently seen.
    fn fresh_entry(&mut self, sni: &str, max_names: usize, now: SystemTime) -> Option<&mut Entry> {
        if self.entries.contains_key(sni) {
            self.touch(sni);
        } else {
            while self.entries.len() >= max_names.max(1) {
                let Some((_, oldest)) = self.by_seen.pop_first() else {
                    break;
                };
                self.forget(&oldest);
            }
            let seen = self.tick();
            self.by_seen.insert(seen, sni.to_string());
            let entry = Entry {
                rejections: Vec::new(),
                learned: None,
                seen,
            };
            self.entries.insert(sni.to_string(), entry);
        }
        let entry = self.entries.get_mut(sni)?;
        match &entry.learned {
            Some(learned) if now < learned.expires => None,
            Some(_) => {
                entry.learned = None;
                self.version += 1;
                Some(entry)
            }
            None => Some(entry),
        }
    }

    fn learn(
        &mut self,
        sni: &str,
        reason: BypassReason,
        count: u32,
        ttl: Duration,
        now: SystemTime,
    ) -> LearnedBypass {
        let learned = LearnedBypass {
            sni: sni.to_string(),
            reason,
            count,
            expires: now + ttl,
        };
        if let Some(entry) = self.entries.get_mut(sni) {
            entry.rejections = Vec::new();
            entry.learned = Some(learned.clone());
        }
        self.version += 1;
        learned
    }

    fn touch(&mut self, sni: &str) {
        let seen = self.tick();
        if let Some(entry) = self.entries.get_mut(sni) {
            self.by_seen.remove(&entry.seen);
            entry.seen = seen;
            self.by_seen.insert(seen, sni.to_string());
        }
    }

    fn forget(&mut self, sni: &str) {
        if let Some(entry) = self.entries.remove(sni) {
            self.by_seen.remove(&entry.seen);
            if entry.learned.is_some() {
                self.version += 1;
            }
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// Whether a rejection at `at` still counts at `now`. A clock that went back counts it.
fn within_window(at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(at).map_or(true, |age| age <= WINDOW)
}

/// The process's table, shared by every connection and configuration generation.
#[derive(Default)]
pub struct BypassTable {
    table: Mutex<Table>,
    /// The table version last written to the state file.
    saved: Mutex<u64>,
}

impl BypassTable {
    /// Is `sni` (normalized) bypassed now?
    pub fn is_bypassed(&self, sni: &str) -> bool {
        self.lock().is_bypassed(sni, SystemTime::now())
    }

    /// [`Table::record_rejection`] now.
    pub fn record_rejection(
        &self,
        sni: &str,
        client: IpAddr,
        learning: &Learning,
    ) -> Option<LearnedBypass> {
        self.lock()
            .record_rejection(sni, client, learning, SystemTime::now())
    }

    /// [`Table::record_certificate_request`] now.
    pub fn record_certificate_request(
        &self,
        sni: &str,
        learning: &Learning,
    ) -> Option<LearnedBypass> {
        self.lock()
            .record_certificate_request(sni, learning, SystemTime::now())
    }

    /// The bypasses in force, sorted by name.
    pub fn list(&self) -> Vec<LearnedBypass> {
        self.lock().list(SystemTime::now())
    }

    /// [`Table::adopt`] now.
    pub fn adopt(&self, learned: LearnedBypass, max_names: usize) -> bool {
        self.lock().adopt(learned, max_names, SystemTime::now())
    }

    /// Forget `sni` entirely (its bypass and its count). False if it was not bypassed.
    pub fn remove(&self, sni: &str) -> bool {
        self.lock().remove(sni, SystemTime::now())
    }

    /// Read the bypasses kept in `path` (none when it does not exist yet); returns how
    /// many are in force.
    pub fn load(&self, path: &Path, max_names: usize) -> io::Result<usize> {
        let now = SystemTime::now();
        let kept = read_state(path, now)?;
        let mut saved = self.saved_version();
        let mut table = self.lock();
        for learned in kept {
            table.restore(learned, max_names, now);
        }
        *saved = table.version;
        Ok(table.list(now).len())
    }

    /// Write the bypasses in force to `path` if they changed since the last write:
    /// to a temporary file beside it, then renamed over it, so a crash leaves the old
    /// file or the new one.
    pub fn save_if_changed(&self, path: &Path) -> io::Result<()> {
        // Held throughout, so that two writers never put an older list over a newer.
        let mut saved = self.saved_version();
        let (version, list) = {
            let mut table = self.lock();
            let now = SystemTime::now();
            table.prune(now);
            (table.version, table.list(now))
        };
        if *saved == version {
            return Ok(());
        }
        write_state(path, &list)?;
        *saved = version;
        Ok(())
    }

    /// Every second, prune the table and write the state file when the bypasses
    /// changed; `path` is read from the configuration in force each time. Runs until
    /// the task is dropped; the exit path writes once more.
    pub async fn keep_saved(self: Arc<Self>, path: impl Fn() -> PathBuf + Send + 'static) {
        let mut every = tokio::time::interval(SAVE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let table = self.clone();
            let target = path();
            let saved = tokio::task::spawn_blocking(move || table.save_if_changed(&target)).await;
            if let Ok(Err(error)) = saved {
                tracing::warn!(%error, "cannot write the learned bypasses (tls.learn_state)");
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves consistent data (no multi-step updates
        // across an unwind point), so a poisoned lock is still usable.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn saved_version(&self) -> MutexGuard<'_, u64> {
        self.saved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The bypasses kept in a state file that are still in force at `now` (for the table
/// at start, and for `sluice explain`). A missing file holds none.
pub fn read_state(path: &Path, now: SystemTime) -> io::Result<Vec<LearnedBypass>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let list: Vec<LearnedBypass> =
        serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(list.into_iter().filter(|l| now < l.expires).collect())
}

fn write_state(path: &Path, list: &[LearnedBypass]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(list).map_err(io::Error::other)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&json)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)
}

/// A time as RFC 3339 (UTC), as the access log and the admin endpoint write it.
pub fn rfc3339(time: SystemTime) -> String {
    OffsetDateTime::from(time)
        .format(&Rfc3339)
        .unwrap_or_default()
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::rfc3339(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(SystemTime::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn learning(after: u32, max_names: usize) -> Learning {
        Learning {
            after,
            ttl: DAY,
            max_names,
        }
    }

    fn client(n: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, n])
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn one_address_never_teaches_alone() {
        let mut table = Table::default();
        let three = learning(3, 10);
        for i in 0..20 {
            assert!(table
                .record_rejection("pinned.example", client(2), &three, at(i))
                .is_none());
        }
        assert!(!table.is_bypassed("pinned.example", at(20)));
        assert_eq!(table.rejections("pinned.example", at(20)), 1);
    }

    #[test]
    fn distinct_addresses_within_ten_minutes_teach() {
        let mut table = Table::default();
        let three = learning(3, 10);
        assert!(table
            .record_rejection("pinned.example", client(2), &three, at(0))
            .is_none());
        assert!(table
            .record_rejection("pinned.example", client(3), &three, at(1))
            .is_none());
        assert!(!table.is_bypassed("pinned.example", at(2)));
        let learned = table
            .record_rejection("pinned.example", client(4), &three, at(2))
            .unwrap();
        assert_eq!(learned.count, 3);
        assert_eq!(learned.expires, at(2) + DAY);
        assert!(table.is_bypassed("pinned.example", at(3)));
        assert!(!table.is_bypassed("other.example", at(3)));
        assert_eq!(table.list(at(3)), vec![learned]);
        // Already learned: nothing more is counted.
        assert!(table
            .record_rejection("pinned.example", client(5), &three, at(4))
            .is_none());
    }

    #[test]
    fn rejections_older_than_ten_minutes_do_not_count() {
        let mut table = Table::default();
        let two = learning(2, 10);
        table.record_rejection("slow.example", client(2), &two, at(0));
        assert!(table
            .record_rejection("slow.example", client(3), &two, at(601))
            .is_none());
        assert_eq!(table.rejections("slow.example", at(601)), 1);
        // A repeat refreshes its address's time.
        table.record_rejection("slow.example", client(3), &two, at(1000));
        assert!(table
            .record_rejection("slow.example", client(4), &two, at(1100))
            .is_some());
    }

    #[test]
    fn a_certificate_request_teaches_at_once_with_count_one() {
        let mut table = Table::default();
        let learned = table
            .record_certificate_request("mtls.example", &learning(3, 10), at(0))
            .unwrap();
        assert_eq!(learned.count, 1);
        assert_eq!(learned.reason, BypassReason::ClientCertificateRequested);
        assert!(table.is_bypassed("mtls.example", at(1)));
        assert!(table
            .record_certificate_request("mtls.example", &learning(3, 10), at(2))
            .is_none());
    }

    #[test]
    fn removing_a_bypass_restarts_the_count_from_zero() {
        let mut table = Table::default();
        let two = learning(2, 10);
        table.record_rejection("pinned.example", client(2), &two, at(0));
        table.record_rejection("pinned.example", client(3), &two, at(1));
        assert!(table.remove("pinned.example", at(2)));
        assert!(!table.remove("pinned.example", at(2)), "already gone");
        assert!(!table.is_bypassed("pinned.example", at(2)));
        assert!(table
            .record_rejection("pinned.example", client(2), &two, at(3))
            .is_none());
        assert!(table
            .record_rejection("pinned.example", client(3), &two, at(4))
            .is_some());
    }

    #[test]
    fn a_bypass_expires_after_its_ttl_and_counting_restarts() {
        let mut table = Table::default();
        let one = learning(1, 10);
        table.record_certificate_request("brief.example", &one, at(0));
        assert!(table.is_bypassed("brief.example", at(0) + DAY - Duration::from_secs(1)));
        assert!(table.list(at(0) + DAY).is_empty());
        assert!(!table.is_bypassed("brief.example", at(0) + DAY));
        assert!(table.is_empty());
        assert!(table
            .record_rejection("brief.example", client(2), &one, at(0) + DAY)
            .is_some());
    }

    #[test]
    fn the_least_recently_seen_names_are_dropped_at_the_bound() {
        let mut table = Table::default();
        let bound = learning(2, 3);
        table.record_certificate_request("a.example", &bound, at(0));
        table.record_rejection("b.example", client(2), &bound, at(1));
        table.record_rejection("c.example", client(2), &bound, at(2));
        // Seeing a.example again makes b.example the least recently seen.
        assert!(table.is_bypassed("a.example", at(3)));
        table.record_rejection("d.example", client(2), &bound, at(4));
        assert_eq!(table.len(), 3);
        assert_eq!(table.rejections("b.example", at(4)), 0);
        assert_eq!(table.rejections("c.example", at(4)), 1);
        assert!(table.is_bypassed("a.example", at(5)));
        for i in 0..100u8 {
            table.record_rejection(&format!("flood{i}.example"), client(i), &bound, at(6));
            assert!(table.len() <= 3);
        }
        assert!(!table.is_bypassed("a.example", at(7)), "dropped at last");
    }

    #[test]
    fn pruning_drops_stale_counts_and_expired_bypasses() {
        let mut table = Table::default();
        let bound = learning(3, 100);
        table.record_rejection("stale.example", client(2), &bound, at(0));
        table.record_rejection("fresh.example", client(2), &bound, at(500));
        table.record_certificate_request("learned.example", &bound, at(0));
        table.prune(at(700));
        assert_eq!(table.len(), 2);
        assert_eq!(table.rejections("stale.example", at(700)), 0);
        assert_eq!(table.rejections("fresh.example", at(700)), 1);
        table.prune(at(0) + DAY);
        assert!(table.is_empty());
    }

    #[test]
    fn the_state_file_keeps_what_is_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/bypass.json");
        let table = BypassTable::default();
        let long = learning(1, 10);
        let brief = Learning {
            ttl: Duration::ZERO,
            ..long
        };
        table.record_certificate_request("kept.example", &long);
        table.record_certificate_request("brief.example", &brief);
        table.save_if_changed(&path).unwrap();
        // A stale entry in the file is not loaded.
        let mut list: Vec<LearnedBypass> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        list.push(LearnedBypass {
            sni: "expired.example".into(),
            reason: BypassReason::ClientRejectedCertificate,
            count: 3,
            expires: SystemTime::now() - DAY,
        });
        std::fs::write(&path, serde_json::to_vec(&list).unwrap()).unwrap();
        let restarted = BypassTable::default();
        assert_eq!(restarted.load(&path, 10).unwrap(), 1);
        assert!(restarted.is_bypassed("kept.example"));
        assert!(!restarted.is_bypassed("expired.example"));
        assert_eq!(restarted.list(), table.list());
        // A missing file is an empty table.
        assert_eq!(
            BypassTable::default()
                .load(&dir.path().join("none.json"), 10)
                .unwrap(),
            0
        );
    }
}
