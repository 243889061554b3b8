//! Address families, and the names each tool gives them.

use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// `IPv4` / `IPv6`, as in kumactl's `### IPv4 ###` headers.
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// firewalld's name for the family: `ipv4` / `ipv6`.
    pub fn ipv(self) -> &'static str {
        match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        }
    }
}
