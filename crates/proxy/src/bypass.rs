//! The learned bypass (SPEC §1): names that cannot be bumped — a client that keeps
//! rejecting the replacement certificate (certificate pinning) or a server that asks for
//! a client certificate — are tunneled after the SNI check for `tls.learn_ttl`.
//!
//! One table per process, shared by every configuration generation, so that a reload
//! neither forgets what was learned nor loses the counts; the admin endpoint lists and
//! deletes its entries.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Failures older than this do not count towards `learn_after`.
const WINDOW: Duration = Duration::from_secs(600);

/// Why a name is bypassed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// A learned bypass, as the admin endpoint shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedBypass {
    pub sni: String,
    pub reason: BypassReason,
    /// Failures counted when it was learned.
    pub count: u32,
    pub expires: SystemTime,
}

#[derive(Default)]
struct NameState {
    /// Recent failures, oldest first, all within [`WINDOW`].
    failures: VecDeque<Instant>,
    learned: Option<(LearnedBypass, Instant)>,
}

#[derive(Default)]
pub struct BypassTable {
    names: Mutex<HashMap<String, NameState>>,
}

impl BypassTable {
    /// Is `sni` (normalized) bypassed now?
    pub fn is_bypassed(&self, sni: &str) -> bool {
        let mut names = self.lock();
        let Some(state) = names.get_mut(sni) else {
            return false;
        };
        match &state.learned {
            Some((_, until)) if Instant::now() < *until => true,
            Some(_) => {
                // Expired: start counting again from zero.
                names.remove(sni);
                false
            }
            None => false,
        }
    }

    /// Count one failure for `sni`; learn a bypass on the `learn_after`-th within ten
    /// minutes. Returns the new bypass when this failure created it.
    pub fn record_failure(
        &self,
        sni: &str,
        reason: BypassReason,
        learn_after: u32,
        ttl: Duration,
    ) -> Option<LearnedBypass> {
        let now = Instant::now();
        let mut names = self.lock();
        let state = names.entry(sni.to_string()).or_default();
        if state
            .learned
            .as_ref()
            .is_some_and(|(_, until)| now < *until)
        {
            return None;
        }
        state.learned = None;
        while state
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            state.failures.pop_front();
        }
        state.failures.push_back(now);
        let count = u32::try_from(state.failures.len()).unwrap_or(u32::MAX);
        if count < learn_after {
            return None;
        }
        let learned = LearnedBypass {
            sni: sni.to_string(),
            reason,
            count,
            expires: SystemTime::now() + ttl,
        };
        state.failures.clear();
        state.learned = Some((learned.clone(), now + ttl));
        Some(learned)
    }

    /// The bypasses in force, sorted by name.
    pub fn list(&self) -> Vec<LearnedBypass> {
        let now = Instant::now();
        let names = self.lock();
        let mut list: Vec<LearnedBypass> = names
            .values()
            .filter_map(|s| s.learned.as_ref())
            .filter(|(_, until)| now < *until)
            .map(|(learned, _)| learned.clone())
            .collect();
        list.sort_by(|a, b| a.sni.cmp(&b.sni));
        list
    }

    /// Forget `sni` entirely (its bypass and its count). False if it was not bypassed.
    pub fn remove(&self, sni: &str) -> bool {
        let now = Instant::now();
        let removed = self.lock().remove(sni);
        removed.is_some_and(|s| s.learned.is_some_and(|(_, until)| now < until))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NameState>> {
        // A panic while holding the lock leaves consistent data (no multi-step updates
        // across an unwind point), so a poisoned lock is still usable.
        self.names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_name_is_bypassed_on_the_configured_count() {
        let table = BypassTable::default();
        let reason = BypassReason::ClientRejectedCertificate;
        assert!(table
            .record_failure("pinned.example", reason, 3, DAY)
            .is_none());
        assert!(table
            .record_failure("pinned.example", reason, 3, DAY)
            .is_none());
        assert!(!table.is_bypassed("pinned.example"));
        let learned = table
            .record_failure("pinned.example", reason, 3, DAY)
            .unwrap();
        assert_eq!(learned.count, 3);
        assert!(table.is_bypassed("pinned.example"));
        assert!(!table.is_bypassed("other.example"));
        assert_eq!(table.list(), vec![learned]);
    }

    #[test]
    fn removing_a_bypass_restarts_the_count_from_zero() {
        let table = BypassTable::default();
        let reason = BypassReason::ClientCertificateRequested;
        table
            .record_failure("mtls.example", reason, 1, DAY)
            .unwrap();
        assert!(table.remove("mtls.example"));
        assert!(!table.remove("mtls.example"), "already gone");
        assert!(!table.is_bypassed("mtls.example"));
        assert!(table
            .record_failure("mtls.example", reason, 2, DAY)
            .is_none());
        assert!(table
            .record_failure("mtls.example", reason, 2, DAY)
            .is_some());
    }

    #[test]
    fn a_bypass_expires_after_its_ttl() {
        let table = BypassTable::default();
        let reason = BypassReason::ClientRejectedCertificate;
        table.record_failure("brief.example", reason, 1, Duration::from_millis(30));
        assert!(table.is_bypassed("brief.example"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!table.is_bypassed("brief.example"));
        assert!(table.list().is_empty());
    }
}
