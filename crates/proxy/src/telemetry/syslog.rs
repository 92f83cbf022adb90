//! The access records sent to a syslog server too (`log.syslog`): RFC 5424 messages over
//! UDP (one per datagram, RFC 5426) or TCP (octet counting, RFC 6587), with the JSON
//! record or an ArcSight CEF line as the message. A writer thread sends them, so a slow
//! or absent collector never stalls the proxy; records it cannot deliver are dropped
//! with a diagnostic, never queued without bound.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use sluice_policy::{SyslogFormat, SyslogTarget, SyslogTransport};

use crate::telemetry::access_log::Record;

/// Messages waiting for the writer thread; more are dropped.
const QUEUE: usize = 10_000;
/// RFC 5424 PRI: facility local0 (16), severity informational (6).
const PRI: u8 = 16 * 8 + 6;

pub struct Syslog {
    messages: mpsc::SyncSender<String>,
    format: SyslogFormat,
    hostname: String,
}

impl Syslog {
    pub fn start(target: &SyslogTarget, format: SyslogFormat) -> Syslog {
        let (messages, queue) = mpsc::sync_channel(QUEUE);
        let target = target.clone();
        std::thread::Builder::new()
            .name("syslog".into())
            .spawn(move || deliver(&target, queue))
            .expect("spawning the syslog thread");
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "-".into());
        Syslog {
            messages,
            format,
            hostname,
        }
    }

    /// Queue one record; `json` is its access-log line.
    pub fn send(&self, record: &Record, json: &str) {
        let body = match self.format {
            SyslogFormat::Json => json.to_string(),
            SyslogFormat::Cef => cef(record),
        };
        let message = format!(
            "<{PRI}>1 {} {} sluice {} {} - {body}",
            rfc5424_timestamp(&record.ts),
            self.hostname,
            std::process::id(),
            record.kind
        );
        if self.messages.try_send(message).is_err() {
            tracing::warn!("the syslog queue is full; a record was not sent");
        }
    }
}

/// RFC 5424's TIMESTAMP allows at most six fraction digits (TIME-SECFRAC); the access
/// log's RFC 3339 `ts` may carry nine. Extra digits are cut (not rounded, so a time never
/// moves into the next second).
fn rfc5424_timestamp(ts: &str) -> String {
    let Some(dot) = ts.find('.') else {
        return ts.to_string();
    };
    let digits = ts[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
    if digits <= 6 {
        return ts.to_string();
    }
    format!("{}{}", &ts[..dot + 7], &ts[dot + 1 + digits..])
}

fn deliver(target: &SyslogTarget, queue: mpsc::Receiver<String>) {
    let address = (target.host.as_str(), target.port);
    match target.transport {
        SyslogTransport::Udp => {
            let bind = if target.host.contains(':') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let Ok(socket) = UdpSocket::bind(bind) else {
                tracing::error!("cannot open a UDP socket for syslog");
                return;
            };
            while let Ok(message) = queue.recv() {
                if let Err(error) = socket.send_to(message.as_bytes(), address) {
                    tracing::warn!(%error, "syslog datagram not sent");
                }
            }
        }
        SyslogTransport::Tcp => {
            let mut stream: Option<TcpStream> = None;
            while let Ok(message) = queue.recv() {
                let framed = format!("{} {message}", message.len());
                // One reconnection per message at most: a dead collector costs a
                // connect attempt per record, not a retry loop.
                for _ in 0..2 {
                    if stream.is_none() {
                        stream = connect(address);
                    }
                    let Some(open) = stream.as_mut() else { break };
                    if open.write_all(framed.as_bytes()).is_ok() {
                        break;
                    }
                    stream = None;
                }
            }
        }
    }
}

fn connect(address: (&str, u16)) -> Option<TcpStream> {
    let resolved = address.to_socket_addrs().ok()?.next()?;
    match TcpStream::connect_timeout(&resolved, Duration::from_secs(5)) {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::warn!(%error, "cannot reach the syslog collector; records are dropped");
            None
        }
    }
}

/// The record as an ArcSight Common Event Format line.
fn cef(record: &Record) -> String {
    let outcome = match record.kind {
        "connect" => record.action.unwrap_or("none"),
        _ => record.verdict.unwrap_or("none"),
    };
    let severity = match outcome {
        "infected" | "phishing" => 8,
        "blocked" | "scan_failed" | "terminate" => 5,
        "refused" => 3,
        _ => 1,
    };
    let mut extension = Vec::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(value) = value {
            extension.push(format!("{key}={}", escape_extension(&value)));
        }
    };
    put("rt", Some(record.ts.clone()));
    put("src", record.client.map(|ip| ip.to_string()));
    put("spt", record.client_port.map(|p| p.to_string()));
    put("suser", record.user.clone());
    put("dhost", record.sni.clone().or_else(|| record.host.clone()));
    put("dst", record.dest_ip.map(|ip| ip.to_string()));
    put("dpt", record.port.map(|p| p.to_string()));
    put("act", Some(outcome.to_string()));
    put("request", record.url.clone());
    put("requestMethod", record.method.clone());
    put("outcome", record.status.map(|s| s.to_string()));
    put("in", record.bytes_up.map(|b| b.to_string()));
    put("out", record.bytes_down.map(|b| b.to_string()));
    put("reason", record.error().map(str::to_string));
    put("externalId", record.request_id.clone());
    put("cs1Label", record.rule.as_ref().map(|_| "rule".to_string()));
    put("cs1", record.rule.clone());
    put(
        "cs2Label",
        record.threat.as_ref().map(|_| "threat".to_string()),
    );
    put("cs2", record.threat.clone());
    format!(
        "CEF:0|sluice|sluice|{}|{}-{}|{} {}|{severity}|{}",
        env!("CARGO_PKG_VERSION"),
        record.kind,
        escape_header(outcome),
        record.kind,
        escape_header(outcome),
        extension.join(" ")
    )
}

fn escape_header(value: &str) -> String {
    value.replace('\\', "\\\\").replace('|', "\\|")
}

fn escape_extension(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_carry_at_most_six_fraction_digits() {
        let cases = [
            (
                "2026-12-04T18:20:07.123456789Z",
                "2026-12-04T18:20:07.123456Z",
            ),
            (
                "2026-12-04T18:20:07.999999999+01:00",
                "2026-12-04T18:20:07.999999+01:00",
            ),
            (
                "2026-12-04T18:20:07.1234567Z",
                "2026-12-04T18:20:07.123456Z",
            ),
            ("2026-12-04T18:20:07.123456Z", "2026-12-04T18:20:07.123456Z"),
            ("2026-12-04T18:20:07.5Z", "2026-12-04T18:20:07.5Z"),
            ("2026-12-04T18:20:07Z", "2026-12-04T18:20:07Z"),
        ];
        for (ts, expected) in cases {
            assert_eq!(rfc5424_timestamp(ts), expected, "{ts}");
        }
    }

    #[test]
    fn a_cef_line_carries_the_record_with_escaped_values() {
        let mut record = Record::new("http");
        record.client = Some("10.0.0.7".parse().unwrap());
        record.client_port = Some(50123);
        record.host = Some("files.example".into());
        record.url = Some("http://files.example/a?x=1".into());
        record.method = Some("GET".into());
        record.status = Some(403);
        record.verdict = Some("infected");
        record.threat = Some("Eicar|Test".into());
        record.rule = Some("default".into());
        let line = cef(&record);
        assert!(line.starts_with("CEF:0|sluice|sluice|"), "{line}");
        assert!(line.contains("|http-infected|http infected|8|"), "{line}");
        assert!(line.contains("src=10.0.0.7 spt=50123"), "{line}");
        assert!(
            line.contains("request=http://files.example/a?x\\=1"),
            "{line}"
        );
        assert!(line.contains("act=infected"), "{line}");
        assert!(line.contains("cs2Label=threat cs2=Eicar|Test"), "{line}");
        assert!(line.contains("outcome=403"), "{line}");
    }
}
