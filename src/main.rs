use std::process::ExitCode;

use clap::Parser;
use tproxy_firewalld::cli::{with_kumactl_spelling, Cli, EXIT_BAD_INPUT, EXIT_FAILURE};
use tproxy_firewalld::commands::{self, BadInput};

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_kumactl_spelling(std::env::args_os()));
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // One line: the cause chain joined, as the operator needs it. Control characters
            // (a newline in a file name, a user name or a config value) are escaped, so that
            // the message stays one line and cannot forge another.
            let message: String = format!("{error:#}")
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            eprintln!("tproxy-firewalld: error: {message}");
            let code = if error.downcast_ref::<BadInput>().is_some() {
                EXIT_BAD_INPUT
            } else {
                EXIT_FAILURE
            };
            ExitCode::from(code as u8)
        }
    }
}
