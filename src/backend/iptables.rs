//! The raw iptables backend: reads `iptables-save`, plans one `iptables-restore --noflush`
//! transaction per family that removes what we own and adds what is desired, applies it
//! and reads the tables back to verify. With iptables-nft, the read back, and the check that
//! a re-run finds the last run's rules in place, ask nf_tables directly instead of starting
//! `iptables-save`.

use std::fmt;

use anyhow::{anyhow, bail, Context as _, Result};

use super::applied::{self, Record};
use super::xtables::{Mode, RestoreOptions, Xtables, DOCKER_OUTPUT};
use super::{foreign_plan, Backend, Observation, Outcome, Plan};
use crate::family::Family;
use crate::format::report::{BackendInfo, Target, TargetChanges};
use crate::format::restore::{self, SavedTable};
use crate::ownership::{is_ours, is_owned_chain};
use crate::ruleset::{FamilyRules, Ruleset};
use crate::tables::TableName;

pub struct IptablesBackend {
    families: Vec<Xtables>,
    options: RestoreOptions,
    /// Plans show the rules as kumactl's dry run does, reading no table (`install
    /// --dry-run`); with long option names when `verbose`.
    showing_rules: Option<bool>,
    /// A plan for tables that hold nothing of ours may skip reading them (install).
    first_install: Option<FirstInstall>,
    /// What the last transactions changed: each family's tables as they were before, so
    /// [`IptablesBackend::undo`] can put them back.
    undo: Vec<Snapshot>,
}

/// A family's tables as they were before a transaction changed them.
struct Snapshot {
    xtables: Xtables,
    before: String,
    tables: Vec<String>,
}

impl IptablesBackend {
    /// `families` should hold every family whose tables may contain our rules, so that an
    /// IPv4-only install also clears IPv6 rules of an earlier dual-stack one.
    pub fn new(families: Vec<Xtables>, options: RestoreOptions) -> Self {
        Self {
            families,
            options,
            showing_rules: None,
            first_install: None,
            undo: Vec::new(),
        }
    }

    /// Plans print the rules as kumactl's dry run does (long option names when `verbose`)
    /// and read no table.
    pub fn showing_rules(mut self, verbose: bool) -> Self {
        self.showing_rules = Some(verbose);
        self
    }

    /// An install into tables no run of ours left a record for may apply without reading
    /// them first ([`IptablesPlan::Fresh`]). Its rules assume no Docker `DOCKER_OUTPUT`
    /// chain; `with_docker_output` are the rules with it, when they differ.
    pub fn first_install_unread(mut self, with_docker_output: Option<Ruleset>) -> Self {
        self.first_install = Some(FirstInstall { with_docker_output });
        self
    }

    /// Puts back, newest first, the tables the last transactions changed.
    pub fn undo(&mut self) -> Result<()> {
        let mut failures = Vec::new();
        for snapshot in self.undo.drain(..).rev() {
            let tables: Vec<&str> = snapshot.tables.iter().map(String::as_str).collect();
            if let Err(e) = snapshot
                .xtables
                .put_back(&snapshot.before, &tables, &self.options)
            {
                failures.push(format!("{}: {e:#}", snapshot.xtables.family.label()));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("; "))
        }
    }

    /// The transactions that would bring each family to `desired`, without applying them,
    /// and what each family's would change.
    fn transactions(&self, desired: &Ruleset) -> Result<Transactions> {
        // A family whose record still holds needs nothing; nf_tables shows that without a
        // save. The others are saved side by side. Per family: None when it needs nothing,
        // else what nf_tables showed.
        let mut reads = Vec::new();
        for xtables in &self.families {
            let wanted = desired.family(xtables.family);
            let read = wanted.and_then(|_| observe_nf_tables(xtables));
            let settled = read
                .as_ref()
                .is_some_and(|tables| is_recorded_as(xtables, tables, wanted));
            if !settled {
                xtables.prefetch();
            }
            reads.push((!settled).then_some(read));
        }
        let mut planned = Transactions::default();
        for (xtables, read) in self.families.iter().zip(reads) {
            let wanted = desired.family(xtables.family);
            let in_place = || kernel_changes(xtables.family, rule_entries(wanted), wanted);
            let Some(read) = read else {
                planned.changes.push(in_place());
                continue;
            };
            let saved = restore::parse_save(&xtables.snapshot()?)?;
            let seen_in_nf_tables = read.is_some();
            // The tables in the form the raw backend's record keeps them.
            let tables = match read.or_else(|| observe_nf_tables(xtables)) {
                Some(tables) => tables,
                None => observed(&saved),
            };
            if !seen_in_nf_tables && is_recorded_as(xtables, &tables, wanted) {
                planned.changes.push(in_place());
                continue;
            }
            // Our rules as this tool wrote them, when the tables hold what its last change
            // left; else as iptables prints them.
            let before = match applied::recorded_script(xtables, &tables) {
                Some(script) => rule_entries_of(&script),
                None => saved_entries(&saved),
            };
            planned
                .changes
                .push(kernel_changes(xtables.family, before, wanted));
            if let Some(script) = plan_family(&saved, wanted) {
                planned.scripts.push((xtables.clone(), script));
            }
        }
        Ok(planned)
    }
}

/// The transactions that bring each family to the desired rules, and what they change.
#[derive(Default)]
pub struct Transactions {
    /// One `iptables-restore` script per family that needs one.
    scripts: Vec<(Xtables, String)>,
    /// Every family's changes, in the backend's order of families.
    changes: Vec<TargetChanges>,
}

/// A family's kernel target going from our rules `before` to `wanted`.
fn kernel_changes(
    family: Family,
    before: Vec<String>,
    wanted: Option<&FamilyRules>,
) -> TargetChanges {
    TargetChanges::between(Target::Kernel(family), before, rule_entries(wanted))
}

/// `wanted`'s rules as entries of a kernel target: `-t nat -A OUTPUT …`, as we write them.
fn rule_entries(wanted: Option<&FamilyRules>) -> Vec<String> {
    wanted
        .and_then(|wanted| plan_family(&[], Some(wanted)))
        .map_or_else(Vec::new, |script| rule_entries_of(&script))
}

/// The rules a restore script adds, as entries of a kernel target.
fn rule_entries_of(script: &str) -> Vec<String> {
    let mut table = "";
    let mut entries = Vec::new();
    for line in script.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name.trim();
        } else if line.starts_with("-A ") || line.starts_with("-I ") {
            entries.push(format!("-t {table} {line}"));
        }
    }
    entries
}

/// Our rules in saved tables, as entries of a kernel target (in iptables' own form).
fn saved_entries(saved: &[SavedTable]) -> Vec<String> {
    saved
        .iter()
        .flat_map(|table| {
            table
                .rules
                .iter()
                .filter(|rule| is_owned_rule(&rule.chain, rule))
                .map(move |rule| format!("-t {} {}", table.name, rule.line))
        })
        .collect()
}

/// What a first install changes, in tables assumed to hold nothing of ours.
fn fresh_changes(families: &[Xtables], desired: &Ruleset) -> Vec<TargetChanges> {
    families
        .iter()
        .map(|x| kernel_changes(x.family, Vec::new(), desired.family(x.family)))
        .collect()
}

/// See [`IptablesBackend::first_install_unread`].
struct FirstInstall {
    with_docker_output: Option<Ruleset>,
}

/// What the raw backend would do.
pub enum IptablesPlan {
    /// The rules, printed as kumactl's dry run prints them: no table was read.
    Rules { ruleset: Ruleset, verbose: bool },
    /// No run of ours left a record since boot: the rules go in without reading the tables
    /// first, and a plan from the tables follows only when they were not as assumed
    /// ([`IptablesBackend::install_fresh`]). `with_docker_output`: the rules for a family
    /// whose nat table holds Docker's `DOCKER_OUTPUT` chain, when they differ.
    Fresh {
        ruleset: Ruleset,
        with_docker_output: Option<Ruleset>,
        changes: Vec<TargetChanges>,
    },
    /// One `iptables-restore` transaction per family that needs one.
    Transactions {
        ruleset: Ruleset,
        transactions: Transactions,
    },
}

impl IptablesPlan {
    /// What applying the plan would change in each family; None when it only shows the
    /// rules.
    pub fn expected(&self) -> Option<Outcome> {
        match self {
            IptablesPlan::Rules { .. } => None,
            IptablesPlan::Fresh { changes, .. } => Some(Outcome {
                changed: true,
                targets: changes.clone(),
            }),
            IptablesPlan::Transactions { transactions, .. } => Some(Outcome {
                changed: !transactions.scripts.is_empty(),
                targets: transactions.changes.clone(),
            }),
        }
    }
}

impl fmt::Display for IptablesPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IptablesPlan::Rules { ruleset, verbose } => {
                f.write_str(&restore::render_dry_run(ruleset, *verbose))
            }
            IptablesPlan::Fresh { ruleset, .. } => {
                f.write_str(&restore::render_dry_run(ruleset, false))
            }
            IptablesPlan::Transactions { transactions, .. } => {
                for (xtables, script) in &transactions.scripts {
                    writeln!(
                        f,
                        "### {} ###\n\n{}",
                        xtables.family.label(),
                        script.trim_end()
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl Backend for IptablesBackend {
    fn name(&self) -> String {
        match self.families.first() {
            Some(x) => format!("iptables ({})", x.mode.label()),
            None => "iptables".to_string(),
        }
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "iptables",
            name: self.name(),
            firewalld_version: None,
            firewall_backend: None,
        }
    }

    /// The kernel is read apart for every backend; raw iptables keeps nothing else.
    fn observe(&mut self) -> Result<Observation> {
        Ok(Observation::default())
    }

    fn plan(&mut self, desired: &Ruleset) -> Result<Plan> {
        let ruleset = desired.clone();
        if let Some(verbose) = self.showing_rules {
            return Ok(Plan::Iptables(IptablesPlan::Rules { ruleset, verbose }));
        }
        let unrecorded = !self.families.iter().any(|x| applied::is_recorded(x.family));
        if let Some(first) = self.first_install.as_ref().filter(|_| unrecorded) {
            return Ok(Plan::Iptables(IptablesPlan::Fresh {
                changes: fresh_changes(&self.families, &ruleset),
                ruleset,
                with_docker_output: first.with_docker_output.clone(),
            }));
        }
        let transactions = self.transactions(desired)?;
        Ok(Plan::Iptables(IptablesPlan::Transactions {
            ruleset,
            transactions,
        }))
    }

    fn apply(&mut self, plan: Plan) -> Result<Outcome> {
        match plan {
            Plan::Iptables(IptablesPlan::Transactions {
                ruleset,
                transactions,
            }) => self.apply_transactions(&ruleset, &transactions),
            Plan::Iptables(IptablesPlan::Fresh {
                ruleset,
                with_docker_output,
                ..
            }) => {
                if let Some(outcome) = self.install_fresh(&ruleset, with_docker_output.is_some())? {
                    return Ok(outcome);
                }
                // The tables were not as assumed: plan from them (with Docker's chain
                // where a family's nat has it).
                let desired = match with_docker_output {
                    Some(with_docker) => {
                        self.with_docker_output_where_present(&ruleset, &with_docker)?
                    }
                    None => ruleset,
                };
                self.converge(&desired)
            }
            Plan::Iptables(IptablesPlan::Rules { .. }) => {
                bail!("a dry run's plan shows the rules and cannot be applied")
            }
            _ => Err(foreign_plan(&self.name())),
        }
    }
}

impl IptablesBackend {
    /// Plans from the tables and applies.
    pub fn converge(&mut self, desired: &Ruleset) -> Result<Outcome> {
        let transactions = self.transactions(desired)?;
        self.apply_transactions(desired, &transactions)
    }

    /// `ruleset`, with the rules of `with_docker` for each family whose nat table holds
    /// Docker's `DOCKER_OUTPUT` chain.
    fn with_docker_output_where_present(
        &self,
        ruleset: &Ruleset,
        with_docker: &Ruleset,
    ) -> Result<Ruleset> {
        let mut families = Vec::new();
        for family in &ruleset.families {
            let docker = match self.families.iter().find(|x| x.family == family.family) {
                Some(xtables) => xtables.features()?.docker_output_chain,
                None => false,
            };
            let chosen = if docker {
                with_docker.family(family.family).unwrap_or(family)
            } else {
                family
            };
            families.push(chosen.clone());
        }
        Ok(Ruleset { families })
    }

    /// Applies `transactions`, which bring each family to `desired`, and verifies.
    fn apply_transactions(
        &mut self,
        desired: &Ruleset,
        transactions: &Transactions,
    ) -> Result<Outcome> {
        let plans = &transactions.scripts;
        // Each family's transaction is atomic. If one fails, the families applied with it
        // are put back as they were saved, so all change or none.
        self.undo.clear();
        let mut rejected = None;
        let attempts = self.each_family(plans, |(xtables, script)| {
            let before = xtables.snapshot()?;
            let result = xtables.restore(script, &self.options);
            start_reading_back(xtables);
            Ok((before, result))
        });
        for ((xtables, script), attempt) in plans.iter().zip(attempts) {
            let (before, result) = match attempt {
                Ok(attempt) => attempt,
                Err(error) => {
                    rejected.get_or_insert((xtables.family, error));
                    continue;
                }
            };
            let committed = match &result {
                Ok(()) => true,
                Err(error) => may_have_committed(script, error),
            };
            if committed {
                self.undo.push(Snapshot {
                    xtables: xtables.clone(),
                    before,
                    tables: tables_in(script).into_iter().map(String::from).collect(),
                });
            }
            if let Err(error) = result {
                rejected.get_or_insert((xtables.family, error));
            }
        }
        if let Some((family, error)) = rejected {
            let state = match self.undo() {
                Ok(()) => "nothing was changed".to_string(),
                Err(e) => format!("putting back the other families failed: {e:#}"),
            };
            return Err(error.context(format!("{} rules were rejected; {state}", family.label())));
        }
        // Read back: restored families are being read already, any other starts now.
        self.families.iter().for_each(start_reading_back);
        for xtables in &self.families {
            let tables = read_back(xtables)?;
            let wanted = desired.family(xtables.family);
            verify(&tables, wanted).with_context(|| {
                format!(
                    "{} tables do not hold the expected rules after applying",
                    xtables.family.label()
                )
            })?;
            if plans.iter().any(|(x, _)| x.family == xtables.family) {
                // Only a cache for the next run: failing to keep it changes nothing now.
                match record_of(xtables, &tables, wanted) {
                    Some(record) => {
                        let _ = record.store();
                    }
                    None => applied::forget(xtables),
                }
            }
        }
        Ok(Outcome {
            changed: !plans.is_empty(),
            targets: transactions.changes.clone(),
        })
    }
}

impl IptablesBackend {
    /// Installs `desired` into tables that hold nothing of ours without reading them first,
    /// when no run of ours left a record of rules since boot (or since they were removed):
    /// the usual case at boot, where planning would only find them empty. Each family's
    /// transaction refuses to start when our chains exist (`fresh_script`) and the read
    /// back that verifies it shows the rest, so an install takes two steps instead of three.
    /// A family given no rules (IPv6, in an IPv4-only install) must hold none of ours; only
    /// nf_tables can show that without a save, so with legacy iptables this returns `None`.
    ///
    /// `desired` assumes no Docker `DOCKER_OUTPUT` chain; `docker_chain_matters` says
    /// whether the rules would be different with it.
    ///
    /// `None` when the tables were not as assumed, with whatever this added taken out again
    /// (rules of ours outside our chains that were there before go with it: the plan that
    /// follows would remove them anyway). The caller then builds the rules from the tables
    /// as read and converges. What this installs is not for [`Self::undo`] to put back.
    pub fn install_fresh(
        &mut self,
        desired: &Ruleset,
        docker_chain_matters: bool,
    ) -> Result<Option<Outcome>> {
        let mut plans = Vec::new();
        for xtables in &self.families {
            if applied::is_recorded(xtables.family) {
                return Ok(None);
            }
            match desired.family(xtables.family) {
                Some(wanted) => plans.push((xtables.clone(), fresh_script(wanted))),
                // A family left without rules may hold old ones, which only a plan removes;
                // nf_tables shows at once whether it holds any.
                None if observe_nf_tables(xtables).is_some_and(|t| verify(&t, None).is_ok()) => {}
                None => return Ok(None),
            }
        }
        self.undo.clear();
        let attempts = self.each_family(&plans, |(xtables, script)| {
            let result = xtables.restore_once(script, &self.options);
            start_reading_back(xtables);
            Ok(((), result))
        });
        let mut fitted = Vec::new();
        let mut committed = Vec::new();
        for ((xtables, script), attempt) in plans.iter().zip(attempts) {
            let ((), result) = attempt?;
            let tables = read_back(xtables)?;
            let wanted = desired.family(xtables.family);
            let docker_chain = tables
                .iter()
                .any(|t| t.name == "nat" && t.chains.iter().any(|c| c == DOCKER_OUTPUT));
            match result {
                Ok(())
                    if verify(&tables, wanted).is_ok()
                        && !(docker_chain && docker_chain_matters) =>
                {
                    fitted.push((xtables, tables))
                }
                Ok(()) => committed.push(xtables),
                Err(error) if may_have_committed(script, &error) => committed.push(xtables),
                Err(_) => {}
            }
        }
        if fitted.len() == plans.len() {
            for (xtables, tables) in &fitted {
                if let Some(record) = record_of(xtables, tables, desired.family(xtables.family)) {
                    let _ = record.store();
                }
            }
            return Ok(Some(Outcome {
                changed: true,
                targets: fresh_changes(&self.families, desired),
            }));
        }
        for xtables in fitted.into_iter().map(|(x, _)| x).chain(committed) {
            let saved = restore::parse_save(&xtables.snapshot()?)?;
            if let Some(script) = plan_family(&saved, None) {
                xtables.restore(&script, &self.options).with_context(|| {
                    format!(
                        "{} tables were not as expected, and taking back the rules just added failed",
                        xtables.family.label()
                    )
                })?;
            }
        }
        Ok(None)
    }

    /// Runs `apply` for each family's plan, in the order given: an error means nothing was
    /// tried, the inner result is the restore's. nf_tables families go side by side (each
    /// restore is a process; nf_tables takes no lock and retries a commit that raced
    /// another). Legacy ones share the xtables lock, so they go in turn and stop at the
    /// first failure (later ones are not tried).
    fn each_family<T: Send>(
        &self,
        plans: &[(Xtables, String)],
        apply: impl Fn(&(Xtables, String)) -> Result<(T, Result<()>)> + Sync,
    ) -> Vec<Result<(T, Result<()>)>> {
        if plans.iter().all(|(x, _)| x.mode == Mode::Nft) {
            return std::thread::scope(|scope| {
                let running: Vec<_> = plans.iter().map(|p| scope.spawn(|| apply(p))).collect();
                running
                    .into_iter()
                    .map(|r| {
                        r.join().unwrap_or_else(|_| {
                            Err(anyhow!("iptables-restore failed unexpectedly"))
                        })
                    })
                    .collect()
            });
        }
        let mut results = Vec::new();
        for plan in plans {
            let result = apply(plan);
            let failed = !matches!(result, Ok((_, Ok(()))));
            results.push(result);
            if failed {
                break;
            }
        }
        results
    }
}

/// Whether a failed restore of `script` may have committed some of its tables: not when
/// iptables names a failing line of the first table, whose `COMMIT` comes before any
/// other.
fn may_have_committed(script: &str, error: &anyhow::Error) -> bool {
    let Some(first_commit) = script.lines().position(|l| l == "COMMIT") else {
        return false;
    };
    // Line numbers count from 1.
    failed_line(&format!("{error:#}")).is_none_or(|line| line > first_commit + 1)
}

/// The line iptables-restore reports failing: `line N failed` (a command or COMMIT) or
/// `Error occurred at line: N` (a line it could not parse).
fn failed_line(message: &str) -> Option<usize> {
    let number = |text: &str| {
        let digits = text.trim_start();
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    };
    if let Some((_, rest)) = message.split_once("Error occurred at line:") {
        return number(rest);
    }
    message.split("line ").skip(1).find_map(|rest| {
        let (n, after) = rest.split_once(' ')?;
        after.starts_with("failed").then(|| number(n))?
    })
}

/// The script that adds `wanted` to tables holding nothing of ours, without having read
/// them. It fails before anything is committed when one of our chains exists: `-N`
/// refuses it, and iptables commits each table at its `COMMIT`, so the table creating
/// chains (nat) goes first.
fn fresh_script(wanted: &FamilyRules) -> String {
    let mut tables: Vec<_> = wanted.tables.iter().collect();
    tables.sort_by_key(|t| t.chains.is_empty());
    let mut script = String::new();
    for table in tables {
        script.push_str(&format!("*{}\n", table.name));
        for chain in &table.chains {
            script.push_str(&format!("-N {chain}\n"));
        }
        for rule in &table.rules {
            script.push_str(&restore::rule_line(rule, false));
            script.push('\n');
        }
        script.push_str("COMMIT\n");
    }
    script
}

/// What converging `xtables` to `wanted` leaves on record with the tables as `tables`; None
/// when nothing of ours is wanted (or the record cannot be made).
fn record_of(
    xtables: &Xtables,
    tables: &[ObservedTable],
    wanted: Option<&FamilyRules>,
) -> Option<Record> {
    let script = plan_family(&[], Some(wanted?))?;
    Record::new(xtables, &script, tables)
}

/// True when the record of the last change holds for `wanted` and the tables as `tables`.
fn is_recorded_as(
    xtables: &Xtables,
    tables: &[ObservedTable],
    wanted: Option<&FamilyRules>,
) -> bool {
    record_of(xtables, tables, wanted).is_some_and(|r| r.is_stored())
}

/// One table as read, from nf_tables directly or from `iptables-save`: what verifying a
/// change and recording it need.
pub struct ObservedTable {
    pub name: String,
    pub chains: Vec<String>,
    pub rules: Vec<ObservedRule>,
}

pub struct ObservedRule {
    pub chain: String,
    /// See [`is_owned_rule`].
    pub owned: bool,
    /// The rule exactly, in its source's form: iptables' line, or nf_tables' expressions.
    pub text: String,
}

/// The tables in an `iptables-save` as observed.
pub fn observed(saved: &[SavedTable]) -> Vec<ObservedTable> {
    saved
        .iter()
        .map(|table| ObservedTable {
            name: table.name.clone(),
            chains: table.chains.clone(),
            rules: table
                .rules
                .iter()
                .map(|rule| ObservedRule {
                    chain: rule.chain.clone(),
                    owned: is_owned_rule(&rule.chain, rule),
                    text: rule.line.clone(),
                })
                .collect(),
        })
        .collect()
}

/// The tables our rules use, read from nf_tables directly: no process, unlike a save. None
/// for legacy iptables, or when nf_tables does not answer.
fn observe_nf_tables(xtables: &Xtables) -> Option<Vec<ObservedTable>> {
    let names = TableName::ALL.map(TableName::as_str);
    let (chains, rules) = xtables.read_nf_tables(&names)?;
    Some(
        names
            .iter()
            .map(|name| ObservedTable {
                name: name.to_string(),
                chains: chains
                    .iter()
                    .filter(|c| c.table == *name)
                    .map(|c| c.name.clone())
                    .collect(),
                rules: rules
                    .iter()
                    .filter(|r| r.table == *name)
                    .map(|rule| ObservedRule {
                        chain: rule.chain.clone(),
                        owned: is_ours(
                            &rule.chain,
                            |text| rule.mentions(text),
                            rule.verdict_chains(),
                        ),
                        text: rule.fingerprint(),
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// Starts reading `xtables` back after a change, unless nf_tables will show it.
fn start_reading_back(xtables: &Xtables) {
    if xtables.mode != Mode::Nft {
        xtables.prefetch();
    }
}

/// The tables after a change: from nf_tables when it answers, otherwise saved.
fn read_back(xtables: &Xtables) -> Result<Vec<ObservedTable>> {
    match observe_nf_tables(xtables) {
        Some(tables) => Ok(tables),
        None => Ok(observed(&restore::parse_save(&xtables.snapshot()?)?)),
    }
}

/// The tables a restore script changes (`*nat` …).
fn tables_in(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter_map(|l| l.strip_prefix('*'))
        .map(str::trim)
        .collect()
}

/// True for a saved rule we own (see [`is_ours`]).
pub fn is_owned_rule(chain: &str, rule: &restore::SavedRule) -> bool {
    is_ours(
        chain,
        |text| rule.line.contains(text),
        rule.target().into_iter(),
    )
}

/// The restore script that removes every rule and chain we own from `saved` and adds
/// `desired`, table by table; `None` when there is nothing to remove or add.
pub fn plan_family(saved: &[SavedTable], desired: Option<&FamilyRules>) -> Option<String> {
    let mut script = String::new();
    for name in TableName::ALL {
        let existing = saved.iter().find(|t| t.name == name.as_str());
        let wanted = desired.and_then(|d| d.tables.iter().find(|t| t.name == name));
        let mut deletions: Vec<(String, usize)> = Vec::new();
        let mut obsolete_chains: Vec<&str> = Vec::new();
        if let Some(existing) = existing {
            let mut index_in_chain = std::collections::HashMap::<&str, usize>::new();
            for rule in &existing.rules {
                let index = index_in_chain.entry(rule.chain.as_str()).or_insert(0);
                *index += 1;
                // Rules inside our chains go with the chain (flush or delete below).
                if !is_owned_chain(&rule.chain) && is_owned_rule(&rule.chain, rule) {
                    deletions.push((rule.chain.clone(), *index));
                }
            }
            obsolete_chains = existing
                .chains
                .iter()
                .map(String::as_str)
                .filter(|c| is_owned_chain(c))
                .filter(|c| !wanted.is_some_and(|w| w.chains.iter().any(|n| n == c)))
                .collect();
        }
        // With nothing wanted every owned chain is obsolete, so this means: nothing of ours.
        if deletions.is_empty() && obsolete_chains.is_empty() && wanted.is_none() {
            continue;
        }
        script.push_str(&format!("*{name}\n"));
        if let Some(wanted) = wanted {
            // In --noflush mode a chain line creates the chain or empties an existing one.
            for chain in &wanted.chains {
                script.push_str(&format!(":{chain} - [0:0]\n"));
            }
        }
        // Highest index first, so earlier indices stay valid.
        deletions.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        for (chain, index) in &deletions {
            script.push_str(&format!("-D {chain} {index}\n"));
        }
        for chain in &obsolete_chains {
            script.push_str(&format!("-F {chain}\n"));
        }
        for chain in &obsolete_chains {
            script.push_str(&format!("-X {chain}\n"));
        }
        if let Some(wanted) = wanted {
            for rule in &wanted.rules {
                script.push_str(&restore::rule_line(rule, false));
                script.push('\n');
            }
        }
        script.push_str("COMMIT\n");
    }
    (!script.is_empty()).then_some(script)
}

/// After applying: our chains are exactly the desired ones and each table holds as many
/// of our rules as desired.
fn verify(tables: &[ObservedTable], desired: Option<&FamilyRules>) -> Result<()> {
    for name in TableName::ALL {
        let existing = tables.iter().find(|t| t.name == name.as_str());
        let wanted = desired.and_then(|d| d.tables.iter().find(|t| t.name == name));
        let mut chains: Vec<&str> = existing
            .map(|e| {
                e.chains
                    .iter()
                    .map(String::as_str)
                    .filter(|c| is_owned_chain(c))
                    .collect()
            })
            .unwrap_or_default();
        let mut wanted_chains: Vec<&str> = wanted
            .map(|w| w.chains.iter().map(String::as_str).collect())
            .unwrap_or_default();
        chains.sort_unstable();
        wanted_chains.sort_unstable();
        let rules = existing.map_or(0, |e| e.rules.iter().filter(|r| r.owned).count());
        let wanted_rules = wanted.map_or(0, |w| w.rules.len());
        if chains != wanted_chains || rules != wanted_rules {
            bail!(
                "table {name}: found chains {chains:?} and {rules} rules of ours, expected {wanted_chains:?} and {wanted_rules}"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::family::Family;
    use crate::format::restore::parse_save;
    use crate::ruleset::{build, FamilyFacts, Features};

    fn desired() -> Ruleset {
        build(
            &Config::default(),
            &[FamilyFacts {
                family: Family::V4,
                uid: 5678,
                loopback: "lo".into(),
                dns_servers: vec![],
                features: Features::default(),
            }],
        )
    }

    #[test]
    fn empty_tables_and_no_desire_plan_nothing() {
        let saved =
            parse_save("*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j FOREIGN\nCOMMIT\n")
                .unwrap();
        assert_eq!(plan_family(&saved, None), None);
    }

    #[test]
    fn owned_rules_are_deleted_by_index_from_the_bottom_and_foreign_ones_kept() {
        let saved = parse_save(
            "*nat\n:OUTPUT ACCEPT [0:0]\n:KUMA_MESH_OUTBOUND - [0:0]\n:MINE - [0:0]\n\
             -A OUTPUT -j MINE\n\
             -A OUTPUT -p udp -m comment --comment \"kuma/mesh/transparent/proxy/x\" -j RETURN\n\
             -A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND\n\
             -A KUMA_MESH_OUTBOUND -j RETURN\nCOMMIT\n",
        )
        .unwrap();
        let script = plan_family(&saved, None).unwrap();
        assert_eq!(
            script,
            "*nat\n-D OUTPUT 3\n-D OUTPUT 2\n-F KUMA_MESH_OUTBOUND\n-X KUMA_MESH_OUTBOUND\nCOMMIT\n"
        );
    }

    #[test]
    fn install_declares_chains_then_adds_rules() {
        let desired = desired();
        let script = plan_family(&[], desired.family(Family::V4)).unwrap();
        assert!(
            script.starts_with("*nat\n:KUMA_MESH_INBOUND - [0:0]\n"),
            "{script}"
        );
        assert!(script.contains("\n-A OUTPUT -m comment --comment \"kuma/mesh/transparent/proxy/redirect outbound TCP traffic to our custom chain for processing\" -p tcp -j KUMA_MESH_OUTBOUND\n"), "{script}");
        assert!(script.ends_with("COMMIT\n"));
    }

    #[test]
    fn a_fresh_install_creates_the_chains_first_so_an_existing_one_stops_it_before_any_commit() {
        let mut desired = desired();
        let family = desired.families.first_mut().unwrap();
        // Tables come in kumactl's order, raw before nat.
        family.tables.insert(
            0,
            crate::ruleset::Table {
                name: TableName::Raw,
                chains: vec![],
                rules: vec![],
            },
        );
        let script = fresh_script(family);
        assert!(
            script.starts_with("*nat\n-N KUMA_MESH_INBOUND\n"),
            "{script}"
        );
        assert!(script.ends_with("COMMIT\n*raw\nCOMMIT\n"), "{script}");
        assert!(!script.contains("\n:"), "{script}");
    }

    #[test]
    fn a_failure_inside_the_first_table_committed_nothing() {
        let script = "*nat\n-N A\n-A OUTPUT -j A\nCOMMIT\n*raw\n-A OUTPUT -j CT\nCOMMIT\n";
        let failed = |message: &str| may_have_committed(script, &anyhow!("{message}"));
        assert!(!failed(
            "iptables-restore: line 2 failed: Chain already exists."
        ));
        assert!(!failed("iptables-restore: line 4 failed"));
        assert!(failed("iptables-restore: line 6 failed"));
        assert!(!failed(
            "iptables-restore v1.8.9 (nf_tables): Chain 'A' does not exist\nError occurred at line: 3"
        ));
        assert!(failed("Error occurred at line: 5"));
        // No line named: it may have got anywhere.
        assert!(failed("Another app is currently holding the xtables lock."));
        assert!(failed("/opt/line 2 tools/iptables-restore failed"));
    }

    #[test]
    fn verify_counts_our_rules() {
        let desired = desired();
        let saved = parse_save("*nat\n:KUMA_MESH_INBOUND - [0:0]\nCOMMIT\n").unwrap();
        assert!(verify(&observed(&saved), desired.family(Family::V4)).is_err());
        assert!(verify(&[], None).is_ok());
    }
}
