//! What a run counts and how it reports: each worker keeps its own [`Tally`] (no shared
//! counter on the hot path), merged at the end; latency percentiles; the first few
//! distinct error messages on stderr; and the one JSON line on stdout, whose keys come in
//! the order of the report struct's fields.

use std::io::Write as _;
use std::process;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::error::Error;
use crate::percentile;

/// Distinct error messages shown on stderr per run.
const SHOWN_ERRORS: usize = 5;

/// One worker's counts; merged into the run's.
#[derive(Debug, Default)]
pub struct Tally {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Response body bytes received.
    pub bytes: u64,
    /// Duration of each successful operation, in completion order.
    pub latencies: Vec<Duration>,
}

impl Tally {
    /// Counts a success that took `latency`.
    pub fn success(&mut self, latency: Duration) {
        self.ok += 1;
        self.latencies.push(latency);
    }

    /// Counts a failure and shows it when it is new.
    pub fn failure(&mut self, log: &ErrorLog, err: &Error) {
        self.errors += 1;
        log.show(err);
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.latencies.extend(other.latencies);
    }

    /// The report of a mode that counts operations per second over `secs`.
    pub fn rate_report(mut self, mode: &'static str, secs: Duration) -> RateReport {
        let latency = percentiles(&mut self.latencies);
        RateReport {
            mode,
            ok: self.ok,
            errors: self.errors,
            secs: round(secs.as_secs_f64(), 3),
            per_sec: round(self.ok as f64 / secs.as_secs_f64(), 1),
            p50_ms: latency.map(|(p50, _)| millis(p50)),
            p99_ms: latency.map(|(_, p99)| millis(p99)),
        }
    }
}

/// `{"mode","ok","errors","secs","per_sec","p50_ms","p99_ms"}` of `conns` and `requests`.
#[derive(Debug, PartialEq, Serialize)]
pub struct RateReport {
    /// The mode's name.
    pub mode: &'static str,
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Wall time from the start until the last worker finished.
    pub secs: f64,
    /// `ok / secs`.
    pub per_sec: f64,
    /// Median latency in milliseconds; `null` when nothing succeeded.
    pub p50_ms: Option<f64>,
    /// 99th-percentile latency in milliseconds; `null` when nothing succeeded.
    pub p99_ms: Option<f64>,
}

/// The median and the 99th percentile of `samples` (sorted in place); `None` when empty.
pub fn percentiles(samples: &mut [Duration]) -> Option<(Duration, Duration)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    Some((percentile(samples, 0.5), percentile(samples, 0.99)))
}

/// Milliseconds with three decimals.
pub fn millis(d: Duration) -> f64 {
    round(d.as_secs_f64() * 1e3, 3)
}

/// `value` rounded to `decimals` decimals.
pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// Prints the run's one JSON line on stdout and flushes it (`hold` keeps running after).
pub fn emit(report: &impl Serialize) {
    let mut out = std::io::stdout().lock();
    // Nothing useful can be done when stdout is gone; the exit status still tells.
    if serde_json::to_writer(&mut out, report).is_ok() {
        let _ = writeln!(out);
    }
    let _ = out.flush();
}

/// The first distinct error messages, already shown on stderr.
#[derive(Debug, Default)]
pub struct ErrorLog {
    shown: Mutex<Vec<String>>,
}

impl ErrorLog {
    /// Shows `err` on stderr unless it was shown already or enough were. An ALPN
    /// mismatch ends the run at once: every connection would measure the wrong protocol.
    pub fn show(&self, err: &Error) {
        if matches!(err, Error::Alpn { .. }) {
            eprintln!("loadgen: {err}; stopping");
            process::exit(1);
        }
        let Ok(mut shown) = self.shown.lock() else {
            return;
        };
        if shown.len() >= SHOWN_ERRORS {
            return;
        }
        let message = err.to_string();
        if !shown.contains(&message) {
            eprintln!("loadgen: {message}");
            shown.push(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_milliseconds() {
        // Shuffled: the function must sort.
        let mut samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        samples.swap(3, 70);
        // Nearest rank on 0..=99: p50 is rank 50 (51 ms), p99 rank 98 (99 ms).
        assert_eq!(percentiles(&mut samples), Some((ms(51), ms(99))));
    }

    #[test]
    fn percentiles_of_few_samples() {
        assert_eq!(percentiles(&mut []), None);
        assert_eq!(percentiles(&mut [ms(7)]), Some((ms(7), ms(7))));
        let mut skewed = vec![ms(1); 98];
        skewed.extend([ms(500), ms(900)]);
        assert_eq!(percentiles(&mut skewed), Some((ms(1), ms(500))));
    }

    #[test]
    fn millis_keep_three_decimals() {
        assert_eq!(millis(Duration::from_nanos(1_234_567)), 1.235);
        assert_eq!(millis(Duration::from_micros(250)), 0.25);
    }

    #[test]
    fn the_rate_report() {
        let mut tally = Tally::default();
        tally.success(ms(2));
        tally.success(ms(4));
        let mut other = Tally::default();
        other.success(ms(3));
        other.errors = 1;
        tally.merge(other);
        let report = tally.rate_report("conns", Duration::from_millis(1500));
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            r#"{"mode":"conns","ok":3,"errors":1,"secs":1.5,"per_sec":2.0,"p50_ms":3.0,"p99_ms":4.0}"#
        );
        let empty = Tally::default().rate_report("requests", Duration::from_secs(1));
        assert_eq!(
            serde_json::to_string(&empty).unwrap(),
            r#"{"mode":"requests","ok":0,"errors":0,"secs":1.0,"per_sec":0.0,"p50_ms":null,"p99_ms":null}"#
        );
    }
}
