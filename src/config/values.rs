//! Typed values parsed from user input. Each parser is used both by the CLI (so a bad
//! flag is reported by its flag name) and by the config-file loader (reported by key).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::family::Family;

/// A TCP/UDP port in 1..=65535.
pub fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!(
            "'{text}' is not a valid port (an integer in 1..65535)"
        )),
    }
}

/// A comma-separated list of ports; empty elements are skipped as kumactl does.
pub fn parse_port_list(text: &str) -> Result<Vec<u16>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(parse_port)
        .collect()
}

/// An IPv4 or IPv6 address with or without a prefix length, kept as the user wrote it
/// (kumactl renders it verbatim; the kernel normalises it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    text: String,
    family: Family,
}

impl Address {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let ip = match text.parse::<IpNet>() {
            Ok(net) => net.addr(),
            Err(_) => text.parse::<IpAddr>().map_err(|_| {
                format!("'{text}' is not an IP address or CIDR (e.g. 10.0.0.1, 172.16.0.0/16, fe80::1, fd00::/8)")
            })?,
        };
        Ok(Self {
            text: text.to_string(),
            family: Family::of(ip),
        })
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Comma-separated addresses, as `--exclude-inbound-ips` and `--exclude-outbound-ips` take them.
pub fn parse_address_list(text: &str) -> Result<Vec<Address>, String> {
    if text.trim().is_empty() {
        return Err("an empty IP exclusion is not allowed".to_string());
    }
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(Address::parse)
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One `[proto:][ports:]uids` exclusion for one protocol, in iptables syntax
/// (`ports` like `53,3000:5000`, `uids` like `106:108`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidExclusion {
    pub protocol: Protocol,
    pub ports: String,
    pub uids: String,
}

/// Parses `--exclude-outbound-ports-for-uids` with kumactl's rules: a missing protocol or
/// `*` means tcp and udp, missing or `*` ports mean 1-65535, UIDs are one value or a range.
pub fn parse_uid_exclusion(text: &str) -> Result<Vec<UidExclusion>, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (protocols, ports, uids) = match parts.as_slice() {
        [uids] => ("*", "*", *uids),
        [ports, uids] => ("*", *ports, *uids),
        [protocols, ports, uids] => (*protocols, *ports, *uids),
        _ => {
            return Err(format!(
                "'{text}' is not a valid exclusion (expected [protocol:][ports:]uids, e.g. tcp:53,3000-5000:106-108)"
            ))
        }
    };
    if uids == "*" {
        return Err(format!(
            "'{text}': the wildcard '*' is not allowed for UIDs"
        ));
    }
    if uids.contains(',') {
        return Err(format!(
            "'{text}': UIDs must be a single value or a range, not a list"
        ));
    }
    // 4294967295 is (uid_t)-1, "no UID" to the kernel: iptables' owner match rejects it.
    let uids = parse_ranges(uids, "UID", |v| {
        v.parse::<u32>().is_ok_and(|u| u != u32::MAX)
    })
    .map_err(|e| format!("'{text}': {e} (UIDs are 0 to 4294967294)"))?;
    let ports = if ports == "*" || ports.is_empty() {
        "1:65535".to_string()
    } else {
        parse_ranges(ports, "port", |v| parse_port(v).is_ok())
            .map_err(|e| format!("'{text}': {e}"))?
    };
    let protocols: Vec<Protocol> = if protocols.is_empty() || protocols == "*" {
        vec![Protocol::Tcp, Protocol::Udp]
    } else {
        protocols
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.trim().to_ascii_lowercase().as_str() {
                "tcp" => Ok(Protocol::Tcp),
                "udp" => Ok(Protocol::Udp),
                other => Err(format!(
                    "'{text}': unknown protocol '{other}' (expected tcp, udp or *)"
                )),
            })
            .collect::<Result<_, _>>()?
    };
    Ok(protocols
        .into_iter()
        .map(|protocol| UidExclusion {
            protocol,
            ports: ports.clone(),
            uids: uids.clone(),
        })
        .collect())
}

/// Validates `a,b-c,...` and returns it in iptables syntax (`a,b:c`).
fn parse_ranges(text: &str, what: &str, valid: impl Fn(&str) -> bool) -> Result<String, String> {
    let mut out = Vec::new();
    for element in text.split(',').filter(|e| !e.trim().is_empty()) {
        let bounds: Vec<&str> = element.trim().split('-').collect();
        if bounds.len() > 2 || bounds.iter().any(|b| !valid(b)) {
            return Err(format!("'{element}' is not a valid {what} or {what} range"));
        }
        if let [low, high] = bounds.as_slice() {
            if low.parse::<u32>().ok() > high.parse::<u32>().ok() {
                return Err(format!("{what} range '{element}' is reversed"));
            }
        }
        out.push(bounds.join(":"));
    }
    if out.is_empty() {
        return Err(format!("no {what} given"));
    }
    Ok(out.join(","))
}

/// `--vnet IFACE:CIDR`: an interface name (iptables `+` wildcard allowed) and its network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualNetwork {
    pub interface: String,
    pub cidr: String,
    pub family: Family,
}

pub fn parse_vnet(text: &str) -> Result<VirtualNetwork, String> {
    let Some((interface, cidr)) = text.split_once(':') else {
        return Err(format!(
            "'{text}' is not a valid virtual network (expected IFACE:CIDR, e.g. docker0:172.17.0.0/16)"
        ));
    };
    let name_ok = !interface.is_empty()
        && interface.len() <= 15
        && interface
            .trim_end_matches('+')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if !name_ok {
        return Err(format!(
            "'{text}': '{interface}' is not a valid interface name (at most 15 of A-Z a-z 0-9 - _ . @, optionally ending in +)"
        ));
    }
    let net: IpNet = cidr
        .parse()
        .map_err(|_| format!("'{text}': '{cidr}' is not a CIDR (e.g. 172.17.0.0/16)"))?;
    Ok(VirtualNetwork {
        interface: interface.to_string(),
        cidr: cidr.to_string(),
        family: Family::of(net.addr()),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IpFamilyMode {
    #[default]
    DualStack,
    Ipv4,
}

impl IpFamilyMode {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "dualstack" | "" => Ok(Self::DualStack),
            "ipv4" => Ok(Self::Ipv4),
            _ => Err(format!("'{text}' must be one of 'dualstack' or 'ipv4'")),
        }
    }
}

impl fmt::Display for IpFamilyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DualStack => "dualstack",
            Self::Ipv4 => "ipv4",
        })
    }
}

/// A Go-style duration (`2s`, `500ms`, `1m30s`), as kumactl's `--sleep-between-retries` takes.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration (e.g. 2s, 500ms, 1m30s)");
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += Duration::try_from_secs_f64(value * seconds_per_unit).map_err(|_| bad())?;
    }
    if total > Duration::from_secs(3600) {
        return Err(format!("'{text}' is longer than the 1h this tool accepts"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_reject_zero_and_overflow() {
        assert_eq!(parse_port_list("22, 80,,443"), Ok(vec![22, 80, 443]));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("-1").is_err());
        assert!(parse_port("22 -j ACCEPT").is_err());
    }

    #[test]
    fn uid_exclusions_follow_kumactl() {
        let parsed = parse_uid_exclusion("53,3000-5000:106-108").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].protocol, Protocol::Tcp);
        assert_eq!(parsed[0].ports, "53,3000:5000");
        assert_eq!(parsed[1].uids, "106:108");
        let only_uid = parse_uid_exclusion("123").unwrap();
        assert_eq!(only_uid[0].ports, "1:65535");
        assert_eq!(parse_uid_exclusion("tcp:*:0").unwrap().len(), 1);
        for bad in [
            "a3000-5000:1",
            "http:3000-5000:1",
            "3000-5000:1:*",
            "3000-5000:1:1,2,3",
            "tcp,http:1:1",
            "1:2:3:4",
            "tcp:5000-3000:1",
            "22:4294967295",
            "0-4294967295",
        ] {
            assert!(
                parse_uid_exclusion(bad).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn addresses_keep_their_text_and_family() {
        let list = parse_address_list("10.0.0.1, 172.32.16.8/16,fe80::1").unwrap();
        assert_eq!(list[1].as_str(), "172.32.16.8/16");
        assert_eq!(list[2].family(), Family::V6);
        assert!(parse_address_list("10.0.0.300").is_err());
        assert!(parse_address_list("10.0.0.1 -j DROP").is_err());
        assert!(parse_address_list("").is_err());
    }

    #[test]
    fn vnets_split_on_the_first_colon() {
        let v6 = parse_vnet("iface:::1/64").unwrap();
        assert_eq!(
            (v6.interface.as_str(), v6.cidr.as_str()),
            ("iface", "::1/64")
        );
        assert_eq!(v6.family, Family::V6);
        assert_eq!(parse_vnet("br+:172.18.0.0/16").unwrap().interface, "br+");
        assert!(parse_vnet("docker0").is_err());
        assert!(parse_vnet("docker0:172.17.0.1").is_err());
        assert!(parse_vnet("bad name:10.0.0.0/8").is_err());
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("2").is_err());
        assert!(parse_duration("s").is_err());
    }
}
