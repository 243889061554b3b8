use std::process::ExitCode;

use clap::Parser;
use tproxy_firewalld::cli::{with_kumactl_spelling, Cli};
use tproxy_firewalld::commands;

fn main() -> ExitCode {
    let args = with_kumactl_spelling(std::env::args_os());
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            if let Err(failed) = commands::rejected(&args, &error) {
                eprintln!("tproxy-firewalld: error: {failed}");
            }
            error.exit()
        }
    };
    match commands::run(cli) {
        Ok(status) => ExitCode::from(status),
        Err(error) => {
            eprintln!("tproxy-firewalld: error: {error}");
            ExitCode::from(error.exit_status())
        }
    }
}
