//! `status`: are our rules where they should be? Four views — the desired rules, firewalld's
//! permanent and runtime direct configuration, and the kernel tables — are reduced to
//! comparable entries (a chain, or a rule named by its chain and comment) and compared.
//! Rules are matched by chain and comment because the kernel prints arguments in its own
//! canonical form; a rule without our comment is matched by its jump target.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::detect_xtables;
use super::install::{prepare, Desired};
use super::target::{self, Target};
use crate::backend::direct_file::DirectFile;
use crate::backend::iptables::is_owned_rule;
use crate::backend::xtables::Xtables;
use crate::cli::{OutputFormat, StatusArgs};
use crate::config::ExecutablePaths;
use crate::direct::{self, DirectConfig};
use crate::error::EXIT_DRIFT;
use crate::format::restore;
use crate::ownership::{is_owned_chain, jump_target, COMMENT_PREFIX};
use crate::quoting::join_args;
use crate::tables::TableName;

/// Entries with how often each occurs (a rule may legitimately appear twice).
type Entries = BTreeMap<String, usize>;

struct View {
    name: String,
    /// Err: this view could not be read (not root, no iptables, …), with why.
    entries: Result<Entries, String>,
}

pub fn run(args: &StatusArgs) -> Result<u8> {
    let from_flags = !args.rules.config.is_empty() || args.rules.overlay() != json!({});
    let target = target::choose(&args.rules.firewalld, true)?;
    let mut views = Vec::new();
    let mut stored = None;
    match &target {
        Target::Firewalld(firewalld) => {
            let name = format!(
                "firewalld {} ({} backend)",
                firewalld.version, firewalld.firewall_backend
            );
            let permanent = firewalld.permanent_config()?;
            stored = Some(permanent.owned());
            views.push(View {
                name: format!("permanent ({name})"),
                entries: Ok(of_direct(&permanent)),
            });
            views.push(View {
                name: format!("runtime ({name})"),
                entries: Ok(of_direct(&firewalld.runtime_config()?)),
            });
        }
        Target::Offline(dir) => {
            let file = DirectFile::in_dir(dir);
            if let Some(loaded) = file.load()? {
                let config = loaded.document.config();
                stored = Some(config.owned());
                views.push(View {
                    name: format!("{} (firewalld is not running)", file.path().display()),
                    entries: Ok(of_direct(&config)),
                });
            }
        }
        Target::Iptables => {}
    }
    drop(target);

    let (source, desired, executables) = match stored {
        Some(stored) if !from_flags => ("the permanent configuration", of_direct(&stored), None),
        _ => {
            let Desired {
                config, ruleset, ..
            } = prepare(&args.rules, true)?;
            let translated = direct::translate(&ruleset, &DirectConfig::default());
            let source = if from_flags {
                "the flags"
            } else {
                "install's defaults"
            };
            (source, of_direct(&translated), Some(config.executables))
        }
    };
    views.push(kernel_view(executables.unwrap_or_default()));

    let report: Vec<_> = views
        .iter()
        .map(|view| {
            (
                view,
                view.entries.as_ref().map(|have| difference(&desired, have)),
            )
        })
        .collect();
    let in_sync = report.iter().all(|(_, d)| {
        d.as_ref().map_or(true, |(missing, extra)| {
            missing.is_empty() && extra.is_empty()
        })
    });

    match args.output {
        OutputFormat::Json => {
            let views: Vec<_> = report
                .iter()
                .map(|(view, difference)| match difference {
                    Ok((missing, extra)) => json!({
                        "name": view.name, "available": true, "missing": missing, "extra": extra,
                    }),
                    Err(why) => json!({
                        "name": view.name, "available": false, "reason": why,
                        "missing": null, "extra": null,
                    }),
                })
                .collect();
            let document = json!({
                "in_sync": in_sync,
                "desired": {"source": source, "entries": desired.values().sum::<usize>()},
                "views": views,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        OutputFormat::Text => {
            println!(
                "desired: {} entries, from {source}",
                desired.values().sum::<usize>()
            );
            for (view, difference) in &report {
                match difference {
                    Err(why) => println!("{}: not checked ({why})", view.name),
                    Ok((missing, extra)) if missing.is_empty() && extra.is_empty() => {
                        println!("{}: in sync", view.name)
                    }
                    Ok((missing, extra)) => {
                        println!(
                            "{}: {} missing, {} extra",
                            view.name,
                            missing.len(),
                            extra.len()
                        );
                        missing.iter().for_each(|e| println!("  missing {e}"));
                        extra.iter().for_each(|e| println!("  extra   {e}"));
                    }
                }
            }
            println!("{}", if in_sync { "in sync" } else { "drift" });
        }
    }
    Ok(if in_sync { 0 } else { EXIT_DRIFT })
}

/// (missing from `have`, extra in `have`), each entry repeated as often as it differs.
fn difference(want: &Entries, have: &Entries) -> (Vec<String>, Vec<String>) {
    let mut missing = Vec::new();
    let mut extra = Vec::new();
    for (entry, count) in want {
        let got = have.get(entry).copied().unwrap_or(0);
        missing.extend(std::iter::repeat_n(
            entry.clone(),
            count.saturating_sub(got),
        ));
    }
    for (entry, count) in have {
        let wanted = want.get(entry).copied().unwrap_or(0);
        extra.extend(std::iter::repeat_n(
            entry.clone(),
            count.saturating_sub(wanted),
        ));
    }
    (missing, extra)
}

/// Our entries of a direct configuration.
fn of_direct(config: &DirectConfig) -> Entries {
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
        let label = rule_label(&rule.args).unwrap_or_else(|| join_args(&rule.args));
        *entries
            .entry(format!(
                "rule {} {} {} {label}",
                rule.ipv, rule.table, rule.chain
            ))
            .or_default() += 1;
    }
    entries
}

/// A rule named by our comment (quoted), else by its jump target: the same for a direct
/// rule's args and for a kernel rule split from iptables-save.
fn rule_label(args: &[String]) -> Option<String> {
    comment_of(args)
        .map(|c| format!("{c:?}"))
        .or_else(|| jump_target(args).map(|t| format!("-j {t}")))
}

fn comment_of(args: &[String]) -> Option<&str> {
    args.windows(2)
        .find(|w| w[0] == "--comment")
        .and_then(|w| w[1].strip_prefix(COMMENT_PREFIX))
        .map(|c| c.trim_start_matches('/'))
}

/// Our chains and rules in the kernel, both families, as direct entries would name them
/// (firewalld's `X_direct` chains read as the built-in `X`).
fn kernel_view(executables: ExecutablePaths) -> View {
    let name = "kernel".to_string();
    let families = match detect_xtables(&executables) {
        Ok(families) => families,
        Err(error) => {
            return View {
                name,
                entries: Err(format!("{error:#}")),
            }
        }
    };
    let mut entries = Entries::new();
    for xtables in &families {
        match kernel_entries(xtables) {
            Ok(found) => {
                for (entry, count) in found {
                    *entries.entry(entry).or_default() += count;
                }
            }
            Err(error) => {
                return View {
                    name,
                    entries: Err(format!("{error:#}")),
                }
            }
        }
    }
    let mode = families.first().map_or("", |x| x.mode.label());
    View {
        name: format!("{name} (iptables {mode})"),
        entries: Ok(entries),
    }
}

fn kernel_entries(xtables: &Xtables) -> Result<Entries> {
    let ipv = xtables.family.ipv();
    let saved = restore::parse_save(&xtables.save_all()?)?;
    let mut entries = Entries::new();
    for table in &saved {
        let Some(name) = TableName::ALL.iter().find(|t| t.as_str() == table.name) else {
            continue;
        };
        for chain in table.chains.iter().filter(|c| is_owned_chain(c)) {
            *entries
                .entry(format!("chain {ipv} {} {chain}", table.name))
                .or_default() += 1;
        }
        for rule in table.rules.iter().filter(|r| is_owned_rule(&r.chain, r)) {
            let chain = rule
                .chain
                .strip_suffix("_direct")
                .filter(|base| name.builtin_chains().contains(base))
                .unwrap_or(&rule.chain);
            // Split as iptables-restore would, then name it as a direct rule is named.
            let args = restore::split_restore_args(&rule.line).unwrap_or_default();
            let label = rule_label(&args).unwrap_or_else(|| rule.line.clone());
            *entries
                .entry(format!("rule {ipv} {} {chain} {label}", table.name))
                .or_default() += 1;
        }
    }
    Ok(entries)
}
