//! Prometheus metrics (SPEC §8), one registry per process so that counters survive a
//! reload. Each event is counted where the access-log record that describes it is
//! written, so the log and the metrics cannot disagree.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

use crate::outcome::Failure;
pub use crate::outcome::Phase;
use crate::telemetry::access_log::Record;

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
    phases: [Histogram; Phase::TIMED.len()],
    cache_hits: Counter,
    cache_misses: Counter,
    cache_size: Gauge,
    /// 1 while the fleet's Redis (`cluster.redis`) answers, 0 otherwise (and alone).
    cluster_up: Gauge,
    /// The certificate-cache totals seen at the last scrape (the cache belongs to a
    /// configuration generation; its totals restart at a reload).
    cache_seen: Mutex<(u64, u64)>,
}

/// Register `metric` under `name` (prefixed `sluice_`).
/// Register `metric` under `name` and give back a handle to it.
fn add<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let r = &mut registry;
        let connections = add(
            r,
            "connections",
            "CONNECT connections by action, deciding stage and rule",
            Family::<ConnectionLabels, Counter>::default(),
        );
        let active = add(
            r,
            "active_connections",
            "Proxy client connections open now",
            Gauge::default(),
        );
        let handshake_failures = add(
            r,
            "handshake_failures",
            "TLS failures of bumped connections by side (client, upstream) and kind",
            Family::<HandshakeLabels, Counter>::default(),
        );
        let http_requests = add(
            r,
            "http_requests",
            "HTTP requests by verdict",
            Family::<VerdictLabels, Counter>::default(),
        );
        let phases = add(
            r,
            "phase_seconds",
            "Duration of connection phases",
            Family::<PhaseLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                phase_histogram,
            ),
        );
        let hits = "Replacement certificates found in the cache";
        let cache_hits = add(r, "cert_cache_hits", hits, Counter::default());
        let misses = "Replacement certificates minted";
        let cache_misses = add(r, "cert_cache_misses", misses, Counter::default());
        let size = "Replacement certificates in the cache";
        let cache_size = add(r, "cert_cache_size", size, Gauge::default());
        let up = "1 while the fleet's Redis (cluster.redis) answers, else 0";
        let cluster_up = add(r, "cluster_up", up, Gauge::default());
        Metrics {
            registry,
            cluster_up,
            connections,
            active,
            handshake_failures,
            http_requests,
            phases: timed_phases(&phases),
            cache_hits,
            cache_misses,
            cache_size,
            cache_seen: Mutex::new((0, 0)),
        }
    }
}

/// One histogram per timed phase, looked up once: observing needs no label lookup.
fn timed_phases(
    family: &Family<PhaseLabels, Histogram, fn() -> Histogram>,
) -> [Histogram; Phase::TIMED.len()] {
    Phase::TIMED.map(|phase| {
        let labels = PhaseLabels {
            phase: phase.as_str().to_string(),
        };
        family.get_or_create(&labels).clone()
    })
}

impl Metrics {
    /// Whether the fleet's Redis answers (`sluice_cluster_up`).
    pub fn set_cluster_up(&self, up: bool) {
        self.cluster_up.set(i64::from(up));
    }

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

    /// Count a failure a phase ended with, if it is one of the TLS failures of a bump
    /// that `sluice_handshake_failures_total` counts.
    pub fn failure(&self, failure: &Failure) {
        if let Some(kind) = failure.kind.handshake_label() {
            self.handshake(failure.side.as_str(), kind);
        }
    }

    /// The verification outcome of a server's chain other than `ok` (SPEC §8: counted
    /// whatever the policy then does with it).
    pub fn upstream_cert_error(&self, kind: &'static str) {
        self.handshake("upstream", kind);
    }

    fn handshake(&self, side: &str, kind: &str) {
        let labels = HandshakeLabels {
            side: side.to_string(),
            kind: kind.to_string(),
        };
        self.handshake_failures.get_or_create(&labels).inc();
    }

    /// Time a phase; phases without a histogram ([`Phase::TIMED`]) are not timed.
    pub fn phase(&self, phase: Phase, took: Duration) {
        if let Some(histogram) = self.phases.get(phase as usize) {
            histogram.observe(took.as_secs_f64());
        }
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

/// What a phase ends with, as far as the metrics care: the failure to count, if any.
pub trait PhaseEnd {
    fn failure(&self) -> Option<&Failure>;
}

impl<T> PhaseEnd for Result<T, Failure> {
    fn failure(&self) -> Option<&Failure> {
        self.as_ref().err()
    }
}

/// The one wrapper every phase of a connection runs in: it is timed into
/// `sluice_phase_seconds{phase}` and the failure it ends with is counted.
pub async fn timed<F>(metrics: &Metrics, phase: Phase, run: F) -> F::Output
where
    F: Future,
    F::Output: PhaseEnd,
{
    let started = Instant::now();
    let ended = run.await;
    metrics.phase(phase, started.elapsed());
    if let Some(failure) = ended.failure() {
        metrics.failure(failure);
    }
    ended
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
    use crate::outcome::Kind;

    // `phase` indexes its histograms by the enum's value: `TIMED` must list the phases
    // in that order, each once.
    #[test]
    fn every_phase_has_its_own_histogram() {
        for (index, phase) in Phase::TIMED.into_iter().enumerate() {
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

    // The phase wrapper times every phase and counts a failure that has a handshake
    // label; one without (a dial's) is timed only.
    #[tokio::test]
    async fn the_phase_wrapper_times_and_counts_failures() {
        let metrics = Metrics::default();
        let rejected = Kind::ClientRejectedCertificate.at(Phase::ClientTls);
        let ended = timed(&metrics, Phase::ClientTls, async { Err::<(), _>(rejected) }).await;
        assert!(ended.is_err());
        let refused = Kind::ConnectFailed.at(Phase::Dial);
        let _ = timed(&metrics, Phase::Dial, async { Err::<(), _>(refused) }).await;
        let _ = timed(&metrics, Phase::Mint, async { Ok::<_, Failure>(()) }).await;
        let text = metrics.encode(0, 0, 0);
        let counted = "sluice_handshake_failures_total{side=\"client\",kind=\"client_rejected_certificate\"} 1";
        assert!(text.contains(counted), "{text}");
        assert_eq!(
            text.matches("sluice_handshake_failures_total{").count(),
            1,
            "{text}"
        );
        for phase in ["client_tls", "connect", "mint"] {
            let count = format!("sluice_phase_seconds_count{{phase=\"{phase}\"}} 1");
            assert!(text.contains(&count), "{text}");
        }
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
