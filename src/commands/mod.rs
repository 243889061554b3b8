//! The subcommands: each turns its flags into a request for the engine, plans or applies
//! through the backend the engine picked, and reports.

mod inspect;
mod install;
mod status;
mod translate;
mod uninstall;
mod validate;

use crate::cli::{Cli, Command, FirewalldArgs, InstallArgs};
use crate::config::Placement;
use crate::engine::status::Desired;
use crate::error::Error;

/// Runs a command; the exit status it asks for (0 unless it found problems or drift).
pub fn run(cli: Cli) -> Result<u8, Error> {
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
