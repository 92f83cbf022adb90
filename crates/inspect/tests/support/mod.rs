//! Real anti-virus engines for tests: ClamAV's clamd and c-icap with its virus_scan
//! service, each started on loopback with its configuration in a temporary folder, and
//! the EICAR test file built at run time.
//!
//! ClamAV cannot download its signature databases here, so [`Clamd::start`] writes a
//! database of one signature of its own, `Sluice.Test.EICAR`, that finds the EICAR
//! string anywhere in a file (clamd reports it as `Sluice.Test.EICAR.UNOFFICIAL`, the
//! name given to signatures outside ClamAV's official databases).
//!
//! Usage (the data-path tests can reuse it with `#[path = ".../support/mod.rs"] mod`):
//!
//! ```ignore
//! let clamd = Clamd::start();                  // TCP on a free port, and a Unix socket
//! let icap = CIcap::start(&clamd);             // virus_scan, scanning through that clamd
//! let service = icap.service();                // sluice_policy::IcapService
//! let address = clamd.tcp_address();           // or clamd.unix_address()
//! let virus = eicar();                         // the 68 EICAR bytes
//! ```
//!
//! Each engine runs in its own process group, and is stopped (SIGTERM to the group,
//! then SIGKILL) by [`Clamd::stop`], [`CIcap::stop`] or when dropped: only the processes
//! a test started are ever signalled. A missing binary fails the test with a message
//! naming `install-engines.sh`; tests are never skipped silently.

#![allow(dead_code)] // Each test binary uses a part of the harness.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sluice_policy::{ClamdAddress, IcapService};

/// How long an engine may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at starting an engine (a free port may be taken between probe and bind).
const START_ATTEMPTS: usize = 3;
/// The name of the test signature, as clamd reports it.
pub const EICAR_THREAT: &str = "Sluice.Test.EICAR.UNOFFICIAL";

/// The EICAR anti-virus test file (68 bytes), assembled from parts so that no source
/// file contains it whole.
pub fn eicar() -> Vec<u8> {
    let parts: [&str; 4] = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-",
        "ANTIVIRUS-TEST-",
        "FILE!$H+H*",
    ];
    parts.concat().into_bytes()
}

/// Hex of `bytes`, for a ClamAV body signature.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The path of an installed program, looked for in `PATH` and the sbin folders (clamd
/// lives in /usr/sbin, which a non-root `PATH` may lack).
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: run crates/inspect/tests/install-engines.sh \
                 (Debian packages c-icap, libc-icap-mod-virus-scan, clamav-daemon)"
            )
        })
}

/// A TCP port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("probing for a free port")
}

/// A started engine process, in its own process group.
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command) -> Process {
        let child = command
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Process { name, child }
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// SIGTERM to the process group, then SIGKILL after five seconds.
    fn stop(&mut self) {
        if self.exited() {
            return;
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-TERM", "--", &group])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
        // The group's other processes (c-icap's children) share its listening socket: the
        // server is stopped only when the last of them is gone, and signals are delivered
        // asynchronously.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && group_alive(&group) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a live process of the group `-PGID` is still there (zombies have closed their
/// sockets, and whether init reaps them soon is not ours to wait for).
fn group_alive(group: &str) -> bool {
    let pgid = group.trim_start_matches('-');
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // After the ")" that ends the command name: state, ppid, pgrp, ...
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        fields.len() > 2 && fields[2] == pgid && fields[0] != "Z"
    })
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Wait until `ready` holds, the process exits (`false`), or [`READY_TIMEOUT`] passes
/// (a panic naming `log`).
fn wait_ready(process: &mut Process, log: &Path, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        if process.exited() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{} not ready within {READY_TIMEOUT:?}; its log:\n{}",
        process.name,
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Send `request` and read the answer up to `end` (or the connection's end).
fn exchange(port: u16, request: &[u8], end: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(end.len()).any(|w| w == end) {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Some(answer)
}

/// Settings of a test clamd.
#[derive(Clone, Debug)]
pub struct ClamdConfig {
    /// `StreamMaxLength`: larger `INSTREAM`s are refused (`"100M"`, `"1M"`).
    pub stream_max_length: String,
}

impl Default for ClamdConfig {
    fn default() -> Self {
        ClamdConfig {
            stream_max_length: "100M".into(),
        }
    }
}

/// A running clamd with the EICAR test signature, on a loopback TCP port and a Unix
/// socket.
pub struct Clamd {
    process: Process,
    dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its Unix socket.
    pub socket: PathBuf,
}

impl Clamd {
    /// clamd with the default [`ClamdConfig`].
    pub fn start() -> Clamd {
        Clamd::start_with(&ClamdConfig::default())
    }

    /// clamd with `config`.
    pub fn start_with(config: &ClamdConfig) -> Clamd {
        let binary = program("clamd");
        for _ in 0..START_ATTEMPTS {
            if let Some(clamd) = Clamd::try_start(&binary, config) {
                return clamd;
            }
        }
        panic!("clamd did not start in {START_ATTEMPTS} attempts");
    }

    fn try_start(binary: &Path, config: &ClamdConfig) -> Option<Clamd> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = dir.path().join("db");
        std::fs::create_dir(&db).expect("creating the database folder");
        std::fs::write(
            db.join("sluice-test.ndb"),
            format!("Sluice.Test.EICAR:0:*:{}\n", hex(&eicar())),
        )
        .expect("writing the test signature");
        let port = free_port();
        let socket = dir.path().join("clamd.sock");
        let log = dir.path().join("clamd.log");
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nLocalSocket {socket}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
                 DatabaseDirectory {db}\nLogFile {log}\nPidFile {pid}\n\
                 StreamMaxLength {max}\nMaxThreads 8\nSelfCheck 3600\n",
                socket = socket.display(),
                db = db.display(),
                log = log.display(),
                pid = dir.path().join("clamd.pid").display(),
                max = config.stream_max_length,
            ),
        )
        .expect("writing clamd.conf");
        let mut process = Process::spawn(
            "clamd",
            Command::new(binary)
                .arg("--config-file")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let ready = wait_ready(&mut process, &log, || {
            exchange(port, b"zPING\0", b"\0").is_some_and(|a| a.starts_with(b"PONG"))
                && socket.exists()
        });
        ready.then(|| Clamd {
            process,
            dir,
            port,
            socket,
        })
    }

    /// `tcp://127.0.0.1:PORT` as configured.
    pub fn tcp_address(&self) -> ClamdAddress {
        ClamdAddress::Tcp {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }

    /// `unix:/…/clamd.sock` as configured.
    pub fn unix_address(&self) -> ClamdAddress {
        ClamdAddress::Unix(self.socket.clone())
    }

    /// Stop it (the tests of a stopped engine).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default()
    }
}

/// Settings of a test c-icap.
#[derive(Clone, Debug)]
pub struct CIcapConfig {
    /// `virus_scan.OptionsTTL`, seconds.
    pub options_ttl: u32,
    /// `virus_scan.MaxConnections`.
    pub max_connections: u32,
    /// `virus_scan.PreviewSize`.
    pub preview_size: u32,
    /// More `c-icap.conf` lines (`virus_scan.TransferComplete exe`...).
    pub extra: String,
}

impl Default for CIcapConfig {
    fn default() -> Self {
        CIcapConfig {
            options_ttl: 3600,
            max_connections: 8,
            preview_size: 1024,
            extra: String::new(),
        }
    }
}

/// A running c-icap with the virus_scan service (and its `avscan` alias in simple mode)
/// scanning through a [`Clamd`].
pub struct CIcap {
    process: Process,
    dir: tempfile::TempDir,
    /// Its ICAP port on 127.0.0.1.
    pub port: u16,
}

impl CIcap {
    /// c-icap with the default [`CIcapConfig`], scanning through `clamd`'s Unix socket.
    pub fn start(clamd: &Clamd) -> CIcap {
        CIcap::start_with(clamd, &CIcapConfig::default())
    }

    /// c-icap with `config`.
    pub fn start_with(clamd: &Clamd, config: &CIcapConfig) -> CIcap {
        let binary = program("c-icap");
        let modules = modules_dir();
        for _ in 0..START_ATTEMPTS {
            if let Some(icap) = CIcap::try_start(&binary, &modules, clamd, config) {
                return icap;
            }
        }
        panic!("c-icap did not start in {START_ATTEMPTS} attempts");
    }

    fn try_start(
        binary: &Path,
        modules: &Path,
        clamd: &Clamd,
        config: &CIcapConfig,
    ) -> Option<CIcap> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let port = free_port();
        let log = dir.path().join("server.log");
        let conf = dir.path().join("c-icap.conf");
        std::fs::write(
            &conf,
            format!(
                "PidFile {dir}/c-icap.pid\nCommandsSocket {dir}/c-icap.ctl\n\
                 Timeout 60\nMaxKeepAliveRequests 100\nKeepAliveTimeout 600\n\
                 StartServers 1\nMaxServers 2\nMinSpareThreads 4\nMaxSpareThreads 16\n\
                 ThreadsPerChild 16\nPort 127.0.0.1:{port}\nTmpDir {dir}\n\
                 MaxMemObject 131072\nDebugLevel 1\n\
                 ModulesDir {modules}\nServicesDir {modules}\n\
                 TemplateDir /usr/share/c_icap/templates/\nTemplateDefaultLanguage en\n\
                 LoadMagicFile /etc/c-icap/c-icap.magic\n\
                 ServerLog {log}\nAccessLog {dir}/access.log\n\
                 Module common clamd_mod.so\nclamd_mod.ClamdSocket {clamd_socket}\n\
                 Service virus_scan virus_scan.so\n\
                 ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple\n\
                 virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE\n\
                 virus_scan.SendPercentData 0\nvirus_scan.Allow204Responces on\n\
                 virus_scan.MaxObjectSize 200M\nvirus_scan.DefaultEngine clamd\n\
                 virus_scan.OptionsTTL {ttl}\nvirus_scan.MaxConnections {max}\n\
                 virus_scan.PreviewSize {preview}\n{extra}\n",
                dir = dir.path().display(),
                modules = modules.display(),
                log = log.display(),
                clamd_socket = clamd.socket.display(),
                ttl = config.options_ttl,
                max = config.max_connections,
                preview = config.preview_size,
                extra = config.extra,
            ),
        )
        .expect("writing c-icap.conf");
        let mut process = Process::spawn(
            "c-icap",
            Command::new(binary)
                .args(["-N", "-f"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let options = format!(
            "OPTIONS icap://127.0.0.1:{port}/virus_scan ICAP/1.0\r\nHost: 127.0.0.1:{port}\r\n\
             Encapsulated: null-body=0\r\n\r\n"
        );
        let ready = wait_ready(&mut process, &log, || {
            exchange(port, options.as_bytes(), b"\r\n\r\n")
                .is_some_and(|a| a.starts_with(b"ICAP/1.0 200"))
        });
        ready.then(|| CIcap { process, dir, port })
    }

    /// `icap://127.0.0.1:PORT/avscan`: virus_scan in its simple mode, as Debian's
    /// sample configuration defines it. (In its default mode virus_scan may start
    /// answering before it has scanned a body of more than a few KiB, and can then only
    /// cut the body short when it finds a virus, without naming it.)
    pub fn service(&self) -> IcapService {
        IcapService {
            host: "127.0.0.1".into(),
            port: self.port,
            service: "/avscan".into(),
        }
    }

    /// Stop it (the tests of a stopped engine).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Its server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

/// Where Debian's c-icap and libc-icap-mod-virus-scan put their modules
/// (`/usr/lib/<multiarch>/c_icap`).
fn modules_dir() -> PathBuf {
    let candidates = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("c_icap"))
        .chain([
            PathBuf::from("/usr/lib/c_icap"),
            PathBuf::from("/usr/local/lib/c_icap"),
        ]);
    candidates
        .into_iter()
        .find(|dir| dir.join("virus_scan.so").is_file() && dir.join("clamd_mod.so").is_file())
        .unwrap_or_else(|| {
            panic!(
                "c-icap's virus_scan.so and clamd_mod.so were not found: run \
                 crates/inspect/tests/install-engines.sh (Debian package libc-icap-mod-virus-scan)"
            )
        })
}
