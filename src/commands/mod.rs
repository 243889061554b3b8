//! The subcommands: thin glue from parsed flags to config, rules and a backend.

mod inspect;
mod install;
mod ssh;
mod status;
mod target;
mod translate;
mod uninstall;
mod validate;

use std::fmt;

use anyhow::Result;

use crate::backend::applied;
use crate::backend::firewalld::describe;
use crate::backend::offline::OfflineBackend;
use crate::backend::xtables::{Mode, RestoreOptions, Xtables};
use crate::cli::{Cli, Command};
use crate::config::{Config, ExecutablePaths};
use crate::direct::Plan;
use crate::family::Family;
use crate::format::restore;
use crate::ruleset::Ruleset;

/// Runs a command; the exit status it asks for (0 unless it found problems or drift).
pub fn run(cli: Cli) -> Result<u8, crate::error::Error> {
    let status = match cli.command {
        Command::Install(args) => install::run(&args).map(|()| 0),
        Command::Uninstall(args) => uninstall::run(&args).map(|()| 0),
        Command::Inspect(args) => inspect::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Translate(args) => translate::run(&args).map(|()| 0),
        Command::Validate(args) => validate::run(&args),
    }?;
    Ok(status)
}

/// Notices go to stderr so that stdout carries only data (rules, plans).
fn notice(message: impl fmt::Display) {
    eprintln!("tproxy-firewalld: {message}");
}

/// The iptables executables of each family: IPv4 must exist; IPv6 follows its mode and
/// is skipped when missing.
fn detect_xtables(paths: &ExecutablePaths) -> Result<Vec<Xtables>> {
    detect_xtables_preferring(paths, None, true)
}

/// Like [`detect_xtables`], with the nft/legacy choice made beforehand: a running
/// firewalld always uses the iptables its own path resolves to.
///
/// With `read_tables`, every family's tables are read at once (each `iptables-save` is a
/// process): IPv6's in the mode IPv4 most likely takes, started before IPv4's mode is
/// settled. Not an nf_tables family with a record of our rules: whether they are still in
/// place is asked of nf_tables first, and a save would only take the CPU.
fn detect_xtables_preferring(
    paths: &ExecutablePaths,
    mode: Option<Mode>,
    read_tables: bool,
) -> Result<Vec<Xtables>> {
    let likely_ipv6 = Xtables::detect(
        Family::V6,
        paths.ipv6.as_ref(),
        Some(mode.unwrap_or(Mode::Nft)),
    )
    .ok();
    // nf_tables shows without a save whether the rules on record are still in place.
    let prefetch = |xtables: &Xtables| {
        if read_tables && !(xtables.mode == Mode::Nft && applied::is_recorded(xtables.family)) {
            xtables.prefetch();
        }
    };
    if let Some(ipv6) = &likely_ipv6 {
        prefetch(ipv6);
    }
    let ipv4 = Xtables::detect(Family::V4, paths.ipv4.as_ref(), mode)?;
    prefetch(&ipv4);
    let ipv6 = match likely_ipv6 {
        Some(ipv6) if ipv6.mode == ipv4.mode => Ok(ipv6),
        _ => Xtables::detect(Family::V6, paths.ipv6.as_ref(), Some(ipv4.mode)),
    };
    let mut families = vec![ipv4];
    match ipv6 {
        Ok(ipv6) => families.push(ipv6),
        Err(error) => notice(format!("IPv6: {error:#}; IPv6 rules are left alone")),
    }
    Ok(families)
}

fn restore_options(config: &Config) -> RestoreOptions {
    RestoreOptions {
        wait_seconds: config.wait_seconds,
        wait_interval_micros: config.wait_interval_micros,
        max_retries: config.max_retries,
        sleep_between_retries: config.sleep_between_retries,
    }
}

/// A plan's changes, one per line, and a count line.
fn print_changes(plan: &Plan) {
    for change in &plan.changes {
        println!("{change}");
    }
    println!("{}", describe(plan));
}

/// The dry run of a stopped firewalld: changes to direct.xml and the resulting file.
fn print_file_plan(backend: &OfflineBackend, desired: &Ruleset, verbose: bool) -> Result<()> {
    let file = backend.plan_file(desired, false)?;
    let path = backend.file().path().display();
    println!("### {path} (firewalld is not running) ###");
    print_changes(&file.plan);
    match file.resulting_text() {
        Some(text) => print!("\n### resulting {path} ###\n{text}"),
        None => println!("\n### {path} stays absent ###"),
    }
    println!("\n### iptables, now (firewalld flushes them when it starts) ###");
    print!("{}", restore::render_dry_run(desired, verbose));
    Ok(())
}
