//! `status`: the desired rules against firewalld's permanent and runtime configuration and
//! the kernel (see [`crate::engine::status`]); exit status 3 on drift.

use anyhow::Result;
use serde_json::json;

use super::desired;
use crate::cli::{OutputFormat, StatusArgs};
use crate::engine::status::compare;
use crate::error::EXIT_DRIFT;

pub fn run(args: &StatusArgs) -> Result<u8> {
    let comparison = compare(desired(&args.rules), false)?;
    let in_sync = comparison.in_sync();
    let desired_entries = comparison.desired.chains.len() + comparison.desired.rules.len();
    match args.output {
        OutputFormat::Json => {
            let views: Vec<_> = comparison
                .views
                .iter()
                .map(|view| match comparison.drift(view) {
                    Ok(drift) => json!({
                        "name": view.name, "available": true,
                        "missing": drift.missing, "extra": drift.extra,
                        "out_of_order": drift.out_of_order.iter().map(|o| json!({
                            "chain": o.chain, "rule": o.rule, "before": o.before,
                        })).collect::<Vec<_>>(),
                    }),
                    Err(why) => json!({
                        "name": view.name, "available": false, "reason": why,
                        "missing": null, "extra": null, "out_of_order": null,
                    }),
                })
                .collect();
            let document = json!({
                "in_sync": in_sync,
                "desired": {"source": comparison.source, "entries": desired_entries},
                "views": views,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        OutputFormat::Text => {
            println!(
                "desired: {desired_entries} entries, from {}",
                comparison.source
            );
            for view in &comparison.views {
                match comparison.drift(view) {
                    Err(why) => println!("{}: not checked ({why})", view.name),
                    Ok(drift) if drift.is_empty() => println!("{}: in sync", view.name),
                    Ok(drift) => {
                        println!("{}: {}", view.name, drift.summary());
                        drift.lines().iter().for_each(|l| println!("  {l}"));
                    }
                }
            }
            println!("{}", if in_sync { "in sync" } else { "drift" });
        }
    }
    Ok(if in_sync { 0 } else { EXIT_DRIFT })
}
