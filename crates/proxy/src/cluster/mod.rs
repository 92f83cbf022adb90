//! A fleet that behaves as one (SPEC §12): what one node learns is shared with the
//! others through Redis (or Valkey): learned-bypass counts and entries, the client-leg
//! session-ticket keys, and authentication back-off.
//!
//! The data path never waits on Redis. It reads and writes local state only (the
//! bypass table, the ticket keys, the back-off counts here) and hands what the fleet
//! should know to [`link`] through a bounded queue (`try_send`: when the queue is full
//! the event is dropped, never waited for). The link, one task per process, carries the
//! events to Redis, each call within [`BUDGET`], and brings the fleet's state back into
//! the local one (pub/sub at once, a full reconcile every [`RECONCILE_EVERY`]). When
//! Redis is unreachable, slow or answers garbage, every node goes on with its local
//! state, and the link pushes what was learned meanwhile when Redis is back.

mod link;
pub mod tickets;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use sluice_policy::RedisSettings;
use tokio::sync::mpsc;

use crate::bypass::{LearnedBypass, Learning};
use tickets::{FleetTicketer, KeyWrap};

pub(crate) use link::run as run_link;

/// What the link asks of the node it runs in, through the configuration generation in
/// force: how many learned names the table keeps, and where a bypass learned through
/// this node's Redis call is recorded.
pub(crate) trait Node: Send + Sync + 'static {
    fn learn_max_names(&self) -> usize;
    fn record_learned(&self, learned: &LearnedBypass);
}

/// Time allowed to each Redis call.
pub const BUDGET: Duration = Duration::from_millis(50);
/// How often the link brings the local state in line with the fleet's.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(2);
/// Events waiting for the link at most; more are dropped.
const QUEUE: usize = 4096;
/// How long an address's failures are remembered after its last one (as locally).
const AUTH_REMEMBER: Duration = Duration::from_secs(600);
/// Addresses whose fleet-wide failure count is kept.
const AUTH_TABLE_LIMIT: u64 = 10_000;

/// What a node tells the fleet.
#[derive(Debug)]
pub(crate) enum Event {
    /// A client rejected the replacement certificate for an SNI (not yet learned here).
    Rejected {
        sni: String,
        client: IpAddr,
        learning: Learning,
    },
    /// This node learned a bypass.
    Learned(LearnedBypass),
    /// The admin endpoint deleted a bypass.
    Deleted(String),
    /// A client address failed proxy authentication.
    AuthFailed(IpAddr),
    /// A client address authenticated.
    AuthPassed(IpAddr),
}

/// The process's handle on the fleet; cheap to clone. [`Cluster::alone`] when
/// `cluster.redis` is empty: every method is then a no-op.
#[derive(Clone, Default)]
pub struct Cluster {
    inner: Option<Arc<Inner>>,
}

pub(crate) struct Inner {
    pub(crate) settings: RedisSettings,
    events: mpsc::Sender<Event>,
    /// The receiving end, taken by the link when it starts.
    pub(crate) queue: Mutex<Option<mpsc::Receiver<Event>>>,
    /// Authentication failures per client address over the fleet, as Redis last said.
    pub(crate) auth_failures: Cache<IpAddr, u32>,
    /// Session tickets of clients of the trusted CA's certificates, and apart from them
    /// of the untrusted CA's (a session never resumes across verdicts).
    pub(crate) trusted: Arc<FleetTicketer>,
    pub(crate) untrusted: Arc<FleetTicketer>,
    /// Seals the ticket keys stored in Redis.
    pub(crate) wrap: KeyWrap,
}

impl Cluster {
    /// Each node alone.
    pub fn alone() -> Cluster {
        Cluster::default()
    }

    /// A member of the fleet sharing through `settings`' Redis; nothing is sent until
    /// the link runs. `wrap_secret`: derived from the CA key (the same on every node),
    /// it seals the ticket keys kept in Redis.
    pub fn new(settings: &RedisSettings, wrap_secret: &[u8; 32]) -> Option<Cluster> {
        let (events, queue) = mpsc::channel(QUEUE);
        Some(Cluster {
            inner: Some(Arc::new(Inner {
                settings: settings.clone(),
                events,
                queue: Mutex::new(Some(queue)),
                auth_failures: Cache::builder()
                    .max_capacity(AUTH_TABLE_LIMIT)
                    .time_to_live(AUTH_REMEMBER)
                    .build(),
                trusted: Arc::new(FleetTicketer::new()?),
                untrusted: Arc::new(FleetTicketer::new()?),
                wrap: KeyWrap::new(wrap_secret)?,
            })),
        })
    }

    pub(crate) fn inner(&self) -> Option<&Arc<Inner>> {
        self.inner.as_ref()
    }

    /// The shared ticketers (trusted, untrusted); `None` alone.
    pub(crate) fn ticketers(&self) -> Option<(Arc<FleetTicketer>, Arc<FleetTicketer>)> {
        self.inner
            .as_ref()
            .map(|i| (i.trusted.clone(), i.untrusted.clone()))
    }

    /// Tell the fleet, without waiting: dropped when the link is behind.
    pub(crate) fn tell(&self, event: Event) {
        if let Some(inner) = &self.inner {
            let _ = inner.events.try_send(event);
        }
    }

    /// Failures of `client` across the fleet within the back-off's memory (0 alone).
    pub(crate) fn auth_failures(&self, client: IpAddr) -> u32 {
        self.inner
            .as_ref()
            .and_then(|i| i.auth_failures.get(&client))
            .unwrap_or(0)
    }
}
