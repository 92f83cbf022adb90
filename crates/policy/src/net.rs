//! Address and port conditions: `clients` and `ips` (CIDRs or single addresses) and
//! `ports` (numbers or `"8000-8100"` ranges).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;

use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Parse `10.0.0.0/8`, `2001:db8::/32` or a single address (a /32 or /128).
pub(crate) fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("invalid address or CIDR `{text}`"))
}

/// Address ranges; a match is any range containing the address. The default is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpSet(Vec<IpNet>);

impl IpSet {
    pub(crate) fn new(nets: Vec<IpNet>) -> Self {
        IpSet(nets)
    }

    /// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as seen on dual-stack sockets)
    /// are compared as the IPv4 address they carry.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

/// Whether `proxy.deny_destinations` (`deny`) forbids dialling `ip` (SPEC §3
/// Destinations). An IPv4-mapped address is its IPv4 address, and `::`, which reaches
/// this host just as `0.0.0.0` does, is checked as `0.0.0.0`.
pub fn destination_denied(deny: &IpSet, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        other => other,
    };
    deny.contains(ip)
}

/// A `ports` entry as written: TOML lets an array mix integers and strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortValue {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for PortValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a range string like \"8000-8100\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortValue, E> {
                Ok(PortValue::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortValue, E> {
                Ok(PortValue::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortValue, E> {
                Ok(PortValue::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// Check that `n` is a usable port (1..=65535).
pub(crate) fn port_number(n: i64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("port {n} is out of range 1-65535")),
    }
}

/// Parse one `ports` entry into an inclusive range.
pub(crate) fn parse_ports(value: &PortValue) -> Result<RangeInclusive<u16>, String> {
    match value {
        PortValue::Number(n) => port_number(*n).map(|p| p..=p),
        PortValue::Text(text) => {
            let bad = || format!("invalid port range `{text}`, expected like \"8000-8100\"");
            let (low, high) = text.split_once('-').unwrap_or((text, text));
            let low = port_text(low).ok_or_else(bad)?;
            let high = port_text(high).ok_or_else(bad)?;
            if low > high {
                return Err(format!(
                    "invalid port range `{text}`: {low} is greater than {high}"
                ));
            }
            Ok(low..=high)
        }
    }
}

fn port_text(text: &str) -> Option<u16> {
    text.trim().parse::<u16>().ok().filter(|&p| p != 0)
}

/// Port ranges; a match is any range containing the port.
#[derive(Clone, Debug)]
pub(crate) struct PortSet(Vec<RangeInclusive<u16>>);

impl PortSet {
    pub(crate) fn new(ranges: Vec<RangeInclusive<u16>>) -> Self {
        PortSet(ranges)
    }

    pub(crate) fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|range| range.contains(&port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn nets_parse_from_cidrs_and_single_addresses() {
        let set = IpSet::new(
            [
                "10.0.0.0/8",
                "192.168.1.7",
                "2001:db8::/32",
                "::1",
                " 172.16.5.9/12 ",
            ]
            .iter()
            .map(|t| parse_net(t).unwrap())
            .collect(),
        );
        assert!(set.contains(ip("10.200.3.4")));
        assert!(!set.contains(ip("11.0.0.1")));
        assert!(set.contains(ip("192.168.1.7")));
        assert!(!set.contains(ip("192.168.1.8")));
        assert!(set.contains(ip("2001:db8:ffff::1")));
        assert!(!set.contains(ip("2001:db9::1")));
        assert!(set.contains(ip("::1")));
        // Host bits in a CIDR are dropped: 172.16.5.9/12 is 172.16.0.0/12.
        assert!(set.contains(ip("172.31.255.255")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_ranges() {
        let set = IpSet::new(vec![parse_net("10.0.0.0/8").unwrap()]);
        assert!(set.contains(ip("::ffff:10.1.2.3")));
        assert!(!set.contains(ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn default_denied_destinations_hold_under_every_spelling() {
        let deny = IpSet::new(
            [
                "127.0.0.0/8",
                "::1/128",
                "169.254.0.0/16",
                "fe80::/10",
                "0.0.0.0/8",
            ]
            .iter()
            .map(|t| parse_net(t).unwrap())
            .collect(),
        );
        for denied in [
            "127.0.0.1",
            "127.255.0.9",
            "::ffff:127.0.0.1",
            "::1",
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fe80::1",
            "febf::1",
            "0.0.0.0",
            "::",
            "::ffff:0.0.0.0",
        ] {
            assert!(destination_denied(&deny, ip(denied)), "{denied}");
        }
        for allowed in [
            "10.0.0.1",
            "128.0.0.1",
            "::2",
            "fec0::1",
            "2001:db8::1",
            "1.0.0.0",
        ] {
            assert!(!destination_denied(&deny, ip(allowed)), "{allowed}");
        }
        assert!(!destination_denied(&IpSet::new(vec![]), ip("127.0.0.1")));
    }

    #[test]
    fn bad_nets_are_rejected() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0",
            "example.com",
            "",
            "::1/129",
            "10.0.0.1/",
        ] {
            assert!(parse_net(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_net("10.0.0.0/33").unwrap_err(),
            "invalid address or CIDR `10.0.0.0/33`"
        );
    }

    #[test]
    fn ports_parse_numbers_and_ranges() {
        assert_eq!(parse_ports(&PortValue::Number(443)).unwrap(), 443..=443);
        assert_eq!(
            parse_ports(&PortValue::Text("8000-8100".into())).unwrap(),
            8000..=8100
        );
        assert_eq!(
            parse_ports(&PortValue::Text(" 8000 - 8100 ".into())).unwrap(),
            8000..=8100
        );
        assert_eq!(
            parse_ports(&PortValue::Text("8443".into())).unwrap(),
            8443..=8443
        );
        let set = PortSet::new(vec![443..=443, 8000..=8100]);
        assert!(set.contains(443));
        assert!(set.contains(8000));
        assert!(set.contains(8100));
        assert!(!set.contains(8101));
        assert!(!set.contains(80));
    }

    #[test]
    fn bad_ports_are_rejected() {
        for bad in [0, -1, 65536] {
            assert!(parse_ports(&PortValue::Number(bad)).is_err(), "{bad}");
        }
        for bad in [
            "",
            "0-10",
            "10-",
            "-10",
            "a-b",
            "1-2-3",
            "8100-8000",
            "1-70000",
        ] {
            assert!(parse_ports(&PortValue::Text(bad.into())).is_err(), "{bad}");
        }
        assert_eq!(
            parse_ports(&PortValue::Text("8100-8000".into())).unwrap_err(),
            "invalid port range `8100-8000`: 8100 is greater than 8000"
        );
    }
}
