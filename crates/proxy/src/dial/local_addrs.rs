//! sluice's own listening sockets, for loop detection (SPEC §9): a CONNECT or request
//! to any of them is answered 508 instead of being relayed back into the proxy.

use std::net::{IpAddr, SocketAddr};

#[derive(Clone, Debug, Default)]
pub struct LocalAddrs {
    listeners: Vec<SocketAddr>,
    /// Addresses of this machine's interfaces: a wildcard listener answers on each.
    interface_ips: Vec<IpAddr>,
}

impl LocalAddrs {
    pub fn new(listeners: Vec<SocketAddr>) -> Self {
        let interface_ips = match nix::ifaddrs::getifaddrs() {
            Ok(addrs) => addrs
                .filter_map(|a| a.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                })
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list interface addresses; loop detection covers loopback only");
                Vec::new()
            }
        };
        LocalAddrs {
            listeners,
            interface_ips,
        }
    }

    /// Would a connection to `dest` reach one of our own listeners?
    pub fn is_own(&self, dest: SocketAddr) -> bool {
        let ip = canonical(dest.ip());
        self.listeners.iter().any(|listener| {
            listener.port() == dest.port()
                && (canonical(listener.ip()) == ip
                    || ip.is_unspecified()
                    || (listener.ip().is_unspecified() && self.is_this_machine(ip)))
        })
    }

    fn is_this_machine(&self, ip: IpAddr) -> bool {
        ip.is_loopback() || self.interface_ips.iter().any(|own| canonical(*own) == ip)
    }
}

/// `::ffff:127.0.0.1` and `127.0.0.1` are the same destination.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_specific_listener_matches_only_its_own_address_and_port() {
        let local = LocalAddrs::new(vec![addr("127.0.0.1:3128")]);
        assert!(local.is_own(addr("127.0.0.1:3128")));
        assert!(local.is_own(addr("[::ffff:127.0.0.1]:3128")));
        assert!(local.is_own(addr("0.0.0.0:3128")));
        assert!(!local.is_own(addr("127.0.0.1:443")));
        assert!(!local.is_own(addr("127.0.0.2:3128")));
    }

    #[test]
    fn a_wildcard_listener_matches_every_local_address() {
        let local = LocalAddrs::new(vec![addr("0.0.0.0:3128")]);
        assert!(local.is_own(addr("127.0.0.1:3128")));
        assert!(local.is_own(addr("127.5.6.7:3128")));
        assert!(local.is_own(addr("[::1]:3128")));
        assert!(!local.is_own(addr("192.0.2.1:3128")));
    }
}
