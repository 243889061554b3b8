//! The difference between the direct entries in place and the ones we want, as an ordered
//! list of single changes that is safe to apply one by one: jumps out of built-in chains
//! go first on removal and last on addition, chains exist before rules use them.

use std::collections::HashSet;
use std::fmt;

use super::{DirectChain, DirectConfig, DirectRule, Passthrough};
use crate::ownership::is_owned_chain;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    AddChain(DirectChain),
    RemoveChain(DirectChain),
    AddRule(DirectRule),
    RemoveRule(DirectRule),
    RemovePassthrough(Passthrough),
    AddPassthrough(Passthrough),
}

impl Change {
    /// The change that undoes this one.
    pub fn inverse(&self) -> Change {
        match self {
            Change::AddChain(c) => Change::RemoveChain(c.clone()),
            Change::RemoveChain(c) => Change::AddChain(c.clone()),
            Change::AddRule(r) => Change::RemoveRule(r.clone()),
            Change::RemoveRule(r) => Change::AddRule(r.clone()),
            Change::AddPassthrough(p) => Change::RemovePassthrough(p.clone()),
            Change::RemovePassthrough(p) => Change::AddPassthrough(p.clone()),
        }
    }

    /// Whether the entry changed is one of ours.
    pub fn is_owned(&self) -> bool {
        match self {
            Change::AddChain(c) | Change::RemoveChain(c) => c.is_owned(),
            Change::AddRule(r) | Change::RemoveRule(r) => r.is_owned(),
            Change::AddPassthrough(p) | Change::RemovePassthrough(p) => p.is_owned(),
        }
    }

    pub fn is_addition(&self) -> bool {
        matches!(
            self,
            Change::AddChain(_) | Change::AddRule(_) | Change::AddPassthrough(_)
        )
    }
}

impl Change {
    /// The entry added or removed: `rule ipv4 nat OUTPUT 0 -j KUMA_MESH_OUTBOUND`.
    pub fn entry(&self) -> String {
        match self {
            Change::AddChain(c) | Change::RemoveChain(c) => {
                format!("chain {} {} {}", c.ipv, c.table, c.chain)
            }
            Change::AddRule(r) | Change::RemoveRule(r) => format!(
                "rule {} {} {} {} {}",
                r.ipv,
                r.table,
                r.chain,
                r.priority,
                crate::quoting::join_args(&r.args)
            ),
            Change::AddPassthrough(p) | Change::RemovePassthrough(p) => format!(
                "passthrough {} {}",
                p.ipv,
                crate::quoting::join_args(&p.args)
            ),
        }
    }
}

/// `+ entry` or `- entry`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.is_addition() { '+' } else { '-' };
        write!(f, "{sign} {}", self.entry())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub changes: Vec<Change>,
    /// Entries of ours that are already as wanted.
    pub unchanged: usize,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn added(&self) -> usize {
        self.changes.iter().filter(|c| c.is_addition()).count()
    }

    pub fn removed(&self) -> usize {
        self.changes.len() - self.added()
    }
}

/// `3 added, 1 removed, 40 unchanged`: a target's changes, counted.
pub fn counts(added: usize, removed: usize, unchanged: usize) -> String {
    format!("{added} added, {removed} removed, {unchanged} unchanged")
}

/// Each change on its own line, then their [`counts`].
impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        writeln!(
            f,
            "{}",
            counts(self.added(), self.removed(), self.unchanged)
        )
    }
}

/// What turns our entries in `current` into `desired` (ours only; foreign entries of
/// `current` are never part of a diff).
pub fn diff(current: &DirectConfig, desired: &DirectConfig) -> Diff {
    let ours = current.owned();
    let have_chains: HashSet<&DirectChain> = ours.chains.iter().collect();
    let have_rules: HashSet<&DirectRule> = ours.rules.iter().collect();
    let want_chains: HashSet<&DirectChain> = desired.chains.iter().collect();
    let want_rules: HashSet<&DirectRule> = desired.rules.iter().collect();
    let have_passthroughs: HashSet<&Passthrough> = ours.passthroughs.iter().collect();
    let want_passthroughs: HashSet<&Passthrough> = desired.passthroughs.iter().collect();

    let stale_rules: Vec<&DirectRule> = ours
        .rules
        .iter()
        .filter(|r| !want_rules.contains(r))
        .collect();
    let new_rules: Vec<&DirectRule> = desired
        .rules
        .iter()
        .filter(|r| !have_rules.contains(r))
        .collect();

    let mut changes = Vec::new();
    // Leave built-in chains first (and in reverse), so nothing jumps into a chain we change.
    for rule in stale_rules
        .iter()
        .rev()
        .filter(|r| !is_owned_chain(&r.chain))
    {
        changes.push(Change::RemoveRule((*rule).clone()));
    }
    for passthrough in ours
        .passthroughs
        .iter()
        .filter(|p| !want_passthroughs.contains(p))
    {
        changes.push(Change::RemovePassthrough(passthrough.clone()));
    }
    for rule in stale_rules
        .iter()
        .rev()
        .filter(|r| is_owned_chain(&r.chain))
    {
        changes.push(Change::RemoveRule((*rule).clone()));
    }
    for chain in desired.chains.iter().filter(|c| !have_chains.contains(c)) {
        changes.push(Change::AddChain(chain.clone()));
    }
    for rule in new_rules.iter().filter(|r| is_owned_chain(&r.chain)) {
        changes.push(Change::AddRule((*rule).clone()));
    }
    for rule in new_rules.iter().filter(|r| !is_owned_chain(&r.chain)) {
        changes.push(Change::AddRule((*rule).clone()));
    }
    for passthrough in desired
        .passthroughs
        .iter()
        .filter(|p| !have_passthroughs.contains(p))
    {
        changes.push(Change::AddPassthrough(passthrough.clone()));
    }
    for chain in ours
        .chains
        .iter()
        .rev()
        .filter(|c| !want_chains.contains(c))
    {
        changes.push(Change::RemoveChain(chain.clone()));
    }

    let unchanged = ours
        .chains
        .iter()
        .filter(|c| want_chains.contains(c))
        .count()
        + ours.rules.iter().filter(|r| want_rules.contains(r)).count()
        + ours
            .passthroughs
            .iter()
            .filter(|p| want_passthroughs.contains(p))
            .count();
    Diff { changes, unchanged }
}

impl DirectConfig {
    /// What firewalld holds after applying `diff` to this configuration one entry at a
    /// time: a removal takes the entry out, an addition appends it to its list.
    pub fn after(&self, diff: &Diff) -> DirectConfig {
        let mut out = self.clone();
        for change in &diff.changes {
            match change {
                Change::AddChain(c) => out.chains.push(c.clone()),
                Change::RemoveChain(c) => out.chains.retain(|x| x != c),
                Change::AddRule(r) => out.rules.push(r.clone()),
                Change::RemoveRule(r) => out.rules.retain(|x| x != r),
                Change::AddPassthrough(p) => out.passthroughs.push(p.clone()),
                Change::RemovePassthrough(p) => out.passthroughs.retain(|x| x != p),
            }
        }
        out
    }

    /// The same entries, in whatever order and however often each appears.
    pub fn same_entries(&self, other: &DirectConfig) -> bool {
        let sorted = |c: &DirectConfig| {
            let mut c = c.clone();
            c.chains.sort();
            c.chains.dedup();
            c.rules.sort();
            c.rules.dedup();
            c.passthroughs.sort();
            c.passthroughs.dedup();
            c
        };
        sorted(self) == sorted(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(name: &str) -> DirectChain {
        DirectChain {
            ipv: "ipv4".into(),
            table: "nat".into(),
            chain: name.into(),
        }
    }

    fn rule(chain: &str, priority: i32, target: &str) -> DirectRule {
        DirectRule {
            ipv: "ipv4".into(),
            table: "nat".into(),
            chain: chain.into(),
            priority,
            args: vec!["-j".into(), target.into()],
        }
    }

    fn config(chains: &[&str], rules: &[DirectRule]) -> DirectConfig {
        DirectConfig {
            chains: chains.iter().map(|c| chain(c)).collect(),
            rules: rules.to_vec(),
            passthroughs: vec![],
        }
    }

    #[test]
    fn install_adds_chains_then_their_rules_then_jumps() {
        let desired = config(
            &["KUMA_MESH_OUTBOUND"],
            &[
                rule("OUTPUT", 0, "KUMA_MESH_OUTBOUND"),
                rule("KUMA_MESH_OUTBOUND", 0, "RETURN"),
            ],
        );
        let diff = diff(&DirectConfig::default(), &desired);
        assert_eq!(
            diff.changes,
            [
                Change::AddChain(chain("KUMA_MESH_OUTBOUND")),
                Change::AddRule(rule("KUMA_MESH_OUTBOUND", 0, "RETURN")),
                Change::AddRule(rule("OUTPUT", 0, "KUMA_MESH_OUTBOUND")),
            ]
        );
        // Undoing in reverse removes the jump before the chain's rules and the chain.
        let undo: Vec<Change> = diff.changes.iter().rev().map(Change::inverse).collect();
        assert_eq!(
            undo[0],
            Change::RemoveRule(rule("OUTPUT", 0, "KUMA_MESH_OUTBOUND"))
        );
        assert_eq!(undo[2], Change::RemoveChain(chain("KUMA_MESH_OUTBOUND")));
    }

    #[test]
    fn removal_drops_jumps_first_and_chains_last_and_never_touches_foreign_entries() {
        let current = config(
            &["FOREIGN", "KUMA_MESH_OUTBOUND"],
            &[
                rule("OUTPUT", 0, "FOREIGN"),
                rule("OUTPUT", 1, "KUMA_MESH_OUTBOUND"),
                rule("KUMA_MESH_OUTBOUND", 0, "RETURN"),
            ],
        );
        let diff = diff(&current, &DirectConfig::default());
        assert_eq!(
            diff.changes,
            [
                Change::RemoveRule(rule("OUTPUT", 1, "KUMA_MESH_OUTBOUND")),
                Change::RemoveRule(rule("KUMA_MESH_OUTBOUND", 0, "RETURN")),
                Change::RemoveChain(chain("KUMA_MESH_OUTBOUND")),
            ]
        );
    }

    #[test]
    fn the_same_entries_plan_nothing() {
        let desired = config(
            &["KUMA_MESH_OUTBOUND"],
            &[rule("KUMA_MESH_OUTBOUND", 0, "RETURN")],
        );
        let diff = diff(&desired, &desired);
        assert!(diff.is_empty());
        assert_eq!(diff.unchanged, 2);
    }

    #[test]
    fn after_keeps_foreign_entries_in_place_and_appends_ours() {
        let current = config(
            &["A", "KUMA_MESH_X", "B"],
            &[rule("OUTPUT", 5, "A"), rule("KUMA_MESH_X", 0, "RETURN")],
        );
        let desired = config(&["KUMA_MESH_Y"], &[rule("KUMA_MESH_Y", 0, "RETURN")]);
        let after = current.after(&diff(&current, &desired));
        let names: Vec<&str> = after.chains.iter().map(|c| c.chain.as_str()).collect();
        assert_eq!(names, ["A", "B", "KUMA_MESH_Y"]);
        assert_eq!(
            after.rules,
            [rule("OUTPUT", 5, "A"), rule("KUMA_MESH_Y", 0, "RETURN")]
        );
    }

    #[test]
    fn same_entries_ignores_order_and_repeats() {
        let a = config(
            &["A", "B"],
            &[rule("OUTPUT", 5, "A"), rule("OUTPUT", 5, "A")],
        );
        let b = config(&["B", "A"], &[rule("OUTPUT", 5, "A")]);
        assert!(a.same_entries(&b));
        assert!(!a.same_entries(&config(&["A"], &[rule("OUTPUT", 5, "A")])));
    }
}
