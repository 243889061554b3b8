//! `translate`: iptables-restore text → firewalld direct entries (see
//! [`crate::engine::translate`]), printed as direct.xml or JSON, or merged into a direct.xml.

use anyhow::Result;

use super::emit;
use crate::cli::{OutputFormat, TranslateArgs, TranslateIpv};
use crate::engine::translate::{merged_into, read_input, translate};
use crate::family::Family;
use crate::format::{direct_json, direct_xml};

pub fn run(args: &TranslateArgs) -> Result<()> {
    let (name, text) = read_input(args.input.as_deref())?;
    let family = match args.ipv {
        TranslateIpv::Ipv4 => Family::V4,
        TranslateIpv::Ipv6 => Family::V6,
    };
    let entries = translate(&name, &text, family)?;
    let Some(path) = &args.merge else {
        return match args.output {
            OutputFormat::Text => emit(&direct_xml::render(&entries)),
            OutputFormat::Json => emit(&direct_json::document(&entries)?),
        };
    };
    let merged = merged_into(path, &entries)?;
    match args.output {
        OutputFormat::Text => emit(&merged),
        OutputFormat::Json => {
            // What firewalld would load from the merged file, foreign entries included.
            let document = direct_xml::parse(&merged)
                .map_err(|e| anyhow::anyhow!("the merged direct.xml does not parse: {e}"))?;
            emit(&direct_json::document(&document.config())?)
        }
    }
}
