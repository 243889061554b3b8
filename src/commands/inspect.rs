//! `inspect`: a direct.xml, or a running firewalld's configuration, checked and shown (see
//! [`crate::engine::inspect`]). Exit status 0 when nothing is wrong, 1 when problems were
//! found (or the inspection itself failed), 2 for a `--file` that does not exist.

use anyhow::Result;

use crate::cli::{InspectArgs, InspectSource, OutputFormat};
use crate::engine::inspect::{inspect, Configuration, Source};
use crate::error::EXIT_FAILURE;

pub fn run(args: &InspectArgs) -> Result<u8> {
    let source = match (args.source, &args.file) {
        (Some(InspectSource::Permanent), _) => Source::Firewalld(Configuration::Permanent),
        (Some(InspectSource::Runtime), _) => Source::Firewalld(Configuration::Runtime),
        (None, Some(path)) => Source::File {
            path: path.clone(),
            explicit: true,
        },
        (None, None) => Source::File {
            path: args.firewalld_config_dir.join("direct.xml"),
            explicit: false,
        },
    };
    let inspection = inspect(source, args.check_iptables)?;
    match args.output {
        OutputFormat::Text => print!("{}", inspection.text()),
        OutputFormat::Json => println!("{}", inspection.json()),
    }
    Ok(if inspection.is_valid() {
        0
    } else {
        EXIT_FAILURE
    })
}
