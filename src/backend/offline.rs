//! firewalld installed but stopped: our entries go into its `direct.xml` (which it applies
//! when it starts, flushing iptables first) and, so they work now, into the kernel with the
//! raw iptables backend. Both or neither: the kernel first, and it is put back if the file
//! cannot be written. Another process writing direct.xml meanwhile (`firewall-offline-cmd`,
//! an editor) is never written over: the file is read and planned again.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};

use super::direct_file::{Committed, DirectFile, Held, Staged};
use super::iptables::IptablesBackend;
use super::xtables::{RestoreOptions, Xtables};
use super::{foreign_plan, Backend, Observation, Outcome, Plan, View, ViewKind};
use crate::direct::{self, diff, Diff};
use crate::format::firewalld_conf;
use crate::format::report::{BackendInfo, Target, TargetChanges};
use crate::format::restore;
use crate::ruleset::Ruleset;
use crate::system::{self, notice, Code};

/// How often direct.xml may be written by another process under one run before it gives up.
const MAX_INTERFERENCES: usize = 5;

pub struct OfflineBackend {
    file: DirectFile,
    xtables: Vec<Xtables>,
    options: RestoreOptions,
    /// Plans are for printing only: direct.xml is read without a lease; the kernel's side
    /// shows the rules with long option names when `verbose`.
    showing: Option<bool>,
    /// Plans also read the kernel's tables, to say what would change there.
    plans_kernel: bool,
}

/// What the backend would do: direct.xml's side, and the rules for the kernel now.
pub struct OfflinePlan {
    file: FilePlan,
    ruleset: Ruleset,
    verbose: bool,
    path: String,
    /// What would change in the kernel, when the plan read it.
    kernel: Option<Outcome>,
}

impl OfflinePlan {
    /// What applying the plan would change in direct.xml and the kernel; None when the
    /// kernel was not read.
    pub fn expected(&self) -> Option<Outcome> {
        let kernel = self.kernel.as_ref()?;
        let mut targets = vec![file_changes(&self.path, &self.file.diff)];
        targets.extend(kernel.targets.iter().cloned());
        Some(Outcome {
            changed: self.file.text.is_some() || kernel.changed,
            targets,
        })
    }
}

fn file_changes(path: &str, diff: &Diff) -> TargetChanges {
    TargetChanges::of_diff(Target::File(path.to_string()), diff)
}

/// The dry run: changes to direct.xml, the resulting file, and the rules iptables takes now.
impl fmt::Display for OfflinePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        write!(
            f,
            "### {path} (firewalld is not running) ###\n{}",
            self.file.diff
        )?;
        match self.file.resulting_text() {
            Some(text) => write!(f, "\n### resulting {path} ###\n{text}")?,
            None => writeln!(f, "\n### {path} stays absent ###")?,
        }
        writeln!(
            f,
            "\n### iptables, now (firewalld flushes them when it starts) ###"
        )?;
        f.write_str(&restore::render_dry_run(&self.ruleset, self.verbose))
    }
}

/// The file's side of the work.
struct FilePlan {
    diff: Diff,
    /// The new file, when it changes.
    text: Option<String>,
    held: Held,
}

impl OfflineBackend {
    pub fn new(config_dir: &Path, xtables: Vec<Xtables>, options: RestoreOptions) -> Self {
        Self {
            file: DirectFile::in_dir(config_dir),
            xtables,
            options,
            showing: None,
            plans_kernel: false,
        }
    }

    /// Plans also read the kernel's tables (needs root), to say what would change there.
    pub fn planning_kernel(mut self) -> Self {
        self.plans_kernel = true;
        self
    }

    /// Plans are for printing only (a dry run): nothing is held for a change.
    pub fn showing(mut self, verbose: bool) -> Self {
        self.showing = Some(verbose);
        self
    }

    pub fn file(&self) -> &DirectFile {
        &self.file
    }

    /// Reads direct.xml (refusing a malformed one) and plans our entries in it. `for_change`:
    /// read under a lease, so that another process's write from now on is noticed.
    fn plan_file(&self, ruleset: &Ruleset, for_change: bool) -> Result<FilePlan> {
        let held = if for_change {
            self.file.load_for_change()?
        } else {
            Held::from(self.file.load()?)
        };
        // The translation and the plan look only at our entries: foreign ones (there may be
        // thousands) are not copied.
        let current = held
            .loaded
            .as_ref()
            .map(|l| l.document.owned_config())
            .unwrap_or_default();
        let desired = direct::translate(ruleset, &current);
        Ok(FilePlan {
            diff: diff(&current, &desired),
            text: DirectFile::planned_text(held.loaded.as_ref(), &desired),
            held,
        })
    }

    /// After `file_plan` was committed: when another process wrote direct.xml since it was
    /// read, reads, plans and writes again (a bounded number of times). Returns the plan
    /// that was written.
    fn replan_while_interfered(
        &self,
        desired: &Ruleset,
        mut file_plan: FilePlan,
        mut committed: Committed,
    ) -> Result<FilePlan> {
        let mut interferences = 0;
        while committed == Committed::Interfered {
            interferences += 1;
            if interferences > MAX_INTERFERENCES {
                bail!(
                    "{} was written by another process {interferences} times while we planned; nothing was written: run again once it is left alone",
                    self.file.path().display()
                );
            }
            if interferences == 1 {
                notice(
                    Code::DirectXmlWrittenMeanwhile,
                    format!(
                        "{} was written by another process meanwhile; reading it again",
                        self.file.path().display()
                    ),
                );
            }
            // Giving up the lease lets that process finish its write before the file is
            // read again.
            drop(file_plan);
            std::thread::sleep(std::time::Duration::from_millis(20));
            file_plan = self.plan_file(desired, true)?;
            committed = match &file_plan.text {
                Some(text) => self.file.stage(text, &file_plan.held)?.commit()?,
                None => Committed::Done,
            };
        }
        Ok(file_plan)
    }
}

impl Backend for OfflineBackend {
    fn name(&self) -> String {
        format!("{} and iptables", self.file.path().display())
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "firewalld-stopped",
            name: self.name(),
            firewalld_version: None,
            firewall_backend: None,
        }
    }

    fn observe(&mut self) -> Result<Observation> {
        let views = match self.file.load()? {
            Some(loaded) => vec![View {
                name: format!("{} (firewalld is not running)", self.file.path().display()),
                kind: ViewKind::File,
                entries: Ok(loaded.document.config().owned()),
            }],
            None => Vec::new(),
        };
        Ok(Observation {
            views,
            rfc3964_ipv4: None,
        })
    }

    fn plan(&mut self, desired: &Ruleset) -> Result<Plan> {
        let kernel = match self.plans_kernel {
            true => IptablesBackend::new(self.xtables.clone(), self.options)
                .plan(desired)?
                .expected(),
            false => None,
        };
        Ok(Plan::Offline(Box::new(OfflinePlan {
            file: self.plan_file(desired, self.showing.is_none())?,
            ruleset: desired.clone(),
            verbose: self.showing.unwrap_or(false),
            path: self.file.path().display().to_string(),
            kernel,
        })))
    }

    fn apply(&mut self, plan: Plan) -> Result<Outcome> {
        let Plan::Offline(plan) = plan else {
            return Err(foreign_plan(&self.name()));
        };
        let OfflinePlan {
            file: file_plan,
            ruleset,
            ..
        } = *plan;
        if self.showing.is_some() {
            bail!("a dry run's plan cannot be applied");
        }
        let desired = &ruleset;
        // The kernel first: applying the rules is the strictest check that firewalld will
        // accept them at its next start, and it comes before anything permanent is in place.
        // The new file is written and synced beside direct.xml meanwhile (each is a wait: on
        // iptables-restore, on the disk) and put in place only once the kernel holds the rules.
        let file = &self.file;
        let mut iptables = IptablesBackend::new(self.xtables.clone(), self.options);
        let (staged, kernel) = std::thread::scope(|scope| {
            let staged = file_plan
                .text
                .as_deref()
                .map(|text| scope.spawn(|| file.stage(text, &file_plan.held)));
            let kernel = iptables.converge(desired);
            let staged = staged.map(|s| {
                s.join()
                    .unwrap_or_else(|_| Err(anyhow!("writing {} failed", file.path().display())))
            });
            (staged.transpose(), kernel)
        });
        let kernel = kernel.context("direct.xml was left as it was")?;
        let committed =
            staged.and_then(|staged| staged.map_or(Ok(Committed::Done), Staged::commit));
        let written = committed.and_then(|c| self.replan_while_interfered(desired, file_plan, c));
        let file_plan = match written {
            Ok(file_plan) => file_plan,
            Err(error) => {
                let state = match iptables.undo() {
                    Ok(()) => "the iptables rules were put back as they were".to_string(),
                    Err(e) => format!("putting the iptables rules back failed too: {e:#}"),
                };
                return Err(error.context(state));
            }
        };
        let path = self.file.path().display().to_string();
        let mut targets = vec![file_changes(&path, &file_plan.diff)];
        targets.extend(kernel.targets);
        Ok(Outcome {
            changed: file_plan.text.is_some() || kernel.changed,
            targets,
        })
    }
}

/// firewalld.conf's `RFC3964_IPv4` (yes when the file or the key is missing).
pub fn rfc3964_ipv4(config_dir: &Path) -> Result<bool> {
    Ok(firewalld_conf::rfc3964_ipv4(&read_conf(config_dir)?))
}

/// Sets `RFC3964_IPv4=no` in firewalld.conf, keeping every other line.
pub fn disable_rfc3964_ipv4(config_dir: &Path) -> Result<()> {
    let text = firewalld_conf::set(&read_conf(config_dir)?, "RFC3964_IPv4", "no");
    // firewalld's own mode for its configuration files.
    system::fs::replace(
        &config_dir.join("firewalld.conf"),
        ".firewalld.conf.",
        text.as_bytes(),
        0o644,
    )
}

fn read_conf(config_dir: &Path) -> Result<String> {
    let path = config_dir.join("firewalld.conf");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

impl FilePlan {
    /// The direct.xml firewalld would load after the change (None: there is no file).
    pub fn resulting_text(&self) -> Option<&str> {
        self.text
            .as_deref()
            .or(self.held.loaded.as_ref().map(|l| l.text.as_str()))
    }
}
