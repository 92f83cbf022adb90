//! Prometheus metrics (SPEC §8), one registry per process so that counters survive a
//! reload. Each event is counted where the access-log record that describes it is
//! written, so the log and the metrics cannot disagree.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::access_log::Record;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    action: String,
    stage: String,
    rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    side: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// A phase of a connection, timed into `sluice_phase_seconds`.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub enum Phase {
    /// Name resolution and TCP connect to the server.
    Connect,
    /// Reading the ClientHello.
    ClientHello,
    /// The TLS handshake with the server.
    UpstreamTls,
    /// Minting (or finding in the cache) the replacement certificate.
    Mint,
    /// The TLS handshake with the client.
    ClientTls,
    /// From sending a request upstream to the response head.
    FirstByte,
}

impl Phase {
    const ALL: [Phase; 6] = [
        Phase::Connect,
        Phase::ClientHello,
        Phase::UpstreamTls,
        Phase::Mint,
        Phase::ClientTls,
        Phase::FirstByte,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::ClientHello => "client_hello",
            Phase::UpstreamTls => "upstream_tls",
            Phase::Mint => "mint",
            Phase::ClientTls => "client_tls",
            Phase::FirstByte => "first_byte",
        }
    }
}

fn phase_histogram() -> Histogram {
    // 100 µs to ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

pub struct Metrics {
    registry: Registry,
    connections: Family<ConnectionLabels, Counter>,
    active: Gauge,
    handshake_failures: Family<HandshakeLabels, Counter>,
    http_requests: Family<VerdictLabels, Counter>,
    /// One histogram per [`Phase`], indexed by it: observing needs no label lookup.
    phases: [Histogram; Phase::ALL.len()],
    cache_hits: Counter,
    cache_misses: Counter,
    cache_size: Gauge,
    /// The certificate-cache totals seen at the last scrape (the cache belongs to a
    /// configuration generation; its totals restart at a reload).
    cache_seen: Mutex<(u64, u64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let connections = Family::<ConnectionLabels, Counter>::default();
        registry.register(
            "connections",
            "CONNECT connections by action, deciding stage and rule",
            connections.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "active_connections",
            "Proxy client connections open now",
            active.clone(),
        );
        let handshake_failures = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "handshake_failures",
            "TLS failures of bumped connections by side (client, upstream) and kind",
            handshake_failures.clone(),
        );
        let http_requests = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by verdict",
            http_requests.clone(),
        );
        let phases = Family::<PhaseLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            phase_histogram,
        );
        registry.register(
            "phase_seconds",
            "Duration of connection phases",
            phases.clone(),
        );
        let phases = Phase::ALL.map(|phase| {
            phases
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str().to_string(),
                })
                .clone()
        });
        let cache_hits = Counter::default();
        registry.register(
            "cert_cache_hits",
            "Replacement certificates found in the cache",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "cert_cache_misses",
            "Replacement certificates minted",
            cache_misses.clone(),
        );
        let cache_size = Gauge::default();
        registry.register(
            "cert_cache_size",
            "Replacement certificates in the cache",
            cache_size.clone(),
        );
        Metrics {
            registry,
            connections,
            active,
            handshake_failures,
            http_requests,
            phases,
            cache_hits,
            cache_misses,
            cache_size,
            cache_seen: Mutex::new((0, 0)),
        }
    }
}

impl Metrics {
    /// Count what a finished access-log record says.
    pub fn record(&self, record: &Record) {
        match record.kind {
            "connect" => {
                let labels = ConnectionLabels {
                    action: record.action.unwrap_or("none").to_string(),
                    stage: record.stage.unwrap_or("connect").to_string(),
                    rule: record.rule.clone().unwrap_or_default(),
                };
                self.connections.get_or_create(&labels).inc();
            }
            // A learned bypass is neither a connection nor a request.
            "bypass" => {}
            _ => {
                let labels = VerdictLabels {
                    verdict: record.verdict.unwrap_or("none").to_string(),
                };
                self.http_requests.get_or_create(&labels).inc();
            }
        }
    }

    /// A TLS failure of a bump: `side` is `client` or `upstream`.
    pub fn handshake_failure(&self, side: &str, kind: &str) {
        let labels = HandshakeLabels {
            side: side.to_string(),
            kind: kind.to_string(),
        };
        self.handshake_failures.get_or_create(&labels).inc();
    }

    pub fn phase(&self, phase: Phase, took: Duration) {
        self.phases[phase as usize].observe(took.as_secs_f64());
    }

    /// Held by each proxy client connection while it is open.
    pub fn connection_opened(&self) -> ActiveConnection {
        self.active.inc();
        ActiveConnection(self.active.clone())
    }

    /// The Prometheus text exposition, with the certificate cache's current figures.
    pub fn encode(&self, cache_hits: u64, cache_misses: u64, cache_size: u64) -> String {
        {
            let mut seen = self.cache_seen.lock().unwrap_or_else(|p| p.into_inner());
            let delta = |now: u64, before: u64| if now >= before { now - before } else { now };
            self.cache_hits.inc_by(delta(cache_hits, seen.0));
            self.cache_misses.inc_by(delta(cache_misses, seen.1));
            *seen = (cache_hits, cache_misses);
        }
        self.cache_size
            .set(i64::try_from(cache_size).unwrap_or(i64::MAX));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        to_prometheus_text(&text)
    }
}

/// OpenMetrics (what the encoder writes) to the Prometheus text format 0.0.4 that
/// Prometheus scrapes and `promtool check metrics` lints: a counter's `HELP` and `TYPE`
/// lines name its samples (`…_total`), and there is no `# EOF`.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Decrements `sluice_active_connections` when dropped.
pub struct ActiveConnection(Gauge);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `phase` indexes its histograms by the enum's value: `ALL` must list the phases in
    // that order, each once.
    #[test]
    fn every_phase_has_its_own_histogram() {
        for (index, phase) in Phase::ALL.into_iter().enumerate() {
            assert_eq!(phase as usize, index, "{}", phase.as_str());
        }
    }

    #[test]
    fn counters_are_named_by_their_samples_and_eof_is_dropped() {
        let openmetrics = "# HELP sluice_http_requests HTTP requests.\n# TYPE sluice_http_requests counter\n\
                           sluice_http_requests_total{verdict=\"allowed\"} 2\n# HELP sluice_active Open.\n\
                           # TYPE sluice_active gauge\nsluice_active 0\n# EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP sluice_http_requests_total HTTP requests.\n# TYPE sluice_http_requests_total counter\n\
             sluice_http_requests_total{verdict=\"allowed\"} 2\n# HELP sluice_active Open.\n\
             # TYPE sluice_active gauge\nsluice_active 0\n"
        );
    }

    #[test]
    fn a_record_counts_by_kind() {
        let metrics = Metrics::default();
        let mut connect = Record::new("connect");
        connect.action = Some("tunnel");
        connect.stage = Some("connect");
        connect.rule = Some("r".into());
        metrics.record(&connect);
        let mut http = Record::new("http");
        http.verdict = Some("infected");
        metrics.record(&http);
        let text = metrics.encode(0, 0, 0);
        assert!(
            text.contains(
                "sluice_connections_total{action=\"tunnel\",stage=\"connect\",rule=\"r\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_http_requests_total{verdict=\"infected\"} 1"),
            "{text}"
        );
    }
}
