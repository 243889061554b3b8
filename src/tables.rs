//! Netfilter tables and their built-in chains, as the kernel has them and as firewalld's
//! direct interface accepts them.

use std::fmt;

/// The tables our rules use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableName {
    Raw,
    Nat,
    Mangle,
}

impl TableName {
    pub const ALL: [TableName; 3] = [TableName::Raw, TableName::Nat, TableName::Mangle];

    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Raw => "raw",
            TableName::Nat => "nat",
            TableName::Mangle => "mangle",
        }
    }

    /// The table's built-in chains, in the order kumactl renders their rules.
    pub fn builtin_chains(self) -> &'static [&'static str] {
        builtin_chains("ipv4", self.as_str())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tables firewalld accepts for each `ipv` (core/io/direct.py `_check_ipv_table`).
pub fn tables_of(ipv: &str) -> Option<&'static [&'static str]> {
    match ipv {
        "ipv4" | "ipv6" => Some(&["security", "raw", "mangle", "nat", "filter"]),
        "eb" => Some(&["broute", "nat", "filter"]),
        _ => None,
    }
}

/// Built-in chains of each table as the kernel has them (firewalld's own list lacks nat
/// INPUT, which the kernel has too), in the order kumactl renders their rules; none for a
/// table firewalld does not accept.
pub fn builtin_chains(ipv: &str, table: &str) -> &'static [&'static str] {
    match (ipv, table) {
        ("ipv4" | "ipv6", "raw") => &["PREROUTING", "OUTPUT"],
        ("ipv4" | "ipv6", "mangle") => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
        ("ipv4" | "ipv6", "nat") => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
        ("ipv4" | "ipv6", "filter" | "security") => &["INPUT", "FORWARD", "OUTPUT"],
        ("eb", "broute") => &["BROUTING"],
        ("eb", "nat") => &["PREROUTING", "OUTPUT", "POSTROUTING"],
        ("eb", "filter") => &["INPUT", "FORWARD", "OUTPUT"],
        _ => &[],
    }
}
