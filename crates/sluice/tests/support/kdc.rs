//! An MIT Kerberos KDC (`krb5kdc`, Debian `krb5-kdc` and `krb5-admin-server` for
//! `kdb5_util` and `kadmin.local`) with a realm made for the test in a temporary folder,
//! on a free loopback port; killed by PID when dropped. Clients (`kinit`, curl) are run
//! with `KRB5_CONFIG` and `KRB5CCNAME` pointing into that folder.

use std::ffi::OsString;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const REALM: &str = "TEST.REALM";

pub struct Kdc {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Kdc {
    /// A new realm [`REALM`] with its KDC listening (UDP and TCP) on 127.0.0.1.
    pub fn start() -> Kdc {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let port = free_port();
        let d = path.display();
        std::fs::write(
            path.join("krb5.conf"),
            format!(
                "[libdefaults]\n\
                 default_realm = {REALM}\n\
                 dns_lookup_kdc = false\n\
                 dns_lookup_realm = false\n\
                 rdns = false\n\
                 dns_canonicalize_hostname = false\n\
                 udp_preference_limit = 1\n\
                 [realms]\n\
                 {REALM} = {{\n kdc = 127.0.0.1:{port}\n}}\n\
                 [domain_realm]\n\
                 localhost = {REALM}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            path.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n\
                 kdc_listen = 127.0.0.1:{port}\n\
                 kdc_tcp_listen = 127.0.0.1:{port}\n\
                 [realms]\n\
                 {REALM} = {{\n\
                 database_name = {d}/principal\n\
                 key_stash_file = {d}/stash\n\
                 acl_file = {d}/kadm5.acl\n\
                 kdc_listen = 127.0.0.1:{port}\n\
                 kdc_tcp_listen = 127.0.0.1:{port}\n\
                 supported_enctypes = aes256-cts-hmac-sha1-96:normal\n\
                 }}\n\
                 [logging]\n\
                 kdc = FILE:{d}/kdc.log\n"
            ),
        )
        .unwrap();
        std::fs::write(path.join("kadm5.acl"), "").unwrap();
        let mut kdc = Kdc {
            child: Command::new("true").spawn().unwrap(),
            dir,
            port,
        };
        kdc.run(
            "kdb5_util",
            &["create", "-s", "-r", REALM, "-P", "master-secret"],
        );
        kdc.child = Command::new("krb5kdc")
            .args(["-n", "-r", REALM])
            .envs(kdc.env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("krb5kdc (Debian package krb5-kdc)");
        kdc.wait_ready();
        kdc
    }

    /// `KRB5_CONFIG` and `KRB5_KDC_PROFILE` for the realm's tools and clients.
    pub fn env(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("KRB5_CONFIG", self.path("krb5.conf").into()),
            ("KRB5_KDC_PROFILE", self.path("kdc.conf").into()),
        ]
    }

    /// The environment of a client whose credentials are in `ccache`.
    pub fn client_env(&self, ccache: &Path) -> Vec<(&'static str, OsString)> {
        let mut env = self.env();
        env.push(("KRB5CCNAME", format!("FILE:{}", ccache.display()).into()));
        env
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A user principal with a password.
    pub fn add_user(&self, name: &str, password: &str) {
        self.kadmin(&format!("addprinc -pw {password} {name}"));
    }

    /// A service principal with a random key, exported to the keytab `keytab`.
    pub fn add_service(&self, name: &str, keytab: &Path) {
        self.kadmin(&format!("addprinc -randkey {name}"));
        self.kadmin(&format!("ktadd -k {} {name}", keytab.display()));
    }

    /// `kinit` as `principal`: a new credentials cache in the realm's folder, returned.
    pub fn kinit(&self, principal: &str, password: &str) -> PathBuf {
        let ccache = self.path(&format!("ccache-{}", principal.replace('/', "_")));
        let mut child = Command::new("kinit")
            .arg(principal)
            .envs(self.client_env(&ccache))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kinit (Debian package krb5-user)");
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kinit {principal}: {out:?}");
        ccache
    }

    fn kadmin(&self, query: &str) {
        self.run("kadmin.local", &["-r", REALM, "-q", query]);
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let out = Command::new("timeout")
            .arg("30")
            .arg(program)
            .args(args)
            .envs(self.env())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
        out
    }

    /// Until the KDC accepts TCP connections (at most 10 s).
    fn wait_ready(&self) {
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("krb5kdc did not start on port {}", self.port);
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
