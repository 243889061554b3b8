//! The subcommands: each turns its flags into a request for the engine, plans or applies
//! through the backend the engine picked, and reports.

mod inspect;
mod install;
mod status;
mod translate;
mod uninstall;
mod validate;

use std::ffi::OsString;
use std::io::{self, Write as _};

use anyhow::{Context as _, Result};

use crate::backend::Outcome;
use crate::cli::{report_requested, Cli, Command, FirewalldArgs, InstallArgs, OutputFormat};
use crate::config::Placement;
use crate::engine::status::Desired;
use crate::error::{Error, EXIT_BAD_INPUT};
use crate::format::report::{Failure, Report};
use crate::system::notices;

/// Runs a command; the exit status it asks for (0 unless it found problems or drift).
pub fn run(cli: Cli) -> Result<u8, Error> {
    let status = match cli.command {
        Command::Install(install) => {
            let report = Report::new("install", install.rules.dry_run());
            return reported(install.output, report, |prints_plan, report| {
                install::run(&install.rules, prints_plan, report)
            });
        }
        Command::Uninstall(args) => {
            let report = Report::new("uninstall", args.dry_run);
            return reported(args.output, report, |prints_plan, report| {
                uninstall::run(&args, prints_plan, report)
            });
        }
        Command::Inspect(args) => inspect::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Translate(args) => translate::run(&args).map(|()| 0),
        Command::Validate(args) => validate::run(&args),
    }?;
    Ok(status)
}

/// Runs an install or uninstall that fills in `report`; with `--output json`, prints the
/// report on stdout, a failure included (the error line still goes to stderr).
fn reported(
    output: OutputFormat,
    mut report: Report,
    run: impl FnOnce(bool, &mut Report) -> Result<()>,
) -> Result<u8, Error> {
    let json = output == OutputFormat::Json;
    let result = run(!json, &mut report).map_err(Error::from);
    if json {
        if let Err(error) = &result {
            report.changed = None;
            report.summary = None;
            report.error = Some(Failure {
                message: error.to_string(),
                exit_status: error.exit_status(),
            });
        }
        report.notices = notices();
        emit(&report.document())?;
    }
    result.map(|()| 0)
}

/// Arguments clap rejected: an install or uninstall asking for a JSON report gets one, with
/// clap's first line as its error (clap prints its own message on stderr).
pub fn rejected(args: &[OsString], error: &clap::Error) -> Result<(), Error> {
    let Some((command, dry_run)) = report_requested(args) else {
        return Ok(());
    };
    if error.exit_code() != i32::from(EXIT_BAD_INPUT) {
        return Ok(());
    }
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let mut report = Report::new(command, dry_run);
    report.error = Some(Failure {
        message: first.strip_prefix("error: ").unwrap_or(first).to_string(),
        exit_status: EXIT_BAD_INPUT,
    });
    emit(&report.document()).map_err(Error::from)
}

/// What `outcome` says, in `report`; nothing when it is not known.
fn record(report: &mut Report, outcome: Option<Outcome>) {
    if let Some(outcome) = outcome {
        report.changed = Some(outcome.changed);
        report.targets = outcome.targets;
    }
}

/// Writes `text` to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e).context("writing stdout"),
        _ => Ok(()),
    }
}

/// Where the rules go, from the flags.
fn placement(firewalld: &FirewalldArgs, install: Option<&InstallArgs>) -> Placement {
    Placement {
        backend: firewalld.backend,
        firewalld_config_dir: firewalld.firewalld_config_dir.clone(),
        accept_iptables_flush: install.is_some_and(|a| a.accept_firewalld_iptables_flush),
        disable_rfc3964_ipv4: install.is_some_and(|a| a.disable_firewalld_rfc3964_ipv4),
    }
}

/// The desired rules install's flags describe, for status and validate.
fn desired(args: &InstallArgs) -> Desired<'_> {
    Desired {
        files: &args.config,
        flags: args.overlay(),
        placement: placement(&args.firewalld, Some(args)),
    }
}
