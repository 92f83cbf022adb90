//! The one task that talks to Redis: connects, carries the node's events to the fleet,
//! applies the fleet's messages, reconciles every [`RECONCILE_EVERY`], and when Redis
//! fails (error, garbage, or no answer within [`BUDGET`]) says so once, goes on alone
//! and tries again every [`RETRY_EVERY`].
//!
//! Redis keys (all under `sluice:`):
//! - `sluice:bypass:learned`: a hash, SNI → `{"reason","count","expires_ms"}`, the
//!   fleet's learned bypasses (expired fields are dropped by the reconcile);
//! - `sluice:bypass:version`: counts the changes of that hash, so that a reconcile reads
//!   it only when it changed (or every [`FULL_EVERY`] reconciles);
//! - `sluice:bypass:clients:<sni>`: a sorted set, client address → time of its latest
//!   rejection (ms), trimmed to ten minutes and expiring with it: distinct clients are
//!   counted across the fleet, one address once;
//! - `sluice:tickets:trusted`, `sluice:tickets:untrusted`: the ticket keys, newest first;
//! - `sluice:auth:<ip>`: failures of a client address, expiring ten minutes after the
//!   last;
//! - channel `sluice:events`: `learned`, `deleted`, `auth` and `tickets` messages.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, RedisResult, Script};
use serde::{Deserialize, Serialize};
use sluice_policy::{normalize_domain, RedisSettings};
use tokio::sync::mpsc;

use super::tickets::{unix_now, FleetTicketer, StoredKey, LIFETIME};
use super::{Cluster, Event, Inner, Node, BUDGET, RECONCILE_EVERY};
use crate::bypass::{BypassReason, BypassTable, LearnedBypass, Learning};
use crate::telemetry::metrics::Metrics;

/// How often a node that lost Redis tries again.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Time allowed to connect (TCP, TLS, login, subscribe).
const CONNECT_BUDGET: Duration = Duration::from_secs(1);
/// Rejections older than this do not count (as in the local table).
const WINDOW_MS: u64 = 600_000;
const AUTH_REMEMBER_MS: u64 = 600_000;

const CHANNEL: &str = "sluice:events";
const LEARNED: &str = "sluice:bypass:learned";
const CLIENTS: &str = "sluice:bypass:clients:";
const VERSION: &str = "sluice:bypass:version";
/// Reconciles between two full reads of the learned hash when nothing says it changed.
const FULL_EVERY: u32 = 15;
const AUTH: &str = "sluice:auth:";
/// The verdicts whose ticket keys are kept apart (`sluice:tickets:<verdict>`).
const VERDICTS: [&str; 2] = ["trusted", "untrusted"];
/// 9999-12-31T23:59:59.999Z: the latest expiry RFC 3339 (`GET /bypass`, the state
/// file) can write. A later one is another writer's garbage, not a bypass.
const LATEST_EXPIRY_MS: u64 = 253_402_300_799_999;

/// A client rejected the certificate: count its address for the SNI (by Redis' clock),
/// and learn the bypass when enough distinct addresses did within the window. Returns
/// the entry learned, or "". (A value that does not decode, another writer's, is
/// treated as absent in every script, so it cannot wedge the link.)
const REJECT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HGET', KEYS[2], ARGV[1])
local ok, entry = pcall(cjson.decode, held or '')
if ok and type(entry) == 'table' and tonumber(entry.expires_ms or 0) > now then return '' end
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[3]) then return '' end
local value = string.format('{"reason":"client_rejected_certificate","count":%d,"expires_ms":%d}',
  n, now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[2], ARGV[1], value)
redis.call('INCR', KEYS[3])
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[6], 'learned\t' .. ARGV[1] .. '\t' .. value)
return value
"#;

/// A bypass this node learned: into the fleet's hash unless one is in force there.
const LEARN: &str = r#"
local held = redis.call('HGET', KEYS[1], ARGV[1])
local ok, entry = pcall(cjson.decode, held or '')
if ok and type(entry) == 'table' and tonumber(entry.expires_ms or 0) > tonumber(ARGV[3]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[4], 'learned\t' .. ARGV[1] .. '\t' .. ARGV[2])
return 1
"#;

/// The ticket keys of a verdict, replaced by ARGV[1] (made now, by Redis' clock) when
/// the newest is a lifetime old; the newest two are kept.
const ROTATE: &str = r#"
local now = tonumber(redis.call('TIME')[1])
local held = redis.call('GET', KEYS[1])
local ok, set = pcall(cjson.decode, held or '')
if not ok or type(set) ~= 'table' or type(set[1]) ~= 'table' then set = {} end
if #set > 0 and tonumber(set[1].created or 0) + tonumber(ARGV[2]) > now then return held end
local fresh = cjson.decode(ARGV[1])
fresh.created = now
local out = {fresh}
if #set > 0 then out[2] = set[1] end
local encoded = cjson.encode(out)
redis.call('SET', KEYS[1], encoded)
redis.call('PUBLISH', ARGV[3], 'tickets\t' .. ARGV[4])
return encoded
"#;

/// A failure of a client address: counted, remembered ten minutes after the last, told.
const AUTH_FAILED: &str = r#"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'auth\t' .. ARGV[3] .. '\t' .. n)
return n
"#;

// Sent by hash (EVALSHA), in full once per Redis (after a restart too).
static REJECT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(REJECT));
static LEARN_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LEARN));
static ROTATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ROTATE));
static AUTH_FAILED_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(AUTH_FAILED));

/// A learned bypass as the fleet's hash keeps it.
#[derive(Serialize, Deserialize)]
struct FleetEntry {
    reason: BypassReason,
    count: u32,
    expires_ms: u64,
}

impl FleetEntry {
    fn of(learned: &LearnedBypass) -> FleetEntry {
        let expires_ms = learned
            .expires
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        FleetEntry {
            reason: learned.reason,
            count: learned.count,
            expires_ms,
        }
    }

    /// The bypass of `sni` the fleet's hash or a `learned` message holds; `None` when
    /// either is not what a node writes (a name as the table keeps it, an entry that
    /// decodes, an expiry that can be written).
    fn parse(sni: &str, text: &str) -> Option<LearnedBypass> {
        if !is_table_name(sni) {
            return None;
        }
        let entry: FleetEntry = serde_json::from_str(text).ok()?;
        if entry.expires_ms > LATEST_EXPIRY_MS {
            return None;
        }
        Some(LearnedBypass {
            sni: sni.to_string(),
            reason: entry.reason,
            count: entry.count,
            expires: UNIX_EPOCH + Duration::from_millis(entry.expires_ms),
        })
    }
}

/// Whether `sni` is a name as the bypass table keeps it (normalized, as every node
/// writes it).
fn is_table_name(sni: &str) -> bool {
    normalize_domain(sni).is_some_and(|name| name == sni)
}

/// A message on [`CHANNEL`]: its kind and fields, separated by tabs. The scripts publish
/// `learned`, `auth` and `tickets`; [`Session::deleted`] and [`Session::auth_passed`]
/// `deleted` and `auth … 0`.
#[derive(Debug, PartialEq)]
enum Message {
    /// `learned\t<sni>\t<entry>`: a bypass the fleet learned.
    Learned(LearnedBypass),
    /// `deleted\t<sni>`: an administrator deleted the bypass.
    Deleted(String),
    /// `auth\t<address>\t<count>`: the fleet's failure count of a client address (0:
    /// it authenticated).
    AuthFailures { client: IpAddr, failures: u32 },
    /// `tickets\t<verdict>`: the ticket keys of a verdict rotated.
    Tickets(&'static str),
}

impl Message {
    /// `None` for anything else (another version's message, or garbage): not ours to act
    /// on.
    fn parse(payload: &[u8]) -> Option<Message> {
        let text = std::str::from_utf8(payload).ok()?;
        let mut fields = text.splitn(3, '\t');
        match (fields.next()?, fields.next(), fields.next()) {
            ("learned", Some(sni), Some(entry)) => {
                FleetEntry::parse(sni, entry).map(Message::Learned)
            }
            ("deleted", Some(sni), None) if is_table_name(sni) => {
                Some(Message::Deleted(sni.to_string()))
            }
            ("auth", Some(client), Some(failures)) => Some(Message::AuthFailures {
                client: client.parse().ok()?,
                failures: failures.parse().ok()?,
            }),
            ("tickets", Some(verdict), None) => VERDICTS
                .into_iter()
                .find(|v| *v == verdict)
                .map(Message::Tickets),
            _ => None,
        }
    }

    fn deleted(sni: &str) -> String {
        format!("deleted\t{sni}")
    }

    fn auth_cleared(client: IpAddr) -> String {
        format!("auth\t{client}\t0")
    }
}

/// What the link works on, besides Redis.
struct Local {
    inner: Arc<Inner>,
    bypass: Arc<BypassTable>,
    metrics: Arc<Metrics>,
    node: Box<dyn Node>,
}

impl Local {
    fn max_names(&self) -> usize {
        self.node.learn_max_names()
    }

    /// Take in a bypass the fleet learned; logged when this node's Redis call learned it.
    fn adopt(&self, learned: LearnedBypass, log: bool) {
        if self.bypass.adopt(learned.clone(), self.max_names()) && log {
            self.node.record_learned(&learned);
        }
    }

    fn ticketer(&self, verdict: &str) -> &FleetTicketer {
        if verdict == "untrusted" {
            &self.inner.untrusted
        } else {
            &self.inner.trusted
        }
    }
}

/// Runs for the life of the process: one connection to Redis at a time.
pub(crate) async fn run(
    cluster: Cluster,
    bypass: Arc<BypassTable>,
    metrics: Arc<Metrics>,
    node: impl Node,
) {
    let Some(inner) = cluster.inner().cloned() else {
        return;
    };
    let Some(mut events) = inner.queue.lock().ok().and_then(|mut q| q.take()) else {
        return;
    };
    let local = Local {
        inner,
        bypass,
        metrics,
        node: Box::new(node),
    };
    let target = local.inner.settings.redacted();
    let client = match client(&local.inner.settings) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("sluice: cluster.redis {target}: {error}; each node alone");
            return;
        }
    };
    // Whether the last state was said: one line per change, not one per call.
    let mut said_down = false;
    loop {
        let failure = match connect(&client).await {
            // In line with the fleet (what was learned alone pushed) before saying up.
            Ok(mut session) => match session.reconcile(&local).await {
                Ok(()) => {
                    local.metrics.set_cluster_up(true);
                    if said_down {
                        eprintln!("sluice: cluster: Redis at {target} is back; sharing again");
                        said_down = false;
                    }
                    session.run(&local, &mut events).await
                }
                Err(error) => error,
            },
            Err(error) => error,
        };
        local.metrics.set_cluster_up(false);
        if !said_down {
            eprintln!(
                "sluice: cluster: Redis at {target} unreachable ({failure}); going on with local state"
            );
            said_down = true;
        }
        alone_for(RETRY_EVERY, &local, &mut events).await;
    }
}

/// Without Redis for `period`: events are dropped (what was learned is pushed by the
/// reconcile when Redis is back), ticket keys rotate locally.
async fn alone_for(period: Duration, local: &Local, events: &mut mpsc::Receiver<Event>) {
    let now = unix_now();
    local.inner.trusted.rotate_alone(now);
    local.inner.untrusted.rotate_alone(now);
    let until = tokio::time::Instant::now() + period;
    while let Ok(Some(_)) = tokio::time::timeout_at(until, events.recv()).await {}
}

fn client(settings: &RedisSettings) -> RedisResult<Client> {
    let mut info = settings.url.0.as_str().into_connection_info()?;
    if let Some(password) = &settings.password {
        let redis = info.redis_settings().clone().set_password(&password.0);
        info = info.set_redis_settings(redis);
    }
    if !settings.tls() {
        return Client::open(info);
    }
    // The redis crate builds its rustls configuration with the process default.
    let _ = sluice_tls::crypto::provider().install_default();
    let root_cert = match &settings.ca {
        Some(path) => Some(std::fs::read(path)?),
        None => None,
    };
    Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls: None,
            root_cert,
        },
    )
}

/// A failure of the link: Redis' own error or a call over its budget.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("no answer within {0:?}")]
    Slow(Duration),
    #[error("the subscription ended")]
    Unsubscribed,
}

/// One call within `budget`.
async fn within<T>(
    budget: Duration,
    call: impl std::future::Future<Output = RedisResult<T>>,
) -> Result<T, LinkError> {
    match tokio::time::timeout(budget, call).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(LinkError::Slow(budget)),
    }
}

struct Session {
    con: MultiplexedConnection,
    messages: PubSubStream,
    /// Learned names this node knows the fleet held: one missing from the fleet's hash
    /// later was deleted (or expired) there; any other local one is pushed.
    known: HashSet<String>,
    /// `sluice:bypass:version` at the last full read, and reconciles since.
    read_version: Option<i64>,
    since_full: u32,
    /// Whether foreign ticket keys were reported (once per connection to Redis).
    foreign_keys_said: bool,
}

async fn connect(client: &Client) -> Result<Session, LinkError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_BUDGET))
        .set_response_timeout(Some(BUDGET));
    within(CONNECT_BUDGET, async {
        let mut con = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        // A listener that accepts and answers anything but Redis fails here.
        redis::cmd("PING").query_async::<String>(&mut con).await?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(CHANNEL).await?;
        Ok(Session {
            con,
            messages: pubsub.into_on_message(),
            known: HashSet::new(),
            read_version: None,
            since_full: 0,
            foreign_keys_said: false,
        })
    })
    .await
}

impl Session {
    /// Until Redis fails: returns why.
    async fn run(mut self, local: &Local, events: &mut mpsc::Receiver<Event>) -> LinkError {
        let start = tokio::time::Instant::now() + RECONCILE_EVERY;
        let mut reconcile = tokio::time::interval_at(start, RECONCILE_EVERY);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                _ = reconcile.tick() => self.reconcile(local).await,
                event = events.recv() => match event {
                    Some(event) => self.send(local, event).await,
                    None => return LinkError::Unsubscribed,
                },
                message = self.messages.next() => match message {
                    Some(message) => {
                        self.apply(local, message.get_payload_bytes()).await
                    }
                    None => Err(LinkError::Unsubscribed),
                },
            };
            if let Err(error) = step {
                return error;
            }
        }
    }

    /// Carry one event to Redis.
    async fn send(&mut self, local: &Local, event: Event) -> Result<(), LinkError> {
        match event {
            Event::Rejected {
                sni,
                client,
                learning,
            } => self.rejected(local, sni, client, learning).await,
            Event::Learned(learned) => self.push(&learned).await,
            Event::Deleted(sni) => self.deleted(sni).await,
            Event::AuthFailed(client) => self.auth_failed(local, client).await,
            Event::AuthPassed(client) => self.auth_passed(local, client).await,
        }
    }

    /// A client rejected the replacement for `sni`: counted fleet-wide, and the bypass
    /// taken in when the fleet's count learned it.
    async fn rejected(
        &mut self,
        local: &Local,
        sni: String,
        client: IpAddr,
        learning: Learning,
    ) -> Result<(), LinkError> {
        let learned: String = within(
            BUDGET,
            REJECT_SCRIPT
                .key(format!("{CLIENTS}{sni}"))
                .key(LEARNED)
                .key(VERSION)
                .arg(&sni)
                .arg(client.to_string())
                .arg(learning.after)
                .arg(learning.ttl.as_millis() as u64)
                .arg(WINDOW_MS)
                .arg(CHANNEL)
                .invoke_async(&mut self.con),
        )
        .await?;
        if let Some(entry) = FleetEntry::parse(&sni, &learned) {
            self.known.insert(sni);
            local.adopt(entry, true);
        }
        Ok(())
    }

    /// An administrator deleted the bypass of `sni`: gone from the fleet too.
    async fn deleted(&mut self, sni: String) -> Result<(), LinkError> {
        self.known.remove(&sni);
        within(
            BUDGET,
            redis::pipe()
                .atomic()
                .hdel(LEARNED, &sni)
                .incr(VERSION, 1)
                .ignore()
                .del(format!("{CLIENTS}{sni}"))
                .publish(CHANNEL, Message::deleted(&sni))
                .query_async::<()>(&mut self.con),
        )
        .await
    }

    /// A failed authentication from `client`, counted fleet-wide.
    async fn auth_failed(&mut self, local: &Local, client: IpAddr) -> Result<(), LinkError> {
        let failures: u32 = within(
            BUDGET,
            AUTH_FAILED_SCRIPT
                .key(format!("{AUTH}{client}"))
                .arg(AUTH_REMEMBER_MS)
                .arg(CHANNEL)
                .arg(client.to_string())
                .invoke_async(&mut self.con),
        )
        .await?;
        local.inner.auth_failures.insert(client, failures);
        Ok(())
    }

    /// `client` authenticated: its failures are forgotten fleet-wide.
    async fn auth_passed(&mut self, local: &Local, client: IpAddr) -> Result<(), LinkError> {
        local.inner.auth_failures.invalidate(&client);
        within(
            BUDGET,
            redis::pipe()
                .del(format!("{AUTH}{client}"))
                .publish(CHANNEL, Message::auth_cleared(client))
                .query_async::<()>(&mut self.con),
        )
        .await
    }

    /// A learned bypass into the fleet's hash (unless one is in force there).
    async fn push(&mut self, learned: &LearnedBypass) -> Result<(), LinkError> {
        let value = serde_json::to_string(&FleetEntry::of(learned)).unwrap_or_default();
        within(
            BUDGET,
            LEARN_SCRIPT
                .key(LEARNED)
                .key(VERSION)
                .arg(&learned.sni)
                .arg(value)
                .arg(unix_millis(SystemTime::now()))
                .arg(CHANNEL)
                .invoke_async::<i64>(&mut self.con),
        )
        .await?;
        self.known.insert(learned.sni.clone());
        Ok(())
    }

    /// A message of the fleet (this node's own included).
    async fn apply(&mut self, local: &Local, payload: &[u8]) -> Result<(), LinkError> {
        match Message::parse(payload) {
            Some(Message::Learned(learned)) => {
                self.known.insert(learned.sni.clone());
                local.adopt(learned, false);
            }
            Some(Message::Deleted(sni)) => {
                self.known.remove(&sni);
                local.bypass.remove(&sni);
            }
            Some(Message::AuthFailures {
                client,
                failures: 0,
            }) => local.inner.auth_failures.invalidate(&client),
            Some(Message::AuthFailures { client, failures }) => {
                local.inner.auth_failures.insert(client, failures)
            }
            Some(Message::Tickets(verdict)) => self.sync_tickets(local, verdict).await?,
            None => {}
        }
        Ok(())
    }

    /// Take the ticket keys (rotating them when due); then, when the fleet's learned
    /// hash changed since the last read (or every [`FULL_EVERY`] reconciles), bring the
    /// local table in line with it and push what only this node learned (during an
    /// outage, or just now).
    async fn reconcile(&mut self, local: &Local) -> Result<(), LinkError> {
        for verdict in VERDICTS {
            self.sync_tickets(local, verdict).await?;
        }
        let version: Option<i64> = within(
            BUDGET,
            redis::cmd("GET").arg(VERSION).query_async(&mut self.con),
        )
        .await?;
        self.since_full += 1;
        let unchanged = version.is_some() && version == self.read_version;
        if unchanged && self.since_full < FULL_EVERY {
            return Ok(());
        }
        self.since_full = 0;
        self.read_version = version;
        self.reconcile_bypasses(local).await
    }

    /// The full read of the learned hash (see [`Session::reconcile`]).
    async fn reconcile_bypasses(&mut self, local: &Local) -> Result<(), LinkError> {
        let held: HashMap<String, String> = within(
            BUDGET,
            redis::cmd("HGETALL")
                .arg(LEARNED)
                .query_async(&mut self.con),
        )
        .await?;
        let now = SystemTime::now();
        let mut fleet = HashMap::new();
        let mut stale = Vec::new();
        for (sni, value) in &held {
            match FleetEntry::parse(sni, value) {
                Some(learned) if now < learned.expires => {
                    fleet.insert(sni.clone(), learned);
                }
                _ => stale.push(sni.clone()),
            }
        }
        if !stale.is_empty() {
            within(
                BUDGET,
                redis::cmd("HDEL")
                    .arg(LEARNED)
                    .arg(&stale)
                    .query_async::<()>(&mut self.con),
            )
            .await?;
        }
        for learned in local.bypass.list() {
            if fleet.contains_key(&learned.sni) {
                continue;
            }
            if self.known.contains(&learned.sni) {
                local.bypass.remove(&learned.sni);
            } else {
                self.push(&learned).await?;
            }
        }
        self.known = fleet.keys().cloned().collect();
        for learned in fleet.into_values() {
            local.adopt(learned, false);
        }
        Ok(())
    }

    /// The fleet's ticket keys of `verdict`, replaced first when due.
    async fn sync_tickets(&mut self, local: &Local, verdict: &str) -> Result<(), LinkError> {
        let wrap = &local.inner.wrap;
        let Some(fresh) = StoredKey::generate(0).and_then(|k| wrap.wrap(&k, verdict)) else {
            return Ok(());
        };
        let fresh = serde_json::to_string(&fresh).unwrap_or_default();
        let set: String = within(
            BUDGET,
            ROTATE_SCRIPT
                .key(format!("sluice:tickets:{verdict}"))
                .arg(fresh)
                .arg(LIFETIME)
                .arg(CHANNEL)
                .arg(verdict)
                .invoke_async(&mut self.con),
        )
        .await?;
        // A set that does not parse (another writer's garbage) leaves the keys as they
        // are; the next reconcile tries again.
        let Ok(stored) = serde_json::from_str::<Vec<StoredKey>>(&set) else {
            return Ok(());
        };
        let keys: Vec<StoredKey> = stored
            .iter()
            .filter_map(|k| wrap.unwrap(k, verdict))
            .collect();
        if keys.len() < stored.len() && !self.foreign_keys_said {
            // Sealed under another CA key: a node of another fleet, or before a CA
            // rotation. This node keeps its own keys until the next rotation.
            tracing::warn!(
                verdict,
                "cluster: the fleet's ticket keys were not sealed with this node's CA; its sessions do not resume elsewhere until the keys rotate"
            );
            self.foreign_keys_said = true;
        }
        local.ticketer(verdict).adopt(&keys, unix_now());
        Ok(())
    }
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use proptest::prelude::*;
    use sluice_policy::Secret;

    use super::*;
    use crate::bypass::rfc3339;

    /// The entry [`REJECT`] writes (its `string.format`), for `count` and `expires_ms`.
    fn scripted_entry(count: u32, expires_ms: u64) -> String {
        format!(
            r#"{{"reason":"client_rejected_certificate","count":{count},"expires_ms":{expires_ms}}}"#
        )
    }

    fn learned(sni: &str, count: u32, expires_ms: u64) -> LearnedBypass {
        LearnedBypass {
            sni: sni.to_string(),
            reason: BypassReason::ClientRejectedCertificate,
            count,
            expires: UNIX_EPOCH + Duration::from_millis(expires_ms),
        }
    }

    #[test]
    fn an_entry_written_by_a_script_or_a_node_reads_back() {
        let expires_ms = 1_800_000_000_123;
        assert_eq!(
            FleetEntry::parse("pinned.example", &scripted_entry(2, expires_ms)),
            Some(learned("pinned.example", 2, expires_ms))
        );
        // What `Session::push` writes for a bypass this node learned.
        let mine = LearnedBypass {
            reason: BypassReason::ClientCertificateRequested,
            ..learned("xn--bcher-kva.example", 1, expires_ms)
        };
        let written = serde_json::to_string(&FleetEntry::of(&mine)).unwrap();
        assert_eq!(FleetEntry::parse(&mine.sni, &written), Some(mine));
    }

    #[test]
    fn every_kind_of_message_parses() {
        let entry = scripted_entry(3, 1_800_000_000_000);
        assert_eq!(
            Message::parse(format!("learned\tpinned.example\t{entry}").as_bytes()),
            Some(Message::Learned(learned(
                "pinned.example",
                3,
                1_800_000_000_000
            )))
        );
        assert_eq!(
            Message::parse(Message::deleted("pinned.example").as_bytes()),
            Some(Message::Deleted("pinned.example".into()))
        );
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            Message::parse(Message::auth_cleared(v6).as_bytes()),
            Some(Message::AuthFailures {
                client: v6,
                failures: 0
            })
        );
        assert_eq!(
            Message::parse(b"auth\t10.0.0.7\t4"),
            Some(Message::AuthFailures {
                client: IpAddr::from([10, 0, 0, 7]),
                failures: 4
            })
        );
        for verdict in VERDICTS {
            assert_eq!(
                Message::parse(format!("tickets\t{verdict}").as_bytes()),
                Some(Message::Tickets(verdict))
            );
        }
    }

    /// Another writer's or another version's messages on the channel: none is acted on.
    #[test]
    fn garbage_on_the_channel_is_no_message() {
        let valid = scripted_entry(2, 1_800_000_000_000);
        let far = scripted_entry(2, LATEST_EXPIRY_MS + 1);
        let garbage: Vec<Vec<u8>> = [
            String::new(),
            "\t\t".into(),
            "learned".into(),
            "learned\tpinned.example".into(),
            "learned\tpinned.example\t".into(),
            "learned\tpinned.example\t[1,".into(),
            "learned\tpinned.example\tnull".into(),
            "learned\tpinned.example\t{}".into(),
            r#"learned	pinned.example	{"reason":"other","count":2,"expires_ms":1}"#.into(),
            r#"learned	pinned.example	{"reason":"client_rejected_certificate","count":-1,"expires_ms":1}"#.into(),
            r#"learned	pinned.example	{"reason":"client_rejected_certificate","count":"2","expires_ms":1}"#.into(),
            r#"learned	pinned.example	{"reason":"client_rejected_certificate","count":2,"expires_ms":1e300}"#.into(),
            r#"learned	pinned.example	{"reason":"client_rejected_certificate","count":2,"expires_ms":18446744073709551616}"#.into(),
            format!("learned\tpinned.example\t{far}"),
            format!("learned\tpinned.example\t{valid}trailing"),
            // Names no node writes: not normalized, empty, not a domain, split by a tab.
            format!("learned\tPinned.Example\t{valid}"),
            format!("learned\tpinned.example.\t{valid}"),
            format!("learned\t\t{valid}"),
            format!("learned\tpinned example\t{valid}"),
            format!("learned\tpinned\t.example\t{valid}"),
            format!("LEARNED\tpinned.example\t{valid}"),
            format!(" learned\tpinned.example\t{valid}"),
            "deleted".into(),
            "deleted\t".into(),
            "deleted\tpinned.example\textra".into(),
            "deleted\tPINNED.example".into(),
            "deleted\t*".into(),
            "auth".into(),
            "auth\t10.0.0.7".into(),
            "auth\t10.0.0.7\t".into(),
            "auth\tnot-an-address\t3".into(),
            "auth\t10.0.0.7\t-1".into(),
            "auth\t10.0.0.7\t4294967296".into(),
            "auth\t10.0.0.7\t3\textra".into(),
            "tickets".into(),
            "tickets\t".into(),
            "tickets\tbogus".into(),
            "tickets\tTrusted".into(),
            "tickets\ttrusted\textra".into(),
            "hello\tworld\t!".into(),
        ]
        .into_iter()
        .map(String::into_bytes)
        .chain([
            [&b"learned\tpinned\xff.example\t"[..], valid.as_bytes()].concat(),
            b"learned\tpinned.example\t\xff".to_vec(),
            b"deleted\tpinned.example\0".to_vec(),
            b"tickets\ttrusted\xc3".to_vec(),
        ])
        .collect();
        for payload in garbage {
            assert_eq!(
                Message::parse(&payload),
                None,
                "{}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    #[test]
    fn the_latest_expiry_is_one_rfc_3339_can_write() {
        let latest = FleetEntry::parse("pinned.example", &scripted_entry(2, LATEST_EXPIRY_MS));
        let latest = latest.expect("the latest expiry is a bypass");
        assert_eq!(rfc3339(latest.expires), "9999-12-31T23:59:59.999Z");
        let later = scripted_entry(2, LATEST_EXPIRY_MS + 1);
        assert_eq!(FleetEntry::parse("pinned.example", &later), None);
    }

    proptest! {
        #[test]
        fn no_payload_panics(payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::parse(&payload);
        }

        /// Whatever expiry and count the fleet's hash holds, an entry taken in can be
        /// listed (`GET /bypass` writes its expiry in RFC 3339).
        #[test]
        fn every_entry_taken_in_can_be_listed(count in any::<u32>(), expires_ms in any::<u64>()) {
            if let Some(learned) = FleetEntry::parse("pinned.example", &scripted_entry(count, expires_ms)) {
                prop_assert_eq!(learned.count, count);
                prop_assert!(!rfc3339(learned.expires).is_empty());
            }
        }
    }

    fn settings(url: &str, password_file: Option<&str>) -> RedisSettings {
        RedisSettings {
            url: Secret(url.to_string()),
            password: password_file.map(|p| Secret(p.to_string())),
            ca: None,
        }
    }

    #[test]
    fn the_password_of_the_url_logs_in_unless_a_file_gives_one() {
        let login = |settings: &RedisSettings| {
            let client = client(settings).unwrap();
            let redis = client.get_connection_info().redis_settings();
            (
                redis.username().map(str::to_string),
                redis.password().map(str::to_string),
            )
        };
        let url = "redis://:in-the-url@127.0.0.1:6379/0";
        assert_eq!(
            login(&settings(url, None)),
            (None, Some("in-the-url".into()))
        );
        assert_eq!(
            login(&settings(url, Some("from-the-file"))),
            (None, Some("from-the-file".into()))
        );
        assert_eq!(
            login(&settings("redis://fleet:pw@127.0.0.1:6379/0", None)),
            (Some("fleet".into()), Some("pw".into()))
        );
        assert_eq!(
            login(&settings("redis://127.0.0.1:6379/0", None)),
            (None, None)
        );
    }
}
