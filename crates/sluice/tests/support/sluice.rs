//! The sluice binary, started with a configuration in a temporary folder and stopped
//! (only this child) when the test ends.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::certs::{TestPki, SERVER_NAMES, UNRESOLVED_NAME};

pub struct Sluice {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The admin endpoint, when enabled.
    pub admin: Option<SocketAddr>,
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parts of a test configuration; sluice's own settings (listen on port 0, the CA
/// and the access log in the temporary folder, the test root trusted upstream) are added.
#[derive(Default)]
pub struct SluiceConfig<'a> {
    /// `proxy.listen`; default `127.0.0.1:0`.
    pub listen: Option<&'a str>,
    pub connect_ports: &'a [u16],
    /// Extra lines for `[tls]`.
    pub tls: &'a str,
    /// Extra lines for `[limits]`.
    pub limits: &'a str,
    /// Anything after: `[[ssl_rules]]`, `[categories]`.
    pub rest: &'a str,
    /// Leave `proxy.deny_destinations` at its SPEC default, which denies loopback; by
    /// default the tests write `deny_destinations = []`, since their origins listen on
    /// 127.0.0.1.
    pub default_deny_destinations: bool,
    /// Extra lines for `[proxy]`.
    pub proxy: &'a str,
    /// Extra lines for the `hosts` file (after the test names on loopback).
    pub hosts: &'a str,
}

impl Sluice {
    pub fn start(pki: &TestPki, config: SluiceConfig<'_>) -> Sluice {
        let dir = tempfile::tempdir().unwrap();
        pki.write_root(&dir.path().join("upstream-root.pem"));
        let text = Self::config_text(&config);
        std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
        Self::spawn_with_hosts(dir, &["run", "-c", "sluice.toml"], config.hosts)
    }

    /// Start with the configuration `text` in `dir` (which may hold files it names).
    pub fn start_in(pki: &TestPki, dir: tempfile::TempDir, text: &str) -> Sluice {
        pki.write_root(&dir.path().join("upstream-root.pem"));
        std::fs::write(dir.path().join("sluice.toml"), text).unwrap();
        Self::spawn(dir, &["run", "-c", "sluice.toml"])
    }

    /// The configuration file `start` writes for `config` (tests rewrite it to reload).
    pub fn config_text(config: &SluiceConfig<'_>) -> String {
        let ports: Vec<String> = config.connect_ports.iter().map(u16::to_string).collect();
        let deny = if config.default_deny_destinations {
            ""
        } else {
            "deny_destinations = []\n"
        };
        format!(
            "[proxy]\nlisten = [\"{}\"]\nconnect_ports = [{}]\nhosts_file = \"hosts\"\n{deny}{}\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
             [tls]\nca_cert = \"ca.pem\"\nca_key = \"ca-key.pem\"\nupstream_roots = [\"upstream-root.pem\"]\n{}\n\n\
             [log]\naccess = \"access.log\"\nlevel = \"debug\"\n\n[limits]\n{}\n\n{}\n",
            config.listen.unwrap_or("127.0.0.1:0"),
            ports.join(", "),
            config.proxy,
            config.tls,
            config.limits,
            config.rest
        )
    }

    /// Run `sluice ARGS` in `dir` and wait until it listens. The test names resolve to
    /// loopback through the `hosts` file `config_text` names, as a real deployment's
    /// names resolve to its servers (so an SNI can be verified against the address a
    /// client CONNECTed to, SPEC §1.3).
    pub fn spawn(dir: tempfile::TempDir, args: &[&str]) -> Sluice {
        Self::spawn_with(dir, args, "", &[])
    }

    /// `spawn` with extra environment variables (`NOTIFY_SOCKET` for the systemd test).
    pub fn spawn_with_env(
        dir: tempfile::TempDir,
        args: &[&str],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Sluice {
        Self::spawn_with(dir, args, "", env)
    }

    /// [`spawn`](Self::spawn) with `extra_hosts` lines added to the `hosts` file.
    pub fn spawn_with_hosts(dir: tempfile::TempDir, args: &[&str], extra_hosts: &str) -> Sluice {
        Self::spawn_with(dir, args, extra_hosts, &[])
    }

    fn spawn_with(
        dir: tempfile::TempDir,
        args: &[&str],
        extra_hosts: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Sluice {
        let mut hosts: String = SERVER_NAMES
            .iter()
            .filter(|name| name.parse::<std::net::IpAddr>().is_err() && **name != UNRESOLVED_NAME)
            .map(|name| format!("127.0.0.1 {name}\n::1 {name}\n"))
            .collect();
        hosts.push_str(extra_hosts);
        std::fs::write(dir.path().join("hosts"), hosts).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting sluice");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (listening, wait) = mpsc::channel();
        let admin = Arc::new(Mutex::new(None));
        let admin_seen = admin.clone();
        let lines = BufReader::new(child.stderr.take().unwrap());
        let kept = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("sluice: admin endpoint on http://") {
                    let addr = rest.split('/').next().unwrap_or_default();
                    *admin_seen.lock().unwrap() = addr.parse::<SocketAddr>().ok();
                }
                if let Some(addr) = line.strip_prefix("sluice: listening on ") {
                    let _ = listening.send(addr.parse::<SocketAddr>().unwrap());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = match wait.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "sluice did not start listening; stderr:\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        };
        let admin = *admin.lock().unwrap();
        Sluice {
            dir,
            addr,
            admin,
            child,
            stderr,
        }
    }

    /// Send SIGTERM and wait (at most `within`) for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Send a signal (`TERM`, `HUP`) without waiting.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status();
    }

    /// The most resident memory the process has held so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("reading the process status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Every access-log record written so far.
    pub fn records(&self) -> Vec<Value> {
        read_records(&self.dir.path().join("access.log"))
    }

    /// Wait (at most 10 s) for a record that satisfies `matches`.
    pub fn wait_record(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = self.records().into_iter().find(|r| matches(r)) {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "no access-log record {what}; records:\n{:#?}\nstderr:\n{}",
                    self.records(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (at most 10 s) until `count` records satisfy `matches`.
    pub fn wait_records(
        &self,
        what: &str,
        count: usize,
        matches: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found: Vec<Value> = self.records().into_iter().filter(|r| matches(r)).collect();
            if found.len() >= count {
                return found;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} of {count} records {what}; records:\n{:#?}",
                    found.len(),
                    self.records()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The connect record (there is one per CONNECT, written when it closes).
    pub fn connect_record(&self) -> Value {
        self.wait_record("of kind connect", |r| r["kind"] == "connect")
    }

    pub fn http_record(&self) -> Value {
        self.wait_record("of kind http", |r| r["kind"] == "http")
    }
}

fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad log line {line:?}: {e}"))
        })
        .collect()
}
