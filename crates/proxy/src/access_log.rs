//! The access log (SPEC §7): one JSON object per line, one record per CONNECT when it
//! closes and one per HTTP request. Records are handed to a writer thread through a
//! channel so that a slow disk or a blocked stdout never stalls the proxy's tasks.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{mpsc, Arc};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::metrics::Metrics;
use crate::syslog::Syslog;

/// One access-log line. Every field but `ts` and `kind` is absent when unknown.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    pub ts: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_cert: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ech: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_up: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_down: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Record {
    /// A record of `kind` ("connect" or "http") stamped with the current time.
    pub fn new(kind: &'static str) -> Self {
        Record {
            ts: now_rfc3339(),
            kind,
            ..Record::default()
        }
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

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
                self.log.write_line(line);
            }
            Err(error) => tracing::error!(%error, "cannot encode an access-log record"),
        }
    }
}

/// What the writer thread is asked to do.
enum Message {
    Line(String),
    /// Write out everything queued before, then answer.
    Flush(mpsc::Sender<()>),
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    lines: mpsc::Sender<Message>,
}

impl AccessLog {
    /// Log to standard output.
    pub fn stdout() -> Self {
        Self::spawn(Box::new(io::stdout()))
    }

    /// Append to a file, creating it if needed.
    pub fn file(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self::spawn(Box::new(file)))
    }

    fn spawn(sink: Box<dyn Write + Send>) -> Self {
        let (lines, queue) = mpsc::channel::<Message>();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(queue, sink))
            .expect("spawning the access-log thread");
        AccessLog { lines }
    }

    /// Queue one encoded record. Never blocks.
    pub fn write_line(&self, line: String) {
        // The receiver only goes away when the process is exiting.
        let _ = self.lines.send(Message::Line(line));
    }

    /// Wait (at most `timeout`) until every record queued so far is written: before the
    /// process exits.
    pub fn flush(&self, timeout: std::time::Duration) {
        let (done, written) = mpsc::channel();
        if self.lines.send(Message::Flush(done)).is_ok() {
            let _ = written.recv_timeout(timeout);
        }
    }
}

/// Writes queued lines, flushing whenever the queue is momentarily empty so that records
/// appear promptly without a syscall per line under load.
fn write_lines(queue: mpsc::Receiver<Message>, sink: Box<dyn Write + Send>) {
    let mut out = BufWriter::new(sink);
    while let Ok(message) = queue.recv() {
        let mut next = Some(message);
        while let Some(message) = next {
            match message {
                Message::Line(line) => {
                    if writeln!(out, "{line}").is_err() {
                        return;
                    }
                }
                Message::Flush(done) => {
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            next = queue.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
}
