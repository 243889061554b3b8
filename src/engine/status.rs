//! `status`: are our rules where they should be, in the order they should be? Four views —
//! the desired rules, firewalld's permanent and runtime direct configuration, and the kernel
//! tables — are reduced to comparable entries (a chain, or a rule named by its chain and
//! comment) and compared: which entries are missing or extra, and, chain by chain, whether
//! the rules both hold come in the same order (a RETURN moved behind a REDIRECT no longer
//! excludes anything). Rules are matched by chain and comment because the kernel prints
//! arguments in its own canonical form; a rule without our comment is matched by its jump
//! target.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::{detect_xtables, observer, prepare, Purpose, Request};
use crate::backend::iptables::is_owned_rule;
use crate::backend::xtables::Xtables;
use crate::backend::{View, ViewKind};
use crate::config::{Config, ExecutablePaths, Placement};
use crate::direct::{self, DirectChain, DirectConfig, DirectRule};
use crate::format::restore;
use crate::ownership::{is_owned_chain, jump_target, COMMENT_PREFIX};
use crate::quoting::join_args;
use crate::tables::TableName;

/// The configuration file a service unit installs from. Without flags, the desired rules
/// are built from it when it exists, rather than taken from the permanent configuration
/// that is itself being checked.
pub const INSTALLED_CONFIG: &str = "/etc/tproxy-firewalld/config.yaml";

/// The desired entries of ours and every view's, ready to compare.
pub struct Comparison {
    /// Where the desired rules came from, for people.
    pub source: String,
    pub desired: DirectConfig,
    /// What the desired rules were built from; None when they are the permanent
    /// configuration's.
    pub config: Option<Config>,
    pub views: Vec<View>,
    /// A running firewalld's `RFC3964_IPv4` (a stopped one filters nothing).
    pub rfc3964_ipv4: Option<bool>,
}

/// What to compare against: install's flags and config files, and where rules go.
pub struct Desired<'a> {
    pub files: &'a [String],
    /// The flags given, as a partial tree of kumactl's configuration keys.
    pub flags: Value,
    pub placement: Placement,
}

/// How a view differs from the desired entries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drift {
    /// Entries missing from the view, each repeated as often as it is missing.
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    /// Per chain, the first rule out of place among those both hold.
    pub out_of_order: Vec<OutOfOrder>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct OutOfOrder {
    /// `ipv4 nat KUMA_MESH_INBOUND`
    pub chain: String,
    /// The rule out of place …
    pub rule: String,
    /// … which comes before this one, though it belongs after it.
    pub before: String,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.out_of_order.is_empty()
    }

    /// `2 missing, 1 extra` (`, 1 out of order` when rules are).
    pub fn summary(&self) -> String {
        let mut text = format!("{} missing, {} extra", self.missing.len(), self.extra.len());
        if !self.out_of_order.is_empty() {
            text.push_str(&format!(", {} out of order", self.out_of_order.len()));
        }
        text
    }

    /// One line per difference.
    pub fn lines(&self) -> Vec<String> {
        let missing = self.missing.iter().map(|e| format!("missing {e}"));
        let extra = self.extra.iter().map(|e| format!("extra   {e}"));
        let order = self
            .out_of_order
            .iter()
            .map(|o| format!("order   {}: {} comes before {}", o.chain, o.rule, o.before));
        missing.chain(extra).chain(order).collect()
    }
}

impl Comparison {
    /// How `view` differs from the desired entries; Err when it could not be read.
    pub fn drift<'a>(&self, view: &'a View) -> Result<Drift, &'a str> {
        match &view.entries {
            Ok(have) => Ok(difference(&self.desired, have)),
            Err(why) => Err(why),
        }
    }

    pub fn in_sync(&self) -> bool {
        self.views
            .iter()
            .all(|view| self.drift(view).map_or(true, |d| d.is_empty()))
    }

    pub fn view(&self, kind: ViewKind) -> Option<&View> {
        self.views.iter().find(|v| v.kind == kind)
    }
}

/// Reads every view and the desired rules: from the flags and config files given; without
/// any, from [`INSTALLED_CONFIG`] when it exists, else the permanent configuration's
/// entries of ours (and install's defaults without firewalld). With `needs_rules`, a
/// permanent configuration without entries of ours gives way to install's defaults too.
pub fn compare(request: Desired<'_>, needs_rules: bool) -> Result<Comparison> {
    let given = !request.files.is_empty() || request.flags != serde_json::json!({});
    let installed = !given && Path::new(INSTALLED_CONFIG).is_file();
    let observation = observer(&request.placement)?.observe()?;
    let mut views = observation.views;
    let stored = views
        .iter()
        .find(|v| matches!(v.kind, ViewKind::Permanent | ViewKind::File))
        .and_then(|v| v.entries.as_ref().ok().cloned());
    // The permanent configuration is taken as desired only when nothing else says what is.
    let from_stored = !given && !installed;
    let (source, desired, config) = match stored {
        Some(stored) if from_stored && !(needs_rules && stored.is_empty()) => {
            ("the permanent configuration".to_string(), stored, None)
        }
        _ => {
            let installed_file = [INSTALLED_CONFIG.to_string()];
            let prepared = prepare(Request {
                files: if installed {
                    &installed_file
                } else {
                    request.files
                },
                flags: request.flags,
                placement: request.placement,
                stdin: &mut std::io::stdin().lock(),
                purpose: Purpose::Compare,
                reports_changes: false,
            })?;
            let translated = direct::translate(&prepared.ruleset, &DirectConfig::default());
            let source = if given {
                "the flags".to_string()
            } else if installed {
                format!("the installed configuration {INSTALLED_CONFIG}")
            } else {
                "install's defaults".to_string()
            };
            (source, translated, Some(prepared.config))
        }
    };
    let executables = config
        .as_ref()
        .map(|c| c.executables.clone())
        .unwrap_or_default();
    views.push(kernel_view(executables));
    Ok(Comparison {
        source,
        desired,
        config,
        views,
        rfc3964_ipv4: observation.rfc3964_ipv4,
    })
}

/// Entries with how often each occurs (a rule may legitimately appear twice).
type Entries = BTreeMap<String, usize>;

/// Per chain (`ipv4 nat KUMA_MESH_INBOUND`), the labels of its rules in the order they apply.
type RuleOrder = BTreeMap<String, Vec<String>>;

fn difference(want: &DirectConfig, have: &DirectConfig) -> Drift {
    let (missing, extra) = counted_difference(&entries(want), &entries(have));
    let (want_order, have_order) = (rule_order(want), rule_order(have));
    let out_of_order = want_order
        .iter()
        .filter_map(|(chain, want)| {
            let have = have_order.get(chain)?;
            let (rule, before) = first_out_of_order(want, have)?;
            Some(OutOfOrder {
                chain: chain.clone(),
                rule,
                before,
            })
        })
        .collect();
    Drift {
        missing,
        extra,
        out_of_order,
    }
}

/// (missing from `have`, extra in `have`), each entry repeated as often as it differs.
fn counted_difference(want: &Entries, have: &Entries) -> (Vec<String>, Vec<String>) {
    let surplus = |of: &Entries, over: &Entries| -> Vec<String> {
        of.iter()
            .flat_map(|(entry, count)| {
                let other = over.get(entry).copied().unwrap_or(0);
                std::iter::repeat_n(entry.clone(), count.saturating_sub(other))
            })
            .collect()
    };
    (surplus(want, have), surplus(have, want))
}

/// Among the rules both sequences hold (as often as both hold them), the first of `have`
/// that is not where `want` has it, and the rule `want` has there instead: the former comes
/// before the latter in `have`, after it in `want`.
fn first_out_of_order(want: &[String], have: &[String]) -> Option<(String, String)> {
    fn count(rules: &[String]) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        rules
            .iter()
            .for_each(|r| *counts.entry(r.as_str()).or_default() += 1);
        counts
    }
    let (in_want, in_have) = (count(want), count(have));
    let common = |rules: &[String]| -> Vec<String> {
        let mut left: BTreeMap<&str, usize> = in_want
            .iter()
            .map(|(rule, n)| (*rule, (*n).min(in_have.get(rule).copied().unwrap_or(0))))
            .collect();
        rules
            .iter()
            .filter(|rule| {
                left.get_mut(rule.as_str())
                    .filter(|n| **n > 0)
                    .map(|n| *n -= 1)
                    .is_some()
            })
            .cloned()
            .collect()
    };
    common(want)
        .into_iter()
        .zip(common(have))
        .find(|(wanted, held)| wanted != held)
        .map(|(wanted, held)| (held, wanted))
}

/// Our entries of a direct configuration, counted.
fn entries(config: &DirectConfig) -> Entries {
    let mut entries = Entries::new();
    let owned = config.owned();
    for chain in &owned.chains {
        *entries
            .entry(format!(
                "chain {} {} {}",
                chain.ipv, chain.table, chain.chain
            ))
            .or_default() += 1;
    }
    for rule in &owned.rules {
        *entries
            .entry(format!(
                "rule {} {} {} {}",
                rule.ipv,
                rule.table,
                rule.chain,
                label(&rule.args)
            ))
            .or_default() += 1;
    }
    entries
}

/// Our rules of each chain in the order firewalld (and the kernel) applies them.
fn rule_order(config: &DirectConfig) -> RuleOrder {
    let owned = config.owned();
    direct::kernel_order(&owned)
        .into_iter()
        .filter(|chain| !chain.rules.is_empty())
        .map(|chain| {
            let labels = chain
                .rules
                .iter()
                .map(|&i| label(&owned.rules[i].args))
                .collect();
            (
                format!("{} {} {}", chain.ipv, chain.table, chain.chain),
                labels,
            )
        })
        .collect()
}

/// A rule named by our comment (quoted), else by its jump target, else by its arguments:
/// the same for a direct rule's args and for a kernel rule split from iptables-save.
fn label(args: &[String]) -> String {
    comment_of(args)
        .map(|c| format!("{c:?}"))
        .or_else(|| jump_target(args).map(|t| format!("-j {t}")))
        .unwrap_or_else(|| join_args(args))
}

fn comment_of(args: &[String]) -> Option<&str> {
    args.windows(2)
        .find(|w| w[0] == "--comment")
        .and_then(|w| w[1].strip_prefix(COMMENT_PREFIX))
        .map(|c| c.trim_start_matches('/'))
}

/// Our chains and rules in the kernel, both families, as direct entries would name them
/// (firewalld's `X_direct` chains read as the built-in `X`), each chain's rules numbered in
/// the order they apply.
fn kernel_view(executables: ExecutablePaths) -> View {
    let unavailable = |error: anyhow::Error| View {
        name: "kernel".to_string(),
        kind: ViewKind::Kernel,
        entries: Err(format!("{error:#}")),
    };
    let families = match detect_xtables(&executables, None, true) {
        Ok(families) => families,
        Err(error) => return unavailable(error),
    };
    let mut entries = DirectConfig::default();
    for xtables in &families {
        match kernel_entries(xtables) {
            Ok(found) => {
                entries.chains.extend(found.chains);
                entries.rules.extend(found.rules);
            }
            Err(error) => return unavailable(error),
        }
    }
    let mode = families.first().map_or("", |x| x.mode.label());
    View {
        name: format!("kernel (iptables {mode})"),
        kind: ViewKind::Kernel,
        entries: Ok(entries),
    }
}

fn kernel_entries(xtables: &Xtables) -> Result<DirectConfig> {
    let ipv = xtables.family.ipv();
    let saved = restore::parse_save(&xtables.save_all()?)?;
    let mut entries = DirectConfig::default();
    for table in &saved {
        let Some(name) = TableName::ALL.iter().find(|t| t.as_str() == table.name) else {
            continue;
        };
        for chain in table.chains.iter().filter(|c| is_owned_chain(c)) {
            entries.chains.push(DirectChain {
                ipv: ipv.to_string(),
                table: table.name.clone(),
                chain: chain.clone(),
            });
        }
        for (position, rule) in table.rules.iter().enumerate() {
            if !is_owned_rule(&rule.chain, rule) {
                continue;
            }
            let chain = rule
                .chain
                .strip_suffix("_direct")
                .filter(|base| name.builtin_chains().contains(base))
                .unwrap_or(&rule.chain);
            // Split as iptables-restore would, without the leading `-A CHAIN`.
            let args = restore::split_restore_args(&rule.line)
                .unwrap_or_default()
                .into_iter()
                .skip(2)
                .collect();
            entries.rules.push(DirectRule {
                ipv: ipv.to_string(),
                table: table.name.clone(),
                chain: chain.to_string(),
                priority: i32::try_from(position).unwrap_or(i32::MAX),
                args,
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::test_entries::rule;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_rule_out_of_place_is_named_with_the_one_it_precedes() {
        let want = strings(&["exclude 22", "redirect", "last"]);
        assert_eq!(first_out_of_order(&want, &want), None);
        let have = strings(&["redirect", "exclude 22", "last"]);
        assert_eq!(
            first_out_of_order(&want, &have),
            Some(("redirect".into(), "exclude 22".into()))
        );
        // Rules only one side holds are missing or extra, not out of order.
        let have = strings(&["foreign", "exclude 22", "last"]);
        assert_eq!(first_out_of_order(&want, &have), None);
        let have = strings(&["last", "redirect"]);
        assert_eq!(
            first_out_of_order(&want, &have),
            Some(("last".into(), "redirect".into()))
        );
    }

    #[test]
    fn a_chain_reordered_by_priority_is_drift_even_with_every_entry_present() {
        let comment = |text: &str| {
            vec![
                "-m".to_string(),
                "comment".into(),
                "--comment".into(),
                format!("{COMMENT_PREFIX}/{text}"),
                "-j".into(),
                "RETURN".into(),
            ]
        };
        let with = |exclude: i32, redirect: i32| DirectConfig {
            rules: vec![
                DirectRule {
                    args: comment("exclude 22"),
                    ..rule("ipv4", "nat", "KUMA_MESH_INBOUND", exclude, &[])
                },
                DirectRule {
                    args: comment("redirect"),
                    ..rule("ipv4", "nat", "KUMA_MESH_INBOUND", redirect, &[])
                },
            ],
            ..DirectConfig::default()
        };
        assert!(difference(&with(0, 10), &with(5, 20)).is_empty());
        let drift = difference(&with(0, 10), &with(0, -100));
        assert!(drift.missing.is_empty() && drift.extra.is_empty());
        assert_eq!(
            drift.out_of_order,
            [OutOfOrder {
                chain: "ipv4 nat KUMA_MESH_INBOUND".into(),
                rule: "\"redirect\"".into(),
                before: "\"exclude 22\"".into(),
            }]
        );
        assert_eq!(drift.summary(), "0 missing, 0 extra, 1 out of order");
    }
}
