//! Our rule model → direct entries. firewalld orders the rules of a chain by priority
//! (lower first), so each chain's final iptables order (after replaying kumactl's `-A` and
//! `-I n`) becomes a run of distinct, increasing priorities. Priorities already in use for
//! the same rule are kept when the order allows it, so adding one rule is one change, not a
//! renumbering of the whole chain.

use super::{DirectChain, DirectConfig, DirectRule};
use crate::ruleset::{Position, Ruleset};

/// Distance between the priorities of neighbouring rules in a fresh chain, leaving room to
/// insert rules later without moving the existing ones.
const PRIORITY_STEP: i64 = 10;

/// The direct entries for `ruleset`. `current` holds the entries in place now (our own are
/// looked at): rules that stay keep their priority where the order permits.
pub fn translate(ruleset: &Ruleset, current: &DirectConfig) -> DirectConfig {
    let mut out = DirectConfig::default();
    for family in &ruleset.families {
        let ipv = family.family.ipv();
        for table in &family.tables {
            for chain in &table.chains {
                out.chains.push(DirectChain {
                    ipv: ipv.to_string(),
                    table: table.name.to_string(),
                    chain: chain.clone(),
                });
            }
            for (chain, ordered) in final_order(&table.rules) {
                let existing = existing_rules(current, ipv, table.name.as_str(), chain);
                let priorities = assign_priorities(&ordered, &existing);
                for (args, priority) in ordered.into_iter().zip(priorities) {
                    out.rules.push(DirectRule {
                        ipv: ipv.to_string(),
                        table: table.name.to_string(),
                        chain: chain.to_string(),
                        priority,
                        args,
                    });
                }
            }
        }
    }
    out
}

/// Each chain's rule arguments in the order the kernel ends up holding them, chains in
/// order of first appearance.
fn final_order(rules: &[crate::ruleset::Rule]) -> Vec<(&str, Vec<Vec<String>>)> {
    // kumactl numbers the inserts of a chain 1, 2, …: none lands beyond the end.
    replay(
        rules
            .iter()
            .map(|rule| (rule.chain.as_str(), rule.position, rule.spec(false))),
    )
    .0
}

/// Each chain's items in their final order, and the first insert beyond its chain's end
/// (with its index and the length the chain had): see [`replay`].
pub type Replayed<'a, T> = (Vec<(&'a str, Vec<T>)>, Option<(T, u32, usize)>);

/// Replays appends and inserts (`-A CHAIN`, `-I CHAIN n`) in the order given: each chain's
/// items in the order the kernel ends up holding them, chains in order of first appearance.
/// An insert beyond the end of its chain goes at its end; the first such one is returned
/// with its index and the length its chain had (iptables refuses it: "index of insertion
/// too big").
pub fn replay<'a, T>(items: impl IntoIterator<Item = (&'a str, Position, T)>) -> Replayed<'a, T>
where
    T: Clone,
{
    let mut chains: Vec<(&str, Vec<T>)> = Vec::new();
    let mut too_far = None;
    for (chain, position, item) in items {
        let index = match chains.iter().position(|(c, _)| *c == chain) {
            Some(index) => index,
            None => {
                chains.push((chain, Vec::new()));
                chains.len() - 1
            }
        };
        let list = &mut chains[index].1;
        match position {
            Position::Append => list.push(item),
            Position::Insert(n) => {
                let at = (n as usize).saturating_sub(1);
                if at > list.len() && too_far.is_none() {
                    too_far = Some((item.clone(), n, list.len()));
                }
                list.insert(at.min(list.len()), item);
            }
        }
    }
    (chains, too_far)
}

/// Our current rules of one chain as (priority, args), in firewalld's order.
fn existing_rules(
    current: &DirectConfig,
    ipv: &str,
    table: &str,
    chain: &str,
) -> Vec<(i32, Vec<String>)> {
    let mut rules: Vec<(i32, Vec<String>)> = current
        .rules
        .iter()
        // The cheap comparisons first: this runs once per chain over all current rules,
        // foreign ones included.
        .filter(|r| r.ipv == ipv && r.table == table && r.chain == chain && r.is_owned())
        .map(|r| (r.priority, r.args.clone()))
        .collect();
    rules.sort_by_key(|(priority, _)| *priority);
    rules
}

/// Distinct increasing priorities for `wanted` (in order), reusing the priority of an
/// existing identical rule when it fits between its neighbours.
fn assign_priorities(wanted: &[Vec<String>], existing: &[(i32, Vec<String>)]) -> Vec<i32> {
    let kept = longest_common_order(wanted, existing);
    let mut slots: Vec<Option<i64>> = vec![None; wanted.len()];
    let mut last_kept: Option<i64> = None;
    for (w, e) in kept {
        let priority = i64::from(existing[e].0);
        // Equal priorities cannot express an order; keep only strictly increasing ones.
        if last_kept.is_none_or(|last| priority > last) {
            slots[w] = Some(priority);
            last_kept = Some(priority);
        }
    }
    fill_gaps(&mut slots)
        .or_else(|| fresh_priorities(wanted.len()))
        // More rules than priorities: firewalld's order is then the same for all.
        .unwrap_or_else(|| vec![i32::MAX; wanted.len()])
}

/// Pairs (wanted index, existing index) of a longest common subsequence of equal args.
fn longest_common_order(
    wanted: &[Vec<String>],
    existing: &[(i32, Vec<String>)],
) -> Vec<(usize, usize)> {
    let (n, m) = (wanted.len(), existing.len());
    if n == 0 || m == 0 {
        return Vec::new();
    }
    // lengths[i][j] = LCS length of wanted[i..] and existing[j..].
    let mut lengths = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lengths[i][j] = if wanted[i] == existing[j].1 {
                lengths[i + 1][j + 1] + 1
            } else {
                lengths[i + 1][j].max(lengths[i][j + 1])
            };
        }
    }
    let mut pairs = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if wanted[i] == existing[j].1 {
            pairs.push((i, j));
            i += 1;
            j += 1;
        } else if lengths[i + 1][j] >= lengths[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    pairs
}

/// Gives every empty slot a priority between its kept neighbours; `None` when a gap has
/// no room or a value leaves the i32 range.
fn fill_gaps(slots: &mut [Option<i64>]) -> Option<Vec<i32>> {
    let mut i = 0;
    while i < slots.len() {
        if slots[i].is_some() {
            i += 1;
            continue;
        }
        let start = i;
        while i < slots.len() && slots[i].is_none() {
            i += 1;
        }
        let count = (i - start) as i64;
        let before = start.checked_sub(1).and_then(|b| slots[b]);
        let after = slots.get(i).copied().flatten();
        for k in 0..count {
            slots[start + k as usize] = Some(match (before, after) {
                (None, None) => k * PRIORITY_STEP,
                (Some(p), None) => p + (k + 1) * PRIORITY_STEP,
                (None, Some(q)) => q - (count - k) * PRIORITY_STEP,
                (Some(p), Some(q)) => {
                    if q - p <= count {
                        return None;
                    }
                    p + (q - p) * (k + 1) / (count + 1)
                }
            });
        }
    }
    slots
        .iter()
        .map(|s| s.and_then(|p| i32::try_from(p).ok()))
        .collect()
}

/// Priorities 0, 10, 20, … for a chain of `count` rules (None beyond what firewalld's
/// priorities hold).
pub fn fresh_priorities(count: usize) -> Option<Vec<i32>> {
    (0..count)
        .map(|k| i32::try_from(k).ok()?.checked_mul(PRIORITY_STEP as i32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::family::Family;
    use crate::ruleset::{build, FamilyFacts, Features};
    use std::collections::BTreeMap;

    /// `(ipv, table, chain)` → rules by priority.
    fn by_chain(config: &DirectConfig) -> BTreeMap<(&str, &str, &str), Vec<&DirectRule>> {
        let mut chains: BTreeMap<(&str, &str, &str), Vec<&DirectRule>> = BTreeMap::new();
        for rule in &config.rules {
            chains
                .entry((&rule.ipv, &rule.table, &rule.chain))
                .or_default()
                .push(rule);
        }
        for rules in chains.values_mut() {
            rules.sort_by_key(|r| r.priority);
        }
        chains
    }

    fn args(list: &[&str]) -> Vec<Vec<String>> {
        list.iter().map(|a| vec![a.to_string()]).collect()
    }

    fn ruleset(config: &Config) -> Ruleset {
        let facts: Vec<FamilyFacts> = [Family::V4, Family::V6]
            .into_iter()
            .map(|family| FamilyFacts {
                family,
                uid: 5678,
                loopback: "lo".into(),
                dns_servers: vec!["10.96.0.10".parse().unwrap()],
                features: Features::default(),
            })
            .collect();
        build(config, &facts)
    }

    #[test]
    fn a_fresh_chain_counts_in_steps() {
        assert_eq!(assign_priorities(&args(&["a", "b", "c"]), &[]), [0, 10, 20]);
    }

    #[test]
    fn a_new_rule_goes_between_kept_neighbours() {
        let existing = vec![(0, vec!["a".into()]), (10, vec!["c".into()])];
        assert_eq!(
            assign_priorities(&args(&["a", "b", "c"]), &existing),
            [0, 5, 10]
        );
        assert_eq!(
            assign_priorities(&args(&["z", "a", "c", "d"]), &existing),
            [-10, 0, 10, 20]
        );
    }

    #[test]
    fn no_room_renumbers_the_chain() {
        let existing = vec![(0, vec!["a".into()]), (1, vec!["c".into()])];
        assert_eq!(
            assign_priorities(&args(&["a", "b", "c"]), &existing),
            [0, 10, 20]
        );
    }

    #[test]
    fn equal_existing_priorities_are_not_trusted_for_order() {
        let existing = vec![(3, vec!["a".into()]), (3, vec!["b".into()])];
        assert_eq!(assign_priorities(&args(&["a", "b"]), &existing), [3, 13]);
    }

    #[test]
    fn inserts_are_replayed_into_the_final_order() {
        let mut config = Config::default();
        config.dns.enabled = true;
        let direct = translate(&ruleset(&config), &DirectConfig::default());
        let chains = by_chain(&direct);
        let output = &chains[&("ipv4", "nat", "OUTPUT")];
        let comments: Vec<&str> = output.iter().map(|r| r.args[3].as_str()).collect();
        assert!(comments[0].ends_with("return early for DNS traffic from kuma-dp"));
        assert!(comments[1].contains("redirect DNS requests"));
        assert!(comments
            .last()
            .unwrap()
            .contains("redirect outbound TCP traffic"));
        let priorities: Vec<i32> = output.iter().map(|r| r.priority).collect();
        assert!(priorities.windows(2).all(|w| w[0] < w[1]), "{priorities:?}");
        assert!(direct
            .chains
            .iter()
            .any(|c| c.ipv == "ipv6" && c.chain == "KUMA_MESH_OUTBOUND"));
    }

    #[test]
    fn one_more_excluded_port_adds_one_rule_per_family_and_moves_nothing() {
        let before = translate(&ruleset(&Config::default()), &DirectConfig::default());
        let mut config = Config::default();
        config.inbound.exclude_ports = vec![22];
        let after = translate(&ruleset(&config), &before);
        let added: Vec<_> = after
            .rules
            .iter()
            .filter(|r| !before.rules.contains(r))
            .collect();
        assert_eq!(added.len(), 2, "{added:#?}");
        assert!(before.rules.iter().all(|r| after.rules.contains(r)));
    }
}
