use std::process::ExitCode;

use clap::Parser;
use tproxy_firewalld::cli::{with_kumactl_spelling, Cli};
use tproxy_firewalld::commands;

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_kumactl_spelling(std::env::args_os()));
    match commands::run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("tproxy-firewalld: error: {error}");
            ExitCode::from(error.exit_status())
        }
    }
}
