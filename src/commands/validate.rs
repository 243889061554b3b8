//! `validate` (kumactl's `install transparent-proxy-validator`): proves with real traffic
//! that the rules redirect as they should (see [`crate::engine::validate`]).

use anyhow::Result;
use serde_json::json;

use super::desired;
use crate::cli::{OutputFormat, ValidateArgs};
use crate::engine::validate::report::validate_host;
use crate::engine::validate::{CheckResult, Verdict};
use crate::error::EXIT_FAILURE;

pub fn run(args: &ValidateArgs) -> Result<u8> {
    let rules = args.expected_rules();
    let report = validate_host(desired(&rules), &args.outbound_target)?;
    let comparison = &report.comparison;
    let desired_entries = comparison.desired.chains.len() + comparison.desired.rules.len();
    match args.output {
        OutputFormat::Json => {
            let checks: Vec<_> = report
                .results
                .iter()
                .map(|r| {
                    json!({
                        "family": r.family.ipv(),
                        "check": r.kind.name(),
                        "result": match r.verdict {
                            Verdict::Ok => "ok",
                            Verdict::Fail => "fail",
                            Verdict::Skipped => "skipped",
                        },
                        "expected": r.expected,
                        "happened": r.happened,
                    })
                })
                .collect();
            let document = json!({
                "passed": report.passed,
                "desired": {"source": comparison.source, "entries": desired_entries},
                "checks": checks,
                "diagnosis": report.diagnosis,
                "drift": report.drift,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
        OutputFormat::Text => {
            println!(
                "desired: {desired_entries} entries, from {}",
                comparison.source
            );
            if report.nothing_to_check {
                println!("FAIL no family has rules of ours to validate");
            }
            for result in &report.results {
                println!("{}", line(result));
            }
            if !report.diagnosis.is_empty() {
                println!("diagnosis:");
                report.diagnosis.iter().for_each(|d| println!("  {d}"));
            } else if !report.drift.is_empty() {
                println!(
                    "note: the checks pass, but status sees drift: {}",
                    report.drift.join("; ")
                );
            }
            println!("{}", if report.passed { "passed" } else { "failed" });
        }
    }
    Ok(if report.passed { 0 } else { EXIT_FAILURE })
}

/// `ok   IPv4 inbound: expected …; what happened`
fn line(result: &CheckResult) -> String {
    let verdict = match result.verdict {
        Verdict::Ok => "ok  ",
        Verdict::Fail => "FAIL",
        Verdict::Skipped => "skip",
    };
    format!(
        "{verdict} {} {}: expected {}; {}",
        result.family.label(),
        result.kind.name(),
        result.expected,
        result.happened
    )
}
