//! Backends make the host hold exactly the desired rules of ours, leaving everything else
//! alone. Each is one driver behind [`Backend`], in two phases: [`Backend::plan`] reads the
//! current state and returns what it would change, a value that prints as the dry run;
//! [`Backend::apply`] carries a plan out as a whole and verifies the result. Which backend a
//! host gets is decided beside them, by [`select`].

pub mod applied;
pub mod direct_file;
pub mod firewalld;
pub mod iptables;
pub mod offline;
pub mod xtables;

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::config::{BackendChoice, Placement};
use crate::direct::DirectConfig;
use crate::format::report::{BackendInfo, TargetChanges};
use crate::ruleset::Ruleset;
use firewalld::{Firewalld, Presence};

pub trait Backend {
    /// A short name for messages, e.g. `iptables (nf_tables)`.
    fn name(&self) -> String;

    /// Which backend this is, for reports.
    fn info(&self) -> BackendInfo;

    /// Our entries where this backend keeps them, for `status`: firewalld's permanent and
    /// runtime configuration, a stopped firewalld's direct.xml; none for raw iptables (the
    /// kernel is read apart, for every backend).
    fn observe(&mut self) -> Result<Observation>;

    /// What bringing our rules to `desired` takes (an empty ruleset removes them all).
    fn plan(&mut self, desired: &Ruleset) -> Result<Plan>;

    /// Carries out `plan`, all of it or none, and verifies the result.
    fn apply(&mut self, plan: Plan) -> Result<Outcome>;
}

/// A backend's plan; printed, it is the dry run.
pub enum Plan {
    Firewalld(firewalld::FirewalldPlan),
    Offline(Box<offline::OfflinePlan>),
    Iptables(iptables::IptablesPlan),
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::Firewalld(plan) => plan.fmt(f),
            Plan::Offline(plan) => plan.fmt(f),
            Plan::Iptables(plan) => plan.fmt(f),
        }
    }
}

impl Plan {
    /// The outcome applying the plan would have, as far as the plan knows; None when it only
    /// shows the rules (a dry run that could not read the current state).
    pub fn expected(&self) -> Option<Outcome> {
        match self {
            Plan::Firewalld(plan) => Some(plan.expected()),
            Plan::Offline(plan) => plan.expected(),
            Plan::Iptables(plan) => plan.expected(),
        }
    }
}

/// A plan handed to a backend that did not make it.
fn foreign_plan(backend: &str) -> anyhow::Error {
    anyhow::anyhow!("{backend} was handed another backend's plan")
}

/// What a run changed, or (from a plan) would change.
#[derive(Debug)]
pub struct Outcome {
    /// False when the host already held exactly the desired rules.
    pub changed: bool,
    /// What changed, per target.
    pub targets: Vec<TargetChanges>,
}

impl Outcome {
    /// One line per target, for the operator.
    pub fn summary(&self) -> Vec<String> {
        self.targets.iter().map(TargetChanges::summary).collect()
    }
}

/// What [`Backend::observe`] found.
#[derive(Debug, Default)]
pub struct Observation {
    pub views: Vec<View>,
    /// A running firewalld's `RFC3964_IPv4` (a stopped one filters nothing).
    pub rfc3964_ipv4: Option<bool>,
}

/// Our entries in one place.
#[derive(Debug)]
pub struct View {
    pub name: String,
    pub kind: ViewKind,
    /// Our entries (kernel rules numbered in their order, as priorities), or why this view
    /// could not be read (not root, no iptables, …).
    pub entries: Result<DirectConfig, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewKind {
    Permanent,
    Runtime,
    /// direct.xml of a stopped firewalld.
    File,
    Kernel,
}

/// Where rules go: a running firewalld, direct.xml of a stopped one (plus iptables for
/// now), or raw iptables. Never both firewalld and raw iptables while firewalld runs: its
/// next reload would flush what we wrote behind its back.
pub enum Selected {
    Firewalld(Box<Firewalld>),
    /// firewalld is installed but stopped: its direct.xml, and iptables until it starts.
    Offline(PathBuf),
    Iptables,
}

/// Picks where rules go, from what is on the system bus. `uses_file`: whether direct.xml of
/// a stopped firewalld is wanted (install with --store-firewalld, and uninstall).
pub fn select(placement: &Placement, uses_file: bool, presence: Presence) -> Result<Selected> {
    if let Presence::NotRunning(state) = &presence {
        if placement.backend != BackendChoice::Iptables {
            bail!(not_running(state));
        }
    }
    match placement.backend {
        BackendChoice::Firewalld => match presence {
            Presence::Running(firewalld) => Ok(Selected::Firewalld(firewalld)),
            _ => bail!(
                "--backend firewalld: firewalld is not on the system bus (is it running? `systemctl start firewalld`); nothing was changed"
            ),
        },
        BackendChoice::Iptables => match presence {
            Presence::Running(_) => bail!(
                "--backend iptables: firewalld is running and would flush rules written behind its back at its next reload; use --backend firewalld (or stop firewalld); nothing was changed"
            ),
            _ => Ok(Selected::Iptables),
        },
        BackendChoice::Auto => match presence {
            Presence::Running(firewalld) => Ok(Selected::Firewalld(firewalld)),
            _ if uses_file && placement.firewalld_config_dir.is_dir() => {
                Ok(Selected::Offline(placement.firewalld_config_dir.clone()))
            }
            _ => Ok(Selected::Iptables),
        },
    }
}

fn not_running(state: &str) -> String {
    match state {
        "FAILED" => "firewalld is in FAILED state (it could not apply its configuration and runs its failsafe rules): check `journalctl -u firewalld` and `firewall-cmd --check-config`, fix the configuration and restart firewalld; nothing was changed".to_string(),
        "INIT" => "firewalld is still starting: run again once `firewall-cmd --state` prints running; nothing was changed".to_string(),
        other => format!("firewalld reports state {other}, not RUNNING; nothing was changed"),
    }
}
