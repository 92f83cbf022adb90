//! Counting what the proxy did: per kind of traffic, the attempts, how each was answered
//! (a short label), and how long the answers took; then the report and its Markdown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

use crate::loadgen::stats::{millis, percentiles};

/// The figures of one kind while it runs, shared by its workers.
#[derive(Clone, Default)]
pub struct Outcomes(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    attempts: u64,
    labels: BTreeMap<String, u64>,
    waits: Vec<Duration>,
    notes: Vec<String>,
    errors_shown: usize,
}

/// Distinct error messages kept per kind.
const SHOWN_ERRORS: usize = 5;

impl Outcomes {
    /// One attempt answered as `label` after `waited`.
    pub fn record(&self, label: impl Into<String>, waited: Duration) {
        let mut inner = self.lock();
        inner.attempts += 1;
        *inner.labels.entry(label.into()).or_default() += 1;
        inner.waits.push(waited);
    }

    /// A remark shown under the table (kept once).
    pub fn note(&self, text: impl Into<String>) {
        let text = text.into();
        let mut inner = self.lock();
        if !inner.notes.contains(&text) {
            inner.notes.push(text);
        }
    }

    /// An error message shown under the table: the first [`SHOWN_ERRORS`] distinct ones.
    pub fn error(&self, message: impl Into<String>) {
        let message = format!("error: {}", message.into());
        let mut inner = self.lock();
        if inner.errors_shown < SHOWN_ERRORS && !inner.notes.contains(&message) {
            inner.errors_shown += 1;
            inner.notes.push(message);
        }
    }

    /// The report of kind `kind`; `ok` names the label of a success for normal traffic,
    /// whose other labels are errors.
    pub fn report(&self, kind: &str, ok: Option<&str>) -> KindReport {
        let mut inner = self.lock();
        let wait = percentiles(&mut inner.waits);
        let errors = ok.map(|ok| inner.attempts - inner.labels.get(ok).copied().unwrap_or(0));
        KindReport {
            kind: kind.to_owned(),
            attempts: inner.attempts,
            errors,
            answers: inner.labels.clone(),
            p50_ms: wait.map(|(p50, _)| millis(p50)),
            p99_ms: wait.map(|(_, p99)| millis(p99)),
            notes: inner.notes.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The figures of one kind at the end.
#[derive(Debug, Serialize)]
pub struct KindReport {
    /// What was sent.
    pub kind: String,
    /// Attempts (requests, connections or frames, as the kind says).
    pub attempts: u64,
    /// Normal traffic only: attempts not answered as a success.
    pub errors: Option<u64>,
    /// How the proxy answered, by label.
    pub answers: BTreeMap<String, u64>,
    /// Median time to the answer.
    pub p50_ms: Option<f64>,
    /// 99th percentile of the time to the answer.
    pub p99_ms: Option<f64>,
    /// Remarks (first distinct error messages, limits reached).
    pub notes: Vec<String>,
}

/// A Markdown table of the reports, with their notes as a list below it.
pub fn markdown(reports: &[KindReport]) -> String {
    let mut out = String::from(
        "| kind | attempts | errors | how sluice answered (count) | answer p50 / p99 |\n\
         |---|---:|---:|---|---:|\n",
    );
    for r in reports {
        let mut answers: Vec<(&String, &u64)> = r.answers.iter().collect();
        answers.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let answers: Vec<String> = answers.iter().map(|(l, n)| format!("{l}: {n}")).collect();
        let errors = r.errors.map_or_else(
            || "–".to_owned(),
            |e| format!("{e} ({:.3} %)", rate(e, r.attempts)),
        );
        let wait = match (r.p50_ms, r.p99_ms) {
            (Some(p50), Some(p99)) => format!("{} / {} ms", round_ms(p50), round_ms(p99)),
            _ => "–".to_owned(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            r.kind,
            r.attempts,
            errors,
            answers.join("; ").replace('|', "/"),
            wait
        );
    }
    let notes: Vec<String> = reports
        .iter()
        .flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {n}\n", r.kind)))
        .collect();
    if !notes.is_empty() {
        out += "\n";
        out += &notes.concat();
    }
    out
}

fn rate(errors: u64, attempts: u64) -> f64 {
    if attempts == 0 {
        0.0
    } else {
        errors as f64 * 100.0 / attempts as f64
    }
}

fn round_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_errors_and_its_table_lists_answers_by_count() {
        let normal = Outcomes::default();
        normal.record("200", Duration::from_millis(2));
        normal.record("200", Duration::from_millis(4));
        normal.record("502", Duration::from_millis(6));
        normal.error("response status 502");
        let report = normal.report("normal HTTPS", Some("200"));
        assert_eq!((report.attempts, report.errors), (3, Some(1)));
        let table = markdown(&[report]);
        assert!(
            table.contains("| normal HTTPS | 3 | 1 (33.333 %) | 200: 2; 502: 1 | 4.0 / 6.0 ms |"),
            "{table}"
        );
        assert!(table.ends_with("- normal HTTPS: error: response status 502\n"));
    }
}
