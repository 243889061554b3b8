//! The firewalld backend: our rules as direct entries, applied one entry at a time
//! (firewalld has no batch call) to firewalld's runtime and, when storing, to its permanent
//! configuration, which firewalld writes to direct.xml itself.
//!
//! firewalld is shared. It handles one D-Bus call at a time, and each per-entry call of its
//! permanent interface is a read-modify-write inside firewalld, so no entry another client
//! writes meanwhile can be lost (a client's own `getSettings`/`update` round trip would drop
//! it). A refused step undoes the steps before it, so firewalld ends as it was or as wanted.
//! A reload or restart during the run (firewalld's `Reloaded` signal, its bus name changing
//! owner, a call it never answered, our entries not as applied) makes the run read, plan and
//! apply again, a bounded number of times.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use zbus::blocking::Connection;

use super::direct_file::{DirectFile, Loaded};
use super::xtables::Xtables;
use super::{foreign_plan, Backend, Observation, Outcome, Plan, View, ViewKind};
use crate::config::START_TIMEOUT_ENV;
use crate::direct::{self, diff, Change, Diff, DirectChain, DirectConfig, DirectRule, Passthrough};
use crate::format::direct_xml;
use crate::format::report::{self, BackendInfo, TargetChanges};
use crate::ruleset::Ruleset;
use crate::system::bus::{
    self, Disruption, Disruptions, Failure, FirewallD, PermanentDirect, RuntimeChange,
    RuntimeChanges, RuntimeDirect, Settings, WireChain, WirePassthrough, WireRule, WireSettings,
};
use crate::system::{notice, Code};

/// A connection to a running firewalld and what it told us about itself.
pub struct Firewalld {
    connection: Connection,
    /// How long to wait for firewalld while it starts (or restarts).
    patience: Duration,
    firewalld: FirewallD<'static>,
    runtime: RuntimeDirect<'static>,
    permanent: PermanentDirect<'static>,
    settings: Settings<'static>,
    pub version: String,
    /// `nftables` or `iptables`.
    pub firewall_backend: String,
    /// The `RFC3964_IPv4` property, when firewalld has it.
    rfc3964_ipv4: Option<String>,
    /// The `FlushAllOnReload` property, when firewalld has it.
    flush_all_on_reload: Option<String>,
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
    /// How long to wait for firewalld while it starts (or restarts).
    patience: Duration,
}

/// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` is honoured); None when there is
/// none. `patience`: how long the bus, and firewalld while it starts, may take to answer.
/// Whether firewalld is on it, [`PendingPresence::presence`] finds out.
pub fn connect(patience: Duration) -> Result<Option<Bus>> {
    let connection = bus::system_bus(patience).map_err(|e| {
        anyhow!("{e}; is dbus-daemon stuck? Run again once it answers, or wait longer with {START_TIMEOUT_ENV}=SECONDS; nothing was changed")
    })?;
    Ok(connection.map(|connection| Bus {
        connection,
        patience,
    }))
}

/// Looks for firewalld on the system bus.
pub fn find(patience: Duration) -> Result<Presence> {
    connect(patience)?.map_or(Ok(Presence::Absent), |bus| bus.ask()?.presence())
}

impl Bus {
    /// Asks firewalld for its state and settings, without waiting for the answers: the calls
    /// sent after these queue behind them (see [`bus::Pending`]), so the answers that decide
    /// what to do come first.
    pub fn ask(self) -> Result<PendingPresence> {
        let sent = || -> zbus::Result<PendingPresence> {
            Ok(PendingPresence {
                main: bus::get_all(&self.connection, bus::PATH, bus::SERVICE)?,
                settings: bus::get_all(
                    &self.connection,
                    bus::CONFIG_PATH,
                    "org.fedoraproject.FirewallD1.config",
                )?,
                connection: self.connection.clone(),
                patience: self.patience,
            })
        };
        sent().map_err(|e| failure("asking firewalld for its state", &e))
    }
}

type Properties = HashMap<String, zbus::zvariant::OwnedValue>;

/// firewalld's state and settings, asked for (see [`Bus::ask`]).
pub struct PendingPresence {
    connection: Connection,
    patience: Duration,
    main: bus::Pending<Properties>,
    settings: bus::Pending<Properties>,
}

impl PendingPresence {
    /// Sends the reads of firewalld's runtime and permanent direct configurations; firewalld
    /// answers them right after its state and settings, while we work on those. Whatever
    /// reloads or restarts firewalld from here on is watched for: the watch is set up while
    /// firewalld answers the first two calls, before the reads go out.
    pub fn read_in_background(&self) -> Result<PendingConfigs> {
        let proxies = || -> zbus::Result<(RuntimeDirect<'static>, PermanentDirect<'static>)> {
            Ok((
                bus::uncached(&self.connection)?,
                bus::uncached(&self.connection)?,
            ))
        };
        let (runtime, permanent) =
            proxies().map_err(|e| failure("reading firewalld's direct rules", &e))?;
        let disruptions = watch(&self.connection)?;
        Ok(PendingConfigs::send(&runtime, &permanent, disruptions))
    }

    /// firewalld's state, waiting while it starts, and its settings; Absent when nobody owns
    /// firewalld's bus name. firewalld leaving the bus before it answered (a restart) makes
    /// this ask again once it is back.
    pub fn presence(self) -> Result<Presence> {
        let connection = self.connection.clone();
        let self_patience = self.patience;
        match self.answers() {
            Err(error) if is_gone(&error) => presence_once_back(&connection, self_patience),
            presence => presence,
        }
    }

    fn answers(mut self) -> Result<Presence> {
        let timeout = self.patience;
        let main = match main_properties_once_started(&mut self.main, timeout)? {
            Some(main) => bus::strings(main),
            None => return Ok(Presence::Absent),
        };
        let state = main.get("state").cloned().unwrap_or_default();
        if state != "RUNNING" {
            return Ok(Presence::NotRunning(state));
        }
        let mut config = self
            .settings
            .answer()
            .map(bus::strings)
            .map_err(|e| failure("reading firewalld's settings", &e))?;
        let connection = self.connection;
        let mut build = || -> zbus::Result<Firewalld> {
            Ok(Firewalld {
                connection: connection.clone(),
                patience: timeout,
                firewalld: bus::uncached(&connection)?,
                runtime: bus::uncached(&connection)?,
                permanent: bus::uncached(&connection)?,
                settings: bus::uncached(&connection)?,
                version: main.get("version").cloned().unwrap_or_default(),
                firewall_backend: config.remove("FirewallBackend").unwrap_or_default(),
                rfc3964_ipv4: config.remove("RFC3964_IPv4"),
                flush_all_on_reload: config.remove("FlushAllOnReload"),
            })
        };
        Ok(Presence::Running(Box::new(build()?)))
    }
}

/// firewalld's presence after it left the bus: asked again until it is back, for up to the
/// start timeout; Absent when it is still gone then (it stopped).
fn presence_once_back(connection: &Connection, patience: Duration) -> Result<Presence> {
    let deadline = Instant::now() + patience;
    let mut told = false;
    loop {
        let bus = Bus {
            connection: connection.clone(),
            patience,
        };
        let presence = bus.ask()?.answers();
        let gone = match &presence {
            Ok(Presence::Absent) => true,
            Err(error) => is_gone(error),
            Ok(_) => false,
        };
        if !gone || Instant::now() >= deadline {
            return presence;
        }
        if !told {
            let seconds = patience.as_secs();
            notice(
                Code::FirewalldRestarting,
                format!("firewalld left the bus during the run (restarting?); waiting up to {seconds} s for it"),
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How long a run waits for the system bus and a starting firewalld by default.
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
    main: &mut bus::Pending<Properties>,
    timeout: Duration,
) -> Result<Option<Properties>> {
    let answer = match main.answer_within(PATIENCE) {
        Some(answer) => answer,
        None => {
            notice(Code::FirewalldStarting, format!(
                "firewalld is starting (it owns its bus name but answers no call yet); waiting up to {} s for it",
                timeout.as_secs()
            ));
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
        Err(error) if bus::is_unowned_name(&error) => Ok(None),
        Err(error) => Err(failure("reading firewalld's state", &error)),
    }
}

/// An error naming what we were doing, firewalld's answer and, where we know it, the fix.
fn failure(step: &str, error: &zbus::Error) -> anyhow::Error {
    Refusal {
        step: step.to_string(),
        failure: Failure::from(error),
    }
    .into()
}

/// What to do when firewalld stops answering mid-run: the calls already sent may still be
/// made, so the state is known only once it answers again.
fn silent_remedy() -> String {
    format!("is it hung (`systemctl status firewalld`)? The calls already sent may still take effect: once `firewall-cmd --state` answers, run again (install, or uninstall); a firewalld busy for longer can be waited for with {START_TIMEOUT_ENV}=SECONDS")
}

/// A call firewalld refused or never answered, and what we were doing.
#[derive(Debug)]
struct Refusal {
    step: String,
    failure: Failure,
}

impl std::error::Error for Refusal {}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match &self.failure {
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
        write!(f, "{}: {}{hint}", self.step, self.failure)?;
        if self.failure.is_silent() {
            write!(f, "; {}", silent_remedy())?;
        }
        Ok(())
    }
}

/// Whether `error` is firewalld leaving the bus in the middle of a call (a restart, or a
/// stop): not an answer about what was asked.
fn is_gone(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<Refusal>()
        .is_some_and(|r| matches!(r.failure, Failure::Gone(_)))
}

/// The three runtime lists, asked for: firewalld has no call that returns them together.
struct PendingRuntime {
    chains: bus::Pending<Vec<WireChain>>,
    rules: bus::Pending<Vec<WireRule>>,
    passthroughs: bus::Pending<Vec<WirePassthrough>>,
}

impl PendingRuntime {
    fn send(runtime: &RuntimeDirect<'static>) -> Self {
        let proxy = runtime.inner();
        PendingRuntime {
            chains: bus::Pending::call(proxy, "getAllChains", ()),
            rules: bus::Pending::call(proxy, "getAllRules", ()),
            passthroughs: bus::Pending::call(proxy, "getAllPassthroughs", ()),
        }
    }

    fn answer(self) -> Result<DirectConfig> {
        let answers = || -> zbus::Result<DirectConfig> {
            Ok(from_wire((
                self.chains.answer()?,
                self.rules.answer()?,
                self.passthroughs.answer()?,
            )))
        };
        answers().map_err(|e| failure("reading firewalld's runtime direct rules", &e))
    }
}

fn send_permanent_read(permanent: &PermanentDirect<'static>) -> bus::Pending<WireSettings> {
    bus::Pending::call(permanent.inner(), "getSettings", ())
}

fn permanent_answer(sent: bus::Pending<WireSettings>) -> Result<DirectConfig> {
    sent.answer()
        .map(from_wire)
        .map_err(|e| failure("reading firewalld's permanent direct rules", &e))
}

/// firewalld's runtime and permanent direct configuration, asked for, with a watch on
/// whatever replaces them under us from then on.
pub struct PendingConfigs {
    runtime: PendingRuntime,
    permanent: bus::Pending<WireSettings>,
    disruptions: Disruptions,
}

/// What a [`PendingConfigs`] brought back.
struct Configs {
    runtime: DirectConfig,
    permanent: DirectConfig,
    disruptions: Disruptions,
}

impl PendingConfigs {
    fn send(
        runtime: &RuntimeDirect<'static>,
        permanent: &PermanentDirect<'static>,
        disruptions: Disruptions,
    ) -> Self {
        PendingConfigs {
            runtime: PendingRuntime::send(runtime),
            permanent: send_permanent_read(permanent),
            disruptions,
        }
    }

    /// Both configurations, once both answers are in.
    fn wait(self) -> Result<Configs> {
        Ok(Configs {
            runtime: self.runtime.answer()?,
            permanent: permanent_answer(self.permanent)?,
            disruptions: self.disruptions,
        })
    }
}

/// Starts watching for reloads and restarts: before the reads it guards are sent.
fn watch(connection: &Connection) -> Result<Disruptions> {
    Disruptions::watch(connection).map_err(|e| failure("watching firewalld for reloads", &e))
}

impl Firewalld {
    pub fn runtime_config(&self) -> Result<DirectConfig> {
        PendingRuntime::send(&self.runtime).answer()
    }

    pub fn permanent_config(&self) -> Result<DirectConfig> {
        permanent_answer(send_permanent_read(&self.permanent))
    }

    /// Sends the reads of both configurations, so that probing iptables and building the
    /// rules overlap firewalld's answers: each read is a round trip to firewalld's Python.
    pub fn read_in_background(&self) -> Result<PendingConfigs> {
        Ok(self.read_watched(watch(&self.connection)?))
    }

    /// Sends the reads of both configurations, watched by `disruptions`.
    fn read_watched(&self, disruptions: Disruptions) -> PendingConfigs {
        PendingConfigs::send(&self.runtime, &self.permanent, disruptions)
    }

    /// `RFC3964_IPv4` from firewalld.conf, as firewalld reads it (on when unset; off for
    /// `no` or `false`).
    pub fn rfc3964_ipv4(&self) -> bool {
        !is_off(self.rfc3964_ipv4.as_deref())
    }

    /// Sets `RFC3964_IPv4=no` in firewalld.conf and reloads, so firewalld stops rejecting
    /// packets to `::/96` (`::1` among them, where IPv6 redirection sends local traffic).
    ///
    /// A reload makes the runtime the permanent configuration again: unless
    /// FlushAllOnReload=no, runtime-only direct entries of other clients would be gone. So
    /// this refuses while there are any, and puts back those another client adds between
    /// that look and the reload (firewalld's signals name them).
    pub fn disable_rfc3964_ipv4(&self) -> Result<()> {
        let mut others = RuntimeChanges::watch(&self.connection)
            .map_err(|e| failure("watching firewalld's runtime direct rules", &e))?;
        if self.flushes_runtime_on_reload() {
            let runtime_only = runtime_only_foreign(
                &self.runtime_config()?.foreign(),
                &self.permanent_config()?.foreign(),
            );
            if let Some(first) = runtime_only.first() {
                bail!(
                    "--disable-firewalld-rfc3964-ipv4 reloads firewalld, which would drop {} runtime-only direct entr{} of other tools (such as `{first}`); make them permanent first (firewall-cmd --runtime-to-permanent) or set RFC3964_IPv4=no yourself when a reload suits; nothing was changed",
                    runtime_only.len(),
                    if runtime_only.len() == 1 { "y" } else { "ies" }
                );
            }
        }
        self.settings
            .set_rfc3964_ipv4("no")
            .map_err(|e| failure("setting RFC3964_IPv4=no", &e))?;
        self.firewalld
            .reload()
            .map_err(|e| failure("reloading firewalld", &e))?;
        if self.flushes_runtime_on_reload() {
            self.put_back(others.before_reload())?;
        }
        Ok(())
    }

    /// Whether a reload drops runtime-only entries: FlushAllOnReload, on unless `no`.
    fn flushes_runtime_on_reload(&self) -> bool {
        !is_off(self.flush_all_on_reload.as_deref())
    }

    /// Adds back, at runtime, the foreign entries other clients added (and did not remove)
    /// before a reload dropped them.
    fn put_back(&self, changes: Vec<RuntimeChange>) -> Result<()> {
        for change in &foreign_additions(changes) {
            match self.apply(change, Target::Runtime) {
                Err(e) if !already_done(change, &e) => {
                    return Err(failure(
                        &format!("putting back `{change}`, which another client added right before our reload dropped it"),
                        &e,
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends the call that makes `change` in `target`; its answer is collected later.
    fn send(&self, change: &Change, target: Target) -> bus::Pending<()> {
        let proxy = match target {
            Target::Runtime => self.runtime.inner(),
            Target::Permanent => self.permanent.inner(),
        };
        let chain = |c: &DirectChain| (c.ipv.clone(), c.table.clone(), c.chain.clone());
        let rule = |r: &DirectRule| {
            let (ipv, table, chain) = (r.ipv.clone(), r.table.clone(), r.chain.clone());
            (ipv, table, chain, r.priority, r.args.clone())
        };
        let passthrough = |p: &Passthrough| (p.ipv.clone(), p.args.clone());
        match change {
            Change::AddChain(c) => bus::Pending::call(proxy, "addChain", chain(c)),
            Change::RemoveChain(c) => bus::Pending::call(proxy, "removeChain", chain(c)),
            Change::AddRule(r) => bus::Pending::call(proxy, "addRule", rule(r)),
            Change::RemoveRule(r) => bus::Pending::call(proxy, "removeRule", rule(r)),
            Change::AddPassthrough(p) => {
                bus::Pending::call(proxy, "addPassthrough", passthrough(p))
            }
            Change::RemovePassthrough(p) => {
                bus::Pending::call(proxy, "removePassthrough", passthrough(p))
            }
        }
    }

    fn apply(&self, change: &Change, target: Target) -> zbus::Result<()> {
        self.send(change, target).answer()
    }

    /// Makes `changes` in `target` and returns those it made (not those firewalld already
    /// had). The calls all go out at once, in order: firewalld handles them one after the
    /// other without waiting for us in between. On a refusal every change made (before the
    /// refused one and after it) is returned with it, not undone: what to do about them
    /// depends on why firewalld refused.
    fn apply_all<'a>(
        &self,
        changes: &'a [Change],
        target: Target,
    ) -> Result<Vec<&'a Change>, Refused<'a>> {
        let sent: Vec<bus::Pending<()>> = changes.iter().map(|c| self.send(c, target)).collect();
        let mut done: Vec<&Change> = Vec::new();
        let mut refused = None;
        for (change, sent) in changes.iter().zip(sent) {
            match sent.answer() {
                Ok(()) => done.push(change),
                Err(e) if already_done(change, &e) => {}
                Err(error) => {
                    let failure = Failure::from(&error);
                    // The answers after it would each be waited for as long.
                    let silent = failure.is_silent();
                    refused.get_or_insert((change, failure));
                    if silent {
                        break;
                    }
                }
            }
        }
        match refused {
            None => Ok(done),
            Some((change, failure)) => Err(Refused {
                done,
                change,
                failure,
                target,
            }),
        }
    }

    /// Reverts `done` in `target`, in reverse order, and says how that went, naming the
    /// changes `what`.
    fn undo(&self, done: &[&Change], target: Target, what: &str) -> Result<String, String> {
        let mut failures = Vec::new();
        for change in done.iter().rev() {
            let inverse = change.inverse();
            match self.apply(&inverse, target) {
                Err(e) if !already_done(&inverse, &e) => {
                    let failure = Failure::from(&e);
                    let silent = failure.is_silent();
                    failures.push(format!("`{inverse}`: {failure}"));
                    if silent {
                        break;
                    }
                }
                _ => {}
            }
        }
        if failures.is_empty() {
            Ok(format!("{what} were undone"))
        } else {
            Err(format!("undoing {what} failed ({})", failures.join("; ")))
        }
    }
}

/// `no` or `false`, firewalld.conf's spellings of off.
fn is_off(value: Option<&str>) -> bool {
    value.is_some_and(|v| v.eq_ignore_ascii_case("no") || v.eq_ignore_ascii_case("false"))
}

/// Foreign runtime entries that the permanent configuration does not hold, described.
fn runtime_only_foreign(runtime: &DirectConfig, permanent: &DirectConfig) -> Vec<String> {
    let only = |config: &DirectConfig| diff(&DirectConfig::default(), config).changes;
    let stored = only(permanent);
    only(runtime)
        .into_iter()
        .filter(|change| !stored.contains(change))
        .map(|change| change.to_string().trim_start_matches("+ ").to_string())
        .collect()
}

/// The foreign entries `changes` leave added, as additions in the order they were made.
fn foreign_additions(changes: Vec<RuntimeChange>) -> Vec<Change> {
    let mut added: Vec<Change> = Vec::new();
    for change in changes {
        match change {
            RuntimeChange::Added(entry) => added.push(addition(entry)),
            RuntimeChange::Removed(entry) => {
                let gone = addition(entry);
                added.retain(|c| *c != gone);
            }
        }
    }
    added.retain(|change| !change.is_owned());
    added
}

/// The change that adds `entry`.
fn addition(entry: bus::Entry) -> Change {
    match entry {
        bus::Entry::Chain((ipv, table, chain)) => {
            Change::AddChain(DirectChain { ipv, table, chain })
        }
        bus::Entry::Rule(rule) => Change::AddRule(rule_from_wire(rule)),
        bus::Entry::Passthrough((ipv, args)) => Change::AddPassthrough(Passthrough { ipv, args }),
    }
}

fn rule_from_wire((ipv, table, chain, priority, args): WireRule) -> DirectRule {
    DirectRule {
        ipv,
        table,
        chain,
        priority,
        args,
    }
}

/// firewalld's `(chains, rules, passthroughs)` as a direct configuration.
pub fn from_wire(settings: WireSettings) -> DirectConfig {
    let (chains, rules, passthroughs) = settings;
    DirectConfig {
        chains: chains
            .into_iter()
            .map(|(ipv, table, chain)| DirectChain { ipv, table, chain })
            .collect(),
        rules: rules.into_iter().map(rule_from_wire).collect(),
        passthroughs: passthroughs
            .into_iter()
            .map(|(ipv, args)| Passthrough { ipv, args })
            .collect(),
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

/// Which of firewalld's two direct configurations a change goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Runtime,
    Permanent,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Runtime => "runtime",
            Target::Permanent => "permanent",
        }
    }
}

/// firewalld refused `change` (the first change it refused); `done` are the changes it made.
struct Refused<'a> {
    done: Vec<&'a Change>,
    change: &'a Change,
    failure: Failure,
    target: Target,
}

impl fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (change, target, failure) = (self.change, self.target.name(), &self.failure);
        if failure.is_silent() {
            let remedy = silent_remedy();
            return write!(
                f,
                "firewalld did not answer `{change}` ({target}): {failure}; {remedy}"
            );
        }
        write!(f, "firewalld refused `{change}` ({target}): {failure}")
    }
}

/// What the backend would do, per target.
pub struct FirewalldPlan {
    /// The backend's name, for the plan's headings.
    backend: String,
    /// The rules planned for.
    ruleset: Ruleset,
    pub runtime: Diff,
    /// The permanent changes and the permanent configuration they leave, when storing.
    pub permanent: Option<(Diff, DirectConfig)>,
    /// Our entries, as they will be.
    pub desired: DirectConfig,
    /// Not storing, and the permanent configuration holds other entries of ours: they
    /// come back at the next reload.
    pub permanent_differs: bool,
    /// firewalld's runtime has no direct entry at all yet.
    runtime_was_empty: bool,
}

impl FirewalldPlan {
    fn writes(&self) -> bool {
        !self.runtime.is_empty() || self.permanent.as_ref().is_some_and(|(p, _)| !p.is_empty())
    }

    /// What applying the plan would change.
    pub fn expected(&self) -> Outcome {
        Outcome {
            changed: self.writes(),
            targets: self.changes(),
        }
    }

    /// The runtime's changes, and the permanent configuration's when storing.
    fn changes(&self) -> Vec<TargetChanges> {
        let mut changes = vec![TargetChanges::of_diff(
            report::Target::Runtime,
            &self.runtime,
        )];
        if let Some((permanent, _)) = &self.permanent {
            changes.push(TargetChanges::of_diff(report::Target::Permanent, permanent));
        }
        changes
    }
}

/// The dry run: each target's changes, and the direct.xml firewalld will write.
impl fmt::Display for FirewalldPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "### {}: runtime ###\n{}", self.backend, self.runtime)?;
        if let Some((permanent, after)) = &self.permanent {
            write!(
                f,
                "\n### {}: permanent configuration (direct.xml) ###\n{permanent}",
                self.backend
            )?;
            write!(
                f,
                "\n### resulting direct.xml, as firewalld writes it ###\n{}",
                direct_xml::render(after)
            )?;
        }
        Ok(())
    }
}

/// How many times firewalld may reload or restart under one run before it gives up.
const MAX_DISRUPTIONS: usize = 3;

/// How long direct.xml may differ from firewalld's permanent configuration before a change
/// is refused: firewalld's file watcher reads a changed file 5 s after the last change.
const FILE_WATCHER_PATIENCE: Duration = Duration::from_secs(7);
/// How often the file and firewalld are compared meanwhile.
const FILE_WATCHER_POLL: Duration = Duration::from_millis(250);
/// How long direct.xml may read as malformed before a change is refused: firewalld writes
/// the file in place, so a read can catch another client's change half written.
const HALF_WRITTEN_PATIENCE: Duration = Duration::from_secs(1);
const HALF_WRITTEN_POLL: Duration = Duration::from_millis(20);

/// Why an attempt to converge did not finish.
enum Stop {
    /// firewalld's configuration was replaced under us, or our entries are not as we left
    /// them: read, plan and apply again.
    Disrupted(Disturbance),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Stop {
    fn from(error: anyhow::Error) -> Self {
        if is_gone(&error) {
            Stop::Disrupted(Disturbance::Firewalld(Disruption::Restarted))
        } else {
            Stop::Failed(error)
        }
    }
}

/// What made an attempt start again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Disturbance {
    Firewalld(Disruption),
    /// No reload or restart was signalled, yet our entries were not as applied: another
    /// client changed them.
    Changed,
}

impl Disturbance {
    fn describe(self) -> &'static str {
        match self {
            Disturbance::Firewalld(Disruption::Reloaded) => "firewalld reloaded",
            Disturbance::Firewalld(Disruption::Restarted) => "firewalld restarted",
            Disturbance::Changed => "another client changed our entries",
        }
    }
}

pub struct FirewalldBackend {
    firewalld: Box<Firewalld>,
    /// Also change the permanent configuration (direct.xml); uninstall always does.
    store: bool,
    /// firewalld's direct.xml: a malformed one is never changed, since firewalld would
    /// rewrite it from what it managed to parse.
    file: DirectFile,
    /// iptables of each family: read for other tools' rules before firewalld 2.x flushes them.
    xtables: Vec<Xtables>,
    /// The operator accepts that firewalld 2.x flushes other tools' iptables rules.
    flush_accepted: bool,
    /// Both configurations, read while the rules were built; the first plan uses them.
    reading: Option<PendingConfigs>,
    /// Watching firewalld since the first read of this run.
    disruptions: Option<Disruptions>,
    /// Some attempt of this run sent a change.
    wrote: bool,
}

impl FirewalldBackend {
    pub fn new(
        firewalld: Box<Firewalld>,
        store: bool,
        file: DirectFile,
        xtables: Vec<Xtables>,
    ) -> Self {
        Self {
            firewalld,
            store,
            file,
            xtables,
            flush_accepted: false,
            reading: None,
            disruptions: None,
            wrote: false,
        }
    }

    /// Plans from configurations [`Firewalld::read_in_background`] is reading.
    pub fn with_reading(mut self, reading: Option<PendingConfigs>) -> Self {
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
        if !flushes || !plan.runtime_was_empty || plan.runtime.added() == 0 || self.flush_accepted {
            return Ok(());
        }
        let mut found = Vec::new();
        for xtables in &self.xtables {
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

    /// Reads both configurations (those read while the rules were built, the first time)
    /// and plans our entries in them.
    fn plan_for(&mut self, ruleset: &Ruleset) -> Result<FirewalldPlan> {
        let reading = match (self.reading.take(), self.disruptions.take()) {
            (Some(reading), _) => reading,
            (None, Some(disruptions)) => self.firewalld.read_watched(disruptions),
            (None, None) => self.firewalld.read_in_background()?,
        };
        let Configs {
            runtime,
            permanent,
            disruptions,
        } = self.read_once_file_is_loaded(reading)?;
        self.disruptions = Some(disruptions);
        let mut stored_elsewise = None;
        let permanent = if self.store {
            Some(permanent)
        } else {
            stored_elsewise = Some(permanent);
            None
        };
        // Priorities follow the stored rules when storing, so both targets agree.
        let desired = direct::translate(ruleset, permanent.as_ref().unwrap_or(&runtime));
        let permanent = permanent.map(|current| {
            let changes = diff(&current, &desired);
            let after = current.after(&changes);
            (changes, after)
        });
        Ok(FirewalldPlan {
            backend: self.name(),
            ruleset: ruleset.clone(),
            runtime: diff(&runtime, &desired),
            permanent,
            runtime_was_empty: runtime.is_empty(),
            permanent_differs: stored_elsewise
                .is_some_and(|stored| !stored.owned().same_entries(&desired)),
            desired,
        })
    }

    /// The answers of `reading`; when storing, once firewalld's permanent configuration is
    /// what direct.xml holds. A file changed behind firewalld's back (by hand, by
    /// `firewall-offline-cmd`) is read by firewalld's file watcher 5 s after the change;
    /// any permanent change before that makes firewalld write its older entries over it.
    /// So this waits for the watcher, and refuses when the two stay apart. A file that stays
    /// malformed longer than firewalld takes to write it is refused: firewalld would rewrite
    /// it from the part it could parse.
    fn read_once_file_is_loaded(&self, reading: PendingConfigs) -> Result<Configs> {
        if !self.store {
            return reading.wait();
        }
        let load = || {
            let deadline = Instant::now() + HALF_WRITTEN_PATIENCE;
            loop {
                match self.file.load() {
                    Err(_) if Instant::now() < deadline => std::thread::sleep(HALF_WRITTEN_POLL),
                    loaded => return loaded.context(
                        "firewalld's direct.xml is malformed; fix it first (firewalld would replace it with the part it could parse)",
                    ),
                }
            }
        };
        let on_disk =
            |loaded: Option<Loaded>| loaded.map(|l| l.document.config()).unwrap_or_default();
        // Read while firewalld answers the reads in flight.
        let mut file = on_disk(load()?);
        let mut read = reading.wait()?;
        let deadline = Instant::now() + FILE_WATCHER_PATIENCE;
        let mut told = false;
        while !file.same_entries(&read.permanent) {
            if Instant::now() >= deadline {
                bail!(
                    "{} holds other entries than firewalld's permanent configuration, and firewalld has not read it within {} s; a change now would make firewalld write its own entries over the file's: run `firewall-cmd --reload` to load the file (or undo its edit), then run again; nothing was changed",
                    self.file.path().display(),
                    FILE_WATCHER_PATIENCE.as_secs()
                );
            }
            if !told {
                let (path, seconds) = (self.file.path().display(), FILE_WATCHER_PATIENCE.as_secs());
                notice(
                    Code::DirectXmlUnread,
                    format!("{path} was changed and firewalld has not read it yet; waiting up to {seconds} s for it"),
                );
                told = true;
            }
            std::thread::sleep(FILE_WATCHER_POLL);
            file = on_disk(load()?);
            read = self.firewalld.read_watched(read.disruptions).wait()?;
        }
        Ok(read)
    }

    /// The reload or restart seen since the last look, if any.
    fn disrupted(&mut self) -> Option<Disruption> {
        self.disruptions.as_mut().and_then(Disruptions::seen)
    }

    /// What a refusal means: firewalld replaced its configuration under us (read and plan
    /// again), or a real refusal (the error, after undoing `undo` and what came before).
    fn refusal(&mut self, refused: Refused<'_>, undo: &[&Change]) -> Stop {
        if let Failure::Gone(_) = refused.failure {
            return Stop::Disrupted(Disturbance::Firewalld(Disruption::Restarted));
        }
        // Undoing would wait as long for each call, and firewalld may still make the changes
        // it was sent once it answers again (the refusal says so).
        if refused.failure.is_silent() {
            return Stop::Failed(anyhow!("{refused}"));
        }
        if let Some(disruption) = self.disrupted() {
            return Stop::Disrupted(Disturbance::Firewalld(disruption));
        }
        let mut state = Vec::new();
        let mut undone = true;
        for (done, target) in [
            (refused.done.as_slice(), refused.target),
            (undo, Target::Runtime),
        ] {
            if done.is_empty() {
                continue;
            }
            match self.firewalld.undo(
                done,
                target,
                &format!("the {} other change(s) ({})", done.len(), target.name()),
            ) {
                Ok(said) => state.push(said),
                Err(said) => {
                    state.push(said);
                    undone = false;
                }
            }
        }
        state.push(if undone {
            "nothing is changed".to_string()
        } else {
            "run install again, or uninstall".to_string()
        });
        Stop::Failed(anyhow!("{refused}; {}", state.join(", ")))
    }

    /// Applies the runtime changes; returns the changes made.
    ///
    /// This is also the never-brick check for the permanent configuration, which firewalld
    /// loads only at its next start (a rule iptables rejects would leave it FAILED then):
    /// firewalld applies each runtime entry with the iptables it starts with, to the live
    /// tables, and refuses what iptables rejects. So the permanent changes go only after
    /// every wanted entry is in the runtime.
    fn apply_runtime<'a>(&mut self, plan: &'a FirewalldPlan) -> Result<Vec<&'a Change>, Stop> {
        self.firewalld
            .apply_all(&plan.runtime.changes, Target::Runtime)
            .map_err(|refused| self.refusal(refused, &[]))
    }

    /// Applies `plan` and verifies it.
    fn attempt(&mut self, plan: &FirewalldPlan) -> Result<(), Stop> {
        self.refuse_foreign_flush(plan)?;
        if plan.writes() {
            self.wrote = true;
            let runtime_done = self.apply_runtime(plan)?;
            if let Some((permanent, _)) = &plan.permanent {
                if let Err(refused) = self
                    .firewalld
                    .apply_all(&permanent.changes, Target::Permanent)
                {
                    return Err(self.refusal(refused, &runtime_done));
                }
            }
            // Without writes the plan was made from what was just read: nothing to read back.
            self.verify(plan)?;
        }
        // A reload or restart before firewalld answered our last read: what we read may
        // already be gone.
        if let Some(disruption) = self.disrupted() {
            return Err(Stop::Disrupted(Disturbance::Firewalld(disruption)));
        }
        Ok(())
    }

    /// Reads both targets back: our entries must be exactly the desired ones.
    fn verify(&mut self, plan: &FirewalldPlan) -> Result<(), Stop> {
        let disruptions = self.disruptions.take().expect("a plan watches firewalld");
        let read = self.firewalld.read_watched(disruptions).wait()?;
        self.disruptions = Some(read.disruptions);
        let same = |have: &DirectConfig| have.owned().same_entries(&plan.desired);
        let stored = plan.permanent.is_none() || same(&read.permanent);
        if same(&read.runtime) && stored {
            return Ok(());
        }
        Err(Stop::Disrupted(match self.disrupted() {
            Some(disruption) => Disturbance::Firewalld(disruption),
            None => Disturbance::Changed,
        }))
    }

    /// Plans; when firewalld leaves the bus before it answered the reads (a restart), waits
    /// for it to come back and reads again, a bounded number of times.
    fn plan_through_restarts(&mut self, ruleset: &Ruleset) -> Result<FirewalldPlan> {
        let mut restarts = 0;
        loop {
            match self.plan_for(ruleset) {
                Err(error) if is_gone(&error) && restarts < MAX_DISRUPTIONS => {
                    restarts += 1;
                    reading_again(Disturbance::Firewalld(Disruption::Restarted));
                    self.reconnect()?;
                }
                planned => return planned,
            }
        }
    }

    /// After a disruption: waits until firewalld runs again, and talks to whoever owns its
    /// name now (a restart may bring another version or other settings).
    fn reconnect(&mut self) -> Result<()> {
        match presence_once_back(&self.firewalld.connection, self.firewalld.patience)? {
            Presence::Running(firewalld) => {
                self.firewalld = firewalld;
                Ok(())
            }
            Presence::NotRunning(state) => bail!(
                "firewalld restarted during the run and is now in state {state}: check `journalctl -u firewalld` and `firewall-cmd --check-config`; once it runs, run again"
            ),
            Presence::Absent => bail!(
                "firewalld stopped during the run and did not come back within {} s; its permanent configuration may hold part of the change: run again, with firewalld running or stopped",
                self.firewalld.patience.as_secs()
            ),
        }
    }
}

impl Backend for FirewalldBackend {
    fn name(&self) -> String {
        format!(
            "firewalld {} ({} backend)",
            self.firewalld.version, self.firewalld.firewall_backend
        )
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "firewalld",
            name: self.name(),
            firewalld_version: Some(self.firewalld.version.clone()),
            firewall_backend: Some(self.firewalld.firewall_backend.clone()),
        }
    }

    fn observe(&mut self) -> Result<Observation> {
        let name = self.name();
        let permanent = self.firewalld.permanent_config()?.owned();
        let runtime = self.firewalld.runtime_config()?.owned();
        Ok(Observation {
            views: vec![
                View {
                    name: format!("permanent ({name})"),
                    kind: ViewKind::Permanent,
                    entries: Ok(permanent),
                },
                View {
                    name: format!("runtime ({name})"),
                    kind: ViewKind::Runtime,
                    entries: Ok(runtime),
                },
            ],
            rfc3964_ipv4: Some(self.firewalld.rfc3964_ipv4()),
        })
    }

    fn plan(&mut self, desired: &Ruleset) -> Result<Plan> {
        Ok(Plan::Firewalld(self.plan_through_restarts(desired)?))
    }

    /// Applies the plan; a reload or restart of firewalld meanwhile (or our entries not as
    /// applied) makes it read, plan and apply again, a bounded number of times.
    fn apply(&mut self, plan: Plan) -> Result<Outcome> {
        let Plan::Firewalld(mut plan) = plan else {
            return Err(foreign_plan(&self.name()));
        };
        let mut disturbances: Vec<Disturbance> = Vec::new();
        loop {
            let what = match self.attempt(&plan) {
                Ok(()) => break,
                Err(Stop::Failed(error)) => return Err(error),
                Err(Stop::Disrupted(what)) => what,
            };
            disturbances.push(what);
            if disturbances.len() > MAX_DISRUPTIONS {
                bail!(
                    "{} during the run ({} times; gave up): our entries may be partly in place; run again once firewalld is left alone",
                    summarise(&disturbances),
                    disturbances.len()
                );
            }
            reading_again(what);
            self.reconnect()?;
            plan = self.plan_through_restarts(&plan.ruleset)?;
        }
        // Uninstall --keep-permanent leaves them on purpose and says so itself.
        if plan.permanent_differs && !plan.desired.is_empty() {
            notice(Code::PermanentHoldsEarlierInstall, "firewalld's permanent configuration holds transparent-proxy rules of an earlier --store-firewalld install; they come back at the next reload (add --store-firewalld to replace them, or uninstall)");
        }
        Ok(Outcome {
            changed: self.wrote,
            targets: plan.changes(),
        })
    }
}

/// Tells the operator that `what` made the run read firewalld's configuration again.
fn reading_again(what: Disturbance) {
    notice(
        Code::FirewalldDisrupted,
        format!(
            "{} during the run; reading its configuration again",
            what.describe()
        ),
    );
}

/// `firewalld reloaded, firewalld restarted`: each kind once, in the order first seen.
fn summarise(disturbances: &[Disturbance]) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for d in disturbances {
        if !kinds.contains(&d.describe()) {
            kinds.push(d.describe());
        }
    }
    kinds.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::test_entries::rule;

    #[test]
    fn from_wire_keeps_every_field() {
        let config = DirectConfig {
            chains: vec![DirectChain {
                ipv: "eb".into(),
                table: "broute".into(),
                chain: "X".into(),
            }],
            rules: vec![DirectRule {
                ipv: "ipv6".into(),
                table: "nat".into(),
                chain: "OUTPUT".into(),
                priority: -3,
                args: vec!["-j".into(), "it's".into()],
            }],
            passthroughs: vec![Passthrough {
                ipv: "ipv4".into(),
                args: vec!["-A".into(), "INPUT".into()],
            }],
        };
        let wire = (
            vec![("eb".into(), "broute".into(), "X".into())],
            vec![(
                "ipv6".into(),
                "nat".into(),
                "OUTPUT".into(),
                -3,
                vec!["-j".into(), "it's".into()],
            )],
            vec![("ipv4".into(), vec!["-A".into(), "INPUT".into()])],
        );
        assert_eq!(from_wire(wire), config);
    }

    #[test]
    fn foreign_additions_are_what_others_added_and_kept() {
        let wire = |port: &str| -> WireRule {
            let args = ["-p", "tcp", "--dport", port, "-j", "ACCEPT"];
            let args = args.map(String::from).to_vec();
            ("ipv4".into(), "filter".into(), "INPUT".into(), 0, args)
        };
        let ours = ("ipv4".into(), "nat".into(), "KUMA_MESH_OUTBOUND".into());
        let changes = vec![
            RuntimeChange::Added(bus::Entry::Rule(wire("1"))),
            RuntimeChange::Added(bus::Entry::Rule(wire("2"))),
            RuntimeChange::Added(bus::Entry::Chain(ours)),
            RuntimeChange::Removed(bus::Entry::Rule(wire("1"))),
        ];
        assert_eq!(
            foreign_additions(changes),
            [Change::AddRule(rule_from_wire(wire("2")))]
        );
    }

    #[test]
    fn runtime_only_foreign_entries_are_those_not_stored() {
        let stored = rule("ipv4", "filter", "INPUT", 0, &["-j", "ACCEPT"]);
        let runtime_only = rule("ipv6", "filter", "INPUT", 0, &["-j", "DROP"]);
        let runtime = DirectConfig {
            rules: vec![stored.clone(), runtime_only],
            ..Default::default()
        };
        let permanent = DirectConfig {
            rules: vec![stored],
            ..Default::default()
        };
        assert_eq!(
            runtime_only_foreign(&runtime, &permanent),
            ["rule ipv6 filter INPUT 0 -j DROP"]
        );
    }

    #[test]
    fn firewalld_leaving_the_bus_is_a_disruption_and_a_refusal_is_not() {
        let gone = failure(
            "reading",
            &zbus::Error::MethodError(
                zbus::names::OwnedErrorName::try_from("org.freedesktop.DBus.Error.NoReply")
                    .unwrap(),
                Some("Message recipient disconnected from message bus without replying".into()),
                zbus::message::Message::method_call("/", "x")
                    .unwrap()
                    .build(&())
                    .unwrap(),
            ),
        );
        assert!(matches!(
            Stop::from(gone),
            Stop::Disrupted(Disturbance::Firewalld(Disruption::Restarted))
        ));
        let refused = anyhow!("firewalld refused `+ rule ...`: COMMAND_FAILED");
        assert!(matches!(Stop::from(refused), Stop::Failed(_)));
    }
}
