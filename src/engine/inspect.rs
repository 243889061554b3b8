//! `inspect`: a direct configuration — a `direct.xml`, or a running firewalld's permanent or
//! runtime configuration over D-Bus — validated the way firewalld loads and applies it,
//! and shown in the order the kernel will hold it, each entry marked ours or foreign.
//!
//! A file is read leniently: every problem firewalld's loader refuses is reported with its
//! line and column, not only the first; only XML that is not well-formed (or no direct.xml
//! at all: another root element, a DOCTYPE) stops reading (the entries before that point
//! are still shown, and the apply-time checks are skipped: they would report what the rest
//! of the file may well fix). A missing default file is
//! valid: firewalld then has no direct configuration. A file that is not UTF-8 is a problem
//! at the first bad byte. A file that cannot be read at all (permissions, not a regular
//! file, larger than 16 MiB) is an error.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Serialize;

use crate::format::direct_json::JsonEntry;

use crate::backend::direct_file::MAX_SIZE;
use crate::backend::firewalld::{self, Presence};
use crate::backend::xtables::{Mode, Rejected, RestoreOptions, Xtables};
use crate::direct::{self, DirectConfig, Subject};
use crate::error::BadInput;
use crate::family::Family;
use crate::format::direct_xml::{self, Entry};
use crate::quoting::join_args;
use crate::system::fs;

/// What to inspect.
pub enum Source {
    /// A direct.xml; `explicit`: named by the operator (a missing one is then bad input;
    /// firewalld's default one may be missing).
    File { path: PathBuf, explicit: bool },
    /// A running firewalld's configuration.
    Firewalld(Configuration),
}

/// One of a running firewalld's two direct configurations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Configuration {
    /// What it loads at start.
    Permanent,
    /// What it applied.
    Runtime,
}

/// Reads `source` and checks it as firewalld would load and apply it, and with
/// `check_iptables` every rule with iptables-restore --test too.
pub fn inspect(source: Source, check_iptables: bool) -> Result<Inspection> {
    let mut inspection = match source {
        Source::Firewalld(which) => from_firewalld(which)?,
        Source::File { path, explicit } => from_file(&path, explicit)?,
    };
    if inspection.complete {
        inspection.check_apply();
        if check_iptables {
            inspection.check_iptables()?;
        }
    }
    inspection.sort_problems();
    Ok(inspection)
}

/// One problem, where it is when the source is a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Found {
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

/// A direct configuration read from somewhere, and what is wrong with it.
pub struct Inspection {
    /// For `"source"` in JSON: the file's path, or `firewalld:runtime` / `firewalld:permanent`.
    source: String,
    /// The first line of the text output.
    title: String,
    /// Every entry read, repeats and entries without arguments included.
    config: DirectConfig,
    /// Line and column of each entry (files only).
    positions: HashMap<Subject, (usize, usize)>,
    /// Where problems found in a file are (None for D-Bus).
    path: Option<String>,
    problems: Vec<Found>,
    /// False when reading stopped early (XML that is not well-formed).
    complete: bool,
    /// Said after the title: a missing file.
    note: Option<String>,
}

impl Inspection {
    fn new(source: String, title: String, path: Option<String>) -> Self {
        Inspection {
            source,
            title,
            config: DirectConfig::default(),
            positions: HashMap::new(),
            path,
            problems: Vec::new(),
            complete: true,
            note: None,
        }
    }

    /// How a problem names an entry: its kind and place, plus its arguments when there is
    /// no line to look at.
    fn describe(&self, subject: Subject) -> String {
        let with_args = self.path.is_none();
        let args = |args: &[String]| {
            if with_args && !args.is_empty() {
                format!(" {}", join_args(args))
            } else {
                String::new()
            }
        };
        match subject {
            Subject::Chain(i) => {
                let c = &self.config.chains[i];
                format!("chain {} {} {}", c.ipv, c.table, c.chain)
            }
            Subject::Rule(i) => {
                let r = &self.config.rules[i];
                format!(
                    "rule {} {} {} {}{}",
                    r.ipv,
                    r.table,
                    r.chain,
                    r.priority,
                    args(&r.args)
                )
            }
            Subject::Passthrough(i) => {
                let p = &self.config.passthroughs[i];
                format!("passthrough {}{}", p.ipv, args(&p.args))
            }
        }
    }

    fn problem(&mut self, subject: Option<Subject>, message: String, other: Option<Subject>) {
        let position = subject.and_then(|s| self.positions.get(&s).copied());
        let mut message = match subject {
            Some(subject) => format!("{}: {message}", self.describe(subject)),
            None => message,
        };
        if let Some(other) = other {
            match self.positions.get(&other) {
                Some((line, _)) => message.push_str(&format!("; see line {line}")),
                None => message.push_str(&format!("; see {}", self.describe(other))),
            }
        }
        self.problems.push(Found {
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            message,
        });
    }

    /// What firewalld only finds when it applies the configuration.
    fn check_apply(&mut self) {
        for problem in direct::check(&self.config) {
            self.problem(Some(problem.subject), problem.message, problem.other);
        }
    }

    /// The entries `iptables-restore --test` (and `ip6tables-restore --test`) rejects, one
    /// family at a time and only for the families present; entries with a problem already
    /// are left out.
    fn check_iptables(&mut self) -> Result<()> {
        let skip: HashSet<Subject> = direct::check(&self.config)
            .into_iter()
            .map(|p| p.subject)
            .collect();
        let mut mode: Option<Mode> = None;
        for (ipv, family) in [("ipv4", Family::V4), ("ipv6", Family::V6)] {
            let Some(check) = direct::restore_check(&self.config, ipv, &skip) else {
                continue;
            };
            let xtables = Xtables::detect(family, None, mode)
                .with_context(|| format!("--check-iptables: {ipv}"))?;
            mode.get_or_insert(xtables.mode);
            let program = xtables.restore.file_name().map_or_else(
                || xtables.restore.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            if let Err(why) = test_restore(&xtables, &check.base) {
                bail!(
                    "--check-iptables: {program} cannot check {ipv} rules here (it refuses even \
                     the bare tables and chains; are you root?): {why}"
                );
            }
            let Err(together) = test_restore(&xtables, &check.all) else {
                continue;
            };
            let mut named = false;
            for (subject, script) in &check.each {
                if let Err(why) = test_restore(&xtables, script) {
                    named = true;
                    self.problem(
                        Some(*subject),
                        format!("{program} --test rejects it: {why}"),
                        None,
                    );
                }
            }
            if !named {
                self.problem(
                    None,
                    format!("{program} --test rejects the {ipv} entries together: {together}"),
                    None,
                );
            }
        }
        Ok(())
    }

    /// Files: by position (problems without one last); D-Bus: as found.
    fn sort_problems(&mut self) {
        self.problems
            .sort_by_key(|p| (p.line.is_none(), p.line, p.column));
    }

    /// The passthroughs firewalld keeps: the first of equal ones, with arguments.
    fn passthroughs(&self) -> Vec<usize> {
        let mut seen = HashSet::new();
        (0..self.config.passthroughs.len())
            .filter(|&i| {
                let p = &self.config.passthroughs[i];
                !p.args.is_empty() && seen.insert(p)
            })
            .collect()
    }

    fn at(&self, subject: Subject) -> String {
        match self.positions.get(&subject) {
            Some((line, _)) => format!("  (line {line})"),
            None => String::new(),
        }
    }

    /// Nothing is wrong.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn text(&self) -> String {
        let mut out = format!("source: {}\n", self.title);
        if let Some(note) = &self.note {
            out.push_str(&format!("({note})\n"));
        }
        let owner = |owned: bool| if owned { "ours" } else { "foreign" };
        let chains = direct::kernel_order(&self.config);
        for chain in &chains {
            let kind = if chain.builtin {
                " (built-in)"
            } else if chain.declared.is_none() {
                " (not declared)"
            } else {
                ""
            };
            out.push_str(&format!(
                "{} {} {}{kind}\n",
                chain.ipv, chain.table, chain.chain
            ));
            if let Some(i) = chain.declared {
                let owned = self.config.chains[i].is_owned();
                out.push_str(&format!(
                    "  {:<7}  chain{}\n",
                    owner(owned),
                    self.at(Subject::Chain(i))
                ));
            }
            for &i in &chain.rules {
                let rule = &self.config.rules[i];
                out.push_str(&format!(
                    "  {:<7}  rule {}: {}{}\n",
                    owner(rule.is_owned()),
                    rule.priority,
                    join_args(&rule.args),
                    self.at(Subject::Rule(i))
                ));
            }
        }
        let passthroughs = self.passthroughs();
        if !passthroughs.is_empty() {
            out.push_str("passthroughs\n");
            for &i in &passthroughs {
                let p = &self.config.passthroughs[i];
                out.push_str(&format!(
                    "  {:<7}  {}: {}{}\n",
                    owner(p.is_owned()),
                    p.ipv,
                    join_args(&p.args),
                    self.at(Subject::Passthrough(i))
                ));
            }
        }
        if chains.is_empty() && passthroughs.is_empty() {
            out.push_str("no entries\n");
        }

        if !self.problems.is_empty() {
            out.push_str("\nproblems:\n");
            for problem in &self.problems {
                let place = match (&self.path, problem.line, problem.column) {
                    (Some(path), Some(line), Some(column)) => format!("{path}:{line}:{column}: "),
                    (Some(path), _, _) => format!("{path}: "),
                    _ => String::new(),
                };
                out.push_str(&format!("  {place}{}\n", problem.message));
            }
            if !self.complete {
                out.push_str(
                    "  (reading stopped at the last problem: entries after it were not read, \
                     and the apply-time checks were skipped)\n",
                );
            }
        }

        let mut ours = [0usize; 3];
        let mut foreign = [0usize; 3];
        for chain in &chains {
            if let Some(i) = chain.declared {
                let counts = if self.config.chains[i].is_owned() {
                    &mut ours
                } else {
                    &mut foreign
                };
                counts[0] += 1;
            }
            for &i in &chain.rules {
                let counts = if self.config.rules[i].is_owned() {
                    &mut ours
                } else {
                    &mut foreign
                };
                counts[1] += 1;
            }
        }
        for &i in &passthroughs {
            let counts = if self.config.passthroughs[i].is_owned() {
                &mut ours
            } else {
                &mut foreign
            };
            counts[2] += 1;
        }
        let counted = |[chains, rules, passthroughs]: [usize; 3]| {
            format!(
                "{}, {}, {}",
                plural(chains, "chain"),
                plural(rules, "rule"),
                plural(passthroughs, "passthrough")
            )
        };
        let verdict = match self.problems.len() {
            0 => "no problems".to_string(),
            n => plural(n, "problem"),
        };
        out.push_str(&format!(
            "\nours: {}; foreign: {}; {verdict}\n",
            counted(ours),
            counted(foreign)
        ));
        out
    }

    pub fn json(&self) -> String {
        let mut entries = Vec::new();
        for chain in direct::kernel_order(&self.config) {
            if let Some(i) = chain.declared {
                entries.push(JsonEntry::chain(&self.config.chains[i]));
            }
            for &i in &chain.rules {
                entries.push(JsonEntry::rule(&self.config.rules[i]));
            }
        }
        for i in self.passthroughs() {
            entries.push(JsonEntry::passthrough(&self.config.passthroughs[i]));
        }
        let document = JsonDocument {
            source: &self.source,
            valid: self.problems.is_empty(),
            problems: &self.problems,
            entries,
        };
        serde_json::to_string_pretty(&document).expect("plain data serializes")
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[derive(Serialize)]
struct JsonDocument<'a> {
    source: &'a str,
    valid: bool,
    problems: &'a [Found],
    entries: Vec<JsonEntry<'a>>,
}

/// A running firewalld's permanent or runtime configuration.
fn from_firewalld(source: Configuration) -> Result<Inspection> {
    let name = match source {
        Configuration::Permanent => "permanent",
        Configuration::Runtime => "runtime",
    };
    let bus = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .map(|address| format!(" at {address}"))
        .unwrap_or_default();
    let firewalld = match firewalld::find(super::timeouts()?.firewalld_start)? {
        Presence::Running(firewalld) => firewalld,
        Presence::Absent => bail!(
            "--source {name}: firewalld is not running (nobody owns org.fedoraproject.FirewallD1 \
             on the system bus{bus}); start it, or read its file with --file /etc/firewalld/direct.xml"
        ),
        Presence::NotRunning(state) => bail!(
            "--source {name}: firewalld is in state {state}, not RUNNING; read its file with \
             --file /etc/firewalld/direct.xml (for FAILED, `journalctl -u firewalld` says why)"
        ),
    };
    let config = match source {
        Configuration::Permanent => firewalld.permanent_config()?,
        Configuration::Runtime => firewalld.runtime_config()?,
    };
    let title = format!(
        "firewalld {} ({} backend), {name} configuration",
        firewalld.version, firewalld.firewall_backend
    );
    let mut inspection = Inspection::new(format!("firewalld:{name}"), title, None);
    inspection.config = config;
    Ok(inspection)
}

/// A direct.xml file.
fn from_file(path: &Path, explicit: bool) -> Result<Inspection> {
    let shown = path.display().to_string();
    let mut inspection = Inspection::new(shown.clone(), shown.clone(), Some(shown.clone()));
    let bytes = match read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            if explicit {
                return Err(BadInput(format!("--file {shown}: no such file")).into());
            }
            inspection.note =
                Some("absent: firewalld has no permanent direct configuration".to_string());
            return Ok(inspection);
        }
        Err(error) => return Err(anyhow!(error).context(format!("cannot read {shown}"))),
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let bytes = error.as_bytes();
            let valid = error.utf8_error().valid_up_to();
            let before = String::from_utf8_lossy(&bytes[..valid]);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            inspection.problems.push(Found {
                line: Some(line),
                column: Some(column),
                message: format!(
                    "not valid UTF-8 (byte 0x{:02X}); direct.xml is read as UTF-8, the \
                     encoding firewalld writes",
                    bytes[valid]
                ),
            });
            inspection.complete = false;
            return Ok(inspection);
        }
    };

    let lenient = direct_xml::parse_lenient(&text);
    for problem in &lenient.problems {
        inspection.problems.push(Found {
            line: Some(problem.line),
            column: Some(problem.column),
            message: problem.message.clone(),
        });
    }
    inspection.complete = lenient.complete;
    let config = &mut inspection.config;
    for located in lenient.entries {
        let subject = match located.entry {
            Entry::Chain(chain) => {
                config.chains.push(chain);
                Subject::Chain(config.chains.len() - 1)
            }
            Entry::Rule(rule) => {
                config.rules.push(rule);
                Subject::Rule(config.rules.len() - 1)
            }
            Entry::Passthrough(passthrough) => {
                config.passthroughs.push(passthrough);
                Subject::Passthrough(config.passthroughs.len() - 1)
            }
        };
        inspection
            .positions
            .insert(subject, (located.line, located.column));
    }
    Ok(inspection)
}

/// The bytes of a regular file (a symbolic link is followed, as firewalld follows it), at
/// most [`MAX_SIZE`]. Opened without blocking, so that a FIFO is refused instead of waiting
/// for a writer forever.
fn read(path: &Path) -> io::Result<Vec<u8>> {
    let (file, metadata) = fs::open_regular(path, true)?;
    if metadata.len() > MAX_SIZE {
        return Err(too_large());
    }
    fs::read_at_most(file, MAX_SIZE).map_err(|e| match e.kind() {
        io::ErrorKind::FileTooLarge => too_large(),
        _ => e,
    })
}

fn too_large() -> io::Error {
    io::Error::other(format!(
        "larger than {}, which no direct.xml is",
        fs::size(MAX_SIZE)
    ))
}

/// Runs `restore --noflush --test` on `script` (legacy iptables waiting up to 10 s for the
/// xtables lock); Err with what it printed, shortened.
fn test_restore(xtables: &Xtables, script: &str) -> Result<(), String> {
    let options = RestoreOptions {
        wait_seconds: 10,
        wait_interval_micros: 0,
        max_retries: 0,
        sleep_between_retries: Duration::ZERO,
    };
    xtables
        .test_restore(script, &options)
        .map_err(|error| match error.downcast_ref::<Rejected>() {
            Some(rejected) => rejected.reasons(),
            None => format!("{error:#}"),
        })
}
