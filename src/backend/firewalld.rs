//! The firewalld backend: our rules as direct entries, applied through firewalld's runtime
//! D-Bus interface one entry at a time (firewalld has no batch call) and, when storing,
//! into the permanent configuration with one `getSettings`/`update` round trip. A failed
//! step undoes the steps before it, so firewalld ends as it was or as wanted.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use zbus::blocking::Connection;

use super::direct_file::{DirectFile, Loaded};
use super::iptables::plan_family;
use super::xtables::{Mode, RestoreOptions, Xtables};
use super::{Backend, Outcome};
use crate::commands::BadInput;
use crate::direct::{self, plan, Change, DirectConfig, Plan};
use crate::format::dbus::{
    self, Failure, FirewallD, PermanentDirect, RuntimeDirect, Settings, WireChain, WirePassthrough,
    WireRule, WireSettings,
};
use crate::format::direct_xml;
use crate::ruleset::Ruleset;

/// A connection to a running firewalld and what it told us about itself.
pub struct Firewalld {
    firewalld: FirewallD<'static>,
    runtime: RuntimeDirect<'static>,
    permanent: PermanentDirect<'static>,
    settings: Settings<'static>,
    pub version: String,
    /// `nftables` or `iptables`.
    pub firewall_backend: String,
    /// The `RFC3964_IPv4` property, when firewalld has it.
    rfc3964_ipv4: Option<String>,
}

/// What is on the system bus.
pub enum Presence {
    /// No system bus, or nobody owns firewalld's name.
    Absent,
    Running(Box<Firewalld>),
    /// firewalld answers but is not RUNNING (`FAILED`, `INIT`).
    NotRunning(String),
}

/// The system bus, connected; firewalld may or may not be on it.
pub struct Bus {
    connection: Connection,
}

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured); None when there is
/// none. Whether firewalld is on it, [`Asked::presence`] finds out.
pub fn connect() -> Result<Option<Bus>> {
    let patience = start_timeout()?;
    let connection = dbus::system_bus(patience).map_err(|e| {
        anyhow!("{e}; is dbus-daemon stuck? Run again once it answers, or wait longer with {START_TIMEOUT_ENV}=SECONDS; nothing was changed")
    })?;
    Ok(connection.map(|connection| Bus { connection }))
}

/// Looks for firewalld on the system bus.
pub fn find() -> Result<Presence> {
    connect()?.map_or(Ok(Presence::Absent), |bus| bus.ask()?.presence())
}

/// How long to wait for the bus, and for a firewalld still starting.
fn start_timeout() -> Result<Duration> {
    Ok(
        crate::host::seconds_from_env(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT)
            .map_err(BadInput)?,
    )
}

impl Bus {
    /// Asks firewalld for its state and settings, without waiting for the answers: the calls
    /// sent after these queue behind them (see [`dbus::Sent`]), so the answers that decide
    /// what to do come first.
    pub fn ask(self) -> Result<Asked> {
        let sent = || -> zbus::Result<Asked> {
            Ok(Asked {
                main: dbus::get_all(&self.connection, dbus::PATH, dbus::SERVICE)?,
                settings: dbus::get_all(
                    &self.connection,
                    dbus::CONFIG_PATH,
                    "org.fedoraproject.FirewallD1.config",
                )?,
                connection: self.connection.clone(),
            })
        };
        sent().map_err(|e| failure("asking firewalld for its state", &e))
    }
}

type Properties = HashMap<String, zbus::zvariant::OwnedValue>;

/// firewalld's state and settings, asked for (see [`Bus::ask`]).
pub struct Asked {
    connection: Connection,
    main: dbus::Sent<Properties>,
    settings: dbus::Sent<Properties>,
}

impl Asked {
    /// Sends the reads of firewalld's runtime and permanent direct configurations; firewalld
    /// answers them right after its state and settings, while we work on those. The answers
    /// are only worth having if nothing reloads firewalld in between.
    pub fn read_in_background(&self) -> Result<Reading> {
        let proxies = || -> zbus::Result<(RuntimeDirect<'static>, PermanentDirect<'static>)> {
            Ok((
                dbus::uncached(&self.connection)?,
                dbus::uncached(&self.connection)?,
            ))
        };
        let (runtime, permanent) =
            proxies().map_err(|e| failure("reading firewalld's direct rules", &e))?;
        Ok(Reading::send(&runtime, &permanent))
    }

    /// firewalld's state, waiting while it starts, and its settings; Absent when nobody owns
    /// firewalld's bus name.
    pub fn presence(mut self) -> Result<Presence> {
        let timeout = start_timeout()?;
        let main = match main_properties_once_started(&mut self.main, timeout)? {
            Some(main) => dbus::strings(main),
            None => return Ok(Presence::Absent),
        };
        let state = main.get("state").cloned().unwrap_or_default();
        if state != "RUNNING" {
            return Ok(Presence::NotRunning(state));
        }
        let mut config = self
            .settings
            .answer()
            .map(dbus::strings)
            .map_err(|e| failure("reading firewalld's settings", &e))?;
        let connection = self.connection;
        let mut build = || -> zbus::Result<Firewalld> {
            Ok(Firewalld {
                firewalld: dbus::uncached(&connection)?,
                runtime: dbus::uncached(&connection)?,
                permanent: dbus::uncached(&connection)?,
                settings: dbus::uncached(&connection)?,
                version: main.get("version").cloned().unwrap_or_default(),
                firewall_backend: config.remove("FirewallBackend").unwrap_or_default(),
                rfc3964_ipv4: config.remove("RFC3964_IPv4"),
            })
        };
        Ok(Presence::Running(Box::new(build()?)))
    }
}

/// How long a run waits for the system bus and a starting firewalld by default.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Overrides [`DEFAULT_START_TIMEOUT`]: a whole number of seconds.
pub const START_TIMEOUT_ENV: &str = "TPROXY_FIREWALLD_START_TIMEOUT";
/// How long firewalld may take to answer before we tell the operator we are waiting.
const PATIENCE: Duration = Duration::from_secs(1);

/// firewalld's main properties (`state`, `version`), waiting while it starts; None when
/// nobody owns its name.
///
/// firewalld takes its bus name before it loads its configuration and answers no call until
/// it has (state INIT, which therefore can never be read). systemd counts a `Type=dbus`
/// service as started once it owns its name, so a unit ordered after firewalld.service can
/// land in that window: there, we wait (saying so) instead of hanging silently or failing.
fn main_properties_once_started(
    main: &mut dbus::Sent<Properties>,
    timeout: Duration,
) -> Result<Option<Properties>> {
    let answer = match main.answer_within(PATIENCE) {
        Some(answer) => answer,
        None => {
            eprintln!(
                "tproxy-firewalld: firewalld is starting (it owns its bus name but answers no call yet); waiting up to {} s for it",
                timeout.as_secs()
            );
            main.answer_within(timeout.saturating_sub(PATIENCE))
                .ok_or_else(|| {
                    anyhow!(
                        "firewalld is still starting after {} s (it answers no call); run again once `firewall-cmd --state` prints running, or wait longer with {START_TIMEOUT_ENV}=SECONDS; nothing was changed",
                        timeout.as_secs()
                    )
                })?
        }
    };
    match answer {
        Ok(main) => Ok(Some(main)),
        Err(error) if dbus::is_unowned_name(&error) => Ok(None),
        Err(error) => Err(failure("reading firewalld's state", &error)),
    }
}

/// An error naming what we were doing, firewalld's answer and, where we know it, the fix.
fn failure(step: &str, error: &zbus::Error) -> anyhow::Error {
    let failure = Failure::from(error);
    let hint = match &failure {
        Failure::NotAuthorized(_) | Failure::AccessDenied(_) => {
            "; run as root (or grant org.fedoraproject.FirewallD1.direct and .config through polkit)"
        }
        Failure::Firewalld { code, .. } if code == "ACCESS_DENIED" => {
            "; firewalld's lockdown refuses this program: add it to lockdown-whitelist.xml or turn Lockdown off"
        }
        Failure::Firewalld { code, .. } if code == "RUNNING_BUT_FAILED" => {
            "; firewalld is in FAILED state: fix its configuration (firewall-cmd --check-config) and restart it"
        }
        _ => "",
    };
    anyhow!("{step}: {failure}{hint}")
}

/// The three runtime lists, asked for: firewalld has no call that returns them together.
struct RuntimeReading {
    chains: dbus::Sent<Vec<WireChain>>,
    rules: dbus::Sent<Vec<WireRule>>,
    passthroughs: dbus::Sent<Vec<WirePassthrough>>,
}

impl RuntimeReading {
    fn send(runtime: &RuntimeDirect<'static>) -> Self {
        let proxy = runtime.inner();
        RuntimeReading {
            chains: dbus::Sent::call(proxy, "getAllChains", ()),
            rules: dbus::Sent::call(proxy, "getAllRules", ()),
            passthroughs: dbus::Sent::call(proxy, "getAllPassthroughs", ()),
        }
    }

    fn answer(self) -> Result<DirectConfig> {
        let answers = || -> zbus::Result<DirectConfig> {
            Ok(dbus::from_wire((
                self.chains.answer()?,
                self.rules.answer()?,
                self.passthroughs.answer()?,
            )))
        };
        answers().map_err(|e| failure("reading firewalld's runtime direct rules", &e))
    }
}

fn send_permanent_read(permanent: &PermanentDirect<'static>) -> dbus::Sent<WireSettings> {
    dbus::Sent::call(permanent.inner(), "getSettings", ())
}

fn permanent_answer(sent: dbus::Sent<WireSettings>) -> Result<DirectConfig> {
    sent.answer()
        .map(dbus::from_wire)
        .map_err(|e| failure("reading firewalld's permanent direct rules", &e))
}

/// firewalld's runtime and permanent direct configuration, asked for.
pub struct Reading {
    runtime: RuntimeReading,
    permanent: dbus::Sent<WireSettings>,
}

impl Reading {
    fn send(runtime: &RuntimeDirect<'static>, permanent: &PermanentDirect<'static>) -> Self {
        Reading {
            runtime: RuntimeReading::send(runtime),
            permanent: send_permanent_read(permanent),
        }
    }

    /// (runtime, permanent), once both answers are in.
    fn wait(self) -> Result<(DirectConfig, DirectConfig)> {
        Ok((self.runtime.answer()?, permanent_answer(self.permanent)?))
    }
}

impl Firewalld {
    pub fn runtime_config(&self) -> Result<DirectConfig> {
        RuntimeReading::send(&self.runtime).answer()
    }

    pub fn permanent_config(&self) -> Result<DirectConfig> {
        permanent_answer(send_permanent_read(&self.permanent))
    }

    /// Sends the reads of both configurations, so that probing iptables and building the
    /// rules overlap firewalld's answers: each read is a round trip to firewalld's Python.
    pub fn read_in_background(&self) -> Reading {
        Reading::send(&self.runtime, &self.permanent)
    }

    fn update_permanent(&self, config: &DirectConfig) -> Result<()> {
        self.permanent
            .update(&dbus::to_wire(config))
            .map_err(|e| failure("writing firewalld's permanent direct rules", &e))
    }

    /// `RFC3964_IPv4` from firewalld.conf, as firewalld reads it (on when unset; off for
    /// `no` or `false`).
    pub fn rfc3964_ipv4(&self) -> bool {
        !self
            .rfc3964_ipv4
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("no") || v.eq_ignore_ascii_case("false"))
    }

    /// Sets `RFC3964_IPv4=no` in firewalld.conf and reloads, so firewalld stops rejecting
    /// packets to `::/96` (`::1` among them, where IPv6 redirection sends local traffic).
    pub fn disable_rfc3964_ipv4(&self) -> Result<()> {
        self.settings
            .set_rfc3964_ipv4("no")
            .map_err(|e| failure("setting RFC3964_IPv4=no", &e))?;
        self.firewalld
            .reload()
            .map_err(|e| failure("reloading firewalld", &e))
    }

    fn apply(&self, change: &Change) -> zbus::Result<()> {
        let r = &self.runtime;
        match change {
            Change::AddChain(c) => r.add_chain(&c.ipv, &c.table, &c.chain),
            Change::RemoveChain(c) => r.remove_chain(&c.ipv, &c.table, &c.chain),
            Change::AddRule(x) => r.add_rule(&x.ipv, &x.table, &x.chain, x.priority, &x.args),
            Change::RemoveRule(x) => r.remove_rule(&x.ipv, &x.table, &x.chain, x.priority, &x.args),
            Change::AddPassthrough(p) => r.add_passthrough(&p.ipv, &p.args),
            Change::RemovePassthrough(p) => r.remove_passthrough(&p.ipv, &p.args),
        }
    }

    /// Applies `changes` to the runtime in order and returns those it made (not those
    /// firewalld already had); on a failure undoes what was done.
    fn apply_runtime<'a>(&self, changes: &'a [Change]) -> Result<Vec<&'a Change>> {
        let mut done: Vec<&Change> = Vec::new();
        for change in changes {
            match self.apply(change) {
                Ok(()) => done.push(change),
                Err(e) if already_done(change, &e) => {}
                Err(e) => {
                    let undo_failures = self.undo(&done);
                    let mut message =
                        format!("firewalld refused `{change}`: {}; ", Failure::from(&e));
                    if undo_failures.is_empty() {
                        message.push_str(&format!(
                            "the {} change(s) before it were undone, nothing is changed",
                            done.len()
                        ));
                    } else {
                        message.push_str(&format!(
                            "undoing the changes before it failed too ({}); run uninstall",
                            undo_failures.join("; ")
                        ));
                    }
                    bail!(message);
                }
            }
        }
        Ok(done)
    }

    /// Reverts `done` and says how that went, naming the changes `what`.
    fn undo_described(&self, done: &[&Change], what: &str) -> String {
        let failures = self.undo(done);
        if failures.is_empty() {
            format!("{what} were undone, nothing is changed")
        } else {
            format!(
                "undoing {what} failed too ({}); run uninstall",
                failures.join("; ")
            )
        }
    }

    /// Reverts `done` in reverse order; returns what could not be reverted.
    fn undo(&self, done: &[&Change]) -> Vec<String> {
        done.iter()
            .rev()
            .filter_map(|change| {
                let inverse = change.inverse();
                match self.apply(&inverse) {
                    Err(e) if !already_done(&inverse, &e) => {
                        Some(format!("`{inverse}`: {}", Failure::from(&e)))
                    }
                    _ => None,
                }
            })
            .collect()
    }
}

/// firewalld reports an addition of something present, or a removal of something absent,
/// as an error; for us the entry is as wanted.
fn already_done(change: &Change, error: &zbus::Error) -> bool {
    let code = Failure::from(error);
    match code.code() {
        Some("ALREADY_ENABLED") => change.is_addition(),
        Some("NOT_ENABLED") => !change.is_addition(),
        _ => false,
    }
}

/// What the backend would do, per target.
pub struct FirewalldPlan {
    pub runtime: Plan,
    /// The permanent plan and the whole new permanent configuration, when storing.
    pub permanent: Option<(Plan, DirectConfig)>,
    /// Our entries, as they will be.
    pub desired: DirectConfig,
    /// direct.xml as read before the change.
    file: Option<Loaded>,
    /// direct.xml.old, when it seems to hold the layout an interrupted run lost (see
    /// [`FirewalldBackend::recover_file_layout`]).
    lost_layout: Option<Loaded>,
    /// Not storing, and the permanent configuration holds other entries of ours: they
    /// come back at the next reload.
    pub permanent_differs: bool,
    /// firewalld's runtime has no direct entry at all yet.
    runtime_was_empty: bool,
}

pub struct FirewalldBackend {
    firewalld: Box<Firewalld>,
    /// Also change the permanent configuration (direct.xml); uninstall always does.
    store: bool,
    /// firewalld's direct.xml: a malformed one is never rewritten, and firewalld would
    /// rewrite it from what it managed to parse if we changed the permanent configuration.
    file: DirectFile,
    /// Used to check every rule with `iptables-restore --test` before anything is written.
    checkers: Vec<Xtables>,
    options: RestoreOptions,
    /// The operator accepts that firewalld 2.x flushes other tools' iptables rules.
    flush_accepted: bool,
    /// Both configurations, read while the rules were built; the first plan uses them.
    reading: Option<Reading>,
}

impl FirewalldBackend {
    pub fn new(
        firewalld: Box<Firewalld>,
        store: bool,
        file: DirectFile,
        checkers: Vec<Xtables>,
        options: RestoreOptions,
    ) -> Self {
        Self {
            firewalld,
            store,
            file,
            checkers,
            options,
            flush_accepted: false,
            reading: None,
        }
    }

    /// Plans from configurations [`Firewalld::read_in_background`] is reading.
    pub fn with_reading(mut self, reading: Option<Reading>) -> Self {
        self.reading = reading;
        self
    }

    /// Accept that firewalld 2.x (nftables backend) flushes iptables at our first entry.
    pub fn accept_iptables_flush(mut self, accepted: bool) -> Self {
        self.flush_accepted = accepted;
        self
    }

    /// firewalld 2.x on its nftables backend leaves iptables alone until the first direct
    /// entry appears at runtime, then flushes every iptables and ip6tables table once. If
    /// our first entry would do that to rules of other tools (Docker, CNI, by hand), say so
    /// and change nothing unless the operator accepted it.
    fn refuse_foreign_flush(&self, plan: &FirewalldPlan) -> Result<()> {
        let major = self
            .firewalld
            .version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok());
        let flushes =
            major.is_some_and(|m| m >= 2) && self.firewalld.firewall_backend == "nftables";
        if !flushes
            || !plan.runtime_was_empty
            || plan.runtime.count(true) == 0
            || self.flush_accepted
        {
            return Ok(());
        }
        let mut found = Vec::new();
        for xtables in &self.checkers {
            let saved = crate::format::restore::parse_save(&xtables.snapshot()?)?;
            for table in &saved {
                let rules = table
                    .rules
                    .iter()
                    .filter(|r| !super::iptables::is_owned_rule(&r.chain, r))
                    .count();
                if rules > 0 {
                    found.push(format!(
                        "{} {}: {rules}",
                        xtables.family.label(),
                        table.name
                    ));
                }
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        bail!(
            "firewalld {} flushes every iptables and ip6tables table when the first direct rule is added, and other tools have rules there ({}); they would be lost, so nothing was changed: move them into firewalld, or pass --accept-firewalld-iptables-flush",
            self.firewalld.version,
            found.join(", ")
        )
    }

    pub fn firewalld(&self) -> &Firewalld {
        &self.firewalld
    }

    pub fn plan(&mut self, ruleset: &Ruleset) -> Result<FirewalldPlan> {
        // Read while firewalld answers the reads in flight.
        let file = if self.store {
            self.file.load().context(
                "firewalld's direct.xml is malformed; fix it first (firewalld would replace it with the part it could parse)",
            )?
        } else {
            None
        };
        let lost_layout = file.as_ref().and_then(|file| self.lost_layout(file));
        let (runtime, stored) = match self.reading.take() {
            Some(reading) => reading.wait()?,
            None => (
                self.firewalld.runtime_config()?,
                self.firewalld.permanent_config()?,
            ),
        };
        let mut stored_elsewise = None;
        let permanent = if self.store {
            Some(stored)
        } else {
            stored_elsewise = Some(stored);
            None
        };
        // Priorities follow the stored rules when storing, so both targets agree.
        let desired = direct::translate(ruleset, permanent.as_ref().unwrap_or(&runtime));
        let permanent = permanent.map(|current| {
            let plan = plan(&current, &desired);
            (plan, current.with_owned(&desired))
        });
        Ok(FirewalldPlan {
            runtime: plan(&runtime, &desired),
            permanent,
            runtime_was_empty: runtime.is_empty(),
            permanent_differs: stored_elsewise
                .is_some_and(|stored| !same_entries(&stored.owned(), &desired)),
            desired,
            file,
            lost_layout,
        })
    }

    /// `iptables-restore --test` of our rules for each family, as firewalld will apply them.
    fn check(&self, ruleset: &Ruleset) -> Result<()> {
        let checks: Vec<(&Xtables, String)> = ruleset
            .families
            .iter()
            .filter_map(|family| {
                let checker = self.checkers.iter().find(|x| x.family == family.family)?;
                Some((checker, plan_family(&[], Some(family))?))
            })
            .collect();
        let run = |(checker, script): &(&Xtables, String)| {
            checker
                .test_restore(script, &self.options)
                .with_context(|| {
                    format!(
                        "{} rules were rejected by {}",
                        checker.family.label(),
                        checker.restore.display()
                    )
                })
        };
        if !self.checks_take_no_lock() {
            return checks.iter().try_for_each(run);
        }
        std::thread::scope(|scope| {
            let running: Vec<_> = checks.iter().map(|c| scope.spawn(move || run(c))).collect();
            running.into_iter().try_for_each(joined)
        })
    }

    /// nf_tables iptables takes no xtables lock; legacy checks could collide with the
    /// `iptables-restore` firewalld runs for each runtime call (when --wait is 0).
    fn checks_take_no_lock(&self) -> bool {
        self.checkers.iter().all(|x| x.mode == Mode::Nft)
    }

    /// Checks the rules and applies the runtime changes; returns the changes made.
    ///
    /// The check guards the permanent configuration, which firewalld loads only at its next
    /// start: a rule iptables rejects would leave it FAILED then. At runtime firewalld applies
    /// each entry with iptables itself and refuses what iptables rejects. So, when the check
    /// takes no lock, it runs beside the runtime calls (they are undone if it fails) and
    /// passes before `update` is called.
    fn check_and_apply_runtime<'a>(
        &self,
        plan: &'a FirewalldPlan,
        desired: &Ruleset,
    ) -> Result<Vec<&'a Change>> {
        if !self.checks_take_no_lock() {
            self.check(desired)
                .context("nothing was written to firewalld")?;
            return self.firewalld.apply_runtime(&plan.runtime.changes);
        }
        let (checked, applied) = std::thread::scope(|scope| {
            let check = scope.spawn(|| self.check(desired));
            let applied = self.firewalld.apply_runtime(&plan.runtime.changes);
            (joined(check), applied)
        });
        match (checked, applied) {
            (Ok(()), applied) => applied,
            (Err(rejected), Ok(done)) => Err(rejected.context(
                self.firewalld
                    .undo_described(&done, "the runtime changes made meanwhile"),
            )),
            // firewalld refused a rule too, and undid what came before it.
            (Err(rejected), Err(refused)) => Err(rejected.context(format!("{refused:#}"))),
        }
    }
}

/// A scoped thread's result; a panic (never expected) becomes an error.
fn joined(thread: std::thread::ScopedJoinHandle<'_, Result<()>>) -> Result<()> {
    thread
        .join()
        .unwrap_or_else(|_| Err(anyhow!("checking the rules failed unexpectedly")))
}

impl Backend for FirewalldBackend {
    fn name(&self) -> String {
        format!(
            "firewalld {} ({} backend)",
            self.firewalld.version, self.firewalld.firewall_backend
        )
    }

    fn converge(&mut self, desired: &Ruleset) -> Result<Outcome> {
        let plan = self.plan(desired)?;
        self.refuse_foreign_flush(&plan)?;
        let writes =
            !plan.runtime.is_empty() || plan.permanent.as_ref().is_some_and(|(p, _)| !p.is_empty());
        // Uninstall --keep-permanent leaves them on purpose and says so itself.
        if plan.permanent_differs && !plan.desired.is_empty() {
            eprintln!("tproxy-firewalld: firewalld's permanent configuration holds transparent-proxy rules of an earlier --store-firewalld install; they come back at the next reload (add --store-firewalld to replace them, or uninstall)");
        }
        let done = if writes {
            self.check_and_apply_runtime(&plan, desired)?
        } else {
            Vec::new()
        };
        if let Some((permanent, settings)) = &plan.permanent {
            if !permanent.is_empty() {
                if let Err(error) = self.firewalld.update_permanent(settings) {
                    let state = self.firewalld.undo_described(&done, "the runtime changes");
                    return Err(error.context(state));
                }
                self.keep_file_layout(&plan)?;
            } else {
                self.recover_file_layout(&plan)?;
            }
        }
        // Without writes the plan was made from what was just read: nothing to read back.
        if writes {
            self.verify(&plan)?;
        }
        let mut summary = vec![format!("runtime: {}", describe(&plan.runtime))];
        if let Some((permanent, _)) = &plan.permanent {
            summary.push(format!("permanent: {}", describe(permanent)));
        }
        Ok(Outcome {
            changed: writes,
            summary,
        })
    }
}

impl FirewalldBackend {
    /// firewalld rewrites direct.xml in its own layout on `update`, dropping the operator's
    /// comments and formatting. The same entries are written back in the original layout
    /// (our entries replaced, every other byte kept); firewalld's file watcher then reads
    /// what it already holds. direct.xml.old keeps the file as it was before the change.
    fn keep_file_layout(&self, plan: &FirewalldPlan) -> Result<()> {
        let Some(before) = &plan.file else {
            return Ok(());
        };
        if let Some(text) = DirectFile::planned_text(Some(before), &plan.desired) {
            // firewalld's update left the operator's file in direct.xml.old: keep it there, so
            // a run killed at any point here can still find the layout (recover_file_layout).
            self.file
                .write_keeping_old(&text, None)
                .context("firewalld stored the rules; keeping direct.xml's own layout failed")?;
        }
        Ok(())
    }

    /// A run killed after firewalld's `update` but before [`Self::keep_file_layout`] leaves
    /// direct.xml in firewalld's layout and the operator's file in direct.xml.old (firewalld
    /// backs the file up before writing it); the permanent configuration is already as
    /// desired, so no later run would call `keep_file_layout`. This finishes that run's work:
    /// when direct.xml is exactly firewalld's rendering of its entries, direct.xml.old is not
    /// ([`Self::lost_layout`]), and direct.xml.old with our entries replaced holds the same
    /// entries as direct.xml, that text becomes direct.xml (and direct.xml.old stays as it
    /// was). Only the layout changes.
    fn recover_file_layout(&self, plan: &FirewalldPlan) -> Result<()> {
        let (Some(current), Some(old)) = (&plan.file, &plan.lost_layout) else {
            return Ok(());
        };
        let text = old.document.with_owned(&plan.desired);
        let same = direct_xml::parse(&text)
            .is_ok_and(|doc| same_entries(&doc.config(), &current.document.config()));
        if text == current.text || !same {
            return Ok(());
        }
        self.file
            .write_keeping_old(&text, Some(current))
            .context("putting back direct.xml's own layout, lost by an interrupted run, failed")
    }

    /// direct.xml.old when direct.xml is exactly firewalld's rendering of its entries and
    /// direct.xml.old is not: the layout an interrupted run may have lost. Looked at while
    /// firewalld answers our reads; only the files decide it.
    fn lost_layout(&self, current: &Loaded) -> Option<Loaded> {
        if current.text != direct_xml::render(&current.document.config()) {
            return None;
        }
        let old = DirectFile::at(&self.file.old_path()).load().ok()??;
        (old.text != direct_xml::render(&old.document.config())).then_some(old)
    }

    /// Reads both targets back: our entries must be exactly the desired ones.
    fn verify(&self, plan: &FirewalldPlan) -> Result<()> {
        let same = |have: &DirectConfig| same_entries(&have.owned(), &plan.desired);
        let (runtime, permanent) = self.firewalld.read_in_background().wait()?;
        if !same(&runtime) {
            bail!("firewalld's runtime direct rules differ from the plan after applying it");
        }
        if plan.permanent.is_some() && !same(&permanent) {
            bail!("firewalld's permanent direct rules differ from the plan after applying it");
        }
        Ok(())
    }
}

/// The same entries, in whatever order.
fn same_entries(a: &DirectConfig, b: &DirectConfig) -> bool {
    let sorted = |c: &DirectConfig| {
        let mut c = c.clone();
        c.chains.sort();
        c.rules.sort();
        c.passthroughs.sort();
        c
    };
    sorted(a) == sorted(b)
}

/// `3 added, 1 removed, 40 unchanged`.
pub fn describe(plan: &Plan) -> String {
    format!(
        "{} added, {} removed, {} unchanged",
        plan.count(true),
        plan.count(false),
        plan.unchanged
    )
}
