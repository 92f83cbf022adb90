//! Name resolution for CONNECT and plain HTTP, in the order of the usual `hosts: files
//! dns`: the hosts file first (re-read when it changes), then DNS with the servers and
//! search domains of `/etc/resolv.conf`, answers cached for their TTL (hickory).
//!
//! Resolving on the runtime instead of calling `getaddrinfo` on a blocking thread saves
//! a thread hand-off per connection, and the cache saves a query per connection to a
//! popular name, as Squid's ipcache does. `resolv.conf` is read when a configuration
//! generation starts (at start and at each reload); when it cannot be read, sluice falls
//! back to the system resolver (`getaddrinfo`) and says so.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hickory_resolver::config::ResolveHosts;
use hickory_resolver::TokioResolver;
use tokio::time::Instant;

/// DNS answers kept in the cache (each for its TTL).
const DNS_CACHE_ENTRIES: usize = 10_000;

/// How often, at most, the hosts file is checked for changes.
const HOSTS_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Why a name has no address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// The name does not exist or has no address record.
    #[error("no such name, or no address for it")]
    NoAddress,
    /// The lookup itself failed (no answer from the servers, a malformed name).
    #[error("{0}")]
    Failed(String),
}

/// One per configuration generation; shared by every connection.
pub struct Resolver {
    hosts: HostsFile,
    dns: Dns,
}

enum Dns {
    Hickory(Box<TokioResolver>),
    /// `/etc/resolv.conf` could not be read: the system's `getaddrinfo`.
    System,
}

impl Resolver {
    /// The hosts file at `hosts_path` (`proxy.hosts_file`), then the DNS servers of
    /// resolv.conf.
    pub fn new(hosts_path: &Path) -> Self {
        let dns = match TokioResolver::builder_tokio() {
            Ok(mut builder) => {
                let options = builder.options_mut();
                // The hosts file is ours to read (and to re-read when it changes).
                options.use_hosts_file = ResolveHosts::Never;
                options.cache_size = DNS_CACHE_ENTRIES;
                Dns::Hickory(Box::new(builder.build()))
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the DNS configuration (/etc/resolv.conf); names are resolved by the system resolver, uncached");
                Dns::System
            }
        };
        Resolver {
            hosts: HostsFile::new(hosts_path.to_path_buf()),
            dns,
        }
    }

    /// The addresses of `host` (a DNS name, not an IP literal), in the order to try.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        if let Some(addrs) = self.hosts.lookup(host) {
            return Ok(addrs);
        }
        let addrs: Vec<IpAddr> = match &self.dns {
            Dns::Hickory(resolver) => match resolver.lookup_ip(host).await {
                Ok(found) => found.iter().collect(),
                Err(e) if e.is_nx_domain() || e.is_no_records_found() => Vec::new(),
                Err(e) => return Err(ResolveError::Failed(e.to_string())),
            },
            Dns::System => tokio::net::lookup_host((host, 0))
                .await
                .map_err(|e| ResolveError::Failed(e.to_string()))?
                .map(|addr| addr.ip())
                .collect(),
        };
        if addrs.is_empty() {
            return Err(ResolveError::NoAddress);
        }
        Ok(addrs)
    }
}

/// The hosts file, parsed, and re-parsed when its modification time or size changes
/// (checked at most once per [`HOSTS_CHECK_INTERVAL`], on a lookup).
struct HostsFile {
    path: PathBuf,
    table: ArcSwap<HostsTable>,
    /// When the file was last checked, and what it looked like then.
    checked: Mutex<(Instant, Option<FileStamp>)>,
}

type FileStamp = (SystemTime, u64);

/// Lowercase names without a trailing dot → addresses in file order.
type HostsTable = HashMap<String, Vec<IpAddr>>;

impl HostsFile {
    fn new(path: PathBuf) -> Self {
        let stamp = stamp_of(&path);
        let table = read_hosts(&path);
        HostsFile {
            path,
            table: ArcSwap::from_pointee(table),
            checked: Mutex::new((Instant::now(), stamp)),
        }
    }

    fn lookup(&self, host: &str) -> Option<Vec<IpAddr>> {
        self.refresh_if_changed();
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        self.table.load().get(&name).cloned()
    }

    fn refresh_if_changed(&self) {
        // Another task checking right now is as good as checking.
        let Ok(mut checked) = self.checked.try_lock() else {
            return;
        };
        if checked.0.elapsed() < HOSTS_CHECK_INTERVAL {
            return;
        }
        checked.0 = Instant::now();
        let stamp = stamp_of(&self.path);
        if stamp != checked.1 {
            checked.1 = stamp;
            self.table.store(Arc::new(read_hosts(&self.path)));
        }
    }
}

fn stamp_of(path: &std::path::Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_hosts(path: &std::path::Path) -> HostsTable {
    // A missing or unreadable hosts file is an empty one, as for getaddrinfo.
    parse_hosts(&std::fs::read_to_string(path).unwrap_or_default())
}

/// `address name [alias…]` per line, `#` to the end of a line is a comment; lines whose
/// address does not parse (scoped IPv6, garbage) are skipped.
fn parse_hosts(text: &str) -> HostsTable {
    let mut table = HostsTable::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_ascii_whitespace();
        let Some(Ok(address)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        for name in fields {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let addresses = table.entry(name).or_default();
            if !addresses.contains(&address) {
                addresses.push(address);
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_lines_give_names_and_aliases_their_addresses_in_file_order() {
        let table = parse_hosts(
            "# comment\n127.0.0.1 localhost\n\n10.0.0.1\tApp.Example. app # the app\n\
             ::1 localhost ip6-localhost\nfe80::1%eth0 scoped\nnot-an-ip name\n10.0.0.2 app\n",
        );
        assert_eq!(table["localhost"], vec![ip("127.0.0.1"), ip("::1")]);
        assert_eq!(table["app.example"], vec![ip("10.0.0.1")]);
        assert_eq!(table["app"], vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        assert_eq!(table["ip6-localhost"], vec![ip("::1")]);
        assert!(!table.contains_key("scoped"));
        assert!(!table.contains_key("name"));
        assert!(!table.contains_key("comment"));
    }

    #[test]
    fn a_changed_hosts_file_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "10.0.0.1 app.example\n").unwrap();
        let hosts = HostsFile::new(path.clone());
        assert_eq!(hosts.lookup("APP.example."), Some(vec![ip("10.0.0.1")]));
        // A different size is a change even within the file system's time resolution.
        std::fs::write(&path, "10.0.0.22 app.example\n").unwrap();
        hosts.checked.lock().unwrap().0 = Instant::now() - HOSTS_CHECK_INTERVAL;
        assert_eq!(hosts.lookup("app.example"), Some(vec![ip("10.0.0.22")]));
        assert_eq!(hosts.lookup("other.example"), None);
    }

    #[tokio::test]
    async fn special_names_resolve_without_a_server() {
        let resolver = Resolver::new(std::path::Path::new("/etc/hosts"));
        assert_eq!(
            resolver.lookup("no-such-host.invalid").await,
            Err(ResolveError::NoAddress)
        );
        let localhost = resolver.lookup("localhost").await.unwrap();
        assert!(localhost.iter().all(IpAddr::is_loopback), "{localhost:?}");
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(text in "\\PC{0,400}") {
            let _ = parse_hosts(&text);
        }
    }
}
