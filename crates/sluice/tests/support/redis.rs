//! Debian's `redis-server` on a loopback port with a temporary configuration (no
//! persistence), killed by its PID; and listeners that only pretend to be Redis.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra configuration lines (TLS, password).
    conf: String,
    /// Extra redis-cli arguments to match.
    cli_args: Vec<String>,
    /// Whether it listens with TLS only.
    tls: bool,
    /// The TLS files, for as long as the server runs.
    _keep: Option<tempfile::TempDir>,
}

impl Redis {
    /// On a free port (scripts/test installs redis-server).
    pub fn start() -> Redis {
        Self::start_with(String::new(), Vec::new(), false)
    }

    /// Without TLS, the password `password` required.
    pub fn start_with_password(password: &str) -> Redis {
        let conf = format!("requirepass {password}\n");
        let cli = vec!["-a".into(), password.into(), "--no-auth-warning".into()];
        Self::start_with(conf, cli, false)
    }

    /// TLS only (with `cert_pem`/`key_pem`, clients not asked for certificates), the
    /// password `password` required.
    pub fn start_tls(cert_pem: &str, key_pem: &str, ca_pem: &str, password: &str) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("cert.pem", cert_pem),
            ("key.pem", key_pem),
            ("ca.pem", ca_pem),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let d = dir.path().display();
        let conf = format!(
            "tls-cert-file {d}/cert.pem\ntls-key-file {d}/key.pem\ntls-ca-cert-file {d}/ca.pem\n\
             tls-auth-clients no\nrequirepass {password}\n"
        );
        let ca = format!("{d}/ca.pem");
        let cli = vec![
            "--tls".into(),
            "--cacert".into(),
            ca,
            "-a".into(),
            password.into(),
            "--no-auth-warning".into(),
        ];
        let mut redis = Self::start_with(conf, cli, true);
        redis._keep = Some(dir);
        redis
    }

    fn start_with(conf: String, cli_args: Vec<String>, tls: bool) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            conf,
            cli_args,
            tls,
            _keep: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Start again on the same port (after [`Redis::kill`]), empty.
    pub fn restart(&mut self) {
        let config = self.dir.path().join("redis.conf");
        let listen = if self.tls {
            format!("port 0\ntls-port {}\n", self.port)
        } else {
            format!("port {}\n", self.port)
        };
        std::fs::write(
            &config,
            format!(
                "{listen}bind 127.0.0.1\nsave \"\"\nappendonly no\ndaemonize no\n\
                 dir {}\nloglevel warning\n{}",
                self.dir.path().display(),
                self.conf
            ),
        )
        .unwrap();
        // /usr/bin holds it on Debian; a non-root PATH may lack /usr/sbin anyway.
        let child = Command::new("redis-server")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed for this test (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cli -p PORT ARGS…`: its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_args)
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGKILL, this child only.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A listener that accepts and then says nothing (a tarpit), or writes junk to every
/// connection; on a thread, for the life of the test process.
pub fn fake_redis(junk: Option<&'static [u8]>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().take(10_000) {
            let Ok(mut stream) = stream else { continue };
            if let Some(junk) = junk {
                let _ = stream.write_all(junk);
            }
            // Kept open, so a tarpit never closes either; bounded.
            held.push(stream);
            if held.len() > 1000 {
                held.remove(0);
            }
        }
    });
    port
}
