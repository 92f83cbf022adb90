//! Where a finished record goes: the access log, the syslog collector when one is
//! configured, and the metrics that count it. Kept apart from the log and the metrics so
//! that neither needs the other.

use std::sync::Arc;

use crate::bypass::{rfc3339, LearnedBypass};
use crate::telemetry::access_log::{AccessLog, Record};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::syslog::Syslog;

/// Where finished records go: the access log, the syslog collector when one is
/// configured, and the metrics that count them.
#[derive(Clone)]
pub struct Recorder {
    log: AccessLog,
    syslog: Option<Arc<Syslog>>,
    metrics: Arc<Metrics>,
}

impl Recorder {
    pub fn new(log: AccessLog, syslog: Option<Arc<Syslog>>, metrics: Arc<Metrics>) -> Self {
        Recorder {
            log,
            syslog,
            metrics,
        }
    }

    /// Count the record and queue it for the log and syslog.
    pub fn write(&self, record: &Record) {
        self.metrics.record(record);
        match serde_json::to_string(record) {
            Ok(line) => {
                if let Some(syslog) = &self.syslog {
                    syslog.send(record, &line);
                }
                self.log.write_line(&line);
            }
            Err(error) => tracing::error!(%error, "cannot encode an access-log record"),
        }
    }

    /// The `"kind":"bypass"` record of a bypass learned (and a diagnostic).
    pub fn write_learned(&self, learned: &LearnedBypass) {
        tracing::warn!(
            sni = learned.sni,
            reason = learned.reason.as_str(),
            count = learned.count,
            "learned bypass: this name will be tunneled instead of bumped"
        );
        let mut record = Record::new("bypass");
        record.sni = Some(learned.sni.clone());
        record.reason = Some(learned.reason.as_str());
        record.count = Some(learned.count);
        record.expires = Some(rfc3339(learned.expires));
        self.write(&record);
    }
}
