//! OpenLDAP `slapd` (Debian `slapd`, `ldap-utils`) with a test directory of users, groups
//! and a nested group, on loopback ports; killed by PID when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::certs::Leaf;

pub const SUFFIX: &str = "dc=corp,dc=example";

/// The test directory: alice (in Finance, itself in the nested all-staff) and bob (a
/// uniqueMember of contractors); the service account is the root DN.
pub const DIRECTORY: &str = "\
dn: dc=corp,dc=example
objectClass: dcObject
objectClass: organization
o: Corp
dc: corp

dn: ou=people,dc=corp,dc=example
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=corp,dc=example
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: Liddell
userPassword: wonderland

dn: uid=bob,ou=people,dc=corp,dc=example
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Builder
userPassword: canwefixit

dn: ou=groups,dc=corp,dc=example
objectClass: organizationalUnit
ou: groups

dn: cn=Finance,ou=groups,dc=corp,dc=example
objectClass: groupOfNames
cn: Finance
member: uid=alice,ou=people,dc=corp,dc=example

dn: cn=contractors,ou=groups,dc=corp,dc=example
objectClass: groupOfUniqueNames
cn: contractors
uniqueMember: uid=bob,ou=people,dc=corp,dc=example

dn: cn=all-staff,ou=groups,dc=corp,dc=example
objectClass: groupOfNames
cn: all-staff
member: cn=Finance,ou=groups,dc=corp,dc=example
";

/// `slapd` on a loopback port (`ldap://`, StartTLS when it has a certificate) and, with a
/// certificate, another (`ldaps://`); killed by PID when dropped.
pub struct Slapd {
    child: Child,
    pub port: u16,
    pub tls_port: u16,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Slapd {
    pub fn start() -> Slapd {
        Slapd::start_with(None)
    }

    /// With `leaf` (a certificate for localhost): StartTLS and ldaps too.
    pub fn start_with(leaf: Option<&Leaf>) -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::create_dir(path.join("db")).unwrap();
        let mut tls = String::new();
        if let Some(leaf) = leaf {
            std::fs::write(path.join("cert.pem"), &leaf.cert_pem).unwrap();
            std::fs::write(path.join("key.pem"), &leaf.key_pem).unwrap();
            tls = format!(
                "TLSCertificateFile {dir}/cert.pem\nTLSCertificateKeyFile {dir}/key.pem\n",
                dir = path.display()
            );
        }
        let conf = format!(
            "{tls}\
             include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             pidfile {dir}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             database mdb\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"cn=admin,{SUFFIX}\"\n\
             rootpw service-secret\n\
             directory {dir}/db\n",
            dir = path.display()
        );
        std::fs::write(path.join("slapd.conf"), conf).unwrap();
        std::fs::write(path.join("directory.ldif"), DIRECTORY).unwrap();
        let added = Command::new("slapadd")
            .args(["-f", "slapd.conf", "-l", "directory.ldif"])
            .current_dir(path)
            .output()
            .expect("slapadd (Debian package slapd)");
        assert!(added.status.success(), "{added:?}");
        let (port, tls_port) = (free_port(), free_port());
        let mut urls = format!("ldap://127.0.0.1:{port}/");
        if leaf.is_some() {
            urls += &format!(" ldaps://127.0.0.1:{tls_port}/");
        }
        // `-d stats`: in the foreground, one line per operation (`BIND dn=…`, `SRCH
        // base=…`) on stderr, kept in `slapd.log` for tests that count operations.
        let log = std::fs::File::create(path.join("slapd.log")).unwrap();
        let child = Command::new("slapd")
            .args(["-f", "slapd.conf", "-d", "stats", "-h", &urls])
            .current_dir(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("slapd");
        let slapd = Slapd {
            child,
            port,
            tls_port,
            dir,
        };
        slapd.wait_ready();
        slapd
    }

    /// Until an anonymous search of the root answers (at most 10 s).
    fn wait_ready(&self) {
        for _ in 0..100 {
            let search = Command::new("ldapsearch")
                .args(["-x", "-H", &self.url(), "-b", SUFFIX, "-s", "base", "1.1"])
                .output()
                .expect("ldapsearch (Debian package ldap-utils)");
            if search.status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("slapd did not start on port {}", self.port);
    }

    /// The operations the directory has logged so far whose line contains `what`
    /// (`" method=128"`: a simple bind; `"SRCH base="`: a search).
    pub fn operations(&self, what: &str) -> usize {
        std::fs::read_to_string(self.dir.path().join("slapd.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what))
            .count()
    }

    /// Add the entries of `ldif` as the service account (the root DN).
    pub fn add(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new("timeout")
            .args(["10", "ldapadd", "-x", "-H", &self.url()])
            .args(["-D", &format!("cn=admin,{SUFFIX}"), "-w", "service-secret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ldapadd (Debian package ldap-utils)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "ldapadd: {out:?}");
    }

    /// Stop answering (SIGSTOP) until [`resume`](Self::resume): the kernel still
    /// completes TCP handshakes on its port, but no operation is answered.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{name} slapd");
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
