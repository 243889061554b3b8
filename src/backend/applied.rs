//! What the raw backend's last verified change left in one family's tables, recorded in /run
//! (emptied at boot, like the tables) so that a re-run asking for the same rules can see they
//! are in place and change nothing, instead of deleting and re-adding them.
//!
//! The tables hold rules in their own form (nf_tables' expressions; iptables-save's lines with
//! `-p tcp` first, `/32` added, ...), not the one we write them in, so the rules asked for
//! cannot be compared with the tables directly. The record holds both: the script that would
//! create our rules from nothing, and the tables as read right after that script was applied
//! and verified (from nf_tables directly, or from iptables-save for legacy). A re-run matches
//! only if it asks for the same script, in the same network namespace with the same iptables,
//! and the tables still hold, byte for byte, every chain of ours and every chain holding a rule
//! of ours (foreign rules in those chains included). Anything else, a missing or damaged record
//! among it, means planning and applying as usual: a record can save work, never change an
//! outcome.

use std::path::PathBuf;

use super::iptables::ObservedTable;
use super::xtables::Xtables;
use crate::family::Family;
use crate::ownership::is_owned_chain;

/// The record of one family: what it must hold for the family to count as already done.
pub struct Record {
    path: PathBuf,
    text: String,
}

impl Record {
    /// The record a converge of `xtables` to `script` (our rules from nothing) would leave
    /// with the tables as `saved`. None when the network namespace cannot be named.
    pub fn new(xtables: &Xtables, script: &str, tables: &[ObservedTable]) -> Option<Self> {
        let text = format!("{}{script}{}", header(xtables)?, trailer(tables));
        Some(Self {
            path: path_for(xtables.family),
            text,
        })
    }

    /// True when the stored record is this one.
    pub fn is_stored(&self) -> bool {
        std::fs::read(&self.path).is_ok_and(|stored| stored == self.text.as_bytes())
    }

    /// Stores the record, replacing any other atomically. A record that cannot be written
    /// only costs the next run its shortcut, so the error is the caller's to ignore.
    pub fn store(&self) -> anyhow::Result<()> {
        crate::system::fs::replace(
            &self.path,
            ".tproxy-firewalld.applied.",
            self.text.as_bytes(),
            0o600,
        )
    }
}

/// The script of the change recorded for `xtables`, when the tables, as `tables`, still hold
/// exactly what it left (whatever it was asked for).
pub fn recorded_script(xtables: &Xtables, tables: &[ObservedTable]) -> Option<String> {
    let stored = std::fs::read_to_string(path_for(xtables.family)).ok()?;
    let script = stored
        .strip_prefix(&header(xtables)?)?
        .strip_suffix(&trailer(tables))?;
    Some(script.to_string())
}

/// What a record starts with: this network namespace and this iptables. None when the
/// namespace cannot be named.
fn header(xtables: &Xtables) -> Option<String> {
    let namespace = std::fs::read_link("/proc/self/ns/net").ok()?;
    Some(format!(
        "tproxy-firewalld applied rules, version 2\nnetwork namespace {}\n{} {}\n",
        namespace.display(),
        xtables.save.display(),
        xtables.mode.label(),
    ))
}

/// What a record ends with: the tables' footprint.
fn trailer(tables: &[ObservedTable]) -> String {
    format!("--\n{}", footprint(tables))
}

/// True when a record for `family` exists, whatever it says: a run of ours changed this
/// family's tables since /run was last emptied (at boot) and did not remove its rules since.
pub fn is_recorded(family: Family) -> bool {
    path_for(family).exists()
}

/// Forgets what was recorded for `xtables` (after a change that removed all our rules).
pub fn forget(xtables: &Xtables) {
    // Nothing there is the usual case; any other failure leaves a record that cannot match
    // tables without our rules.
    let _ = std::fs::remove_file(path_for(xtables.family));
}

fn path_for(family: Family) -> PathBuf {
    PathBuf::from(format!(
        "/run/tproxy-firewalld.{}.applied",
        family.label().to_ascii_lowercase()
    ))
}

/// Every chain of ours and every chain holding a rule of ours, with all their rules, in the
/// order they were read.
fn footprint(tables: &[ObservedTable]) -> String {
    let mut out = String::new();
    for table in tables {
        let holding: Vec<&String> = table
            .chains
            .iter()
            .filter(|chain| {
                is_owned_chain(chain) || table.rules.iter().any(|r| &r.chain == *chain && r.owned)
            })
            .collect();
        if holding.is_empty() {
            continue;
        }
        out.push_str(&format!("*{}\n", table.name));
        for chain in holding {
            out.push_str(&format!(":{chain}\n"));
            for rule in table.rules.iter().filter(|r| &r.chain == chain) {
                out.push_str(&rule.text);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::iptables::observed;
    use crate::format::restore::parse_save;

    fn footprint_of(saved: &str) -> String {
        footprint(&observed(&parse_save(saved).unwrap()))
    }

    const SAVED: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:FOREIGN - [0:0]\n\
        :KUMA_MESH_OUTBOUND - [0:0]\n-A PREROUTING -j FOREIGN\n-A OUTPUT -j FOREIGN\n\
        -A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND\n-A FOREIGN -j RETURN\n\
        -A KUMA_MESH_OUTBOUND -j RETURN\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n\
        -A INPUT -j ACCEPT\nCOMMIT\n";

    #[test]
    fn the_footprint_is_our_chains_and_the_chains_holding_our_rules() {
        assert_eq!(
            footprint_of(SAVED),
            "*nat\n:OUTPUT\n-A OUTPUT -j FOREIGN\n-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND\n\
             :KUMA_MESH_OUTBOUND\n-A KUMA_MESH_OUTBOUND -j RETURN\n"
        );
    }

    #[test]
    fn a_foreign_rule_next_to_ours_changes_the_footprint_and_one_elsewhere_does_not() {
        let before = footprint_of(SAVED);
        let beside = SAVED.replace(
            "-A OUTPUT -j FOREIGN\n",
            "-A OUTPUT -j FOREIGN\n-A OUTPUT -j ACCEPT\n",
        );
        assert_ne!(footprint_of(&beside), before);
        let elsewhere = SAVED.replace("-A FOREIGN -j RETURN\n", "-A FOREIGN -j ACCEPT\n");
        assert_eq!(footprint_of(&elsewhere), before);
    }
}
