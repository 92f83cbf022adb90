//! Drives the learned-bypass table (`sluice_proxy::bypass::Table`) with arbitrary
//! sequences of rejections from client addresses, certificate requests, deletions,
//! lookups, pruning and the passing of time, and checks its invariants: the bound
//! `learn_max_names` is never exceeded, a rejection teaches only after `learn_after`
//! distinct addresses (so one address never teaches alone), and what is listed is
//! what is bypassed.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use sluice_proxy::bypass::{BypassReason, Learning, Table};

const NAMES: [&str; 12] = [
    "a.example", "b.example", "c.example", "d.example", "e.example", "f.example",
    "g.example", "h.example", "i.example", "j.example", "k.example", "l.example",
];

fuzz_target!(|data: &[u8]| {
    let [after, max_names, ttl, ops @ ..] = data else {
        return;
    };
    let learning = Learning {
        after: 1 + u32::from(after % 4),
        max_names: 1 + usize::from(max_names % 8),
        ttl: Duration::from_secs(60 * (1 + u64::from(*ttl))),
    };
    let mut table = Table::default();
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // Every address that rejected a name since it was last learned or deleted: a
    // superset of what the table counts.
    let mut rejected_by: HashMap<&str, HashSet<IpAddr>> = HashMap::new();
    for op in ops.chunks_exact(3) {
        let name = NAMES[usize::from(op[1]) % NAMES.len()];
        let was_bypassed = table.list(now).iter().any(|l| l.sni == name);
        match op[0] % 7 {
            0 => {
                let client = IpAddr::from([127, 0, 0, op[2] % 6]);
                let addresses = rejected_by.entry(name).or_default();
                addresses.insert(client);
                if let Some(learned) = table.record_rejection(name, client, &learning, now) {
                    assert!(!was_bypassed, "{name} learned twice");
                    assert_eq!(learned.reason, BypassReason::ClientRejectedCertificate);
                    assert!(learned.count >= learning.after);
                    assert!(
                        addresses.len() >= learning.after as usize,
                        "{name} learned from {} addresses, learn_after {}",
                        addresses.len(),
                        learning.after
                    );
                    rejected_by.remove(name);
                }
            }
            1 => {
                if let Some(learned) = table.record_certificate_request(name, &learning, now) {
                    assert!(!was_bypassed, "{name} learned twice");
                    assert_eq!(learned.count, 1);
                    rejected_by.remove(name);
                }
            }
            2 => {
                assert_eq!(table.remove(name, now), was_bypassed);
                assert!(!table.is_bypassed(name, now));
                assert_eq!(table.rejections(name, now), 0);
                rejected_by.remove(name);
            }
            3 => now += Duration::from_secs(10 * u64::from(op[2])),
            4 => assert_eq!(table.is_bypassed(name, now), was_bypassed),
            5 => table.prune(now),
            _ => now += learning.ttl,
        }
        assert!(table.len() <= learning.max_names, "bound exceeded");
        let list = table.list(now);
        assert!(list.len() <= learning.max_names);
        assert!(list.windows(2).all(|w| w[0].sni < w[1].sni), "sorted, once each");
        assert!(list.iter().all(|l| l.expires > now));
    }
});
