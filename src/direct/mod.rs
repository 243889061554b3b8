//! firewalld's direct configuration as a pure value: chains, rules with priorities and
//! passthroughs, exactly as firewalld exchanges them over D-Bus and stores them in
//! `direct.xml`. Foreign entries (`eb`, `filter`, other tools' chains) are kept as they are,
//! so `ipv` and `table` stay strings. [`translate`] turns our rule model into entries;
//! [`diff`] computes the difference a backend applies.

mod check;
mod diff;
mod translate;

pub use check::{
    check, is_builtin, is_target, kernel_order, restore_check, ChainOrder, Problem, RestoreCheck,
    Subject,
};
pub use diff::{counts, diff, Change, Diff};
pub use translate::{fresh_priorities, replay, translate};

use crate::ownership::{is_ours, is_owned_chain, jump_targets, COMMENT_PREFIX};

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectChain {
    pub ipv: String,
    pub table: String,
    pub chain: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirectRule {
    pub ipv: String,
    pub table: String,
    pub chain: String,
    pub priority: i32,
    pub args: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Passthrough {
    pub ipv: String,
    pub args: Vec<String>,
}

/// One direct configuration: runtime, permanent, a file, or what we want.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectConfig {
    pub chains: Vec<DirectChain>,
    pub rules: Vec<DirectRule>,
    pub passthroughs: Vec<Passthrough>,
}

/// True when `args` carry our comment, whatever else they do.
fn has_our_comment(args: &[String]) -> bool {
    args.iter().any(|arg| arg.starts_with(COMMENT_PREFIX))
}

impl DirectChain {
    pub fn is_owned(&self) -> bool {
        self.ipv != "eb" && is_owned_chain(&self.chain)
    }
}

impl DirectRule {
    /// Ours: inside a `KUMA_MESH_*` chain, carrying our comment, or jumping into our chain.
    pub fn is_owned(&self) -> bool {
        self.ipv != "eb"
            && is_ours(
                &self.chain,
                |text| self.args.iter().any(|arg| arg.starts_with(text)),
                jump_targets(&self.args).flatten(),
            )
    }
}

impl Passthrough {
    pub fn is_owned(&self) -> bool {
        self.ipv != "eb" && has_our_comment(&self.args)
    }
}

impl DirectConfig {
    /// Only the entries we own.
    pub fn owned(&self) -> DirectConfig {
        DirectConfig {
            chains: self
                .chains
                .iter()
                .filter(|c| c.is_owned())
                .cloned()
                .collect(),
            rules: self
                .rules
                .iter()
                .filter(|r| r.is_owned())
                .cloned()
                .collect(),
            passthroughs: self
                .passthroughs
                .iter()
                .filter(|p| p.is_owned())
                .cloned()
                .collect(),
        }
    }

    /// Everything we do not own, in its original order.
    pub fn foreign(&self) -> DirectConfig {
        DirectConfig {
            chains: self
                .chains
                .iter()
                .filter(|c| !c.is_owned())
                .cloned()
                .collect(),
            rules: self
                .rules
                .iter()
                .filter(|r| !r.is_owned())
                .cloned()
                .collect(),
            passthroughs: self
                .passthroughs
                .iter()
                .filter(|p| !p.is_owned())
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty() && self.rules.is_empty() && self.passthroughs.is_empty()
    }
}

/// Short constructors for unit tests.
#[cfg(test)]
pub(crate) mod test_entries {
    use super::{DirectChain, DirectRule, Passthrough};

    pub fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    pub fn chain(ipv: &str, table: &str, name: &str) -> DirectChain {
        DirectChain {
            ipv: ipv.into(),
            table: table.into(),
            chain: name.into(),
        }
    }

    pub fn rule(ipv: &str, table: &str, chain: &str, priority: i32, args: &[&str]) -> DirectRule {
        DirectRule {
            ipv: ipv.into(),
            table: table.into(),
            chain: chain.into(),
            priority,
            args: strings(args),
        }
    }

    pub fn passthrough(ipv: &str, args: &[&str]) -> Passthrough {
        Passthrough {
            ipv: ipv.into(),
            args: strings(args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(ipv: &str, chain: &str, args: &[&str]) -> DirectRule {
        DirectRule {
            ipv: ipv.into(),
            table: "nat".into(),
            chain: chain.into(),
            priority: 0,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn ownership_follows_chain_or_comment() {
        assert!(rule("ipv4", "KUMA_MESH_OUTBOUND", &["-j", "RETURN"]).is_owned());
        assert!(rule(
            "ipv6",
            "OUTPUT",
            &[
                "-m",
                "comment",
                "--comment",
                "kuma/mesh/transparent/proxy/x"
            ]
        )
        .is_owned());
        assert!(rule("ipv4", "OUTPUT", &["-p", "tcp", "-j", "KUMA_MESH_OUTBOUND"]).is_owned());
        assert!(!rule("ipv4", "OUTPUT", &["-j", "KUMA_OTHER"]).is_owned());
        assert!(!rule("ipv4", "KUMA_MESHY", &["-j", "RETURN"]).is_owned());
        assert!(!rule("eb", "KUMA_MESH_OUTBOUND", &["-j", "RETURN"]).is_owned());
    }
}
