//! The access log (SPEC §7): one JSON object per line, one record per CONNECT when it
//! closes and one per HTTP request. Records are appended to a queue that a writer thread
//! empties in batches, so that a slow disk or a blocked stdout never stalls the proxy's
//! tasks and a busy proxy does not pay a wake-up and a write per record.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::outcome::Failure;

/// One access-log line. Every field but `ts` and `kind` is absent when unknown.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Record {
    pub ts: String,
    pub kind: &'static str,
    /// How the client reached sluice: `explicit` (proxy settings) or `transparent`
    /// (redirected by the kernel; SPEC §11).
    pub mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The DNs of the user's directory groups, for the rules; not logged.
    #[serde(skip)]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `direct` or the parent proxy's name (SPEC §11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The status a parent proxy refused with (`error` = `parent_refused`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_status: Option<u16>,
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
    /// Written by [`Record::fail`] only.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// `kind = "bypass"`: why the name was learned, from how many client addresses
    /// (1 for a CertificateRequest), and until when (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl Record {
    /// A record of `kind` ("connect", "http" or "bypass") stamped with the current time.
    pub fn new(kind: &'static str) -> Self {
        Record {
            ts: now_rfc3339(),
            kind,
            mode: "explicit",
            ..Record::default()
        }
    }
}

impl Record {
    /// Say in the record how the connection or request failed: the one place `error`
    /// is written.
    pub fn fail(&mut self, failure: &Failure) {
        self.error = Some(failure.log_text().into_owned());
    }

    /// The record's `error`, as logged.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A writer thread sleeps while nothing is queued; once a record arrives it waits this
/// long for more, then writes them all with one `write`. Records therefore reach the
/// file within this delay, and a busy proxy pays one wake-up and one syscall per window
/// instead of one per record.
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// Queued bytes that end the batch window early.
const HIGH_WATER: usize = 256 * 1024;

/// Queued bytes beyond which records are dropped (and counted) rather than held: a
/// stalled stdout or disk must not grow the proxy without bound.
const MAX_QUEUED: usize = 64 * 1024 * 1024;

/// Lines waiting for the writer thread; producers append under the lock.
#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    /// Callers of [`AccessLog::flush`] waiting for the lines queued before them.
    flushed: Vec<mpsc::Sender<()>>,
    /// Records dropped because the queue was full, not yet reported.
    dropped: u64,
    /// The writer thread has stopped (its sink failed): nothing is queued any more.
    closed: bool,
}

/// What the proxy's tasks and the writer thread share.
#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    /// Signalled when the queue goes from empty to not empty, passes [`HIGH_WATER`], or
    /// a flush is asked for.
    wake: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while appending leaves at worst a truncated line: keep logging.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct AccessLog {
    queue: Arc<Queue>,
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
        let queue = Arc::new(Queue::default());
        let writer_queue = queue.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_batches(&writer_queue, sink))
            .expect("spawning the access-log thread");
        AccessLog { queue }
    }

    /// Queue one encoded record. Never blocks on I/O.
    pub fn write_line(&self, line: &str) {
        let mut pending = self.queue.lock();
        if pending.closed {
            return;
        }
        let before = pending.lines.len();
        if before + line.len() >= MAX_QUEUED {
            pending.dropped += 1;
            return;
        }
        pending.lines.extend_from_slice(line.as_bytes());
        pending.lines.push(b'\n');
        let crossed_high_water = before < HIGH_WATER && pending.lines.len() >= HIGH_WATER;
        drop(pending);
        if before == 0 || crossed_high_water {
            self.queue.wake.notify_one();
        }
    }

    /// Wait (at most `timeout`) until every record queued so far is written: before the
    /// process exits.
    pub fn flush(&self, timeout: Duration) {
        let (done, written) = mpsc::channel();
        {
            let mut pending = self.queue.lock();
            if pending.closed {
                return;
            }
            pending.flushed.push(done);
        }
        self.queue.wake.notify_one();
        let _ = written.recv_timeout(timeout);
    }
}

/// The writer thread: waits for records, lets a batch gather for [`BATCH_WINDOW`], and
/// writes it with one call. Ends when the sink fails: the queue is closed, and records
/// are from then on only counted in the metrics (the process keeps running).
fn write_batches(queue: &Queue, mut sink: Box<dyn Write + Send>) {
    let mut batch = Vec::new();
    loop {
        let (mut flushed, dropped) = {
            let mut pending = queue.lock();
            while pending.lines.is_empty() && pending.flushed.is_empty() {
                pending = queue.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            if pending.flushed.is_empty() && pending.lines.len() < HIGH_WATER {
                pending = queue
                    .wake
                    .wait_timeout(pending, BATCH_WINDOW)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            // Swap buffers: the old batch's allocation is reused by the producers.
            batch.clear();
            std::mem::swap(&mut batch, &mut pending.lines);
            (
                std::mem::take(&mut pending.flushed),
                std::mem::take(&mut pending.dropped),
            )
        };
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "the access log cannot keep up; records were dropped"
            );
        }
        let written = sink.write_all(&batch).and_then(|()| sink.flush());
        if let Err(error) = &written {
            tracing::error!(%error, "writing the access log failed; no more records are written");
            let mut pending = queue.lock();
            pending.closed = true;
            pending.lines = Vec::new();
            flushed.append(&mut pending.flushed);
        }
        // Answered once the queue is closed, so that a flush after a failure sees it so.
        for done in flushed {
            let _ = done.send(());
        }
        if written.is_err() {
            return;
        }
        // After a backlog, give the memory back rather than keep it for every batch.
        if batch.capacity() > 4 * HIGH_WATER {
            batch = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn log_in(dir: &tempfile::TempDir) -> (AccessLog, std::path::PathBuf) {
        let path = dir.path().join("access.log");
        (AccessLog::file(&path).unwrap(), path)
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_in_order_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir);
        let writers: Vec<_> = (0..4)
            .map(|writer| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for n in 0..1000 {
                        log.write_line(&format!("{{\"writer\":{writer},\"n\":{n}}}"));
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        log.flush(Duration::from_secs(10));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut next = [0; 4];
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let writer = value["writer"].as_u64().unwrap() as usize;
            assert_eq!(value["n"], next[writer], "writer {writer} out of order");
            next[writer] += 1;
        }
        assert_eq!(next, [1000; 4]);
    }

    /// A sink that refuses every write, as a full disk or a closed stdout does.
    struct Failing;

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("no space left on device"))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn after_the_sink_fails_nothing_is_queued_and_a_flush_returns_at_once() {
        let log = AccessLog::spawn(Box::new(Failing));
        log.write_line("{\"n\":1}");
        log.flush(Duration::from_secs(10));
        assert!(
            log.queue.lock().closed,
            "the writer stopped on the failed write"
        );
        log.write_line("{\"n\":2}");
        assert!(
            log.queue.lock().lines.is_empty(),
            "a closed log holds no records"
        );
        let started = Instant::now();
        log.flush(Duration::from_secs(10));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the flush did not wait"
        );
    }

    #[test]
    fn a_single_record_is_written_without_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (log, path) = log_in(&dir);
        log.write_line("{\"kind\":\"connect\"}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap() != "{\"kind\":\"connect\"}\n" {
            assert!(
                Instant::now() < deadline,
                "the record never reached the file"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
