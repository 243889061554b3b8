use std::process::ExitCode;

use clap::Parser;
use tproxy_firewalld::cli::Cli;
use tproxy_firewalld::commands;

fn main() -> ExitCode {
    match commands::run(Cli::parse()) {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("tproxy-firewalld: error: {error}");
            ExitCode::from(error.exit_status())
        }
    }
}
